"""What the verifier's box-size rule saves on a position, side by side in one run.

The verifier halves a box without a bound call where its size (level: ``-log2`` of the
volume) seldom proves on the image (``pixelprior.search.verify._Levels``). This runs the
``--positions`` most robust positions of one test image (the last of the corner order:
every one of them is proved, so their time is all bounding) to the end,
``stop_at_first=False``, no budget, under each rule:

* ``rate``: the verifier's rule (a level with 16 or more calls proving in fewer than 1
  of 32 is halved without a call, one box in 32 still bounded);
* ``none``: every box bounded.

Printed per rule: seconds, boxes bounded, boxes per position, and per level the calls,
proofs and boxes halved without a call; then the ratio of seconds. (At commit e9fa388
the same script also ran a rule pricing each level by its symbols per box: see
``benchmarks/RESULTS.md`` for why it was not kept.)

    python benchmarks/verify_positions.py [--model resnet8-cifar10] [--image 0]
        [--positions 3] [--rules rate none]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _setup import bench_inputs

from pixelprior import Verifier
from pixelprior.search import verify as verify_module

RULES = ("rate", "none")


def run(rule: str, model, image, label, positions: torch.Tensor) -> dict:
    created: list = []
    base = verify_module._Levels
    init, skip = base.__init__, base.skip

    def recorded_init(self) -> None:
        init(self)
        created.append(self)

    def recorded_skip(self, levels: np.ndarray, small: np.ndarray) -> np.ndarray:
        if rule == "none":
            return np.zeros(levels.size, dtype=bool)
        return skip(self, levels, small)

    base.__init__, base.skip = recorded_init, recorded_skip
    try:
        verifier = Verifier(model, budget=None)
        began = time.perf_counter()
        (result,) = verifier.verify(image, label, orders=positions, stop_at_first=False)
        seconds = time.perf_counter() - began
    finally:
        base.__init__, base.skip = init, skip
    levels = created[-1]
    picked = positions[0].tolist()
    explore = verify_module.EXPLORE
    return {"seconds": seconds, "boxes": result.boxes,
            "per_position": [int(result.positions.boxes[p]) for p in picked],
            "status": [result.positions.status[p] for p in picked],
            "levels": {level: (levels.bounded[level], levels.proved[level],
                               levels.skipped[level] - levels.skipped[level] // explore)
                       for level in sorted(set(levels.bounded) | set(levels.skipped))}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet8-cifar10")
    parser.add_argument("--image", type=int, default=0,
                        help="which correctly classified test image (0: the first)")
    parser.add_argument("--positions", type=int, default=3)
    parser.add_argument("--rules", nargs="+", choices=RULES, default=list(RULES))
    args = parser.parse_args()
    torch.manual_seed(0)
    model, images, labels, pick = bench_inputs(args.image + 1, args.model)
    image, label = images[-1:], labels[-1:]
    order = Verifier(model).corner_order(image, label)
    positions = order[:, -args.positions:]
    print(f"{args.model}, test index {int(pick[-1])}, the {args.positions} most robust "
          f"positions {positions[0].tolist()}")
    results = {}
    for rule in args.rules:
        results[rule] = r = run(rule, model, image, label, positions)
        print(f"\n{rule}: {r['seconds']:.1f} s, {r['boxes']} boxes, per position "
              f"{r['per_position']} ({', '.join(r['status'])})")
        print("| level | calls | proved | halved without a call |\n|---|---|---|---|")
        for level, (calls, proved, skipped) in r["levels"].items():
            print(f"| {level} | {calls} | {proved} | {skipped} |")
    first = args.rules[0]
    for rule in args.rules[1:]:
        print(f"\n{rule} / {first} seconds: "
              f"{results[rule]['seconds'] / results[first]['seconds']:.2f}×")


if __name__ == "__main__":
    main()
