"""The errors a model spec can end in, and :func:`short_reason`: any exception as one
short line, for messages that quote a library's error."""

from __future__ import annotations

import re

import torch
from torch import nn

from .registry import WeightsError

REASON_CHARS = 120
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

__all__ = ["ANSI", "REASON_CHARS", "DefiniteLoadError", "GradientsUnavailableError",
           "ModelInputError", "ModelLoadError", "batch_failure", "model_failure", "short_reason"]


class ModelLoadError(WeightsError):
    """A model spec that does not load, or a model that cannot be used as loaded; the
    message (one line) says what was tried, why it failed and what to do."""


class DefiniteLoadError(ModelLoadError):
    """A definite answer about a file: no point trying the other formats."""


class ModelInputError(ModelLoadError, ValueError):
    """Images that do not fit the model (size, channels, labels beyond its classes)."""


class GradientsUnavailableError(ModelLoadError):
    """A gradient was asked of a query-only model (ONNX without a PyTorch copy).

    Args:
        message: the whole message (what failed and what to do).
        why: why there are no gradients, in a few words (default: ``message``).
    """

    def __init__(self, message: str, why: str | None = None) -> None:
        super().__init__(message)
        self.why = why or message


def short_reason(error: BaseException | str, limit: int = REASON_CHARS) -> str:
    """An exception (or text) as one short line.

    ANSI codes are removed; of several lines the first is kept (the last for a
    TorchScript traceback, whose reason comes last); a line over ``limit`` is cut at its
    first sentence, then at ``limit`` characters.

    Args:
        error: the exception (shown as ``Type: message``) or text.
        limit: the most characters returned.

    Returns:
        One line of at most ``limit`` characters.
    """
    text = error if isinstance(error, str) else (
        f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
    lines = [part.strip() for part in ANSI.sub("", text).splitlines() if part.strip()]
    line = lines[0] if lines else ""
    if len(lines) > 1 and ("TorchScript interpreter" in line or line.endswith(":")):
        line = lines[-1]  # a header line; the reason comes last (TorchScript's traceback)
    line = re.sub(r"\s+", " ", line)
    if len(line) > limit and ". " in line[20:]:
        line = line[:20 + line[20:].index(". ")]
    return line if len(line) <= limit else line[:limit - 1].rstrip() + "…"


def batch_failure(count: int, error: BaseException) -> str:
    """Why a model that runs on one image fails on a batch of ``count``, as one line.

    Args:
        count: the images of the batch it failed on.
        error: what it raised.

    Returns:
        The message (no trailing period).
    """
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return (f"the model runs on one image but fails on a batch of {count} ({reason}): it "
            "computes as if the batch held one image (a reshape to a literal 1, a mean "
            "over the batch axis, a value of the batch axis alone broadcast against "
            "another axis); pixelprior scores many images per forward")


def model_failure(model: nn.Module, images: torch.Tensor, error: BaseException) -> str:
    """Why ``model`` failed on ``images``, as one line: parameters of another float type
    than the images' when that is so (``model.float()`` is the fix, not the images'
    layout), else the images' shape, as the model may take another layout.

    Args:
        model: the model that raised ``error``.
        images: the batch it was given.
        error: what it raised.

    Returns:
        The message (no trailing period).
    """
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    floats = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if floats and images.dtype not in floats:
        kinds = ", ".join(sorted(str(t).removeprefix("torch.") for t in floats))
        image_kind = str(images.dtype).removeprefix("torch.")
        return (f"the model's parameters are {kinds} and the images {image_kind}: convert "
                f"the model with model.float() ({reason})")
    return (f"the model fails on images of shape {list(images.shape)} (it takes "
            f"[B, C, H, W], channels first?): {reason}")
