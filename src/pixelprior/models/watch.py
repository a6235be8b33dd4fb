"""Whether a model changed since copies were made of it: its weights, its settings,
its hooks, and the class attributes and globals its own code reads."""

from __future__ import annotations

import dataclasses
import dis
import functools
import sys
import types
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["WeightsWatch", "weights_version"]

# settings by what they are of, and tensors to be watched as weights
Parts = tuple[dict[tuple, object], list[tuple[tuple, torch.Tensor]]]


def weights_version(model: nn.Module) -> tuple:
    """What changes when a model's weights or settings do: each parameter's and
    buffer's identity, storage, in-place version counter (an optimiser step,
    ``load_state_dict``, an ``add_`` under ``no_grad`` all count it up) and sum (a write
    through ``.data``, which no counter sees); each submodule's name, class and identity,
    its attributes (:func:`_settings`: a Hardtanh's limits, a LeakyReLU's slope, a
    submodule replaced, a tensor held as a plain attribute, private ones too) and its
    forward hooks, and the global forward hooks; the class attributes and the globals
    the code of its own classes reads (:func:`_code_reads`: a limit ``Net.limit``, a
    module-level ``SCALE``, a method replaced on the class, a helper function's globals).
    Copies made of a model (a BatchNorm-folded scorer, a bound engine's float64 copy) are
    stale once it differs. Not seen: what torch's own classes and other packages' code
    read, an attribute of an imported module (``config.LIMIT``).

    Args:
        model: the model (anything else has no weights: ``()``).

    Returns:
        A tuple that compares equal while no weight or setting changed.
    """
    if not isinstance(model, nn.Module):
        return ()
    return tuple(_parts(model).items())


def _parts(model: nn.Module) -> dict[tuple, object]:
    """:func:`weights_version`'s parts, each keyed by what it is of (``("parameter",
    name)``, ``("setting", module, attribute)``, ``("sum", "buffer", name)``, ...)."""
    out: dict[tuple, object] = {}
    named = [*((("parameter", name), t) for name, t in model.named_parameters()),
             *((("buffer", name), t) for name, t in model.named_buffers())]
    for part in (_settings(model), _code_reads(model)):
        settings, held = part
        out.update(settings)
        named += held
    for key, tensor in named:
        out[key] = _tensor_state(tensor)
    summed = [(key, t) for key, t in named
              if not isinstance(t, nn.parameter.UninitializedTensorMixin)
              and t.is_floating_point() and t.numel() and t.layout == torch.strided
              and not t.is_meta]
    for (key, _), total in zip(summed, _sums([t for _, t in summed]), strict=True):
        out[("sum", *key)] = repr(total)  # by its text: a NaN equals itself
    return out


def _tensor_state(tensor: torch.Tensor) -> tuple:
    """A tensor's identity, storage and in-place version counter (a tensor without
    storage, sparse or meta: its identity and counter)."""
    try:
        version = tensor._version
    except RuntimeError:  # an inference tensor keeps no counter: its storage only
        version = -1
    try:
        storage = tensor.data_ptr()
    except (RuntimeError, ValueError):  # sparse, meta, a lazy module's uninitialised
        storage = None  # parameter: no data pointer
    return (id(tensor), storage, version)


_PLAIN = (bool, int, float, complex, str, bytes, type(None))
# what every module holds (its parameters, buffers, submodules, hooks, ...): read by
# their own parts, not as attributes
_MODULE_INTERNALS = frozenset(vars(nn.Module())) | {"training"}
_FORWARD_HOOKS = ("_forward_hooks", "_forward_pre_hooks")
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks")


