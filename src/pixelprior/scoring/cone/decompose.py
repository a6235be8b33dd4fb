"""The verifier's copies of a model rewritten into the operations its bound rules relax
(``torch.fx`` graph rewriting, on the traced copy only: the model runs as written).

* A division by a value that changes with the pixel, ``a / b``, runs as
  ``a * torch.reciprocal(b)`` (:class:`~.zonotope.Reciprocal`, then the product of two
  varying values), and ``x * x`` as ``torch.square(x)`` (bounded below by 0): the same
  function in real arithmetic.
* A softmax along an axis runs as ``e · reciprocal(Σ e)`` with ``e = exp(x - mean(x))``
  (a log-softmax as ``c - log Σ exp(c)``, ``c = x - mean(x)``): the same function in
  real arithmetic (a softmax is unchanged by a shift along its axis; the mean keeps the
  exponents near 0 and, being affine, lets a shift all the scores share cancel).
  ``F.scaled_dot_product_attention`` runs as ``softmax(q kᵀ · scale) v``, and
  ``nn.MultiheadAttention`` (batch first) as its projections, heads and that.
* A product of matrices ``a @ b`` runs as a linear layer where one factor is a 2-D
  constant (``F.linear(a, bᵀ)``; ``F.linear(bᵀ, a)ᵀ`` for a constant ``a``), else as
  products summed, ``(a.unsqueeze(-1) * b.unsqueeze(-3)).sum(-2)`` (each a product of
  two varying values where both vary: attention's ``q kᵀ`` and ``a v``).
* A permutation that puts the batch axis second, each of whose uses takes one item of
  the new first axis (timm's attention: ``qkv.reshape(B, N, 3, H, d).permute(2, 0, 3, 1,
  4)``, then ``qkv.unbind(0)``), runs as each item taken first, ``qkv[:, :, i]``, then
  permuted: the batch axis stays first (the bounds run boxes as its rows).
* An item of ``chunk``, ``split`` or ``unbind`` along an axis after the batch axis (``a,
  b = h.chunk(2, dim=1)``: ShuffleNet's halves) runs as that item alone
  (:func:`~.operators.shape.piece`); ``torch.stack`` along such an axis as the
  concatenation of its parts unsqueezed there; nearest upsampling of a 2-D map by whole
  numbers (``nn.Upsample(scale_factor=2)``) as ``repeat_interleave`` along each spatial
  axis, any other interpolation as :func:`~.operators.resampling.resample` (one weight
  matrix per axis, read off the kernel; a nearest one's in the model's dtype).
* A vector norm of order 2 over axes (``torch.linalg.vector_norm``, ``torch.norm``,
  ``x.norm``) runs as ``sqrt(Σ x²)`` (``torch.square``: bounded below by 0), of order 1
  as ``Σ |x|``; ``F.normalize(x)`` as ``x · reciprocal(eps + relu(‖x‖ - eps))``, its
  ``x / max(‖x‖, eps)``.
* A variance or standard deviation over axes (``x.var(dims)``, ``torch.std``) runs as
  the mean of the squared deviations over one axis, of the squares less the squared
  mean over several, times ``n / (n - correction)`` (a square root of it for ``std``);
  ``torch.logsumexp`` as ``log Σ exp(x - μ) + μ`` with ``μ`` the mean.
* ``torch.maximum(a, b)`` runs as ``b + relu(a - b)``, ``torch.minimum(a, b)`` as
  ``a - relu(a - b)`` (``torch.max(a, b)`` of two tensors as ``torch.maximum``). A
  maximum over axes whose values alone are used (``x.max(dim=-1)[0]``, ``torch.max(x,
  2).values``) runs as ``amax``, a minimum over axes (``x.min(1)[0]``, ``amin``) as
  ``-amax(-x)``: the same values.
* A padding by a constant ``c`` other than 0 runs as ``F.pad(x - c) + c``;
  ``torch.einsum`` of one or two operands as sums over the indices one operand alone
  has, permutations, and a product of matrices (:func:`_product_form`), several
  indices of a group flattened into one axis.
* A model written sequence first (``nn.MultiheadAttention`` and
  ``nn.TransformerEncoder`` with ``batch_first=False``: tokens ``[N, B, E]``) is laid
  out batch first (:mod:`.layouts`); a sequence-first ``nn.MultiheadAttention`` runs
  between two swaps of its first axes, which that moves on.
* A concatenation along an axis after the batch axis of varying values and constants
  expanded to the batch size (a vision transformer's class token,
  ``torch.cat([token.expand(n, -1, -1), x], 1)``) runs as the sum of each part placed
  among zeros (:func:`~.operators.shape.placed`), the constants unexpanded: the batch
  size is then read only to reshape (the bounds run many boxes as the rows of a call).
* LayerNorm, GroupNorm and InstanceNorm run as what they compute — a mean, a variance
  (``torch.square``), ``torch.rsqrt`` of it plus ``eps``, products, the affine
  parameters — the same function in real arithmetic. Over a whole map the variance is
  ``mean(x²) - μ²`` and the output ``x · r - μ · r``, so that new symbols are taken
  where ``x`` varies (the pixel's cone) and once per group; over a position's channels,
  the mean of the squared deviations, bounded below by 0. GroupNorm's group sums are a
  linear map of the per-channel means with weights 1 (exact) divided by the channels per
  group.

The copies' bounds are of the real-arithmetic function, as every bound is; the model's
float32 kernels for the normalisations (Welford's moments, fused), the softmax (the
largest subtracted, fused), attention, a variance, a logsumexp and an interpolation
other than a nearest one (weights of their own) are not the rewritten graph's
operations, so
the float32 error through them is estimated, not proved (:mod:`.rounding`; so is a
norm's: its kernel sums in its own order): the
interval screen proves no float32 error through a node marked :data:`DECOMPOSED` (nor
through a layer with computed weights). A product of matrices is not marked: its
kernel's error, ``γ_K Σ |a_k b_k|`` in any summation order (Higham §3.1), is within
what the products and the sum are proved to round. Nor is a maximum: it rounds nothing,
and the error the rewritten form is proved to pass on (``e_a + 2 e_b`` and its
roundings) exceeds the ``max(e_a, e_b)`` the model's maximum passes on.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .layouts import DECOMPOSED, GraphView, keep_batch_first, reads_sizes
from .operators.normalization import (
    LocalResponseParams,
    MomentParams,
    NormParams,
    VectorNormParams,
    moment_factor,
)
from .operators.resampling import InterpolateSpec, resample, settled_spec
from .operators.shape import pad_settings, piece, placed
from .table import OPERATIONS, NodeCall

# ``traced`` below is a :class:`~.graph.TracedGraph` (which imports this module: typed
# ``Any`` here, so that no import closes a cycle)
TracedGraph = Any

__all__ = ["DECOMPOSED", "MATRIX_PRODUCT", "decompose", "expand_encoders", "needs_shape"]

# the key of ``node.meta`` naming the normalisation a node was decomposed from:
# :data:`.layouts.DECOMPOSED`, imported above
# the key of ``node.meta`` marking a product of matrices of two varying values written
# as products summed: on the products node, the two factors (unsqueezed); the bound
# engine computes the whole product there (:func:`~.zonotope.multiply_matrices`: a new
# symbol per output, not per product) and the sum passes it on
MATRIX_PRODUCT = "pixelprior_matrix_product"


def decompose(traced: TracedGraph) -> bool:
    """Rewrite ``traced``'s graph in place: normalisations computed from the image into
    their operations, then divisions by varying values into products with reciprocals
    and products of a value with itself into squares.

    Returns:
        Whether anything was rewritten (the caller indexes the graph again).
    """
    # (the graph is indexed once, after every rewrite: the nodes a normalisation is
    # rewritten into are computed from the image, as the node they replace, so the
    # constants and sizes read before hold for the divisions and squares after)
    shapes = _input_shapes(traced)  # first: the graph as traced
    changed = _local_response_norms(traced, shapes)
    changed = _batch_selections(traced) or changed
    changed = _narrows(traced) or changed
    changed = _pieces(traced) or changed
    changed = _stacks(traced) or changed
    changed = _upsamplings(traced, shapes) or changed
    changed = _constant_pads(traced) or changed
    changed = _normalisations(traced) or changed
    changed = _norms(traced) or changed
    changed = _moment_reductions(traced) or changed
    changed = _logsumexps(traced) or changed
    changed = _multihead(traced) or changed
    changed = keep_batch_first(traced) or changed
    changed = _attention(traced) or changed
    changed = _softmaxes(traced) or changed
    changed = _matrix_products(traced) or changed
    changed = _einsums(traced) or changed
    changed = _reduced_extremes(traced) or changed
    changed = _extremes(traced) or changed
    changed = _class_tokens(traced) or changed
    divided = _divisions(traced)
    divided = _squares(traced) or divided
    if changed or divided:
        traced.graph_module.graph.lint()
        traced.graph_module.recompile()
    return changed or divided


def expand_encoders(graph_module: fx.GraphModule) -> bool:
    """Rewrite ``graph_module``'s graph in place: each ``nn.TransformerEncoder`` and
    ``nn.TransformerEncoderLayer`` (``torch.fx`` keeps them whole, as it keeps every
    module of ``torch.nn``) called without masks, in eval mode and with PyTorch's own
    ``forward``, as the calls of its own modules its ``forward`` makes: for each layer
    the self-attention (``nn.MultiheadAttention``), the residual additions, the
    LayerNorms before (``norm_first``) or after, the feed-forward block, and the
    encoder's final norm (dropout in eval mode is the identity). The same function; the
    engines then bound, estimate and run each module as they would written out.

    Args:
        graph_module: a traced model (recompiled here where anything changed).

    Returns:
        Whether anything was rewritten.
    """
    graph, changed = graph_module.graph, False
    for node in list(graph.nodes):
        source = node.args[0] if node.args else node.kwargs.get("src")
        if node.op != "call_module" or source is None or any(
                value not in (None, False) for key, value in [
                    *enumerate(node.args[1:]), *node.kwargs.items()] if key != "src"):
            continue
        module = graph_module.get_submodule(node.target)
        layers = _encoder_layers(module, node.target)
        if layers is None:
            continue
        with graph.inserting_before(node):
            out = source
            for prefix, layer in layers:
                out = _encoder_layer(graph, prefix, layer, out)
            if isinstance(module, nn.TransformerEncoder) and module.norm is not None:
                out = graph.call_module(f"{node.target}.norm", (out,))
        node.replace_all_uses_with(out)
        graph.erase_node(node)
        changed = True
    if changed:
        graph.lint()
        graph_module.recompile()
    return changed


def _encoder_layers(module: nn.Module, target: str) -> list[tuple[str, nn.Module]] | None:
    """The layers a module written out by :func:`expand_encoders` runs, each with its
    name in the graph module, or ``None`` where it is not such a module."""
    layers = ([(target, module)] if isinstance(module, nn.TransformerEncoderLayer)
              else [(f"{target}.layers.{i}", m) for i, m in enumerate(module.layers)]
              if isinstance(module, nn.TransformerEncoder)
              and type(module).forward is nn.TransformerEncoder.forward else None)
    if layers is None or module.training:
        return None
    plain = all(isinstance(m, nn.TransformerEncoderLayer) and not m.training
                and all(getattr(type(m), name) is getattr(nn.TransformerEncoderLayer, name)
                        for name in ("forward", "_sa_block", "_ff_block"))
                for _, m in layers)
    return layers if plain else None


def _encoder_layer(graph: fx.Graph, prefix: str, layer: nn.Module, x: object) -> fx.Node:
    """``nn.TransformerEncoderLayer.forward`` without masks, in eval mode, as calls."""
    def attention(h: object) -> fx.Node:
        out = graph.call_module(f"{prefix}.self_attn", (h, h, h), {"need_weights": False})
        return graph.call_function(operator.getitem, (out, 0))

    def feed_forward(h: object) -> fx.Node:
        h = graph.call_module(f"{prefix}.linear1", (h,))
        h = (graph.call_module(f"{prefix}.activation", (h,))
             if isinstance(layer.activation, nn.Module)
             else graph.call_function(layer.activation, (h,)))
        return graph.call_module(f"{prefix}.linear2", (h,))

    def norm(which: int, h: object) -> fx.Node:
        return graph.call_module(f"{prefix}.norm{which}", (h,))

    def add(a: object, b: object) -> fx.Node:
        return graph.call_function(operator.add, (a, b))

    if layer.norm_first:
        x = add(x, attention(norm(1, x)))
        return add(x, feed_forward(norm(2, x)))
    x = norm(1, add(x, attention(x)))
    return norm(2, add(x, feed_forward(x)))


def _order(node: fx.Node) -> tuple[int, ...] | None:
    """A permutation's order, each axis from the front (``None``: not numbers)."""
    given = node.args[1:] or (node.kwargs.get("dims"),)  # (x.permute(0, 2, 1): varargs)
    dims = given[0] if len(given) == 1 and isinstance(given[0], (tuple, list)) else given
    if not dims or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
        return None
    order = tuple(d % len(dims) for d in dims)
    return order if sorted(order) == list(range(len(dims))) else None


