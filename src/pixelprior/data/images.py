"""A user's image files: read as 8-bit RGB (or luminance) whatever their mode, fitted to
a model.

Files larger than PIL's guard against decompression bombs (2 × ``PIL.Image.MAX_IMAGE_PIXELS``,
about 179 megapixels by default) are refused with one line naming the file and its size;
``$PIXELPRIOR_MAX_IMAGE_PIXELS`` (a number of pixels, or ``none``) moves the limit.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .base import CorruptDataError, DataError, DataNotFoundError
from .fitting import check_channels, convert_channels, resize_pixels

MAX_PIXELS_ENV = "PIXELPRIOR_MAX_IMAGE_PIXELS"
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
FILE_CHANNELS = (1, 3)  # what image files are read as: luminance or RGB

__all__ = [
    "ALPHA_MODES", "FILE_CHANNELS", "MAX_PIXELS_ENV", "ImageFile", "ImageTooLargeError",
    "Resize", "SizeMismatchError", "fit_image", "max_image_pixels", "read_image_file",
]


class SizeMismatchError(ValueError):
    """An image's size differs from the model's input and resizing was refused."""


class ImageTooLargeError(CorruptDataError):
    """An image file holds more pixels than the limit against decompression bombs."""


@dataclass
class ImageFile:
    """A user's image file read as 8-bit pixels, and what was done to get there.

    Attributes:
        pixels: ``uint8 [H, W, C]``: ``C`` = 3 (RGB) or 1 (luminance).
        mode: the file's PIL mode (``"RGB"``, ``"I;16"``, ``"P"``, ...).
        notes: the conversions applied, in words (alpha, bit depth, color space,
            channels).
    """

    pixels: np.ndarray
    mode: str
    notes: list[str]

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    @property
    def channels(self) -> int:
        """The channels the pixels hold (3 or 1)."""
        return int(self.pixels.shape[2])

    def to_channels(self, channels: int) -> ImageFile:
        """This image with ``channels`` channels, the conversion added to its notes.

        3 → 1 is PIL's 8-bit luminance (``"L"``); 1 → 3 repeats the gray value. A file
        that was grayscale (``L``, ``I;16``, ``F``, ...) loses nothing either way and
        gets no channel note.

        Args:
            channels: 1 or 3.

        Returns:
            A new :class:`ImageFile` (this one when it already has ``channels``).

        Raises:
            ValueError: ``channels`` is not 1 or 3.
        """
        check_channels(channels, FILE_CHANNELS)
        pixels, note = convert_channels(self.pixels, channels)
        if note is None:
            return self
        notes = [n for n in self.notes if not n.endswith("converted to RGB")]
        if channels == 3:
            notes.append(f"{self.mode} converted to RGB" if self.mode in GRAY_MODES
                         else "gray values repeated to three channels (RGB)")
        elif self.mode not in GRAY_MODES:
            notes.append(f"{self.mode} {note}")
        return replace(self, pixels=pixels, notes=notes)


def max_image_pixels() -> int | None:
    """The most pixels an image file may hold.

    Returns:
        ``$PIXELPRIOR_MAX_IMAGE_PIXELS`` when set (``None`` for ``none``: no limit), else
        PIL's own refusal level, 2 × ``PIL.Image.MAX_IMAGE_PIXELS`` (``None`` when that
        is ``None``).

    Raises:
        DataError: the variable is neither a positive whole number nor ``none``.
    """
    from PIL import Image

    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        limit = Image.MAX_IMAGE_PIXELS
        return None if limit is None else 2 * int(limit)
    if value.lower() == "none":
        return None
    try:
        limit = int(value.replace("_", "").replace(",", ""))
    except ValueError:
        limit = 0
    if limit < 1:
        raise DataError(f"${MAX_PIXELS_ENV} must be a positive number of pixels (or none), "
                        f"got {value!r}")
    return limit


@contextmanager
def _pil_limit_lifted() -> Iterator[None]:
    """PIL's own pixel check off while a file is opened: :func:`read_image_file` checks
    the size itself (to name the file and its size in one line), against
    :func:`max_image_pixels`. Data loading runs in one thread, so the module-wide
    setting changes for no other reader."""
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _check_pixel_count(path: Path, size: tuple[int, int], limit: int | None) -> None:
    width, height = size
    if limit is None or width * height <= limit:
        return
    raise ImageTooLargeError(
        f"cannot read image {path}: it is {width}×{height} ({width * height / 1e6:.1f} "
        f"megapixels), over the {limit / 1e6:.1f}-megapixel limit against decompression "
        f"bombs; resize it, or if you trust the file set {MAX_PIXELS_ENV}={width * height} "
        "(in Python: PIL.Image.MAX_IMAGE_PIXELS = None)")


def read_image_file(path: str | Path, channels: int = 3) -> ImageFile:
    """Read any image PIL opens as 8-bit RGB (or luminance), converting every mode.

    16-bit integer images (``I;16*``, and ``I`` with values in 0..65535) are scaled to
    8 bits (v / 257, rounded), so a 16-bit PNG reads as the same pixels as its 8-bit copy;
    float images (``F``) must lie in [0, 1]; palette, grayscale, bilevel, CMYK, YCbCr,
    LAB and HSV images are converted by PIL; an alpha channel is dropped when fully opaque
    and otherwise composited onto white; an EXIF orientation is applied (the image as a
    viewer shows it). ``channels=1`` gives PIL's 8-bit luminance (``"L"``), for a
    1-channel model. Every conversion is listed in ``notes``.

    Args:
        path: the image file.
        channels: 3 (RGB, the default) or 1 (luminance): the model's input channels.

    Returns:
        The pixels, ``uint8 [H, W, channels]``, and what was done to them.

    Raises:
        DataNotFoundError: no such file.
        ImageTooLargeError: more pixels than :func:`max_image_pixels` allows.
        CorruptDataError: a file PIL cannot read, or values no 8-bit image can hold.
        ValueError: ``channels`` is not 1 or 3.
    """
    from PIL import Image, UnidentifiedImageError

    check_channels(channels, FILE_CHANNELS)
    path = Path(path)
    limit = max_image_pixels()
    if path.exists() and not path.is_file():  # a FIFO or device: opening it waits forever
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise CorruptDataError(f"cannot read image {path}: it is {kind}")
    try:
        with _pil_limit_lifted(), warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")  # each is a note of this file
            with Image.open(path) as image:
                _check_pixel_count(path, image.size, limit)
                frames = int(getattr(image, "n_frames", 1) or 1)  # seeks back to the first
                image.load()
                read = _to_rgb(image, path)
    except FileNotFoundError:
        raise DataNotFoundError(f"image file {path} does not exist") from None
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        # ValueError: Pillow's own refusals (a text chunk too large to decompress, ...)
        raise CorruptDataError(f"cannot read image {path}: {exc}") from None
    if frames > 1:
        read.notes.insert(0, f"holds {frames} frames (an animation or a multi-page file); "
                             "only the first is read")
    read.notes.extend(f"Pillow: {warning.message}" for warning in said
                      if not issubclass(warning.category, DeprecationWarning))
    return read.to_channels(channels)


def _to_rgb(image, path: Path) -> ImageFile:
    """An opened PIL image as 8-bit RGB and the conversions, in words."""
    from PIL import ImageOps

    notes: list[str] = []
    orientation = image.getexif().get(0x0112, 1)  # EXIF Orientation
    if orientation in range(2, 9):  # 1: as stored; others are not orientations
        image = ImageOps.exif_transpose(image)
        notes.append(f"EXIF orientation {orientation} applied (the image as a viewer shows "
                     "it)")
    keyed = _colour_key_mask(image, path, notes)
    read = _converted(image, path, notes)
    if keyed is not None and keyed.any():
        read.pixels[keyed] = 255
        read.notes.append(f"transparent color (a PNG tRNS key): {int(keyed.sum())} of "
                          f"{keyed.size} pixels, composited onto white")
    return read


def _colour_key_mask(image, path: Path, notes: list[str]) -> np.ndarray | None:
    """The pixels of an RGB, grayscale or 16-bit image that its one transparent color (a
    PNG tRNS chunk) marks, ``bool [H, W]``; ``None`` where it names none. (Pillow keeps
    the key in ``info`` and reads those pixels as their stored color.)"""
    key = image.info.get("transparency")
    if image.mode in ("P", *ALPHA_MODES) or not isinstance(key, (int, tuple)):
        return None  # a palette's transparency is expanded by Pillow itself
    header = _png_header(path)
    if image.mode == "RGB" and header is not None and header[0] == 16:
        # the key is of 16 bits, the pixels Pillow reads of 8: no exact match is possible
        notes.append(f"16-bit color PNG with a transparent color {key}: not applied (its "
                     "pixels are read as stored); save it with an alpha channel instead")
        return None
    if (image.mode == "L" and header is not None and header[0] < 8 and header[1] == 0
            and isinstance(key, int)):  # 2- and 4-bit gray: Pillow scales the samples only
        key = key * (255 // (2 ** header[0] - 1))
    values = np.asarray(image)
    if values.ndim == 3:
        if not isinstance(key, tuple) or len(key) != values.shape[2]:
            return None
        return (values == np.asarray(key, dtype=values.dtype)).all(axis=2)
    return values == key if isinstance(key, int) else None


def _converted(image, path: Path, notes: list[str]) -> ImageFile:
    """``image`` (oriented) as 8-bit RGB, each conversion added to ``notes``."""
    from PIL import Image

    mode = image.mode
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        notes.append("palette image with transparency: expanded to RGBA")
    elif mode == "P":
        image = image.convert("RGB")
        notes.append("palette image: expanded to RGB")
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image).astype(np.int64)
        if values.min() < 0 or values.max() > 65535:
            raise CorruptDataError(f"{path}: {image.mode} image with values "
                                   f"{values.min()}..{values.max()} (beyond 16 bits); save "
                                   "it as 8-bit RGB first")
        gray = np.floor(values / 257.0 + 0.5).astype(np.uint8)
        kind = "32-bit integer grayscale (I) read as 16-bit" if image.mode == "I" else (
            f"16-bit grayscale ({image.mode})")
        notes.append(f"{kind}, values {values.min()}..{values.max()}, scaled to 8 bits "
                     "(v / 257)")
        return ImageFile(np.repeat(gray[..., None], 3, axis=2), mode, notes)
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
            raise CorruptDataError(f"{path}: float image with values outside [0, 1]; save "
                                   "it as 8-bit RGB first")
        gray = np.floor(values * 255 + 0.5).astype(np.uint8)
        notes.append("float grayscale (F) in [0, 1] scaled to 8 bits")
        return ImageFile(np.repeat(gray[..., None], 3, axis=2), mode, notes)
    if image.mode in ALPHA_MODES:
        rgba = np.asarray(image.convert("RGBA"))
        alpha = rgba[..., 3]
        if (alpha == 255).all():
            notes.append("alpha channel fully opaque: dropped")
        else:
            notes.append(f"alpha channel: {int((alpha < 255).sum())} of {alpha.size} pixels "
                         "not opaque, composited onto white")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    if image.mode != "RGB":
        if image.mode not in ("RGBA",):
            notes.append(f"{image.mode} converted to RGB")
        image = image.convert("RGB")
    header = _png_header(path)
    if mode in ("RGB", "RGBA") and header is not None and header[0] == 16:
        kind = "gray and alpha" if header[1] == 4 else "color"
        notes.append(f"16-bit {kind} PNG: each channel read as its high byte (v >> 8, "
                     "Pillow's reading; within 1 of v / 257)")
    return ImageFile(np.asarray(image, dtype=np.uint8).copy(), mode, notes)


def _png_header(path: Path) -> tuple[int, int] | None:
    """A PNG file's bit depth per channel and color type (its IHDR header: 0 gray, 2 RGB,
    3 palette, 4 gray and alpha, 6 RGBA), else ``None``: Pillow reads 16-bit color PNGs
    as 8-bit RGB without a word."""
    try:
        with open(path, "rb") as file:
            head = file.read(26)
    except OSError:
        return None
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


@dataclass(frozen=True)
class Resize:
    """How a user's image was fitted to the model's input (``None`` when it was not).

    Attributes:
        original: ``(width, height)`` of the file.
        model: ``(width, height)`` of the model's input.
    """

    original: tuple[int, int]
    model: tuple[int, int]

    def to_original(self, x: int, y: int) -> tuple[int, int, int, int]:
        """The box of file pixels that model pixel ``(x, y)`` covers.

        Args:
            x: the model pixel's column.
            y: the model pixel's row.

        Returns:
            ``(x0, y0, x1, y1)``, inclusive, within the file.
        """
        sx, sy = self.original[0] / self.model[0], self.original[1] / self.model[1]
        x0, y0 = int(np.floor(x * sx)), int(np.floor(y * sy))
        x1 = max(x0, int(np.ceil((x + 1) * sx)) - 1)
        y1 = max(y0, int(np.ceil((y + 1) * sy)) - 1)
        return x0, y0, min(x1, self.original[0] - 1), min(y1, self.original[1] - 1)


def fit_image(image: ImageFile, size: int | tuple[int, int] | None, resize: bool = True,
              channels: int | None = None) -> tuple[torch.Tensor, Resize | None]:
    """``image`` as a model's input batch of one.

    Args:
        image: the file as read (:func:`read_image_file`).
        size: the model's input side, ``(height, width)``, or ``None`` (any size: the
            image's own).
        resize: resize an image of another size (bilinear, antialiased); ``False``
            refuses it.
        channels: the model's input channels, checked against the image's (``None``:
            as the image holds). Read the file with ``read_image_file(path, channels)``
            (or convert with :meth:`ImageFile.to_channels`): that is where the
            conversion happens and is noted.

    Returns:
        ``float32 [1, C, H, W]`` in [0, 1], and how it was resized (``None``: it was not).

    Raises:
        SizeMismatchError: another size and ``resize=False``.
        ValueError: the image holds other channels than ``channels``.
    """
    if channels is not None and check_channels(channels) != image.channels:
        raise ValueError(f"the image holds {image.channels} channel(s) and the model takes "
                         f"{channels}; read it with read_image_file(path, channels={channels})"
                         ", which converts it and says so")
    pixels, fitted = image.pixels, None
    height, width = (size, size) if isinstance(size, int) else (size or image.size[::-1])
    if image.size != (width, height):
        if not resize:
            raise SizeMismatchError(f"the image is {image.size[0]}×{image.size[1]} and the "
                                    f"model takes {width}×{height}; resize it (resize=True), "
                                    f"or give an image of {width}×{height}")
        pixels = resize_pixels(pixels, (height, width))
        fitted = Resize(image.size, (width, height))
    array = np.ascontiguousarray(pixels.transpose(2, 0, 1))
    return torch.from_numpy(array)[None].float() / 255.0, fitted
