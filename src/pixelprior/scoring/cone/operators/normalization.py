"""BatchNorm on running statistics: a per-channel affine map; LayerNorm, GroupNorm,
InstanceNorm, vector norms and ``F.normalize`` (the verifier's copies write them out)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..intervals import SignedAffine
from ..table import (
    COMPUTED_SETTINGS,
    NodeCall,
    WindowRule,
    register_bound,
    register_interval,
    register_operation,
)
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
            return f"{type(m).__name__} on batch statistics"
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


register_operation("batch_norm", window=_window, params=_params,
                   modules=(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d),
                   functions=(F.batch_norm,), help="BatchNorm on running statistics")


def per_channel(values: torch.Tensor, rank: int) -> torch.Tensor:
    """Per-channel values ``[C]`` shaped to broadcast against a value of ``rank`` axes
    whose channels are axis 1 (``[N, C]`` of BatchNorm1d after a flatten, ``[N, C, H, W]``)."""
    return values.view(-1, *([1] * (rank - 2)))


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
    scale = scale.detach().double().abs()
    offset = params.mean.detach().double().abs() * scale
    if params.bias is not None:
        offset = offset + params.bias.detach().double().abs()
    return _channel_scale(scale, offset)


@dataclass(frozen=True)
class _ChannelScale(SignedAffine):
    """BatchNorm's interval rule: ``x ↦ |scale| x`` and the offset per channel (axis 1),
    shaped for the value's rank when it runs (BatchNorm1d's ``[N, C]`` or ``[N, C, L]``,
    BatchNorm2d's ``[N, C, H, W]``)."""

    def offset_for(self, like: torch.Tensor) -> torch.Tensor:
        return per_channel(self.offset.to(like.device), like.dim())


def _channel_scale(scale: torch.Tensor, offset: torch.Tensor) -> _ChannelScale:
    """:class:`_ChannelScale` of ``|scale|`` and ``offset`` ``[C]``."""
    return _ChannelScale(lambda x: x * per_channel(scale.to(x.device), x.dim()), offset, 12)


register_interval("batch_norm")(_interval)  # the interval screen


