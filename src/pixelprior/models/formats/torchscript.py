"""TorchScript files (``torch.jit.save`` of a scripted or traced model)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .base import BuiltModel, declared_names

SUFFIXES = (".pt", ".pth", ".ts", ".jit")

__all__ = ["SUFFIXES", "load_torchscript"]


def load_torchscript(path: Path, allow_pickle: bool, device: torch.device) -> BuiltModel:
    """A TorchScript file, loaded with ``torch.jit.load``.

    Args:
        path: the file.
        allow_pickle: unused (TorchScript runs no Python code from the file).
        device: where the model runs.

    Returns:
        The model as saved (its mode included), with its declared class names.

    Raises:
        RuntimeError: not a TorchScript file (the dispatch tries the next format).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
        model = torch.jit.load(str(path), map_location=device)
    return BuiltModel(model, "torchscript", str(path.resolve()), [f"TorchScript {path.name}"],
                      class_names=declared_names(model), file=path)
