"""The verifier's copies of a model with the batch axis kept first (``torch.fx`` graph
rewriting, on the traced copy only; part of :mod:`.decompose`).

The engines bound many boxes as the rows of the batch axis, so every value computed from
the image must keep that axis first. A model written sequence first (PyTorch's default
``batch_first=False`` for ``nn.MultiheadAttention`` and ``nn.TransformerEncoder``:
tokens ``[N, B, E]``, made by ``x.flatten(2).permute(2, 0, 1)``) moves it. Here each
permutation that moves the batch axis of a value computed from the image is pushed on
through what does not care where that axis is — elementwise arithmetic and activations
(constants moved alike), linear layers and LayerNorms over the last axes, an index or a
reduction along another axis, a concatenation with a class token expanded to the batch
size, the sizes read from it — until it meets the permutation that puts the axis back,
with which it composes into one that keeps it first. Every rewrite is an identity of
copies (a permutation of a constant is exact): the copy computes the model's values.

Where a rank is needed and the graph does not say it (a reshape by computed sizes), or a
permutation meets anything else, the permutation stays and the engines refuse it in one
line, as before.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import fx, nn

from .table import ELEMENTWISE, OPERATIONS, POINTWISE

# the key of ``node.meta`` naming what the verifier's copy wrote a node for (a
# normalisation, attention; :mod:`.decompose` re-exports it)
DECOMPOSED = "pixelprior_decomposed"

__all__ = ["DECOMPOSED", "GraphView", "keep_batch_first", "reads_sizes"]

TracedGraph = Any  # a :class:`~.graph.TracedGraph` (which imports this module)

# nn modules that keep their input's rank, whatever it is
_SAME_RANK_MODULES = (nn.Linear, nn.LayerNorm, nn.Dropout, nn.Identity, nn.Softmax,
                      nn.LogSoftmax, nn.BatchNorm1d, nn.BatchNorm3d)
_REDUCTIONS = ("mean", "sum", "amax")
_PERMUTES, _TRANSPOSES = ("permute", torch.permute), ("transpose", torch.transpose)
_PERMUTATIONS = _PERMUTES + _TRANSPOSES


def keep_batch_first(traced: TracedGraph) -> bool:
    """Rewrite ``traced``'s graph in place so that permutations which move the batch axis
    of values computed from the image meet the one that moves it back (see the module
    docstring).

    Returns:
        Whether anything was rewritten.
    """
    graph = traced.graph_module.graph
    if not any(n.target in _PERMUTATIONS for n in graph.nodes):
        return False  # (most models: no view of the graph to make)
    rewritten = False
    # each round moves a permutation one operation on (or composes two): a bound on the
    # rounds that grows with the graph (a 12-layer encoder written sequence first takes
    # about a third of its nodes' count), as a guard only — each rewrite moves a
    # permutation later in the graph or removes one, so the rounds end
    for _ in range(10 * len(graph.nodes) + 100):
        view = GraphView(traced)
        ranks = view.ranks
        changed = False
        for node in list(graph.nodes):
            if not view.varying(node):
                continue
            perm = _permutation(node, ranks)
            if perm is None:
                continue
            source = node.args[0]
            inner = _permutation(source, ranks) if isinstance(source, fx.Node) else None
            if inner is not None and view.varying(source):
                _compose(graph, node, source, inner, perm, ranks)
                changed = True
                break
            if perm[0] != 0 and _push(view, node, ranks):
                changed = True
                break
        if not changed:
            break
        rewritten = True
    if rewritten:
        graph.eliminate_dead_code()
    return rewritten


class GraphView:
    """What the rewrites read of the graph as it stands: which nodes are computed from
    the image (the rewrites add nodes the traced graph's index does not hold: it is made
    again after them) and the values of the constant ones."""

    def __init__(self, traced: TracedGraph) -> None:
        self.traced, self.graph = traced, traced.graph_module.graph
        self._varying: set[fx.Node] = set()
        for node in self.graph.nodes:
            if node is traced.input or (
                    node.op.startswith("call") and not _is_size(node)
                    and any(n in self._varying for n in node.all_input_nodes)):
                self._varying.add(node)
        self._values: dict[fx.Node, Any] = {}
        self._ranks: dict[fx.Node, int] | None = None

    @property
    def ranks(self) -> dict[fx.Node, int]:
        """Each value's number of axes, where the graph says it (:func:`_ranks`; the
        rewrites add their new nodes' to it)."""
        if self._ranks is None:
            self._ranks = _ranks(self)
        return self._ranks

    def varying(self, node: object) -> bool:
        return isinstance(node, fx.Node) and node in self._varying

    def batch_size(self, value: object) -> bool:
        """Whether ``value`` is the batch size read from a value computed from the
        image (``x.shape[0]``, ``x.size(0)``; ``t.size(1)`` of sequence-first tokens
        whose batch axis a permutation moved to 1)."""
        if not isinstance(value, fx.Node):
            return False
        if value.op == "call_method" and value.target == "size" and len(value.args) == 2:
            source, axis = value.args
        elif (value.op == "call_function" and value.target is operator.getitem
              and isinstance(value.args[0], fx.Node) and _is_size(value.args[0])
              and value.args[0].op == "call_function"):
            source, axis = value.args[0].args[0], value.args[1]
        else:
            return False
        if not self.varying(source) or not isinstance(axis, int) or isinstance(axis, bool):
            return False
        perm = _permutation(source, self.ranks) if source.op.startswith("call") else None
        if perm is not None:
            return axis % len(perm) == perm.index(0)
        return axis == 0

    def resolve(self, node: fx.Node) -> Any:
        return self.traced.resolve(node)

    def constant(self, node: fx.Node) -> Any:
        """A constant node's value (``None`` where it is read from a size)."""
        if node in self.traced.statics:
            return self.traced.statics[node]
        if node not in self._values:
            self._values[node] = self._evaluate(node)
        return self._values[node]

    def _evaluate(self, node: fx.Node) -> Any:
        if node.op == "get_attr":
            value: Any = self.traced.graph_module
            for part in node.target.split("."):
                value = getattr(value, part)
            return value
        if not node.op.startswith("call") or _is_size(node) or any(
                self.constant(n) is None for n in node.all_input_nodes):
            return None
        with torch.inference_mode():
            return self.traced.call(node, self.constant)


