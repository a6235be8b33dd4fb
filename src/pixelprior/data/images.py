"""A user's image files: read as 8-bit RGB whatever their mode, fitted to a model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .base import CorruptDataError, DataNotFoundError


class SizeMismatchError(ValueError):
    """An image's size differs from the model's input and resizing was refused."""

@dataclass
class ImageFile:
    """A user's image file read as 8-bit RGB, and what was done to get there."""

    pixels: np.ndarray  # uint8 [H, W, 3]
    mode: str  # the file's PIL mode
    notes: list[str]  # conversions applied, in words (alpha, bit depth, colour space)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])


ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def read_image_file(path: str | Path) -> ImageFile:
    """Read any image PIL opens as 8-bit RGB, converting every mode correctly.

    16-bit integer images (``I;16*``, and ``I`` with values in 0..65535) are scaled to
    8 bits (v / 257, rounded), so a 16-bit PNG reads as the same pixels as its 8-bit copy;
    float images (``F``) must lie in [0, 1]; palette, grayscale, bilevel, CMYK, YCbCr,
    LAB and HSV images are converted by PIL; an alpha channel is dropped when fully opaque
    and otherwise composited onto white; an EXIF orientation is applied (the image as a
    viewer shows it). Every conversion is listed in ``notes``.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            return _to_rgb(image, path)
    except FileNotFoundError:
        raise DataNotFoundError(f"image file {path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise CorruptDataError(f"cannot read image {path}: {exc}") from None


def _to_rgb(image, path: Path) -> ImageFile:
    from PIL import Image, ImageOps

    mode, notes = image.mode, []
    orientation = image.getexif().get(0x0112, 1)  # EXIF Orientation
    if orientation not in (1, None):
        image = ImageOps.exif_transpose(image)
        notes.append(f"EXIF orientation {orientation} applied (the image as a viewer shows "
                     "it)")
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
        notes.append(f"16-bit grayscale ({image.mode}) scaled to 8 bits (v / 257)")
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
    return ImageFile(np.asarray(image, dtype=np.uint8).copy(), mode, notes)


@dataclass(frozen=True)
class Resize:
    """How a user's image was fitted to the model's input (``None`` when it was not)."""

    original: tuple[int, int]  # (width, height) of the file
    model: tuple[int, int]  # (width, height) of the model's input

    def to_original(self, x: int, y: int) -> tuple[int, int, int, int]:
        """The box of file pixels ``(x0, y0, x1, y1)`` (inclusive) that model pixel
        ``(x, y)`` covers."""
        sx, sy = self.original[0] / self.model[0], self.original[1] / self.model[1]
        x0, y0 = int(np.floor(x * sx)), int(np.floor(y * sy))
        x1 = max(x0, int(np.ceil((x + 1) * sx)) - 1)
        y1 = max(y0, int(np.ceil((y + 1) * sy)) - 1)
        return x0, y0, min(x1, self.original[0] - 1), min(y1, self.original[1] - 1)


def fit_image(image: ImageFile, size: int | tuple[int, int] | None, resize: bool = True
              ) -> tuple[torch.Tensor, Resize | None]:
    """``image`` as float ``[1, 3, H, W]`` in [0, 1] for a model taking ``size`` (a side,
    ``(height, width)``, or ``None``: any size, the image's own): resized (bilinear,
    antialiased) when its size differs, unless ``resize=False``, which refuses it."""
    from PIL import Image

    pixels, fitted = image.pixels, None
    height, width = (size, size) if isinstance(size, int) else (size or image.size[::-1])
    if image.size != (width, height):
        if not resize:
            raise SizeMismatchError(f"the image is {image.size[0]}×{image.size[1]} and the "
                                    f"model takes {width}×{height}; resize it (resize=True), "
                                    f"or give an image of {width}×{height}")
        pixels = np.asarray(Image.fromarray(pixels).resize((width, height),
                                                           Image.Resampling.BILINEAR))
        fitted = Resize(image.size, (width, height))
    array = np.ascontiguousarray(pixels.transpose(2, 0, 1))
    return torch.from_numpy(array)[None].float() / 255.0, fitted

