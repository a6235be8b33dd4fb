"""Boxes near the decision boundary judged by the float32 error of their own colors,
against the whole cube's, side by side.

The verifier proves a bound of the model's float32 error over each position's whole
color cube and raises the position's tolerance to it. A box whose bound lies between
the first-order estimate and that tolerance is judged again against the error proved
over its own colors (``Verifier._box_tolerances``). This measures, in one run:

1. the float32 error proved over boxes of decreasing side, relative to the estimate
   (one random box per side at a few positions of each model's first images);
2. what it decides: ConvSmall's fooled images in exact mode under a budget, with and
   without it, alternating (positions robust / vulnerable / unknown);
3. what it costs: ConvSmall's verified images in exact mode, with and without, each
   twice, alternating (seconds; the boxes must be the same where nothing is near the
   boundary).

"Without" replaces the method by the position's tolerance (what the verifier did before
commit 03934ea); the product has no switch for it.

    python benchmarks/box_tolerance.py [--fooled 0 31] [--verified 4 5 6 7 9 10]
        [--budget 60] [--error-models convsmall-cifar10 resnet8-cifar10]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import numpy as np
import torch
from _setup import bench_inputs, position_counts, verified_side_by_side

from pixelprior import load_cifar10, load_model, to_float
from pixelprior.search.verify import Verifier, rounding_unit

SIDES = (1.0, 0.25, 0.05, 0.0)
POSITIONS = (16 * 32 + 16, 5 * 32 + 20, 20 * 32 + 9, 3 * 32 + 3)
WITH: Callable = Verifier._box_tolerances


def without(self, run, lo, hi, position, worst, lower=None) -> np.ndarray:
    """The position's tolerance for every box (the whole cube's float32 error)."""
    return run.tolerances[position]


def error_by_side(name: str, images: int) -> list[str]:
    """Rows: the proved float32 error over one random box per side / the estimate."""
    model, x, y, pick = bench_inputs(images, name)
    verifier = Verifier(model, budget=None)
    unit = rounding_unit("cpu")
    rows = []
    for n in range(len(y)):
        image, label = x[n:n + 1], int(y[n])
        estimate = verifier.tolerance_of(image, label)
        where = torch.tensor(POSITIONS)
        for side in SIDES:
            generator = torch.Generator().manual_seed(0)
            lo = torch.rand(len(where), 3, dtype=torch.float64, generator=generator) * (1 - side)
            error = verifier.screen.bounds(image, where, lo, lo + side, label,
                                           unit).error.max(1).values
            ratio = (error / estimate).tolist()
            rows.append(f"| {name} | {int(pick[n])} | {estimate:.4f} | {side:g} | "
                        f"{min(ratio):.3g} | {statistics.median(ratio):.3g} | "
                        f"{max(ratio):.3g} |")
    return rows


def exact(model, image, label, budget: float | None, judge: Callable):
    """One exact-mode verification with ``judge`` as the box tolerances."""
    Verifier._box_tolerances = judge
    try:
        (result,) = Verifier(model, budget=budget).verify(image, label, stop_at_first=False)
    finally:
        Verifier._box_tolerances = WITH
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fooled", type=int, nargs="*", default=[0, 31],
                        help="ConvSmall test indices of fooled images")
    parser.add_argument("--verified", type=int, nargs="*", default=[4, 5, 6, 7, 9, 10],
                        help="ConvSmall test indices of verified images")
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--error-models", nargs="*",
                        default=["convsmall-cifar10", "resnet8-cifar10"])
    parser.add_argument("--error-images", type=int, default=2)
    args = parser.parse_args()

    print("\n1. the float32 error proved over one box / the first-order estimate "
          f"(positions {list(POSITIONS)})\n")
    print("| model | test index | estimate | side | min | median | max |\n"
          "|---|---|---|---|---|---|---|")
    for name in args.error_models:
        print("\n".join(error_by_side(name, args.error_images)))

    model = load_model("convsmall-cifar10").eval()
    data = load_cifar10("auto")
    print(f"\n2. ConvSmall fooled images, exact mode, {args.budget:g} s each: robust / "
          "vulnerable / unknown positions\n")
    print("| test index | with its own float32 error | boxes | with the cube's | boxes |\n"
          "|---|---|---|---|---|")
    for index in args.fooled:
        image, label = to_float(data.images[[index]]), data.labels[[index]]
        own = exact(model, image, label, args.budget, WITH)
        cube = exact(model, image, label, args.budget, without)
        print(f"| {index} | {position_counts(own)} | {own.boxes:,} | {position_counts(cube)} | "
              f"{cube.boxes:,} |", flush=True)

    print("\n3. ConvSmall verified images, exact mode, each twice: seconds\n")
    verified_side_by_side(data, args.verified, lambda image, label, with_it: exact(
        model, image, label, None, WITH if with_it else without))


if __name__ == "__main__":
    main()
