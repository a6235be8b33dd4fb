"""The dataset registry: the single source of dataset names, their loaders and help."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .._registry import Registry
from .base import ImageSet
from .cifar10 import load_cifar10
from .nips17 import PUBLISHED_SIZE, load_nips17

# load(data, source, size) -> ImageSet; size: the model's input (None: as published)
DatasetLoader = Callable[[str | Path | None, str, int | None], ImageSet]
DATASETS: Registry[DatasetLoader] = Registry("dataset")


@DATASETS("cifar10", help="CIFAR-10 test images: source full (the exact test set) or "
          "sample (the bundled first 100)", options=("data", "source"))
def _cifar10(data, source: str, size: int | None) -> ImageSet:
    return load_cifar10(source, data, download=source == "full")


@DATASETS("nips17", help="NIPS 2017 DEV images (a folder: dev_dataset.csv + images/)",
          options=("data",))
def _nips17(data, source: str, size: int | None) -> ImageSet:
    if data is None:
        raise ValueError("the nips17 dataset needs a data folder (dev_dataset.csv + images/)")
    return load_nips17(data, size=size or PUBLISHED_SIZE)


def load_dataset(name: str, data: str | Path | None = None, source: str = "full",
                 size: int | None = None) -> ImageSet:
    """The images of dataset ``name`` (see :data:`DATASETS`)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
    return DATASETS.get(name)(data, source, size)
