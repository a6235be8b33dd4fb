"""What every data source returns: labelled ``uint8`` image sets, and the checks of the
float batches that attacks and maps take."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

DATA_ENV = "PIXELPRIOR_DATA"
CACHE_ENV = "PIXELPRIOR_CACHE"


class DataError(RuntimeError):
    """Base class for data problems (missing or corrupt files); the message is one line
    saying what is wrong and what to do."""


class DataNotFoundError(DataError, FileNotFoundError):
    """No source of the requested data could be found or downloaded."""


class DataSpecError(DataNotFoundError):
    """The data a user named does not exist: no such file, folder or dataset name (the
    command line's usage error, exit 2; a missing download or cache is a
    :class:`DataNotFoundError`)."""


class CorruptDataError(DataError, ValueError):
    """A data file exists but cannot be read or fails its checks."""


@dataclass(frozen=True)
class ImageSet:
    """A labelled image set.

    Attributes:
        images: ``uint8 [N, C, H, W]`` (``C`` = 3 for RGB, 1 for grayscale).
        labels: ``int64 [N]`` class indices into ``class_names``.
        class_names: the names of the classes, in the model's order.
        source: where the images came from (a path, ``"bundled sample"``).
        indices: ``int64 [N]``: each image's index in the official split or the file
            (its row or position), when known.
        ids: per-image identifiers (file paths, NIPS-17 ImageIds), when known.

    Raises:
        CorruptDataError: images that are not ``uint8 [N, C, H, W]``, or labels of
            another length.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    source: str
    indices: torch.Tensor | None = None  # positions in the official split, when known
    ids: tuple[str, ...] | None = None  # per-image identifiers (e.g. NIPS17 ImageId)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise CorruptDataError(f"images must be uint8 [N, C, H, W], got "
                                   f"{self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise CorruptDataError("labels and images disagree in length")

    def __len__(self) -> int:
        """The number of images."""
        return int(self.images.shape[0])

    @property
    def official_indices(self) -> torch.Tensor:
        """``int64 [N]``: each row's index in the official split (its position when
        unknown)."""
        return self.indices if self.indices is not None else torch.arange(len(self))

    def position_of(self, official_index: int) -> int:
        """The row holding official index ``official_index``.

        Args:
            official_index: an index of :attr:`official_indices`.

        Returns:
            The row's position in this set.

        Raises:
            IndexError: no row holds that index.
        """
        return int((self.official_indices == official_index).nonzero()[0, 0])

    def subset(self, index: torch.Tensor | list[int]) -> ImageSet:
        """Rows ``index`` of this set, keeping the official indices and ids.

        Args:
            index: row positions (``int64 [M]`` or a list).

        Returns:
            The rows as a new set.
        """
        index = torch.as_tensor(index, dtype=torch.long)
        base = self.official_indices
        ids = tuple(self.ids[i] for i in index.tolist()) if self.ids is not None else None
        return ImageSet(self.images[index], self.labels[index], self.class_names,
                        self.source, base[index], ids)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """``uint8`` images to ``float32`` in [0, 1] (the input space of every model here).

    Args:
        images: ``uint8 [..., C, H, W]``.

    Returns:
        ``float32`` of the same shape, ``v / 255``.
    """
    return images.to(torch.float32) / 255.0



def check_images(images: torch.Tensor, labels: torch.Tensor) -> None:
    """Validate an attack/attribution batch.

    Args:
        images: ``float [B, C, H, W]`` in [0, 1], finite.
        labels: integer ``[B]``.

    Raises:
        TypeError: images not floating point, or labels not integers.
        ValueError: a wrong shape, NaN or infinite values, values outside [0, 1].
    """
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise TypeError(f"images must be a float tensor in [0, 1], got "
                        f"{getattr(images, 'dtype', type(images))}; convert uint8 with "
                        "pixelprior.to_float")
    if images.ndim != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"images must lie in [0, 1] (the models normalise inside); got "
                         f"values in [{low:.4g}, {high:.4g}]")
    if not isinstance(labels, torch.Tensor) or labels.dtype not in (
            torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"labels must be an integer tensor, got "
                        f"{getattr(labels, 'dtype', type(labels))}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape [{images.shape[0]}], got {tuple(labels.shape)}")



def cache_dir() -> Path:
    """The cache directory.

    Returns:
        ``$PIXELPRIOR_CACHE``, or ``~/.cache/pixelprior`` when it is unset.
    """
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "pixelprior")).expanduser()


def data_dir_from_env() -> Path | None:
    """The shared data folder.

    Returns:
        ``$PIXELPRIOR_DATA`` as a path, or ``None`` when it is unset.
    """
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None

