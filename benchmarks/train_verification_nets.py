"""Train the small CIFAR-10 networks the verifier is measured on completely (ConvSmall
and ResNet8, ``pixelprior.models.small``) and write their weights as package assets.

A short recipe for a 2-core CPU: SGD with Nesterov momentum, one-cycle learning rate,
label smoothing, random crops and flips (``pixelprior.models.train``), on the JPEG
training set; accuracy is measured on the exact test prefix (1,017 images).

    python benchmarks/train_verification_nets.py --epochs 8 --nets convsmall resnet8

``--nets resnet8-ibp`` fine-tunes the trained ResNet8 (its asset) for the one-pixel threat
model, so that the verifier's bounds are tight on it: interval bound propagation (IBP,
Gowal et al. 2019) of one random pixel's color box per image through the network, the
cross-entropy of the margins' lower bounds mixed into the loss (weight ramped 0 -> 0.5 over
the first 30% of the steps), the box's half-width around the pixel's color ramped 0 -> 1
(the whole cube) quadratically over the first 60%; BatchNorm frozen at the trained
statistics, gradients clipped at norm 5, cosine learning rate from 0.01.
Hand-written because the interval forward is ten lines for this one architecture, and
auto_LiRPA's PyPI release pins torch < 1.13.

    python benchmarks/train_verification_nets.py --nets resnet8-ibp --steps 1200
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
CERTIFIED = {"resnet8-ibp": ("resnet8", ResNet8)}  # name -> (the net it fine-tunes, class)
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
    warmup = min(steps_per_epoch, total // 5)  # one epoch, or a fifth of a shorter run
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
                group["lr"] = learning_rate(step, total, warmup, peak)
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


Interval = tuple[torch.Tensor, torch.Tensor]  # center, radius


def _conv(conv: torch.nn.Conv2d, box: Interval) -> Interval:
    center, radius = box
    return (F.conv2d(center, conv.weight, conv.bias, conv.stride, conv.padding),
            F.conv2d(radius, conv.weight.abs(), None, conv.stride, conv.padding))


def _batchnorm(bn: torch.nn.BatchNorm2d, box: Interval) -> Interval:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    center, radius = box
    return (scale.view(1, -1, 1, 1) * center + shift.view(1, -1, 1, 1),
            scale.abs().view(1, -1, 1, 1) * radius)


def _relu(box: Interval) -> Interval:
    center, radius = box
    low, high = F.relu(center - radius), F.relu(center + radius)
    return (low + high) / 2, (high - low) / 2


def _block(block: torch.nn.Module, box: Interval) -> Interval:
    """A ResNet8 basic block (conv1, bn1, conv2, bn2, shortcut) on intervals."""
    inner = _relu(_batchnorm(block.bn1, _conv(block.conv1, box)))
    center, radius = _batchnorm(block.bn2, _conv(block.conv2, inner))
    if isinstance(block.shortcut, torch.nn.Identity):
        short_center, short_radius = box
    else:
        short_center, short_radius = _batchnorm(block.shortcut[1],
                                                _conv(block.shortcut[0], box))
    return _relu((center + short_center, radius + short_radius))


def margin_lower_bounds(model: ResNet8, low: torch.Tensor, high: torch.Tensor,
                        labels: torch.Tensor) -> torch.Tensor:
    """IBP lower bounds ``[B, K]`` of ``z_y - z_j`` over the images in ``[low, high]``
    (0 at ``j = y``), BatchNorm at its running statistics; the last linear layer is
    taken into the margins before the radius (the usual IBP specification trick)."""
    center, radius = (low + high) / 2, (high - low) / 2
    box = _relu(_batchnorm(model.stem[1], _conv(model.stem[0], (
        (center - model.mean) / model.std, radius / model.std))))
    for block in model.layers:
        box = _block(block, box)
    center, radius = box[0].mean((2, 3)), box[1].mean((2, 3))
    weight, bias = model.fc.weight, model.fc.bias
    rows = weight[labels].unsqueeze(1) - weight.unsqueeze(0)  # [B, K, features]
    margins = (rows * center.unsqueeze(1)).sum(-1) + (bias[labels].unsqueeze(1) - bias)
    return margins - (rows.abs() * radius.unsqueeze(1)).sum(-1)


def pixel_boxes(images: torch.Tensor, half_width: float, generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, one random pixel's colors within ``half_width`` of its own, cut to the
    cube; every other pixel fixed. Returns the boxes' lower and upper images."""
    count, _, height, width = images.shape
    position = torch.randint(0, height * width, (count,), generator=generator)
    row, column, every = position // width, position % width, torch.arange(count)
    low, high = images.clone(), images.clone()
    color = images[every, :, row, column]
    low[every, :, row, column] = (color - half_width).clamp(0, 1)
    high[every, :, row, column] = (color + half_width).clamp(0, 1)
    return low, high