def _settings(model: nn.Module) -> Parts:
    """Each submodule's class and identity, its attributes (``vars`` less what every
    module holds, and ``training``, which every call's evaluation mode switches and
    restores): plain values as they are, tensors returned to be watched as weights,
    anything else by its identity (a ``forward`` replaced on the instance, say); its
    forward hooks and the global ones, by their identities."""
    settings: dict[tuple, object] = {}
    held: list[tuple[tuple, torch.Tensor]] = []
    for name in _GLOBAL_HOOKS:
        hooks = getattr(torch.nn.modules.module, name, {})
        settings[("global hooks", name)] = tuple((k, id(v)) for k, v in hooks.items())
    for name, module in model.named_modules(remove_duplicate=False):
        settings[("module", name)] = (type(module), id(module))
        for hooks in _FORWARD_HOOKS:
            found = getattr(module, hooks, None) or {}
            settings[("hooks", name, hooks)] = tuple((k, id(v)) for k, v in found.items())
        try:
            attributes = vars(module).items()
        except TypeError:  # an object without __dict__: its class and identity only
            continue
        for key, value in attributes:
            if key in _MODULE_INTERNALS:
                continue
            if isinstance(value, torch.Tensor):
                held.append((("held", name, key), value))
            else:
                settings[("setting", name, key)] = _setting(value)
    return settings, held


def _setting(value: object, depth: int = 3) -> object:
    """A plain value by its text (a NaN setting equals itself); a dict, list, tuple or
    plain object (a ``SimpleNamespace``, a dataclass) by its items, to a few levels (a
    limit read from ``self.cfg["limit"]``); a tensor by its identity, storage and
    counter; anything else (a function, a module) by its identity."""
    if isinstance(value, _PLAIN):
        return (type(value), repr(value))
    if isinstance(value, torch.Tensor):
        return _tensor_state(value)
    if isinstance(value, (dict, list, tuple)) and len(value) > _MOST_ITEMS:
        return ("id", id(value), len(value))  # a table, not a setting: a bound on the cost
    if depth and isinstance(value, dict):
        return (dict, tuple((repr(k), _setting(v, depth - 1)) for k, v in value.items()))
    if depth and isinstance(value, (list, tuple)):
        return (type(value), tuple(_setting(v, depth - 1) for v in value))
    if depth and not isinstance(value, (nn.Module, type)) and not callable(value) and (
            type(value).__module__ in ("types",) or dataclasses.is_dataclass(value)):
        return (type(value), _setting(vars(value), depth - 1))
    return ("id", id(value))


# packages whose code is not followed: torch's own classes' attributes are settings of
# every model (read through instances), the standard library's and numpy's are not the
# model's
_NOT_FOLLOWED = frozenset({"torch", "numpy", "builtins"}) | frozenset(sys.stdlib_module_names)
_MOST_FUNCTIONS = 200  # a bound on the functions followed, for a call's cost
_MOST_ITEMS = 1000  # a longer dict, list or tuple is watched by its identity and length


def _code_reads(model: nn.Module) -> Parts:
    """The class attributes and globals the model's own code reads: each attribute of
    each submodule's class and of its bases (outside torch), functions by their
    identity (a ``forward`` replaced on the class); the globals and closure values each
    function's code names, following the functions it calls in the same packages. Plain
    values by their text, tensors (and a global module's parameters) to be watched as
    weights, anything else by its identity."""
    settings: dict[tuple, object] = {}
    held: list[tuple[tuple, torch.Tensor]] = []
    classes = _own_classes(model)
    packages = {_package(cls.__module__) for cls in classes}
    functions: list[types.FunctionType] = []
    for cls in classes:
        for key, value in vars(cls).items():
            if key.startswith("__") and key.endswith("__") and key != "__call__":
                continue
            where = ("class", cls.__module__, cls.__qualname__, key)
            _watch(where, value, settings, held, functions)
    seen: set[int] = set()
    while functions and len(seen) < _MOST_FUNCTIONS:
        function = functions.pop(0)
        if id(function) in seen or _package(function.__module__ or "") not in packages:
            continue
        seen.add(id(function))
        for name, value in _read_by(function):
            where = ("global", function.__module__, function.__qualname__, name)
            _watch(where, value, settings, held, functions)
    return settings, held


def _own_classes(model: nn.Module) -> list[type]:
    """Each submodule's class and its bases, outside the packages not followed, once."""
    classes: dict[type, None] = {}
    for module in model.modules():
        for cls in type(module).__mro__:
            if _package(cls.__module__) not in _NOT_FOLLOWED:
                classes.setdefault(cls)
    return list(classes)


