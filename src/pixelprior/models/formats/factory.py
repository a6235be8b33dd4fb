"""Python factories: ``module:callable`` or ``path/to/file.py:callable`` returning an
``nn.Module``, with ``--weights`` a state dict (or a checkpoint holding one) loaded
strictly."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelLoadError, short_reason
from ..registry import WeightsError, read_state_dict
from .base import BuiltModel, declared_names, declared_size

_MODULE_SPEC = re.compile(r"^(?P<target>[A-Za-z_][\w.]*|.+\.py):(?P<attr>[A-Za-z_][\w.]*)$")

__all__ = ["factory_problem", "load_factory", "load_weights", "split_factory_spec"]


def split_factory_spec(spec: str) -> tuple[str, str] | None:
    """``(module or file.py, attribute)`` of a ``module:callable`` spec.

    An existing file (``sq:v2.pt``) is a file, never a factory.

    Args:
        spec: the model spec.

    Returns:
        The two parts, or ``None`` when ``spec`` is not of that form.
    """
    if Path(spec).expanduser().is_file():
        return None
    match = _MODULE_SPEC.match(spec)
    return (match["target"], match["attr"]) if match else None


def factory_problem(spec: str, target: str) -> str | None:
    """Why the module (or file) of a factory spec cannot be imported, without importing it.

    Args:
        spec: the whole spec (for the message).
        target: its module name or ``.py`` path.

    Returns:
        One line, or ``None`` when it can be found.
    """
    if target.endswith(".py"):
        path = Path(target).expanduser()
        return None if path.is_file() else f"model {spec!r}: {path} does not exist"
    try:
        found = importlib.util.find_spec(target)
    except (ImportError, ValueError) as exc:
        return f"model {spec!r}: cannot import {target} ({short_reason(exc)})"
    if found is None:
        return f"model {spec!r}: no module named {target!r} (is it installed or on PYTHONPATH?)"
    return None


def load_factory(spec: str, target: str, attr: str, weights: str | Path | None,
                 device: torch.device) -> BuiltModel:
    """Import ``target``, call its ``attr`` and load ``weights`` into what it returns.

    Args:
        spec: the whole spec (for messages).
        target: a module name or a ``.py`` path.
        attr: the callable's (dotted) name in it.
        weights: a state dict file, or ``None`` (the factory's own parameters).
        device: where the model runs.

    Returns:
        The module, with its declared input size and class names.

    Raises:
        ModelLoadError: the import, the attribute or the call fails, or not an ``nn.Module``.
        WeightsError: the weights do not load or do not fit.
    """
    with _beside(target):
        module = _import_target(target)
        model = _call(spec, module, target, attr)
    notes = [f"built by {spec}"]
    weights_path = Path(weights).expanduser() if weights is not None else None
    if weights_path is not None:
        load_weights(model, weights_path, spec, notes)
    else:
        notes.append("no weights given: the factory's own parameters (random unless it "
                     "loads weights itself)")
    source = f"{getattr(module, '__file__', target)}:{attr}"
    return BuiltModel(model.to(device), "module", source, notes, declared_size(model, notes),
                      size_from="declared by the model", class_names=declared_names(model),
                      weights=weights_path)


def _call(spec: str, module: types.ModuleType, target: str, attr: str) -> nn.Module:
    factory = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            public = sorted(n for n in dir(module) if not n.startswith("_")
                            and callable(getattr(module, n)))
            raise ModelLoadError(f"{target} has no {attr!r} (callables there: "
                                 f"{', '.join(public[:10]) or 'none'})")
        factory = getattr(factory, part)
    try:
        model = factory()
    except Exception as exc:  # the user's code
        raise ModelLoadError(f"{spec}: calling {attr}() failed: {short_reason(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"{spec}: {attr}() returned {type(model).__name__}, not an "
                             "nn.Module")
    return model


def _import_target(target: str) -> types.ModuleType:
    if target.endswith(".py"):
        return _import_file(Path(target).expanduser())
    try:
        return importlib.import_module(target)
    except ImportError as exc:
        raise ModelLoadError(f"cannot import {target}: {short_reason(exc)} (is it installed "
                             "or on PYTHONPATH?)") from None
    except Exception as exc:  # the module's own code failed
        raise ModelLoadError(f"importing {target} failed: {short_reason(exc)}") from None


@contextlib.contextmanager
def _beside(target: str) -> Iterator[None]:
    """A ``.py`` file's own folder first on ``sys.path`` while it is imported and its
    factory called, as ``python file.py`` has it: ``import layers`` of a sibling
    ``layers.py`` failed with "No module named 'layers'"."""
    folder = str(Path(target).expanduser().resolve().parent) if target.endswith(".py") else None
    if folder is None or folder in sys.path:
        yield
        return
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)


def _import_file(path: Path) -> types.ModuleType:
    if not path.is_file():
        raise ModelLoadError(f"{path} does not exist")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    name = f"pixelprior_user_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
    found = importlib.util.spec_from_file_location(name, path)
    if found is None or found.loader is None:
        raise ModelLoadError(f"{path}: not an importable Python file")
    module = importlib.util.module_from_spec(found)
    sys.modules[name] = module  # pickling and dataclasses look modules up by name
    try:
        found.loader.exec_module(module)
    except Exception as exc:  # the file's own code failed
        del sys.modules[name]
        raise ModelLoadError(f"importing {path} failed: {short_reason(exc)}") from None
    return module


def load_weights(model: nn.Module, path: Path, spec: str, notes: list[str]) -> None:
    """Load a state dict file into ``model`` strictly (checkpoint wrappers and
    ``module.`` / ``model.`` prefixes removed, each said in ``notes``).

    Args:
        model: the module built by the factory.
        path: the weights file.
        spec: the model spec (for messages).
        notes: receives what was done.

    Raises:
        WeightsError: unreadable, no state dict, or keys / shapes that do not fit.
    """
    state = read_state_dict(path, expected_keys=model.state_dict().keys(), notes=notes)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if "mismatch" in line]
        raise WeightsError(f"{path}: weights do not fit {spec}: "
                           f"{short_reason(lines[0] if lines else str(exc))}") from None
    if result.missing_keys or result.unexpected_keys:
        parts = [f"{len(keys)} {label} key(s) (e.g. {', '.join(keys[:2])})"
                 for label, keys in (("missing", result.missing_keys),
                                     ("unexpected", result.unexpected_keys)) if keys]
        raise WeightsError(f"{path}: weights do not fit {spec}: {'; '.join(parts)}")
    notes.append(f"weights {path.name} loaded strictly")
