"""A box proved for the float32 model by its own error bound, without also clearing the
estimate's tolerance: side by side with the floor it had before.

At a float32-proved position a box near the decision boundary is judged against the
float32 error proved over its own colors (the intervals', then the backward bound's).
Until this change that threshold was never below the image's tolerance estimate (twice
the first-order estimate), although a box whose margin bound exceeds a proved bound of
its float32 error is already proved for the float32 model; now, with the derived
tolerance, the proved error alone is the threshold (a set tolerance stays the floor).
Since more boxes near the boundary are bounded again, a box whose margin bound is below
``ERROR_SKIP`` of the least error a bound has proved over a box of the image as small or
smaller is skipped (it is unlikely to prove). This measures, in one run:

1. what it decides: ConvSmall's fooled images with positions near the boundary, in
   exact mode with the same number of boxes (deterministic), three ways: the floor at the
   estimate (before), the proved error alone without the skip, and with it (the product);
   positions robust / vulnerable / unknown and the seconds those boxes took;
2. what it costs where nothing is near the boundary: ConvSmall's verified images, before
   and now, each twice, alternating (the boxes must be the same);
3. why: over the first image's boxes (no skip), the float32 error each bound proves over
   the boxes it is asked for, as multiples of the first-order estimate at the clean
   image (the old floor was 2), and how many of them prove.

"Before" sets each image's floor back to its tolerance (a subclass of the verifier: the
product has no switch for it); "without the skip" sets ``ERROR_SKIP`` to 0.

    python benchmarks/proved_floor.py [--boxes 30000] [--images 0 31 62]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _setup import position_counts, verified_side_by_side

from pixelprior import load_cifar10, load_model, to_float
from pixelprior.scoring.cone.rounding import SAFETY
from pixelprior.search import verify
from pixelprior.search.verify import SCREEN_CHUNK, SIGNED_CHUNK, Verifier


class _EstimateFloor(Verifier):
    """The verifier as it was: a float32-proved box never judged below the estimate."""

    def _start(self, *args, **kwargs):
        run = super()._start(*args, **kwargs)
        run.floor = run.tolerance
        return run


def exact(model, image, label, boxes: int | None, floor: str):
    """One exact-mode verification (deterministic; at most ``boxes``) with the floor
    ``"estimate"`` (before), ``"proved"`` (without the skip) or ``"product"``."""
    kind = _EstimateFloor if floor == "estimate" else Verifier
    skip = verify.ERROR_SKIP
    verify.ERROR_SKIP = 0.0 if floor != "product" else skip
    try:
        # the local search off: this measures what the bounds decide (it would add the
        # same kind of witnesses to every column, benchmarks/local_search.py)
        verifier = kind(model, budget=None, max_boxes=boxes, deterministic=True,
                        search=False)
        began = time.perf_counter()
        (result,) = verifier.verify(image, label, stop_at_first=False)
        result.seconds = time.perf_counter() - began
    finally:
        verify.ERROR_SKIP = skip
    return result


def error_ratios(model, image, label, boxes: int) -> list[str]:
    """Rows: per bound, the errors it proved over the boxes it was asked for (no skip) /
    the first-order estimate, their quantiles, and how many boxes they proved."""
    logged: dict[int, list] = {}
    lower_to = Verifier._lower_to

    def logging(needed, rows, worst, level, least, near, floor, chunk, errors):
        def logged_errors(part):
            error = errors(part)
            kept = error.cpu().numpy()
            if near is not None:
                kept = np.where(near[part], kept, 0.0)
            logged.setdefault(chunk, []).append(np.stack([worst[part], kept.max(1)], 1))
            return error
        lower_to(needed, rows, worst, level, least, near, floor, chunk, logged_errors)

    Verifier._lower_to = staticmethod(logging)
    try:
        exact(model, image, label, boxes, "proved")
    finally:
        Verifier._lower_to = staticmethod(lower_to)
    estimate = Verifier(model).tolerance_of(image, int(label)) / SAFETY
    rows = []
    for chunk, name in ((SCREEN_CHUNK["cpu"], "intervals"), (SIGNED_CHUNK, "backward")):
        found = np.concatenate(logged.get(chunk, [np.zeros((0, 2))]))
        if not len(found):
            continue
        ratio = np.quantile(found[:, 1] / estimate, [0, 0.1, 0.5, 0.9, 1])
        rows.append(f"| {name} | {len(found):,} | {' / '.join(f'{q:.2f}' for q in ratio)} "
                    f"| {int((found[:, 0] > found[:, 1]).sum()):,} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=30_000, help="boxes per image in part 1")
    parser.add_argument("--images", type=int, nargs="*", default=[0, 31, 62],
                        help="ConvSmall test indices of fooled images (part 1)")
    parser.add_argument("--verified", type=int, nargs="*", default=[4, 5, 6, 7, 9, 10],
                        help="ConvSmall test indices of verified images (part 2)")
    args = parser.parse_args()
    data = load_cifar10("auto")
    model = load_model("convsmall-cifar10").eval()

    print(f"\n1. exact mode at {args.boxes:,} boxes per image (deterministic): positions "
          "robust / vulnerable / unknown, seconds\n")
    print("| test index | floor at the estimate (before) | proved error, no skip | "
          "proved error, skip (now) |\n|---|---|---|---|")
    for index in args.images:
        image, label = to_float(data.images[[index]]), data.labels[[index]]
        cells = []
        for floor in ("estimate", "proved", "product"):
            result = exact(model, image, label, args.boxes, floor)
            cells.append(f"{position_counts(result)}, {result.seconds:.1f} s")
        print(f"| {index} | " + " | ".join(cells) + " |", flush=True)

    print("\n2. ConvSmall's verified images in exact mode, now (with) and before (without), "
          "each twice, alternating (seconds)\n")
    verified_side_by_side(data, args.verified,
                          lambda image, label, now: exact(model, image, label, None,
                                                          "product" if now else "estimate"))

    index = args.images[0]
    print(f"\n3. test index {index}, {args.boxes:,} boxes, no skip: the float32 error "
          "proved over each box a bound is asked for / the first-order estimate\n")
    print("| bound | boxes | quantiles 0 / 10 / 50 / 90 / 100% | proved |\n|---|---|---|---|")
    print("\n".join(error_ratios(model, to_float(data.images[[index]]),
                                data.labels[[index]], args.boxes)))


if __name__ == "__main__":
    main()
