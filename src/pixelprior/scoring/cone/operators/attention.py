"""Attention's operations: softmax and log-softmax along an axis, products of matrices
(``q @ k.transpose(-2, -1)``, ``a @ v``, ``torch.bmm``),
``F.scaled_dot_product_attention`` and ``nn.MultiheadAttention``. The incremental
engine runs each on whole values; the verifier's copies rewrite each into operations
with bound rules
(:mod:`..decompose`): exponentials, a sum, a reciprocal and products; a matrix product
as a linear layer where one factor is a constant, else as products summed."""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import nn

from ..table import NodeCall, register_bound, register_interval, register_operation


def _softmax_params(call: NodeCall) -> dict | str:
    """The axis a softmax normalises along (the module's ``dim``, or the call's)."""
    if call.module is not None:
        dim = getattr(call.module, "dim", None)
    else:
        dim = call.arg(1, "dim")
    if any(isinstance(value, torch.dtype)
           for value in [*call.node.args[2:], *call.node.kwargs.values()]):
        return "a softmax computed in another dtype (give it without dtype=)"
    if not isinstance(dim, int) or isinstance(dim, bool):
        return "a softmax without its axis (give dim=, e.g. softmax(x, dim=-1))"
    return {"dim": dim}


def _along_axis(params: object) -> str:
    return params if isinstance(params, str) else "it normalises along an axis (runs whole)"


def _whole(params: object) -> str:
    return "a product of matrices (runs on whole values)"


def _attention_params(call: NodeCall) -> dict | str:
    """``F.scaled_dot_product_attention``'s settings, where its mask is none, it drops
    nothing and is not causal (the verifier's copy writes it out)."""
    given = dict(zip(("query", "key", "value", "attn_mask", "dropout_p", "is_causal",
                      "scale"), call.node.args, strict=False))
    given.update(call.node.kwargs)
    if given.get("attn_mask") is not None or given.get("is_causal"):
        return "attention with a mask or causal (the verifier writes out plain attention)"
    if given.get("dropout_p", 0.0) not in (0, 0.0):
        return "attention with dropout_p > 0 (give dropout_p=0.0 in eval mode)"
    if given.get("enable_gqa"):
        return "attention with enable_gqa=True"
    scale = given.get("scale")
    if scale is not None and not isinstance(scale, (int, float)):
        return "attention whose scale is not a number"
    return {"scale": scale}


register_operation("softmax", written_out=True, window=_along_axis, params=_softmax_params,
                   modules=(nn.Softmax,), functions=(F.softmax, torch.softmax),
                   methods=("softmax",), help="a softmax along an axis")
register_operation("log_softmax", written_out=True, window=_along_axis, params=_softmax_params,
                   modules=(nn.LogSoftmax,), functions=(F.log_softmax, torch.log_softmax),
                   methods=("log_softmax",), help="a log-softmax along an axis")
register_operation("matmul", written_out=True, window=_whole,
                   functions=(operator.matmul, torch.matmul, torch.bmm),
                   methods=("matmul", "bmm"), help="a product of matrices (a @ b, bmm)")
register_operation("attention", written_out=True, window=_along_axis, params=_attention_params,
                   functions=(F.scaled_dot_product_attention,),
                   help="scaled dot-product attention, without a mask or dropout")


def _multihead_params(call: NodeCall) -> dict | str:
    """``nn.MultiheadAttention``'s call, where the verifier's copy can write it out
    (batch first, or sequence first where the values around it can be laid out batch
    first: :mod:`..layouts`): without masks, extra key/value biases or zero attention, its attention
    weights unused (the module returns ``(output, weights)``)."""
    module = call.module
    given = dict(zip(("query", "key", "value", "key_padding_mask", "need_weights",
                      "attn_mask", "average_attn_weights", "is_causal"), call.node.args,
                     strict=False))
    given.update(call.node.kwargs)
    if any(given.get(k) is not None for k in ("key_padding_mask", "attn_mask")) or (
            given.get("is_causal")):
        return "multi-head attention with a mask or causal"
    if module.bias_k is not None or module.add_zero_attn:
        return "multi-head attention with add_bias_kv or add_zero_attn"
    for user in call.node.users:
        index = user.args[1] if user.target is operator.getitem and len(user.args) > 1 else None
        if index != 0 and not (index == 1 and not user.users):
            return "multi-head attention whose attention weights are used"
    return {"heads": module.num_heads, "embed": module.embed_dim}


register_operation("multihead_attention", window=_along_axis, params=_multihead_params,
                   written_out=True,
                   modules=(nn.MultiheadAttention,),
                   help="nn.MultiheadAttention, without masks")


def _logsumexp_params(call: NodeCall) -> dict | str:
    """``torch.logsumexp(x, dim, keepdim)``: the axes, where they are named and none is
    the batch axis (a negative one is checked against the rank by the plan)."""
    dims = call.arg(1, "dim")
    dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    if not dims or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims) or (
            0 in dims):
        return ("a logsumexp over every axis or the batch axis (name the axes after it, "
                "e.g. torch.logsumexp(x, dim=1))")
    return {"dims": dims, "keepdim": bool(call.arg(2, "keepdim", False))}


register_operation("logsumexp", written_out=True, window=_along_axis, params=_logsumexp_params,
                   functions=(torch.logsumexp,), methods=("logsumexp",),
                   help="log Σ exp over axes after the batch axis")
# the verifier's copies write it out (:mod:`..decompose`); one left as it is names the
# batch axis by a negative dim
_BATCH_LOGSUMEXP = "a logsumexp over the batch axis (name the axes after it, from the front)"
register_bound("logsumexp")(lambda params: params if isinstance(params, str)
                            else _BATCH_LOGSUMEXP)
register_interval("logsumexp")(lambda params: params if isinstance(params, str)
                               else _BATCH_LOGSUMEXP)
