"""Max and average pooling (windows), and the global poolings of a network's head."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry import Slide, pair
from ..intervals import MAXIMUM, PositiveSum
from ..table import NodeCall, WindowRule, register_bound, register_interval, register_operation
from ..zonotope import MAX_POOL, Affine, Rounding


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
    if any(padding) and not include:
        return "average pooling with count_include_pad=False"
    return PoolParams(kernel, pair(stride) if stride else kernel, padding, (1, 1), bool(ceil),
                      bool(include), divisor)


def _average_window(params: PoolParams | str) -> WindowRule | str:
    if isinstance(params, str):
        return params
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
register_interval("avg_pool2d")(lambda params: PositiveSum(
    params.kernel[0] * params.kernel[1] + 1))
register_interval("adaptive_avg_pool2d")(lambda params: PositiveSum(None))
register_interval("mean")(lambda params: PositiveSum(None))
register_interval("sum")(lambda params: PositiveSum(None))
