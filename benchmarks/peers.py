"""pixelprior vs torchattacks ``OnePixel`` vs ART ``PixelAttack``, side by side, one run.

Same model (bundled CIFAR-10 SqueezeNet), same images (the first correctly classified
exact test images), same budget: population 400, at most ``maxiter``
generations, early stop on success. Printed: seconds per image, success rate, model
queries per image (counted by wrapping the model), and the speed ratio to each peer.

How the peers are configured (read from their sources, torchattacks 3.5.1, ART 1.20):

- torchattacks ``OnePixel(model, pixels=1, steps=maxiter, popsize=400)``: its DE is a copy
  of SciPy's with ``popsize=400 // 5`` per dimension (= 400 members), ``strategy='best1bin'``,
  ``recombination=1``, ``init='random'``; it loops over images and builds each candidate
  image in a Python loop; early stop when the *best* member is adversarial (callback).
- ART ``PixelAttack(classifier, th=1, es=1, max_iter=maxiter)``: SciPy-style DE,
  ``popsize=400 // len(bounds)`` (= 80 per dimension, 400 members), ``best1bin``,
  ``recombination=1``, Latin-hypercube init, the same best-member early stop. For the
  Pixel attack ``th`` is the *number of pixels* (an L0 budget: ``_get_bounds`` repeats the
  (x, y, r, g, b) bounds ``th`` times), so ``th=1`` is the one-pixel attack; ``th=None``
  would search for the smallest number, several attacks per image.
- pixelprior: DE/rand/1 (Su et al.), population 400, early stop when *any* member is
  adversarial, all images batched; reported unconstrained and constrained separately
  (the prior's effect), and unconstrained with full forward passes (PyTorch; ONNX Runtime
  when installed) instead of the default incremental engine (the engine's effect).

The differences in strategy (best1bin vs rand1) and stopping rule are the peers' own
defaults for the same budget; they are stated, not adjusted.

    pip install --no-deps torchattacks adversarial-robustness-toolbox
    pip install scikit-learn six packaging
    python benchmarks/peers.py [--images 5] [--maxiter 100]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _setup import bench_inputs

from pixelprior import (
    OnePixelAttack,
    SusceptibleSetPrior,
    UniformPrior,
)


class CountingModel(torch.nn.Module):
    """Counts the images the wrapped model is asked to classify."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += x.shape[0]
        return self.model(x)


def success_rate(model, adversarial: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.inference_mode():
        return float((model(adversarial).argmax(1) != labels).float().mean())


def run_pixelprior(model, images, labels, maxiter, prior, engine="auto"):
    attack = OnePixelAttack(model, prior=prior, popsize=400, maxiter=maxiter, seed=0,
                            engine=engine)
    began = time.perf_counter()
    out = attack(images, labels)
    seconds = time.perf_counter() - began
    queries = np.mean([r.queries for r in out.results])
    return seconds / len(images), success_rate(model, out.adversarial, labels), queries


def run_torchattacks(model, images, labels, maxiter):
    import torchattacks

    counted = CountingModel(model).eval()
    attack = torchattacks.OnePixel(counted, pixels=1, steps=maxiter, popsize=400,
                                   inf_batch=400)
    began = time.perf_counter()
    adversarial = attack(images, labels)
    seconds = time.perf_counter() - began
    return (seconds / len(images), success_rate(model, adversarial, labels),
            counted.images / len(images))


def run_art(model, images, labels, maxiter):
    from art.attacks.evasion import PixelAttack
    from art.estimators.classification import PyTorchClassifier

    counted = CountingModel(model).eval()
    classifier = PyTorchClassifier(counted, loss=torch.nn.CrossEntropyLoss(),
                                   input_shape=tuple(images.shape[1:]), nb_classes=10,
                                   clip_values=(0.0, 1.0),
                                   device_type="gpu" if images.is_cuda else "cpu")
    attack = PixelAttack(classifier, th=1, es=1, max_iter=maxiter, targeted=False)
    began = time.perf_counter()
    adversarial = attack.generate(images.cpu().numpy(), y=labels.cpu().numpy())
    seconds = time.perf_counter() - began
    adversarial = torch.from_numpy(adversarial).float().to(images.device)
    return (seconds / len(images), success_rate(model, adversarial, labels),
            counted.images / len(images))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--maxiter", type=int, default=100)
    parser.add_argument("--skip", nargs="*", default=[], help="torchattacks and/or art")
    args = parser.parse_args(argv)
    model, images, labels, pick = bench_inputs(args.images)
    print(f"{len(pick)} images (test indices {pick.tolist()}), population 400, "
          f"at most {args.maxiter} generations, early stop\n")
    rows = {
        "pixelprior unconstrained": run_pixelprior(model, images, labels, args.maxiter,
                                                   UniformPrior()),
        "pixelprior constrained": run_pixelprior(model, images, labels, args.maxiter,
                                                 SusceptibleSetPrior(0.5)),
        "pixelprior unconstrained, full passes": run_pixelprior(
            model, images, labels, args.maxiter, UniformPrior(), engine="full"),
    }
    try:
        rows["pixelprior unconstrained, ONNX Runtime"] = run_pixelprior(
            model, images, labels, args.maxiter, UniformPrior(), engine="onnxruntime")
    except ImportError as exc:
        print(f"pixelprior with ONNX Runtime: not measured ({exc})")
    if "torchattacks" not in args.skip:
        rows["torchattacks OnePixel"] = run_torchattacks(model, images, labels, args.maxiter)
    if "art" not in args.skip:
        rows["ART PixelAttack (DE)"] = run_art(model, images, labels, args.maxiter)
    ours = rows["pixelprior unconstrained"][0]
    print("| method | s/image | success | queries/image | ms/query | s/image vs pixelprior "
          "unconstrained |\n|---|---|---|---|---|---|")
    for name, (seconds, success, queries) in rows.items():
        print(f"| {name} | {seconds:.3f} | {success:.0%} | {queries:.0f} | "
              f"{1000 * seconds / queries:.3f} | {seconds / ours:.1f}x |")
    peers = {k: v for k, v in rows.items() if not k.startswith("pixelprior")}
    if peers:
        name, (seconds, _, queries) = min(peers.items(), key=lambda kv: kv[1][0])
        print(f"\nfaster peer: {name}; 20x its speed means {seconds / 20:.3f} s/image, i.e. "
              f"{20 * queries / seconds:.0f} queries/s at its queries per image "
              f"(benchmarks/engines.py gives this machine's ceiling)")


if __name__ == "__main__":
    main()
