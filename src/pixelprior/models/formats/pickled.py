"""PyTorch files read by ``torch.load``: a pickled ``nn.Module`` (only with
``allow_pickle``: unpickling runs code from the file), or a state dict, which is no model
(it is refused, pointing at ``--weights``)."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from torch import nn

from ..errors import ANSI, DefiniteLoadError, ModelLoadError, short_reason
from ..registry import unwrap_state_dict
from .base import BuiltModel, declared_names, declared_size

SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt", ".tar")

__all__ = ["SUFFIXES", "load_torch_file"]


def load_torch_file(path: Path, allow_pickle: bool, device: torch.device) -> BuiltModel:
    """A pickled module (``torch.save(model)``), loaded only with ``allow_pickle``.

    Args:
        path: the file.
        allow_pickle: unpickle Python objects (runs code from the file).
        device: where the model runs.

    Returns:
        The unpickled module, with its declared input size and class names.

    Raises:
        DefiniteLoadError: pickled objects without ``allow_pickle``, a state dict (weights
            without an architecture), or unpickling failed.
        ModelLoadError: not a PyTorch file, or it holds no module.
    """
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        value = _refused_objects(path, exc, allow_pickle, device)
    if isinstance(value, nn.Module):
        notes = [f"pickled module {type(value).__name__} from {path.name} (allow_pickle)"]
        return BuiltModel(value.to(device), "pickle", str(path.resolve()), notes,
                          declared_size(value, notes), size_from="declared by the model",
                          class_names=declared_names(value), file=path)
    state = unwrap_state_dict(value)
    if state:
        keys = list(state)
        raise DefiniteLoadError(
            f"{path} holds a state dict ({len(keys)} tensors, e.g. {keys[0]!r}) but no "
            "architecture: load it as the weights of a module:callable factory (--weights)")
    raise ModelLoadError(f"holds a {type(value).__name__}, not a model")


def _refused_objects(path: Path, exc: pickle.UnpicklingError, allow_pickle: bool,
                     device: torch.device) -> object:
    """What safe loading refused: unpickled when allowed, else a definite error."""
    text = ANSI.sub("", str(exc))
    found = re.findall(r"GLOBAL ([\w.]+)", text)
    if not found:  # not refused objects: a broken or foreign file
        detail = [line for line in text.splitlines() if "Unsupported" in line]
        raise ModelLoadError(f"not a readable PyTorch file "
                             f"({short_reason(detail[-1] if detail else text)})") from None
    if not allow_pickle:
        raise DefiniteLoadError(
            f"{path} holds pickled Python objects ({found[0]}), e.g. a model saved with "
            "torch.save(model); unpickling runs code from the file: pass allow_pickle="
            "True (--allow-pickle) if you trust it, or save TorchScript or a state "
            "dict instead") from None
    return _unpickle(path, device)


def _unpickle(path: Path, device: torch.device) -> object:
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except (AttributeError, ModuleNotFoundError) as exc:
        raise DefiniteLoadError(f"{path}: the pickled model's class cannot be found "
                                f"({short_reason(exc)}); import the module that defines it "
                                "first, or save TorchScript instead") from None
    except Exception as exc:  # unpickling the user's objects
        raise DefiniteLoadError(f"{path}: unpickling failed: {short_reason(exc)}") from None
