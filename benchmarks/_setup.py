"""Shared set-up of the benchmarks: the model, the images, the machine line."""

from __future__ import annotations

import platform

import torch

from pixelprior import load_cifar10, load_model, to_float
from pixelprior.experiment import correctly_classified

BUNDLED_MODELS = ["convsmall-cifar10", "resnet8-cifar10", "resnet8-ibp-cifar10",
                  "squeezenet1_1-cifar10"]


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
