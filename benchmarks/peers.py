"""pixelprior vs torchattacks ``OnePixel``, ART ``PixelAttack`` and Sparse-RS, side by side.

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

- Sparse-RS (Croce et al., the authors' code unchanged in ``../shared/peers/sparse-rs``):
  ``RSAttack(predict, norm="L0", eps=1, n_queries=10000, loss="margin")``: a random search
  over one pixel and the corners of the colour cube, greedy on the margin loss; its
  ``perturb`` returns the queries per image. Every success is re-checked with the model.
- pixelprior ``fast`` (:class:`~pixelprior.search.FastAttack`): the corners in the order
  of the input gradient, to the first success or a certificate on the corner grid
  (8,192 queries for a 32×32 image); and pixelprior's own Sparse-RS
  (:class:`~pixelprior.search.RandomSearchAttack`, the same budget).

The differences in strategy (best1bin vs rand1) and stopping rule are the peers' own
defaults for the same budget; they are stated, not adjusted.

    pip install --no-deps torchattacks adversarial-robustness-toolbox
    pip install scikit-learn six packaging
    python benchmarks/peers.py [--images 5] [--maxiter 100] [--skip torchattacks art ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _setup import bench_inputs

from pixelprior import (
    FastAttack,
    OnePixelAttack,
    RandomSearchAttack,
    SusceptibleSetPrior,
    UniformPrior,
)

SPARSE_RS = Path(os.environ.get("PIXELPRIOR_PEERS", Path(__file__).parents[2] / "shared"
                                / "peers")) / "sparse-rs"


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
    out = attack.run(images, labels)
    seconds = time.perf_counter() - began
    queries = np.mean([r.queries for r in out.results])
    return seconds / len(images), success_rate(model, out.adversarial, labels), queries


def run_fast(model, images, labels):
    out = FastAttack(model, seed=0, verify="off")  # ranked by the gradient, corners only
    began = time.perf_counter()
    result = out.run(images, labels)
    seconds = time.perf_counter() - began
    queries = np.mean([r.queries for r in result.results])
    certified = sum(bool(r.steps["corner_certified"]) for r in result.results)
    print(f"pixelprior fast: {certified} of {len(images)} images certified on the corner grid")
    return seconds / len(images), success_rate(model, result.adversarial, labels), queries


def run_random_search(model, images, labels, queries: int):
    attack = RandomSearchAttack(model, budget=queries, seed=0)
    began = time.perf_counter()
    out = attack.run(images, labels)
    seconds = time.perf_counter() - began
    return (seconds / len(images), success_rate(model, out.adversarial, labels),
            float(np.mean([r.queries for r in out.results])))


def run_sparse_rs(model, images, labels, queries: int):
    """The authors' Sparse-RS, one pixel (``eps=1``), margin loss; successes re-checked."""
    if not (SPARSE_RS / "rs_attacks.py").is_file():
        raise ImportError(f"Sparse-RS not found at {SPARSE_RS} (set PIXELPRIOR_PEERS)")
    sys.path.insert(0, str(SPARSE_RS))
    from rs_attacks import RSAttack

    counted = CountingModel(model).eval()

    def predict(x):
        with torch.no_grad():
            return counted(x)

    attack = RSAttack(predict, norm="L0", eps=1, n_queries=queries, loss="margin",
                      verbose=False, seed=0, device=images.device)
    began = time.perf_counter()
    spent, adversarial = attack.perturb(images, labels)
    seconds = time.perf_counter() - began
    changed = (adversarial != images).any(1).flatten(1).sum(1)
    assert bool((changed <= 1).all()), "Sparse-RS changed more than one pixel"
    # queries: its own count for successes, the budget for the images it did not fool
    fooled = success_rate(model, adversarial, labels)
    per_image = torch.where(spent > 0, spent, torch.full_like(spent, float(queries)))
    return seconds / len(images), fooled, float(per_image.mean())


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
    parser.add_argument("--skip", nargs="*", default=[],
                        help="any of: torchattacks art sparse-rs random-search constrained "
                        "full onnx")
    parser.add_argument("--rs-queries", type=int, default=10_000,
                        help="Sparse-RS budget per image (the authors' example: 10,000)")
    args = parser.parse_args(argv)
    model, images, labels, pick = bench_inputs(args.images)
    print(f"{len(pick)} images (test indices {pick.tolist()}), population 400, "
          f"at most {args.maxiter} generations, early stop\n")
    rows = {"pixelprior fast (corners, gradient order)": run_fast(model, images, labels),
            "pixelprior unconstrained": run_pixelprior(model, images, labels, args.maxiter,
                                                       UniformPrior())}
    if "constrained" not in args.skip:
        rows["pixelprior constrained"] = run_pixelprior(model, images, labels, args.maxiter,
                                                        SusceptibleSetPrior(0.5))
    if "full" not in args.skip:
        rows["pixelprior unconstrained, full passes"] = run_pixelprior(
            model, images, labels, args.maxiter, UniformPrior(), engine="full")
    if "onnx" not in args.skip:
        try:
            rows["pixelprior unconstrained, ONNX Runtime"] = run_pixelprior(
                model, images, labels, args.maxiter, UniformPrior(), engine="onnxruntime")
        except ImportError as exc:
            print(f"pixelprior with ONNX Runtime: not measured ({exc})")
    if "random-search" not in args.skip:
        rows["pixelprior random search (Sparse-RS's)"] = run_random_search(
            model, images, labels, args.rs_queries)
    if "sparse-rs" not in args.skip:
        rows["Sparse-RS (authors' code)"] = run_sparse_rs(model, images, labels,
                                                          args.rs_queries)
    for name, skip, run, install in (
            ("torchattacks OnePixel", "torchattacks", run_torchattacks,
             "pip install --no-deps torchattacks"),
            ("ART PixelAttack (DE)", "art", run_art, "pip install --no-deps "
             "adversarial-robustness-toolbox && pip install scikit-learn six packaging")):
        if skip in args.skip:
            continue
        try:
            rows[name] = run(model, images, labels, args.maxiter)
        except ImportError as exc:  # a peer not installed: said, the others measured
            print(f"{name}: not measured ({exc}; {install}, or --skip {skip})")
    ours = rows["pixelprior unconstrained"][0]
    print("| method | s/image | success | queries/image | ms/query | s/image vs pixelprior "
          "unconstrained |\n|---|---|---|---|---|---|")
    for name, (seconds, success, queries) in rows.items():
        print(f"| {name} | {seconds:.3f} | {success:.0%} | {queries:.0f} | "
              f"{1000 * seconds / queries:.3f} | {seconds / ours:.1f}x |")
    fast = rows["pixelprior fast (corners, gradient order)"]
    de_peers = {k: v for k, v in rows.items() if k.startswith(("torchattacks", "ART"))}
    if de_peers:
        name, (seconds, success, _) = min(de_peers.items(), key=lambda kv: kv[1][0])
        print(f"\nfast vs the faster DE peer ({name}): {seconds / fast[0]:.1f}x faster per "
              f"image; success {fast[1]:.0%} vs {success:.0%}")
    if "Sparse-RS (authors' code)" in rows:
        seconds, success, _ = rows["Sparse-RS (authors' code)"]
        print(f"fast vs Sparse-RS: {seconds / fast[0]:.1f}x faster per image; success "
              f"{fast[1]:.0%} vs {success:.0%}")


if __name__ == "__main__":
    main()