def certify(name: str, steps: int, seed: int, robust_batch: int = 128, peak: float = 0.01
            ) -> dict:
    """Fine-tune ``CERTIFIED[name]``'s trained net with one-pixel IBP (module docstring)
    and write it as the asset ``NAME-cifar10.pt`` with its card."""
    torch.manual_seed(seed)
    base, net = CERTIFIED[name]
    model = net()
    model.load_state_dict(torch.load(ASSETS / f"{base}-cifar10.pt"))
    model.eval()  # BatchNorm frozen at the trained statistics
    train_set, test = load_cifar10_jpeg("train"), load_cifar10_test()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=peak, momentum=0.9, nesterov=True,
                                weight_decay=5e-4)
    began = time.time()
    for step in range(steps):
        done = step / steps
        half_width, mix = min(1.0, done / 0.6) ** 2, 0.5 * min(1.0, done / 0.3)
        for group in optimizer.param_groups:
            group["lr"] = peak * 0.5 * (1 + math.cos(math.pi * done))
        index = torch.randint(0, len(train_set.labels), (256,), generator=generator)
        x, y = augment(to_float(train_set.images[index]), generator), train_set.labels[index]
        clean = F.cross_entropy(model(x), y, label_smoothing=0.1)
        low, high = pixel_boxes(x[:robust_batch], half_width, generator)
        margins = margin_lower_bounds(model, low, high, y[:robust_batch])
        robust = F.cross_entropy(-margins, y[:robust_batch])
        optimizer.zero_grad()
        ((1 - mix) * clean + mix * robust).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if step % 100 == 0 or step == steps - 1:
            proved = (margins.topk(2, 1, largest=False).values[:, 1] > 0).float().mean()
            print(f"{name} step {step}: half-width {half_width:.2f}, clean {clean.item():.3f}"
                  f", robust {robust.item():.3f}, IBP-proved {float(proved):.2f} "
                  f"({time.time() - began:.0f} s)", flush=True)
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save(weights, ASSETS / f"{name}-cifar10.pt")
    card = {"net": name, "fine_tunes": f"{base}-cifar10.pt", "recipe": "one-pixel IBP",
            "steps": steps, "batch": 256, "robust_batch": robust_batch, "seed": seed,
            "peak_lr": peak, "test_accuracy_exact_prefix": accuracy(model, test.images,
                                                                    test.labels),
            "seconds": round(time.time() - began), "torch": torch.__version__}
    (ASSETS / f"{name}-cifar10.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=list(NETS),
                        choices=[*NETS, *CERTIFIED])
    parser.add_argument("--epochs", type=int, help="convsmall's and resnet8's [8]")
    parser.add_argument("--steps", type=int, help="resnet8-ibp's SGD steps [1200]")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.epochs is not None and not set(args.nets) & set(NETS):
        parser.error(f"--epochs is for {', '.join(NETS)}; give --steps for "
                     f"{', '.join(CERTIFIED)}")
    if args.steps is not None and not set(args.nets) & set(CERTIFIED):
        parser.error(f"--steps is for {', '.join(CERTIFIED)}; give --epochs for "
                     f"{', '.join(NETS)}")
    steps = 1200 if args.steps is None else args.steps
    epochs = 8 if args.epochs is None else args.epochs
    for name in args.nets:
        card = (certify(name, steps, args.seed) if name in CERTIFIED
                else train(name, epochs, args.seed))
        print(json.dumps(card))


if __name__ == "__main__":
    main()
