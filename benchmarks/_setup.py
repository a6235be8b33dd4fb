"""Shared set-up of the benchmarks: the model, the images, the machine line."""

from __future__ import annotations

import platform

import torch

from pixelprior import load_cifar10, load_model, to_float
from pixelprior.experiment import correctly_classified


def bench_inputs(count: int):
    """The bundled CIFAR-10 model and its first ``count`` correctly classified sample images.

    Returns ``(model, images, labels, positions)`` and prints the machine line.
    """
    model = load_model("squeezenet1_1-cifar10")
    data = load_cifar10("sample")
    pick = correctly_classified(model, data, count)
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    return model, to_float(data.images[pick]), data.labels[pick], pick