def reads_sizes(node: fx.Node) -> bool:
    """Whether ``node`` is a size query or arithmetic of size queries and numbers
    (``t.shape[0]``, ``t.size(1) * 2``): constant for one image size, as the traced
    graph's index counts sizes, for nodes the rewrites made after it."""
    if _is_size(node):
        return True
    return (node.op == "call_function" and node.target in _SIZE_ARITHMETIC
            and bool(node.all_input_nodes)
            and all(reads_sizes(n) for n in node.all_input_nodes))


_SIZE_ARITHMETIC = (operator.getitem, operator.add, operator.sub, operator.mul,
                    operator.floordiv, operator.truediv, operator.mod, operator.neg)


def _is_size(node: fx.Node) -> bool:
    """A size query (``x.size(0)``, ``x.shape``): constant for one image size."""
    return (node.op == "call_method" and node.target in ("size", "dim")) or (
        node.op == "call_function" and node.target is getattr
        and len(node.args) > 1 and node.args[1] in ("shape", "ndim"))


def _permutation(node: fx.Node, ranks: dict[fx.Node, int]) -> tuple[int, ...] | None:
    """The full permutation a ``permute`` or ``transpose`` node applies (a transpose's
    needs its rank), or ``None``."""
    if node.op not in ("call_method", "call_function") or not node.args:
        return None
    if node.target in _PERMUTES:
        given = node.args[1:] or (node.kwargs.get("dims"),)
        dims = given[0] if len(given) == 1 and isinstance(given[0], (tuple, list)) else given
        if dims and all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
            rank = len(dims)
            perm = tuple(d % rank for d in dims)
            return perm if sorted(perm) == list(range(rank)) else None
        return None
    if node.target in _TRANSPOSES and len(node.args) == 3:
        rank = ranks.get(node.args[0])
        a, b = node.args[1:]
        if rank is None or not all(isinstance(d, int) and -rank <= d < rank for d in (a, b)):
            return None
        perm = list(range(rank))
        perm[a % rank], perm[b % rank] = perm[b % rank], perm[a % rank]
        return tuple(perm)
    return None


