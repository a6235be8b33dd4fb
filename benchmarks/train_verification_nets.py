"""Train the small CIFAR-10 networks the verifier is measured on completely (ConvSmall
and ResNet8, ``pixelprior.models.small``) and write their weights as package assets.

A short recipe for a 2-core CPU: SGD with Nesterov momentum, one-cycle learning rate,
label smoothing, random crops and flips (``pixelprior.models.train``), on the JPEG
training set; accuracy is measured on the exact test prefix (1,017 images).

    python benchmarks/train_verification_nets.py --epochs 8 --nets convsmall resnet8
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from pixelprior.data import load_cifar10_jpeg, load_cifar10_test, to_float
from pixelprior.models.small import ConvSmall, ResNet8
from pixelprior.models.train import augment, learning_rate

NETS = {"convsmall": ConvSmall, "resnet8": ResNet8}
ASSETS = Path(__file__).parents[1] / "src" / "pixelprior" / "assets"


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.inference_mode():
        predicted = torch.cat([model(to_float(images[i:i + 500])).argmax(1)
                               for i in range(0, len(images), 500)])
    return float((predicted == labels).float().mean())


def train(name: str, epochs: int, seed: int, batch: int = 256, peak: float = 0.1) -> dict:
    torch.manual_seed(seed)
    model = NETS[name]().to(memory_format=torch.channels_last)
    train_set = load_cifar10_jpeg("train")
    test = load_cifar10_test()
    images, labels = train_set.images, train_set.labels
    steps_per_epoch = math.ceil(len(labels) / batch)
    total = epochs * steps_per_epoch
    optimizer = torch.optim.SGD(model.parameters(), lr=peak, momentum=0.9, nesterov=True,
                                weight_decay=5e-4)
    generator = torch.Generator().manual_seed(seed)
    step, began = 0, time.time()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(labels), batch):
            index = order[start:start + batch]
            x = augment(to_float(images[index]), generator).contiguous(
                memory_format=torch.channels_last)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total, steps_per_epoch, peak)
            loss = F.cross_entropy(model(x), labels[index], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        print(f"{name} epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}, test accuracy "
              f"{accuracy(model, test.images, test.labels):.3f} ({time.time() - began:.0f} s)",
              flush=True)
    model = model.eval().to(memory_format=torch.contiguous_format)
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save(weights, ASSETS / f"{name}-cifar10.pt")
    card = {"net": name, "epochs": epochs, "seed": seed, "batch": batch, "peak_lr": peak,
            "test_accuracy_exact_prefix": accuracy(model, test.images, test.labels),
            "seconds": round(time.time() - began), "torch": torch.__version__}
    (ASSETS / f"{name}-cifar10.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name in args.nets:
        print(json.dumps(train(name, args.epochs, args.seed)))


if __name__ == "__main__":
    main()
