"""The interval screen's cost per position: in the pixel's cone against whole images,
side by side on the same images, positions and boxes.

For each model, its first ``--images`` correctly classified CIFAR-10 test images; per
image ``--positions`` random positions, each bounded over its whole color cube (the
verifier's first box) by :class:`~pixelprior.scoring.cone.screen.IntervalScreen` in
``--chunk``-position calls, once through the windows of each pixel's cone
(``cone=True``) and once on whole images (``cone=False``), alternately, best of
``--repeats`` (the cone's per-image pass over the clean image, the cost of about one
whole-image position, is made in the first repeat and kept: in the verifier it is paid
once per image too). Printed: milliseconds per position each way, their ratio, which way the
default (``cone=None``) takes, and the largest difference of the two bounds relative to
``1 + |bound|`` (the cone's may only be tighter, by rounding slack: checked).

    python benchmarks/screen_cost.py [--models convsmall-cifar10 resnet8-ibp-cifar10]
        [--images 2] [--positions 256] [--chunk 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from _setup import BUNDLED_MODELS, bench_inputs

from pixelprior.scoring.cone.screen import IntervalScreen


def timed(screen: IntervalScreen, image, positions, lo, hi, label: int, chunk: int
          ) -> tuple[float, torch.Tensor]:
    """Seconds for every chunk of positions, and the bounds."""
    began = time.perf_counter()
    bounds = torch.cat([screen.margins(image, positions[i:i + chunk], lo[i:i + chunk],
                                       hi[i:i + chunk], label)
                        for i in range(0, len(positions), chunk)])
    return time.perf_counter() - began, bounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=BUNDLED_MODELS)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--positions", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for name in args.models:
        model, images, labels, _ = bench_inputs(args.images, name)
        cone, whole = IntervalScreen(model, cone=True), IntervalScreen(model, cone=False)
        default = "cone" if IntervalScreen(model).uses_cone(images[:1]) else "whole"
        seconds = {"cone": 0.0, "whole": 0.0}
        worst = 0.0
        for n in range(images.shape[0]):
            image, label = images[n:n + 1], int(labels[n])
            generator = torch.Generator().manual_seed(n)
            area = image.shape[-2] * image.shape[-1]
            positions = torch.randperm(area, generator=generator)[:args.positions]
            lo = torch.zeros(len(positions), image.shape[1], dtype=torch.float64)
            hi = torch.ones_like(lo)
            best = {"cone": float("inf"), "whole": float("inf")}
            for _ in range(args.repeats):
                for way, screen in (("cone", cone), ("whole", whole)):
                    spent, bounds = timed(screen, image, positions, lo, hi, label, args.chunk)
                    best[way] = min(best[way], spent)
                    if way == "cone":
                        inside = bounds
                    else:
                        finite = torch.isfinite(bounds)
                        size = 1 + bounds[finite].abs()
                        assert (inside[finite] >= bounds[finite] - 1e-12 * size).all(), name
                        worst = max(worst, float(((inside[finite] - bounds[finite]).abs()
                                                  / size).max()))
            for way in seconds:
                seconds[way] += best[way] / len(positions)
        cone_ms = 1e3 * seconds["cone"] / images.shape[0]
        whole_ms = 1e3 * seconds["whole"] / images.shape[0]
        rows.append(f"| {name} | {cone_ms:.2f} | {whole_ms:.2f} | {whole_ms / cone_ms:.1f}× | "
                    f"{default} | {worst:.1e} |")
    print(f"\n{args.images} images × {args.positions} positions, whole color cubes, "
          f"{args.chunk} positions a call, best of {args.repeats}\n")
    print("| model | ms/position in the cone | on whole images | whole / cone | default "
          "| largest bound difference (relative) |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