# ------------------------------------------------------------------ normalisations computed
# from the image: LayerNorm, GroupNorm, InstanceNorm. The cone engine runs them on whole
# maps; the verifier's copies run them as the operations they are made of (a mean, a
# square, rsqrt, products: :mod:`..decompose`), each with its own bound rule.
@dataclass(frozen=True)
class NormParams:
    """A normalisation over the image's own statistics.

    Attributes:
        groups: GroupNorm's groups of channels (InstanceNorm: one per channel); ``None``
            for a LayerNorm.
        trailing: a LayerNorm's normalised axes, counted from the end (0 for GroupNorm).
        weight, bias: the affine parameters (``None``: none).
        eps: added to the variance.
    """

    groups: int | None
    trailing: int
    weight: torch.Tensor | None
    bias: torch.Tensor | None
    eps: float
    per_channel: bool = False  # InstanceNorm: a group per channel the value has

    def statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Each element's group mean and ``sqrt(var + eps)``, broadcast to ``x``, and the
        elements per group (float64)."""
        x = x.double()
        if self.groups is None:
            dims = tuple(range(-self.trailing, 0))
            flat = x
        else:
            groups = x.shape[1] if self.per_channel else self.groups
            flat = x.reshape(x.shape[0], groups, -1)
            dims = (-1,)
        mean = flat.mean(dims, keepdim=True)
        var = (flat - mean).square().mean(dims, keepdim=True)
        count = math.prod(flat.shape[d] for d in dims)
        scale = torch.sqrt(var + self.eps)
        return (mean.expand_as(flat).reshape(x.shape), scale.expand_as(flat).reshape(x.shape),
                count)


def _layer_norm_params(call: NodeCall) -> NormParams | str:
    if call.module is not None:
        m = call.module
        return NormParams(None, len(m.normalized_shape), m.weight, m.bias, float(m.eps))
    shape = call.arg(1, "normalized_shape")
    shape = (shape,) if isinstance(shape, int) else shape
    if not isinstance(shape, (tuple, list)) or not all(isinstance(n, int) for n in shape):
        return COMPUTED_SETTINGS
    return NormParams(None, len(shape), call.static_arg(2, "weight"),
                      call.static_arg(3, "bias"), float(call.arg(4, "eps", 1e-5)))


def _group_norm_params(call: NodeCall) -> NormParams | str:
    if call.module is not None:
        m = call.module
        if isinstance(m, nn.InstanceNorm2d):
            if m.track_running_stats and m.running_mean is not None and not m.training:
                return "InstanceNorm2d on running statistics"
            return NormParams(m.num_features, 0, m.weight, m.bias, float(m.eps),
                              per_channel=True)
        return NormParams(m.num_groups, 0, m.weight, m.bias, float(m.eps))
    groups = call.arg(1, "num_groups")
    if not isinstance(groups, int):
        return COMPUTED_SETTINGS
    return NormParams(groups, 0, call.static_arg(2, "weight"), call.static_arg(3, "bias"),
                      float(call.arg(4, "eps", 1e-5)))


def _normalises_maps(params: NormParams | str) -> str:
    return params if isinstance(params, str) else "it normalises over the whole map"


register_operation("layer_norm", window=_normalises_maps, params=_layer_norm_params,
                   written_out=True,
                   modules=(nn.LayerNorm,), functions=(F.layer_norm,),
                   help="LayerNorm (the verifier: as a mean, a variance, rsqrt, products)")
register_operation("group_norm", window=_normalises_maps, params=_group_norm_params,
                   written_out=True,
                   modules=(nn.GroupNorm, nn.InstanceNorm2d), functions=(F.group_norm,),
                   help="GroupNorm and InstanceNorm (the verifier: as LayerNorm is)")


@dataclass(frozen=True)
class LocalResponseParams:
    """``nn.LocalResponseNorm``'s settings: ``y = x / (k + α/n Σ x²)^β``, the sum over
    the ``n`` channels about each one (zeros beyond the ends).

    Attributes:
        size: ``n``.
        alpha, beta, k: ``α``, ``β``, ``k``.
    """

    size: int
    alpha: float
    beta: float
    k: float


# an LRN the verifier's copy did not write out: it writes it for one image shape (its
# channel window is a 1×1 convolution of the channels' count)
LRN_NEEDS_SHAPE = ("the verifier writes LocalResponseNorm out for values [N, C, H, W] and "
                   "one image shape (its channels' window is a convolution of their "
                   "count): give it such values, and make the engine for the shape, "
                   "BoundEngine(model, shape=(C, H, W)) (pixelprior.Verifier does so itself)")


def _local_response_params(call: NodeCall) -> LocalResponseParams | str:
    if call.module is not None:
        m = call.module
        size, alpha, beta, k = m.size, m.alpha, m.beta, m.k
    else:
        size, alpha = call.arg(1, "size"), call.arg(2, "alpha", 1e-4)
        beta, k = call.arg(3, "beta", 0.75), call.arg(4, "k", 1.0)
    numbers = (alpha, beta, k)
    if not isinstance(size, int) or isinstance(size, bool) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
        return COMPUTED_SETTINGS
    if size < 1 or not all(math.isfinite(v) for v in numbers) or alpha < 0 or k < 0:
        return (f"a LocalResponseNorm of size {size}, alpha {alpha:g}, beta {beta:g} and k "
                f"{k:g} (the verifier takes size >= 1 and alpha, k >= 0)")
    return LocalResponseParams(size, float(alpha), float(beta), float(k))


def _mixes_channels(params: object) -> str:
    return params if isinstance(params, str) else "it mixes channels (runs whole)"


register_operation("local_response_norm", window=_mixes_channels,
                   params=_local_response_params, written_out=True,
                   modules=(nn.LocalResponseNorm,), functions=(F.local_response_norm,),
                   help="LocalResponseNorm (the verifier: a square, a 1×1 convolution over "
                   "the channels, a power, a product)")
# (only where the copy did not write it out, made without the images' shape)
register_bound("local_response_norm")(lambda params: LRN_NEEDS_SHAPE)
register_interval("local_response_norm")(lambda params: LRN_NEEDS_SHAPE)


@dataclass(frozen=True)
class VectorNormParams:
    """A vector norm over axes (``torch.linalg.vector_norm``, ``torch.norm``,
    ``x.norm``), or ``F.normalize`` (the value divided by the norm, at least ``eps``).

    Attributes:
        order: 1 (a sum of absolute values) or 2 (Euclidean; Frobenius over two axes).
        dims: the axes reduced (none of them the batch axis).
        keepdim: whether the reduced axes are kept (``F.normalize``: always).
        eps: ``F.normalize``'s floor on the divisor; ``None`` for a norm.
    """

    order: float
    dims: tuple[int, ...]
    keepdim: bool
    eps: float | None = None


def _norm_order(value: object) -> float | None:
    """1 or 2 for the orders written out (``None``, ``"fro"``: 2), else ``None``."""
    if value is None or value == "fro":
        return 2.0
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (1, 2):
        return float(value)
    return None


def _norm_call(call: NodeCall) -> tuple[object, object, object, object]:
    """``(order, dim, keepdim, eps)`` as the call gives them, by its function."""
    target = call.node.target
    if target is F.normalize:
        return call.arg(1, "p", 2.0), call.arg(2, "dim", 1), True, call.arg(3, "eps", 1e-12)
    if target is torch.linalg.vector_norm:
        return call.arg(1, "ord", 2), call.arg(2, "dim"), call.arg(3, "keepdim", False), None
    if target is torch.linalg.norm:  # a number with two axes: a matrix norm (refused)
        order, dim = call.arg(1, "ord"), call.arg(2, "dim")
        if order not in (None, "fro") and not isinstance(dim, int):
            order = "matrix"
        return order, dim, call.arg(3, "keepdim", False), None
    return call.arg(1, "p", "fro"), call.arg(2, "dim"), call.arg(3, "keepdim", False), None


def _vector_norm_params(call: NodeCall) -> VectorNormParams | str:
    """A norm's order and axes, where the verifier's copy writes it out: order 1 or 2
    (``"fro"``), over named axes other than the batch axis, in the value's dtype."""
    if any(isinstance(value, torch.dtype) for value in
           [*call.node.args[1:], *call.node.kwargs.values()]):
        return "a norm computed in another dtype (give it without dtype=)"
    order, dim, keepdim, eps = _norm_call(call)
    if order == "matrix":
        return ("a matrix norm other than Frobenius (torch.linalg.norm with an order and "
                "two axes)")
    if _norm_order(order) is None:
        return (f"a norm of order {order!r} (the verifier writes out orders 1 and 2, and "
                "'fro')")
    if isinstance(dim, fx.Node) or (isinstance(dim, (tuple, list))
                                    and any(isinstance(d, fx.Node) for d in dim)):
        return COMPUTED_SETTINGS
    dims = ((dim,) if isinstance(dim, int)
            else tuple(dim) if isinstance(dim, (tuple, list)) else None)
    if not dims or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
        return "a norm over every axis, the batch axis too (name the axes, e.g. dim=1)"
    if 0 in dims:
        return "a norm over the batch axis (dim=0)"
    if not isinstance(keepdim, bool) or (eps is not None and not isinstance(eps, (int, float))):
        return "a norm whose keepdim or eps is computed in the model (give them as values)"
    return VectorNormParams(_norm_order(order), dims, keepdim,
                            None if eps is None else float(eps))


