"""How tight and how costly the verifier's bounds are, by box size: what decides whether a
network can be verified in minutes.

For each model, its first ``--images`` correctly classified CIFAR-10 test images (the
official test batch under ``PIXELPRIOR_DATA``, else the bundled first 100) and
``--positions`` positions per image (those with the lowest corner-color margins, where a
proof is hardest, then the image's center), one box of colors per size, centered at the
pixel's own color and cut to the cube (side 1: the whole cube). Printed per model and
side, medians over the boxes:

* ``bound``: the lowest margin lower bound the engine proves over the box (> 0: proved);
* ``grid min``: the lowest margin over 7³ colors of the box (an upper bound of the true
  minimum; the gap to ``bound`` is the bound's looseness);
* ``proved``: the share of boxes with ``bound > 0``;
* ``symbols`` and ``s/box``: the error symbols the box carries and its seconds (one box
  per call, 2 threads);
* ``s/position``: ``s/box`` × the boxes of this side that tile the cube: the cost of
  proving a position with uniform boxes of this side, a floor where ``proved`` is 1 and an
  underestimate where it is not.

A box past ``--max-symbols`` symbols is not bounded (counted as ``too many``).

    python benchmarks/verify_box_sizes.py [--models convsmall-cifar10 resnet8-cifar10
        squeezenet1_1-cifar10] [--images 2] [--positions 3]
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import torch

from pixelprior import load_cifar10, load_model, to_float
from pixelprior.experiment import correctly_classified
from pixelprior.scoring import perturb_rows
from pixelprior.scoring.cone.bounds import BoundEngine, TooManySymbols
from pixelprior.search import SusceptibilityScan

SIDES = (1.0, 0.5, 0.25, 0.1, 0.04)


def positions_of(model, image: torch.Tensor, label: torch.Tensor, count: int) -> list:
    """The ``count - 1`` positions of the lowest corner margins, and the center."""
    margins = SusceptibilityScan(model, 2, batch_invariant=True)(image, label).min_margin[0]
    width = margins.shape[1]
    low = margins.flatten().argsort()[:count - 1].tolist()
    center = (margins.shape[0] // 2) * width + width // 2
    return [(p // width, p % width) for p in [*low, center]]


def grid_min(model, image: torch.Tensor, label: int, y: int, x: int, lo: torch.Tensor,
             hi: torch.Tensor) -> float:
    """The lowest margin over 7³ colors of the box ``[lo, hi]`` at ``(y, x)``."""
    steps = torch.linspace(0, 1, 7)
    colors = lo + (hi - lo) * torch.cartesian_prod(steps, steps, steps)
    genes = torch.cat([torch.tensor([[x, y]] * len(colors)).float(), colors], 1)[:, None]
    with torch.no_grad():
        scores = model(perturb_rows(image, torch.zeros(len(colors), dtype=torch.long), genes))
    own = scores[:, label].clone()
    scores[:, label] = -math.inf
    return float((own - scores.max(1).values).min())


def measure(name: str, images: int, positions: int, max_symbols: int) -> None:
    model = load_model(name).eval()
    data = load_cifar10("auto")
    pick = correctly_classified(model, data, images)
    batch, labels = to_float(data.images[pick]), data.labels[pick]
    engine = BoundEngine(model)
    table: dict[float, dict[str, list]] = {side: {"bound": [], "grid": [], "symbols": [],
                                                  "seconds": [], "too_many": 0}
                                           for side in SIDES}
    for n in range(len(labels)):
        image, label = batch[n:n + 1], labels[n:n + 1]
        cache = engine.prepare(image)
        for y, x in positions_of(model, image, label, positions):
            color = image[0, :, y, x]
            for side in SIDES:
                lo = (color - side / 2).clamp(0, 1)
                hi = (color + side / 2).clamp(0, 1)
                if side == 1.0:
                    lo, hi = torch.zeros(3), torch.ones(3)
                began = time.perf_counter()
                try:
                    bounds = engine.margins(cache, torch.zeros(1, dtype=torch.long),
                                            torch.tensor([y]), torch.tensor([x]), lo[None],
                                            hi[None], label.long(), max_symbols=max_symbols)
                except TooManySymbols:
                    table[side]["too_many"] += 1
                    continue
                row = table[side]
                row["seconds"].append(time.perf_counter() - began)
                row["bound"].append(float(bounds.worst[0]))
                row["symbols"].append(bounds.symbols)
                row["grid"].append(grid_min(model, image, int(label), y, x, lo, hi))
    print(f"\n### {name}: {len(labels)} images × {positions} positions (indices "
          f"{pick.tolist()})\n")
    print("| side | bound (median) | grid min (median) | proved | symbols (median) | "
          "s/box (median) | boxes per cube | s/position | too many |")
    print("|---|---|---|---|---|---|---|---|---|")
    for side in SIDES:
        row = table[side]
        tiles = math.ceil(1 / side) ** 3
        if not row["bound"]:
            print(f"| {side:g} | – | – | – | > {max_symbols:,} | – | {tiles:,} | – | "
                  f"{row['too_many']} |")
            continue
        proved = sum(b > 0 for b in row["bound"]) / len(row["bound"])
        per_box = statistics.median(row["seconds"])
        print(f"| {side:g} | {statistics.median(row['bound']):.3g} | "
              f"{statistics.median(row['grid']):.3g} | {proved:.2f} | "
              f"{statistics.median(row['symbols']):,.0f} | {per_box:.3f} | {tiles:,} | "
              f"{per_box * tiles:,.1f} | {row['too_many']} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["convsmall-cifar10",
                                                         "resnet8-cifar10",
                                                         "squeezenet1_1-cifar10"])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--positions", type=int, default=3)
    parser.add_argument("--max-symbols", type=int, default=8192)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    for name in args.models:
        began = time.perf_counter()
        measure(name, args.images, args.positions, args.max_symbols)
        print(f"({time.perf_counter() - began:.0f} s for {name})", flush=True)


if __name__ == "__main__":
    main()