def _selections(node: fx.Node) -> list[tuple[fx.Node, int]] | None:
    """Where every use of ``node`` takes one item of its first axis — ``node[i]``, or an
    item of ``node.unbind(0)`` — each ``(the node taking it, i)``; ``None`` otherwise."""
    taken = []
    for user in node.users:
        if user.target is operator.getitem and user.args[0] is node and isinstance(
                user.args[1], int) and not isinstance(user.args[1], bool):
            taken.append((user, user.args[1]))
            continue
        unbinds = (user.target in ("unbind", torch.unbind)
                   and _first_argument(user) is node and _argument(user, 1, "dim", 0) == 0)
        if not unbinds or not all(item.target is operator.getitem and isinstance(
                item.args[1], int) and not isinstance(item.args[1], bool)
                for item in user.users):
            return None
        taken += [(item, item.args[1]) for item in user.users]
    return taken


def _batch_selections(traced: TracedGraph) -> bool:
    """Each permutation that puts the batch axis second, whose every use takes one item
    of the new first axis (timm's attention: ``qkv.reshape(B, N, 3, H, d).permute(2, 0,
    3, 1, 4)``, then ``qkv.unbind(0)`` or ``qkv[0]``), as each item taken before the
    permutation (``qkv[:, :, i]``) and the other axes permuted: the batch axis stays first."""
    graph, rewritten = traced.graph_module.graph, False
    for node in list(graph.nodes):
        if node in traced.statics or node.op not in ("call_method", "call_function") or (
                node.target not in ("permute", torch.permute)):
            continue
        order, taken = _order(node), _selections(node)
        if order is None or order[0] == 0 or order[1] != 0 or not taken:
            continue
        source, axis = _first_argument(node), order[0]
        rest = [d - (d > axis) for d in order[1:]]
        for user, index in taken:
            _replace(graph, user, functools.partial(_item_permuted, graph, source, axis,
                                                    index, rest), None)
        for leftover in [u for u in node.users if not u.users]:
            graph.erase_node(leftover)  # (the unbinds, each item replaced)
        graph.erase_node(node)
        rewritten = True
    return rewritten


# each call that returns a tuple of pieces: (its kind, the keyword of its size, the
# argument after the value; None for unbind, which takes none)
_SPLITTERS = {"chunk": ("chunk", "chunks"), torch.chunk: ("chunk", "chunks"),
              "split": ("split", "split_size"),
              torch.split: ("split", "split_size_or_sections"),
              "unbind": ("unbind", None), torch.unbind: ("unbind", None)}