def _package(module_name: str) -> str:
    """A module's top-level package (``mynet`` of ``mynet.layers``)."""
    return module_name.partition(".")[0]


def _watch(where: tuple, value: object, settings: dict, held: list,
           functions: list) -> None:
    """Record one value a model's code reads, and queue the functions in it."""
    for function in _functions_in(value):
        functions.append(function)
    if isinstance(value, torch.Tensor):
        held.append((where, value))
    elif isinstance(value, nn.Module):  # a module held globally, used in forward
        settings[where] = ("id", id(value))
        held.extend(((*where, name), t) for name, t in
                    [*value.named_parameters(), *value.named_buffers()])
    elif isinstance(value, types.ModuleType):
        settings[where] = ("id", id(value))
    else:
        settings[where] = _setting(value)


def _functions_in(value: object) -> Iterator[types.FunctionType]:
    """The Python functions a class attribute or global is or wraps (a method, a static
    or class method, a property's accessors)."""
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if isinstance(value, property):
        yield from (f for f in (value.fget, value.fset) if isinstance(f, types.FunctionType))
    elif isinstance(value, types.FunctionType):
        yield value


def _read_by(function: types.FunctionType) -> Iterator[tuple[str, object]]:
    """The globals a function's code loads (its nested functions' and comprehensions'
    too) and the values its closure holds."""
    found = function.__globals__
    for name in _global_names(function.__code__):
        if name in found:
            yield name, found[name]
    for name, cell in zip(function.__code__.co_freevars, function.__closure__ or (),
                          strict=False):
        try:
            yield f"closure {name}", cell.cell_contents
        except ValueError:  # an empty cell
            continue


@functools.lru_cache(maxsize=4096)
def _global_names(code: types.CodeType) -> tuple[str, ...]:
    """The names a code object (and the code nested in it) loads as globals, not the
    attribute names it also lists (``x.data`` beside a global ``data``); a code object
    never changes, so each is read once."""
    names = {i.argval for i in dis.get_instructions(code)
             if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for nested in code.co_consts:
        if isinstance(nested, types.CodeType):
            names.update(_global_names(nested))
    return tuple(sorted(names))


def _sums(tensors: list[torch.Tensor]) -> list[tuple[float, float]]:
    """Each tensor's float64 sum and its sum weighted by position (a ``.data`` write
    that moves values, two rows swapped, keeps the first), read back in one transfer
    (a few ms for a SqueezeNet; a sum per tensor read one by one took 40)."""
    if not tensors:
        return []
    with torch.no_grad():
        sums = [torch.stack([t.sum(dtype=torch.float64), _by_position(t)]) for t in tensors]
        try:
            return [tuple(pair) for pair in torch.stack(sums).tolist()]
        except RuntimeError:  # a model spread over several devices
            return [(float(a), float(b)) for a, b in sums]


def _by_position(tensor: torch.Tensor) -> torch.Tensor:
    """The float64 sum of each value times its flat position (mod 9973), plus one."""
    flat = tensor.detach().reshape(-1).to(torch.float64)
    weights = torch.arange(flat.numel(), device=flat.device, dtype=torch.float64)
    return flat.dot(weights.remainder_(9973).add_(1))


class WeightsWatch:
    """Whether a model's weights or settings changed since a point
    (:func:`weights_version`): what an attack or verifier holding copies of the model
    asks before each call. The point is when the copies were made (:meth:`renew`), so
    a change the model's own forward makes (a call counter, a setting written on its
    first call) is one too, and the copies are made anew: a write no check can tell
    from a user's edit is never taken as harmless.

    Args:
        model: the model watched.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.version = weights_version(model)

    def changed(self) -> bool:
        """Returns: whether a weight or setting changed since the watch was made or
        renewed."""
        return weights_version(self.model) != self.version

    def renew(self) -> None:
        """Take the weights and settings as they are now as the point compared with
        (when the copies are made anew)."""
        self.version = weights_version(self.model)
