"""A model traced with ``torch.fx``, with what the cone engines need to know of it: its
constants, what each node runs, and which registered operation that is."""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.experimental.optimization import fuse

from ...models import OnnxModel, copy_module
from . import operators  # noqa: F401  (registers the operations)
from .decompose import DECOMPOSED, expand_encoders, needs_shape
from .decompose import decompose as rewritten
from .operators.activations import cast_dtype, narrowing_dtype
from .operators.resampling import resample
from .table import (
    COMPUTED_SETTINGS,
    OPERATIONS,
    Computed,
    NodeCall,
    Operation,
    WindowRule,
    is_number,
)

__all__ = ["AGREEMENT", "FxUnsupportedError", "Resolved", "TracedGraph", "check_agreement",
           "check_same_program", "check_shape", "computed_attributes", "describe",
           "model_dtype", "training_module", "untraceable", "untraceable_advice",
           "without_inplace"]

# Operations that copy a constant tensor's values exactly (no rounding, no conversion)
CONSTANT_COPIES = frozenset({"identity", "dropout", "getitem", "unsqueeze", "squeeze",
                             "reshape", "expand", "neg", "cat", "permute", "transpose",
                             "placed", "piece", "repeat_interleave"})

# How far (relative to an image's largest score) the model's own scores may lie from its
# traced graph's, both in the model's dtype (the same operations), before it is refused
AGREEMENT = 1e-4

# Position of ``inplace`` in functional activations (set to False in the engine's copy).
_INPLACE_POSITION = {F.relu: 1, F.relu6: 1, F.hardswish: 1, F.hardsigmoid: 1, F.silu: 1,
                     F.mish: 1, F.leaky_relu: 2, F.elu: 2, F.hardtanh: 3, F.dropout: 3,
                     F.dropout2d: 3}


class FxUnsupportedError(ValueError):
    """The graph cannot be run incrementally at all (an in-place op, several inputs)."""


@dataclass(frozen=True)
class Resolved:
    """What a node is to the cone engines.

    Attributes:
        operation: the registered operation (``None``: not one the table knows).
        params: its settings read from the node (or why this call is not supported).
        rule: the incremental engine's :class:`WindowRule`, or why it cannot run it on
            windows (``None`` with no operation).
    """

    operation: Operation | None
    params: Any
    rule: WindowRule | str | None


def describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """A node's operation in words: ``Upsample (up)``, ``Tensor.flip()``, ``cumsum``;
    one the verifier's copy wrote says what it wrote it for (``Tensor.permute() of what
    the verifier writes multihead_attention as``)."""
    if node.op == "call_module":
        name = f"{type(modules[node.target]).__name__} ({node.target})"
    elif node.op == "call_method":
        name = f"Tensor.{node.target}()"
    else:
        name = getattr(node.target, "__name__", str(node.target))
    written = node.meta.get(DECOMPOSED)
    return f"{name} of what the verifier writes {written} as" if written else name


def _fetch(root: nn.Module, target: str) -> Any:
    value: Any = root
    for part in target.split("."):
        value = getattr(value, part)
    return value


# ``x += y`` and the like: torch.fx's proxies have no in-place operators, so Python
# records them as ``x + y`` while the model writes into ``x``; these record them as
# themselves, to be checked like in-place activations (and run out of place where that
# is the same function)
IN_PLACE_OPERATORS = {operator.iadd: operator.add, operator.isub: operator.sub,
                      operator.imul: operator.mul, operator.itruediv: operator.truediv}


class _InPlaceProxy(fx.Proxy):
    def __iadd__(self, other):
        return self.tracer.create_proxy("call_function", operator.iadd, (self, other), {})

    def __isub__(self, other):
        return self.tracer.create_proxy("call_function", operator.isub, (self, other), {})

    def __imul__(self, other):
        return self.tracer.create_proxy("call_function", operator.imul, (self, other), {})

    def __itruediv__(self, other):
        return self.tracer.create_proxy("call_function", operator.itruediv, (self, other),
                                        {})


class _Tracer(fx.Tracer):
    """``torch.fx``'s tracer, recording in-place operators (:data:`IN_PLACE_OPERATORS`)."""

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _InPlaceProxy(node, self)


def _trace(model: nn.Module) -> fx.GraphModule:
    """``model`` traced, its transformer encoders written out (:func:`expand_encoders`)."""
    tracer = _Tracer()
    graph = tracer.trace(model)
    name = model.__class__.__name__ if isinstance(model, nn.Module) else model.__name__
    traced = fx.GraphModule(tracer.root, graph, name)
    expand_encoders(traced)
    return traced


def _traced(model: nn.Module, fold: bool = True) -> fx.GraphModule:
    """A traced copy of ``model``; with ``fold``, every BatchNorm that follows a
    convolution folded into it (``torch.fx``'s own pass; the plain trace where that pass
    fails)."""
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        raise FxUnsupportedError(f"the model is wrapped in {type(model).__name__}, which "
                                 "torch.fx cannot trace: give its .module (the network "
                                 "itself)")
    traced = _trace(copy_module(model))
    if not fold:
        return traced
    try:
        return fuse(traced, no_trace=True)  # on a copy: ``traced`` is left as it is
    except Exception:  # noqa: BLE001 - a pattern the pass cannot fold: as traced
        return traced


