"""BatchNorm on running statistics: a per-channel affine map."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..intervals import SignedAffine
from ..table import NodeCall, WindowRule, register_bound, register_interval, register_operation
from ..zonotope import Affine, Rounding


@dataclass(frozen=True)
class BatchNormParams:
    """A BatchNorm's running statistics and affine parameters (``[C]`` each or ``None``)."""

    mean: torch.Tensor
    var: torch.Tensor
    weight: torch.Tensor | None
    bias: torch.Tensor | None
    eps: float

    def scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``y = scale * x + shift`` per channel.

        Returns:
            ``(scale [C], shift [C])``.
        """
        scale = torch.rsqrt(self.var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        shift = -self.mean * scale
        if self.bias is not None:
            shift = shift + self.bias
        return scale, shift


def _params(call: NodeCall) -> BatchNormParams | str:
    if call.module is not None:
        m = call.module
        if m.training or m.running_mean is None:
            return "BatchNorm2d on batch statistics"
        return BatchNormParams(m.running_mean, m.running_var, m.weight, m.bias, m.eps)
    if call.arg(5, "training", False):
        return "batch_norm in training mode"
    return BatchNormParams(call.static_arg(1, "running_mean"), call.static_arg(2, "running_var"),
                           call.static_arg(3, "weight"), call.static_arg(4, "bias"),
                           float(call.arg(7, "eps", 1e-5)))


def _window(params: BatchNormParams | str) -> WindowRule | str:
    if isinstance(params, str):
        return params
    return WindowRule("pointwise", channel=True)


register_operation("batch_norm", window=_window, params=_params, modules=(nn.BatchNorm2d,),
                   functions=(F.batch_norm,), help="BatchNorm on running statistics")


def _bound(params: BatchNormParams) -> Affine:
    """Exact in real arithmetic; ``(x - mean) / sqrt(var + eps) · w + b`` rounds at most
    6 times per output, relative to ``(|x| + |mean|) |scale| + |b|``."""
    scale, _ = params.scale_shift()
    scale = scale.detach().double().abs()
    bias = params.bias.detach().double().abs() if params.bias is not None else 0.0
    offset = float((params.mean.detach().double().abs() * scale + bias).max())
    return Affine(Rounding(float(scale.max()) * (1 + 2**-48), 6, offset))


register_bound("batch_norm")(_bound)  # the verifier


def _interval(params: BatchNormParams) -> SignedAffine:
    """``scale · m + shift ± |scale| r`` per channel; ``(x - mean) / sqrt(var + eps) · w +
    b`` rounds at most 6 times per output (and ``scale`` a few), relative to
    ``|scale| (|x| + |mean|) + |b|``."""
    scale, _ = params.scale_shift()
    scale = scale.detach().double().abs()[:, None, None]
    offset = params.mean.detach().double().abs()[:, None, None] * scale
    if params.bias is not None:
        offset = offset + params.bias.detach().double().abs()[:, None, None]
    return SignedAffine(lambda x: x * scale.to(x.device), offset, 12)


register_interval("batch_norm")(_interval)  # the interval screen
