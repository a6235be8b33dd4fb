"""Shape queries (``size``, ``shape``, ``dim``), reshapes (``flatten``, ``view``) and copies
that keep the batch axis (``unsqueeze``, ``squeeze``, indexing, ``expand``, ``permute``,
``transpose``, and :func:`placed` and :func:`piece`, which the verifier's copies write a
concatenation with a class token and an item of ``chunk``, ``split`` or ``unbind`` as)."""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..intervals import BROADCAST as BROADCAST_INTERVAL
from ..intervals import EXACT, REARRANGED, SHAPE
from ..intervals import RESHAPE as RESHAPE_INTERVAL
from ..table import (
    COMPUTED_SETTINGS,
    NodeCall,
    WindowRule,
    register_bound,
    register_interval,
    register_operation,
)
from ..zonotope import EXACT_COPY, RESHAPE, Affine, Rearrange

REARRANGE, BROADCAST = Rearrange(), Rearrange(broadcast=True)

SHAPE_ATTRIBUTES = ("shape", "ndim")


def _shape_params(call: NodeCall) -> bool | str:
    if call.node.op == "call_function":  # getattr(x, name)
        if call.arg(1, "name") not in SHAPE_ATTRIBUTES:
            return f"the attribute {call.arg(1, 'name')!r}"
    return True


def _shape_window(params: bool | str) -> WindowRule | str:
    return params if isinstance(params, str) else WindowRule("shape")


register_operation("shape", window=_shape_window, params=_shape_params, functions=(getattr,),
                   methods=("size", "dim"), help="size / shape / dim of a value")


def _whole(params: object) -> str:
    return "a reshape (runs on whole maps)"


register_operation("reshape", window=_whole,
                   modules=(nn.Flatten,), functions=(torch.flatten, torch.reshape),
                   methods=("flatten", "view", "reshape"),
                   help="reshapes that keep the batch axis (the head)")
register_bound("reshape")(lambda params: RESHAPE)  # the verifier: the zonotope reshaped
register_interval("shape")(lambda params: SHAPE)  # the interval screen: a constant
register_interval("reshape")(lambda params: RESHAPE_INTERVAL)


# copies that keep each image on its row: a gate's ``g[:, :, None, None]``,
# ``unsqueeze(-1)``, ``squeeze(1)``, ``expand_as(x)``. Each is refused where it might move
# the batch axis, so that the verifier's rows (boxes × symbols) and the screen's (boxes)
# stay each image's own; the bound engine checks the shape it gets too.


def _unsqueeze_params(call: NodeCall) -> tuple[int] | str:
    """The new axis's position, where it is not the batch axis's (a negative one is
    checked against the rank by the plan)."""
    dim = call.arg(1, "dim")
    if isinstance(dim, int) and not isinstance(dim, bool) and dim != 0:
        return (dim,)
    return "unsqueeze at the batch axis (give a new axis after it, e.g. dim=1)"


def _squeeze_params(call: NodeCall) -> tuple[int, ...] | str:
    dim = call.arg(1, "dim")
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    if dim is not None and all(isinstance(d, int) and not isinstance(d, bool) and d != 0
                               for d in dims):
        return tuple(dims)
    return ("squeeze without a dim, or of the batch axis (it drops the batch axis of one "
            "image; give the dims to squeeze, e.g. squeeze(-1))")


def _keeps_batch(index: object) -> bool:
    """Whether an index leaves the first axis whole: a tuple starting with ``:`` (then
    numbers, slices and ``None``), ``...`` followed by ``None`` only, or ``:`` alone; or
    may, where it indexes the last axes after ``...`` (``x[..., :8]``, ``x[..., 0]``:
    whole where the value has more axes than it indexes, checked against the rank by the
    plan: :func:`indexed_after_ellipsis`)."""
    full = slice(None, None, None)
    if not isinstance(index, tuple):
        return index == full
    if not index:
        return False
    plain = all(i is None or i is Ellipsis or isinstance(i, slice)
                or (isinstance(i, int) and not isinstance(i, bool)) for i in index) and all(
        not isinstance(i, slice) or all(isinstance(v, (int, type(None)))
                                        for v in (i.start, i.stop, i.step))
        for i in index)
    if index[0] == full and plain:
        return True
    return index[0] is Ellipsis and plain and Ellipsis not in index[1:]