def _compose(graph: fx.Graph, node: fx.Node, source: fx.Node, inner: tuple[int, ...],
             perm: tuple[int, ...], ranks: dict[fx.Node, int]) -> None:
    """``perm`` of ``inner`` of ``source.args[0]`` as one permutation (none where the
    two undo each other)."""
    composed = tuple(inner[p] for p in perm)
    with graph.inserting_before(node):
        out = _permuted(graph, source.args[0], composed, ranks)
    _carry(out, [node, source])
    node.replace_all_uses_with(out)
    graph.erase_node(node)


def _permuted(graph: fx.Graph, value: object, perm: tuple[int, ...],
              ranks: dict[fx.Node, int]) -> object:
    if perm == tuple(range(len(perm))):
        return value
    out = graph.call_method("permute", (value, *perm))
    ranks[out] = len(perm)
    return out


def _carry(out: object, moved: list) -> None:
    """Mark the permutation ``out`` with what the verifier's copy wrote the one it moves
    on for (so that a refusal names it, :func:`~.graph.describe`)."""
    written = next((n.meta[DECOMPOSED] for n in moved if DECOMPOSED in n.meta), None)
    if written and isinstance(out, fx.Node) and out.target == "permute":
        out.meta[DECOMPOSED] = written


def _batch_first(perm: tuple[int, ...]) -> tuple[int, ...]:
    """The permutation ``perm`` with the batch axis put back first (the others in the
    order ``perm`` gives them)."""
    return (0, *(p for p in perm if p != 0))


def _moved_to(position: int, rank: int) -> tuple[int, ...]:
    """The permutation that moves axis 0 to ``position``, the others kept in order."""
    return (*range(1, position + 1), 0, *range(position + 1, rank))


def _push(view: GraphView, node: fx.Node, ranks: dict[fx.Node, int]) -> bool:
    """Push ``node`` (a permutation moving the batch axis) past one of its users;
    whether one was rewritten."""
    for user in list(node.users):
        for rewrite in (_past_elementwise, _past_last_axes, _past_index, _past_reduction,
                        _past_concatenation, _past_size):
            if rewrite(view, user, ranks):
                return True
    return False


def _moved(view: GraphView, value: object, ranks: dict[fx.Node, int]
           ) -> tuple[int, tuple[int, ...]] | None:
    """``(position, permutation)`` of a value computed from the image that a permutation
    moving the batch axis made, or ``None``."""
    if not view.varying(value):
        return None
    perm = _permutation(value, ranks)
    if perm is None or perm[0] == 0:
        return None
    return perm.index(0), perm


def _unmoved(graph: fx.Graph, value: fx.Node, perm: tuple[int, ...],
             ranks: dict[fx.Node, int]) -> object:
    """The batch-first value a permutation node's output is ``_moved_to`` of."""
    return _permuted(graph, value.args[0], _batch_first(perm), ranks)


