"""Elementwise arithmetic (with constants, buffers or other windows) and channel
concatenation."""

from __future__ import annotations

import operator

import torch

from ..intervals import EXACT, Scale, Sum
from ..table import (
    ELEMENTWISE,
    NodeCall,
    WindowRule,
    register_bound,
    register_interval,
    register_operation,
)
from ..zonotope import EXACT_COPY, ONE_ROUNDING, Affine, Product, Rounding


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


def _alpha_params(call: NodeCall) -> dict:
    """A sum's ``alpha`` (keyword-only in ``torch.add``/``torch.sub``: ``a + alpha · b``)."""
    alpha = call.node.kwargs.get("alpha", 1)
    return {"alpha": alpha if isinstance(alpha, (int, float)) else None}


_PARAMS = {"div": _div_params, "add": _alpha_params, "sub": _alpha_params}
for _name, (_functions, _methods) in ELEMENTWISE_OPERATIONS.items():
    register_operation(_name, window=_elementwise, functions=_functions, methods=_methods,
                       params=_PARAMS.get(_name), help="elementwise arithmetic")


def _cat_params(call: NodeCall) -> int:
    return call.arg(1, "dim", 0)


def _cat_window(dim: int) -> WindowRule | str:
    return WindowRule("cat") if dim in (1, -3) else "cat along a spatial axis"


register_operation("cat", window=_cat_window, params=_cat_params,
                   functions=(torch.cat, torch.concat, torch.concatenate),
                   help="concatenation (along channels on windows)")

# the verifier: sums are exact; products and quotients while one factor varies


def _sum_bound(params: dict | None) -> Affine | str:
    """A sum (difference): one rounding; with ``alpha``, its product too, gain ``|alpha|``."""
    alpha = 1 if params is None else params["alpha"]
    if alpha is None:
        return "a sum whose alpha is not a number"
    if alpha == 1:
        return Affine(ONE_ROUNDING)
    return Affine(Rounding(max(1.0, abs(float(alpha))) * (1 + 2**-50), 2))


register_bound("add")(_sum_bound)
register_bound("sub")(_sum_bound)
register_bound("mul")(lambda params: Product())


def _div_bound(params: dict) -> Product | str:
    mode = params["rounding_mode"]
    if mode is not None:  # floor / trunc: not affine, however the factors vary
        return f"a division with rounding_mode={mode!r} (not affine)"
    return Product(divides=True)


register_bound("div")(_div_bound)
register_bound("cat")(lambda params: Affine(EXACT_COPY))


# the interval screen: sums and differences round once; products and quotients while one
# factor (the dividend) varies


def _sum_interval(subtracts: bool):
    def rule(params: dict | None) -> Sum | str:
        alpha = 1 if params is None else params["alpha"]
        if alpha is None:
            return "a sum whose alpha is not a number"
        return Sum(subtracts, float(alpha))
    return rule


def _scale_interval(divides: bool):
    def rule(params: dict | None) -> Scale | str:
        if divides and params["rounding_mode"] is not None:
            return f"a division with rounding_mode={params['rounding_mode']!r}"
        return Scale(divides)
    return rule


register_interval("add")(_sum_interval(False))
register_interval("sub")(_sum_interval(True))
register_interval("mul")(_scale_interval(False))
register_interval("div")(_scale_interval(True))
register_interval("cat")(lambda params: EXACT)