def _narrows(traced: TracedGraph) -> bool:
    """Each ``torch.narrow(x, dim, start, length)`` (``x.narrow(...)``) of a value that
    changes with the pixel, by numbers, as the index it is, ``x[:, ..., start:start +
    length]`` (``x[..., start:start + length, :]`` for an axis counted from the end; a
    start counted from the end too, ``-3:`` where it reaches the end): a copy the index
    rules bound, refused there on the batch axis."""
    graph, rewritten = traced.graph_module.graph, False
    for node in list(graph.nodes):
        narrows = ((node.op == "call_function" and node.target is torch.narrow)
                   or (node.op == "call_method" and node.target == "narrow"))
        if not narrows or node in traced.statics or node in traced.sizes:
            continue
        dim, start, length = (_argument(node, 1, "dim"), _argument(node, 2, "start"),
                              _argument(node, 3, "length"))
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (dim, start, length)
                   ) or length < 0:
            continue
        end = start + length  # (from the end, narrow's start + length <= 0: 0 is the end)
        window = slice(start, None if start < 0 and end == 0 else end)
        index = ((slice(None),) * dim + (window,) if dim >= 0
                 else (Ellipsis, window) + (slice(None),) * (-dim - 1))
        _replace(graph, node, functools.partial(
            graph.call_function, operator.getitem, (_first_argument(node), index)), None)
        rewritten = True
    return rewritten


def _pieces(traced: TracedGraph) -> bool:
    """Each ``chunk``, ``split`` or ``unbind`` of a value that changes with the pixel along
    a named axis other than the batch axis, whose every use takes one item (``a, b =
    h.chunk(2, dim=1)``), as each item alone: :func:`~.operators.shape.piece`."""
    graph, rewritten = traced.graph_module.graph, False
    for node in list(graph.nodes):
        if (node in traced.statics or node in traced.sizes
                or node.op not in ("call_method", "call_function")):
            continue
        try:
            kind, size_keyword = _SPLITTERS[node.target]
        except (KeyError, TypeError):
            continue
        dim = _argument(node, 1 if size_keyword is None else 2, "dim", 0)
        size = None
        if size_keyword is not None:
            size = _argument(node, 1, size_keyword, node.kwargs.get("split_size"))
        items = [u for u in node.users if u.target is operator.getitem
                 and isinstance(u.args[1], int) and not isinstance(u.args[1], bool)]
        if (not isinstance(dim, int) or isinstance(dim, bool) or dim == 0 or not items
                or len(items) != len(node.users)
                or not (size is None or isinstance(size, int) or (
                    isinstance(size, (tuple, list)) and all(isinstance(n, int) for n in size)))):
            continue
        for item in items:
            _replace(graph, item, functools.partial(graph.call_function, piece, (
                _first_argument(node), kind, size, dim, item.args[1])), None)
        graph.erase_node(node)
        rewritten = True
    return rewritten


def _upsamplings(traced: TracedGraph, shapes: dict[fx.Node, tuple[int, ...]]) -> bool:
    """Each interpolation of a map that changes with the pixel: nearest upsampling of a
    2-D map by whole numbers as ``repeat_interleave`` along its height, then its width (a
    copy of each element); any other as :func:`~.operators.resampling.resample`, one
    weight matrix per axis read off the kernel (a nearest one's indices in the model's
    dtype, ``traced.source_dtype``). One whose windows grow with the scale (``area``,
    ``antialias``) only with its input's shape (``shapes``, :func:`_input_shapes`): its
    counts read off that size's matrices (:func:`~.operators.resampling.settled_spec`)."""
    graph, rewritten = traced.graph_module.graph, False
    ranks = None
    for node in list(graph.nodes):
        resolved = _named(traced, node, ("interpolate",))
        if resolved is None or not isinstance(resolved.params, InterpolateSpec):
            continue
        spec, source = resolved.params, _first_argument(node)
        if spec.needs_shape:
            shape = shapes.get(node)
            if shape is None or not 3 <= len(shape) <= 5:
                continue  # (refused by its rule: made without the images' shape)
            spec = settled_spec(spec, shape[2:], torch.device("cpu"),
                                traced.float_as or torch.float32)
        factors = spec.whole_factors()
        if factors is not None and ranks is None:
            ranks = GraphView(traced).ranks
        if factors is not None and ranks.get(source) == 4:
            factors = factors * 2 if len(factors) == 1 else factors

            def build(source=source, factors=factors) -> fx.Node:
                out = source
                for axis, factor in zip((-2, -1), factors, strict=True):
                    if factor != 1:
                        out = graph.call_method("repeat_interleave", (out, factor),
                                                {"dim": axis})
                return out

            _replace(graph, node, build, None)
        else:
            if spec.nearest and traced.source_dtype is not None:
                # a nearest neighbour's index is the model's kernel's (float32 may round
                # it the other way than float64); weights are the values' dtype's (a
                # continuous function of them: float32's rounding is the estimate's)
                spec = dataclasses.replace(spec, dtype=traced.source_dtype)
            # (marked, but for a copy: the model's kernel rounds its own products)
            _replace(graph, node, lambda source=source, spec=spec: graph.call_function(
                resample, (source, spec)), None if spec.nearest else "interpolate")
        rewritten = True
    return rewritten


def _constant_pads(traced: TracedGraph) -> bool:
    """Each padding of a varying value by a constant ``c`` other than 0 (``F.pad(x, p,
    value=c)``, ``nn.ConstantPad2d(p, c)``) as ``F.pad(x - c, p) + c``: the same values,
    its part at zero the constant's (:func:`~.operators.shape._pad_params`)."""
    graph, rewritten = traced.graph_module.graph, False
    for node in list(graph.nodes):
        if node in traced.statics or node in traced.sizes:
            continue
        operation = OPERATIONS.lookup(node, traced.modules)
        if operation is None or operation.name != "pad":
            continue
        pads, mode, value = pad_settings(NodeCall(node, traced.modules.get(node.target)
                                                  if node.op == "call_module" else None,
                                                  traced.statics))
        if mode != "constant" or not isinstance(value, (int, float)) or value == 0:
            continue

        def build(x=_first_argument(node), pads=pads, value=value) -> fx.Node:
            shifted = graph.call_function(operator.sub, (x, value))
            padded = graph.call_function(F.pad, (shifted, tuple(pads)))
            return graph.call_function(operator.add, (padded, value))

        _replace(graph, node, build, None)
        rewritten = True
    return rewritten


def _stacks(traced: TracedGraph) -> bool:
    """Each ``torch.stack`` along an axis other than the batch axis of values one of which
    changes with the pixel as the concatenation of each unsqueezed there."""
    graph, rewritten = traced.graph_module.graph, False
    for node in list(graph.nodes):
        if node in traced.statics or node.op != "call_function" or node.target is not torch.stack:
            continue
        parts, dim = _argument(node, 0, "tensors"), _argument(node, 1, "dim", 0)
        if (not isinstance(parts, (tuple, list)) or not isinstance(dim, int)
                or isinstance(dim, bool) or dim == 0):  # (out= is refused when traced)
            continue

        def build(parts=parts, dim=dim) -> fx.Node:
            return graph.call_function(torch.cat, ([graph.call_method(
                "unsqueeze", (part, dim)) for part in parts], dim))

        _replace(graph, node, build, None)
        rewritten = True
    return rewritten


def _item_permuted(graph: fx.Graph, source: object, axis: int, index: int,
                   rest: list[int]) -> fx.Node:
    """``source``'s item ``index`` along ``axis``, its axes then in the order ``rest``."""
    item = graph.call_function(operator.getitem, (source, (slice(None),) * axis + (index,)))
    return item if rest == sorted(rest) else graph.call_method("permute", (item, *rest))


def _first_argument(node: fx.Node) -> object:
    """The node's first argument, positional or by its keyword (``input``; a
    ``torch.linalg`` norm's ``x`` or ``A``)."""
    if node.args:
        return node.args[0]
    return next((node.kwargs[k] for k in ("input", "x", "A") if k in node.kwargs), None)


def _argument(node: fx.Node, position: int, name: str, default: object = None) -> object:
    """The node's argument at ``position`` (its first argument counted, positional or
    not) or by keyword ``name``."""
    if node.args and len(node.args) > position:
        return node.args[position]
    return node.kwargs.get(name, default)


