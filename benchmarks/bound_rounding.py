"""How far rounding moves the bound engine's margins, and what its proved error bound says.

The bound engine carries a bound of its own float error through every operation and
takes it off its margins (``MarginBounds.rounding``), so its bounds hold for the network
in real arithmetic. This measures how tight that proof is. The same boxes are bounded by
a float32 engine and a float64 one (``BoundEngine(model, dtype=...)``); the distance of
their bounds as computed (before the error bound is taken off) is float32's measured
rounding error (float64's own is 2^29 times smaller in unit), printed beside the float32
engine's proved bound of it, and the float64 engine's proved bound (what the verifier
takes off).

Boxes: for each model, its first ``--images`` correctly classified test images,
``--positions`` random positions each, boxes of each ``--sides`` at a random place in the
color cube (side 0: a single color). Printed per model and side, relative to
``1 + max |logit|``, over the boxes' finite margin bounds: the largest and median
measured ``|computed_32 - computed_64|``, the largest proved float32 bound and its ratio
to the measured error, and the largest proved float64 bound.

    python benchmarks/bound_rounding.py [--models convsmall-cifar10 resnet8-cifar10
        squeezenet1_1-cifar10] [--images 2] [--positions 8] [--sides 1 0.25 0.0625 0]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _setup import BUNDLED_MODELS, bench_inputs

from pixelprior.scoring.cone.bounds import BoundEngine


def distances(model, engines: dict, image, label, side: float, positions: int,
              generator: torch.Generator) -> dict[str, list[float]]:
    """Over the finite margin bounds of ``positions`` random boxes of ``side``
    (``engines``: dtype → its bound engine), relative to ``1 + max |logit|``:
    ``measured`` ``|computed_32 - computed_64|``, and each engine's proved error bound."""
    height, width = image.shape[-2:]
    y = torch.randint(0, height, (positions,), generator=generator)
    x = torch.randint(0, width, (positions,), generator=generator)
    lo = torch.rand(positions, image.shape[1], generator=generator, dtype=torch.float64)
    lo = lo * (1 - side)
    hi = lo + side
    computed, proved = {}, {}
    for dtype, engine in engines.items():
        cache = engine.prepare(image)
        rows, errors = [], []
        for n in range(positions):  # one box per call: the calls' sizes stay small
            bounds = engine.margins(cache, torch.zeros(1, dtype=torch.long), y[n:n + 1],
                                    x[n:n + 1], lo[n:n + 1], hi[n:n + 1],
                                    torch.tensor([label]))
            rows.append(bounds.computed.double())
            errors.append(bounds.rounding.double())
        computed[dtype], proved[dtype] = torch.cat(rows), torch.cat(errors)
    with torch.inference_mode():
        scale = 1 + float(model(image).abs().max())
    a, b = computed[torch.float32], computed[torch.float64]
    finite = torch.isfinite(a) & torch.isfinite(b)
    return {"measured": ((a - b).abs()[finite] / scale).tolist(),
            "float32": (proved[torch.float32][finite] / scale).tolist(),
            "float64": (proved[torch.float64][finite] / scale).tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=BUNDLED_MODELS)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--positions", type=int, default=8)
    parser.add_argument("--sides", nargs="+", type=float, default=[1.0, 0.25, 0.0625, 0.0])
    args = parser.parse_args()
    rows = []
    for name in args.models:
        model, images, labels, pick = bench_inputs(args.images, name)
        engines = {dtype: BoundEngine(model, dtype) for dtype in (torch.float64, torch.float32)}
        for side in args.sides:
            generator = torch.Generator().manual_seed(0)
            found: dict[str, list[float]] = {"measured": [], "float32": [], "float64": []}
            for i in range(len(pick)):
                for key, values in distances(model, engines, images[i:i + 1], int(labels[i]),
                                             side, args.positions, generator).items():
                    found[key] += values
            measured, proved = max(found["measured"]), max(found["float32"])
            ratio = f"{proved / measured:,.0f}×" if measured > 0 else "∞"
            rows.append(f"| {name} | {side:g} | {args.positions * len(pick)} | "
                        f"{measured:.2e} | {statistics.median(found['measured']):.2e} | "
                        f"{proved:.2e} | {ratio} | {max(found['float64']):.2e} |")
    print("| model | side | boxes | measured |Δ32| / (1 + max|z|), largest | median | "
          "proved float32 bound | proved / measured | proved float64 bound (the verifier's) |"
          "\n|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
