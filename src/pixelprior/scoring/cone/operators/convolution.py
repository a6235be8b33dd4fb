"""2-D convolutions of any stride, padding, dilation and groups, and transposed ones
(the verifier: on whole maps)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry import Slide, pair
from ..intervals import SignedAffine
from ..table import NodeCall, WindowRule, register_bound, register_interval, register_operation
from ..zonotope import Affine, Rounding


@dataclass(frozen=True)
class ConvParams:
    """A convolution's weight ``[O, I/groups, kh, kw]``, bias ``[O]`` and geometry.

    ``padding`` is explicit (``"same"``/``"valid"`` resolved).
    """

    weight: torch.Tensor
    bias: torch.Tensor | None
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    @property
    def kernel(self) -> tuple[int, int]:
        return tuple(self.weight.shape[-2:])

    def run(self, x: torch.Tensor, bias: bool = True, padding: bool = False) -> torch.Tensor:
        """The convolution on ``x`` ``[N, I, h, w]`` (unpadded unless ``padding``)."""
        weight = self.weight.to(x.dtype)
        b = self.bias.to(x.dtype) if bias and self.bias is not None else None
        return F.conv2d(x, weight, b, self.stride, self.padding if padding else 0,
                        self.dilation, self.groups)


def _padding(padding, kernel, dilation) -> tuple[int, int] | str:
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        totals = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        if any(t % 2 for t in totals):
            return "padding='same' with an even reach"
        return totals[0] // 2, totals[1] // 2
    return pair(padding)


def _params(call: NodeCall) -> ConvParams | str:
    if call.module is not None:
        m = call.module
        weight, bias, stride, padding = m.weight, m.bias, m.stride, m.padding
        dilation, groups, mode = m.dilation, m.groups, m.padding_mode
    else:
        weight, bias = call.static_arg(1, "weight"), call.static_arg(2, "bias")
        stride, padding = call.arg(3, "stride", 1), call.arg(4, "padding", 0)
        dilation, groups, mode = call.arg(5, "dilation", 1), call.arg(6, "groups", 1), "zeros"
    dilation = pair(dilation)
    explicit = _padding(padding, tuple(weight.shape[-2:]), dilation)
    if isinstance(explicit, str):
        return explicit
    if mode != "zeros" and any(explicit):
        return f"padding_mode={mode!r}"
    return ConvParams(weight, bias, pair(stride), explicit, dilation, groups)


def _window(params: ConvParams | str) -> WindowRule | str:
    if isinstance(params, str):
        return params
    if params.kernel == (1, 1) and params.stride == (1, 1) and params.padding == (0, 0):
        return WindowRule("pointwise", channel=True)
    return WindowRule("spatial", slide=Slide(params.kernel, params.stride, params.padding,
                                             params.dilation, 0.0, params.run))


register_operation("conv2d", window=_window, params=_params, modules=(nn.Conv2d,),
                   functions=(F.conv2d, torch.conv2d), help="2-D convolution")


def _bound(params: ConvParams) -> Affine:
    """Exact in real arithmetic; each output sums ``I/groups · kh · kw`` products and the
    bias, gain the largest absolute sum of an output channel's weights."""
    weight = params.weight.detach().double()
    terms = weight[0].numel() + 1
    gain = float(weight.abs().flatten(1).sum(1).max()) * (1 + terms * 2**-52)
    return Affine(Rounding(gain, terms))


register_bound("conv2d")(_bound)  # the verifier