def _past_elementwise(view: GraphView, user: fx.Node, ranks: dict[fx.Node, int]) -> bool:
    """``f(P(a), P'(b), c)`` of elementwise ``f`` whose arguments computed from the image
    all have the batch axis at one position ``k`` of one rank, as ``M_k(f(a', b', c'))``
    (``a'``: ``P(a)`` with the batch axis first; ``c'``: a constant whose axis at ``k``
    is 1, that axis moved first)."""
    resolved = view.resolve(user) if user.op.startswith("call") else None
    if resolved is None or resolved.operation is None or resolved.rule not in (
            POINTWISE, ELEMENTWISE) or isinstance(resolved.params, str):
        return False
    varying = [n for n in user.all_input_nodes if view.varying(n)]
    moved = [_moved(view, n, ranks) for n in varying]
    if not moved or any(m is None for m in moved):
        return False
    positions = {m[0] for m in moved}
    sizes = {len(m[1]) for m in moved}
    if len(positions) != 1 or len(sizes) != 1:
        return False
    position, rank = positions.pop(), sizes.pop()
    constants = [n for n in user.all_input_nodes if n not in varying]
    if any(_constant_moved(view, n, position, rank) is False for n in constants):
        return False
    graph = view.graph
    with graph.inserting_before(user):
        mapping: dict[fx.Node, object] = {}
        for n, m in zip(varying, moved, strict=True):
            mapping[n] = _unmoved(graph, n, m[1], ranks)
        for n in constants:
            mapping[n] = _constant_moved(view, n, position, rank, graph)
        args = fx.node.map_arg(user.args, lambda n: mapping.get(n, n))
        kwargs = fx.node.map_arg(user.kwargs, lambda n: mapping.get(n, n))
        inner = graph.create_node(user.op, user.target, args, kwargs)
        ranks[inner] = rank
        out = _permuted(graph, inner, _moved_to(position, rank), ranks)
    _carry(out, varying)
    user.replace_all_uses_with(out)
    graph.erase_node(user)
    return True


def _constant_moved(view: GraphView, node: fx.Node, position: int, rank: int,
                    graph: fx.Graph | None = None) -> object:
    """A constant argument laid out for the batch-first form: itself where it does not
    reach the batch axis's position ``position`` (of ``rank`` axes, aligned from the
    right) or is a number; its axis there, of size 1, moved first where it does;
    ``False`` where it has more axes, more than one element there (it broadcasts along
    the batch axis: the model mixes its images, and with fewer axes moved first it would
    meet a token axis) or is read from a size. With ``graph``, the node that lays it
    out."""
    value = view.constant(node)
    if not isinstance(value, torch.Tensor):
        return False if value is None else node
    at = value.dim() - (rank - position)
    if value.dim() > rank:
        return False
    if at < 0:
        return node
    if value.shape[at] != 1:  # (a review: with fewer axes, moved first it would meet a
        return False          # token axis of the batch-first form, not the batch axis)
    if graph is None:
        return True
    return graph.call_method("permute", (node, at, *(i for i in range(value.dim())
                                                     if i != at)))


def _past_last_axes(view: GraphView, user: fx.Node, ranks: dict[fx.Node, int]) -> bool:
    """A linear layer or a LayerNorm over the last axes, of ``P(a)`` whose batch axis is
    before them, as ``M_k(f(a'))``."""
    first = user.args[0] if user.args else None
    moved = _moved(view, first, ranks)
    if moved is None or any(n is not first and view.varying(n)
                            for n in user.all_input_nodes):
        return False
    position, perm = moved
    covered = _last_axes(view, user)
    if covered is None or position >= len(perm) - covered:
        return False
    graph = view.graph
    with graph.inserting_before(user):
        inner = graph.create_node(user.op, user.target,
                                  (_unmoved(graph, first, perm, ranks), *user.args[1:]),
                                  dict(user.kwargs))
        ranks[inner] = len(perm)
        out = _permuted(graph, inner, _moved_to(position, len(perm)), ranks)
    _carry(out, [first])
    user.replace_all_uses_with(out)
    graph.erase_node(user)
    return True


