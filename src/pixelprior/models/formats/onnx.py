"""ONNX files: queries through ONNX Runtime, gradients through a PyTorch copy converted
by ``onnx2torch`` when it is installed (else the model is query-only)."""

from __future__ import annotations

import importlib
import re
import sys
import types
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from ..errors import DefiniteLoadError, ModelLoadError, short_reason
from ..wrappers import ONNX_TYPES, OnnxModel, ort_session
from .base import BuiltModel

SUFFIXES = (".onnx",)

__all__ = ["SUFFIXES", "load_onnx", "onnx_twin"]


def load_onnx(path: Path, allow_pickle: bool, device: torch.device) -> BuiltModel:
    """An ONNX file as an :class:`~pixelprior.models.OnnxModel`.

    Args:
        path: the file.
        allow_pickle: unused.
        device: where the PyTorch copy runs (on CUDA every forward runs it).

    Returns:
        The model, with the channels and the size its graph declares.

    Raises:
        ImportError: ``onnxruntime`` is not installed.
        DefiniteLoadError: a graph of several inputs, or not NCHW float images.
        Exception: ONNX Runtime cannot read the file (the dispatch tries the next format).
    """
    session = ort_session(path)
    name, channels, hw = _onnx_input(path, session)
    twin, problem = onnx_twin(path)
    model = OnnxModel(path, twin, prefer_twin=device.type != "cpu", session=session)
    if twin is None:
        model.twin_problem = problem
    notes = [f"ONNX {path.name} (input {name!r})"]
    if model.batch is not None:
        notes.append(f"the ONNX graph has a fixed batch of {model.batch}: ONNX Runtime runs "
                     f"{model.batch} image(s) per call (export it with a dynamic batch axis "
                     "for speed)")
    return BuiltModel(model.to(device), "onnx", str(path.resolve()), notes, hw,
                      hw is not None, "declared by the ONNX graph", channels, file=path)


def _shape(values: Sequence) -> str:
    return "[" + ", ".join("?" if v is None else str(v) for v in values) + "]"


def _onnx_input(path: Path, session) -> tuple[str, int, tuple[int, int] | None]:
    """The graph's image input: its name, channels and fixed ``(height, width)``."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise DefiniteLoadError(f"{path}: the ONNX graph has {len(inputs)} inputs "
                                f"({', '.join(i.name for i in inputs)}); it must take one "
                                "batch of images")
    first = inputs[0]
    if first.type not in ONNX_TYPES:
        raise DefiniteLoadError(f"{path}: the ONNX input {first.name!r} is {first.type}; it "
                                "must be a float tensor of images")
    channels, hw = _onnx_layout(path, first.name, list(first.shape))
    return first.name, channels, hw


def _onnx_layout(path: Path, name: str, shape: list) -> tuple[int, tuple[int, int] | None]:
    need = "it must be NCHW [N, C, H, W] with C = 1 or 3"
    if len(shape) != 4:
        raise DefiniteLoadError(f"{path}: the ONNX input {name!r} has shape {_shape(shape)}; "
                                f"{need}")
    _, channels, height, width = shape
    if channels not in (1, 3):
        layout = ("channels last (NHWC)" if width in (1, 3) else
                  f"{channels} channels" if isinstance(channels, int) else
                  "no fixed channel count")
        raise DefiniteLoadError(f"{path}: the ONNX input {name!r} has shape {_shape(shape)}, "
                                f"{layout}; {need} (re-export it channels first)")
    fixed = isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0
    return channels, (height, width) if fixed else None


def onnx_twin(path: Path) -> tuple[nn.Module | None, str | None]:
    """The graph converted to PyTorch by ``onnx2torch``, or ``None`` and why not.

    Args:
        path: the ONNX file.

    Returns:
        ``(module in eval mode, None)`` or ``(None, the reason in words)``.
    """
    try:
        import onnx

        onnx2torch = _import_onnx2torch()
    except Exception as exc:  # not installed, or an import that fails (a broken install)
        return None, f"onnx2torch is not available: {short_reason(exc)}"
    try:
        graph = onnx.load(str(path))
        return _convert(onnx2torch, graph), None
    except Exception as exc:  # an operator onnx2torch does not convert (or onnx's load)
        failure = exc
    if "graph" not in locals():  # onnx cannot read what ONNX Runtime could
        return None, f"onnx cannot load it: {short_reason(failure)}"
    opset = _opset(graph)
    if not (isinstance(failure, NotImplementedError) and opset > OLDER_OPSET):
        return None, _conversion_failure(failure)
    # a newer opset's form of an operation (Constant changed in opset 19): onnx's own
    # version converter rewrites the graph in an older opset's forms, which onnx2torch
    # knows (the copy is checked against ONNX Runtime by the loader, like any copy)
    try:
        from onnx import version_converter

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            twin = _convert(onnx2torch, version_converter.convert_version(graph,
                                                                          OLDER_OPSET))
    except Exception as older:  # noqa: BLE001  (either step: the first reason stands)
        return None, (f"{_conversion_failure(failure)}; taken to opset {OLDER_OPSET} "
                      f"first, {_conversion_failure(older)}")
    twin.converted_opsets = (opset, OLDER_OPSET)
    return twin, None


OLDER_OPSET = 17  # the opset tried when a graph's own has forms onnx2torch does not know


def _convert(onnx2torch: types.ModuleType, graph) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return onnx2torch.convert(graph).eval()


def _opset(graph) -> int:
    """The graph's opset of the default ONNX domain (0 where none is declared)."""
    return max((entry.version for entry in graph.opset_import
                if entry.domain in ("", "ai.onnx")), default=0)