def _squares(traced: TracedGraph) -> bool:
    """Each product of a varying value with itself, ``x * x``, as ``torch.square(x)``
    (:class:`~.zonotope.Square` keeps a square's lower bound at or above 0, which the
    product of two factors, DeepZ's, does not)."""
    graph, rewritten = traced.graph_module.graph, False
    for node in list(graph.nodes):
        resolved = traced.resolve(node)
        if resolved.operation is None or resolved.operation.name != "mul" or node.kwargs:
            continue
        if (len(node.args) != 2 or node.args[0] is not node.args[1]
                or not isinstance(node.args[0], fx.Node) or node.args[0] in traced.statics
                or node.args[0] in traced.sizes):
            continue
        _replace(graph, node, lambda x=node.args[0]: graph.call_function(torch.square, (x,)),
                 None)
        rewritten = True
    return rewritten


def _divisions(traced: TracedGraph) -> bool:
    """Each true division whose divisor changes with the pixel (not a constant, not a
    size) as a product with the divisor's reciprocal."""
    graph, rewritten = traced.graph_module.graph, False
    for node in list(graph.nodes):
        resolved = traced.resolve(node)
        if resolved.operation is None or resolved.operation.name != "div":
            continue
        if not isinstance(resolved.params, dict) or resolved.params["rounding_mode"]:
            continue
        dividend, divisor = _operands(node, ("input", "other"))
        if _is_constant(traced, divisor):
            continue
        _replace(graph, node, lambda a=dividend, b=divisor: graph.call_function(
            operator.mul, (a, graph.call_function(torch.reciprocal, (b,)))), None)
        rewritten = True
    return rewritten


def _normalisations(traced: TracedGraph) -> bool:
    """Each LayerNorm, GroupNorm and InstanceNorm of a value that changes with the pixel
    as its operations (one whose channels are unknown, a functional GroupNorm without a
    weight, is left as it is: the plan names it)."""
    graph, rewritten = traced.graph_module.graph, False
    for node in list(graph.nodes):
        resolved = traced.resolve(node)
        name = resolved.operation.name if resolved.operation is not None else None
        if (name not in ("layer_norm", "group_norm") or node in traced.statics
                or not isinstance(resolved.params, NormParams)):
            continue
        params, source = resolved.params, _first_argument(node)
        channels = _channels(traced, node, params) if params.groups is not None else None
        if params.groups is not None and (channels is None or channels % params.groups):
            continue
        def build(node=node, source=source, params=params, channels=channels) -> fx.Node:
            weight, bias = _affine_nodes(graph, node)
            if params.groups is None:
                return _layer_norm(graph, source, params, weight, bias)
            return _group_norm(traced, node, source, params, channels, weight, bias)

        # (marked: the model's float32 kernel computes otherwise)
        _replace(graph, node, build, name)
        rewritten = True
    return rewritten


def _norms(traced: TracedGraph) -> bool:
    """Each vector norm of order 2 (1) of a value that changes with the pixel as
    ``sqrt(Σ x²)`` (``Σ |x|``) over its axes, and each ``F.normalize(x)`` as
    ``x · reciprocal(eps + relu(‖x‖ - eps))`` (its ``max(‖x‖, eps)``)."""
    graph, rewritten = traced.graph_module.graph, False
    for node in list(graph.nodes):
        resolved = _named(traced, node, ("norm", "normalize"))
        if resolved is None or not isinstance(resolved.params, VectorNormParams):
            continue

        def build(source=_first_argument(node), params=resolved.params) -> fx.Node:
            terms = graph.call_function(torch.square if params.order == 2 else torch.abs,
                                        (source,))
            norm = graph.call_method("sum", (terms, params.dims),
                                     {"keepdim": params.keepdim})
            if params.order == 2:
                norm = graph.call_function(torch.sqrt, (norm,))
            if params.eps is None:
                return norm
            excess = graph.call_function(torch.relu, (graph.call_function(
                operator.sub, (norm, params.eps)),))
            floor = graph.call_function(operator.add, (excess, params.eps))
            return graph.call_function(operator.mul, (source, graph.call_function(
                torch.reciprocal, (floor,))))

        # (marked: the model's float32 kernel sums its squares in its own order)
        _replace(graph, node, build, resolved.operation.name)
        rewritten = True
    return rewritten


def _moment_reductions(traced: TracedGraph) -> bool:
    """Each variance and standard deviation over axes of a value that changes with the
    pixel as the mean of its squared deviations (over one axis: bounded below by 0) or,
    over several (a whole map), the mean of its squares less its squared mean
    (:func:`_moments`), times ``n / (n - correction)``; a standard deviation as its
    square root."""
    graph, rewritten = traced.graph_module.graph, False
    ranks = None
    for node in list(graph.nodes):
        resolved = _named(traced, node, ("var", "std"))
        if resolved is None or not isinstance(resolved.params, MomentParams):
            continue
        ranks = ranks or GraphView(traced).ranks
        if _names_batch_axis(ranks, node, resolved.params.dims):
            continue  # (left as it is: its bound rule names it)

        def build(source=_first_argument(node), params=resolved.params,
                  root=resolved.operation.name == "std") -> fx.Node:
            def average(value: object) -> fx.Node:
                return graph.call_method("mean", (value, params.dims), {"keepdim": True})

            if len(params.dims) == 1:
                variance = _centred_moments(graph, source, average)[2]
            else:
                variance = _moments(graph, source, average)[1]
            if params.correction:
                sizes = tuple(graph.call_method("size", (source, d)) for d in params.dims)
                factor = graph.call_function(moment_factor, (sizes, params.correction))
                variance = graph.call_function(operator.mul, (variance, factor))
            if not params.keepdim:
                variance = graph.call_method("squeeze", (variance, params.dims))
            return graph.call_function(torch.sqrt, (variance,)) if root else variance

        # (marked: the model's kernel sums its own way, Welford's or in two passes)
        _replace(graph, node, build, resolved.operation.name)
        rewritten = True
    return rewritten


def _names_batch_axis(ranks: dict, node: fx.Node, dims: tuple[int, ...]) -> bool:
    """Whether a negative one of ``dims`` names the batch axis of the node's input, where
    its rank is known (``x.var(-2)`` of a ``[B, F]`` value)."""
    rank = ranks.get(_first_argument(node))
    return rank is not None and any(d % rank == 0 for d in dims)


def _logsumexps(traced: TracedGraph) -> bool:
    """Each ``logsumexp`` over axes of a value that changes with the pixel as ``log Σ
    exp(x - μ) + μ`` with ``μ`` the mean over those axes: the same function in real
    arithmetic (the mean keeps the exponents near 0, as a softmax's copy does)."""
    graph, rewritten = traced.graph_module.graph, False
    ranks = None
    for node in list(graph.nodes):
        resolved = _named(traced, node, ("logsumexp",))
        if resolved is None or not isinstance(resolved.params, dict):
            continue
        ranks = ranks or GraphView(traced).ranks
        if _names_batch_axis(ranks, node, resolved.params["dims"]):
            continue  # (left as it is: its bound rule names it)

        def build(source=_first_argument(node), dims=resolved.params["dims"],
                  keepdim=resolved.params["keepdim"]) -> fx.Node:
            mean = graph.call_method("mean", (source, dims), {"keepdim": True})
            terms = graph.call_function(torch.exp, (graph.call_function(
                operator.sub, (source, mean)),))
            total = graph.call_method("sum", (terms, dims), {"keepdim": True})
            out = graph.call_function(operator.add, (graph.call_function(
                torch.log, (total,)), mean))
            return out if keepdim else graph.call_method("squeeze", (out, dims))

        # (marked: the model's kernel subtracts the largest, not the mean)
        _replace(graph, node, build, "logsumexp")
        rewritten = True
    return rewritten


