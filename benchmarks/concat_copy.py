"""Concatenations taken as they come (``Affine.copies``) against the generic affine path,
side by side, on boxes of the size the verifier proves on a model with concatenations
(the SqueezeNet's fire modules).

On the first correctly classified test image, ``--positions`` positions (a fixed
spread over the image) each get one box of ``--side`` (``lo = 0.45`` per channel),
bounded one box per call by the zonotope engine both ways, alternating, ``--repeats``
times; printed per position: the faster time each way, their ratio, and whether the
bounds are the same bit for bit. (A short verifier run does not show it: with a small
box budget its time goes to the corner pass, the cut whole-cube boxes and the local
search; in the issue's 10-minute runs it goes to boxes of side 1/16, ~2 s each.)

    python benchmarks/concat_copy.py [--model squeezenet1_1-cifar10] [--side 0.0625]
        [--positions 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch
from _setup import bench_inputs

from pixelprior.scoring.cone.bounds import BoundEngine
from pixelprior.scoring.cone.zonotope import Affine


def generic(engine: BoundEngine) -> BoundEngine:
    """The engine with every rule's ``copies`` turned off (the generic affine path)."""
    plain = engine._rule

    def rule(step):
        made = plain(step)
        return dataclasses.replace(made, copies=False) if isinstance(made, Affine) else made

    engine._rule = rule
    return engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="squeezenet1_1-cifar10")
    parser.add_argument("--side", type=float, default=0.0625)
    parser.add_argument("--positions", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    model, images, labels, picked = bench_inputs(1, args.model)
    ways = {"copies": BoundEngine(model), "generic": generic(BoundEngine(model))}
    caches = {name: engine.prepare(images[:1]) for name, engine in ways.items()}
    height, width = images.shape[-2:]
    lo = torch.full((1, 3), 0.45, dtype=torch.float64)
    print(f"{args.model}, test image {int(picked[0])}, one box of side {args.side} per "
          f"call, the faster of {args.repeats}\n")
    print("| position | copies s | generic s | ratio | symbols | same bounds |\n"
          "|---|---|---|---|---|---|")
    ratios = []
    for n in range(args.positions):
        y, x = (5 + 7 * n) % height, (9 + 11 * n) % width
        where = (torch.zeros(1, dtype=torch.long), torch.tensor([y]), torch.tensor([x]),
                 lo, lo + args.side, labels[:1])
        seconds: dict[str, list[float]] = {name: [] for name in ways}
        out = {}
        for _ in range(args.repeats):
            for name, engine in ways.items():
                start = time.perf_counter()
                out[name] = engine.margins(caches[name], *where)
                seconds[name].append(time.perf_counter() - start)
        same = all(torch.equal(getattr(out["copies"], f), getattr(out["generic"], f))
                   for f in ("lower", "upper", "rounding", "computed", "inputs"))
        fast, slow = min(seconds["copies"]), min(seconds["generic"])
        ratios.append(slow / fast)
        print(f"| ({x}, {y}) | {fast:.2f} | {slow:.2f} | {slow / fast:.2f}x | "
              f"{out['copies'].symbols:,} | {same} |")
    print(f"\nmedian ratio (generic / copies): {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