def _last_axes(view: GraphView, node: fx.Node) -> int | None:
    """How many last axes a linear layer (1) or a LayerNorm (its normalised shape's)
    computes over, or ``None`` for anything else."""
    traced = view.traced
    operation = OPERATIONS.lookup(node, traced.modules)
    name = operation.name if operation is not None else None
    if name == "linear":
        return 1
    if name == "layer_norm":
        if node.op == "call_module":
            return len(traced.modules[node.target].normalized_shape)
        shape = node.args[1] if len(node.args) > 1 else node.kwargs.get("normalized_shape")
        if isinstance(shape, int):
            return 1
        if isinstance(shape, (tuple, list)):
            return len(shape)
    return None


def _past_index(view: GraphView, user: fx.Node, ranks: dict[fx.Node, int]) -> bool:
    """``P(a)[index]`` of numbers and slices that take the batch axis whole (``x[0]``,
    ``x[1:, :]``, ``x[0, :, 2]``) as ``M_{k'}(a'[:, index without it])`` (``k'``: the
    batch axis's position less the numbers before it)."""
    if user.op != "call_function" or user.target is not operator.getitem:
        return False
    source, index = user.args
    index = index if isinstance(index, tuple) else (index,)
    moved = _moved(view, source, ranks)
    if moved is None or not index or not all(
            isinstance(i, slice) or (isinstance(i, int) and not isinstance(i, bool))
            for i in index) or not all(isinstance(part, (int, type(None))) for i in index
                                       if isinstance(i, slice)
                                       for part in (i.start, i.stop, i.step)):
        return False
    position, perm = moved
    if len(index) > position and index[position] != slice(None):
        return False  # (an index of the batch axis itself)
    numbers = sum(isinstance(i, int) for i in index[:position])
    rank = len(perm) - sum(isinstance(i, int) for i in index)
    graph = view.graph
    with graph.inserting_before(user):
        inner = graph.call_function(operator.getitem, (
            _unmoved(graph, source, perm, ranks),
            (slice(None), *index[:position], *index[position + 1:])))
        ranks[inner] = rank
        out = _permuted(graph, inner, _moved_to(position - numbers, rank), ranks)
    _carry(out, [source])
    user.replace_all_uses_with(out)
    graph.erase_node(user)
    return True


def _past_concatenation(view: GraphView, user: fx.Node, ranks: dict[fx.Node, int]) -> bool:
    """``torch.cat`` along another axis of values whose batch axis a permutation moved to
    one position ``k`` and of constants expanded to the batch size there (a class token
    written sequence first, ``torch.cat([token.expand(-1, n, -1), x], 0)``), as
    ``M_k(cat([a', token'.expand(n, -1, -1)], d'))``: :func:`~.decompose._class_tokens`
    then places the token as it does one written batch first."""
    if user.op != "call_function" or user.target not in (torch.cat, torch.concat):
        return False
    parts = user.args[0] if user.args else user.kwargs.get("tensors")
    dim = user.args[1] if len(user.args) > 1 else user.kwargs.get("dim", 0)
    if not isinstance(parts, (tuple, list)) or not isinstance(dim, int) or isinstance(
            dim, bool) or set(user.kwargs) - {"tensors", "dim"}:
        return False
    moved = {part: _moved(view, part, ranks) for part in parts if view.varying(part)}
    if not moved or None in moved.values():
        return False
    positions = {m[0] for m in moved.values()}
    ranks_of = {len(m[1]) for m in moved.values()}
    if len(positions) != 1 or len(ranks_of) != 1:
        return False
    position, rank = positions.pop(), ranks_of.pop()
    if dim % rank == position or not all(
            part in moved or _expanded_token(view, part, position, rank) for part in parts):
        return False
    order = (position, *(i for i in range(rank) if i != position))
    graph = view.graph
    with graph.inserting_before(user):
        laid = []
        for part in parts:
            if part in moved:
                laid.append(_unmoved(graph, part, moved[part][1], ranks))
                continue
            token, sizes = part.args[0], _sizes_of(part)
            turned = graph.call_method("permute", (token, *order))
            laid.append(graph.call_method("expand", (turned, *(sizes[i] for i in order))))
        dim %= rank
        inner = graph.call_function(torch.cat, (laid, dim + 1 if dim < position else dim))
        ranks[inner] = rank
        out = _permuted(graph, inner, _moved_to(position, rank), ranks)
    _carry(out, list(moved))
    user.replace_all_uses_with(out)
    graph.erase_node(user)
    return True


