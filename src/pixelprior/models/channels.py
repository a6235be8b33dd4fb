"""Image channels: what a model's first convolution takes, and RGB images converted to
a 1-channel (grayscale) model's input."""

from __future__ import annotations

import torch
from torch import nn

from .errors import ModelInputError

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L")

__all__ = ["LUMA", "first_conv_channels", "to_model_channels"]


def to_model_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """RGB images as the model's channels: unchanged for 3, the luma (ITU-R 601-2, as
    PIL's ``convert("L")``) for 1.

    Args:
        images: ``float [B, 3, H, W]`` (or already ``[B, channels, H, W]``).
        channels: what the model takes, 1 or 3.

    Returns:
        ``float [B, channels, H, W]`` of ``images``' dtype.

    Raises:
        ModelInputError: any other combination.
    """
    if images.shape[1] == channels:
        return images
    if channels == 1 and images.shape[1] == 3:
        weights = torch.tensor(LUMA, dtype=images.dtype, device=images.device)
        return (images * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)
    raise ModelInputError(f"images with {images.shape[1]} channels for a model taking "
                          f"{channels}")


def _kind(module: nn.Module) -> str:
    """The class name of a module, also inside TorchScript (``original_name``)."""
    return getattr(module, "original_name", None) or type(module).__name__


def first_conv_channels(model: nn.Module) -> int | None:
    """The input channels of the first 2-D convolution registered in ``model``, also
    inside a TorchScript module (scripted: its ``in_channels``; traced: its weight's
    ``[out, in / groups, kh, kw]`` shape, read as ungrouped).

    A hint of what the model takes (modules are registered in the order their author
    wrote them, usually the order they run), confirmed by a probe forward.

    Args:
        model: any module.

    Returns:
        1, 3 (or another count), or ``None`` when no convolution is found.
    """
    for module in model.modules():
        if _kind(module) != "Conv2d":
            continue
        declared = getattr(module, "in_channels", None)
        if isinstance(declared, int):
            return declared
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.ndim == 4:
            return int(weight.shape[1])
        return None
    return None