def _affine_nodes(graph: fx.Graph, node: fx.Node) -> tuple[object, object]:
    """The normalisation's weight and bias as graph values (``None``: absent)."""
    if node.op == "call_module":
        module = graph.owning_module.get_submodule(node.target)
        with graph.inserting_before(node):
            return tuple(graph.get_attr(f"{node.target}.{name}")
                         if getattr(module, name, None) is not None else None
                         for name in ("weight", "bias"))
    offset = 2  # F.layer_norm(input, normalized_shape, weight, bias, eps), F.group_norm too
    return tuple(node.args[offset + i] if len(node.args) > offset + i
                 else node.kwargs.get(name) for i, name in enumerate(("weight", "bias")))


def _channels(traced: TracedGraph, node: fx.Node, params: NormParams) -> int | None:
    if node.op == "call_module":
        module = traced.graph_module.get_submodule(node.target)
        return getattr(module, "num_channels", None) or getattr(module, "num_features", None)
    return int(params.weight.numel()) if params.weight is not None else None


def _scaled(graph: fx.Graph, source: object, mean: fx.Node, variance: fx.Node,
            eps: float, widen: bool) -> fx.Node:
    """``x · r - μ · r`` with ``r = rsqrt(variance + eps)`` (``widen``: ``r`` and ``μ · r``
    unsqueezed at the end): ``(x - μ) · r`` in real arithmetic, written so that a product
    of two varying values is taken only where ``x`` varies (the pixel's cone) and once
    per group, not at every element the group's mean moves."""
    scale = graph.call_function(torch.rsqrt, (graph.call_function(operator.add,
                                                                  (variance, eps)),))
    shift = graph.call_function(operator.mul, (mean, scale))
    if widen:
        scale = graph.call_method("unsqueeze", (scale, -1))
        shift = graph.call_method("unsqueeze", (shift, -1))
    return graph.call_function(operator.sub, (graph.call_function(operator.mul,
                                                                  (source, scale)), shift))


def _moments(graph: fx.Graph, source: object, average) -> tuple[fx.Node, fx.Node]:
    """The mean ``μ`` and the variance of ``source`` over what ``average`` averages,
    the variance as ``mean(x²) - μ²`` (in real arithmetic the mean of the squared
    deviations): ``x²`` varies only where ``x`` does, where ``(x - μ)²`` varies wherever
    ``μ`` does, one new symbol at every element of the map."""
    mean = average(source)
    squares = average(graph.call_function(torch.square, (source,)))
    variance = graph.call_function(operator.sub, (squares, graph.call_function(
        torch.square, (mean,))))
    return mean, variance


def _centred_moments(graph: fx.Graph, source: object, average
                     ) -> tuple[fx.Node, fx.Node, fx.Node]:
    """``x - μ`` and the mean of its squares: a variance bounded below by 0 (each
    square's relaxation is), cheap where ``μ`` varies only where ``x`` does (a
    LayerNorm over the channels of each position)."""
    mean = average(source)
    centred = graph.call_function(operator.sub, (source, mean))
    return mean, centred, average(graph.call_function(torch.square, (centred,)))


def _affine(graph: fx.Graph, value: fx.Node, weight: object, bias: object,
            widen: bool) -> fx.Node:
    for parameter, combine in ((weight, operator.mul), (bias, operator.add)):
        if parameter is not None:
            if widen:
                parameter = graph.call_method("unsqueeze", (parameter, -1))
            value = graph.call_function(combine, (value, parameter))
    return value


def _layer_norm(graph: fx.Graph, source: object, params: NormParams, weight: object,
                bias: object) -> fx.Node:
    """``(x - μ) · rsqrt(var + eps) · w + b`` over the trailing axes: over one axis (a
    position's channels, channels last) as ``(x - μ) · rsqrt(mean((x - μ)²) + eps)``,
    the variance bounded below by 0; over more (a whole map) as :func:`_scaled` of
    :func:`_moments`."""
    dims = tuple(range(-params.trailing, 0))

    def average(value: fx.Node) -> fx.Node:
        return graph.call_method("mean", (value, dims), {"keepdim": True})

    if params.trailing == 1:
        _, centred, variance = _centred_moments(graph, source, average)
        scale = graph.call_function(torch.rsqrt, (graph.call_function(
            operator.add, (variance, params.eps)),))
        out = graph.call_function(operator.mul, (centred, scale))
    else:
        mean, variance = _moments(graph, source, average)
        out = _scaled(graph, source, mean, variance, params.eps, widen=False)
    return _affine(graph, out, weight, bias, widen=False)


def _input_shapes(traced: TracedGraph) -> dict[fx.Node, tuple[int, ...]]:
    """The input shapes of the operations whose rewrites read them (LocalResponseNorm's
    channels, an interpolation's windows that grow with the scale), on one image of the
    shape the copy is made for (none without it): read before any rewrite, on the graph
    as traced."""
    if traced.requested is None:
        return {}
    nodes = [n for n in traced.nodes if n.op.startswith("call") and n not in traced.statics
             and _needs_shape(traced.resolve(n).params)]
    return traced.input_shapes(traced.requested, nodes) if nodes else {}


def needs_shape(traced: TracedGraph, node: fx.Node) -> bool:
    """Whether the verifier's copy writes ``node`` out for one image shape alone."""
    return node.op.startswith("call") and _needs_shape(traced.resolve(node).params)


def _needs_shape(params: object) -> bool:
    return isinstance(params, LocalResponseParams) or (
        isinstance(params, InterpolateSpec) and not params.settled)


def _local_response_norms(traced: TracedGraph, shapes: dict[fx.Node, tuple[int, ...]]
                          ) -> bool:
    """Each LocalResponseNorm of a 4-D value that changes with the pixel, where the
    images' shape is known (``traced.requested``), as ``x · (k + α · (W ⋆ x²) / n)^-β``:
    ``W`` a 1×1 convolution of ones over each channel's window (``n // 2`` before it,
    ``(n - 1) // 2`` after: ``F.local_response_norm``'s zero-padded average), the
    division by ``n`` and the product by ``α`` apart (``α / n`` would round), the power
    by its own rule. ``shapes``: :func:`_input_shapes` (where it holds none, the rule
    refuses the node: a copy made without the images' shape, a value of other than 4
    axes)."""
    graph, rewritten = traced.graph_module.graph, False
    for node, shape in shapes.items():
        if len(shape) != 4 or not isinstance(traced.resolve(node).params,
                                             LocalResponseParams):
            continue
        params, source = traced.resolve(node).params, _first_argument(node)
        if params.beta == 0:  # x / (...)^0: the value itself (a review: x ** -0 refused)
            _replace(graph, node, lambda source=source: source, None)
            rewritten = True
            continue
        channels, before, after = shape[1], params.size // 2, (params.size - 1) // 2
        index = torch.arange(channels)
        window = ((index[None, :] >= index[:, None] - before)
                  & (index[None, :] <= index[:, None] + after))
        name = f"_{node.name}_channel_window"
        traced.graph_module.register_buffer(name, window.to(
            traced.float_as or torch.float32)[:, :, None, None])

        def build(node=node, source=source, params=params, name=name) -> fx.Node:
            square = graph.call_function(torch.square, (source,))
            summed = graph.call_function(F.conv2d, (square, graph.get_attr(name)))
            mean = graph.call_function(operator.truediv, (summed, float(params.size)))
            base = graph.call_function(operator.add, (
                graph.call_function(operator.mul, (mean, params.alpha)), params.k))
            power = graph.call_function(torch.pow, (base, -params.beta))
            return graph.call_function(operator.mul, (source, power))

        _replace(graph, node, build, "local_response_norm")
        rewritten = True
    return rewritten