def _past_size(view: GraphView, user: fx.Node, ranks: dict[fx.Node, int]) -> bool:
    """A size of ``P(a)`` (``t.size(1)``, ``t.shape[1]``: the batch size a sequence-first
    model reads to expand its class token) as the size of ``a'``'s axis it is, so that
    nothing but the permutation's own users keep it."""
    source = user.args[0] if user.args else None
    moved = _moved(view, source, ranks)
    if moved is None:
        return False
    position, perm = moved

    def axis(i: int) -> int:
        i %= len(perm)
        return 0 if i == position else i + 1 if i < position else i

    graph = view.graph
    if user.op == "call_method" and user.target == "size" and len(user.args) == 2 and (
            isinstance(user.args[1], int)) and not user.kwargs:
        items = [(user, user.args[1])]
    elif (user.op == "call_function" and user.target is getattr and user.args[1] == "shape"
          and user.users and all(u.op == "call_function" and u.target is operator.getitem
                                 and isinstance(u.args[1], int) for u in user.users)):
        items = [(u, u.args[1]) for u in user.users]
    else:
        return False
    with graph.inserting_before(user):
        unmoved = _unmoved(graph, source, perm, ranks)
        for node, i in items:
            node.replace_all_uses_with(graph.call_method("size", (unmoved, axis(i))))
    for node, _ in items:
        if node is not user:
            graph.erase_node(node)
    graph.erase_node(user)
    return True


def _sizes_of(node: fx.Node) -> tuple:
    """An ``expand`` node's sizes, given one by one or as one tuple."""
    sizes = node.args[1:]
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    return tuple(sizes)


def _expanded_token(view: GraphView, node: object, position: int, rank: int) -> bool:
    """Whether ``node`` is a constant of ``rank`` axes, of size 1 at ``position``,
    expanded there by a size (``token.expand(-1, n, -1)``) and nowhere else."""
    if not (isinstance(node, fx.Node) and node.op == "call_method"
            and node.target == "expand" and not view.varying(node)):
        return False
    token = view.constant(node.args[0]) if isinstance(node.args[0], fx.Node) else None
    sizes = _sizes_of(node)
    if not isinstance(token, torch.Tensor) or token.dim() != rank or len(sizes) != rank:
        return False
    if not view.batch_size(sizes[position]):  # (a review: expanded by another size, or
        return False                          # a number: right for one batch size only)
    return token.shape[position] == 1 and all(
        size == -1 or (isinstance(size, int) and size == token.shape[i])
        for i, size in enumerate(sizes) if i != position)


def _past_reduction(view: GraphView, user: fx.Node, ranks: dict[fx.Node, int]) -> bool:
    """A mean, sum or ``amax`` of ``P(a)`` over axes other than the batch axis, as the
    same reduction of ``a'`` over those axes, the batch axis moved back after."""
    if user.op not in ("call_method", "call_function") or (
            getattr(user.target, "__name__", user.target) not in _REDUCTIONS):
        return False
    source = user.args[0] if user.args else None
    moved = _moved(view, source, ranks)
    dim = user.args[1] if len(user.args) > 1 else user.kwargs.get("dim")
    keepdim = user.args[2] if len(user.args) > 2 else user.kwargs.get("keepdim", False)
    dims = (dim,) if isinstance(dim, int) else dim
    extra = set(user.kwargs) - {"dim", "keepdim"}
    if (moved is None or not isinstance(dims, (tuple, list)) or not dims or extra
            or not isinstance(keepdim, bool)
            or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims)):
        return False
    position, perm = moved
    rank = len(perm)
    dims = sorted({d % rank for d in dims})
    if position in dims:
        return False
    mapped = tuple(d + 1 if d < position else d for d in dims)
    after = position if keepdim else position - sum(d < position for d in dims)
    graph = view.graph
    with graph.inserting_before(user):
        inner = graph.create_node(user.op, user.target,
                                  (_unmoved(graph, source, perm, ranks), mapped),
                                  {"keepdim": keepdim})
        out_rank = rank if keepdim else rank - len(dims)
        ranks[inner] = out_rank
        out = _permuted(graph, inner, _moved_to(after, out_rank), ranks)
    _carry(out, [source])
    user.replace_all_uses_with(out)
    graph.erase_node(user)
    return True


