"""Pointwise activations (modules, functions and tensor methods): each runs on a window
as it is; the verifier relaxes each on its range (:mod:`..zonotope`)."""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..intervals import EXACT, Negate, activation
from ..table import (
    OPERATIONS,
    POINTWISE,
    NodeCall,
    WindowRule,
    register_bound,
    register_interval,
    register_operation,
)
from ..zonotope import (
    EXACT_COPY,
    IDENTITY,
    Affine,
    Exponential,
    InverseSquareRoot,
    Lipschitz,
    Logarithm,
    PiecewiseLinear,
    Reciprocal,
    Square,
    SquareRoot,
    SShaped,
    _chord,
)


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
    "selu": ((nn.SELU,), (F.selu, torch.selu), ()),
    "celu": ((nn.CELU,), (F.celu, torch.celu), ()),
    "softsign": ((nn.Softsign,), (F.softsign,), ()),
    "logsigmoid": ((nn.LogSigmoid,), (F.logsigmoid,), ()),
    "erf": ((), (torch.erf, torch.special.erf), ("erf",)),
    "tanhshrink": ((nn.Tanhshrink,), (F.tanhshrink,), ()),
    "softshrink": ((nn.Softshrink,), (F.softshrink,), ()),
    "square": ((), (torch.square,), ("square",)),
    "sqrt": ((), (torch.sqrt,), ("sqrt",)),
    "rsqrt": ((), (torch.rsqrt,), ("rsqrt",)),
    "reciprocal": ((), (torch.reciprocal,), ("reciprocal",)),
    "exp": ((), (torch.exp,), ("exp",)),
    "log": ((), (torch.log,), ("log",)),
    "neg": ((), (operator.neg, torch.neg), ("neg",)),
    "abs": ((), (abs, operator.abs, torch.abs), ("abs",)),
    "identity": ((nn.Identity,), (), ("contiguous", "clone", "detach")),
    "float": ((), (), ("float",)),
}


def _setting(call: NodeCall, attribute: str, position: int, default: float) -> float:
    """An activation's setting: the module's attribute or the call's argument."""
    if call.module is not None:
        return getattr(call.module, attribute)
    return call.static_arg(position, attribute, default)


# name -> its settings from a node (the names of the bound rules' arguments)
SETTINGS = {
    "leaky_relu": lambda c: {"slope": _setting(c, "negative_slope", 1, 0.01)},
    "hardtanh": lambda c: {"low": _setting(c, "min_val", 1, -1.0),
                           "high": _setting(c, "max_val", 2, 1.0)},
    # nn.ReLU6 is a Hardtanh: its forward reads the module's limits (0 and 6 unless set)
    "relu6": lambda c: {"low": float(getattr(c.module, "min_val", 0.0)),
                        "high": float(getattr(c.module, "max_val", 6.0))},
    "clamp": lambda c: _clamp_settings(c),
    "elu": lambda c: {"alpha": _setting(c, "alpha", 1, 1.0)},
    "celu": lambda c: {"alpha": _setting(c, "alpha", 1, 1.0)},
    "softshrink": lambda c: {"lambd": _setting(c, "lambd", 1, 0.5)},
    "softplus": lambda c: {"beta": _setting(c, "beta", 1, 1.0),
                           "threshold": _setting(c, "threshold", 2, 20.0)},
    "gelu": lambda c: {"approximate": _setting(c, "approximate", 1, "none")},
}


def _clamp_settings(call: NodeCall) -> dict | str:
    method = call.node.target if call.node.op == "call_method" else None
    low = call.static_arg(1, "min", None)
    high = call.static_arg(2, "max", None)
    if method == "clamp_min":
        low, high = call.static_arg(1, "min", None), None
    elif method == "clamp_max":
        low, high = None, call.static_arg(1, "max", None)
    return {"low": low, "high": high}


for _name, (_modules, _functions, _methods) in ACTIVATIONS.items():
    register_operation(_name, window=_pointwise, modules=_modules, functions=_functions,
                       methods=_methods, params=SETTINGS.get(_name),
                       help="elementwise activation")

def _prelu_params(call: NodeCall) -> torch.Tensor:
    """PReLU's slopes on the negative side: one, or one per channel (axis 1)."""
    if call.module is not None:
        return call.module.weight
    return call.static_arg(1, "weight")


register_operation("prelu", window=_pointwise, modules=(nn.PReLU,), params=_prelu_params,
                   help="PReLU module (its weight inside)")
register_operation("prelu_function", window=_channel, functions=(F.prelu,),
                   params=_prelu_params, help="F.prelu (a per-channel weight)")