# Operations whose output may share its first input's memory (a view, or the input itself).
_ALIAS_METHODS = frozenset({
    "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "squeeze",
    "unsqueeze", "expand", "expand_as", "transpose", "permute", "t", "narrow", "select",
    "contiguous", "detach", "float", "double", "to", "type", "type_as", "chunk", "split",
    "unbind", "as_strided", "__getitem__"})
_ALIAS_FUNCTIONS = frozenset({
    torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.transpose,
    torch.permute, torch.t, torch.narrow, torch.select, torch.chunk, torch.split,
    torch.unbind, torch.detach, F.dropout, F.dropout2d, F.alpha_dropout, F.feature_alpha_dropout,
    operator.getitem})
_ALIAS_MODULES = (nn.Identity, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout1d,
                  nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def _inplace(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` writes into its first input (an in-place activation)."""
    if node.op == "call_module":
        module = modules[node.target]  # a dropout in eval mode returns its input as it is
        return getattr(module, "inplace", None) is True and not isinstance(
            module, _ALIAS_MODULES)
    if node.op != "call_function" or node.target in _ALIAS_FUNCTIONS:
        return False
    if node.target in IN_PLACE_OPERATORS:
        return True
    position = _INPLACE_POSITION.get(node.target)
    return bool(node.kwargs.get("inplace")) or (
        position is not None and len(node.args) > position and node.args[position] is True)


def _may_alias(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node``'s output may share the memory of its first input."""
    if node.op == "call_module":
        return isinstance(modules[node.target], _ALIAS_MODULES) or _inplace(node, modules)
    if node.op == "call_method":
        return node.target in _ALIAS_METHODS
    return node.op == "call_function" and (node.target in _ALIAS_FUNCTIONS
                                           or _inplace(node, modules))


def _overwritten_elsewhere(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """Where an in-place ``node`` would change a value read elsewhere (the eager model
    computes another function than the out-of-place copy the engines run): the reader
    or the input named, or ``None`` when its input is read by it alone."""
    chain, value = {node}, node.args[0] if node.args else None
    while isinstance(value, fx.Node):
        others = [user for user in value.users if user not in chain]
        if others:
            return f"{value.name} is read again by {others[0].name}"
        if value.op in ("placeholder", "get_attr"):
            return f"it writes into {'the input' if value.op == 'placeholder' else value.name}"
        if not _may_alias(value, modules):
            return None
        chain.add(value)
        value = value.args[0] if value.args else None
    return None


def without_inplace(graph_module: fx.GraphModule) -> None:
    """In-place activations write into values the cache keeps: make them out of place
    where that computes the same function (their input read by them alone); refuse
    the others and other in-place operations.

    Args:
        graph_module: a traced model, changed in place (its graph and its modules'
            ``inplace`` flags; call ``recompile()`` before running its ``forward``).

    Raises:
        FxUnsupportedError: an in-place method or function, a write into ``out=``, or an
            in-place activation whose input is used again.
    """
    modules = dict(graph_module.named_modules())
    for node in graph_module.graph.nodes:
        name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
        if node.op in ("call_method", "call_function") and isinstance(name, str) and (
                name.endswith("_") and not name.endswith("__")):
            raise FxUnsupportedError(f"in-place operation {name} ({node.name})")
        if node.op in ("call_method", "call_function") and (
                node.kwargs.get("out") is not None):  # (``F.normalize`` traces out=None)
            raise FxUnsupportedError(f"{name} ({node.name}) writes into out=: an in-place "
                                     "write torch.fx does not see; drop out=")
        if _inplace(node, modules):
            where = _overwritten_elsewhere(node, modules)
            if where is not None:
                named = describe(node, modules) + (
                    "" if node.op == "call_module" else f" ({node.name})")
                raise FxUnsupportedError(
                    f"in-place operation {named} changes a value used again ({where}); "
                    "make it out of place (inplace=False, or x = x + y for x += y)")
    for module in graph_module.modules():
        if isinstance(getattr(module, "inplace", None), bool):
            module.inplace = False
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and node.target in IN_PLACE_OPERATORS:
            node.target = IN_PLACE_OPERATORS[node.target]  # read once: the same function
        if node.op == "call_function" and node.kwargs.get("inplace"):
            node.kwargs = {**node.kwargs, "inplace": False}
        position = _INPLACE_POSITION.get(node.target) if node.op == "call_function" else None
        if position is not None and len(node.args) > position and node.args[position]:
            node.args = (*node.args[:position], False, *node.args[position + 1:])


def training_module(model: nn.Module) -> str | None:
    """The first module of ``model`` (itself included) in training mode, in words, or
    ``None``: bounds of a copy put in eval mode would be of another function (BatchNorm
    and dropout act otherwise in training)."""
    for name, module in model.named_modules():
        if module.training:
            return "the model" if not name else f"{type(module).__name__} ({name})"
    return None


# pre-hooks that only compute a weight from the module's own tensors (weight_norm's, and
# spectral_norm's: in eval mode no power iteration): run once on the copy, then removed
APPLIED_HOOKS = ("WeightNorm", "SpectralNorm")


def _check_hooks(model: nn.Module) -> None:
    """``torch.fx`` does not record forward hooks, nor a forward replaced on an instance:
    a model that has any computes what its traced graph does not. (The pre-hooks of
    :data:`APPLIED_HOOKS` only set the weight the graph reads: they are run once on the
    copy instead, :func:`_weight_hooks_applied`.)"""
    from torch.nn.modules import module as module_state
    if module_state._global_forward_hooks or module_state._global_forward_pre_hooks:
        raise FxUnsupportedError("global forward hooks are registered "
                                 "(torch.nn.modules.module.register_module_forward_hook); "
                                 "torch.fx does not record them: remove them")
    for name, module in model.named_modules():
        if "forward" in vars(module):
            raise FxUnsupportedError(
                f"{type(module).__name__} ({name or 'the model'}) has its forward replaced "
                "on the instance; the engines know its class's: set it in a subclass")
        pre = [hook for hook in module._forward_pre_hooks.values()
               if type(hook).__name__ not in APPLIED_HOOKS]
        if module._forward_hooks or pre:
            raise FxUnsupportedError(
                f"{type(module).__name__} ({name or 'the model'}) has a forward hook; "
                "torch.fx does not record hooks: remove it, or compute it in forward()")


def _weight_hooks_applied(model: nn.Module) -> nn.Module:
    """``model``, or where it has pre-hooks of :data:`APPLIED_HOOKS` a copy with each
    weight computed from its current tensors and the hooks removed (the traced graph
    reads the weight as it stands; a BatchNorm folded into it stays folded)."""
    if not any(type(hook).__name__ in APPLIED_HOOKS for module in model.modules()
               for hook in module._forward_pre_hooks.values()):
        return model
    model = copy_module(model)
    with torch.no_grad():
        for module in model.modules():
            for key, hook in list(module._forward_pre_hooks.items()):
                if type(hook).__name__ in APPLIED_HOOKS:
                    hook(module, ())
                    del module._forward_pre_hooks[key]
    return model


class TracedGraph:
    """A traced copy of a model (BatchNorm folded, activations out of place).

    Args:
        model: the network (in eval mode).
        fold: fold BatchNorm into the convolution before it (faster; the verifier keeps
            the model's own operations).
        float_as: run the model's ``.float()`` calls as casts to this dtype (the
            verifier's float64 copy stays float64 throughout; ``None``: as written).
        decompose: run divisions by values that change with the pixel and LayerNorm,
            GroupNorm and InstanceNorm as the operations the bound rules relax (the
            verifier's copies: the same function in real arithmetic; see
            :mod:`.decompose`).
        source_dtype: the dtype of the model ``model`` is a copy of (the verifier's
            float64 copies of a float32 model): an interpolation's weights are read off
            that dtype's kernel (``None``: the values' own).
        shape: the images' ``(C, H, W)``, where known: an operation whose settings the
            model computes from a value's size (``F.avg_pool2d(out, out.size()[3])``)
            gets the numbers they are on such images (:meth:`settled`), before the
            rewrites; ``None``: such an operation keeps its computed settings (no rule
            reads them, and :attr:`unsettled` says so).

    Attributes:
        requested: the images' shape given (``None``: none).
        shape: the images' shape the graph holds for alone: settled for it, or a
            LocalResponseNorm or an area or antialiased interpolation written out for it;
            ``None`` where nothing was (no operation needs it, or no shape was given).
        unsettled: operations that read sizes remain (no shape was given, or they read
            the batch size), or one the verifier's copy could not write out without the
            shape (a LocalResponseNorm, an area or antialiased interpolation).

    Raises:
        torch.fx.proxy.TraceError (or another tracing error): ``torch.fx`` cannot trace it.
        FxUnsupportedError: the graph has in-place operations that change a value used
            again (or in-place methods), forward hooks, or several image inputs.
    """

    def __init__(self, model: nn.Module, fold: bool = True,
                 float_as: torch.dtype | None = None, decompose: bool = False,
                 source_dtype: torch.dtype | None = None,
                 shape: tuple[int, ...] | None = None) -> None:
        self.float_as, self.source_dtype = float_as, source_dtype
        _check_hooks(model)
        self.graph_module = _traced(_weight_hooks_applied(model), fold)
        without_inplace(self.graph_module)
        self._index()
        self.requested = tuple(shape) if shape is not None else None
        fixed = self.requested is not None and self.settled(self.requested)
        if decompose and rewritten(self):
            self._index()
        self.shape = self.requested if fixed or self._written_for_shape() else None
        self.unsettled = bool(self._reading_sizes()) or (decompose and any(
            needs_shape(self, node) for node in self.nodes))

    def _written_for_shape(self) -> bool:
        """Whether a rewrite read the images' shape (a LocalResponseNorm's channels, an
        interpolation's windows that grow with the scale)."""
        return any(node.meta.get(DECOMPOSED) == "local_response_norm" or (
            node.target is resample and len(node.args) > 1
            and getattr(node.args[1], "needs_shape", False)) for node in self.nodes)

    def _reading_sizes(self) -> list[fx.Node]:
        """The operations that read a value's size other than as a reshape's
        (``F.avg_pool2d(out, out.size()[3])``: settings computed in the model; a
        softmax or a sum along ``h.dim() - 1``; a crop ``h[:, :, :h.shape[2] // 2]``;
        ``h ** (h.shape[1] // 2)``, ``h * h.shape[-1]``): given the numbers those sizes
        are, the rules read them as settings. (``x.view(x.size(0), -1)`` stays as it
        is: the engines run reshapes by sizes.)"""
        return [node for node in self.nodes if node.op.startswith("call")
                and node not in self.sizes and node not in self.statics
                and any(n in self.sizes and not _reshapes_by(node, n)
                        for n in node.all_input_nodes)]

    def settled(self, shape: tuple[int, ...]) -> bool:
        """Give each operation that reads sizes other than as a reshape's (settings the
        model computes from them, ``F.avg_pool2d(out, out.size()[3])``,
        ``F.interpolate(x, size=y.shape[2:])``; an axis ``h.dim() - 1``; a crop; a
        factor) the numbers those sizes are on images of ``shape``, in the graph: the
        function on such images, where the bound rules read numbers. A size that reads
        the batch size is left as it is (the boxes are the rows of one call).

        Args:
            shape: the images' ``(C, H, W)``.

        Returns:
            Whether any setting was written as a number (the graph then holds for images
            of this shape only).
        """
        computed = self._reading_sizes()
        if not computed:
            return False
        one = self._zeros(shape)
        try:
            values = self._size_values(one)
            batch = self._reads_batch(values, self._size_values(
                one.expand(3, *shape).contiguous()))
        except Exception:  # noqa: BLE001 - a graph that fails on such images: refused
            return False  # later, by its plan (the model's own error shows when it runs)
        fixed = {node: values[node] for node in self.sizes
                 if node not in batch and is_number(values[node])}
        settled = False
        for node in computed:
            if any(n in fixed for n in node.all_input_nodes):
                node.args = fx.node.map_arg(node.args, lambda n: fixed.get(n, n))
                node.kwargs = fx.node.map_arg(node.kwargs, lambda n: fixed.get(n, n))
                settled = True
        if settled:
            self.graph_module.recompile()
            self._index()
        return settled

    def _index(self) -> None:
        """What the engines read of the graph: its nodes, modules, input, constants and
        sizes, and where each value is used last."""
        self.nodes = list(self.graph_module.graph.nodes)
        self.modules = dict(self.graph_module.named_modules())
        placeholders = [n for n in self.nodes if n.op == "placeholder"]
        if any(not n.args for n in placeholders[1:]):
            raise FxUnsupportedError("the model takes more than one input")
        self.input = placeholders[0]
        self.statics = self._statics()
        self.sizes = self._sizes()
        self._batch_size_checked = False  # batch_size_use, once (check_agreement)
        position = {n: i for i, n in enumerate(self.nodes)}
        self.last_use = {n: max(position[u] for u in n.users) for n in self.nodes if n.users}

    def copied_constants(self, leaf: Callable[[fx.Node], bool]) -> set[fx.Node]:
        """The constant tensors that are exact copies of ``leaf`` attributes: the leaves
        themselves and what :data:`CONSTANT_COPIES` make of them alone (``w[:, None,
        None]``, ``w.view(1, -1, 1, 1)``): values the float32 model and the float64 copy
        hold alike, where one computed in ``forward`` (``w / w.norm()``) rounds its own
        way in each.

        Args:
            leaf: whether a ``get_attr`` node's value is held alike (a parameter or a
                buffer of the model).
        """
        held: set[fx.Node] = set()
        for node in self.nodes:
            value = self.statics.get(node)
            if not isinstance(value, torch.Tensor) and node not in self.sizes:
                continue  # (a size node: a class token placed by a size, a copy too)
            if node.op == "get_attr":
                if leaf(node):
                    held.add(node)
                continue
            operation = self.resolve(node).operation if node.op.startswith("call") else None
            tensors = [n for n in node.all_input_nodes
                       if isinstance(self.statics.get(n), torch.Tensor)]
            if (operation is not None and operation.name in CONSTANT_COPIES and tensors
                    and all(n in held for n in tensors)):
                held.add(node)
        return held

    def _statics(self) -> dict[fx.Node, Any]:
        """Values that do not depend on the image: parameters, constants, defaults."""
        values: dict[fx.Node, Any] = {}
        with torch.inference_mode():
            for node in self.nodes:
                if node.op == "get_attr":
                    values[node] = self._constant(_fetch(self.graph_module, node.target))
                elif node.op == "placeholder" and node is not self.nodes[0]:
                    values[node] = node.args[0]
                elif node.op.startswith("call") and all(n in values
                                                        for n in node.all_input_nodes):
                    values[node] = self.call(node, values.__getitem__)
        return values

    def _constant(self, value: Any) -> Any:
        """A tensor attribute as the engines use it: a floating tensor that is neither a
        parameter nor a buffer (``self.w = torch.randn(...)``) is not converted by
        ``model.to(dtype)``, so it is cast to ``float_as`` here (exactly: a wider float
        holds every value of a narrower one)."""
        if (self.float_as is not None and isinstance(value, torch.Tensor)
                and value.is_floating_point() and value.dtype != self.float_as
                and torch.finfo(value.dtype).bits <= torch.finfo(self.float_as).bits):
            return value.to(self.float_as)
        return value

    def _sizes(self) -> set[fx.Node]:
        """Nodes whose value is a value's size (``x.shape``, ``x.size(0)``) or computed
        from sizes and constants alone (``x.shape[0]``, ``n * 2``): the same for every
        input of one size, so the engines run them as they are (no bound rule)."""
        sizes: set[fx.Node] = set()
        for node in self.nodes:
            if not node.op.startswith("call") or node in self.statics:
                continue
            resolved = self.resolve(node)
            is_size = (resolved.operation is not None and resolved.operation.name == "shape"
                       and resolved.params is True)
            if is_size or (node.all_input_nodes and all(
                    n in sizes or n in self.statics for n in node.all_input_nodes)):
                sizes.add(node)
        return sizes

    def run(self, images: torch.Tensor) -> Any:
        """The traced graph's output on whole images, as the engines run each node
        (out of place, ``.float()`` as ``float_as``)."""
        values = self._values(images)
        output = next((n for n in self.nodes if n.op == "output"), None)
        if output is None:
            raise FxUnsupportedError("the traced graph has no output")
        return fx.node.map_arg(output.args[0], values.__getitem__)

    def _values(self, images: torch.Tensor) -> dict[fx.Node, Any]:
        """Every node's value on ``images``, as the engines run each node."""
        values: dict[fx.Node, Any] = {**self.statics, self.input: images}
        for node in self.nodes:
            if node.op != "output" and node not in values:
                values[node] = self.call(node, values.__getitem__)
        return values

    def batch_size_use(self, image: torch.Tensor) -> tuple[fx.Node, fx.Node] | None:
        """Where the graph computes with its batch size other than to reshape by it.

        The engines run many boxes (or symbols) as the rows of one call, where the model
        scores one image, so a value read from the batch size (``x.shape[0] > 2``,
        ``x.numel()``) is another function there. The size nodes are run on one row and
        on three: those whose values differ read the batch size, and so does every size
        node computed from them (``n > 5`` is the same at 1 and 3), except an item of a
        ``torch.Size`` that is the same (``x.shape[1]``). Such a value may only be a reshape's
        size (``x.view(n, -1)``, ``reshape``, ``expand``) or another size.

        Args:
            image: float ``[1, C, H, W]`` (a larger batch: its first image).

        Returns:
            ``(size node, its use)`` of the first such use, or ``None``.
        """
        if not self.sizes:
            return None
        one = image[:1]
        batch = self._reads_batch(self._size_values(one), self._size_values(
            one.expand(3, *one.shape[1:]).contiguous()))
        for node in self.nodes:
            if node in batch:
                use = next((u for u in node.users if u not in self.sizes
                            and not _reshapes_by(u, node)), None)
                if use is not None:
                    return node, use
        return None

    def _zeros(self, shape: tuple[int, ...]) -> torch.Tensor:
        """One image of zeros of ``shape``, in the graph's dtype and on its device."""
        tensors = (*self.graph_module.parameters(), *self.graph_module.buffers())
        device = tensors[0].device if tensors else torch.device("cpu")
        return torch.zeros((1, *shape), dtype=model_dtype(self.graph_module, torch.float32),
                           device=device)

    def input_shapes(self, shape: tuple[int, ...], nodes: list[fx.Node]
                     ) -> dict[fx.Node, tuple[int, ...]]:
        """The shape of each node's first argument on one image of ``shape`` (a run on
        zeros; nodes whose argument is not a tensor, or a graph that fails on such
        images, are left out)."""
        one = self._zeros(shape)
        try:
            with torch.inference_mode():
                values = self._values(one)
        except Exception:  # noqa: BLE001 - refused later, by the plan of such images
            return {}
        shapes = {}
        for node in nodes:
            first = node.args[0] if node.args else None
            value = values.get(first) if isinstance(first, fx.Node) else None
            if isinstance(value, torch.Tensor):
                shapes[node] = tuple(value.shape)
        return shapes

    def _reads_batch(self, one: dict[fx.Node, Any], three: dict[fx.Node, Any]
                     ) -> set[fx.Node]:
        """The size nodes that read the batch size, from their values on one row and
        on three (see :meth:`batch_size_use`)."""
        batch: set[fx.Node] = set()
        for node in self.nodes:
            if node not in self.sizes:
                continue
            if not _same_value(one[node], three[node]) or (
                    not _item_of_shape(node, one) and any(
                        n in batch for n in node.all_input_nodes)):
                batch.add(node)
        return batch

    def _size_values(self, images: torch.Tensor) -> dict[fx.Node, Any]:
        """The size nodes' values on ``images`` (the whole graph run)."""
        with torch.inference_mode():
            values = self._values(images)
        return {node: values[node] for node in self.sizes}

    def callable(self, node: fx.Node) -> Callable:
        """What ``node`` runs, as ``fn(*args, **kwargs)``."""
        if node.op == "call_module":
            return self.modules[node.target]
        if node.op == "call_method":
            if node.target == "float" and self.float_as is not None:
                return lambda this, *args, **kwargs: this.to(self.float_as, *args, **kwargs)
            narrow = narrowing_dtype(node) if self.float_as is not None else None
            if narrow is not None:  # rounded as the model rounds it, then held in float_as
                # (exactly: a float16 or bfloat16 value is a float32 and float64 one too);
                # a weight cast so is a constant, and the bound rules refuse such a cast
                # of a value that depends on the image
                return lambda this, *args, **kwargs: this.to(narrow).to(self.float_as)
            dtype = cast_dtype(node) if node.target in ("to", "type") else None
            if self.float_as is not None and dtype is not None and dtype.is_floating_point:
                return lambda this, *args, **kwargs: this.to(self.float_as)  # 32 bits or more
            if node.target == "view":  # the same values; the engines' layouts may not allow
                # a view where the model's did (channels-last bounds, windows)
                return lambda this, *args, **kwargs: this.reshape(*args, **kwargs)
            return lambda this, *args, **kwargs: getattr(this, node.target)(*args, **kwargs)
        return node.target

    def call(self, node: fx.Node, value: Callable[[fx.Node], Any]) -> Any:
        """Run ``node`` with its inputs' values given by ``value``."""
        return self.callable(node)(*fx.node.map_arg(node.args, value),
                                   **fx.node.map_arg(node.kwargs, value))

    def resolve(self, node: fx.Node) -> Resolved:
        """The registered operation of ``node``, its settings and its window rule."""
        if not node.op.startswith("call"):
            return Resolved(None, None, None)
        operation = OPERATIONS.lookup(node, self.modules)
        if operation is None:
            return Resolved(None, None, None)
        module = self.modules[node.target] if node.op == "call_module" else None
        try:
            params = operation.params(NodeCall(node, module, self.statics))
        except Computed:
            return Resolved(operation, "a weight computed from the image",
                            "a weight computed from the image")
        except TypeError:  # a setting given as a value of the graph where a number is read
            return Resolved(operation, COMPUTED_SETTINGS, COMPUTED_SETTINGS)
        if not isinstance(params, str) and _holds_nodes(params):  # (a pooling size of
            # (h.size(2), h.size(3)): no reader raised, and a rule would multiply nodes)
            return Resolved(operation, COMPUTED_SETTINGS, COMPUTED_SETTINGS)
        rule = params if isinstance(params, str) else operation.window(params)
        return Resolved(operation, params, rule)

    def weight(self, node: fx.Node) -> tuple[torch.Tensor | None, bool]:
        """The weight of a convolution or linear node and whether it is a convolution."""
        resolved = self.resolve(node)
        if resolved.operation is None or resolved.operation.name not in ("conv2d", "linear"):
            return None, False
        weight = getattr(resolved.params, "weight", None)
        if not isinstance(weight, torch.Tensor):
            return None, False
        return weight, resolved.operation.name == "conv2d"

    def clean(self, images: torch.Tensor) -> Iterator[tuple[fx.Node, Any]]:
        """Every node's clean value, in graph order (each freed after its last use)."""
        env = dict(self.statics)
        env[self.input] = images
        yield self.input, images
        for i, node in enumerate(self.nodes):
            if node in env:
                continue
            if node.op == "output":
                return
            env[node] = self.call(node, env.__getitem__)
            yield node, env[node]
            for n in node.all_input_nodes:
                if self.last_use.get(n) == i and n not in self.statics:
                    del env[n]


@torch.inference_mode()
def computed_attributes(model: nn.Module, graph_module: fx.GraphModule) -> set[str]:
    """The tensor attributes of ``graph_module`` (a trace of ``model``) that ``forward``
    computed from the model's parameters and buffers: ``torch.fx`` runs arithmetic on
    buffers as it traces and keeps the result as a ``_tensor_constant`` attribute, which
    float32 and the float64 copy round their own ways, while a tensor written as a
    literal in ``forward`` is the model's own constant. Found as the attributes, other
    than the parameters and buffers, whose values change when every parameter and buffer
    is redrawn at random (every one, where that trace fails).

    Args:
        model: the network.
        graph_module: its trace.

    Returns:
        The attributes' names (``get_attr`` targets).
    """
    # (the model's own: the trace registers its constants as buffers of its own)
    own = {name for name, _ in model.named_parameters()} | {
        name for name, _ in model.named_buffers()}
    others = {node.target for node in graph_module.graph.nodes
              if node.op == "get_attr" and node.target not in own}
    if not others:
        return set()
    redrawn = copy_module(model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in [*redrawn.parameters(), *redrawn.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator) + 2)
    try:
        retraced = _trace(redrawn)
    except Exception:  # noqa: BLE001 - a forward that fails on other values: assume all
        return others
    changed = set()
    for target in others:
        try:
            first, second = _fetch(graph_module, target), _fetch(retraced, target)
        except AttributeError:
            changed.add(target)
            continue
        if not (isinstance(first, torch.Tensor) and isinstance(second, torch.Tensor)
                and first.shape == second.shape and torch.equal(
                    first.to(second.dtype), second)):
            changed.add(target)
    return changed


def _program(graph: fx.Graph) -> list[tuple]:
    """What a graph computes, node by node: each node's kind, target and arguments, with
    dtypes left out (``x.to(w.dtype)`` names the model's own dtype in each copy)."""
    def plain(value: Any) -> Any:
        if isinstance(value, torch.dtype):
            return "dtype"
        if isinstance(value, fx.Node):
            return value.name
        if isinstance(value, (tuple, list)):
            return tuple(plain(v) for v in value)
        if isinstance(value, dict):
            return tuple(sorted((k, plain(v)) for k, v in value.items()))
        return repr(value)

    return [(n.op, n.target if isinstance(n.target, str) else getattr(
        n.target, "__qualname__", repr(n.target)), plain(n.args), plain(n.kwargs))
        for n in graph.nodes]


def check_same_program(model: nn.Module, copied: nn.Module, error: type[Exception]) -> None:
    """Refuse a model whose ``forward`` records another graph when its copy in another
    dtype is traced (the engines trace a float64 copy; a branch on the model's own
    dtype, ``if next(self.parameters()).dtype == torch.float32``, takes the other path
    there, and the bounds would be of a function the model does not compute; a review).

    Args:
        model: the model as the user runs it.
        copied: the engines' copy of it, in their dtype.
        error: the exception type to raise (the engine's own).

    Raises:
        error: the two traces differ (the first node that does is named).
    """
    own, theirs = (_program(_trace(copy_module(m)).graph) for m in (model, copied))
    if own == theirs:
        return
    index = next((i for i, (a, b) in enumerate(zip(own, theirs, strict=False)) if a != b),
                 min(len(own), len(theirs)))
    where = own[index][1] if index < len(own) else "its end"
    raise error(f"the model's forward records another graph in float64 than in its own "
                f"dtype (first at {where}): it reads its dtype, and the verifier's float64 "
                "copy would bound another function; compute the same in every dtype")


def check_agreement(model: nn.Module, traced: TracedGraph, images: torch.Tensor,
                    error: type[Exception], runs: TracedGraph | None = None) -> None:
    """Refuse a model whose own scores differ from those of ``traced`` (a copy traced
    when an engine was made, the function its bounds are of): code ``torch.fx`` does not
    record, or a model changed since (new weights), computes another. Both run in the
    model's own dtype, the same operations: only such a difference parts them beyond
    rounding. (What tracing can see, in-place writes and hooks, is refused when the
    engine is made.)

    Args:
        model: the model as the user runs it.
        traced: its copy, traced in its own dtype (``TracedGraph(model, fold=False)``).
        images: float ``[B, C, H, W]``.
        error: the exception type to raise (the engine's own).
        runs: the graph the engine runs (its copy rewritten by :mod:`.decompose`), whose
            uses of the batch size are checked (default: ``traced``'s).

    Raises:
        error: the model does not return scores ``[B, K]``, a score differs by more
            than :data:`AGREEMENT` relative to the image's largest, the graph run
            computes with its batch size, or it was settled for images of another shape.
    """
    check_shape((traced if runs is None else runs).shape, images, error)
    _check_batch_size_use(traced if runs is None else runs, images, error)
    scores = model(images.to(model_dtype(model, images.dtype)))
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2:
        raise error(f"the model returns {_shape_of(scores)}, not class scores [B, K]: "
                    "wrap it to return them")
    # the copy in the dtype it was traced in (a model cast since, e.g. model.double(),
    # computes the same function: its scores agree within the copy's rounding)
    copy = traced.run(images.to(model_dtype(traced.graph_module, images.dtype)))
    if not isinstance(copy, torch.Tensor) or copy.shape != scores.shape:
        raise error(f"the model's traced graph returns {_shape_of(copy)} where the model "
                    f"returns scores {list(scores.shape)}")
    copy = copy.double()
    scale = 1 + copy.abs().amax(1, keepdim=True)
    gap = ((scores.double() - copy).abs() / scale).amax(1)
    if bool((gap > AGREEMENT).any()) or not bool(torch.isfinite(gap).all()):
        worst = int(torch.nan_to_num(gap, nan=math.inf).argmax())
        raise error(f"the model's scores differ from its traced graph's by "
                    f"{float(gap[worst]):.3g} (relative) on image {worst}: it computes "
                    "something torch.fx does not record (code outside forward), or it "
                    "changed since the verifier was made (new weights: make a new one), "
                    "so no bound of the graph is one of the model")


_RESHAPES = {"view", "reshape", "expand"}


def _reshapes_by(use: fx.Node, size: fx.Node) -> bool:
    """Whether ``use`` reshapes (or expands) a tensor with ``size`` among its sizes, not
    as the tensor reshaped."""
    reshapes = ((use.op == "call_method" and use.target in _RESHAPES)
                or (use.op == "call_function" and use.target is torch.reshape))
    return reshapes and bool(use.args) and use.args[0] is not size


def _item_of_shape(node: fx.Node, values: dict[fx.Node, Any]) -> bool:
    """Whether ``node`` picks an item of a shape (``x.shape[1]``; not an item of a
    tensor made from the batch size, ``(torch.ones(n).sum() > 3).reshape(1)[0]``)."""
    if node.target is not operator.getitem or not node.args:
        return False
    of = node.args[0]
    return isinstance(of, fx.Node) and isinstance(values.get(of), torch.Size)


def _same_value(a: Any, b: Any) -> bool:
    """Whether two values of a size node are the same (tensors by their items)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.shape == b.shape and bool(torch.equal(a, b)))
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - values that do not compare: not the same
        return False


def _holds_nodes(params: Any) -> bool:
    """Whether settings read from a call hold a node of the graph where numbers belong
    (in a dataclass's fields, a tuple, a list or a dict's values)."""
    if isinstance(params, fx.Node):
        return True
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        return any(_holds_nodes(getattr(params, f.name)) for f in dataclasses.fields(params))
    if isinstance(params, (tuple, list)):
        return any(_holds_nodes(v) for v in params)
    if isinstance(params, dict):
        return any(_holds_nodes(v) for v in params.values())
    return False


def check_shape(shape: tuple[int, ...] | None, images: torch.Tensor,
                error: type[Exception]) -> None:
    """Refuse images of another shape than the one an engine's copy was settled for
    (:class:`TracedGraph`'s ``shape``; ``None``: any shape).

    Raises:
        error: ``images`` are not ``[B, *shape]``.
    """
    if shape is not None and tuple(images.shape[1:]) != shape:
        raise error(f"this copy of the model was made for images of shape {list(shape)}, "
                    f"not {list(images.shape[1:])} (it reads their sizes: a setting "
                    "computed from them, as F.avg_pool2d(out, out.size()[3]), a "
                    "LocalResponseNorm's channels or an interpolation's windows): make "
                    "one for these images (pixelprior.Verifier does so itself)")


def _check_batch_size_use(traced: TracedGraph, images: torch.Tensor,
                          error: type[Exception]) -> None:
    """Refuse a graph that computes with its batch size (:meth:`TracedGraph.
    batch_size_use`), once per traced copy."""
    if traced._batch_size_checked:
        return
    found = traced.batch_size_use(images.to(model_dtype(traced.graph_module, images.dtype)))
    if found is not None:
        size, use = found
        raise error(f"the model computes with its batch size (the graph's {size.name}, "
                    f"read from a shape, is used by {use.name}, not to reshape): the "
                    "bounds score many boxes "
                    "as the rows of one call, where the model scores one image, so no "
                    "bound of the graph is one of the model; compute without x.shape[0] "
                    "(reshaping by it is fine)")
    traced._batch_size_checked = True


def untraceable_advice(model: nn.Module) -> str:
    """What to do about a model ``torch.fx`` cannot trace, where something can be done:
    a TorchScript module never traces (its Python code is gone), nor an ONNX graph (ONNX
    Runtime runs it), also inside a wrapper (``--mean``/``--std``'s)."""
    parts = list(model.modules()) if isinstance(model, nn.Module) else [model]
    if any(isinstance(part, torch.jit.ScriptModule) for part in parts):
        return ("a TorchScript file cannot be bounded (the bounds trace Python code): give "
                "the model as its Python code, --model file.py:factory --weights "
                "state_dict.pt")
    if any(isinstance(part, OnnxModel) for part in parts):
        return ("an ONNX graph cannot be bounded (ONNX Runtime runs it, not a PyTorch "
                "graph): give the model as its Python code, --model file.py:factory "
                "--weights state_dict.pt")
    return ""


# what the tracer's own errors mean in a model's code, and what to write instead: each
# (words of its message, advice); a model zoo's review met both (akamaster's CIFAR ResNet
# ends with F.avg_pool2d(out, out.size()[3]); U-Nets make modules inside forward)
_TRACER_ADVICE = (
    (("module is not installed as a submodule",),
     "a module is made inside forward (such as nn.AdaptiveAvgPool2d(1)(x)): make it once "
     "in __init__ (self.pool = nn.AdaptiveAvgPool2d(1)) or call its function "
     "(F.adaptive_avg_pool2d(x, 1))"),
    (("'Node' object is not iterable", "Proxy object cannot be iterated",
      "symbolically traced variables cannot be used as inputs to control flow"),
     "a value's size or a value itself is used where the code needs a number (a pooling "
     "size read from the map, F.avg_pool2d(out, out.size()[3]); a loop over a shape; an "
     "if on a value): write the number, or a form that needs none "
     "(F.adaptive_avg_pool2d(out, 1)); the verifier traces the code once, for any input"),
)


def untraceable(model: nn.Module, exc: BaseException) -> str:
    """Why a model ``torch.fx`` failed to trace is not bounded: what to do first where
    something can be done (:func:`untraceable_advice`, or what the tracer's error means
    in a model's code), else the tracer's own line."""
    first = (str(exc).strip().splitlines() or [""])[0]
    cause = f"torch.fx cannot trace the model ({type(exc).__name__}: {first})"
    advice = untraceable_advice(model) or next(
        (words for clues, words in _TRACER_ADVICE if any(c in str(exc) for c in clues)), "")
    return f"{advice} ({cause})" if advice else cause


def model_dtype(model: nn.Module, default: torch.dtype) -> torch.dtype:
    """The dtype of the model's first floating parameter (``default`` where none)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), default)


def _shape_of(value: Any) -> str:
    return (f"a tensor of shape {list(value.shape)}" if isinstance(value, torch.Tensor)
            else f"a {type(value).__name__}")
