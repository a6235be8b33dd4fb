"""Max and average pooling (windows), and the global poolings of a network's head."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry import Slide, pair
from ..intervals import MAXIMUM, MAXIMUM_OVER, PositiveSum
from ..table import NodeCall, WindowRule, register_bound, register_interval, register_operation
from ..zonotope import MAX_OVER, MAX_POOL, Affine, BoundUnsupportedError, Rounding


@dataclass(frozen=True)
class PoolParams:
    """A pooling layer's geometry (``stride`` defaults to the kernel)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    ceil_mode: bool
    count_include_pad: bool = True
    divisor: int | None = None

    def run_max(self, x: torch.Tensor) -> torch.Tensor:
        """Max pooling of an unpadded patch ``[N, C, r, c]``."""
        return F.max_pool2d(x, self.kernel, self.stride, 0, self.dilation)

    def run_average(self, x: torch.Tensor) -> torch.Tensor:
        """Average pooling of an unpadded patch ``[N, C, r, c]`` (padding counted)."""
        return F.avg_pool2d(x, self.kernel, self.stride, 0, False, True, self.divisor)


def _max_params(call: NodeCall) -> PoolParams | str:
    if call.module is not None:
        m = call.module
        kernel, stride, padding, dilation = m.kernel_size, m.stride, m.padding, m.dilation
        indices, ceil = m.return_indices, m.ceil_mode
    else:
        kernel, stride = call.arg(1, "kernel_size"), call.arg(2, "stride")
        padding, dilation = call.arg(3, "padding", 0), call.arg(4, "dilation", 1)
        ceil, indices = call.arg(5, "ceil_mode", False), call.arg(6, "return_indices", False)
    if indices:
        return "max pooling returning indices"
    kernel = pair(kernel)
    return PoolParams(kernel, pair(stride) if stride else kernel, pair(padding),
                      pair(dilation), bool(ceil))


def _max_window(params: PoolParams | str) -> WindowRule | str:
    if isinstance(params, str):
        return params
    return WindowRule("spatial", slide=Slide(params.kernel, params.stride, params.padding,
                                             params.dilation, float("-inf"), params.run_max))


def _average_params(call: NodeCall) -> PoolParams | str:
    if call.module is not None:
        m = call.module
        kernel, stride, padding = m.kernel_size, m.stride, m.padding
        ceil, include, divisor = m.ceil_mode, m.count_include_pad, m.divisor_override
    else:
        kernel, stride = call.arg(1, "kernel_size"), call.arg(2, "stride")
        padding, ceil = call.arg(3, "padding", 0), call.arg(4, "ceil_mode", False)
        include, divisor = call.arg(5, "count_include_pad", True), call.arg(6, "divisor_override")
    kernel, padding = pair(kernel), pair(padding)
    return PoolParams(kernel, pair(stride) if stride else kernel, padding, (1, 1), bool(ceil),
                      bool(include), divisor)


def _average_window(params: PoolParams | str) -> WindowRule | str:
    if isinstance(params, str):
        return params
    if any(params.padding) and not params.count_include_pad:
        # a window's border is not the map's: its count of padded elements is the map's
        return "average pooling with count_include_pad=False (runs on whole maps)"
    # ceil_mode is refused by the planner where it changes the output size (floor_only)
    return WindowRule("spatial", slide=Slide(params.kernel, params.stride, params.padding,
                                             (1, 1), 0.0, params.run_average, floor_only=True))


register_operation("max_pool2d", window=_max_window, params=_max_params,
                   modules=(nn.MaxPool2d,), functions=(F.max_pool2d, torch.max_pool2d),
                   help="2-D max pooling")
register_operation("avg_pool2d", window=_average_window, params=_average_params,
                   modules=(nn.AvgPool2d,), functions=(F.avg_pool2d,),
                   help="2-D average pooling")


def _whole_map(params: object) -> str:
    return "it pools the whole map"


register_operation("adaptive_avg_pool2d", window=_whole_map,
                   modules=(nn.AdaptiveAvgPool2d,), functions=(F.adaptive_avg_pool2d,),
                   help="adaptive average pooling (the head: runs on whole maps)")