def cast_dtype(node: fx.Node) -> torch.dtype | None:
    """The dtype a ``.to(...)`` / ``.type(...)`` call names (``None``: none named, e.g. a
    device or another tensor's)."""
    for value in (*node.args[1:], node.kwargs.get("dtype")):
        if isinstance(value, torch.dtype):
            return value
    return None


def narrowing_dtype(node: fx.Node) -> torch.dtype | None:
    """The float of fewer bits than float32 a cast node makes its value (``.half()``,
    ``.bfloat16()``, ``.to(torch.bfloat16)``, ``.type(torch.float16)``), or ``None``."""
    if node.op != "call_method":
        return None
    dtype = {"half": torch.float16, "bfloat16": torch.bfloat16}.get(node.target)
    if node.target in ("to", "type"):
        dtype = cast_dtype(node)
    if dtype is None or not dtype.is_floating_point or torch.finfo(dtype).bits >= 32:
        return None
    return dtype


def _cast_params(call: NodeCall) -> torch.dtype | str:
    """The float dtype a ``.to(...)`` / ``.type(...)`` cast makes its value, or why it is
    not run (another kind of dtype computes otherwise, none named may be another
    tensor's)."""
    dtype = cast_dtype(call.node)
    if dtype is None or not dtype.is_floating_point:
        return (f"Tensor.{call.node.target}() to {dtype or 'no dtype named'} (only casts "
                "to float32 are bounded)")
    return dtype


def _cast_refused(dtype: torch.dtype) -> str | None:
    """Why a cast is not bounded, or ``None`` for a cast to float32 (the identity in the
    bounds' dtype: a float32 model's values as they are). One to fewer bits rounds, one
    to more computes the rest otherwise than the float32 error bounds assume."""
    if dtype == torch.float32:
        return None
    if torch.finfo(dtype).bits < 32:
        return _narrowing_refused(dtype)
    return f"Tensor.to() to {dtype} (only casts to float32 are bounded)"


def _narrowing_params(call: NodeCall) -> torch.dtype:
    """The dtype of ``.half()`` / ``.bfloat16()``."""
    return narrowing_dtype(call.node)


def _narrowing_refused(dtype: torch.dtype) -> str:
    """Why the verifier does not bound a cast to fewer bits than float32."""
    return (f"casts to {dtype}: its rounding to fewer bits than float32 is not bounded; "
            "remove the cast to verify")


register_operation("cast", window=_pointwise, methods=("to", "type"), params=_cast_params,
                   help="a cast to float32 (the same values in a float32 model)")
register_operation("narrowing_cast", window=_pointwise, methods=("half", "bfloat16"),
                   params=_narrowing_params,
                   help="a cast to float16 or bfloat16: run by the cone engine, whose "
                        "windows compute as the model does; refused by the verifier")


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


# ------------------------------------------------------------------ the verifier's rules
def _clamped(low: float | None, high: float | None) -> PiecewiseLinear:
    kinks = [v for v in (low, high) if v is not None]
    return PiecewiseLinear(lambda t: t.clamp(low, high), kinks)


def _softplus(beta: float, threshold: float):
    def f(t: torch.Tensor) -> torch.Tensor:
        return F.softplus(t, beta, threshold)

    return f


