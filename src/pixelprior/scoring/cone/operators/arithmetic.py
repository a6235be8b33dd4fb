"""Elementwise arithmetic (with constants, buffers or other windows) and channel
concatenation."""

from __future__ import annotations

import operator

import torch

from ..table import ELEMENTWISE, NodeCall, WindowRule, register_bound, register_operation
from ..zonotope import EXACT_COPY, ONE_ROUNDING, Affine, Product


def _elementwise(params: object) -> WindowRule:
    return ELEMENTWISE


# name -> (functions, methods)
ELEMENTWISE_OPERATIONS: dict[str, tuple[tuple, tuple]] = {
    "add": ((operator.add, torch.add), ("add",)),
    "sub": ((operator.sub, torch.sub), ("sub",)),
    "mul": ((operator.mul, torch.mul), ("mul",)),
    "div": ((operator.truediv, torch.div), ("div",)),
    "maximum": ((torch.maximum,), ()),
    "minimum": ((torch.minimum,), ()),
}



def _div_params(call: NodeCall) -> dict:
    """A division's ``rounding_mode`` (keyword-only in ``torch.div`` and ``Tensor.div``)."""
    return {"rounding_mode": call.node.kwargs.get("rounding_mode")}


for _name, (_functions, _methods) in ELEMENTWISE_OPERATIONS.items():
    register_operation(_name, window=_elementwise, functions=_functions, methods=_methods,
                       params=_div_params if _name == "div" else None,
                       help="elementwise arithmetic")


def _cat_params(call: NodeCall) -> int:
    return call.arg(1, "dim", 0)


def _cat_window(dim: int) -> WindowRule | str:
    return WindowRule("cat") if dim in (1, -3) else "cat along a spatial axis"


register_operation("cat", window=_cat_window, params=_cat_params,
                   functions=(torch.cat, torch.concat, torch.concatenate),
                   help="concatenation (along channels on windows)")

# the verifier: sums are exact; products and quotients while one factor varies
register_bound("add")(lambda params: Affine(ONE_ROUNDING))
register_bound("sub")(lambda params: Affine(ONE_ROUNDING))
register_bound("mul")(lambda params: Product())


def _div_bound(params: dict) -> Product | str:
    mode = params["rounding_mode"]
    if mode is not None:  # floor / trunc: not affine, however the factors vary
        return f"a division with rounding_mode={mode!r} (not affine)"
    return Product(divides=True)


register_bound("div")(_div_bound)
register_bound("cat")(lambda params: Affine(EXACT_COPY))
