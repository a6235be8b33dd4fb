"""Affine outputs taken as they come against copied ones, side by side, on boxes of the
size the verifier proves on the SqueezeNet (its fire modules' convolutions and
concatenations write hundreds of MB of float64 symbols).

The bound engine takes each affine operation's output as it comes, subtracting its value
at zero from the generators in place where that value is not exactly zero
(``pixelprior.scoring.cone.bounds._generators_from``); before, every output was copied
and the value at zero always subtracted. On the first correctly classified test image,
``--positions`` positions (a fixed spread over the image) each get one box of ``--side``
(``lo = 0.45`` per channel), bounded one box per call both ways, alternating,
``--repeats`` times; printed per position: the faster time each way, their ratio, and
whether the bounds are the same bit for bit. (A short verifier run does not show it: with
a small box budget its time goes to the corner pass, the cut whole-cube boxes and the
local search; in the issue's 10-minute runs it goes to boxes of side 1/16, ~2 s each.)

    python benchmarks/affine_output.py [--model squeezenet1_1-cifar10] [--side 0.0625]
        [--positions 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _setup import bench_inputs

from pixelprior.scoring.cone import bounds
from pixelprior.scoring.cone.bounds import BoundEngine


def copied(out: torch.Tensor, at_zero: torch.Tensor, arguments: object) -> torch.Tensor:
    """The output handling before: always a copy, the value at zero always subtracted."""
    out = out.clone()
    out[:, 1:] -= at_zero
    return out


def timed(engine: BoundEngine, cache: object, where: tuple, handling) -> tuple:
    """One bound call with ``handling`` as the engine's output handling: seconds, bounds."""
    kept, bounds._generators_from = bounds._generators_from, handling
    try:
        start = time.perf_counter()
        out = engine.margins(cache, *where)
        return time.perf_counter() - start, out
    finally:
        bounds._generators_from = kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="squeezenet1_1-cifar10")
    parser.add_argument("--side", type=float, default=0.0625)
    parser.add_argument("--positions", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    model, images, labels, picked = bench_inputs(1, args.model)
    engine = BoundEngine(model)
    cache = engine.prepare(images[:1])
    ways = {"as they come": bounds._generators_from, "copied": copied}
    height, width = images.shape[-2:]
    lo = torch.full((1, 3), 0.45, dtype=torch.float64)
    print(f"{args.model}, test image {int(picked[0])}, one box of side {args.side} per "
          f"call, the faster of {args.repeats}\n")
    print("| position | as they come s | copied s | ratio | symbols | same bounds |\n"
          "|---|---|---|---|---|---|")
    ratios = []
    for n in range(args.positions):
        y, x = (5 + 7 * n) % height, (9 + 11 * n) % width
        where = (torch.zeros(1, dtype=torch.long), torch.tensor([y]), torch.tensor([x]),
                 lo, lo + args.side, labels[:1])
        seconds: dict[str, list[float]] = {name: [] for name in ways}
        out = {}
        for _ in range(args.repeats):
            for name, handling in ways.items():
                took, out[name] = timed(engine, cache, where, handling)
                seconds[name].append(took)
        same = all(torch.equal(getattr(out["as they come"], f), getattr(out["copied"], f))
                   for f in ("lower", "upper", "rounding", "computed", "inputs"))
        fast, slow = min(seconds["as they come"]), min(seconds["copied"])
        ratios.append(slow / fast)
        print(f"| ({x}, {y}) | {fast:.2f} | {slow:.2f} | {slow / fast:.2f}x | "
              f"{out['as they come'].symbols:,} | {same} |")
    print(f"\nmedian ratio (copied / as they come): {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
