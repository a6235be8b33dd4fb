"""The float32 error proved with signs, with and without each activation's doubtful
neurons refined by a backward bound of their own, side by side.

The backward float32 bound (:mod:`pixelprior.scoring.cone.backward`) decides which
ReLUs are sure from the forward error bound, which on the normally trained nets outgrows
the neurons' values (ResNet8: 1,820 of 4,096 ReLUs doubtful at a single color, the bound
~270 times the first-order estimate there). ``refine=True`` bounds the error of every
neuron that feeds an activation and that the forward error leaves doubtful (the real
value on one side, within the error of 0) by its own backward pass, layer by layer,
before the layers after it are bounded. This measures, in one run, per model and box
side: the first-order estimate, the backward bound without and with the refinement (as
ratios to the estimate, the median and the largest over a few positions), and the
seconds each took.

    python benchmarks/refined_error.py [--models resnet8-cifar10 ...] [--sides 0 0.01 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _setup import bench_inputs, random_boxes

from pixelprior.scoring.cone.backward import BackwardErrorBound
from pixelprior.scoring.cone.rounding import rounding_error
from pixelprior.scoring.cone.screen import IntervalScreen
from pixelprior.search.verify import rounding_unit

POSITIONS = torch.tensor([16 * 32 + 16, 5 * 32 + 20, 20 * 32 + 9, 3 * 32 + 3])
MODELS = ("convsmall-cifar10", "resnet8-ibp-cifar10", "resnet8-cifar10")


def timed(bound: BackwardErrorBound, *args) -> tuple[torch.Tensor, float]:
    """The largest margin error per box, and the seconds it took."""
    began = time.perf_counter()
    errors = bound.errors(*args)
    return errors.max(1).values, time.perf_counter() - began


def rows(name: str, sides: list[float], images: int) -> list[str]:
    """A table row per image and side."""
    model, x, y, pick = bench_inputs(images, name)
    unit = rounding_unit("cpu")
    screen = IntervalScreen(model, cone=False)
    plain, refined = BackwardErrorBound(screen), BackwardErrorBound(screen, refine=True)
    out = []
    for n in range(len(y)):
        image, label = x[n:n + 1], int(y[n])
        estimate = float(rounding_error(model, image, torch.tensor([label]), unit)[0])
        for side in sides:
            lo, hi = random_boxes(len(POSITIONS), side)
            args = (image, POSITIONS, lo, hi, label, unit)
            before, before_s = timed(plain, *args)
            after, after_s = timed(refined, *args)
            if (after > before * (1 + 1e-9)).any():
                raise AssertionError(f"{name}: the refined bound is above the plain one")
            b, a = (before / estimate).tolist(), (after / estimate).tolist()
            out.append(f"| {name} | {int(pick[n])} | {estimate:.3g} | {side:g} | "
                       f"{statistics.median(b):.3g} / {max(b):.3g} | {before_s:.2f} | "
                       f"**{statistics.median(a):.3g}** / {max(a):.3g} | {after_s:.2f} |")
            print(out[-1], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--sides", type=float, nargs="*", default=[0.0, 0.01, 0.05, 0.25, 1.0])
    parser.add_argument("--images", type=int, default=1)
    args = parser.parse_args()
    print(f"\nfloat32 error proved over one box of {len(POSITIONS)} positions / the "
          "first-order estimate (median / largest), seconds for the 4 boxes\n")
    print("| model | test index | estimate | side | backward | s | refined | s |\n"
          "|---|---|---|---|---|---|---|---|")
    for name in args.models:
        rows(name, args.sides, args.images)


if __name__ == "__main__":
    main()