def _ranks(view: GraphView) -> dict[fx.Node, int]:
    """The number of axes of each value the graph says it of without running (the image
    has 4; a constant its value's; left out where a reshape by computed sizes or an
    operation this does not know leaves it open)."""
    ranks: dict[fx.Node, int] = {}
    for node in view.graph.nodes:
        rank = _rank(view, node, ranks)
        if rank is not None:
            ranks[node] = rank
    return ranks


def _rank(view: GraphView, node: fx.Node, ranks: dict[fx.Node, int]) -> int | None:
    traced = view.traced
    if not view.varying(node):  # (one read from a size, as a token expanded by the
        held = view.constant(node)  # batch size, has no value here: its form says)
        if isinstance(held, torch.Tensor) or held is not None or _is_size(node):
            return held.dim() if isinstance(held, torch.Tensor) else None
    if node is traced.input:
        return 4
    if not node.op.startswith("call") or not node.args:
        return None
    first = node.args[0]
    known = ranks.get(first) if isinstance(first, fx.Node) else None
    if node.op == "call_module":
        module = traced.modules[node.target]
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.MaxPool2d,
                               nn.AvgPool2d)):
            return 4
        if isinstance(module, _SAME_RANK_MODULES) or view.resolve(node).rule in (
                POINTWISE, ELEMENTWISE):  # (any activation module)
            return known
        return None
    name = getattr(node.target, "__name__", node.target)
    if name in ("permute",):
        perm = _permutation(node, ranks)
        return len(perm) if perm is not None else None
    if name in ("flatten",):
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return start + 1 if isinstance(start, int) and start >= 0 and end == -1 else None
    if name in ("conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d"):
        return 4
    if name in ("transpose", "contiguous", "linear", "layer_norm", "softmax", "clone",
                "batch_norm",
                "float", "log_softmax", "placed"):
        return known
    if name in _REDUCTIONS:
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        dims = (dim,) if isinstance(dim, int) else dim
        if known is None or not isinstance(dims, (tuple, list)) or not dims:
            return None
        return known if keepdim is True else known - len(set(d % known for d in dims))
    resolved = view.resolve(node)
    if resolved.rule in (POINTWISE, ELEMENTWISE):  # broadcasting: the largest rank
        given = [ranks.get(a) if isinstance(a, fx.Node) else 0 for a in node.all_input_nodes]
        return max(given) if given and None not in given else None
    if name in ("view", "reshape") and len(node.args) > 1:
        sizes = node.args[1:]
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = sizes[0]
        return len(sizes)
    if name == "unsqueeze" and known is not None:
        return known + 1
    if name in ("cat", "concat") and isinstance(first, (tuple, list)):
        given = {ranks.get(p) for p in first if isinstance(p, fx.Node)}
        return given.pop() if len(given) == 1 else None
    if name == "expand":
        return len(_sizes_of(node))
    if name == "getitem" and known is not None:
        index = node.args[1] if isinstance(node.args[1], tuple) else (node.args[1],)
        if all(isinstance(i, (int, slice, type(None))) and not isinstance(i, bool)
               for i in index):
            return known - sum(isinstance(i, int) for i in index) + index.count(None)
    return None