@dataclass(frozen=True)
class MaxOverParams:
    """A maximum over whole axes after the batch axis (``x.amax((2, 3))``, global max
    pooling) or over an adaptive max pooling's windows (``F.adaptive_max_pool2d(x, (2,
    2))``), whose extent is the map's: the engines read it from the input's shape when
    they run (:meth:`groups`).

    Attributes:
        dims: the axes a maximum is taken over (``amax``; negative ones count from the
            end).
        keepdim: those axes are kept, of size 1.
        output: an adaptive max pooling's output size ``(h, w)`` (``None`` in it: the
            input's), else ``None``.
    """

    dims: tuple[int, ...] = ()
    keepdim: bool = False
    output: tuple[int | None, int | None] | None = None

    def groups(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, tuple[int, ...]]:
        """The elements each output element is the maximum of.

        Args:
            shape: one image's input shape, without the batch axis.

        Returns:
            ``(index, out)``: ``index`` ``[M, K]`` of flat positions in one image's input
            (``-1``: none, where windows differ in size), one row per output element in
            the output's order; ``out``, one image's output shape without the batch axis.

        Raises:
            BoundUnsupportedError: the maximum reaches the batch axis, or the input is not
                a batch of maps (adaptive pooling).
        """
        return _groups(self, tuple(shape))


@functools.lru_cache(maxsize=64)
def _groups(params: MaxOverParams, shape: tuple[int, ...]) -> tuple[torch.Tensor,
                                                                     tuple[int, ...]]:
    if params.output is not None:
        return _adaptive_groups(params.output, shape)
    rank = len(shape) + 1
    dims = sorted({d % rank for d in params.dims}) if rank > 1 else [0]
    if 0 in dims or any(not -rank <= d < rank for d in params.dims):
        raise BoundUnsupportedError("a maximum over the batch axis (name axes after it, "
                                    "e.g. amax(dim=(2, 3)))")
    kept = [d for d in range(1, rank) if d not in dims]
    index = torch.arange(math.prod(shape)).view(shape)
    index = index.permute([d - 1 for d in kept + dims]).reshape(
        -1, math.prod(shape[d - 1] for d in dims))
    out = tuple(1 if d in dims else shape[d - 1] for d in range(1, rank)
                if params.keepdim or d not in dims)
    return index, out