def _interval(params: ConvParams) -> SignedAffine:
    """``W m + b ± |W| r``; each output sums ``I/groups · kh · kw`` products and the bias."""
    magnitude = params.weight.detach().double().abs()
    bias = params.bias.detach().double().abs()[:, None, None] if params.bias is not None else 0.0

    def run_abs(x: torch.Tensor, padding: tuple[int, int] = params.padding) -> torch.Tensor:
        return F.conv2d(x, magnitude.to(x.device), None, params.stride, padding,
                        params.dilation, params.groups)

    # |W| v <= Σ_i (Σ_k |W[o, i, k]|) · max v_i: a [C_out, C_in] matrix (zero across groups)
    per_group = magnitude.sum((2, 3))  # [C_out, C_in / groups]
    outputs, inputs = per_group.shape
    channels = torch.zeros(outputs, inputs * params.groups, dtype=torch.float64)
    for group in range(params.groups):
        rows = slice(group * outputs // params.groups, (group + 1) * outputs // params.groups)
        channels[rows, group * inputs:(group + 1) * inputs] = per_group[rows]
    channels = channels * (1 + 2 * channels.shape[1] * 2**-53)  # its own rounding

    def size_bound(x: torch.Tensor) -> torch.Tensor:
        largest = x.amax((2, 3))  # [N, C_in]
        return F.linear(largest, channels.to(x.device))[:, :, None, None] * (
            1 + 2 * channels.shape[1] * 2**-53)

    return SignedAffine(run_abs, bias, magnitude[0].numel() + 1, size_bound,
                        patch_abs=lambda x: run_abs(x, (0, 0)))


register_interval("conv2d")(_interval)  # the interval screen


# ------------------------------------------------------------------ transposed convolutions
@dataclass(frozen=True)
class TransposedParams:
    """A transposed convolution's weight ``[I, O/groups, kh, kw]``, bias ``[O]`` and
    geometry (``F.conv_transpose2d``'s)."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    stride: tuple[int, int]
    padding: tuple[int, int]
    output_padding: tuple[int, int]
    groups: int
    dilation: tuple[int, int]

    @property
    def terms(self) -> int:
        """Products each output may sum (``I/groups · kh · kw``), and the bias."""
        inputs = self.weight.shape[0] // self.groups
        return inputs * self.weight.shape[2] * self.weight.shape[3] + 1

    def run(self, x: torch.Tensor, weight: torch.Tensor,
            bias: torch.Tensor | None = None) -> torch.Tensor:
        """The transposed convolution of ``x`` by ``weight`` (``|W|`` for the bounds)."""
        return F.conv_transpose2d(x, weight.to(x.device, x.dtype), bias, self.stride,
                                  self.padding, self.output_padding, self.groups,
                                  self.dilation)


def _transposed_params(call: NodeCall) -> TransposedParams | str:
    if call.module is not None:
        m = call.module
        if call.arg(1, "output_size") is not None:
            return ("ConvTranspose2d called with output_size (give output_padding to the "
                    "module instead)")
        if m.padding_mode != "zeros":
            return f"padding_mode={m.padding_mode!r}"
        return TransposedParams(m.weight, m.bias, pair(m.stride), pair(m.padding),
                                pair(m.output_padding), m.groups, pair(m.dilation))
    return TransposedParams(call.static_arg(1, "weight"), call.static_arg(2, "bias"),
                            pair(call.arg(3, "stride", 1)), pair(call.arg(4, "padding", 0)),
                            pair(call.arg(5, "output_padding", 0)), call.arg(6, "groups", 1),
                            pair(call.arg(7, "dilation", 1)))


def _transposed_window(params: TransposedParams | str) -> str:
    return params if isinstance(params, str) else "a transposed convolution (runs on whole maps)"


register_operation("conv_transpose2d", window=_transposed_window, params=_transposed_params,
                   modules=(nn.ConvTranspose2d,),
                   functions=(F.conv_transpose2d, torch.conv_transpose2d),
                   help="2-D transposed convolution")


def _transposed_per_output(params: TransposedParams) -> torch.Tensor:
    """Per output channel, the absolute sum of every weight that can reach it (``[O]``:
    each output sums some of them)."""
    magnitude = params.weight.detach().double().abs()
    inputs = magnitude.shape[0] // params.groups
    return torch.cat([magnitude[g * inputs:(g + 1) * inputs].sum((0, 2, 3))
                      for g in range(params.groups)])


def _transposed_bound(params: TransposedParams) -> Affine:
    """Exact in real arithmetic; each output sums at most ``I/groups · kh · kw`` products
    and the bias, gain the largest absolute sum of the weights reaching an output
    channel."""
    terms = params.terms
    gain = float(_transposed_per_output(params).max()) * (1 + terms * 2**-52)
    return Affine(Rounding(gain, terms))


def _transposed_interval(params: TransposedParams) -> SignedAffine:
    """``W m + b ± |W| r`` of the transposed convolution."""
    magnitude = params.weight.detach().double().abs()
    bias = params.bias.detach().double().abs()[:, None, None] if params.bias is not None else 0.0
    return SignedAffine(lambda x: params.run(x, magnitude), bias, params.terms)


register_bound("conv_transpose2d")(_transposed_bound)
register_interval("conv_transpose2d")(_transposed_interval)
