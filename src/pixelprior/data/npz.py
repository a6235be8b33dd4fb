"""An ``.npz`` of arrays: ``images`` and ``labels``, optional ``class_names``, ``indices``
and ``ids``, each checked where it enters (shape, type, range, repeats)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .base import CorruptDataError, DataNotFoundError, ImageSet
from .classes import Classes, ClassNamesError, check_class_names, parse_classes, shorten_list
from .collect import (
    check_labels,
    count_once,
    labels_from_text,
    make_image_set,
    numbered_classes,
)
from .fitting import Fitter, check_channels, set_channels
from .sizes import Size

KEYS = ("images", "labels", "class_names", "indices", "ids")

__all__ = ["load_npz"]


def load_npz(path: str | Path, size: Size | None = None, classes: Classes | None = None,
             channels: int = 3) -> tuple[ImageSet, list[str]]:
    """Arrays ``images`` and ``labels`` (optional ``class_names``, ``indices``, ``ids``).

    ``images``: ``uint8`` ``[N, H, W, C]`` or ``[N, C, H, W]`` with ``C`` 1, 3 or
    ``channels`` (``[N, H, W]``: one channel); other integer types within 0..255 and
    floats within [0, 1] are converted with a note; anything else is refused. One
    channel is repeated to three for an RGB model, three become 8-bit luminance (PIL's
    ``"L"``) for a 1-channel model, each with a note. ``labels``: integers, or class
    names (strings; bytes are decoded as UTF-8). ``indices`` (each image's index, e.g.
    in an official split): distinct integers >= 0. Identical pixels in two rows are one
    picture: counted once, with a note.

    Args:
        path: the ``.npz`` file.
        size: the model's input ``(height, width)``: other sizes are resized (bilinear).
        classes: the class names; when the file holds ``class_names`` too, they must
            agree.
        channels: the model's input channels (3: RGB; 1: luminance).

    Returns:
        The images ``uint8 [N, channels, H, W]`` and the notes.

    Raises:
        DataNotFoundError: no such file.
        CorruptDataError: unreadable, missing keys, no images, or images, labels,
            class names, indices or ids that do not fit (one line naming the row).
        ValueError: ``channels`` is not a positive integer.
    """
    path = Path(path).expanduser()
    check_channels(channels)
    arrays = _read_npz(path)
    images, notes = _npz_images(path, arrays["images"], channels)
    names, labels, more = _npz_labels(path, arrays, parse_classes(classes), len(images))
    indices, ids = _npz_indices(path, arrays, len(labels)), _npz_ids(path, arrays, len(labels))
    fitter = Fitter(size)
    if fitter.target is not None and images.shape[2:] != fitter.target:
        images = np.stack([fitter(image.transpose(1, 2, 0), f"row {i}").transpose(2, 0, 1)
                           for i, image in enumerate(images)])
    found, twice = count_once(make_image_set(images, labels, names, str(path), ids, indices),
                              str(path))
    return found, notes + more + fitter.notes() + twice


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataNotFoundError(f"image file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise CorruptDataError(f"{path}: not a readable .npz file (not a zip archive of "
                               "arrays; save it with numpy.savez)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.keys())
            arrays = {key: npz[key] for key in keys if key in KEYS}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise CorruptDataError(f"{path}: holds Python objects (pickled arrays); save "
                                   "class_names as a string array (np.array(names))") from None
        raise CorruptDataError(f"{path}: not a readable .npz file ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise CorruptDataError(f"{path}: not a readable .npz file ({exc})") from None
    missing = [key for key in ("images", "labels") if key not in arrays]
    if missing:
        raise CorruptDataError(f"{path}: needs arrays 'images' and 'labels'; found "
                               f"{', '.join(repr(k) for k in keys) or 'none'}")
    return arrays


# ----------------------------------------------------------------------------- images
def _npz_images(path: Path, images: np.ndarray, channels: int
                ) -> tuple[np.ndarray, list[str]]:
    """``images`` as ``uint8 [N, channels, H, W]`` and what was done to them."""
    notes: list[str] = []
    if images.ndim == 3:
        images, notes = images[:, None], ["images [N, H, W] read as one channel"]
    if images.ndim != 4:
        raise CorruptDataError(f"{path}: images must be [N, H, W, C] or [N, C, H, W], got "
                               f"shape {images.shape}")
    if images.shape[0] == 0:
        raise CorruptDataError(f"{path}: holds 0 images (images of shape {images.shape}); "
                               "an image set needs at least one")
    if images.size == 0:
        raise CorruptDataError(f"{path}: images of shape {images.shape} hold no pixels")
    images, layout = _to_nchw(path, images, channels)
    images, converted = _to_uint8(path, images)
    try:
        images, changed = set_channels(images, channels)
    except CorruptDataError as exc:
        raise CorruptDataError(f"{path}: {exc}") from None
    return np.ascontiguousarray(images), notes + layout + converted + changed


def _to_nchw(path: Path, images: np.ndarray, channels: int) -> tuple[np.ndarray, list[str]]:
    counts = sorted({1, 3, channels})
    first, last = images.shape[1] in counts, images.shape[3] in counts
    if first and last:
        return images, [f"images of shape {images.shape} read as [N, C, H, W]"]
    if first:
        return images, []
    if last:
        return images.transpose(0, 3, 1, 2), []
    shown = " or ".join(map(str, counts))
    raise CorruptDataError(f"{path}: images must have {shown} channels ([N, H, W, {channels}] "
                           f"or [N, {channels}, H, W]), got shape {images.shape}")


def _to_uint8(path: Path, images: np.ndarray) -> tuple[np.ndarray, list[str]]:
    if images.dtype == np.uint8:
        return images, []
    low, high = images.min(), images.max()
    if np.issubdtype(images.dtype, np.floating):
        if not np.isfinite(images).all() or low < 0 or high > 1:
            raise CorruptDataError(f"{path}: float images must lie in [0, 1], got values in "
                                   f"[{low:.4g}, {high:.4g}]; save uint8 (0..255) or floats "
                                   "in [0, 1]")
        return (np.floor(images.astype(np.float64) * 255 + 0.5).astype(np.uint8),
                [f"{images.dtype} images in [0, 1] converted to 8 bits (round(v * 255))"])
    if np.issubdtype(images.dtype, np.integer) and low >= 0 and high <= 255:
        return images.astype(np.uint8), [f"{images.dtype} images (values 0..255) read as "
                                         "uint8"]
    raise CorruptDataError(f"{path}: images must be uint8 (or floats in [0, 1]), got "
                           f"{images.dtype} with values {low}..{high}")


# ----------------------------------------------------------------------------- labels
def _npz_labels(path: Path, arrays: dict, given: tuple[str, ...] | None, count: int
                ) -> tuple[tuple[str, ...], np.ndarray, list[str]]:
    labels = arrays["labels"]
    if labels.ndim != 1 or labels.shape[0] != count:
        raise CorruptDataError(f"{path}: {count} images but labels of shape {labels.shape}")
    stored = _stored_class_names(path, arrays)
    if given is not None and stored is not None and given != stored:
        raise ClassNamesError(f"{path}: its class_names ({shorten_list(stored)}) differ "
                              f"from the given classes ({shorten_list(given)})")
    names = given or stored
    rows = [f"row {i}" for i in range(count)]
    if labels.dtype.kind in "US":
        return labels_from_text(_texts(path, labels, "labels"), names, rows, str(path))
    if labels.dtype.kind not in "iu":
        raise CorruptDataError(f"{path}: labels must be integers (or class names), got "
                               f"{labels.dtype}")
    notes: list[str] = []
    if names is None:
        names, notes = numbered_classes(labels, rows, str(path))
    check_labels(labels, names, rows, str(path))
    return names, labels.astype(np.int64), notes


def _stored_class_names(path: Path, arrays: dict) -> tuple[str, ...] | None:
    if "class_names" not in arrays:
        return None
    stored = arrays["class_names"]
    if stored.ndim != 1:
        raise CorruptDataError(f"{path}: class_names must be a list of names (1-D), got "
                               f"shape {stored.shape}")
    names = (_texts(path, stored, "class_names") if stored.dtype.kind in "US"
             else [str(v) for v in stored.tolist()])
    return check_class_names(names, f"{path}: class_names")


def _texts(path: Path, values: np.ndarray, key: str) -> list[str]:
    """Strings of a ``str`` or ``bytes`` array (bytes decoded as UTF-8)."""
    if values.dtype.kind == "U":
        return [str(v) for v in values.tolist()]
    out = []
    for row, value in enumerate(values.tolist()):
        try:
            out.append(value.decode("utf-8"))
        except UnicodeDecodeError:
            raise CorruptDataError(f"{path}: {key} are bytes, and row {row} ({value!r}) is "
                                   "not UTF-8 text; save them as strings") from None
    return out


# ----------------------------------------------------------------------------- rows
def _npz_indices(path: Path, arrays: dict, count: int) -> np.ndarray | None:
    if "indices" not in arrays:
        return None
    indices = arrays["indices"]
    if indices.shape != (count,):
        raise CorruptDataError(f"{path}: {count} images but indices of shape {indices.shape}")
    if indices.dtype.kind not in "iu":
        raise CorruptDataError(f"{path}: indices must be integers, got {indices.dtype}")
    negative = np.flatnonzero(indices < 0)
    if negative.size:
        row = int(negative[0])
        raise CorruptDataError(f"{path}: index {int(indices[row])} of row {row} is negative; "
                               "indices name each image by a number >= 0")
    values, first, counts = np.unique(indices, return_index=True, return_counts=True)
    if (counts > 1).any():
        repeat = int(np.flatnonzero(counts > 1)[0])
        rows = np.flatnonzero(indices == values[repeat])
        shown = ", ".join(map(str, rows[:5].tolist())) + (" ..." if rows.size > 5 else "")
        raise CorruptDataError(f"{path}: index {int(values[repeat])} is given to "
                               f"{rows.size} rows ({shown}); each image needs its own index "
                               "(a run writes its rows under it): give each its own, or "
                               "leave `indices` out to number the images in order")
    return indices.astype(np.int64)


def _npz_ids(path: Path, arrays: dict, count: int) -> tuple[str, ...] | None:
    if "ids" not in arrays:
        return None
    ids = arrays["ids"]
    if ids.shape != (count,):
        raise CorruptDataError(f"{path}: {count} images but ids of shape {ids.shape}")
    if ids.dtype.kind in "US":
        return tuple(_texts(path, ids, "ids"))
    return tuple(str(v) for v in ids.tolist())
