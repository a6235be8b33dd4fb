"""The cone of one pixel through a general convolutional network, found with ``torch.fx``.

:mod:`._squeezenet_cone` recomputes only what one changed pixel reaches, for SqueezeNet-style
networks. This module does the same for any network ``torch.fx`` can trace: the graph is
interpreted node by node with three kinds of values,

- *static*: independent of the image (parameters, buffers, constants), computed once;
- *windowed*: a fixed-size window per row (``values [N, C, h, w]`` at ``top``/``left`` of
  the feature map); outside it the map equals the clean image's, cached by
  :meth:`FxIncrementalForward.prepare` (channels-last, padded where a layer needs it);
- *full*: ordinary tensors of the rows, once a node needs the whole map.

Convolutions (any stride, padding, dilation, groups), max/avg pooling, BatchNorm and
pointwise activations (modules, functions, methods), arithmetic with per-channel constants
(``(x - mean) / std``), residual additions and channel concatenations (windows of different
size or origin: their union box, each filled from its clean activation) run on windows:
the receptive field of the output window is gathered from the cached, padded clean input
with index ops, the changed window laid over it, and the layer run without padding.
Anything else (global pooling, flatten, linear layers, an unknown op) materialises its
windowed inputs (the clean map with the window written in) and runs as the model does;
so does a window that has grown to cover its whole map.

Window sizes and origins depend only on the graph and the image size, never on the rows
of a call (a *plan*, built once per image size): a row's scores do not depend on the
other rows of its batch's shape. Results equal the full pass to float tolerance.
:func:`fx_incremental_forward` declines (with a one-line reason naming the operation) a
model ``torch.fx`` cannot trace, one whose first unsupported operation comes before the
cone saves a quarter of the multiply-accumulates, and one too small to gain.

Hand-written because no library offers incremental cone inference for PyTorch; the idea is
Krypton's (Nakandala et al., SIGMOD 2019), for occlusion explanations.
"""

from __future__ import annotations

import copy
import functools
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.experimental.optimization import fuse

# Below this many multiply-accumulates per image a full pass of a chunk costs about what
# the cone's per-call index work does (an estimate, not a measurement): not worth it.
MIN_FULL_MACS = 2_000_000
# The cone must leave at least this share of the network's multiply-accumulates undone.
MIN_SAVING = 0.25

STATIC, WINDOW, FULL = "static", "window", "full"

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Hardswish,
                nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Identity, nn.ELU, nn.Hardtanh,
                nn.Mish, nn.Softplus, nn.PReLU)
POINTWISE_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.leaky_relu, F.silu, F.gelu,
                       F.hardswish, F.hardsigmoid, F.sigmoid, torch.sigmoid, F.tanh,
                       torch.tanh, F.elu, F.hardtanh, F.mish, F.softplus, torch.clamp,
                       torch.clip, operator.neg, torch.neg}
# Pointwise when their ``training`` argument (position, default) is False.
TRAINING_FUNCTIONS = {F.dropout: (2, True), F.dropout2d: (2, True),
                      F.batch_norm: (5, False)}
CHANNEL_FUNCTIONS = {F.batch_norm, F.prelu}  # tensor arguments are per-channel parameters
ELEMENTWISE_FUNCTIONS = {operator.add, operator.sub, operator.mul, operator.truediv,
                         torch.add, torch.sub, torch.mul, torch.div, torch.maximum,
                         torch.minimum}
CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}
CONV_FUNCTIONS = {F.conv2d, torch.conv2d}
MAX_POOL_FUNCTIONS = {F.max_pool2d, torch.max_pool2d}
AVG_POOL_FUNCTIONS = {F.avg_pool2d}
LINEAR_FUNCTIONS = {F.linear}
POINTWISE_METHODS = {"relu", "sigmoid", "tanh", "clamp", "clip", "clamp_min", "clamp_max",
                     "contiguous", "clone", "detach", "float", "neg"}
ELEMENTWISE_METHODS = {"add", "sub", "mul", "div"}
SHAPE_METHODS, SHAPE_ATTRIBUTES = {"size", "dim"}, {"shape", "ndim"}
# Position of ``inplace`` in functional activations (set to False in the engine's copy).
_INPLACE_POSITION = {F.relu: 1, F.relu6: 1, F.hardswish: 1, F.hardsigmoid: 1, F.silu: 1,
                     F.mish: 1, F.leaky_relu: 2, F.elu: 2, F.hardtanh: 3, F.dropout: 3,
                     F.dropout2d: 3}


class FxUnsupportedError(ValueError):
    """The graph cannot be run incrementally at all (an in-place op, several inputs)."""


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


# ------------------------------------------------------------------ geometry
@dataclass(frozen=True, eq=False)
class Box:
    """Where a windowed value's window lies for every pixel: rows ``top[y] :
    top[y] + size[0]`` and columns ``left[x] : left[x] + size[1]`` of a ``map`` for the
    pixel ``(y, x)`` (``top [H]``, ``left [W]`` indexed by the image's row / column)."""

    top: torch.Tensor
    left: torch.Tensor
    size: tuple[int, int]
    map: tuple[int, int]

    @property
    def covers(self) -> bool:
        return self.size == self.map

    def same(self, other: Box) -> bool:
        return (self.size == other.size and self.map == other.map
                and torch.equal(self.top, other.top) and torch.equal(self.left, other.left))