def _conversion_failure(exc: Exception) -> str:
    """Why onnx2torch failed, in words: the operation it has no converter for (its
    message names it deep inside a repr), else its message as one line."""
    found = re.search(r"operation_type='([^']+)'(?:, version=(\d+))?", str(exc))
    if not (isinstance(exc, NotImplementedError) and found):
        return f"onnx2torch cannot convert it: {short_reason(exc)}"
    operation, version = found.group(1), found.group(2)
    text = f"onnx2torch has no converter for the ONNX operation {operation}"
    if version is None:
        return text
    last = _last_convertible_opset(operation, int(version))
    return text + (f" of opset {version}" if last is None else
                   f" of opset {version} (it converts the form of opsets up to {last}: "
                   f"export the model with opset_version={last} or lower)")


def _last_convertible_opset(operation: str, version: int) -> int | None:
    """The last opset whose form of ``operation`` onnx2torch converts, where it converts
    an older form than ``version``'s (a model exported at a newer opset than it knows)."""
    try:
        from onnx import defs
        from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY
    except Exception:  # noqa: BLE001  (a broken install: no advice, the reason stands)
        return None
    known = [d.version for d in _CONVERTER_REGISTRY if d.operation_type == operation
             and d.domain == "" and d.version < version]
    if not known:
        return None
    newer = [schema.since_version for schema in defs.get_all_schemas_with_history()
             if schema.name == operation and schema.domain == ""
             and schema.since_version > max(known)]
    return min(newer) - 1 if newer else None


def _import_onnx2torch() -> types.ModuleType:
    """``onnx2torch``, imported without torchvision (used only by its NMS and RoiAlign
    converters, which then fail with a clear error if a graph needs them)."""
    if "onnx2torch" in sys.modules or "torchvision" in sys.modules:
        return importlib.import_module("onnx2torch")
    with _torchvision_stub():
        return importlib.import_module("onnx2torch")


@contextmanager
def _torchvision_stub() -> Iterator[None]:
    def missing(name: str):
        if name.startswith("__") and name.endswith("__"):
            # a module's own attributes (__file__, __path__, ...): inspect.getmodule
            # reads them of every loaded module, and a function in their place breaks it
            raise AttributeError(name)

        def call(*args, **kwargs):
            raise ModelLoadError(f"the ONNX graph needs torchvision.ops.{name}, which "
                                 "pixelprior does not use")
        return call

    package, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    ops.__getattr__ = missing  # type: ignore[attr-defined]
    package.ops = ops  # type: ignore[attr-defined]
    stubs = {"torchvision": package, "torchvision.ops": ops}
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for key, stub in stubs.items():
            if sys.modules.get(key) is stub:
                del sys.modules[key]
