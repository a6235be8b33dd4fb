"""Where one box's bound call spends its time: per operation, the symbols it carries and
how many of their entries are zero.

For each side, one box of colors (``lo = min(0.45, 1 - side)`` per channel, ``hi = lo +
side``) at the center of the first correctly classified test image is bounded by the
verifier's zonotope engine (:class:`~pixelprior.scoring.cone.bounds.BoundEngine`, float64, the CPU),
twice; the second call is timed. Printed per side: the seconds, the symbols at the
margins, the lowest margin bound, and the operations that took the most time, each with
its value's shape ``[boxes, 1 + symbols, channels, height, width]`` and the share of
exactly zero generator entries (what a sparse layout of the symbols could skip at most).

    python benchmarks/box_profile.py [--model squeezenet1_1-cifar10]
        [--sides 0.01 0.03 0.0625 0.1] [--top 6]

Instrumentation only: the engine's step runner is wrapped to time each step, which
adds a few microseconds a step.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from _setup import bench_inputs

from pixelprior.scoring.cone import bounds

_run = bounds.BoundEngine._run


def profiled(records: list[dict]):
    """The engine's step runner, timing each step into ``records``."""
    def run(self, step: Any, call: Any, env: dict, lower: torch.Tensor,
            upper: torch.Tensor) -> Any:
        start = time.perf_counter()
        value = _run(self, step, call, env, lower, upper)
        values = getattr(value, "values", None)
        shape, zero = None, None
        if isinstance(values, torch.Tensor) and values.dim() >= 3 and values.shape[1] > 1:
            shape, zero = tuple(values.shape), float((values[:, 1:] == 0).double().mean())
        records.append({"step": step.node.name,
                        "seconds": time.perf_counter() - start, "shape": shape,
                        "zero": zero})
        return value
    return run


def profile(engine: bounds.BoundEngine, cache: Any, label: torch.Tensor, side: float,
            height: int, width: int, records: list[dict]) -> tuple[float, Any, list[dict]]:
    """The second of two calls bounding one box of ``side``: seconds, bounds, and the
    steps (``records``, filled by the wrapped step runner)."""
    lo = torch.full((1, 3), min(0.45, 1 - side), dtype=torch.float64)  # inside the cube
    args = (cache, torch.zeros(1, dtype=torch.long), torch.tensor([height // 2]),
            torch.tensor([width // 2]), lo, lo + side, label)
    for _ in range(2):
        records.clear()
        start = time.perf_counter()
        out = engine.margins(*args)
        seconds = time.perf_counter() - start
    return seconds, out, list(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="squeezenet1_1-cifar10")
    parser.add_argument("--sides", nargs="+", type=float, default=[0.01, 0.03, 0.0625, 0.1])
    parser.add_argument("--top", type=int, default=6)
    args = parser.parse_args()
    model, images, labels, picked = bench_inputs(1, args.model)
    engine = bounds.BoundEngine(model)
    cache = engine.prepare(images[:1])
    records: list[dict] = []
    bounds.BoundEngine._run = profiled(records)
    print(f"{args.model}, test image {int(picked[0])}, the center pixel, "
          "lo = min(0.45, 1 - side)\n")
    print("| side | seconds | symbols | lowest margin bound | steps' zero share "
          "(median) |\n|---|---|---|---|---|")
    tops = {}
    for side in args.sides:
        seconds, out, steps = profile(engine, cache, labels[:1], side, *images.shape[-2:],
                                      records)
        zeros = sorted(s["zero"] for s in steps if s["zero"] is not None)
        median = zeros[len(zeros) // 2] if zeros else float("nan")
        print(f"| {side} | {seconds:.3f} | {out.symbols:,} | {float(out.lower.min()):.4g} | "
              f"{median:.2f} |")
        tops[side] = sorted(steps, key=lambda s: -s["seconds"])[:args.top]
    for side, steps in tops.items():
        print(f"\nside {side}: the {len(steps)} slowest operations\n\n| operation | ms | "
              "value shape | zero share |\n|---|---|---|---|")
        for s in steps:
            zero = "–" if s["zero"] is None else f"{s['zero']:.2f}"
            print(f"| {s['step']} | {s['seconds'] * 1000:.1f} | {s['shape']} | {zero} |")


if __name__ == "__main__":
    main()
