"""The verifier's softplus rule against the generic Lipschitz rule it replaced.

PyTorch's softplus is ``log(1 + e^{βx}) / β`` up to ``βx = threshold``, then ``x``. The
generic rule (:class:`~pixelprior.scoring.cone.zonotope.Lipschitz`: the chord and a
17-point grid, slack linear in the range's width, the whole jump at every neuron) against
the convex one (``Softplus``: the rest's extremes found exactly, the jump only where a
range holds the switch). Printed:

1. per setting ``(β, threshold)``, the sum over 3,000 random ranges (centres uniform in
   [-4, 4], widths log-uniform in [1e-4, 10]) of each rule's radius plus its jump term,
   new / old, per band of widths;
2. the proved float64 rounding bound of a random softplus network's margins (the bound
   engine on boxes of width 0, ``bounds.rounding``), beside the jump the generic rule
   added at every neuron.

    python benchmarks/softplus_rule.py [--ranges 3000]
"""

from __future__ import annotations

import argparse
import platform

import torch
import torch.nn.functional as F
from torch import nn

from pixelprior.scoring.cone import table
from pixelprior.scoring.cone.bounds import BoundEngine
from pixelprior.scoring.cone.operators.activations import softplus_jump
from pixelprior.scoring.cone.zonotope import Lipschitz

SETTINGS = [(1.0, 20.0), (1.0, 0.3), (2.0, 1.0), (3.0, 5.0)]
BANDS = [(1e-4, 1e-2), (1e-2, 0.1), (0.1, 1.0), (1.0, 10.0)]


def generic(beta: float, threshold: float) -> Lipschitz:
    """The rule softplus had before its own: any Lipschitz function with a jump."""
    return Lipschitz(lambda t: F.softplus(t, beta, threshold), 1.0,
                     jump=softplus_jump(beta, threshold))


def radii(ranges: int) -> None:
    print("| β, threshold | " + " | ".join(f"widths [{lo:g}, {hi:g})" for lo, hi in BANDS)
          + " |\n|---|" + "---|" * len(BANDS))
    for beta, threshold in SETTINGS:
        new = table.OPERATIONS.get("softplus").bound({"beta": beta, "threshold": threshold})
        old = generic(beta, threshold)
        generator = torch.Generator().manual_seed(3)
        centers = (torch.rand(ranges, generator=generator, dtype=torch.float64) - 0.5) * 8
        widths = 10 ** (torch.rand(ranges, generator=generator, dtype=torch.float64) * 5 - 4)
        lower, upper = centers - widths / 2, centers + widths / 2
        ours = new.coefficients(lower, upper)[2] + new.jump_within(lower, upper)
        theirs = old.coefficients(lower, upper)[2] + old.jump
        cells = []
        for lo, hi in BANDS:
            band = (widths >= lo) & (widths < hi)
            cells.append(f"{float(ours[band].sum() / theirs[band].sum()):.3f}")
        print(f"| {beta:g}, {threshold:g} | " + " | ".join(cells) + " |")


class Smooth(nn.Module):
    """Two convolutions and a head, softplus between (the tests' network)."""

    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.act, self.fc = act, nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.c2(self.act(self.c1(x)))).flatten(1))


def rounding(threshold: float) -> float:
    """The proved float64 rounding of a random softplus network's margins (width-0 boxes
    at 4 positions)."""
    torch.manual_seed(0)
    model = Smooth(nn.Softplus(2.0, threshold)).eval()
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    owner, y, x = torch.zeros(4, dtype=torch.long), torch.tensor([0, 3, 7, 4]), torch.tensor(
        [5, 7, 0, 4])
    color = torch.rand(4, 3, generator=torch.Generator().manual_seed(6)).double()
    labels = model(image).argmax(1).expand(4)
    engine = BoundEngine(model, torch.float64)
    bounds = engine.margins(engine.prepare(image), owner, y, x, color, color, labels)
    return float(bounds.rounding.max())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranges", type=int, default=3000)
    args = parser.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}\n")
    print("1. radius + jump term, softplus's rule / the generic rule (sums per band)\n")
    radii(args.ranges)
    print("\n2. proved float64 rounding of a random softplus network's margins (β = 2)\n")
    print("| threshold | proved rounding | the generic rule's jump, at every neuron |\n"
          "|---|---|---|")
    for threshold in (20.0, 4.0):
        print(f"| {threshold:g} | {rounding(threshold):.2g} | "
              f"{softplus_jump(2.0, threshold):.2g} |")


if __name__ == "__main__":
    main()