def _sigmoid_derivative(t: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(t)
    return s * (1 - s)


# sup |f'| of each smooth activation (checked numerically in the tests)
LIPSCHITZ = {"silu": 1.1, "gelu": 1.13, "mish": 1.09, "hardswish": 1.5,
             "selu": 1.7581, "logsigmoid": 1.0, "tanhshrink": 1.0}

register_bound("relu")(lambda p: PiecewiseLinear(torch.relu, (0.0,)))
register_bound("leaky_relu")(lambda p: PiecewiseLinear(
    lambda t: F.leaky_relu(t, p["slope"]), (0.0,), max(1.0, abs(p["slope"]))))
register_bound("hardtanh")(lambda p: _clamped(p["low"], p["high"]))
register_bound("relu6")(lambda p: _clamped(p["low"], p["high"]))
register_bound("clamp")(lambda p: _clamped(p["low"], p["high"]))
register_bound("hardsigmoid")(lambda p: PiecewiseLinear(F.hardsigmoid, (-3.0, 3.0)))
register_bound("sigmoid")(lambda p: SShaped(torch.sigmoid, _sigmoid_derivative))
register_bound("tanh")(lambda p: SShaped(torch.tanh, lambda t: 1 - torch.tanh(t) ** 2))
register_bound("silu")(lambda p: Lipschitz(F.silu, LIPSCHITZ["silu"]))
register_bound("gelu")(lambda p: Lipschitz(
    lambda t: F.gelu(t, approximate=p["approximate"]), LIPSCHITZ["gelu"]))
register_bound("mish")(lambda p: Lipschitz(F.mish, LIPSCHITZ["mish"]))
register_bound("hardswish")(lambda p: Lipschitz(F.hardswish, LIPSCHITZ["hardswish"]))
register_bound("elu")(lambda p: Lipschitz(lambda t: F.elu(t, p["alpha"]),
                                          max(1.0, abs(p["alpha"]))))
register_bound("selu")(lambda p: Lipschitz(F.selu, LIPSCHITZ["selu"]))
register_bound("logsigmoid")(lambda p: Lipschitz(F.logsigmoid, LIPSCHITZ["logsigmoid"]))
register_bound("tanhshrink")(lambda p: Lipschitz(F.tanhshrink, LIPSCHITZ["tanhshrink"]))
register_bound("softsign")(lambda p: SShaped(F.softsign, lambda t: (1 + t.abs()) ** -2))
# erf' = 2/√π e^{-x²}: largest at 0, 1.1284 (above the default bound of 1)
ERF_SLOPE = 2 / math.sqrt(math.pi) * (1 + 2**-40)
register_bound("erf")(lambda p: SShaped(
    torch.erf, lambda t: 2 / math.sqrt(math.pi) * torch.exp(-t * t), ERF_SLOPE))


def _celu_rule(p: dict) -> Lipschitz | str:
    """CELU, ``max(0, x) + min(0, α (e^{x/α} - 1))``: slope at most 1 for ``α > 0``
    (``e^{x/α}`` below 0); for ``α < 0`` it is unbounded below 0 (refused)."""
    alpha = float(p["alpha"])
    if alpha <= 0:
        return f"CELU with alpha={alpha} (its slope is unbounded; give alpha > 0)"
    return Lipschitz(lambda t: F.celu(t, alpha), 1.0)


def _softshrink_rule(p: dict) -> PiecewiseLinear:
    """Softshrink, ``x ∓ λ`` beyond ``±λ`` and 0 between: kinks at ``±λ``."""
    lambd = float(p["lambd"])
    return PiecewiseLinear(lambda t: F.softshrink(t, lambd), (-lambd, lambd))


register_bound("celu")(_celu_rule)
register_bound("softshrink")(_softshrink_rule)


def softplus_jump(beta: float, threshold: float) -> float:
    """How far ``F.softplus`` jumps where it switches to ``x`` (``β x > threshold``):
    ``log1p(exp(-threshold)) / |β|``, rounded up (stable at any threshold)."""
    jump = max(-threshold, 0.0) + math.log1p(math.exp(-abs(threshold)))
    return jump / abs(beta) * (1 + 1e-6)


class Softplus(Lipschitz):
    """PyTorch's softplus with ``β > 0``: ``s(x) = log(1 + e^{β x}) / β`` up to the switch
    ``p = threshold / β`` (convex there), ``x`` past it (linear; a jump down of
    :func:`softplus_jump` at ``p``). With the chord slope ``λ``, the rest ``g = f - λ x``
    is largest at the ends of ``[l, u]`` or on either side of ``p`` (convex, then linear),
    and smallest there or where ``s' = σ(β x) = λ`` on the convex piece: at that point
    ``x₀`` as computed, bounded below by the tangent ``g(x) ≥ g(x₀) - |σ(β x₀) - λ| · d``
    (``d``: the farthest end of the piece from ``x₀``), so a rounded ``x₀`` costs a
    second-order sliver, never soundness. Tight at any threshold, where the grid of
    :class:`Lipschitz` (kept for ``β < 0``) added slack and the whole jump everywhere.

    Args:
        beta: ``β > 0``.
        threshold: the switch's ``β x``.
    """

    def __init__(self, beta: float, threshold: float) -> None:
        super().__init__(_softplus(beta, threshold), 1.0,
                         jump=softplus_jump(beta, threshold))
        self.beta, self.switch = beta, threshold / beta

    def smooth(self, t: torch.Tensor) -> torch.Tensor:
        """``s``, the convex piece continued past the switch (stable at any ``t``)."""
        return torch.logaddexp(self.beta * t, torch.zeros_like(t)) / self.beta

    def jump_within(self, lower, upper):
        return torch.where((lower <= self.switch) & (self.switch <= upper),
                           torch.full_like(lower, self.jump), torch.zeros_like(lower))

    def coefficients(self, lower, upper):
        slope, _ = _chord(self.f, lower, upper)
        rest_low, rest_high = self.f(lower) - slope * lower, self.f(upper) - slope * upper
        low, high = torch.minimum(rest_low, rest_high), torch.maximum(rest_low, rest_high)
        switch = torch.full_like(lower, self.switch)
        inside = (lower <= switch) & (switch <= upper)  # both sides' limits at the switch
        for side in (self.smooth(switch) - slope * switch, (1 - slope) * switch):
            low = torch.where(inside, torch.minimum(low, side), low)
            high = torch.where(inside, torch.maximum(high, side), high)
        end = torch.minimum(upper, switch)  # the convex piece is [lower, end]
        root = torch.logit(slope.clamp(1e-300, 1.0)) / self.beta
        interior = (slope > 0) & (slope < 1) & (lower < root) & (root < end)
        at = torch.where(interior, root, lower)
        gap = (torch.sigmoid(self.beta * at) - slope).abs() * torch.maximum(at - lower,
                                                                             end - at)
        bottom = self.smooth(at) - slope * at - gap
        low = torch.where(interior, torch.minimum(low, bottom), low)
        return slope, (low + high) / 2, (high - low) / 2


def _softplus_rule(p: dict) -> Lipschitz:
    beta, threshold = float(p["beta"]), float(p["threshold"])
    if beta > 0:
        return Softplus(beta, threshold)
    return Lipschitz(_softplus(beta, threshold), 1.0, jump=softplus_jump(beta, threshold))


register_bound("softplus")(_softplus_rule)


def _prelu_rule(weight: torch.Tensor) -> PiecewiseLinear:
    """PReLU, ``x`` for ``x >= 0`` and ``a x`` below, ``a`` per channel (axis 1) or one:
    piecewise linear with its kink at 0, steepest ``max(1, |a|)``; not monotone where
    ``a < 0`` (the rules bound it by its values at the ends and the kink)."""
    slopes = weight.detach().double().reshape(-1)

    def f(t: torch.Tensor) -> torch.Tensor:
        a = slopes.to(device=t.device, dtype=t.dtype)  # (a float32 engine stays float32)
        if a.numel() > 1 and t.dim() >= 2:
            a = a.view(-1, *([1] * (t.dim() - 2)))
        return torch.where(t >= 0, t, a * t)

    return PiecewiseLinear(f, (0.0,), max(1.0, float(slopes.abs().max())))


register_bound("prelu")(_prelu_rule)
register_bound("prelu_function")(_prelu_rule)
# what a normalisation computed from the image is made of (a variance, its square root, a
# division by it): convex or concave on each piece of their domains
CURVED = {"square": Square(), "sqrt": SquareRoot(), "rsqrt": InverseSquareRoot(),
          "reciprocal": Reciprocal(), "exp": Exponential(), "log": Logarithm()}
for _name, _rule in CURVED.items():
    register_bound(_name)(lambda p, _rule=_rule: _rule)
register_bound("neg")(lambda p: Affine(EXACT_COPY))
register_bound("abs")(lambda p: PiecewiseLinear(torch.abs, (0.0,)))
register_bound("identity")(lambda p: IDENTITY)
register_bound("float")(lambda p: IDENTITY)
register_bound("cast")(lambda dtype: _cast_refused(dtype) or IDENTITY)
register_bound("narrowing_cast")(_narrowing_refused)
register_bound("dropout")(lambda p: IDENTITY)


# the interval screen: each activation from its relaxation (exact ranges for the piecewise
# linear and S-shaped ones); negation and copies exact. These are nondecreasing and
# round nothing (maxima and minima of a value and constants): [f(l), f(u)] as computed
EXACT_ACTIVATIONS = ("relu", "relu6", "hardtanh", "clamp")
for _name in ("relu", "leaky_relu", "hardtanh", "relu6", "clamp", "hardsigmoid", "sigmoid",
              "tanh", "silu", "gelu", "mish", "hardswish", "elu", "softplus", "prelu",
              "prelu_function", "abs", "selu", "celu", "softsign", "logsigmoid", "erf",
              "tanhshrink", "softshrink", *CURVED):
    register_interval(_name)(
        lambda params, _bound=OPERATIONS.get(_name).bound, _exact=_name in EXACT_ACTIVATIONS:
        activation(_bound(params), _exact))
register_interval("neg")(lambda p: Negate())
register_interval("identity")(lambda p: EXACT)
register_interval("float")(lambda p: EXACT)
register_interval("cast")(lambda dtype: _cast_refused(dtype) or EXACT)
register_interval("narrowing_cast")(_narrowing_refused)
register_interval("dropout")(lambda p: EXACT)