def _runs_whole(params: VectorNormParams | str) -> str:
    return params if isinstance(params, str) else "it reduces over axes (runs whole)"


register_operation("norm", written_out=True, window=_runs_whole, params=_vector_norm_params,
                   functions=(torch.norm, torch.linalg.vector_norm, torch.linalg.norm),
                   methods=("norm",),
                   help="a vector norm of order 1 or 2 over axes (the verifier: written out)")
register_operation("normalize", written_out=True, window=_runs_whole, params=_vector_norm_params,
                   functions=(F.normalize,),
                   help="F.normalize, p = 1 or 2 (the verifier: a division by the norm)")


# ------------------------------------------------------------------ moments over axes:
# ``x.var(dims)``, ``x.std(dims)`` (the verifier's copies write them as means and squares,
# and a square root: :mod:`..decompose`)
@dataclass(frozen=True)
class MomentParams:
    """A variance or standard deviation over ``dims`` (axes after the batch axis), its
    divisor ``n - correction`` (``n`` the elements each output reduces), ``keepdim``."""

    dims: tuple[int, ...]
    correction: float
    keepdim: bool


def _moment_params(call: NodeCall) -> MomentParams | str:
    """``x.var(dim, unbiased, keepdim)``, ``torch.std(x, dim, correction=, keepdim=)``:
    the settings, where the axes are named and none is the batch axis (a negative one is
    checked against the rank by the plan)."""
    positional = list(call.node.args[1:])
    if positional and isinstance(positional[0], bool):  # x.var(unbiased): every axis
        return "a variance over every axis, the batch axis too (name the axes)"
    given = dict(zip(("dim", "unbiased", "keepdim"), positional, strict=False))
    given.update(call.node.kwargs)
    dims = given.get("dim")
    dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    if not dims or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims) or (
            0 in dims):
        return ("a variance or standard deviation over every axis or the batch axis "
                "(name the axes after it, e.g. x.std((2, 3)))")
    correction = given.get("correction")
    if correction is None:
        correction = 1.0 if given.get("unbiased", True) else 0.0
    if not isinstance(correction, (int, float)) or isinstance(correction, bool):
        return "a variance whose correction is not a number"
    return MomentParams(dims, float(correction), bool(given.get("keepdim", False)))


def _moments_whole(params: object) -> str:
    return params if isinstance(params, str) else "a moment over axes (runs on whole values)"


register_operation("var", written_out=True, window=_moments_whole, params=_moment_params,
                   functions=(torch.var,), methods=("var",),
                   help="a variance over axes after the batch axis")
register_operation("std", written_out=True, window=_moments_whole, params=_moment_params,
                   functions=(torch.std,), methods=("std",),
                   help="a standard deviation over axes after the batch axis")
# the verifier's copies write them out (:mod:`..decompose`); one left as it is names the
# batch axis by a negative dim
BATCH_MOMENT = ("a variance, standard deviation or logsumexp over the batch axis (name "
                "the axes after it, from the front)")
for _name in ("var", "std"):
    register_bound(_name)(lambda params: params if isinstance(params, str) else BATCH_MOMENT)
    register_interval(_name)(lambda params: params if isinstance(params, str)
                             else BATCH_MOMENT)


def moment_factor(sizes: tuple[int, ...], correction: float) -> float:
    """``n / (n - correction)``, ``n`` the product of ``sizes`` (of the axes reduced):
    what a variance with that correction is of the mean of the squared deviations
    (``inf`` where ``n <= correction``: the model's own variance is not a number there)."""
    count = math.prod(sizes)
    return count / (count - correction) if count > correction else math.inf