def _group_norm(traced: TracedGraph, node: fx.Node, source: object, params: NormParams,
                channels: int, weight: object, bias: object) -> fx.Node:
    """GroupNorm on ``[N, C, ...]`` flattened to ``[N, C, L]``: per channel the mean over
    ``L``, summed over its group by a linear map of ones and divided by the channels per
    group (the group's mean: groups hold as many elements per channel), the same for the
    squares (:func:`_moments`, :func:`_scaled`); reshaped back to the input's shape."""
    graph = traced.graph_module.graph
    per_group = channels // params.groups
    group_sum = None
    if per_group > 1:
        group = torch.arange(channels) // per_group
        ones = (group[:, None] == group[None, :]).to(traced.float_as or torch.float32)
        name = f"_{node.name}_group_sum"
        traced.graph_module.register_buffer(name, ones)
        group_sum = graph.get_attr(name)

    def average(value: fx.Node) -> fx.Node:  # [N, C, L] -> the group's mean, [N, C]
        per_channel = graph.call_method("mean", (value, -1))
        if group_sum is None:
            return per_channel
        summed = graph.call_function(F.linear, (per_channel, group_sum))
        return graph.call_function(operator.truediv, (summed, float(per_group)))

    # [N, C, ...] (any rank from 2: a GroupNorm after a linear layer too) as [N, C, L]
    flat = graph.call_method("flatten", (graph.call_method("unsqueeze", (source, -1)), 2))
    mean, variance = _moments(graph, flat, average)
    out = _affine(graph, _scaled(graph, flat, mean, variance, params.eps, widen=True),
                  weight, bias, widen=True)
    shape = graph.call_function(getattr, (source, "shape"))
    return graph.call_method("reshape", (out, shape))


def _is_constant(traced: TracedGraph, value: object) -> bool:
    """Whether ``value`` is a number, a constant or a size (not computed from the image;
    a size a rewrite read, ``t.size(1)``, included: a review's ``t.sum(0) / t.shape[0]``
    had its divisor taken for a value that varies)."""
    return (not isinstance(value, fx.Node) or value in traced.statics
            or value in traced.sizes or reads_sizes(value))


def _operands(node: fx.Node, names: tuple[str, ...]) -> list:
    """The node's first arguments, positional or by keyword ``names``."""
    given = list(node.args[:len(names)])
    return given + [node.kwargs.get(k) for k in names[len(given):]]


def _replace(graph: fx.Graph, node: fx.Node, build, marked: str | None) -> None:
    """Replace ``node`` by what ``build()`` writes before it (each new node marked
    :data:`DECOMPOSED` with ``marked``, unless ``None``)."""
    before = set(graph.nodes)
    with graph.inserting_before(node):
        out = build()
    if marked is not None:
        for made in set(graph.nodes) - before:
            made.meta[DECOMPOSED] = marked
    node.replace_all_uses_with(out)
    graph.erase_node(node)


def _named(traced: TracedGraph, node: fx.Node, names: tuple[str, ...]) -> object:
    """The node's resolved settings, where it is one of the operations ``names`` of a
    value that changes with the pixel (``None`` otherwise)."""
    if node in traced.statics:
        return None
    resolved = traced.resolve(node)
    if resolved.operation is None or resolved.operation.name not in names:
        return None
    return resolved


def _softmax_form(graph: fx.Graph, source: object, dim: int, log: bool) -> fx.Node:
    """``softmax(x, dim)`` as ``e · reciprocal(Σ e)``, ``e = exp(x - mean(x))``
    (``log``: ``c - log Σ exp(c)``, ``c = x - mean(x)``)."""
    centred = graph.call_function(operator.sub, (source, graph.call_method(
        "mean", (source, dim), {"keepdim": True})))
    terms = graph.call_function(torch.exp, (centred,))
    total = graph.call_method("sum", (terms, dim), {"keepdim": True})
    if log:
        return graph.call_function(operator.sub, (centred, graph.call_function(
            torch.log, (total,))))
    return graph.call_function(operator.mul, (terms, graph.call_function(
        torch.reciprocal, (total,))))


def _softmaxes(traced: TracedGraph) -> bool:
    """Each softmax and log-softmax along a named axis of a value that changes with the
    pixel as :func:`_softmax_form`."""
    graph, rewritten = traced.graph_module.graph, False
    for node in list(graph.nodes):
        resolved = _named(traced, node, ("softmax", "log_softmax"))
        if resolved is None or not isinstance(resolved.params, dict):
            continue
        log = resolved.operation.name == "log_softmax"
        source = _first_argument(node)
        _replace(graph, node, lambda source=source, log=log, dim=resolved.params["dim"]:
                 _softmax_form(graph, source, dim, log), resolved.operation.name)
        rewritten = True
    return rewritten


def _product_kind(traced: TracedGraph, first: object, second: object) -> str | None:
    """How :func:`_product_form` writes ``first @ second``: ``"right"`` (a linear layer of
    the constant 2-D ``second``), ``"left"`` (of the constant 2-D ``first``),
    ``"products"``, or ``None`` where both are constant (nothing to bound) or a constant
    factor is a vector (left to be named)."""
    constant = [_is_constant(traced, v) for v in (first, second)]
    if all(constant):
        return None

    def rank(value: object) -> int:
        held = traced.statics.get(value) if isinstance(value, fx.Node) else None
        return held.dim() if isinstance(held, torch.Tensor) else 0

    if constant[1] and rank(second) == 2:
        return "right"
    if constant[0] and rank(first) == 2:
        return "left"
    if any(constant[i] and rank(v) < 2 for i, v in enumerate((first, second))):
        return None
    return "products"


def _product_form(traced: TracedGraph, first: object, second: object, kind: str) -> fx.Node:
    """``first @ second`` written as :func:`_product_kind` says."""
    graph = traced.graph_module.graph
    if kind == "right":
        weight = graph.call_method("transpose", (second, -2, -1))
        return graph.call_function(F.linear, (first, weight))
    if kind == "left":
        turned = graph.call_method("transpose", (second, -2, -1))
        return graph.call_method("transpose", (graph.call_function(
            F.linear, (turned, first)), -2, -1))
    factors = (graph.call_method("unsqueeze", (first, -1)),
               graph.call_method("unsqueeze", (second, -3)))
    products = graph.call_function(operator.mul, factors)
    total = graph.call_method("sum", (products, -2))
    products.meta[MATRIX_PRODUCT] = factors
    total.meta[MATRIX_PRODUCT] = products
    return total


def _matrix_products(traced: TracedGraph) -> bool:
    """Each ``a @ b`` (``torch.matmul``, ``torch.bmm``) of a value that changes with the
    pixel as :func:`_product_form`."""
    graph, rewritten = traced.graph_module.graph, False
    for node in list(graph.nodes):
        if _named(traced, node, ("matmul",)) is None or len(node.args) + len(node.kwargs) != 2:
            continue
        first, second = _operands(node, ("input", "other"))
        kind = _product_kind(traced, first, second)
        if kind is None:
            continue
        _replace(graph, node, lambda a=first, b=second, kind=kind: _product_form(
            traced, a, b, kind), None)
        rewritten = True
    return rewritten


def _einsums(traced: TracedGraph) -> bool:
    """Each ``torch.einsum`` of one or two values, one of which changes with the pixel,
    as sums, permutations and a product of matrices (:func:`_product_form`): the indices
    of one operand alone that the output drops summed, the rest ordered ``[shared kept,
    first's own, contracted]`` and ``[shared kept, contracted, second's own]``, groups of
    several indices flattened (one unsqueezed where none), multiplied, and the output's
    axes restored and ordered. An equation with an ellipsis, an index repeated in one
    operand (a diagonal) or more than two operands stays, and is refused."""
    graph, rewritten = traced.graph_module.graph, False
    for node in list(graph.nodes):
        if (node.op != "call_function" or node.target is not torch.einsum
                or node in traced.statics or node in traced.sizes):
            continue
        parsed = _einsum_parts(node)
        if parsed is None:
            continue
        if _broadcasts(traced, *parsed):
            continue
        constant = [_is_constant(traced, v) for v in parsed[2]]
        _replace(graph, node, lambda parsed=parsed, constant=constant: _einsum_form(
            graph, *parsed, constant, traced), None)
        rewritten = True
    return rewritten


