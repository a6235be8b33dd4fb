"""Model formats, one module each, and :data:`FILE_FORMATS`: the single table of the
file formats a model file is tried as (``module:callable`` factories and registered
names are told apart by the spec itself, see :mod:`pixelprior.models.spec`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import DefiniteLoadError, ModelLoadError, short_reason
from . import onnx, pickled, torchscript
from .base import BuiltModel, declared_names, declared_size, height_width
from .factory import factory_problem, load_factory, load_weights, split_factory_spec

__all__ = ["FILE_FORMATS", "BuiltModel", "FileFormat", "declared_names", "declared_size",
           "factory_problem", "height_width", "load_factory", "load_file", "load_weights",
           "split_factory_spec"]


@dataclass(frozen=True)
class FileFormat:
    """A model file format.

    Attributes:
        label: its name in messages.
        load: ``(path, allow_pickle, device) -> BuiltModel``; any exception but a
            :class:`~pixelprior.models.errors.DefiniteLoadError` means "not this format".
        suffixes: the file names it is tried first for.
    """

    label: str
    load: Callable[[Path, bool, torch.device], BuiltModel]
    suffixes: tuple[str, ...]


FILE_FORMATS: tuple[FileFormat, ...] = (
    FileFormat("TorchScript", torchscript.load_torchscript, torchscript.SUFFIXES),
    FileFormat("ONNX", onnx.load_onnx, onnx.SUFFIXES),
    FileFormat("PyTorch file", pickled.load_torch_file, pickled.SUFFIXES),
)


def _order(path: Path) -> list[FileFormat]:
    """The formats, those claiming the file's suffix first (else the table's order)."""
    suffix = path.suffix.lower()
    return sorted(FILE_FORMATS, key=lambda fmt: suffix not in fmt.suffixes)


def load_file(path: Path, allow_pickle: bool, device: torch.device) -> BuiltModel:
    """A model file, tried as each of :data:`FILE_FORMATS` until one reads it.

    Args:
        path: an existing file.
        allow_pickle: allow unpickling a full ``nn.Module`` (runs code from the file).
        device: where the model runs.

    Returns:
        The model as the first format that reads it built it.

    Raises:
        ModelLoadError: no format reads it (each one's reason said), or a format's
            definite answer (a state dict without an architecture, NHWC ONNX, ...).
    """
    if Path(path).suffix == ".py":
        raise DefiniteLoadError(f"{path} is Python code, not a model file: name the function "
                                f"that builds the model, as {path}:make_model")
    tried = []
    for fmt in _order(path):
        try:
            return fmt.load(path, allow_pickle, device)
        except DefiniteLoadError:
            raise
        except ImportError as exc:
            hint = ' (pip install "pixelprior[onnx]")' if fmt.label == "ONNX" else ""
            tried.append(f"{fmt.label}: {short_reason(exc)}{hint}")
        except Exception as exc:  # this format does not read the file: try the next
            reason = str(exc) if isinstance(exc, ModelLoadError) else short_reason(exc)
            tried.append(f"{fmt.label}: {reason}")
    raise ModelLoadError(f"cannot load {path} as a model; tried {'; '.join(tried)}")
