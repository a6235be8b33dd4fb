"""How the verifier's box-size rule spends a position's time, side by side in one run.

The verifier halves a box without a bound call where its size (level: ``-log2`` of the
volume) does not pay for its calls on the image (``pixelprior.search.verify._Levels``).
This runs the ``--positions`` most robust positions of one test image (the last of the
corner order: every one of them is proved, so their time is all bounding) to the end,
``stop_at_first=False``, no budget, under each rule:

* ``cost``: the verifier's rule (skip a level where ``q · 2 · V_half < c``: its proof
  rate, its symbols per box and the expected cost of its halves);
* ``rate``: the earlier rule, kept here for the comparison (skip only a level proving
  in fewer than 1 of 32 calls);
* ``none`` (with ``--rules none``): every box bounded.

Printed per rule: seconds, boxes bounded, boxes per position, and per level the calls,
proofs and boxes halved without a call; then the ratios of seconds.

    python benchmarks/verify_positions.py [--model resnet8-cifar10] [--image 0]
        [--positions 3] [--rules cost rate]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from pixelprior import Verifier, load_cifar10, load_model, to_float
from pixelprior.experiment import correctly_classified
from pixelprior.search import verify as verify_module

RULES = ("cost", "rate", "none")


def rate_only(self) -> dict[int, bool]:
    """The earlier rule: skip a level with enough calls and a proof rate below 1/32."""
    return {level: self.proved[level] < verify_module.SKIP_RATE * tries
            for level, tries in self.bounded.items() if tries >= verify_module.SKIP_TRIES}


def run(rule: str, model, image, label, positions: torch.Tensor) -> dict:
    created: list = []
    base = verify_module._Levels

    class Recorded(base):
        def __init__(self) -> None:
            super().__init__()
            created.append(self)

        def _decide(self) -> dict[int, bool]:
            if rule == "rate":
                return rate_only(self)
            if rule == "none":
                return {}
            return super()._decide()

    verify_module._Levels = Recorded
    try:
        verifier = Verifier(model, budget=None, deterministic=False)
        began = time.perf_counter()
        (result,) = verifier.verify(image, label, orders=positions, stop_at_first=False)
        seconds = time.perf_counter() - began
    finally:
        verify_module._Levels = base
    levels = created[-1]
    picked = positions[0].tolist()
    return {"seconds": seconds, "boxes": result.boxes,
            "per_position": [int(result.positions.boxes[p]) for p in picked],
            "status": [result.positions.status[p] for p in picked],
            "levels": {level: (levels.bounded[level], levels.proved[level],
                               levels.skipped[level]
                               - levels.skipped[level] // verify_module.EXPLORE)
                       for level in sorted(set(levels.bounded) | set(levels.skipped))}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet8-cifar10")
    parser.add_argument("--image", type=int, default=0,
                        help="which correctly classified test image (0: the first)")
    parser.add_argument("--positions", type=int, default=3)
    parser.add_argument("--rules", nargs="+", choices=RULES, default=["cost", "rate"])
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_model(args.model).eval()
    data = load_cifar10("auto")
    pick = correctly_classified(model, data, args.image + 1)[args.image:]
    image, label = to_float(data.images[pick]), data.labels[pick]
    order = Verifier(model).corner_order(image, label)
    positions = order[:, -args.positions:]
    print(f"{args.model}, {data.source} test image {int(pick[0])}, the "
          f"{args.positions} most robust positions {positions[0].tolist()}; "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
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