def indexed_after_ellipsis(index: object) -> int:
    """The axes an index starting with ``...`` takes (``x[..., :8]``: 1; ``x[..., None]``:
    0); 0 for any other index."""
    if not isinstance(index, tuple) or not index or index[0] is not Ellipsis:
        return 0
    return sum(i is not None for i in index[1:])


def _getitem_params(call: NodeCall) -> object:
    index = call.arg(1, "idx")
    if _keeps_batch(index):
        return index
    return ("an index that may not keep the batch axis whole (tensors, an index of the "
            "first axis, sizes computed in the model); index as g[:, :, None, None]")


def _permute_params(call: NodeCall) -> tuple[int, ...] | str:
    """``x.permute(0, 2, 3, 1)``, ``torch.permute(x, (0, 2, 3, 1))``: the order, where it
    keeps the batch axis first (a channels-last layout and back, as ConvNeXt's blocks
    permute around a LayerNorm and pointwise linear layers)."""
    given = call.node.args[1:] or (call.node.kwargs.get("dims"),)
    dims = given[0] if len(given) == 1 and isinstance(given[0], (tuple, list)) else given
    if dims and all(isinstance(d, int) and not isinstance(d, bool) for d in dims) and (
            dims[0] == 0):
        return tuple(dims)
    return ("a permutation that may move the batch axis (keep it first, e.g. "
            "permute(0, 2, 3, 1))")


def _transpose_params(call: NodeCall) -> tuple[int, int] | str:
    """``x.transpose(1, 2)``: the two axes, where neither is the batch axis (a negative
    one is checked against the rank by the plan)."""
    dims = (call.arg(1, "dim0"), call.arg(2, "dim1"))
    if all(isinstance(d, int) and not isinstance(d, bool) and d != 0 for d in dims):
        return dims  # type: ignore[return-value]
    return "a transpose of the batch axis (swap two other axes, e.g. transpose(1, 2))"


def _copy(params: object) -> str:
    return "an indexing, a new axis or an expand (runs on whole maps)"


register_operation("unsqueeze", window=_copy, functions=(torch.unsqueeze,),
                   methods=("unsqueeze",), params=_unsqueeze_params,
                   help="a new axis after the batch axis")
register_operation("squeeze", window=_copy, functions=(torch.squeeze,), methods=("squeeze",),
                   params=_squeeze_params, help="axes of size 1 removed, not the batch axis")
register_operation("getitem", window=_copy, functions=(operator.getitem,),
                   params=_getitem_params, help="an index that keeps the batch axis whole")
register_operation("expand", window=_copy, methods=("expand", "expand_as"),
                   help="a value broadcast to a larger shape")
register_operation("permute", window=_copy, functions=(torch.permute,), methods=("permute",),
                   params=_permute_params, help="axes reordered, the batch axis first")
register_operation("transpose", window=_copy, functions=(torch.transpose,),
                   methods=("transpose",), params=_transpose_params,
                   help="two axes other than the batch axis swapped")
for _name in ("unsqueeze", "squeeze", "getitem", "permute", "transpose"):
    register_bound(_name)(lambda params: REARRANGE)
    register_interval(_name)(lambda params: REARRANGED)


def _axes_given(value: object) -> tuple | None:
    """``value`` as a tuple of axes (one int, or a tuple or list of ints), else ``None``."""
    dims = value if isinstance(value, (tuple, list)) else (value,)
    if dims and all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
        return tuple(dims)
    return None


def _flip_params(call: NodeCall) -> tuple[int, ...] | str:
    """``x.flip(3)``, ``x.flip(2, 3)``, ``torch.flip(x, (3,))``: the axes, where none is
    the batch axis (a negative one is checked against the rank by the plan)."""
    given = call.node.args[1:] or (call.node.kwargs.get("dims"),)
    dims = _axes_given(given[0] if len(given) == 1 else given)
    if dims is not None and 0 not in dims:
        return dims
    return "a flip of the batch axis (flip axes after it, e.g. flip(3))"