def _adaptive_groups(output: tuple[int | None, int | None], shape: tuple[int, ...]
                     ) -> tuple[torch.Tensor, tuple[int, ...]]:
    """An adaptive max pooling's windows (as ``F.adaptive_max_pool2d`` cuts them: output
    ``i`` of ``o`` along an axis of ``n`` takes ``[⌊i n / o⌋, ⌈(i + 1) n / o⌉)``)."""
    if len(shape) != 3:
        raise BoundUnsupportedError("adaptive max pooling of a value that is not a batch "
                                    "of maps [N, C, H, W]")
    channels, height, width = shape
    out_h, out_w = (n if o is None else o for o, n in zip(output, (height, width),
                                                          strict=True))
    spans = [[range(i * n // o, -(-(i + 1) * n // o)) for i in range(o)]
             for o, n in ((out_h, height), (out_w, width))]
    windows = [[r * width + c for r in rows for c in columns]
               for rows in spans[0] for columns in spans[1]]
    size = max(len(w) for w in windows)
    per_map = torch.tensor([w + [-1] * (size - len(w)) for w in windows])
    offsets = torch.arange(channels)[:, None, None] * (height * width)
    index = torch.where(per_map >= 0, per_map + offsets, -1).reshape(-1, size)
    return index, (channels, out_h, out_w)


def _max_over_params(call: NodeCall) -> MaxOverParams | str:
    """``amax``'s axes, or an adaptive max pooling's output size."""
    if call.module is not None or call.node.target is F.adaptive_max_pool2d:
        if call.module is not None:
            size, indices = call.module.output_size, call.module.return_indices
        else:
            size, indices = call.arg(1, "output_size"), call.arg(2, "return_indices", False)
        if indices:
            return "adaptive max pooling returning indices"
        size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        if len(size) != 2 or not all(s is None or (isinstance(s, int) and s >= 1)
                                     for s in size):
            return "adaptive max pooling to a size that is not a number per axis"
        return MaxOverParams(output=size)
    dims, keepdim = call.arg(1, "dim", ()), call.arg(2, "keepdim", False)
    dims = (dims,) if isinstance(dims, int) else dims
    if any(isinstance(value, torch.dtype) for value in call.node.kwargs.values()):
        return "a maximum computed in another dtype"
    if (not isinstance(dims, (tuple, list)) or not dims or not isinstance(keepdim, bool)
            or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims)):
        return ("a maximum over every axis, the batch axis too, or over computed axes "
                "(name the axes, e.g. amax(dim=(2, 3)))")
    if 0 in dims:
        return "a maximum over the batch axis (name axes after it, e.g. amax(dim=(2, 3)))"
    return MaxOverParams(dims=tuple(dims), keepdim=keepdim)


def _whole_maximum(params: object) -> str:
    return params if isinstance(params, str) else "it takes a maximum over whole axes"


register_operation("max_over", window=_whole_maximum, params=_max_over_params,
                   modules=(nn.AdaptiveMaxPool2d,),
                   functions=(torch.amax, F.adaptive_max_pool2d), methods=("amax",),
                   help="a maximum over axes after the batch axis, or adaptive max pooling "
                   "(global max pooling; x.max(dim) and amin are written as it)")


def _reduction_params(call: NodeCall) -> None | str:
    """Nothing to read from a mean or a sum over axes; why one is not bounded: computed
    in another dtype (``x.sum(1, dtype=torch.float16)``: the bounds and the float32
    error would be of float32's), or over every axis by ``dim=()`` (the batch axis
    too)."""
    given = [*call.node.args[1:], *call.node.kwargs.values()]
    if any(isinstance(value, torch.dtype) for value in given):
        return "a reduction computed in another dtype (give it without dtype=)"
    if call.arg(1, "dim") in ((), []):
        return "a reduction over every axis, the batch axis too (name the axes)"
    return None


register_operation("mean", window=_whole_map, functions=(torch.mean,), methods=("mean",),
                   params=_reduction_params,
                   help="a mean over axes (the head: runs on whole maps)")
register_operation("sum", window=_whole_map, functions=(torch.sum,), methods=("sum",),
                   params=_reduction_params, help="a sum over axes (runs on whole maps)")

# the verifier: averages are exact, maxima relaxed (zonotope.MaxPool)
register_bound("max_pool2d")(lambda params: MAX_POOL)
register_bound("max_over")(lambda params: MAX_OVER)


def _average_bound(params: PoolParams) -> Affine:
    """A sum of the window's ``k`` terms and a division: ``k + 1`` roundings, gain
    ``k / divisor`` (1 without a divisor)."""
    area = params.kernel[0] * params.kernel[1]
    gain = area / params.divisor if params.divisor else 1.0
    return Affine(Rounding(gain * (1 + 2**-50), area + 1))


register_bound("avg_pool2d")(_average_bound)
# global averages: as many roundings as the input elements per output, known when run
register_bound("adaptive_avg_pool2d")(lambda params: Affine(Rounding(1.0, None)))
register_bound("mean")(lambda params: Affine(Rounding(1.0, None)))
# a sum's |A| is the sum itself on magnitudes (its interval rule's, as a mean's); its
# largest row sum, the terms per output, is not known before it runs: no constant gain
register_bound("sum")(lambda params: Affine(Rounding(math.inf, None)))

# the interval screen: maxima and averages are nondecreasing; averages round
register_interval("max_pool2d")(lambda params: MAXIMUM)
register_interval("max_over")(lambda params: MAXIMUM_OVER)
register_interval("avg_pool2d")(lambda params: PositiveSum(
    params.kernel[0] * params.kernel[1] + 1))
register_interval("adaptive_avg_pool2d")(lambda params: PositiveSum(None))
register_interval("mean")(lambda params: PositiveSum(None))
register_interval("sum")(lambda params: PositiveSum(None))
