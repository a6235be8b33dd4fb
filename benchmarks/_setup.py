"""Shared set-up of the benchmarks: the model, the images, the machine line."""

from __future__ import annotations

import collections
import platform
import statistics
from collections.abc import Callable
from typing import Any

import torch

from pixelprior import load_cifar10, load_model, to_float
from pixelprior.experiment import correctly_classified

BUNDLED_MODELS = ["convsmall-cifar10", "resnet8-cifar10", "resnet8-ibp-cifar10",
                  "squeezenet1_1-cifar10"]


def random_boxes(count: int, side: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` boxes of colors of one ``side`` at random places in the cube (float64
    ``lo``, ``hi`` ``[count, 3]``; the same boxes on every call)."""
    generator = torch.Generator().manual_seed(0)
    lo = torch.rand(count, 3, dtype=torch.float64, generator=generator) * (1 - side)
    return lo, lo + side


def bench_inputs(count: int, name: str = "squeezenet1_1-cifar10"):
    """A bundled CIFAR-10 model (default: the SqueezeNet) and its first ``count``
    correctly classified test images.

    The images come from the official test batch when one is found without downloading
    (``PIXELPRIOR_DATA``), else from the bundled sample (the first 100 test images, so the
    first ones picked are the same either way). Returns ``(model, images, labels,
    test indices)`` (the model in eval mode) and prints the machine line.
    """
    model = load_model(name).eval()
    data = load_cifar10("auto")
    pick = correctly_classified(model, data, count)
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    return model, to_float(data.images[pick]), data.labels[pick], pick


def position_counts(result: Any) -> str:
    """``robust / vulnerable / unknown`` positions of an exact-mode verification."""
    status = collections.Counter(result.positions.status)
    return f"{status['robust']} / {status['vulnerable']} / {status['unknown']}"


def verified_side_by_side(data: Any, indices: list[int],
                          run: Callable[[torch.Tensor, torch.Tensor, bool], Any]) -> None:
    """Print each image's exact-mode seconds with and without a change, each twice,
    alternating (``run(image, label, with_it)`` verifies one image), with their boxes,
    and the medians and totals."""
    print("| test index | with | boxes | without | boxes |\n|---|---|---|---|---|")
    seconds: dict[bool, list[float]] = {True: [], False: []}
    for index in indices:
        image, label = to_float(data.images[[index]]), data.labels[[index]]
        runs: dict[bool, list] = {True: [], False: []}
        for with_it in (True, False) * 2:
            result = run(image, label, with_it)
            runs[with_it].append(result)
            seconds[with_it].append(result.seconds)
        print(f"| {index} | {' '.join(f'{r.seconds:.2f}' for r in runs[True])} | "
              f"{runs[True][0].boxes:,} | "
              f"{' '.join(f'{r.seconds:.2f}' for r in runs[False])} | "
              f"{runs[False][0].boxes:,} |", flush=True)
    if seconds[True]:
        ratio = sum(seconds[True]) / sum(seconds[False])
        print(f"\nmedian {statistics.median(seconds[True]):.2f} s with, "
              f"{statistics.median(seconds[False]):.2f} s without; total "
              f"{sum(seconds[True]):.1f} / {sum(seconds[False]):.1f} s = {ratio:.3f}")
