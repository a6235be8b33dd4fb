"""The dataset registry: the single source of dataset names, their loaders and help.

Named datasets (``cifar10``, ``nips17``) and a user's own images (``folder``, ``npz``,
``csv``: ``data`` is the path, see :mod:`pixelprior.data.sources`). Every loader is
``load(data, source, size, classes=None, notes=None, channels=3) -> ImageSet``;
``notes``, when a list, receives what was done to the data in words; ``channels`` is the
model's input channels (the RGB datasets become 8-bit luminance for 1, with a note).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .._registry import Registry
from .base import DataError, DataSpecError, ImageSet
from .cifar10 import load_cifar10
from .classes import Classes
from .collect import with_channels
from .csv_list import load_csv
from .folders import load_folder
from .nips17 import PUBLISHED_SIZE, load_nips17
from .npz import load_npz
from .sizes import Size
from .sources import SOURCE_KINDS

# load(data, source, size, classes=None, notes=None, channels=3) -> ImageSet; size: the
# model's input (None: as published)
DatasetLoader = Callable[..., ImageSet]
DATASETS: Registry[DatasetLoader] = Registry("dataset")


@DATASETS("cifar10", help="CIFAR-10 test images: source full (the exact test set) or "
          "sample (the bundled first 100)", options=("data", "source"))
def _cifar10(data, source: str, size: Size | None, classes: Classes | None = None,
             notes: list[str] | None = None, channels: int = 3) -> ImageSet:
    return _as_channels(load_cifar10(source, data, download=source == "full"), channels,
                        notes)


@DATASETS("nips17", help="NIPS 2017 DEV images (a folder: dev_dataset.csv + images/)",
          options=("data",))
def _nips17(data, source: str, size: Size | None, classes: Classes | None = None,
            notes: list[str] | None = None, channels: int = 3) -> ImageSet:
    if data is None:
        raise ValueError("the nips17 dataset needs a data folder (dev_dataset.csv + images/)")
    return _as_channels(load_nips17(data, size=size or PUBLISHED_SIZE, notes=notes),
                        channels, notes)


def _as_channels(found: ImageSet, channels: int, notes: list[str] | None) -> ImageSet:
    """A named (RGB) dataset with the model's channels, the conversion noted."""
    found, said = with_channels(found, channels)
    if notes is not None:
        notes.extend(said)
    return found


def _user_images(loader: Callable, kind: str) -> DatasetLoader:
    def load(data, source: str, size: Size | None, classes: Classes | None = None,
             notes: list[str] | None = None, channels: int = 3) -> ImageSet:
        """The images at ``data`` (see :data:`DatasetLoader`).

        Args:
            data: the path.
            source: unused (a named dataset's option).
            size: the model's input size.
            classes: the class names.
            notes: receives the loading notes.
            channels: the model's input channels.

        Returns:
            The images.

        Raises:
            DataError: no path, or images that cannot be loaded.
        """
        if data is None:
            raise DataError(f"the {kind} dataset needs data = its path")
        images, found = loader(data, size, classes, channels)
        if notes is not None:
            notes.extend(found)
        return images
    return load


DATASETS.register("folder", _user_images(load_folder, "folder"),
                  help="an ImageFolder tree: data/<class>/*.png|jpg|jpeg|bmp|webp",
                  options=("data", "classes"))
DATASETS.register("npz", _user_images(load_npz, "npz"),
                  help="a .npz with images (uint8 NHWC or NCHW) and labels",
                  options=("data", "classes"))
DATASETS.register("csv", _user_images(load_csv, "csv"),
                  help="a CSV of path,label rows (paths relative to the CSV)",
                  options=("data", "classes"))


def load_dataset(name: str, data: str | Path | None = None, source: str = "full",
                 size: Size | None = None, classes: Classes | None = None,
                 notes: list[str] | None = None, channels: int = 3) -> ImageSet:
    """The images of dataset ``name`` (see :data:`DATASETS`).

    Args:
        name: a registered dataset.
        data: its folder or file (``folder``/``npz``/``csv``: the path; required).
        source: ``cifar10``'s source (``full``, ``sample``, ``auto``).
        size: the model's input side or ``(height, width)``.
        classes: class names in the model's order (``folder``/``npz``/``csv`` only).
        notes: a list that receives the loading notes (conversions, resizes, skips).
        channels: the model's input channels (``LoadedModel.channels``): 3 for RGB, 1
            for 8-bit luminance (PIL's ``"L"``, with a note).

    Returns:
        The images, ``uint8 [N, channels, H, W]``.

    Raises:
        ValueError: an unknown dataset, classes for a dataset with its own, or no data
            folder for nips17.
        DataError: images that cannot be loaded (one line saying why).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
    if classes is not None and "classes" not in DATASETS.entry(name).options:
        raise ValueError(f"the {name} dataset has its own class names; classes apply to "
                         f"{', '.join(SOURCE_KINDS)}")
    return DATASETS.get(name)(data, source, size, classes=classes, notes=notes,
                              channels=channels)


def dataset_for(spec: str | Path) -> tuple[str, str | None]:
    """The dataset name and data path of a user's ``--data`` string.

    ``cifar10`` → ``("cifar10", None)``; ``NAME:PATH`` → ``(NAME, PATH)`` for a named
    dataset (``nips17:DIR``, ``cifar10:DIR``); ``*.npz`` / ``*.csv`` →
    ``("npz" | "csv", path)`` (existence is checked when loading); an existing folder →
    ``("folder", path)``.

    Args:
        spec: what the user wrote.

    Returns:
        ``(dataset name, data path or None)``.

    Raises:
        DataSpecError: ``spec`` is none of these (for example no such folder).
    """
    text = str(spec)
    named = [name for name in DATASETS if name not in SOURCE_KINDS]
    if text in named:
        return text, None
    head, sep, tail = text.partition(":")
    if sep and head in named and tail:
        return head, tail
    path = Path(text).expanduser()
    if path.suffix.lower() in (".npz", ".csv") and not path.is_dir():
        return path.suffix.lower()[1:], text
    if path.is_dir():
        return "folder", text
    raise DataSpecError(f"data {text!r}: not a dataset name ({', '.join(named)}, or "
                            "NAME:FOLDER), an existing image folder, or a .npz / .csv file")
