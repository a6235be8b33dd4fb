"""Elementwise arithmetic (with constants, buffers or other windows) and channel
concatenation."""

from __future__ import annotations

import math
import operator

import torch

from ..intervals import EXACT, Scale, Sum, activation
from ..table import (
    ELEMENTWISE,
    Computed,
    NodeCall,
    WindowRule,
    register_bound,
    register_interval,
    register_operation,
)
from ..zonotope import (
    EXACT_COPY,
    IDENTITY,
    ONE_ROUNDING,
    Affine,
    InverseSquareRoot,
    Power,
    Product,
    Reciprocal,
    Rounding,
    Square,
    SquareRoot,
)


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
                       written_out=_name in ("maximum", "minimum"),
                       params=_PARAMS.get(_name), help="elementwise arithmetic")


def _pow_params(call: NodeCall) -> dict:
    """A power's exponent, where it is a constant number (``None``: it changes with the
    pixel, or is a tensor of several values); and whether the base is a constant."""
    base, exponent = call.arg(0, "input"), call.arg(1, "exponent")
    try:
        value = call.static(exponent)
    except Computed:
        value = None
    if isinstance(value, torch.Tensor):
        value = float(value) if value.numel() == 1 else None
    try:
        call.static(base)
        constant_base = True
    except Computed:
        constant_base = False
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return {"exponent": float(value) if number else None, "constant_base": constant_base}


register_operation("pow", window=_elementwise, params=_pow_params,
                   functions=(operator.pow, torch.pow), methods=("pow",),
                   help="a power (elementwise)")


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

# the powers a normalisation computes (a variance's square, its square root, a division
# by it), by their exponents
POWERS = {2.0: Square(), 0.5: SquareRoot(), -0.5: InverseSquareRoot(), -1.0: Reciprocal()}


def _pow_rule(params: dict):
    """The relaxation of ``x ** c`` (``c`` in :data:`POWERS`, else :class:`Power`; ``x **
    1`` is ``x``), or why a power is not bounded."""
    exponent = params["exponent"]
    if params["constant_base"]:
        return "a power whose exponent changes with the pixel (c ** x)"
    if exponent == 1.0:
        return IDENTITY
    if exponent is None or exponent == 0.0 or not math.isfinite(exponent):
        shown = "a tensor" if exponent is None else f"{exponent + 0.0:g}"  # (-0 as 0)
        return f"x ** {shown} (the verifier bounds a power by one finite number other than 0)"
    return POWERS.get(exponent) or Power(exponent)


register_bound("pow")(_pow_rule)
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


def _pow_interval(params: dict):
    rule = _pow_rule(params)
    return EXACT if rule is IDENTITY else activation(rule)


register_interval("pow")(_pow_interval)
register_interval("cat")(lambda params: EXACT)
