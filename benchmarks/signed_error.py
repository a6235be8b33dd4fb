"""The float32 error proved with signs (backward) against the forward interval proof, side
by side.

The verifier proves the model's float32 error over each position's color cube with the
interval screen (errors passed on by ``|A|``); a box near the decision boundary is judged
again against the error proved over its own colors, first by the intervals, then, where
its bound is still within that, by the backward bound of
:mod:`pixelprior.scoring.cone.backward` (roundings carried with their signs through the
sure slopes). This measures, in one run:

1. the three errors over boxes of decreasing side at a few positions of each model's
   first images: the first-order estimate, the forward (interval) proof and the backward
   proof, as ratios to the estimate; and for the normally trained ResNet8 the backward
   proof with every ReLU taken as sure at a single color (not a proof: what stops it);
2. what it decides: images in exact mode with the same number of boxes (deterministic),
   with and without the backward bound (positions robust / vulnerable / unknown, and
   the seconds those boxes took: on this machine a 60-s budget bounds 41,000-50,000
   boxes of one image from run to run, which swings a budget-cut count by more than the
   bound does);
3. what it costs: ConvSmall's verified images in exact mode, with and without, each
   twice, alternating (seconds; the boxes must be the same where nothing is near the
   boundary).

"Without" sets the verifier's ``signed`` to ``None`` (what it did before); the product
has no switch for it.

    python benchmarks/signed_error.py [--boxes 30000] [--verified 4 5 6 7 9 10]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _setup import bench_inputs, position_counts, random_boxes, verified_side_by_side

from pixelprior import load_cifar10, load_model, to_float
from pixelprior.scoring.cone import intervals
from pixelprior.scoring.cone.backward import BackwardErrorBound
from pixelprior.scoring.cone.rounding import rounding_error
from pixelprior.scoring.cone.screen import IntervalScreen
from pixelprior.search.verify import Verifier, rounding_unit

SIDES = (1.0, 0.25, 0.05, 0.01, 0.0)
POSITIONS = torch.tensor([16 * 32 + 16, 5 * 32 + 20, 20 * 32 + 9, 3 * 32 + 3])
# (model, test index, boxes / the --boxes given): ConvSmall's fooled images with
# positions near the boundary, and ResNet8-IBP's fragile ones (25, 64: most of its
# exact-mode unknowns; its boxes cost ~20 times ConvSmall's)
DECIDE = [("convsmall-cifar10", 0, 1.0), ("convsmall-cifar10", 31, 1.0),
          ("resnet8-ibp-cifar10", 25, 0.05), ("resnet8-ibp-cifar10", 64, 0.05)]


def ratios(name: str, images: int) -> list[str]:
    """Rows: forward and backward proofs over one random box per side / the estimate."""
    model, x, y, pick = bench_inputs(images, name)
    unit = rounding_unit("cpu")
    screen = IntervalScreen(model, cone=False)
    signed = BackwardErrorBound(screen)
    rows = []
    for n in range(len(y)):
        image, label = x[n:n + 1], int(y[n])
        estimate = float(rounding_error(model, image, torch.tensor([label]), unit)[0])
        for side in SIDES:
            lo, hi = random_boxes(len(POSITIONS), side)
            forward = screen.bounds(image, POSITIONS, lo, hi, label, unit).error.max(1)
            backward = signed.errors(image, POSITIONS, lo, hi, label, unit).max(1)
            f = (forward.values / estimate).tolist()
            b = (backward.values / estimate).tolist()
            rows.append(f"| {name} | {int(pick[n])} | {estimate:.4f} | {side:g} | "
                        f"{statistics.median(f):.3g} | {statistics.median(b):.3g} | "
                        f"{max(b):.3g} |")
    return rows


def sure_slopes(name: str) -> str:
    """The backward bound at a single color with every activation's slope taken from
    the real value alone (the float32 error ignored where it decides a ReLU): not a
    proof, the bound the backward pass reaches once the slopes are known."""
    model, x, y, _ = bench_inputs(1, name)
    unit = rounding_unit("cpu")
    image, label = x[:1], int(y[0])
    signed = BackwardErrorBound(IntervalScreen(model, cone=False))
    color = torch.full((len(POSITIONS), 3), 0.3, dtype=torch.float64)
    estimate = float(rounding_error(model, image, torch.tensor([label]), unit)[0])
    proved = float(signed.errors(image, POSITIONS, color, color, label, unit).max())
    original = intervals.Activation.slopes
    intervals.Activation.slopes = lambda self, value: original(self, intervals.Interval(
        value.lower, value.upper, torch.zeros_like(value.error)))
    try:
        sure = float(signed.errors(image, POSITIONS, color, color, label, unit).max())
    finally:
        intervals.Activation.slopes = original
    return (f"{name}: at a color, backward proof {proved / estimate:.3g} x the estimate; "
            f"with the slopes of the real values alone {sure / estimate:.3g} x")


def exact(model, image, label, boxes: int | None, signed: bool):
    """One exact-mode verification (deterministic; at most ``boxes``), with or without
    the backward bound."""
    verifier = Verifier(model, budget=None, max_boxes=boxes, deterministic=True,
                        search=False)  # the bounds alone (benchmarks/local_search.py)
    if not signed:
        verifier.signed = None
    (result,) = verifier.verify(image, label, stop_at_first=False)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=30_000,
                        help="boxes per ConvSmall image in part 2 (ResNet8-IBP: 1/20)")
    parser.add_argument("--verified", type=int, nargs="*", default=[4, 5, 6, 7, 9, 10],
                        help="ConvSmall test indices of verified images")
    parser.add_argument("--error-images", type=int, default=2)
    args = parser.parse_args()

    print("\n1. float32 error proved over one box / the first-order estimate (median over "
          f"positions {POSITIONS.tolist()})\n")
    print("| model | test index | estimate | side | forward | backward | backward max |\n"
          "|---|---|---|---|---|---|---|")
    for name in ("convsmall-cifar10", "resnet8-ibp-cifar10", "resnet8-cifar10"):
        print("\n".join(ratios(name, args.error_images)), flush=True)
    print()
    for name in ("resnet8-cifar10", "squeezenet1_1-cifar10"):
        print(sure_slopes(name), flush=True)

    data = load_cifar10("auto")
    print("\n2. exact mode, the same boxes each way: robust / vulnerable / unknown "
          "positions, seconds\n")
    print("| model | test index | boxes | with the backward bound | s | without | s |\n"
          "|---|---|---|---|---|---|---|")
    for name, index, share in DECIDE:
        model = load_model(name).eval()
        image, label = to_float(data.images[[index]]), data.labels[[index]]
        boxes = int(args.boxes * share)
        both = exact(model, image, label, boxes, True)
        alone = exact(model, image, label, boxes, False)
        print(f"| {name} | {index} | {boxes:,} | {position_counts(both)} | {both.seconds:.1f} | "
              f"{position_counts(alone)} | {alone.seconds:.1f} |", flush=True)

    model = load_model("convsmall-cifar10").eval()
    print("\n3. ConvSmall verified images, exact mode, each twice: seconds\n")
    verified_side_by_side(data, args.verified, lambda image, label, with_it: exact(
        model, image, label, None, with_it))

if __name__ == "__main__":
    main()