def _roll_params(call: NodeCall) -> tuple[int, ...] | str:
    """``torch.roll(x, shifts, dims)``: the axes, where they are given and none is the
    batch axis (without ``dims`` a roll flattens every axis, the batch axis too)."""
    dims = _axes_given(call.arg(2, "dims"))
    if dims is not None and 0 not in dims:
        return dims
    return ("a roll without dims, or of the batch axis (roll axes after it, e.g. "
            "torch.roll(x, (3, 3), (2, 3)))")


register_operation("flip", window=_copy, functions=(torch.flip,), methods=("flip",),
                   params=_flip_params, help="axes after the batch axis reversed")
register_operation("roll", window=_copy, functions=(torch.roll,), methods=("roll",),
                   params=_roll_params,
                   help="elements shifted around axes after the batch axis (Swin's windows)")
register_operation("pixel_shuffle", window=_copy,
                   modules=(nn.PixelShuffle, nn.PixelUnshuffle),
                   functions=(F.pixel_shuffle, F.pixel_unshuffle),
                   help="channels moved into space and back (each image's own)")


def _unfold_axis_params(call: NodeCall) -> tuple[int] | str:
    """``x.unfold(dim, size, step)`` (each window of ``size`` along ``dim`` on a new last
    axis): the axis, where it is not the batch axis (a negative one is checked against
    the rank by the plan)."""
    dim = call.arg(1, "dimension")  # (x, dimension, size, step)
    if isinstance(dim, int) and not isinstance(dim, bool) and dim != 0:
        return (dim,)
    return "an unfold of the batch axis (unfold an axis after it, e.g. x.unfold(2, 3, 1))"


register_operation("unfold", window=_copy, modules=(nn.Unfold,), functions=(F.unfold,),
                   help="sliding patches as columns (im2col, nn.Unfold): a copy, of "
                   "[N, C, H, W] values")
register_operation("unfold_axis", window=_copy, methods=("unfold",),
                   params=_unfold_axis_params,
                   help="windows along an axis on a new last axis (x.unfold(dim, size, step))")
for _name in ("flip", "roll", "pixel_shuffle", "unfold", "unfold_axis"):
    register_bound(_name)(lambda params: REARRANGE)
    register_interval(_name)(lambda params: REARRANGED)
register_bound("expand")(lambda params: BROADCAST)
register_interval("expand")(lambda params: BROADCAST_INTERVAL)


def placed(value: torch.Tensor, dim: int, before: int, after: int) -> torch.Tensor:
    """``value`` with ``before`` zeros ahead of it and ``after`` behind it along ``dim``
    (an axis after the batch axis): its place in a concatenation along ``dim``. The
    verifier's copies write ``torch.cat([token.expand(n, -1, -1), x], 1)`` as
    ``placed(token, 1, 0, t) + placed(x, 1, 1, 0)``, the constant part unexpanded
    (:mod:`..decompose`)."""
    pad = [0, 0] * (value.dim() - 1 - dim) + [before, after]
    return F.pad(value, pad)


def _placed_params(call: NodeCall) -> int | str:
    dim = call.arg(1, "dim")
    if isinstance(dim, int) and not isinstance(dim, bool) and dim >= 1:
        return dim
    return "a placement along the batch axis"


register_operation("placed", window=_copy, functions=(placed,), params=_placed_params,
                   help="a value placed among zeros along an axis after the batch axis")
register_bound("placed")(lambda params: Affine(EXACT_COPY))
register_interval("placed")(lambda params: EXACT)


def piece(value: torch.Tensor, kind: str, size: Any, dim: int, index: int) -> torch.Tensor:
    """Item ``index`` of ``value.chunk(size, dim)`` (``kind`` ``"chunk"``),
    ``value.split(size, dim)`` (``"split"``) or ``value.unbind(dim)`` (``"unbind"``,
    ``size`` unused): one value, what the verifier's copies write such an item as
    (``a, b = h.chunk(2, dim=1)``, ShuffleNet's halves; :mod:`..decompose`)."""
    if kind == "chunk":
        return value.chunk(size, dim)[index]
    if kind == "split":
        return value.split(size, dim)[index]
    return value.unbind(dim)[index]