def _einsum_parts(node: fx.Node) -> tuple[list[str], str, list] | None:
    """An einsum's subscripts per operand, its output's and its operands, where the
    rewrite takes it (see :func:`_einsums`)."""
    equation, *operands = node.args
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = list(operands[0])
    if not isinstance(equation, str) or node.kwargs or not 1 <= len(operands) <= 2:
        return None
    equation = equation.replace(" ", "")
    inputs, arrow, output = equation.partition("->")
    subscripts = inputs.split(",")
    letters = "".join(subscripts)
    if not arrow:  # implicit: the indices that occur once, in alphabetical order
        output = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    if (len(subscripts) != len(operands) or "." in equation
            or not all(c.isalpha() for c in letters + output)
            or any(len(set(sub)) != len(sub) for sub in [*subscripts, output])
            or not output or not set(output) <= set(letters)):
        return None  # (no output index: a sum over the batch axis too)
    return subscripts, output, operands


def _broadcasts(traced: TracedGraph, subscripts: list[str], output: str,
                operands: list) -> bool:
    """Whether a constant operand has an axis of size 1 whose index the other operand
    has too (einsum broadcasts it; the rewrite's flattening and sizes would not: a
    review's raw size mismatches)."""
    for i, (sub, value) in enumerate(zip(subscripts, operands, strict=True)):
        held = traced.statics.get(value) if isinstance(value, fx.Node) else None
        others = "".join(subscripts[:i] + subscripts[i + 1:])
        if isinstance(held, torch.Tensor) and any(
                held.shape[j] == 1 and c in others for j, c in enumerate(sub)
                if j < held.dim()):
            return True
    return False


def _einsum_form(graph: fx.Graph, subscripts: list[str], output: str, operands: list,
                 constant: list[bool], traced: TracedGraph) -> fx.Node:
    """The einsum written out (see :func:`_einsums`)."""
    def summed(value: object, sub: str, keep: str) -> tuple[object, str]:
        dropped = [i for i, c in enumerate(sub) if c not in keep]
        if not dropped:
            return value, sub
        return (graph.call_method("sum", (value, tuple(dropped))),
                "".join(c for c in sub if c in keep))

    def ordered(value: object, sub: str, order: str) -> object:
        if sub == order:
            return value
        return graph.call_method("permute", (value, *[sub.index(c) for c in order]))

    if len(operands) == 1:
        value, sub = summed(operands[0], subscripts[0], output)
        return ordered(value, sub, output)
    if output and output[0] not in subscripts[0] and output[0] in subscripts[1]:
        subscripts, operands, constant = subscripts[::-1], operands[::-1], constant[::-1]
    (a, sa), (b, sb) = (summed(v, s, output + t) for v, s, t in
                        zip(operands, subscripts, subscripts[::-1], strict=True))
    shared = [c for c in sa if c in sb and c in output]
    contracted = [c for c in sa if c in sb and c not in output]
    left, right = [c for c in sa if c not in sb], [c for c in sb if c not in sa]
    first = ordered(a, sa, "".join(shared + left + contracted))
    first = _grouped(graph, first, len(shared) + len(left), contracted)
    if not left:
        first = graph.call_method("unsqueeze", (first, len(shared)))
    second = ordered(b, sb, "".join(shared + contracted + right))
    second = _grouped(graph, _grouped(graph, second, len(shared) + len(contracted), right),
                      len(shared), contracted)
    kind = "right" if constant[1] and not shared else "products"
    if kind == "products":  # the first's own axes but the last broadcast in the second
        for _ in range(len(left) - 1):
            second = graph.call_method("unsqueeze", (second, len(shared)))
    product = _product_form(traced, first, second, kind)
    if len(left) != 1 or len(right) != 1:
        sizes = ([graph.call_method("size", (product, i)) for i in range(len(shared))]
                 + [graph.call_method("size", (a, sa.index(c))) for c in left]
                 + [graph.call_method("size", (b, sb.index(c))) for c in right])
        product = graph.call_method("reshape", (product, *sizes))
    return ordered(product, "".join(shared + left + right), output)


def _grouped(graph: fx.Graph, value: object, at: int, group: list[str]) -> object:
    """``value`` with the axes of ``group`` from ``at`` on as one (flattened; a new axis
    of size 1 where the group is empty)."""
    if not group:
        return graph.call_method("unsqueeze", (value, at))
    if len(group) > 1:
        return graph.call_method("flatten", (value, at, at + len(group) - 1))
    return value


def _attention(traced: TracedGraph) -> bool:
    """Each ``F.scaled_dot_product_attention(q, k, v)`` without a mask or dropout as
    ``softmax(q kᵀ · scale) v`` (``scale``: given, or ``1 / √(q.size(-1))``)."""
    graph, rewritten = traced.graph_module.graph, False
    for node in list(graph.nodes):
        resolved = _named(traced, node, ("attention",))
        if resolved is None or not isinstance(resolved.params, dict):
            continue
        query, key, value = _operands(node, ("query", "key", "value"))
        scale = resolved.params["scale"]

        def build(query=query, key=key, value=value, scale=scale) -> fx.Node:
            if scale is None:
                scale = graph.call_function(operator.pow, (graph.call_method(
                    "size", (query, -1)), -0.5))
            turned = graph.call_method("transpose", (key, -2, -1))
            scores = _product_form(traced, query, turned, "products")
            weights = _softmax_form(graph, graph.call_function(operator.mul,
                                                               (scores, scale)), -1, False)
            return _product_form(traced, weights, value, "products")

        _replace(graph, node, build, "attention")
        rewritten = True
    return rewritten


def _extremes(traced: TracedGraph) -> bool:
    """Each ``torch.maximum(a, b)`` of values one of which changes with the pixel as
    ``b + relu(a - b)``, ``torch.minimum(a, b)`` as ``a - relu(a - b)``."""
    graph, rewritten = traced.graph_module.graph, False
    for node in list(graph.nodes):
        resolved = _named(traced, node, ("maximum", "minimum"))
        if resolved is None or len(node.args) + len(node.kwargs) != 2:
            continue
        first, second = _operands(node, ("input", "other"))
        largest = resolved.operation.name == "maximum"

        def build(a=first, b=second, largest=largest) -> fx.Node:
            gap = graph.call_function(torch.relu, (graph.call_function(operator.sub, (a, b)),))
            return graph.call_function(operator.add if largest else operator.sub,
                                       (b if largest else a, gap))

        _replace(graph, node, build, None)
        rewritten = True
    return rewritten


# the graph targets of maxima and minima that take axes or another tensor, and whether
# each takes the least
_EXTREMES = {torch.max: False, torch.min: True, "max": False, "min": True,
             torch.amin: True, "amin": True}


def _reduced_extremes(traced: TracedGraph) -> bool:
    """Each maximum or minimum over axes as ``amax`` (:class:`~.operators.pooling.
    MaxOverParams`): ``x.max(dim)`` and ``torch.max(x, dim)`` whose values alone are used
    (``[0]``, ``.values``) as ``amax(x, dim, keepdim)``, the minima and ``amin`` as
    ``-amax(-x)`` (exact); ``torch.max(a, b)`` of two tensors as ``torch.maximum(a, b)``
    (``min``: ``minimum``). One whose indices are used stays, and is refused."""
    graph, rewritten = traced.graph_module.graph, False
    for node in list(graph.nodes):
        least = _EXTREMES.get(node.target) if node.op in ("call_function", "call_method") \
            else None
        if least is None or node in traced.statics or node in traced.sizes:
            continue
        source = _first_argument(node)
        other = _argument(node, 1, "other")
        if isinstance(other, fx.Node) and node.target not in (torch.amin, "amin"):
            _replace(graph, node, lambda a=source, b=other, least=least: graph.call_function(
                torch.minimum if least else torch.maximum, (a, b)), None)
            rewritten = True
            continue
        dim, keepdim = _argument(node, 1, "dim"), _argument(node, 2, "keepdim", False)
        if dim is None and len(node.args) + len(node.kwargs) == 1:
            # x.max(): over every axis, written so that the rule refuses it saying so
            _replace(graph, node, lambda x=source, least=least: _extreme_over(
                graph, x, (), False, least), "x.min()" if least else "x.max()")
            rewritten = True
            continue
        if dim is None or isinstance(dim, fx.Node):
            continue
        if node.target in (torch.amin, "amin"):
            values = [node]
        else:
            values = [u for u in node.users if u.op == "call_function" and (
                (u.target is operator.getitem and u.args[1] == 0)
                or (u.target is getattr and u.args[1] == "values"))]
            if not values or len(values) != len(node.users):
                continue

        with graph.inserting_before(node):
            out = _extreme_over(graph, source, dim, keepdim, least)
        for value in values:
            value.replace_all_uses_with(out)
            if value is not node:
                graph.erase_node(value)
        graph.erase_node(node)
        rewritten = True
    return rewritten


