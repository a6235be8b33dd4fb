"""Seconds per box of the verifier's bound calls by call size, on the CPU.

One call bounds N identical boxes (a cube of the given side at the image's center,
test image 0 of the model that it classifies correctly); each N is repeated for about
2 s. The verifier sizes CPU calls by their largest float64 tensors
(:data:`~pixelprior.search.verify.CPU_CALL_BYTES`); this measures why. With
``--convolutions`` it also times ``torch.conv2d`` on the stacked rows of such calls in
float64 (the bounds' precision) and in float32 (channels-last too): what float32 bounds
with a sound rounding error would gain.

    python benchmarks/verify_call_size.py [--model resnet8-cifar10]
        [--sides 0.25 0.125 0.0625] [--boxes 1 2 4 8 16] [--convolutions]
"""

from __future__ import annotations

import argparse
import time

import torch
from _setup import bench_inputs

from pixelprior.scoring.cone.bounds import BoundEngine


def seconds_per_box(engine, cache, label, side: float, count: int, height: int,
                    width: int) -> tuple[float, object]:
    lo = torch.full((count, 3), 0.3)
    args = (cache, torch.zeros(count, dtype=torch.long), torch.full((count,), height // 2),
            torch.full((count,), width // 2), lo, lo + side, label.expand(count))
    engine.margins(*args)  # warm
    began, repeats = time.perf_counter(), 0
    while time.perf_counter() - began < 2:
        bounds = engine.margins(*args)
        repeats += 1
    return (time.perf_counter() - began) / repeats / count, bounds


def convolutions() -> None:
    """GMAC/s of 3×3 convolutions on the rows of 32 boxes of 424 symbols."""
    print("\n| rows, channels, window | float64 | float32 | float32 channels-last |")
    print("|---|---|---|---|")
    for rows, channels, size in [(32 * 425, 16, 20), (32 * 425, 32, 12), (8 * 425, 16, 32)]:
        cells = []
        for dtype, layout in [(torch.float64, torch.contiguous_format),
                              (torch.float32, torch.contiguous_format),
                              (torch.float32, torch.channels_last)]:
            x = torch.randn(rows, channels, size, size, dtype=dtype).contiguous(
                memory_format=layout)
            w = torch.randn(channels, channels, 3, 3, dtype=dtype)
            torch.conv2d(x, w, padding=1)
            began = time.perf_counter()
            for _ in range(3):
                torch.conv2d(x, w, padding=1)
            seconds = (time.perf_counter() - began) / 3
            cells.append(f"{rows * size * size * channels * channels * 9 / seconds / 1e9:.1f}")
        print(f"| {rows:,}, {channels}, {size}×{size} | " + " | ".join(cells) + " |",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet8-cifar10")
    parser.add_argument("--sides", type=float, nargs="+", default=[0.25, 0.125, 0.0625])
    parser.add_argument("--boxes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--convolutions", action="store_true",
                        help="also time float64 against float32 convolutions (GMAC/s)")
    args = parser.parse_args()
    model, image, label, pick = bench_inputs(1, args.model)
    engine = BoundEngine(model)
    cache = engine.prepare(image)
    height, width = image.shape[-2:]
    print(f"\n{args.model}, test index {int(pick[0])}, position ({height // 2}, "
          f"{width // 2})\n")
    print("| side | symbols | widest value (neurons) | "
          + " | ".join(f"s/box, N = {n}" for n in args.boxes) + " |")
    print("|---|---|---|" + "---|" * len(args.boxes))
    for side in args.sides:
        cells, bounds = [], None
        for count in args.boxes:
            seconds, bounds = seconds_per_box(engine, cache, label, side, count, height,
                                              width)
            cells.append(f"{seconds:.4f}")
        print(f"| {side:g} | {bounds.symbols:,} | {bounds.row_elements:,} | "
              + " | ".join(cells) + " |", flush=True)
    if args.convolutions:
        convolutions()


if __name__ == "__main__":
    main()
