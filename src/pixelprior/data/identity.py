"""The identity of an image: a fingerprint of its pixels, and the images a set holds twice.

A fingerprint is the SHA-256 of an image's shape and pixel bytes, so a run can record
which picture each of its rows is about and check it again on resume; two images with
the same fingerprint are the same picture to a model.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

__all__ = ["image_fingerprints", "same_picture_groups"]


def image_fingerprints(images: torch.Tensor) -> list[str]:
    """The SHA-256 fingerprint of every image of a batch.

    Each digest covers the image's shape, as the ASCII text ``"CxHxW\\n"`` (e.g.
    ``"3x32x32\\n"``), followed by its pixel bytes in ``C, H, W`` order, so equal bytes
    in another shape (a transposed or 1-channel copy) give another fingerprint. It does not
    depend on the batch, the device or the memory layout.

    Args:
        images: ``uint8 [N, C, H, W]``.

    Returns:
        ``N`` lowercase hex digests (64 characters each), in the batch's order.

    Raises:
        TypeError: ``images`` is not a ``uint8`` tensor.
        ValueError: ``images`` is not ``[N, C, H, W]``.
    """
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        raise TypeError(f"image_fingerprints takes a uint8 tensor [N, C, H, W], got "
                        f"{getattr(images, 'dtype', type(images).__name__)}")
    if images.ndim != 4:
        raise ValueError(f"image_fingerprints takes images [N, C, H, W], got shape "
                         f"{tuple(images.shape)}")
    array = np.ascontiguousarray(images.detach().cpu().numpy())
    header = "x".join(str(side) for side in array.shape[1:]).encode() + b"\n"
    return [hashlib.sha256(header + image.tobytes()).hexdigest() for image in array]


def same_picture_groups(fingerprints: list[str]) -> list[list[int]]:
    """Rows that hold the same picture, grouped.

    Args:
        fingerprints: one fingerprint per row (:func:`image_fingerprints`).

    Returns:
        One list of row positions (ascending) per picture held more than once, ordered
        by each group's first row; empty when every picture is held once.
    """
    rows: dict[str, list[int]] = {}
    for row, fingerprint in enumerate(fingerprints):
        rows.setdefault(fingerprint, []).append(row)
    return [group for group in rows.values() if len(group) > 1]
