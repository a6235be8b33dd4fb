"""Shape queries (``size``, ``shape``, ``dim``) and reshapes (``flatten``, ``view``)."""

from __future__ import annotations

import torch
from torch import nn

from ..intervals import RESHAPE as RESHAPE_INTERVAL
from ..intervals import SHAPE
from ..table import NodeCall, WindowRule, register_bound, register_interval, register_operation
from ..zonotope import RESHAPE

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
