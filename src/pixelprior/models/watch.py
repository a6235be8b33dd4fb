"""Whether a model changed since copies were made of it: its weights, its settings,
its hooks, and what its torch.fx trace bakes in (the constants its code reads)."""

from __future__ import annotations

import copy
import dataclasses
import functools
import operator

import torch
from torch import fx, nn

__all__ = ["WeightsWatch", "traced_code", "weights_version"]

# settings by what they are of, and tensors to be watched as weights
Parts = tuple[dict[tuple, object], list[tuple[tuple, torch.Tensor]]]


def weights_version(model: nn.Module) -> tuple:
    """What changes when a model's weights or settings do: each parameter's and
    buffer's identity, storage, in-place version counter (an optimiser step,
    ``load_state_dict``, an ``add_`` under ``no_grad`` all count it up) and values
    (:func:`_fingerprints`, exact: a write through ``.data``, which no counter sees);
    each submodule's name, class and identity,
    its attributes (:func:`_settings`: a Hardtanh's limits, a LeakyReLU's slope, a
    submodule replaced, a tensor held as a plain attribute, private ones too) and its
    forward hooks, and the global forward hooks; its ``torch.fx`` trace (:func:`
    traced_code`: the constants its code reads from anywhere, a ``Net.limit``, a global
    ``LIMIT``, ``config.LIMIT``, written out in the traced code). Copies made of a model
    (a BatchNorm-folded scorer, a bound engine's float64 copy) are stale once it
    differs. (Copies that are not traces run the model's own code, so the constants it
    reads are read anew.)

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
    name)``, ``("setting", module, attribute)``, ``("values", "buffer", name)``, ...)."""
    out: dict[tuple, object] = {}
    named = [*((("parameter", name), t) for name, t in model.named_parameters()),
             *((("buffer", name), t) for name, t in model.named_buffers())]
    settings, held = _settings(model)
    out.update(settings)
    named += held
    for key, tensor in named:
        out[key] = _tensor_state(tensor)
    code, constants = traced_code(model)
    out.update(code)
    for key, tensor in constants:  # made anew by each trace (``-LIMIT``): by values alone
        out[key] = (tuple(tensor.shape), tensor.dtype)
    named += constants
    summed = [(key, t) for key, t in named
              if not isinstance(t, nn.parameter.UninitializedTensorMixin)
              and t.numel() and t.layout == torch.strided and not t.is_meta]
    for (key, _), total in zip(summed, _fingerprints([t for _, t in summed]), strict=True):
        out[("values", *key)] = total
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
_MOST_ITEMS = 1000  # a longer dict, list or tuple is watched by its identity and length
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


def traced_code(model: nn.Module) -> Parts:
    """What a ``torch.fx`` trace of the model bakes in, as the copies traced of it (the
    bound engine's, the interval screen's, the cone scorer's) hold it: the traced code,
    in which every constant the model's code reads from anywhere (a global, a class
    attribute, a constant of another module, a closure's or a ``partial``'s value, an
    ``argparse.Namespace`` setting) is written out, and the tensors it holds as constants
    (a global tensor, or one computed from it at tracing), watched by their values.
    Traced in evaluation mode, as the copies are, on a copy whose tensors are the
    model's own (a forward that writes an attribute writes it on the copy; one that
    prints prints at each call, one that changes a global changes it). A model
    ``torch.fx`` cannot trace has no traced copies to go stale: its code is ``None``.

    Args:
        model: the model.

    Returns:
        The code, keyed ``("trace", "code")``, and the constants, keyed by name.
    """
    memo = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    try:  # (a warning forward gives is shown once, as Python shows it from one place)
        with torch.no_grad():
            copied = copy.deepcopy(model, memo).eval()
        tracer = fx.Tracer()
        graph = tracer.trace(copied)
    except Exception:  # noqa: BLE001 - tracing fails in many ways: nothing traced to follow
        return {("trace", "code"): None}, []
    own = {name for name, _ in copied.named_parameters()} | {
        name for name, _ in copied.named_buffers()}
    constants = []
    for node in graph.nodes:
        if node.op == "get_attr" and node.target not in own:
            value = operator.attrgetter(node.target)(tracer.root)  # "a._tensor_constant0"
            if isinstance(value, torch.Tensor):
                constants.append((("trace", "constant", node.target), value))
    return {("trace", "code"): graph.python_code("self").src}, constants


def _fingerprints(tensors: list[torch.Tensor]) -> list[int]:
    """Each tensor's values as one exact number: every value's bits as an integer, times
    a pseudo-random odd 64-bit weight of its position, mixed (a bijection of 64-bit
    words) and summed with wraparound. A change of one value always changes it; of
    several, all but by a 2⁻⁶⁴ chance (the mixing leaves no linear relation to cancel:
    two float64 sign flips, each 2⁶³ in the bits, would cancel in a plain weighted
    sum); integer, bool, complex and quantized tensors too. Read in chunks of
    :data:`_CHUNK` values (a bounded memory whatever a layer's size; the first chunk's
    weights kept, 8 MB a device), back in one transfer. (Float64 sums lost a change
    beside a 10¹⁷ and let changes of opposite signs cancel.)"""
    if not tensors:
        return []
    with torch.no_grad():
        prints = [_fingerprint(t) for t in tensors]
        try:
            return torch.stack(prints).tolist()
        except RuntimeError:  # a model spread over several devices
            return [int(p) for p in prints]


_CHUNK = 1 << 20
_BITS = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.uint8}


def _fingerprint(tensor: torch.Tensor) -> torch.Tensor:
    """One tensor's :func:`_fingerprints` number (an int64 tensor, not read back)."""
    bits = _bits(tensor)
    total = torch.zeros((), dtype=torch.int64, device=bits.device)
    for start in range(0, bits.numel(), _CHUNK):
        chunk = bits[start:start + _CHUNK].to(torch.int64)
        total += _mix(chunk * _weights(start, chunk.numel(), bits.device)).sum()
    return total


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    """A tensor's values as a flat integer tensor of their bits (a NaN's payload too; a
    quantized tensor's values as floats first)."""
    flat = tensor.detach()
    if flat.is_quantized:
        flat = flat.dequantize()
    if flat.is_complex():
        flat = torch.view_as_real(flat)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    elif flat.is_floating_point():
        flat = flat.contiguous().view(_BITS[flat.element_size()])
    return flat.reshape(-1)


def _shifted(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``x >> bits`` as a logical shift of 64-bit words (torch's ``>>`` is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def _mix(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser: a bijection of 64-bit words (xor-shifts, odd products)."""
    x = (x ^ _shifted(x, 30)) * -4658895280553007687
    x = (x ^ _shifted(x, 27)) * -7723592293110705685
    return x ^ _shifted(x, 31)


def _weights(start: int, count: int, device: torch.device) -> torch.Tensor:
    """Odd pseudo-random int64 weights of the flat positions ``start..start+count``
    (those of the first chunk made once per device: 8 MB)."""
    if start == 0:
        return _first_weights(str(device))[:count]
    return _of_positions(torch.arange(start, start + count, dtype=torch.int64,
                                      device=device))


@functools.lru_cache(maxsize=4)
def _first_weights(device: str) -> torch.Tensor:
    """:func:`_weights` of the first :data:`_CHUNK` positions on ``device``."""
    return _of_positions(torch.arange(_CHUNK, dtype=torch.int64, device=device))


def _of_positions(positions: torch.Tensor) -> torch.Tensor:
    """splitmix64 of the positions, made odd."""
    return _mix(positions * -7046029254386353131) | 1


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