def _piece_params(call: NodeCall) -> tuple[int] | str:
    """The axis split, where it is not the batch axis (a negative one is checked against
    the rank by the plan)."""
    dim = call.arg(3, "dim")
    if isinstance(dim, int) and not isinstance(dim, bool) and dim != 0:
        return (dim,)
    return "a split of the batch axis (split another axis, e.g. chunk(2, dim=1))"


register_operation("piece", window=_copy, functions=(piece,), params=_piece_params,
                   help="an item of chunk, split or unbind along an axis after the batch axis")
register_bound("piece")(lambda params: REARRANGE)
register_interval("piece")(lambda params: REARRANGED)


def _repeat_params(call: NodeCall) -> tuple[int] | str:
    """``x.repeat_interleave(r, dim)``: the axis, where ``r`` is a number and the axis is
    not the batch axis (a negative one is checked against the rank by the plan)."""
    repeats, dim = call.arg(1, "repeats"), call.arg(2, "dim")
    if call.arg(3, "output_size") is not None or not isinstance(repeats, int) or isinstance(
            repeats, bool):
        return "repeat_interleave by a tensor of repeats or an output_size (give a number)"
    if isinstance(dim, int) and not isinstance(dim, bool) and dim != 0:
        return (dim,)
    return ("repeat_interleave of the batch axis or of every axis (give an axis after the "
            "batch axis, e.g. dim=2)")


register_operation("repeat_interleave", window=_copy, functions=(torch.repeat_interleave,),
                   methods=("repeat_interleave",), params=_repeat_params,
                   help="each element repeated along an axis after the batch axis")
register_bound("repeat_interleave")(lambda params: REARRANGE)
register_interval("repeat_interleave")(lambda params: REARRANGED)


# the padding modules' own bases (their forward is ``F.pad`` of their settings)
_PAD_MODULES = tuple(getattr(nn.modules.padding, name) for name in (
    "_ConstantPadNd", "_ReflectionPadNd", "_ReplicationPadNd", "_CircularPadNd")
    if hasattr(nn.modules.padding, name))
_PAD_MODES = {"_ConstantPadNd": "constant", "_ReflectionPadNd": "reflect",
              "_ReplicationPadNd": "replicate", "_CircularPadNd": "circular"}


def pad_settings(call: NodeCall) -> tuple[Any, str, Any]:
    """``(pads, mode, value)`` of ``F.pad(x, pads, mode, value)`` or of a padding module
    (``nn.ZeroPad2d``, ``nn.ReflectionPad2d``, ...; ``value`` ``None`` for no constant)."""
    if call.module is not None:
        mode = next(_PAD_MODES[cls.__name__] for cls in type(call.module).__mro__
                    if cls.__name__ in _PAD_MODES)
        return call.module.padding, mode, getattr(call.module, "value", None)
    return call.arg(1, "pad"), call.arg(2, "mode", "constant"), call.arg(3, "value")


def _pad_params(call: NodeCall) -> tuple[int, ...] | str:
    """A padding's pads (:func:`pad_settings`), where each is a number and a constant
    pad's value is 0 (the verifier's copies write another value ``c`` as ``F.pad(x - c)
    + c``, :mod:`..decompose`; whether the pads reach the batch axis is checked by the
    plan)."""
    pads, mode, value = pad_settings(call)
    if not isinstance(pads, (tuple, list)) or not all(
            isinstance(p, int) and not isinstance(p, bool) for p in pads):
        return COMPUTED_SETTINGS
    if mode not in ("constant", "reflect", "replicate", "circular"):
        return f"a padding in mode {mode!r}"
    if mode == "constant" and value not in (None, 0, 0.0):
        return f"a constant padding by {value!r} (the verifier writes it as a padding by 0)"
    return tuple(pads)


def _pads_whole(params: object) -> str:
    return params if isinstance(params, str) else "it pads the whole map"


register_operation("pad", window=_pads_whole, params=_pad_params, modules=_PAD_MODULES,
                   functions=(F.pad,), help="padding by zeros, reflection, replication or "
                   "wrapping around (F.pad, nn.ZeroPad2d, nn.ReflectionPad2d, ...): a copy")
register_bound("pad")(lambda params: Affine(EXACT_COPY))
register_interval("pad")(lambda params: EXACT)