def _union_axis(tops: list[torch.Tensor], sizes: list[int], n: int) -> tuple[torch.Tensor, int]:
    """The smallest fixed-size span holding every window along one axis (for all pixels)."""
    low = torch.stack(tops).min(0).values
    high = torch.stack([t + s for t, s in zip(tops, sizes, strict=True)]).max(0).values
    size = min(int((high - low).max()), n)
    return low.clamp(max=n - size), size


def _union(boxes: list[Box]) -> Box:
    """The union box of windows on one map (the first box when they are all the same)."""
    first = boxes[0]
    if all(first.same(b) for b in boxes[1:]):
        return first
    top, h = _union_axis([b.top for b in boxes], [b.size[0] for b in boxes], first.map[0])
    left, w = _union_axis([b.left for b in boxes], [b.size[1] for b in boxes], first.map[1])
    return Box(top, left, (h, w), first.map)


@dataclass(frozen=True)
class _Slide:
    """A sliding-window layer: its geometry and the layer run on a patch without padding."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    pad_value: float
    patch: Callable[[torch.Tensor], torch.Tensor]
    floor_only: bool = False  # the layer cannot take ceil-mode overhang (average pooling)

    def axis(self, i: int, top: torch.Tensor, size: int, n_in: int, n_out: int):
        """Output window along axis ``i`` → ``(top, size, patch rows in padded coordinates,
        padding after)``."""
        k, s, p = self.kernel[i], self.stride[i], self.padding[i]
        reach = self.dilation[i] * (k - 1) + 1
        out = min((size + reach - 2) // s + 1, n_out)
        first = torch.div(top + p - reach + s, s, rounding_mode="floor")  # first reached
        out_top = first.clamp(0, n_out - out)
        rows = out_top[:, None] * s + torch.arange((out - 1) * s + reach, device=top.device)
        return out_top, out, rows, max(0, (n_out - 1) * s - p + reach - n_in)

    def fits(self, n_in: int, n_out: int, i: int) -> bool:
        reach = self.dilation[i] * (self.kernel[i] - 1) + 1
        floor = (n_in + 2 * self.padding[i] - reach) // self.stride[i] + 1
        return n_out == floor or not self.floor_only


OUTSIDE = -(2**40)  # a target index that marks "not in the patch" (any sum stays < 0)


def _targets(window_rows: torch.Tensor, patch_rows: torch.Tensor, scale: int) -> torch.Tensor:
    """Per image row: where each window row lies in the patch (times ``scale``), or
    :data:`OUTSIDE`; both are ``[P, n]`` in the same coordinates, the patch consecutive."""
    target = window_rows - patch_rows[:, :1]
    inside = (target >= 0) & (target < patch_rows.shape[1])
    return torch.where(inside, target * scale, OUTSIDE)


@dataclass(frozen=True)
class _Gather:
    """A patch of a cached clean tensor (``key``: ``[B, H', W', C]``) with a window laid
    over it → ``[N, C, r, c]`` in channels-last memory (what oneDNN's convolutions like).

    Tables are per image row / column: ``rows [H, r]`` (source row × source width) and
    ``cols [W, c]`` of the patch; ``row_targets [H, h]`` (patch row × ``c``) and
    ``col_targets [W, w]`` of the window, :data:`OUTSIDE` where it leaves the patch.
    """

    key: str
    plane: int  # source height × width
    rows: torch.Tensor
    cols: torch.Tensor
    row_targets: torch.Tensor
    col_targets: torch.Tensor

    def __call__(self, q: _Query, window: Window) -> torch.Tensor:
        source = q.cache.tensors[self.key]
        channels = source.shape[-1]
        n, r, c = q.owner.shape[0], self.rows.shape[1], self.cols.shape[1]
        flat = ((q.owner * self.plane)[:, None, None] + self.rows[q.y][:, :, None]
                + self.cols[q.x][:, None, :])
        patch = source.new_empty(n * r * c + 1, channels)  # the last row takes strays
        torch.index_select(source.reshape(-1, channels), 0, flat.reshape(-1), out=patch[:-1])
        target = ((q.ids * (r * c))[:, None, None] + self.row_targets[q.y][:, :, None]
                  + self.col_targets[q.x][:, None, :])
        target = torch.where(target >= 0, target, n * r * c)
        values = window.values.permute(0, 2, 3, 1).reshape(-1, channels)
        patch.index_copy_(0, target.reshape(-1), values.to(patch.dtype))
        return patch[:-1].view(n, r, c, channels).permute(0, 3, 1, 2)


def _gather(key: str, rows: torch.Tensor, cols: torch.Tensor, offsets: tuple[int, int],
            inner: Box, source: tuple[int, int]) -> _Gather:
    """The :class:`_Gather` of a patch (``rows``/``cols`` in the source's coordinates,
    which are the map's shifted by ``offsets``) over the window ``inner``."""
    device = rows.device
    window_rows = inner.top[:, None] + offsets[0] + torch.arange(inner.size[0], device=device)
    window_cols = inner.left[:, None] + offsets[1] + torch.arange(inner.size[1], device=device)
    return _Gather(key, source[0] * source[1], rows * source[1], cols,
                   _targets(window_rows, rows, cols.shape[1]), _targets(window_cols, cols, 1))


# ------------------------------------------------------------------ runtime values
@dataclass(frozen=True)
class Window:
    """The changed window of every row: ``values [N, C, h, w]`` at rows ``top[n]`` and
    columns ``left[n]`` of ``box.map``; elsewhere the map is the clean image's."""

    values: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor
    box: Box


@dataclass
class FxCache:
    """What one set of clean images contributes to every query: per cache key a tensor
    ``[B, ...]`` (clean activations channels-last, padded where a layer needs it)."""

    images: torch.Tensor
    tensors: dict[str, torch.Tensor]
    plan: _Plan


class _Query:
    """One call's rows and what it computes once (window origins, materialised maps)."""

    def __init__(self, cache: FxCache, owner, y, x, colour) -> None:
        self.cache, self.owner, self.y, self.x, self.colour = cache, owner, y, x, colour
        self.ids = torch.arange(owner.shape[0], device=owner.device)
        self._origins: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._full: dict[fx.Node, torch.Tensor] = {}

    def window(self, values: torch.Tensor, box: Box) -> Window | torch.Tensor:
        """A window of ``box`` (the values themselves once it covers the map)."""
        if box.covers:
            return values
        if id(box) not in self._origins:
            self._origins[id(box)] = box.top[self.y], box.left[self.x]
        return Window(values, *self._origins[id(box)], box)

    def full(self, node: fx.Node, value: Any) -> Any:
        """``value`` as a full tensor (a window materialised once per call)."""
        if not isinstance(value, Window):
            return value
        if node not in self._full:
            self._full[node] = self._materialise(node, value)
        return self._full[node]

    def _materialise(self, node: fx.Node, window: Window) -> torch.Tensor:
        """The clean map of every row with its window written in → ``[N, C, H, W]``."""
        source = self.cache.tensors[_clean_key(node)]
        _, height, width, channels = source.shape
        full = source.index_select(0, self.owner)
        h, w = window.values.shape[-2:]
        rows = window.top[:, None] + torch.arange(h, device=self.ids.device)
        cols = window.left[:, None] + torch.arange(w, device=self.ids.device)
        flat = (self.ids[:, None, None] * height + rows[:, :, None]) * width + cols[:, None, :]
        values = window.values.permute(0, 2, 3, 1).reshape(-1, channels).to(full.dtype)
        full.view(-1, channels).index_copy_(0, flat.reshape(-1), values)
        return full.permute(0, 3, 1, 2)


def _clean_key(node: fx.Node) -> str:
    return f"clean:{node.name}"


# ------------------------------------------------------------------ steps
class _Input:
    """The changed pixel: a 1×1 window of the colour."""

    def __init__(self, box: Box) -> None:
        self.box = box

    def run(self, q: _Query, env: dict) -> Any:
        return q.window(q.colour[:, :, None, None], self.box)


class _Pointwise:
    """The node's own op on window values (expanded to one box where they differ)."""

    def __init__(self, node: fx.Node, call: Callable, box: Box,
                 expand: dict[fx.Node, _Gather]) -> None:
        self.node, self.call, self.box, self.expand = node, call, box, expand

    def run(self, q: _Query, env: dict) -> Any:
        def value(n: fx.Node):
            v = env[n]
            if not isinstance(v, Window):
                return v
            return self.expand[n](q, v) if n in self.expand else v.values

        args = fx.node.map_arg(self.node.args, value)
        kwargs = fx.node.map_arg(self.node.kwargs, value)
        return q.window(self.call(*args, **kwargs), self.box)


class _Spatial:
    """A sliding-window layer on the window's receptive field."""

    def __init__(self, source: fx.Node, gather: _Gather, slide: _Slide, box: Box) -> None:
        self.source, self.gather, self.slide, self.box = source, gather, slide, box

    def run(self, q: _Query, env: dict) -> Any:
        return q.window(self.slide.patch(self.gather(q, env[self.source])), self.box)


class _Run:
    """The node as the model runs it, on full tensors."""

    def __init__(self, node: fx.Node, call: Callable) -> None:
        self.node, self.call = node, call

    def run(self, q: _Query, env: dict) -> Any:
        def value(n: fx.Node):
            return q.full(n, env[n])

        return self.call(*fx.node.map_arg(self.node.args, value),
                         **fx.node.map_arg(self.node.kwargs, value))


class _Shape(_Run):
    """``size``/``shape``/``dim`` of a window: from the map's shape, nothing materialised."""

    def __init__(self, node: fx.Node, call: Callable, shapes: dict) -> None:
        super().__init__(node, call)
        self.shapes = shapes

    def run(self, q: _Query, env: dict) -> Any:
        def value(n: fx.Node):
            v = env[n]
            if isinstance(v, Window):
                return torch.empty((q.owner.shape[0], *self.shapes[n][1:]), device="meta")
            return v

        return self.call(*fx.node.map_arg(self.node.args, value),
                         **fx.node.map_arg(self.node.kwargs, value))


class _Output(_Run):
    def __init__(self, node: fx.Node) -> None:
        super().__init__(node, lambda result: result)


# ------------------------------------------------------------------ rules
@dataclass(frozen=True)
class _Rule:
    """How a node runs on windows: ``pointwise`` (one window, same box), ``elementwise``
    (several windows, their union box), ``cat``, ``spatial`` or ``shape``."""

    kind: str
    channel: bool = False  # tensor arguments are per-channel parameters, any shape
    slide: _Slide | None = None


POINTWISE, ELEMENTWISE = _Rule("pointwise"), _Rule("elementwise")


def _plain(module: nn.Module, classes: tuple) -> bool:
    """An instance of one of ``classes`` whose ``forward`` was not overridden."""
    return any(isinstance(module, c) and type(module).forward is c.forward for c in classes)


def _argument(node: fx.Node, position: int, name: str, default: Any) -> Any:
    if len(node.args) > position:
        return node.args[position]
    return node.kwargs.get(name, default)


def _conv_padding(padding, kernel, dilation) -> tuple[int, int] | str:
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        if any(t % 2 for t in totals):
            return "padding='same' with an even reach"
        return totals[0] // 2, totals[1] // 2
    return _pair(padding)


def _conv_rule(weight: torch.Tensor, bias, stride, padding, dilation, groups,
               padding_mode: str = "zeros") -> _Rule | str:
    kernel = tuple(weight.shape[-2:])
    stride, dilation = _pair(stride), _pair(dilation)
    padding = _conv_padding(padding, kernel, dilation)
    if isinstance(padding, str):
        return padding
    if padding_mode != "zeros" and any(padding):
        return f"padding_mode={padding_mode!r}"
    if kernel == (1, 1) and stride == (1, 1) and padding == (0, 0):
        return _Rule("pointwise", channel=True)

    def patch(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, weight, bias, stride, 0, dilation, groups)

    return _Rule("spatial", slide=_Slide(kernel, stride, padding, dilation, 0.0, patch))


def _max_pool_rule(kernel, stride, padding, dilation, return_indices) -> _Rule | str:
    if return_indices:
        return "max pooling returning indices"
    kernel, padding, dilation = _pair(kernel), _pair(padding), _pair(dilation)
    stride = _pair(stride) if stride else kernel

    def patch(x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, kernel, stride, 0, dilation)

    return _Rule("spatial", slide=_Slide(kernel, stride, padding, dilation, float("-inf"),
                                         patch))


def _avg_pool_rule(kernel, stride, padding, count_include_pad, divisor) -> _Rule | str:
    kernel, padding = _pair(kernel), _pair(padding)
    stride = _pair(stride) if stride else kernel
    if any(padding) and not count_include_pad:
        return "average pooling with count_include_pad=False"

    def patch(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, kernel, stride, 0, False, True, divisor)

    return _Rule("spatial", slide=_Slide(kernel, stride, padding, (1, 1), 0.0, patch,
                                         floor_only=True))


def _module_rule(module: nn.Module) -> _Rule | str | None:
    """The rule of a module call (``None``: not a module it knows; a string: why not)."""
    if _plain(module, _ACTIVATIONS):
        return POINTWISE
    if _plain(module, (nn.Dropout, nn.Dropout2d)):
        return "dropout in training mode" if module.training else POINTWISE
    if _plain(module, (nn.BatchNorm2d,)):
        batch_stats = module.training or module.running_mean is None
        return "BatchNorm2d on batch statistics" if batch_stats else POINTWISE
    if _plain(module, (nn.Conv2d,)):
        m = module
        return _conv_rule(m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups,
                          m.padding_mode)
    if _plain(module, (nn.MaxPool2d,)):
        m = module
        return _max_pool_rule(m.kernel_size, m.stride, m.padding, m.dilation,
                              m.return_indices)
    if _plain(module, (nn.AvgPool2d,)):
        m = module
        return _avg_pool_rule(m.kernel_size, m.stride, m.padding, m.count_include_pad,
                              m.divisor_override)
    return None


def _function_rule(node: fx.Node, static: Callable[[Any], Any]) -> _Rule | str | None:
    """The rule of a function call; ``static`` resolves an argument to its value."""
    target, arg = node.target, functools.partial(_argument, node)
    if target in CONV_FUNCTIONS:
        return _conv_rule(static(arg(1, "weight", None)), static(arg(2, "bias", None)),
                          arg(3, "stride", 1), arg(4, "padding", 0), arg(5, "dilation", 1),
                          arg(6, "groups", 1))
    if target in MAX_POOL_FUNCTIONS:
        return _max_pool_rule(arg(1, "kernel_size", None), arg(2, "stride", None),
                              arg(3, "padding", 0), arg(4, "dilation", 1),
                              arg(6, "return_indices", False))
    if target in AVG_POOL_FUNCTIONS:  # ceil_mode: refused where it changes the size
        return _avg_pool_rule(arg(1, "kernel_size", None), arg(2, "stride", None),
                              arg(3, "padding", 0), arg(5, "count_include_pad", True),
                              arg(6, "divisor_override", None))
    if target in TRAINING_FUNCTIONS:
        position, default = TRAINING_FUNCTIONS[target]
        if arg(position, "training", default):
            return f"{target.__name__} in training mode"
        return _Rule("pointwise", channel=target in CHANNEL_FUNCTIONS)
    if target in POINTWISE_FUNCTIONS or target in CHANNEL_FUNCTIONS:
        return _Rule("pointwise", channel=target in CHANNEL_FUNCTIONS)
    if target in ELEMENTWISE_FUNCTIONS:
        return ELEMENTWISE
    if target in CAT_FUNCTIONS:
        return _Rule("cat") if arg(1, "dim", 0) in (1, -3) else "cat along a spatial axis"
    if target is getattr and node.args[1] in SHAPE_ATTRIBUTES:
        return _Rule("shape")
    return None


def _method_rule(node: fx.Node) -> _Rule | None:
    if node.target in POINTWISE_METHODS:
        return POINTWISE
    if node.target in ELEMENTWISE_METHODS:
        return ELEMENTWISE
    return _Rule("shape") if node.target in SHAPE_METHODS else None


def describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """A node's operation in words: ``Upsample (up)``, ``flip()``, ``adaptive_avg_pool2d``."""
    if node.op == "call_module":
        return f"{type(modules[node.target]).__name__} ({node.target})"
    if node.op == "call_method":
        return f"Tensor.{node.target}()"
    return getattr(node.target, "__name__", str(node.target))


def _broadcasts_per_channel(value: Any) -> bool:
    """A constant that acts on every position alike: not a tensor, or one broadcasting as
    ``[1, C, 1, 1]``."""
    if not isinstance(value, torch.Tensor):
        return True
    shape = value.shape
    return (len(shape) <= 4 and all(s == 1 for s in shape[-2:])
            and (len(shape) < 4 or shape[0] == 1))


# ------------------------------------------------------------------ the plan
@dataclass
class _Plan:
    """The steps for one image size: per node its step and the nodes done after it, what
    the clean pass keeps (``needs``: node → key → padding), why it does not pay (if so)
    and the multiply-accumulates per row of the cone and of the full pass."""

    steps: list[tuple[fx.Node, Any, list[fx.Node]]]
    needs: dict[fx.Node, dict[str, tuple[tuple[int, int, int, int] | None, float]]]
    first_unsupported: str | None
    cone_macs: int
    full_macs: int

    @property
    def problem(self) -> str | None:
        """Why the cone does not pay for this image size (``None`` when it does)."""
        if not self.full_macs:
            return "no convolution or linear layer found in the graph"
        saving = 1 - self.cone_macs / self.full_macs
        if saving < MIN_SAVING:
            if self.first_unsupported:
                return (f"the first operation it cannot run on windows, "
                        f"{self.first_unsupported}, comes before it saves work "
                        f"({saving:.0%} saved)")
            return f"the window covers the feature maps too early ({saving:.0%} saved)"
        if self.full_macs < MIN_FULL_MACS:
            return (f"the network is too small to gain ({self.full_macs / 1e6:.2f} MMAC "
                    "per image)")
        return None


class _Planner:
    """Builds the :class:`_Plan` of one image size from the clean value shapes."""

    def __init__(self, engine: FxIncrementalForward, shapes: dict, image_map: tuple[int, int],
                 device: torch.device) -> None:
        self.engine, self.shapes = engine, shapes
        self.kinds: dict[fx.Node, str] = dict.fromkeys(engine.statics, STATIC)
        self.boxes: dict[fx.Node, Box] = {}
        self.steps: list[tuple[fx.Node, Any]] = []
        self.needs: dict = {}
        self.first_unsupported: str | None = None
        self.cone_macs = self.full_macs = 0
        height, width = image_map
        self.input_box = Box(torch.arange(height, device=device),
                             torch.arange(width, device=device), (1, 1), image_map)

    def plan(self) -> _Plan:
        for node in self.engine.nodes:
            if node not in self.engine.statics:
                self._add(node)
        return _Plan(self._with_frees(), self.needs, self.first_unsupported, self.cone_macs,
                     self.full_macs)

    def _with_frees(self) -> list[tuple[fx.Node, Any, list[fx.Node]]]:
        """Each step with the values no later step needs (freed as the query goes)."""
        index = {node: i for i, (node, _) in enumerate(self.steps)}
        last: dict[fx.Node, int] = {}
        for node, _ in self.steps:
            for n in node.all_input_nodes:
                if n in index:
                    last[n] = index[node]
        frees: list[list[fx.Node]] = [[] for _ in self.steps]
        for n, i in last.items():
            frees[i].append(n)
        return [(node, step, frees[i]) for i, (node, step) in enumerate(self.steps)]

    def _add(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            self._set(node, _Input(self.input_box), self.input_box)
            return
        if node.op == "output":
            self._full(node, _Output(node))
            return
        inputs = node.all_input_nodes
        windows = [n for n in inputs if self.kinds[n] == WINDOW]
        rule = self.engine.rule(node) if windows else None
        if isinstance(rule, _Rule) and rule.kind == "shape" and node.args[0] in windows:
            self._full(node, _Shape(node, self.engine.callable(node), self.shapes),
                       materialises=False)
            return
        if not windows or any(self.kinds[n] == FULL for n in inputs):
            self._full(node, _Run(node, self.engine.callable(node)))
            return
        outcome = (self._windowed(node, rule, windows) if isinstance(rule, _Rule) else
                   rule or "not an operation it knows")
        if isinstance(outcome, str):
            if self.first_unsupported is None:
                self.first_unsupported = f"{describe(node, self.engine.modules)} ({outcome})"
            self._full(node, _Run(node, self.engine.callable(node)))

    def _full(self, node: fx.Node, step: Any, materialises: bool = True) -> None:
        """A node run on full tensors: its windowed inputs are materialised."""
        for n in node.all_input_nodes:
            if self.kinds[n] == WINDOW and materialises:
                self._need(n, _clean_key(n), None, 0.0)
        self.kinds[node] = FULL
        self.steps.append((node, step))
        macs = self._macs(node, None)
        self.cone_macs += macs
        self.full_macs += macs

    def _set(self, node: fx.Node, step: Any, box: Box) -> None:
        """A node run on windows; a window covering its map is a full tensor from here."""
        self.kinds[node] = FULL if box.covers else WINDOW
        self.boxes[node] = box
        self.steps.append((node, step))
        self.cone_macs += self._macs(node, box.size[0] * box.size[1])
        self.full_macs += self._macs(node, None)

    def _need(self, node: fx.Node, key: str, pads, fill: float) -> None:
        self.needs.setdefault(node, {})[key] = (pads, fill)

    def _windowed(self, node: fx.Node, rule: _Rule, windows: list[fx.Node]) -> str | None:
        """Add ``node`` as a window step, or say why it cannot be one."""
        if rule.kind == "spatial":
            return self._spatial(node, rule.slide, windows)
        shape, maps = self.shapes.get(node), {self.boxes[n].map for n in windows}
        if not (isinstance(shape, torch.Size) and len(shape) == 4 and len(maps) == 1
                and tuple(shape[-2:]) in maps):
            return "the output is not a map of the input's size"
        if rule.kind == "pointwise" and (len(windows) > 1 or node.args[0] is not windows[0]):
            return "several windowed inputs"
        if rule.kind == "cat" and any(not isinstance(n, fx.Node) or self.kinds[n] != WINDOW
                                      for n in node.args[0]):
            return "concatenation with values that are not windowed"
        if not rule.channel and not all(_broadcasts_per_channel(self.engine.statics[n])
                                        for n in node.all_input_nodes
                                        if self.kinds[n] == STATIC):
            return "a constant that varies over positions"
        box = _union([self.boxes[n] for n in windows])
        expand = {}
        for n in windows:
            if not self.boxes[n].same(box):
                expand[n] = self._expand(n, box)
        self._set(node, _Pointwise(node, self.engine.callable(node), box, expand), box)
        return None

    def _expand(self, node: fx.Node, box: Box) -> _Gather:
        """Lay ``node``'s window over its clean value within ``box``."""
        key = _clean_key(node)
        self._need(node, key, None, 0.0)
        rows = box.top[:, None] + torch.arange(box.size[0], device=box.top.device)
        cols = box.left[:, None] + torch.arange(box.size[1], device=box.top.device)
        return _gather(key, rows, cols, (0, 0), self.boxes[node], box.map)

    def _spatial(self, node: fx.Node, slide: _Slide, windows: list[fx.Node]) -> str | None:
        source = node.args[0]
        if len(windows) > 1 or source is not windows[0]:
            return "a computed weight"
        shape, inner = self.shapes[node], self.boxes[source]
        in_map, out_map = inner.map, tuple(shape[-2:])
        if not all(slide.fits(in_map[i], out_map[i], i) for i in (0, 1)):
            return "ceil_mode changes the output size"
        top, h, rows, bottom = slide.axis(0, inner.top, inner.size[0], in_map[0], out_map[0])
        left, w, cols, right = slide.axis(1, inner.left, inner.size[1], in_map[1], out_map[1])
        pads = (slide.padding[1], right, slide.padding[0], bottom)
        key = f"padded:{source.name}:{pads}:{slide.pad_value}"
        self._need(source, key, pads, slide.pad_value)
        source_map = (in_map[0] + slide.padding[0] + bottom, in_map[1] + slide.padding[1] + right)
        gather = _gather(key, rows, cols, slide.padding, inner, source_map)
        box = Box(top, left, (h, w), out_map)
        self._set(node, _Spatial(source, gather, slide, box), box)
        return None

    def _macs(self, node: fx.Node, positions: int | None) -> int:
        """Multiply-accumulates per row of a convolution or linear layer on ``positions``
        output positions (``None``: the whole output)."""
        weight, conv = self.engine.weight(node)
        shape = self.shapes.get(node)
        if weight is None or not isinstance(shape, torch.Size):
            return 0
        if conv:
            return weight.numel() * (positions or shape[-2] * shape[-1])
        return weight.numel() * int(torch.Size(shape[1:-1]).numel())


# ------------------------------------------------------------------ the engine
def _fetch(root: nn.Module, target: str) -> Any:
    value: Any = root
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _traced(model: nn.Module) -> fx.GraphModule:
    """A traced copy of ``model`` with every BatchNorm that follows a convolution folded
    into it (``torch.fx``'s own pass; the plain trace where that pass fails)."""
    try:
        return fuse(model)
    except Exception:  # noqa: BLE001 - a pattern the pass cannot fold: trace as it is
        return fx.symbolic_trace(copy.deepcopy(model))


def _without_inplace(graph_module: fx.GraphModule) -> None:
    """In-place activations write into values the cache keeps: make them out of place;
    refuse other in-place operations."""
    for module in graph_module.modules():
        if isinstance(getattr(module, "inplace", None), bool):
            module.inplace = False
    for node in graph_module.graph.nodes:
        name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
        if node.op in ("call_method", "call_function") and isinstance(name, str) and (
                name.endswith("_") and not name.endswith("__")):
            raise FxUnsupportedError(f"in-place operation {name} ({node.name})")
        if node.op == "call_function" and node.kwargs.get("inplace"):
            node.kwargs = {**node.kwargs, "inplace": False}
        position = _INPLACE_POSITION.get(node.target) if node.op == "call_function" else None
        if position is not None and len(node.args) > position and node.args[position]:
            node.args = (*node.args[:position], False, *node.args[position + 1:])


class FxIncrementalForward:
    """Scores of one-pixel changes of cached clean images for any ``torch.fx``-traceable
    network (see the module docstring).

    >>> engine = FxIncrementalForward(model)
    >>> cache = engine.prepare(images)                     # [B, C, H, W] in [0, 1]
    >>> logits = engine(cache, owner, y, x, colour)        # rows: image, pixel, colour

    Raises:
        torch.fx.proxy.TraceError (or another tracing error): ``torch.fx`` cannot trace it.
        FxUnsupportedError: the graph has in-place operations or several image inputs.
    """

    def __init__(self, model: nn.Module) -> None:
        self.graph_module = _traced(model)
        _without_inplace(self.graph_module)
        self.nodes = list(self.graph_module.graph.nodes)
        self.modules = dict(self.graph_module.named_modules())
        placeholders = [n for n in self.nodes if n.op == "placeholder"]
        if any(not n.args for n in placeholders[1:]):
            raise FxUnsupportedError("the model takes more than one input")
        self.input = placeholders[0]
        self.statics = self._statics()
        position = {n: i for i, n in enumerate(self.nodes)}
        self._users = {n: max(position[u] for u in n.users) for n in self.nodes if n.users}
        self._plans: dict[tuple, _Plan] = {}

    def _statics(self) -> dict[fx.Node, Any]:
        """Values that do not depend on the image: parameters, constants, defaults."""
        values: dict[fx.Node, Any] = {}
        with torch.inference_mode():
            for node in self.nodes:
                if node.op == "get_attr":
                    values[node] = _fetch(self.graph_module, node.target)
                elif node.op == "placeholder" and node is not self.nodes[0]:
                    values[node] = node.args[0]
                elif node.op.startswith("call") and all(n in values
                                                        for n in node.all_input_nodes):
                    values[node] = self._call(node, values.__getitem__)
        return values

    # -- nodes
    def callable(self, node: fx.Node) -> Callable:
        """What ``node`` runs, as ``fn(*args, **kwargs)``."""
        if node.op == "call_module":
            return self.modules[node.target]
        if node.op == "call_method":
            return lambda this, *args, **kwargs: getattr(this, node.target)(*args, **kwargs)
        return node.target

    def _call(self, node: fx.Node, value: Callable[[fx.Node], Any]) -> Any:
        return self.callable(node)(*fx.node.map_arg(node.args, value),
                                   **fx.node.map_arg(node.kwargs, value))

    def rule(self, node: fx.Node) -> _Rule | str | None:
        """How ``node`` runs on windows (``None`` or a reason: it cannot)."""
        if node.op == "call_module":
            return _module_rule(self.modules[node.target])
        if node.op == "call_method":
            return _method_rule(node)
        if node.op == "call_function":
            def static(arg: Any) -> Any:
                if isinstance(arg, fx.Node):
                    if arg not in self.statics:
                        raise _Computed
                    return self.statics[arg]
                return arg

            try:
                return _function_rule(node, static)
            except _Computed:
                return "a weight computed from the image"
        return None

    def weight(self, node: fx.Node) -> tuple[torch.Tensor | None, bool]:
        """The weight of a convolution or linear node and whether it is a convolution."""
        if node.op == "call_module":
            module = self.modules[node.target]
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                return module.weight, isinstance(module, nn.Conv2d)
        elif node.op == "call_function" and node.target in CONV_FUNCTIONS | LINEAR_FUNCTIONS:
            weight = self.statics.get(_argument(node, 1, "weight", None))
            if isinstance(weight, torch.Tensor):
                return weight, node.target in CONV_FUNCTIONS
        return None, False

    # -- clean passes
    def _clean(self, images: torch.Tensor) -> Iterator[tuple[fx.Node, Any]]:
        """Every node's clean value, in graph order (each freed after its last use)."""
        env = dict(self.statics)
        env[self.input] = images
        yield self.input, images
        for i, node in enumerate(self.nodes):
            if node in env:
                continue
            if node.op == "output":
                return
            env[node] = self._call(node, env.__getitem__)
            yield node, env[node]
            for n in node.all_input_nodes:
                if self._users.get(n) == i and n not in self.statics:
                    del env[n]

    def plan(self, images: torch.Tensor) -> _Plan:
        """The plan for images of this shape (built once, from one image's clean pass)."""
        key = (tuple(images.shape[1:]), images.dtype, images.device)
        if key not in self._plans:
            with torch.inference_mode():
                shapes = {node: value.shape if isinstance(value, torch.Tensor) else None
                          for node, value in self._clean(images[:1])}
            self._plans[key] = _Planner(self, shapes, tuple(images.shape[-2:]),
                                        images.device).plan()
        return self._plans[key]

    def problem(self, images: torch.Tensor) -> str | None:
        """Why the cone does not pay for images of this shape (``None`` when it does)."""
        return self.plan(images).problem

    def macs(self, images: torch.Tensor) -> tuple[int, int]:
        """Multiply-accumulates per row: the cone's and the full pass's (conv and linear
        layers only)."""
        plan = self.plan(images)
        return plan.cone_macs, plan.full_macs

    @torch.inference_mode()
    def prepare(self, images: torch.Tensor) -> FxCache:
        """Run the clean images once, keeping what the windows need.

        Args:
            images: ``[B, C, H, W]`` in [0, 1].

        Returns:
            The cache every query of these images reuses.
        """
        plan = self.plan(images)
        tensors = {}
        for node, value in self._clean(images):
            for key, (pads, fill) in plan.needs.get(node, {}).items():
                if pads is not None:
                    value_padded = F.pad(value, pads, value=fill)
                    tensors[key] = value_padded.permute(0, 2, 3, 1).contiguous()
                else:
                    tensors[key] = value.permute(0, 2, 3, 1).contiguous()
        return FxCache(images, tensors, plan)

    @staticmethod
    def concat(parts: list[FxCache]) -> FxCache:
        """One cache of several images' caches (prepared one image at a time)."""
        first = parts[0]
        return FxCache(torch.cat([p.images for p in parts]),
                       {k: torch.cat([p.tensors[k] for p in parts]) for k in first.tensors},
                       first.plan)

    @torch.inference_mode()
    def __call__(self, cache: FxCache, owner: torch.Tensor, y: torch.Tensor, x: torch.Tensor,
                 colour: torch.Tensor) -> torch.Tensor:
        """Logits of rows ``n``: image ``owner[n]`` with pixel ``(y[n], x[n])`` set to
        ``colour[n]``.

        Args:
            cache: from :meth:`prepare`.
            owner, y, x: ``[N]`` (long).
            colour: ``[N, C]`` in [0, 1].

        Returns:
            ``[N, K]`` scores, as the model's full pass gives them (to float tolerance).
        """
        q = _Query(cache, owner, y, x, colour.to(cache.images.dtype))
        env: dict[fx.Node, Any] = dict(self.statics)
        result = None
        for node, step, done in cache.plan.steps:
            env[node] = result = step.run(q, env)
            for n in done:
                del env[n]
        return result


class _Computed(Exception):
    """An argument that should be a constant depends on the image."""


def fx_incremental_forward(model: nn.Module, example: torch.Tensor
                           ) -> tuple[FxIncrementalForward | None, str | None]:
    """The fx cone engine for ``model`` on images like ``example`` (``[B, C, H, W]``), or
    ``None`` and why it does not apply (a one-line reason naming the operation).

    Args:
        model: the network, in eval mode.
        example: images of the size the attack will query.

    Returns:
        ``(engine, None)`` or ``(None, reason)``.
    """
    if model.training:
        return None, "the model is in training mode"
    try:
        engine = FxIncrementalForward(model)
    except FxUnsupportedError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - tracing fails in many ways
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return None, f"torch.fx cannot trace the model ({type(exc).__name__}: {message})"
    try:
        problem = engine.problem(example)
    except Exception as exc:  # noqa: BLE001 - an op the planner did not foresee
        return None, f"planning failed ({type(exc).__name__}: {exc})"
    return (None, problem) if problem else (engine, None)
