"""How far the model's float32 scores can be from its real-arithmetic scores: the part of
the verifier's tolerance that covers the model's own evaluation.

Each operation ``y = W x + b`` evaluated in float32 (any summation order, with or without
fused multiply-adds) returns ``y + δ`` with ``|δ| <= γ_n (|W| |x| + |b|)`` per output,
``γ_n = n u / (1 - n u)``, ``u = 2^-24`` and ``n`` the terms of each sum (Higham,
*Accuracy and Stability of Numerical Algorithms*, §3.1). ReLU and max pooling round
nothing; an elementwise operation rounds its result a few times (once for a sum or a
product, a few library calls for the smooth activations: :data:`SMOOTH`). Operations
are resolved through the operation table, so a functional ``F.conv2d`` counts as its
module does; one without a rule here counts one rounding of its result. A rounding error
``δ_l`` made at layer ``l`` moves the margin ``m_j`` by
``(∂m_j / ∂h_l) · δ_l`` to first order, so

``|m_j(float32) - m_j(real)| <= Σ_l |∂m_j / ∂h_l| · γ_{n_l} (|W_l| |x_l| + |b_l|)``

(the gradient taken at the clean image, in float64). :func:`rounding_error` computes
this first-order bound per image and margin. It is a derivation, not a proof over the
whole box; the verifier multiplies it by :data:`SAFETY` for the variation of the
gradient over the pixel's colors. The worst-case recurrence that is a proof
(``e_{l+1} = |W| e_l + ...``) grows with the product of the layers' absolute row sums
(2·10^11 for the 26-layer CIFAR SqueezeNet) unless the ReLUs that are off stop it: the
interval screen carries it so, per neuron over each position's whole color cube
(:meth:`~.screen.IntervalScreen.bounds` with a ``unit``), and there it is 1-4 times
this estimate on ConvSmall and the interval-trained ResNet8 — the verifier's tolerance
where it is usable — and still vacuous where intervals are loose (the normally trained
ResNet8, the SqueezeNet), while the errors measured between float32 and float64
evaluations stay below 10^-5. :mod:`.backward` proves this sum itself over a box, the
gradient's signs kept wherever the ReLUs are sure: at a single color it is close to this
estimate (1.0-1.05 times it on ConvSmall).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ...models import copy_module
from .decompose import expand_encoders
from .graph import OPERATIONS, without_inplace  # the table, every operation registered
from .intervals import UNDERFLOW, constant_gap
from .operators.activations import narrowing_dtype, softplus_jump
from .operators.convolution import ConvParams, TransposedParams
from .operators.linear import LinearParams
from .operators.normalization import (
    BatchNormParams,
    LocalResponseParams,
    MomentParams,
    NormParams,
    VectorNormParams,
    moment_factor,
)
from .operators.pooling import PoolParams
from .operators.resampling import InterpolateSpec, interpolate_terms, resample, settled_spec
from .table import NodeCall
from .zonotope import gamma as _zonotope_gamma

__all__ = ["NEAR_OVERFLOW", "SAFETY", "UNIT_ROUNDOFF", "near_overflow", "rounding_error",
           "traced_copy", "NoGradientError"]

UNIT_ROUNDOFF = 2.0**-24  # float32
SAFETY = 2.0
NEAR_OVERFLOW = 2.0**100  # a value this large at the image: other colors may overflow


class _Recorder(fx.Interpreter):
    """Runs the traced float32 model, keeping each rounding operation's output (with its
    gradient) and its rounding radius ``γ_n (|W| |x| + |b|)``: the image's values (one
    row per margin) in ``records``, values computed from parameters alone (a weight
    standardised in ``forward``: the float32 model rounds them, the bounds do not) in
    ``constants``."""

    def __init__(self, module: fx.GraphModule, unit: float, radii: bool = True) -> None:
        super().__init__(module)
        self.unit = unit
        self.radii = radii  # False: only the overflow check (near_overflow)
        self.records: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.constants: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.modules = dict(module.named_modules())
        self.kinds: dict[fx.Node, str] = {}  # "image" or "constant": what a value comes from
        self.near_overflow = False  # a value not finite, or within 2^28 of float32's largest
        self.first = next(iter(module.graph.nodes))
        self.multihead: dict[fx.Node, torch.Tensor] = {}  # each nn.MultiheadAttention's

    def run_node(self, node: fx.Node) -> Any:
        result = super().run_node(node)
        floating = isinstance(result, torch.Tensor) and result.is_floating_point()
        if node.op == "get_attr" and floating:  # a source of constants (parameters
            self.kinds[node] = "constant"         # require grad: autograd follows them)
            return result
        if node is self.first:
            self.kinds[node] = "image"
            return result
        kinds = {self.kinds.get(n) for n in node.all_input_nodes}
        kind = "image" if "image" in kinds else "constant" if "constant" in kinds else None
        if kind == "image" and self._intermediates_overflow(node):
            self.near_overflow = True
        if kind is not None and isinstance(result, tuple):  # (output, weights) of an
            self.kinds[node] = kind  # nn.MultiheadAttention: its items are the image's
            if self.radii and self._multihead_module(node):  # (its inputs are freed
                self.multihead[node] = self._multihead_radius(node, result[0])  # by then)
        if kind is None or not floating:
            return result
        self.kinds[node] = kind
        if not bool((result.detach().abs() < NEAR_OVERFLOW).all()):
            self.near_overflow = True
        if not self.radii:
            return result
        radius = self._radius(node, result)
        gap = self._number_gaps(node, result) if self.unit > 0 else None
        if gap is not None:  # a number float32 cannot hold (x - 0.1, a clamp at 0.7)
            radius = gap if radius is None else radius + gap
        if radius is not None and self.unit > 0:  # gradual underflow's absolute error
            radius = radius + UNDERFLOW  # (a normal float32: a radius above 2^-76 keeps its bits)
        if radius is not None and result.requires_grad:
            result.retain_grad()
            (self.records if kind == "image" else self.constants).append(
                (result, radius.detach()))
        return result

    def _number_gaps(self, node: fx.Node, result: torch.Tensor) -> torch.Tensor | None:
        """What numbers written in the model's code that float32 cannot hold move the
        node's result, per element (``None``: none): the float32 model computes with
        ``fl32(c)``, the bounds with ``c``. An added or subtracted number, a clamp's or
        hardtanh's limit, softshrink's threshold move it by ``|c - fl32(c)|`` (a review:
        ``(x - 0.1) * 1000`` and a clamp at 0.7 were off by 1.4e-4 where the estimate
        said 8e-13); a factor or divisor by its relative gap times ``|y|``."""
        if not node.op.startswith("call"):
            return None
        operation = OPERATIONS.lookup(node, self.modules)
        name = operation.name if operation is not None else None
        if name in ("add", "sub"):
            return self._sum_gaps(node, result)
        if name in _LIMITS:
            module = self.modules.get(node.target) if node.op == "call_module" else None
            params = operation.params(NodeCall(node, module, self.env))
            numbers = _numbers(params.values()) if isinstance(params, dict) else []
            return _filled(result, sum(constant_gap(value) for value in numbers))
        if name in _FACTORS:
            relative = sum(constant_gap(value) / abs(float(value))
                           for value in _numbers([*node.args, *node.kwargs.values()]) if value)
            return None if not relative else relative * result.detach().double().abs()
        return None

    def _sum_gaps(self, node: fx.Node, result: torch.Tensor) -> torch.Tensor | None:
        """:meth:`_number_gaps` of ``a + α b`` / ``a - α b`` (``torch.add(x, other=0.1,
        alpha=3)`` too): each number's gap (``b``'s times ``|α|``), and an ``α``
        float32 cannot hold times ``|b|`` with the product's own rounding (a review:
        ``other=`` and ``alpha=`` were not read)."""
        first = node.args[0] if node.args else node.kwargs.get("input")
        other = node.args[1] if len(node.args) > 1 else node.kwargs.get("other")
        alpha = node.kwargs.get("alpha", 1)
        if not _is_number(alpha):
            return None
        gap: Any = sum(constant_gap(value) * (abs(alpha) if value is other else 1.0)
                       for value in (first, other) if _is_number(value))
        if alpha != 1:
            size = (abs(float(other)) if _is_number(other) else
                    self.env[other].detach().double().abs()
                    if isinstance(other, fx.Node) and isinstance(self.env.get(other),
                                                                  torch.Tensor) else None)
            if size is None:
                return None
            gap = gap + (constant_gap(alpha) + self.unit * abs(alpha)) * size
        if isinstance(gap, torch.Tensor):
            return gap.expand_as(result).double()
        return _filled(result, gap)

    def _intermediates_overflow(self, node: fx.Node) -> bool:
        """Whether a kernel's own intermediate values may overflow where its result does
        not (a review: ``F.normalize`` of values near 2e19 returned 0 in float32, a unit
        vector in real arithmetic): the squares a norm, ``F.normalize``, LayerNorm or
        GroupNorm sums (float32's kernels do not scale them), the products a product of
        matrices, attention or ``nn.MultiheadAttention`` sums — each bounded from its
        inputs' largest magnitudes, times the terms, against :data:`NEAR_OVERFLOW`."""
        if not node.op.startswith("call"):
            return False
        operation = OPERATIONS.lookup(node, self.modules)
        if operation is None or operation.name not in _SUMS_OF_PRODUCTS:
            return False  # (before |x| is taken: most nodes sum no squares)
        name, first = operation.name, self._input(node)
        if first is None or first.numel() == 0:
            return False
        largest = float(first.amax())
        terms = max(1, first[0].numel() if first.dim() else 1)
        if name == "multihead_attention":  # the projected queries and keys, from |W| |x|
            module = self.modules[node.target]
            weight = (module.in_proj_weight if module.in_proj_weight is not None
                      else module.q_proj_weight)
            bias = module.in_proj_bias
            largest = (float(weight.detach().abs().amax()) * largest * module.embed_dim
                       + (float(bias.detach().abs().amax()) if bias is not None else 0.0))
            other = largest
        elif name in ("matmul", "attention"):
            second = self._input(node, 1)
            other = float(second.amax()) if second is not None and second.numel() else 0.0
        else:
            other = largest
        return not largest * other * terms < NEAR_OVERFLOW  # (NaN or inf: True)

    def _input(self, node: fx.Node, i: int = 0) -> torch.Tensor | None:
        """``|argument i|`` (the first by its keyword too: ``input``, a ``torch.linalg``
        norm's ``x`` or ``A``), or ``None``."""
        arg = node.args[i] if len(node.args) > i else None
        if arg is None and i == 0 and not node.args:
            arg = next((node.kwargs[k] for k in ("input", "x", "A") if k in node.kwargs), None)
        if isinstance(arg, fx.Node):
            value = self.env.get(arg)
            return (value.detach().abs() if isinstance(value, torch.Tensor)
                    and value.is_floating_point() else None)  # (a mask of a comparison: none)
        if isinstance(arg, (int, float)):
            return torch.tensor(abs(float(arg)), dtype=torch.float64)
        return None

    def _on_magnitudes(self, node: fx.Node) -> torch.Tensor:
        """The node run on ``|x|`` (its first argument): a sum's terms in absolute value."""
        args, kwargs = self.fetch_args_kwargs_from_env(node)
        args = (args[0].detach().abs(), *args[1:])
        with torch.no_grad():
            return getattr(self, node.op)(node.target, args, kwargs).abs()

    def _radius(self, node: fx.Node, result: torch.Tensor) -> torch.Tensor | None:
        """The node's rounding radius, by the operation the table resolves it to (module
        and functional forms alike); an operation the table does not know, or one
        without a rule here, is counted as one rounding of its result (``u |y|``)."""
        if not node.op.startswith("call"):
            return None
        operation = OPERATIONS.lookup(node, self.modules)
        name = operation.name if operation is not None else None
        narrow = narrowing_dtype(node)
        if narrow is not None:  # a cast to fewer bits rounds at its own unit
            return torch.finfo(narrow).eps / 2 * result.detach().abs()
        if name == "getitem" and node.args and self._multihead_output(node):
            return self.multihead[node.args[0]]
        if name in EXACT:
            return None
        module = self.modules.get(node.target) if node.op == "call_module" else None
        params = (operation.params(NodeCall(node, module, self.env, numbers=self.env))
                  if operation else None)
        x = self._input(node)
        gamma = lambda n: _zonotope_gamma(n, self.unit)  # noqa: E731
        magnitude = result.detach().abs()
        if name in ("interpolate", "resample") and isinstance(params, InterpolateSpec):
            return _interpolate_radius(x, params, gamma)
        if name == "conv2d" and isinstance(params, ConvParams) and x is not None:
            weight = params.weight.detach().abs()
            out = F.conv2d(x, weight, None, params.stride, params.padding, params.dilation,
                           params.groups)
            if params.bias is not None:
                out = out + params.bias.detach().abs()[None, :, None, None]
            return gamma(weight[0].numel() + 1) * out
        if name == "conv_transpose2d" and isinstance(params, TransposedParams) and (
                x is not None):
            out = params.run(x, params.weight.detach().abs())
            if params.bias is not None:
                out = out + params.bias.detach().abs()[None, :, None, None]
            return gamma(params.terms) * out
        if name == "linear" and isinstance(params, LinearParams) and x is not None:
            weight = params.weight.detach().abs()
            out = x @ weight.T + (params.bias.detach().abs() if params.bias is not None else 0)
            return gamma(weight.shape[1] + 1) * out
        if name == "batch_norm" and isinstance(params, BatchNormParams) and x is not None:
            # y = (x - mean) / sqrt(var + eps) * w + b: at most 6 roundings per output
            return gamma(6) * _bn_terms(params, x)
        if name in ("layer_norm", "group_norm") and isinstance(params, NormParams):
            value = self.env.get(node.args[0]) if node.args else None
            if isinstance(value, torch.Tensor):
                # (x - μ) / sqrt(var + eps) · w + b from sums of n terms (any order, or
                # Welford's moments): about γ_{2n+10} of (|x| + |μ|) |w| / σ + |b|
                terms, count = _norm_terms(params, value.detach())
                return gamma(2 * count + 10) * terms
        if name in ("norm", "normalize") and isinstance(params, VectorNormParams) and (
                x is not None):
            # a sum of n squares (or magnitudes, all of one sign), a square root, a
            # division: about γ_{n+3} of the result; counted twice, as the kernel
            # sums in its own order (vectorised; it does not scale the squares: where they
            # may overflow the model is refused, _intermediates_overflow)
            count = math.prod(x.shape[d] for d in params.dims)
            return gamma(2 * count + 8) * magnitude
        if name == "local_response_norm" and isinstance(params, LocalResponseParams):
            # x / (k + α/n Σ x²)^β: the base's n squares, their sum, /n, ·α and +k (all of
            # one sign, α, k >= 0) are off by γ_{n+3} of it relatively; the power passes
            # |β| times that on and rounds a few units; the division one more
            count = math.ceil(abs(params.beta) * (params.size + 4)) + 6
            return gamma(count) * magnitude
        if name in ("softmax", "log_softmax", "matmul", "attention"):
            return self._attention_radius(node, name, params, result, gamma)
        if name in ("avg_pool2d", "adaptive_avg_pool2d", "mean", "sum") and x is not None:
            # a sum of n terms then a division: γ_{n+1} times the mean of |x|
            size = max(1, x.numel() // max(1, result.numel()))
            if isinstance(params, PoolParams):
                size = max(size, params.kernel[0] * params.kernel[1])
            return gamma(size + 1) * self._on_magnitudes(node)
        if name in ("var", "std") and isinstance(params, MomentParams) and x is not None:
            return _moment_radius(self.env[node.args[0]], params, name == "std", result,
                                  gamma)
        if name == "logsumexp" and isinstance(params, dict) and x is not None:
            # the largest subtracted, n exponentials summed, a log, the largest added back
            count = math.prod(x.shape[d] for d in params["dims"])
            largest = x.amax(params["dims"], keepdim=params["keepdim"])
            return gamma(count + 8) * (magnitude + largest)
        if name in SMOOTH and x is not None:
            # relative to |y| + |x|: x·Φ(x) and exp(x) - 1 forms lose digits to cancellation
            extra = 0.0
            # softplus's jump at its threshold, at every neuron: float32 may put a neuron
            # within rounding of the threshold on the other side of it, and this estimate,
            # made at the clean image, is the tolerance of every color of the cube, where
            # any neuron may sit at its threshold (the bound engine and the interval
            # screen count the jump only where a range holds the switch: those are bounds
            # over known ranges; this is not)
            if name == "softplus" and isinstance(params, dict):
                extra = softplus_jump(float(params["beta"]), float(params["threshold"]))
            if name in ("elu", "celu") and isinstance(params, dict):
                extra = abs(float(params["alpha"])) * gamma(SMOOTH[name])
            if name == "selu":  # its scale times α: the size of its negative side
                extra = 1.7581 * gamma(SMOOTH[name])
            return gamma(SMOOTH[name]) * (magnitude + x) + extra
        return gamma(ROUNDINGS.get(name, 1)) * magnitude


    def _multihead_module(self, node: fx.Node) -> bool:
        return node.op == "call_module" and isinstance(self.modules.get(node.target),
                                                       nn.MultiheadAttention)

    def _multihead_output(self, node: fx.Node) -> bool:
        """Whether ``node`` is ``output[0]`` of an ``nn.MultiheadAttention`` (which
        returns ``(output, weights)``: its rounding, computed where the module ran, is
        counted there)."""
        source = node.args[0]
        return (isinstance(source, fx.Node) and self._multihead_module(source)
                and source in self.multihead and len(node.args) > 1 and node.args[1] == 0)

    def _multihead_radius(self, node: fx.Node, result: torch.Tensor) -> torch.Tensor:
        """A first-order estimate of the rounding of ``nn.MultiheadAttention`` (batch
        first) at its output: each projection's ``γ_{n+1} (|W| |x| + |b|)`` (``n`` its
        input's width: ``E``, or ``kdim``, ``vdim``), carried
        through the heads' attention as :meth:`_attention_radius` carries its own
        roundings (the projections' errors through the scores and the values), then
        through ``out_proj``, beside its own rounding."""
        module = self.modules[node.target]
        gamma = lambda n: _zonotope_gamma(n, self.unit)  # noqa: E731
        inputs = [self._argument(node, i, k) for i, k in enumerate(("query", "key", "value"))]
        if any(x is None or x.dim() != 3 for x in inputs):
            raise ValueError(f"{node.name}: nn.MultiheadAttention whose inputs are not "
                             "batches of tokens, which the estimate does not count")
        if not module.batch_first:  # [N, B, E]: counted batch first, swapped back
            inputs = [x.transpose(0, 1) for x in inputs]
            result = result.transpose(0, 1)
        embed, heads = module.embed_dim, module.num_heads
        depth = embed // heads
        projected, radii = [], []
        for part, x in enumerate(inputs):
            weight = (module.in_proj_weight[part * embed:(part + 1) * embed]
                      if module._qkv_same_embed_dim else
                      (module.q_proj_weight, module.k_proj_weight, module.v_proj_weight)[part])
            bias = (module.in_proj_bias[part * embed:(part + 1) * embed]
                    if module.in_proj_bias is not None else None)
            weight = weight.detach()
            bias = bias.detach() if bias is not None else None
            value = F.linear(x, weight, bias)  # (a key's or value's own width: kdim, vdim)
            radius = gamma(weight.shape[1] + 1) * (F.linear(x.abs(), weight.abs())
                                                   + (bias.abs() if bias is not None else 0))

            def heads_of(t: torch.Tensor) -> torch.Tensor:
                return t.reshape(t.shape[0], t.shape[1], heads, depth).transpose(1, 2)

            projected.append(heads_of(value))
            radii.append(heads_of(radius))
        (query, key, value), (rq, rk, rv) = projected, radii
        weights, heads_radius = _attention_rounding(query, key, value, depth ** -0.5, gamma,
                                                    (rq, rk, rv))
        merged = (weights @ value).transpose(1, 2).reshape(result.shape)
        merged_radius = heads_radius.transpose(1, 2).reshape(result.shape)
        out = module.out_proj
        radius = (F.linear(merged_radius, out.weight.detach().abs())
                  + gamma(embed + 1) * (F.linear(merged.abs(), out.weight.detach().abs())
                                        + (out.bias.detach().abs() if out.bias is not None
                                           else 0)))
        return radius if module.batch_first else radius.transpose(0, 1)

    def _argument(self, node: fx.Node, position: int, name: str) -> torch.Tensor | None:
        """The node's argument at ``position`` (or keyword ``name``), detached."""
        arg = node.args[position] if len(node.args) > position else node.kwargs.get(name)
        value = self.env.get(arg) if isinstance(arg, fx.Node) else arg
        return value.detach() if isinstance(value, torch.Tensor) else None

    def _attention_radius(self, node: fx.Node, name: str, params: Any, result: torch.Tensor,
                          gamma) -> torch.Tensor:
        """A first-order estimate of the rounding of a softmax, a log-softmax, a product
        of matrices or scaled dot-product attention (their kernels subtract the largest
        score, fuse, or sum in any order).

        * ``a @ b``: ``γ_{K+1} |a| |b|`` (``K`` terms a sum).
        * ``softmax(x)``: ``eᵢ = exp(xᵢ - m)`` is off by ``|xᵢ| + |m|`` units of its
          argument and a few of the library call, relatively; the sum of ``T`` terms
          ``γ_T``, the division one more: ``γ_{T+8} y (1 + 2 (|x| + max |x|))``.
        * ``log_softmax(x)``: the same relative errors, absolutely, beside ``|y|``'s own.
        * attention ``P v`` with ``P = softmax(s · q kᵀ)``: ``P``'s relative error (its
          scores' ``γ_{K+2} s |q| |k|ᵀ`` twice, and the softmax's) through ``|v|``, and
          ``γ_{T+1} |P| |v|``.
        """
        magnitude = result.detach().abs()
        if name == "matmul":
            first, second = self._argument(node, 0, "input"), self._argument(node, 1, "other")
            if first is None or second is None:
                return gamma(8) * magnitude
            return gamma(first.shape[-1] + 1) * (first.abs() @ second.abs())
        if name in ("softmax", "log_softmax"):
            x = self._argument(node, 0, "input")
            if x is None or not isinstance(params, dict):
                return gamma(8) * magnitude
            dim = params["dim"]
            spread = 1 + 2 * (x.abs() + x.abs().amax(dim, keepdim=True))
            relative = gamma(x.shape[dim] + 8) * spread
            return relative * magnitude if name == "softmax" else relative + gamma(4) * magnitude
        query, key, value = (self._argument(node, i, k)
                             for i, k in enumerate(("query", "key", "value")))
        if query is None or key is None or value is None or not isinstance(params, dict):
            return gamma(64) * magnitude
        scale = params["scale"] or query.shape[-1] ** -0.5
        return _attention_rounding(query, key, value, scale, gamma)[1]


def _attention_rounding(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        scale: float, gamma, radii: tuple | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``softmax(s · q kᵀ) v``'s weights ``P`` and a first-order estimate of its rounding:
    ``P``'s relative error (its scores' ``γ_{K+2} s |q| |k|ᵀ`` twice, the softmax's
    ``γ_{T+8} (1 + 4 max |scores|)``, and the errors ``radii`` of ``q, k, v`` already
    made, through the scores) through ``|v|``, ``P`` times ``v``'s error, and the
    product's own ``γ_{T+1} |P| |v|``."""
    scores = scale * (query @ key.transpose(-2, -1))
    weights = scores.softmax(-1)
    tokens = key.shape[-2]
    magnitudes = query.abs() @ key.abs().transpose(-2, -1)
    moved = 2 * gamma(query.shape[-1] + 2) * magnitudes
    if radii is not None:
        rq, rk, _ = radii
        moved = moved + 2 * (rq @ key.abs().transpose(-2, -1)
                             + query.abs() @ rk.transpose(-2, -1))
    relative = scale * moved + gamma(tokens + 8) * (1 + 4 * scores.abs().amax(-1,
                                                                              keepdim=True))
    rounding = (weights * relative) @ value.abs() + gamma(tokens + 1) * (weights @ value.abs())
    if radii is not None:
        rounding = rounding + weights @ radii[2]
    return weights, rounding


# operations that round nothing: they return an input, a maximum or a copy exactly
EXACT = frozenset({"relu", "relu6", "hardtanh", "clamp", "neg", "abs", "identity", "float",
                   "cast", "dropout", "maximum", "minimum", "cat", "max_pool2d", "shape",
                   "reshape", "unsqueeze", "squeeze", "getitem", "expand", "permute", "transpose",
                   "placed", "piece", "repeat_interleave", "max_over",
                   "pad", "flip", "roll", "pixel_shuffle", "unfold", "unfold_axis"})
# operations whose kernels sum squares or products of their inputs before the result
# (:meth:`_Recorder._intermediates_overflow`)
_SUMS_OF_PRODUCTS = frozenset({"norm", "normalize", "layer_norm", "group_norm", "matmul",
                               "attention", "multihead_attention"})
# roundings per output of the smooth activations, a few library calls (exp, log1p, erf,
# tanh) of a few units in the last place each, counted generously; of the other
# elementwise operations (one by default)
SMOOTH = {"sigmoid": 8, "tanh": 8, "silu": 8, "gelu": 8, "elu": 8, "mish": 16, "softplus": 8,
          "selu": 8, "celu": 8, "softsign": 4, "logsigmoid": 8, "erf": 8, "tanhshrink": 8}
ROUNDINGS = {"hardsigmoid": 2, "hardswish": 3, "add": 1, "sub": 1, "mul": 1, "div": 1,
             "leaky_relu": 1, "square": 1, "sqrt": 1, "reciprocal": 2, "rsqrt": 4, "pow": 4,
             "exp": 4, "log": 4, "prelu": 1, "prelu_function": 1, "softshrink": 1}
# operations counted by a rule of their own in RoundingRecorder._radius (a sum of
# products, a normalisation, a mean or a sum, a softmax, attention) or refused by the
# verifier (a narrowing cast)
COUNTED_APART = frozenset({"conv2d", "conv_transpose2d", "linear", "batch_norm", "avg_pool2d",
                           "adaptive_avg_pool2d", "mean", "sum", "narrowing_cast",
                           "layer_norm", "group_norm", "softmax", "log_softmax", "matmul",
                           "attention", "multihead_attention", "norm", "normalize", "var",
                           "std", "logsumexp", "interpolate", "resample",
                           "local_response_norm"})


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers(values: Any) -> list:
    return [v for v in values if _is_number(v)]


# operations a number moves by its own gap, read from their settings (a sum's, ``x - 0.1``,
# by RoundingRecorder._sum_gaps), and those it scales (x * 0.3, x / 0.3)
_LIMITS = frozenset({"clamp", "hardtanh", "softshrink"})
_FACTORS = frozenset({"mul", "div"})


def _filled(result: torch.Tensor, gap: float) -> torch.Tensor | None:
    """``gap`` at every element of ``result`` (``None`` where it is 0)."""
    return None if not gap else torch.full_like(result.detach(), gap, dtype=torch.float64)


def rounds_nothing(name: str) -> bool:
    """Whether the operation ``name`` returns an input, a maximum or a copy exactly (no
    float32 rounding of its own: :data:`EXACT`)."""
    return name in EXACT


def rounding_counted(name: str) -> bool:
    """Whether the estimate counts the operation ``name``'s float32 rounding by a rule
    of its own (every operation with a bound rule must be: one that is not is counted
    as one rounding of its result, too few for a library call such as ``exp``).

    Args:
        name: an operation of the table.

    Returns:
        Whether one of :data:`EXACT`, :data:`SMOOTH`, :data:`ROUNDINGS` or the rules
        apart names it.
    """
    return name in EXACT or name in SMOOTH or name in ROUNDINGS or name in COUNTED_APART


def _interpolate_radius(x: torch.Tensor | None, spec: InterpolateSpec,
                        gamma: Any) -> torch.Tensor | None:
    """A first-order estimate of an interpolation's rounding: none for a nearest one (a
    copy); else its taps' nested sums of products, ``γ_terms |A| |x|`` (``x`` given as
    ``|x|``, ``A`` the weights of the model's kernel)."""
    if spec.nearest or x is None:
        return None
    spec = settled_spec(spec, tuple(x.shape[2:]), x.device, torch.float32)  # (area, antialias)
    magnitudes = resample(x.double(), spec, absolute=True)
    return gamma(interpolate_terms(spec, x.dim())) * magnitudes


def _moment_radius(value: torch.Tensor, params: MomentParams, root: bool,
                   result: torch.Tensor, gamma: Any) -> torch.Tensor:
    """A first-order estimate of the rounding of a variance (``root``: a standard
    deviation) of ``value`` over ``params.dims``: the kernel's ``n`` squared deviations
    summed (in its own order, or Welford's updates) and divided, about ``γ_{2n+8}`` of
    the mean of ``(|x| + |μ|)²`` times ``n / (n - c)``; through the square root at most
    the square root of that, or that over the root's twice (whichever is smaller)."""
    value = value.detach().double()
    dims = params.dims
    sizes = tuple(value.shape[d] for d in dims)
    mean = value.mean(dims, keepdim=True)
    terms = (value.abs() + mean.abs()).square().mean(dims, keepdim=params.keepdim)
    variance = gamma(2 * math.prod(sizes) + 8) * terms * moment_factor(
        sizes, params.correction)
    if not root:
        return variance
    deviation = result.detach().double().abs()
    through = torch.where(deviation > 0, variance / (2 * deviation).clamp_min(2.0**-1000),
                          variance.sqrt())
    return torch.minimum(variance.sqrt(), through) + gamma(4) * deviation


def _norm_terms(params: NormParams, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(|x| + |μ|) · |w| / σ + |b|`` per element of a LayerNorm or GroupNorm of ``x``
    (``μ``, ``σ``: its group's mean and ``sqrt(var + eps)``), and the group's size."""
    mean, scale, count = params.statistics(x)
    terms = (x.double().abs() + mean.abs()) / scale

    def shaped(parameter: torch.Tensor) -> torch.Tensor:
        parameter = parameter.detach().double().abs()
        if params.groups is not None:  # per channel of [N, C, ...]
            return parameter.view(1, -1, *([1] * (x.dim() - 2)))
        return parameter  # the normalised trailing axes' own shape

    if params.weight is not None:
        terms = terms * shaped(params.weight)
    if params.bias is not None:
        terms = terms + shaped(params.bias)
    return terms.to(x.dtype), count


def _bn_terms(params: BatchNormParams, x: torch.Tensor) -> torch.Tensor:
    """``(|x| + |mean|) · |w| / sqrt(var + eps) + |b|`` per element (BatchNorm's terms,
    ``x`` given as ``|x|``)."""
    scale = (params.weight.detach() if params.weight is not None else 1) / torch.sqrt(
        params.var.detach() + params.eps)
    shape = (1, -1, *([1] * (x.dim() - 2)))  # per channel, axis 1 of any rank
    centred = x + params.mean.detach().abs().view(shape)
    bias = params.bias.detach().abs().view(shape) if params.bias is not None else 0
    return centred * torch.as_tensor(scale).abs().view(shape) + bias


class NoGradientError(ValueError):
    """The margins carry no gradient, which :func:`rounding_error` weights each rounding
    by: no estimate can be made."""


def traced_copy(model: nn.Module) -> fx.GraphModule:
    """The copy of ``model`` :func:`rounding_error` records: float32, eval mode, traced by
    ``torch.fx`` (frozen parameters made trainable, for their gradients).

    Args:
        model: the network.

    Returns:
        The traced copy (the model is left unchanged).

    Raises:
        Exception: whatever ``torch.fx`` raises for a model it cannot trace (control flow
            on values, a TorchScript or ONNX Runtime model, ...); FxUnsupportedError: an
            in-place operation that changes a value used again.
    """
    traced = fx.symbolic_trace(copy_module(model).float().eval().requires_grad_(True))
    expand_encoders(traced)  # (as the engines trace it: each module's rounding counted)
    # in-place activations made out of place, as the bound engine runs them: autograd
    # refuses an in-place ReLU on a tanh's output, whose backward reads that output
    without_inplace(traced)
    _without_detach(traced)
    traced.recompile()
    return traced


def _without_detach(traced: fx.GraphModule) -> None:
    """``x.detach()``, ``torch.detach(x)`` and ``x.data`` run as ``x``: the same values,
    with the gradients the estimate weights each rounding by (an audit: a detached
    value's rounding was weighted by 0, and a tolerance of 8e-7 covered an error that
    changes the label)."""
    graph = traced.graph
    for node in list(graph.nodes):
        detaches = ((node.op == "call_method" and node.target == "detach")
                    or (node.op == "call_function" and node.target is torch.detach)
                    or (node.op == "call_function" and node.target is getattr
                        and node.args[1:] == ("data",)))
        if detaches and node.args and isinstance(node.args[0], fx.Node):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)


def near_overflow(model: nn.Module, images: torch.Tensor,
                  traced: fx.GraphModule | None = None) -> bool:
    """Whether a value of the float32 model at ``images`` is not finite or within 2^28 of
    float32's largest (:data:`NEAR_OVERFLOW`), where other colors may overflow to
    ``inf``: the check :func:`rounding_error` makes, in one forward pass without its
    gradients.

    Args:
        model: the network, in eval mode.
        images: float ``[B, C, H, W]`` in [0, 1].
        traced: the model's :func:`traced_copy`, where made already.

    Returns:
        ``True`` where some value of some image is that large.

    Raises:
        Exception: what :func:`traced_copy` raises, where ``traced`` is not given.
    """
    recorder = _Recorder(traced_copy(model) if traced is None else traced, 0.0, radii=False)
    with torch.no_grad():
        recorder.run(images.detach().float())
    return recorder.near_overflow


def rounding_error(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   unit: float = UNIT_ROUNDOFF, traced: fx.GraphModule | None = None,
                   others: int | None = None) -> torch.Tensor:
    """First-order bounds of the float32 rounding error of each margin ``z_y - z_j``.

    The gradients and the rounding radii are computed in float32 (an estimate of a
    bound: a relative error of 10^-6 in them changes nothing); each margin's gradient is
    taken on its own copy of the image, all in one backward pass.

    Args:
        model: the network (images in [0, 1] → scores), in eval mode.
        images: float ``[B, C, H, W]`` in [0, 1].
        labels: long ``[B]``.
        unit: the unit roundoff of the model's evaluation (``2^-24`` for float32;
            ``2^-11`` for TF32 convolutions on CUDA).
        traced: the model's :func:`traced_copy`, where made already.
        others: the margins against this many other classes only, those of the highest
            scores at each image (``None``: every other class; one copy of the image each).

    Returns:
        float64 ``[B]``: per image, the largest bound over its margins.

    Raises:
        Exception: what :func:`traced_copy` raises, where ``traced`` is not given.
        NoGradientError: the margins carry no gradient (the scores do not depend on the
            image through anything differentiable).
    """
    traced = traced_copy(model) if traced is None else traced
    with torch.no_grad():
        classes = traced(images[:1].float()).shape[1]
    bounds = []
    for i in range(images.shape[0]):
        recorder = _Recorder(traced, unit)
        label = int(labels[i])
        rivals = [j for j in range(classes) if j != label]
        if others is not None and others < len(rivals):
            with torch.no_grad():
                scores = traced(images[i:i + 1].float())[0]
            rivals = sorted(rivals, key=lambda j: -float(scores[j]))[:others]
        batch = images[i:i + 1].detach().float().repeat(len(rivals), 1, 1, 1)
        with torch.enable_grad():
            scores = recorder.run(batch.requires_grad_(True))
            rows = torch.arange(len(rivals))
            margins = scores[rows, label] - scores[rows, torch.tensor(rivals)]
            per_margin = torch.zeros(len(rivals), dtype=torch.float64,
                                     device=margins.device)
            if not margins.requires_grad:  # no gradient to weight the roundings by
                raise NoGradientError(
                    "the model's scores carry no gradient at the image (a hard threshold, "
                    "say), so its float32 rounding has no first-order estimate; give the "
                    "verifier a tolerance")
            if recorder.records:  # one row per margin: every row's gradient in one pass
                grads = torch.autograd.grad(margins.sum(), [r for r, _ in recorder.records],
                                            allow_unused=True, retain_graph=True)
                for g, (_, radius) in zip(grads, recorder.records, strict=True):
                    if g is not None:
                        per_margin += _per_row(g.abs() * radius, len(rivals))
            per_margin += _constant_terms(margins, recorder.constants)
        # no first-order estimate holds where a value may overflow to inf
        bounds.append(per_margin.max() if not recorder.near_overflow
                      else torch.tensor(torch.inf, dtype=torch.float64))
    return torch.stack(bounds)


def _per_row(terms: torch.Tensor, rows: int) -> torch.Tensor:
    """Error terms of a value summed per margin row: over its elements where its first
    axis holds the rows (a ``[B]`` value too, e.g. a logit picked out), else their whole
    sum for every row (a value without the batch axis: an upper bound)."""
    if terms.ndim >= 1 and terms.shape[0] == rows:
        return terms.reshape(rows, -1).sum(1).double()
    return terms.sum().double().expand(rows)


def _constant_terms(margins: torch.Tensor, constants: list[tuple[torch.Tensor, torch.Tensor]]
                    ) -> torch.Tensor:
    """Each margin's first-order error from the rounding of values computed from
    parameters alone (shared by every row: one backward pass per margin)."""
    terms = torch.zeros(len(margins), dtype=torch.float64, device=margins.device)
    if not constants:
        return terms
    values = [v for v, _ in constants]
    for j in range(len(margins)):
        grads = torch.autograd.grad(margins[j], values, allow_unused=True, retain_graph=True)
        terms[j] = sum(float((g.abs() * radius).sum())
                       for g, (_, radius) in zip(grads, constants, strict=True)
                       if g is not None)
    return terms
