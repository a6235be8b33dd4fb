"""What bounding a product of matrices whole saves over bounding its products one by one.

Attention multiplies two values that change with the pixel, ``q kᵀ`` and ``a v``. The
verifier's copies write ``a @ b`` as ``(a.unsqueeze(-1) * b.unsqueeze(-3)).sum(-2)``:
bounded as written, each product takes a new symbol (DeepZ's), ``T · K · M`` of them;
bounded whole (``zonotope.multiply_matrices``, the default), the products of each pair
are summed over ``K`` before the new symbols are taken, one per output. The bounds are
the same (the per-output sums of the same terms). This times both on the same boxes of
a self-attention layer (``F.scaled_dot_product_attention`` over the pixels' features of
a 6 × 6 image: 36 tokens, 4 channels), each engine's margins over ``--boxes`` boxes of
side 0.5 at the first positions, and prints the bounds' largest difference.

    python benchmarks/matrix_products.py [--boxes 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from pixelprior.scoring.cone.bounds import BoundEngine
from pixelprior.scoring.cone.decompose import MATRIX_PRODUCT


class SelfAttention(nn.Module):
    """Self-attention over the pixels' features, a residual, the tokens averaged."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 4, 3, padding=1)
        self.q, self.k, self.v = (nn.Linear(4, 4) for _ in range(3))
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = t + F.scaled_dot_product_attention(self.q(t), self.k(t), self.v(t))
        return self.fc(t.mean(1))


def margins(engine: BoundEngine, image: torch.Tensor, boxes: int, repeats: int
            ) -> tuple[torch.Tensor, float]:
    """The engine's margin bounds over the boxes, and the fastest of ``repeats`` calls."""
    cache = engine.prepare(image)
    lo = torch.full((boxes, 3), 0.25, dtype=torch.float64)
    positions = torch.arange(boxes)
    best, lower = float("inf"), None
    for _ in range(repeats):
        began = time.perf_counter()
        bounds = engine.margins(cache, torch.zeros(boxes, dtype=torch.long), positions // 6,
                                positions % 6, lo, lo + 0.5, torch.zeros(boxes,
                                                                         dtype=torch.long))
        best = min(best, time.perf_counter() - began)
        lower = bounds.lower
    return lower, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=16, help="boxes per call (at most 36)")
    parser.add_argument("--repeats", type=int, default=3, help="calls timed, the fastest kept")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = SelfAttention().eval()
    image = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    whole = BoundEngine(model)
    apart = BoundEngine(model)
    for node in apart.graph.nodes:  # the products bounded as written, one by one
        node.meta.pop(MATRIX_PRODUCT, None)
    boxes = min(args.boxes, 36)
    (fused, fused_time), (split, split_time) = (margins(e, image, boxes, args.repeats)
                                                for e in (whole, apart))
    others = slice(1, None)  # the label's own margin is infinite
    gap = float((fused[:, others] - split[:, others]).abs().max())
    print(f"self-attention over 36 tokens, {boxes} boxes of side 0.5, fastest of "
          f"{args.repeats} calls\n")
    print("| products bounded | seconds a call | ms a box |")
    print("|---|---|---|")
    for name, seconds in (("whole (one symbol per output)", fused_time),
                          ("one by one (one symbol per product)", split_time)):
        print(f"| {name} | {seconds:.3f} | {seconds / boxes * 1e3:.1f} |")
    print(f"\nwhole over one by one: {split_time / fused_time:.1f}x faster; the bounds' "
          f"largest difference {gap:.2e}")


if __name__ == "__main__":
    main()