def _extreme_over(graph: fx.Graph, x: object, dim: object, keepdim: object,
                  least: bool) -> fx.Node:
    """``amax(x, dim, keepdim)``, or ``-amax(-x, ...)`` for the least (``dim=()``: over
    every axis, which the rule refuses)."""
    if least:
        x = graph.call_function(operator.neg, (x,))
    out = graph.call_function(torch.amax, (x, dim, keepdim))
    return graph.call_function(operator.neg, (out,)) if least else out


def _batch_expanded(view: GraphView, value: object) -> torch.Tensor | None:
    """The constant ``value`` expands to the batch size along its first axis alone
    (``token.expand(n, -1, -1)``, ``n = x.shape[0]``; one the layout rewrite laid out
    batch first too, :mod:`.layouts`), or ``None``."""
    if not (isinstance(value, fx.Node) and not view.varying(value)
            and value.op == "call_method" and value.target == "expand"
            and len(value.args) >= 2):
        return None
    source, sizes = value.args[0], value.args[1:]
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    if not view.batch_size(sizes[0]):  # (a review: expanded by another size, or a
        return None                    # number, it is right for one batch size only)
    held = view.constant(source) if isinstance(source, fx.Node) else None
    if not isinstance(held, torch.Tensor) or held.dim() != len(sizes) or held.shape[0] != 1:
        return None
    if not all(s == -1 or s == n for s, n in zip(sizes[1:], held.shape[1:], strict=True)):
        return None
    return held


def _class_tokens(traced: TracedGraph) -> bool:
    """Each ``torch.cat`` along an axis after the batch axis of varying values and
    constants expanded to the batch size, as the sum of its parts :func:`placed` (the
    constants unexpanded)."""
    graph, rewritten = traced.graph_module.graph, False
    for node in list(graph.nodes):
        resolved = _named(traced, node, ("cat",))
        parts = node.args[0] if node.args else node.kwargs.get("tensors")
        if resolved is None or not isinstance(parts, (tuple, list)):
            continue
        if not any(isinstance(p, fx.Node) and p.target == "expand" for p in parts):
            continue  # (no token: no view of the graph to make)
        view = GraphView(traced)
        tokens = {i: _batch_expanded(view, part) for i, part in enumerate(parts)}
        held = next((t for t in tokens.values() if t is not None), None)
        dim = resolved.params
        if held is None or not isinstance(dim, int) or dim % held.dim() == 0:
            continue
        dim %= held.dim()

        def build(parts=parts, tokens=tokens, dim=dim) -> fx.Node:
            lengths = [tokens[i].shape[dim] if tokens[i] is not None
                       else graph.call_method("size", (part, dim))
                       for i, part in enumerate(parts)]
            total = None
            for i, part in enumerate(parts):
                before = _summed(graph, lengths[:i])
                after = _summed(graph, lengths[i + 1:])
                source = part.args[0] if tokens[i] is not None else part
                piece = graph.call_function(placed, (source, dim, before, after))
                total = piece if total is None else graph.call_function(operator.add,
                                                                        (total, piece))
            return total

        _replace(graph, node, build, None)
        rewritten = True
    return rewritten


def _summed(graph: fx.Graph, lengths: list) -> object:
    """The sum of numbers and size nodes (a number where all are numbers)."""
    numbers = sum(n for n in lengths if isinstance(n, int))
    total: object = numbers
    for n in lengths:
        if not isinstance(n, int):
            total = graph.call_function(operator.add, (total, n))
    return total


def _multihead(traced: TracedGraph) -> bool:
    """Each ``nn.MultiheadAttention`` (its weights unused) as what it computes: the
    query, key and value projections (``F.linear`` of slices of ``in_proj_weight``, or
    of ``q_proj_weight`` ...), ``H`` heads of ``softmax(q kᵀ / √d) v``, merged and
    projected by ``out_proj``; the output replaces ``output[0]``. Sequence first
    (``batch_first=False``), its inputs are swapped to batch first and its output back
    (``permute(1, 0, 2)``), which :func:`~.layouts.keep_batch_first` then moves on."""
    graph, rewritten = traced.graph_module.graph, False
    for node in list(graph.nodes):
        resolved = _named(traced, node, ("multihead_attention",))
        if resolved is None or not isinstance(resolved.params, dict):
            continue
        module = traced.graph_module.get_submodule(node.target)
        inputs = _operands(node, ("query", "key", "value"))
        heads, embed = resolved.params["heads"], resolved.params["embed"]
        before = set(graph.nodes)
        with graph.inserting_before(node):
            if not module.batch_first:  # [N, B, E]: written batch first between swaps
                inputs = [graph.call_method("permute", (x, 1, 0, 2)) for x in inputs]
            out = _multihead_form(traced, node.target, module, tuple(inputs), heads, embed)
            if not module.batch_first:
                out = graph.call_method("permute", (out, 1, 0, 2))
        for made in set(graph.nodes) - before:
            made.meta[DECOMPOSED] = ("multihead_attention" if module.batch_first else
                                     "multihead_attention with batch_first=False (its "
                                     "tokens [N, B, E], the batch axis second)")
        for user in list(node.users):
            if user.args[1] == 0:
                user.replace_all_uses_with(out)
            graph.erase_node(user)
        graph.erase_node(node)
        rewritten = True
    return rewritten


def _multihead_form(traced: TracedGraph, target: str, module: Any, inputs: tuple,
                    heads: int, embed: int) -> fx.Node:
    """``nn.MultiheadAttention``'s output, written out (see :func:`_multihead`)."""
    graph = traced.graph_module.graph
    def parameter(name: str, part: int | None = None) -> object:
        if getattr(module, name, None) is None:
            return None
        got = graph.get_attr(f"{target}.{name}")
        if part is None:
            return got
        return graph.call_function(operator.getitem,
                                   (got, slice(part * embed, (part + 1) * embed)))

    depth = embed // heads
    split = []
    for part, source in enumerate(inputs):
        if module._qkv_same_embed_dim:
            weight = parameter("in_proj_weight", part)
        else:
            weight = parameter(("q_proj_weight", "k_proj_weight", "v_proj_weight")[part])
        projected = graph.call_function(F.linear, (source, weight,
                                                   parameter("in_proj_bias", part)))
        count = graph.call_method("size", (projected, 0))
        length = graph.call_method("size", (projected, 1))
        split.append(graph.call_method("transpose", (graph.call_method(
            "reshape", (projected, count, length, heads, depth)), 1, 2)))
    query, key, value = split
    turned = graph.call_method("transpose", (key, -2, -1))
    scores = graph.call_function(operator.mul, (_product_form(
        traced, query, turned, "products"), depth ** -0.5))
    weights = _softmax_form(graph, scores, -1, False)
    merged = graph.call_method("transpose", (_product_form(
        traced, weights, value, "products"), 1, 2))
    count = graph.call_method("size", (merged, 0))
    length = graph.call_method("size", (merged, 1))
    flat = graph.call_method("reshape", (merged, count, length, embed))
    return graph.call_function(F.linear, (flat, graph.get_attr(f"{target}.out_proj.weight"),
                                          graph.get_attr(f"{target}.out_proj.bias")
                                          if module.out_proj.bias is not None else None))

