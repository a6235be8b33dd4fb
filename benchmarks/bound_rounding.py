"""How far rounding moves the bound engine's margins: float32 bounds against float64 ones.

The verifier computes its bounds in float64 and covers their rounding with a slack of
``FLOAT64_SLACK · (1 + max |logit|)`` (``pixelprior.search.verify``). That slack is an
estimate, not a worst-case bound; this measures what it estimates. The same boxes are
bounded by a float32 engine and a float64 one (``BoundEngine(model, dtype=...)``); the
float32 bounds' distance from the float64 ones is float32's rounding error (float64's own
is 2^29 times smaller in unit), so ``2^-29 ×`` that distance estimates float64's error,
which is printed beside the slack.

Boxes: for each model, its first ``--images`` correctly classified test images,
``--positions`` random positions each, boxes of each ``--sides`` at a random place in the
color cube (side 0: a single color). Printed per model and side: the largest and median
``|lower_32 - lower_64| / (1 + max |logit|)`` over the boxes' finite margin bounds, the
float64 estimate, and how many times the slack exceeds it.

    python benchmarks/bound_rounding.py [--models convsmall-cifar10 resnet8-cifar10
        squeezenet1_1-cifar10] [--images 2] [--positions 8] [--sides 1 0.25 0.0625 0]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _setup import bench_inputs

from pixelprior.scoring.cone.bounds import BoundEngine
from pixelprior.search.verify import FLOAT64_SLACK

UNIT_RATIO = 2.0**-29  # float64's unit roundoff over float32's


def distances(model, engines: dict, image, label, side: float, positions: int,
              generator: torch.Generator) -> list[float]:
    """``|lower_32 - lower_64| / (1 + max |logit|)`` over the finite margin bounds of
    ``positions`` random boxes of ``side`` (``engines``: dtype → its bound engine)."""
    height, width = image.shape[-2:]
    y = torch.randint(0, height, (positions,), generator=generator)
    x = torch.randint(0, width, (positions,), generator=generator)
    lo = torch.rand(positions, image.shape[1], generator=generator, dtype=torch.float64)
    lo = lo * (1 - side)
    hi = lo + side
    lower = {}
    for dtype, engine in engines.items():
        cache = engine.prepare(image)
        rows = []
        for n in range(positions):  # one box per call: the calls' sizes stay small
            bounds = engine.margins(cache, torch.zeros(1, dtype=torch.long), y[n:n + 1],
                                    x[n:n + 1], lo[n:n + 1], hi[n:n + 1],
                                    torch.tensor([label]))
            rows.append(bounds.lower.double())
        lower[dtype] = torch.cat(rows)
    with torch.inference_mode():
        scale = 1 + float(model(image).abs().max())
    a, b = lower[torch.float32], lower[torch.float64]
    finite = torch.isfinite(a) & torch.isfinite(b)
    return ((a - b).abs()[finite] / scale).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["convsmall-cifar10", "resnet8-cifar10",
                                                        "squeezenet1_1-cifar10"])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--positions", type=int, default=8)
    parser.add_argument("--sides", nargs="+", type=float, default=[1.0, 0.25, 0.0625, 0.0])
    args = parser.parse_args()
    print(f"FLOAT64_SLACK = {FLOAT64_SLACK:g}")
    rows = []
    for name in args.models:
        model, images, labels, pick = bench_inputs(args.images, name)
        engines = {dtype: BoundEngine(model, dtype) for dtype in (torch.float64, torch.float32)}
        for side in args.sides:
            generator = torch.Generator().manual_seed(0)
            found: list[float] = []
            for i in range(len(pick)):
                found += distances(model, engines, images[i:i + 1], int(labels[i]), side,
                                   args.positions, generator)
            largest = max(found)
            estimate = largest * UNIT_RATIO
            ratio = f"{FLOAT64_SLACK / estimate:,.0f}×" if estimate > 0 else "∞"
            rows.append(f"| {name} | {side:g} | {args.positions * len(pick)} | "
                        f"{largest:.2e} | {statistics.median(found):.2e} | {estimate:.2e} | "
                        f"{ratio} |")
    print("| model | side | boxes | largest |Δ32| / (1 + max|z|) | median | float64 "
          "estimate (× 2^-29) | slack / estimate |\n|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
