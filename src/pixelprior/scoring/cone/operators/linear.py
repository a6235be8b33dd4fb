"""Fully connected layers (the head: they run on whole vectors)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..intervals import SignedAffine
from ..table import NodeCall, register_bound, register_interval, register_operation
from ..zonotope import Affine, Rounding


@dataclass(frozen=True)
class LinearParams:
    """A linear layer's weight ``[O, I]`` and bias ``[O]``."""

    weight: torch.Tensor
    bias: torch.Tensor | None


def _params(call: NodeCall) -> LinearParams:
    if call.module is not None:
        return LinearParams(call.module.weight, call.module.bias)
    return LinearParams(call.static_arg(1, "weight"), call.static_arg(2, "bias"))


def _whole(params: object) -> str:
    return "a fully connected layer (runs on whole vectors)"


register_operation("linear", window=_whole, params=_params, modules=(nn.Linear,),
                   functions=(F.linear,), help="fully connected layer")


def _bound(params: LinearParams) -> Affine:
    """Exact in real arithmetic; rounds ``in + 1`` terms per output, gain the largest
    absolute row sum of the weight."""
    weight = params.weight.detach().double()
    terms = weight.shape[1] + 1
    gain = float(weight.abs().sum(1).max()) * (1 + terms * 2**-52)
    return Affine(Rounding(gain, terms))


register_bound("linear")(_bound)  # the verifier


def _interval(params: LinearParams) -> SignedAffine:
    """``W m + b ± |W| r``; each output sums ``in`` products and the bias."""
    magnitude = params.weight.detach().double().abs()
    bias = params.bias.detach().double().abs() if params.bias is not None else 0.0
    return SignedAffine(lambda x: F.linear(x, magnitude.to(x.device)), bias,
                        magnitude.shape[1] + 1)


register_interval("linear")(_interval)  # the interval screen
