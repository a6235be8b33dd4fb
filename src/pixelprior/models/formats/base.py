"""What building a model from one format finds, before the probe forward."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ...data.sizes import Size, as_height_width
from ..errors import ModelLoadError

__all__ = ["BuiltModel", "declared_names", "declared_size", "height_width"]


@dataclass
class BuiltModel:
    """A model as one format built it, and what that format declares about it.

    Attributes:
        model: the module, on the device (mode as it was saved or built).
        kind: ``registered``, ``torchscript``, ``onnx``, ``module`` or ``pickle``.
        source: where it came from, in words (a resolved path, ``file:callable``, ...).
        notes: what was assumed, in words.
        input_size: ``(height, width)`` declared, or ``None``.
        size_is_fixed: the size is declared by the registry or the ONNX graph.
        size_from: who declared the size, in words.
        channels: the channels declared (registry, ONNX graph), or ``None``.
        class_names: the names the model declares, or ``None``.
        normalises: known to normalise inside (registered models).
        file: the model file (TorchScript, ONNX, pickle), or ``None``.
        weights: the weights file loaded into it, or ``None``.
    """

    model: nn.Module
    kind: str
    source: str
    notes: list[str]
    input_size: tuple[int, int] | None = None
    size_is_fixed: bool = False
    size_from: str = ""
    channels: int | None = None
    class_names: tuple[str, ...] | None = None
    normalises: bool = False
    file: Path | None = None
    weights: Path | None = None


def height_width(size: Size | None) -> tuple[int, int] | None:
    """``size`` as ``(height, width)`` (``None`` stays ``None``).

    Args:
        size: a side, ``(height, width)`` or ``None``.

    Returns:
        ``(height, width)`` or ``None``.

    Raises:
        ModelLoadError: not a positive side or pair of them.
    """
    try:
        return as_height_width(size, "input_size")
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from None


def declared_size(model: nn.Module, notes: list[str] | None = None
                  ) -> tuple[int, int] | None:
    """The ``input_size`` attribute of ``model`` as ``(height, width)``, if it has a valid one.

    Args:
        model: any module.
        notes: told when the attribute is there but no size (``(3, 20, 20)``, ``"20x20"``):
            ignored, where it was ignored unsaid and the image attacked at its own size.

    Returns:
        ``(height, width)`` or ``None``.
    """
    value = getattr(model, "input_size", None)
    try:
        return height_width(value)
    except ModelLoadError:
        if notes is not None:
            notes.append(f"the model's input_size attribute {value!r} is no side or "
                         "(height, width): ignored (give --input-size, or input_size= in "
                         "the API)")
        return None


def declared_names(model: nn.Module) -> tuple[str, ...] | None:
    """The ``class_names`` attribute of ``model`` when it is a non-empty list of strings.

    Args:
        model: any module (a TorchScript module keeps such attributes too).

    Returns:
        The names, or ``None``.
    """
    names = getattr(model, "class_names", None)
    if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
        return tuple(names)
    return None

