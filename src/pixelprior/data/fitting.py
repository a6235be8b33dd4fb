"""Fitting images to a model: one size (bilinear resize) and its number of channels.

Pixels here are ``uint8 [H, W, C]`` arrays (one image) or ``uint8 [N, C, H, W]``
(a set). Channels convert one way each, as PIL does it: 3 → 1 is PIL's ``"L"``
(8-bit luminance, ITU-R 601-2: ``L = R·299/1000 + G·587/1000 + B·114/1000``), 1 → 3
repeats the gray value; anything else is refused. Every conversion and resize is said in
one note, never one per image.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .base import CorruptDataError
from .sizes import Size, as_height_width, format_size

LUMINANCE_NOTE = 'converted to 8-bit luminance (PIL "L") for a 1-channel model'
GRAY_TO_RGB_NOTE = "one-channel (grayscale) images repeated to three channels (RGB)"

__all__ = [
    "GRAY_TO_RGB_NOTE", "LUMINANCE_NOTE", "Fitter", "check_channels", "convert_channels",
    "luminance", "resize_pixels", "set_channels",
]


def check_channels(channels: int, allowed: tuple[int, ...] | None = None) -> int:
    """``channels`` if it is a channel count a loader can give.

    Args:
        channels: the model's input channels.
        allowed: the counts this loader can give (``None``: any positive count).

    Returns:
        ``channels``.

    Raises:
        ValueError: not a positive integer, or not among ``allowed``.
    """
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive integer (3 for RGB, 1 for grayscale), "
                         f"got {channels!r}")
    if allowed is not None and channels not in allowed:
        raise ValueError(f"image files are read with {' or '.join(map(str, allowed))} "
                         f"channels, not {channels}; give an .npz of [N, {channels}, H, W] "
                         f"images for a {channels}-channel model")
    return channels


def luminance(pixels: np.ndarray) -> np.ndarray:
    """RGB pixels as 8-bit luminance, exactly as PIL's ``convert("L")``.

    Args:
        pixels: ``uint8 [..., H, W, 3]``.

    Returns:
        ``uint8 [..., H, W, 1]``.
    """
    from PIL import Image

    flat = np.ascontiguousarray(pixels.reshape(-1, pixels.shape[-2], 3))
    gray = np.array(Image.fromarray(flat, "RGB").convert("L"), dtype=np.uint8)
    return gray.reshape(*pixels.shape[:-1], 1)


def convert_channels(pixels: np.ndarray, channels: int) -> tuple[np.ndarray, str | None]:
    """``uint8 [..., H, W, C]`` pixels with ``channels`` channels, and the note saying so.

    Args:
        pixels: channels last.
        channels: the channels wanted.

    Returns:
        The pixels (the same array when they already have ``channels``) and the note
        (``None`` when nothing was converted).

    Raises:
        CorruptDataError: a conversion other than 3 → 1 or 1 → 3.
    """
    held = int(pixels.shape[-1])
    if held == channels:
        return pixels, None
    if held == 3 and channels == 1:
        return luminance(pixels), LUMINANCE_NOTE
    if held == 1 and channels == 3:
        return np.repeat(pixels, 3, axis=-1), GRAY_TO_RGB_NOTE
    raise CorruptDataError(f"images of {held} channel(s) cannot be given to a model taking "
                           f"{channels}: only 3 → 1 (luminance) and 1 → 3 are converted")


def set_channels(images: np.ndarray, channels: int) -> tuple[np.ndarray, list[str]]:
    """A set ``uint8 [N, C, H, W]`` with ``channels`` channels, and what was done.

    Args:
        images: ``uint8 [N, C, H, W]``.
        channels: the channels wanted.

    Returns:
        ``uint8 [N, channels, H, W]`` and the notes (empty when nothing changed).

    Raises:
        CorruptDataError: a conversion other than 3 → 1 or 1 → 3.
    """
    last, note = convert_channels(images.transpose(0, 2, 3, 1), channels)
    if note is None:
        return images, []
    held = images.shape[1]
    return (np.ascontiguousarray(last.transpose(0, 3, 1, 2)),
            [note if held == 1 else f"{held}-channel images {note}"])


def resize_pixels(pixels: np.ndarray, height_width: tuple[int, int]) -> np.ndarray:
    """One image resized bilinearly (antialiased), as PIL's ``resize`` does it.

    Args:
        pixels: ``uint8 [H, W, C]``.
        height_width: the size wanted.

    Returns:
        ``uint8 [height, width, C]``.
    """
    from PIL import Image

    box = (height_width[1], height_width[0])
    if pixels.shape[2] in (1, 3):
        image = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
        out = np.array(image.resize(box, Image.Resampling.BILINEAR), dtype=np.uint8)
        return out.reshape(height_width[0], height_width[1], pixels.shape[2])
    # PIL resizes every band alike, one at a time: other channel counts, band by band
    bands = [resize_pixels(np.ascontiguousarray(pixels[..., c:c + 1]), height_width)
             for c in range(pixels.shape[2])]
    return np.concatenate(bands, axis=2)


class Fitter:
    """Brings ``uint8 [H, W, C]`` arrays to one size and remembers what it resized.

    Args:
        size: the model's input ``(height, width)`` (or a side); ``None``: every image
            must have the first one's size.
    """

    def __init__(self, size: Size | None) -> None:
        self.target = as_height_width(size)
        self.first: tuple[str, tuple[int, int]] | None = None
        self.resized: Counter = Counter()

    def __call__(self, pixels: np.ndarray, where: str) -> np.ndarray:
        """``pixels`` at the target size.

        Args:
            pixels: ``uint8 [H, W, C]``.
            where: the image's name, for the message.

        Returns:
            ``uint8 [h, w, C]`` at the target size (the same array when it fits).

        Raises:
            CorruptDataError: no target size and an image of another size than the first.
        """
        shape = (int(pixels.shape[0]), int(pixels.shape[1]))
        if self.target is None:
            if self.first is None:
                self.first = (where, shape)
            elif shape != self.first[1]:
                raise CorruptDataError(
                    f"images of different sizes: {self.first[0]} is "
                    f"{format_size(self.first[1])} and {where} is {format_size(shape)}; give the "
                    "model's input size to resize them")
            return pixels
        if shape == self.target:
            return pixels
        self.resized[shape] += 1
        return resize_pixels(pixels, self.target)

    def notes(self) -> list[str]:
        """One note on the resizing done, if any.

        Returns:
            ``["N images resized from W×H (and others) to W×H (bilinear)"]`` or ``[]``.
        """
        if not self.resized:
            return []
        count = sum(self.resized.values())
        common = self.resized.most_common(1)[0][0]
        others = " (and others)" if len(self.resized) > 1 else ""
        noun = "image" if count == 1 else "images"
        return [f"{count} {noun} resized from {format_size(common)}{others} to "
                f"{format_size(self.target)} (bilinear)"]
