"""Pointwise activations (modules, functions and tensor methods): each runs on a window
as it is."""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import nn

from ..table import POINTWISE, NodeCall, WindowRule, register_operation


def _pointwise(params: object) -> WindowRule:
    return POINTWISE


def _channel(params: object) -> WindowRule:
    return WindowRule("pointwise", channel=True)


# name -> (modules, functions, methods); each runs elementwise on its input
ACTIVATIONS: dict[str, tuple[tuple, tuple, tuple]] = {
    "relu": ((nn.ReLU,), (F.relu, torch.relu), ("relu",)),
    "relu6": ((nn.ReLU6,), (F.relu6,), ()),
    "leaky_relu": ((nn.LeakyReLU,), (F.leaky_relu,), ()),
    "hardtanh": ((nn.Hardtanh,), (F.hardtanh,), ()),
    "clamp": ((), (torch.clamp, torch.clip), ("clamp", "clip", "clamp_min", "clamp_max")),
    "sigmoid": ((nn.Sigmoid,), (F.sigmoid, torch.sigmoid), ("sigmoid",)),
    "tanh": ((nn.Tanh,), (F.tanh, torch.tanh), ("tanh",)),
    "silu": ((nn.SiLU,), (F.silu,), ()),
    "gelu": ((nn.GELU,), (F.gelu,), ()),
    "hardswish": ((nn.Hardswish,), (F.hardswish,), ()),
    "hardsigmoid": ((nn.Hardsigmoid,), (F.hardsigmoid,), ()),
    "elu": ((nn.ELU,), (F.elu,), ()),
    "mish": ((nn.Mish,), (F.mish,), ()),
    "softplus": ((nn.Softplus,), (F.softplus,), ()),
    "neg": ((), (operator.neg, torch.neg), ("neg",)),
    "identity": ((nn.Identity,), (), ("contiguous", "clone", "detach")),
    "float": ((), (), ("float",)),
}

for _name, (_modules, _functions, _methods) in ACTIVATIONS.items():
    register_operation(_name, window=_pointwise, modules=_modules, functions=_functions,
                       methods=_methods, help="elementwise activation")

register_operation("prelu", window=_pointwise, modules=(nn.PReLU,),
                   help="PReLU module (its weight inside)")
register_operation("prelu_function", window=_channel, functions=(F.prelu,),
                   help="F.prelu (a per-channel weight)")


def _dropout_params(call: NodeCall) -> bool | str:
    """Whether the dropout is off (``True``), or why it is not supported."""
    if call.module is not None:
        training = call.module.training
    else:
        training = call.arg(2, "training", True)
    return "dropout in training mode" if training else True


def _dropout_window(params: bool | str) -> WindowRule | str:
    return params if isinstance(params, str) else POINTWISE


register_operation("dropout", window=_dropout_window, params=_dropout_params,
                   modules=(nn.Dropout, nn.Dropout2d), functions=(F.dropout, F.dropout2d),
                   help="dropout in eval mode (the identity)")
