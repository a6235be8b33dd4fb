"""The operation table: one registered entry per operation the cone engines know.

Modelled on auto_LiRPA's ``bound_op_map.py`` + ``operators/``: each operation (``conv2d``,
``relu``, ``max_pool2d``, ...) is registered once with the graph targets it covers
(module classes, functions, tensor methods), a ``params`` reader that turns a node into
the operation's settings (the same for its module and functional forms), and its rules:

- ``window``: how the incremental engine runs it on a pixel's cone
  (:class:`WindowRule`: pointwise, elementwise, cat, spatial or shape), or why it cannot;
- ``bound``: how the verifier bounds it over a box of colours (added by the verifier's
  bound rules with :func:`register_bound`), or why it cannot;
- ``interval``: how the verifier's interval screen (:mod:`.screen`) bounds it over
  intervals, on the windows of a pixel's cone or on whole images (added with
  :func:`register_interval`), or why it cannot.

Adding an operation to the incremental engine is one :func:`register_operation` call in a
module of ``operators/``; adding a verifier rule for it is one :func:`register_bound` call,
and one :func:`register_interval` call for the screen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from torch import fx, nn

from .geometry import Slide

__all__ = ["COMPUTED_SETTINGS", "ELEMENTWISE", "OPERATIONS", "POINTWISE", "Computed",
           "NodeCall", "Operation",
           "OperationTable", "WindowRule", "is_number", "register_bound", "register_interval",
           "register_operation"]


@dataclass(frozen=True)
class WindowRule:
    """How a node runs on windows.

    Attributes:
        kind: ``"pointwise"`` (one window, same box), ``"elementwise"`` (several windows,
            their union box), ``"cat"`` (channel concatenation), ``"spatial"`` (a sliding
            window layer, ``slide``) or ``"shape"`` (``size``/``shape`` of a window).
        channel: tensor arguments are per-channel parameters, of any shape.
        slide: the sliding-window geometry of a spatial layer.
    """

    kind: str
    channel: bool = False
    slide: Slide | None = None


POINTWISE, ELEMENTWISE = WindowRule("pointwise"), WindowRule("elementwise")


class Computed(Exception):
    """An argument that should be a constant depends on the image."""


class NodeCall:
    """A graph node as its operation's ``params`` reader sees it.

    Attributes:
        node: the ``torch.fx`` node.
        module: the called module (``call_module`` nodes), else ``None``.

    Args:
        numbers: values of nodes the arguments are read through where they are numbers
            (a size the model computes, ``out.size()[3]``, on the images being run:
            the float32 estimate's interpreter); ``None``: arguments as written.
    """

    def __init__(self, node: fx.Node, module: nn.Module | None,
                 statics: dict[fx.Node, Any],
                 numbers: dict[fx.Node, Any] | None = None) -> None:
        self.node, self.module, self._statics = node, module, statics
        self._numbers = numbers

    def arg(self, position: int, name: str, default: Any = None) -> Any:
        """The call's argument at ``position`` or keyword ``name`` (``default`` if absent)."""
        if len(self.node.args) > position:
            value = self.node.args[position]
        else:
            value = self.node.kwargs.get(name, default)
        numbers = self._numbers
        if numbers is None:
            return value
        return fx.node.map_arg(value, lambda n: numbers[n] if n in numbers and is_number(
            numbers[n]) else n)

    def static(self, value: Any) -> Any:
        """``value`` resolved to a constant (a parameter, buffer or literal).

        Raises:
            Computed: ``value`` depends on the image.
        """
        if isinstance(value, fx.Node):
            if value not in self._statics:
                raise Computed
            return self._statics[value]
        return value

    def static_arg(self, position: int, name: str, default: Any = None) -> Any:
        """:meth:`arg` resolved with :meth:`static`."""
        return self.static(self.arg(position, name, default))


# why an operation whose settings (a kernel size, a stride, an interpolation's size) the
# model computes from a value's size is not run on windows or bounded as it is traced: a
# params reader returns it (or raises TypeError on a node where it reads a number). The
# verifier's copies made for one image shape hold those settings as numbers instead
# (:meth:`.graph.TracedGraph.settled`); a model zoo's review met akamaster's CIFAR
# ResNet, which ends with F.avg_pool2d(out, out.size()[3])
COMPUTED_SETTINGS = ("its settings are computed in the model from a value's size, as "
                     "F.avg_pool2d(out, out.size()[3]): make the engine for one image "
                     "shape, BoundEngine(model, shape=(C, H, W)) (pixelprior.Verifier "
                     "does so itself), or give numbers")


def is_number(value: Any) -> bool:
    """Whether a value is a number or a tuple of them (``torch.Size``): what a setting
    is written as."""
    if isinstance(value, (tuple, list)):
        return all(is_number(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Operation:
    """One registered operation.

    Attributes:
        name: the operation's name (``"conv2d"``).
        params: node → the operation's settings, or a string saying why this call is not
            supported (``"dropout in training mode"``).
        window: settings → :class:`WindowRule`, or why the cone engine cannot run it.
        bound: settings → the verifier's bound rule (``None``: none registered).
        help: one line, for documentation.
        interval: settings → the interval screen's rule (``None``: none registered).
        written_out: the verifier's copies write it as other operations (``decompose``: a
            softmax as exponentials, a sum and a reciprocal), so it needs no bound rule
            of its own (one it has refuses the forms left as they are).
    """

    name: str
    params: Callable[[NodeCall], Any]
    window: Callable[[Any], WindowRule | str]
    bound: Callable[[Any], Any] | None = None
    help: str = ""
    interval: Callable[[Any], Any] | None = None
    written_out: bool = False


def _no_params(call: NodeCall) -> None:
    return None


class OperationTable:
    """Operations by name, and the graph targets that name them."""

    def __init__(self) -> None:
        self._operations: dict[str, Operation] = {}
        self._modules: dict[type, str] = {}
        self._functions: dict[Any, str] = {}
        self._methods: dict[str, str] = {}

    def register(self, name: str, *, window: Callable[[Any], WindowRule | str],
                 modules: Iterable[type] = (), functions: Iterable[Any] = (),
                 methods: Iterable[str] = (),
                 params: Callable[[NodeCall], Any] | None = None, help: str = "",
                 written_out: bool = False) -> Operation:
        """Add an operation and the targets it covers.

        Args:
            name: a new operation name.
            window: the incremental engine's rule (see :class:`Operation`).
            modules: module classes (their subclasses count when they keep ``forward``).
            functions: functions (``F.conv2d``, ``operator.add``, ...).
            methods: tensor method names (``"relu"``).
            params: reads the settings from a node (default: none).
            help: one line of help.
            written_out: the verifier's copies write it as other operations.

        Returns:
            The registered operation.

        Raises:
            ValueError: the name or one of the targets is registered already.
        """
        if name in self._operations:
            raise ValueError(f"operation {name!r} is registered twice")
        operation = Operation(name, params or _no_params, window, None, help,
                              written_out=written_out)
        self._operations[name] = operation
        for kind, targets in ((self._modules, modules), (self._functions, functions),
                              (self._methods, methods)):
            for target in targets:
                if kind.get(target) == name:
                    continue  # one object under two names (F.conv2d is torch.conv2d)
                if target in kind:
                    raise ValueError(f"{target!r} is registered twice (as {kind[target]!r} "
                                     f"and {name!r})")
                kind[target] = name
        return operation

    def register_bound(self, name: str, rule: Callable[[Any], Any]) -> None:
        """Set the verifier's bound rule of the operation ``name``.

        Args:
            name: a registered operation.
            rule: settings → the bound rule.

        Raises:
            KeyError: no such operation.
            ValueError: it has a bound rule already.
        """
        operation = self.get(name)
        if operation.bound is not None:
            raise ValueError(f"operation {name!r} has a bound rule already")
        self._operations[name] = replace(operation, bound=rule)

    def register_interval(self, name: str, rule: Callable[[Any], Any]) -> None:
        """Set the interval screen's rule of the operation ``name``.

        Args:
            name: a registered operation.
            rule: settings → the interval rule (or a string saying why not).

        Raises:
            KeyError: no such operation.
            ValueError: it has an interval rule already.
        """
        operation = self.get(name)
        if operation.interval is not None:
            raise ValueError(f"operation {name!r} has an interval rule already")
        self._operations[name] = replace(operation, interval=rule)

    def get(self, name: str) -> Operation:
        """The operation called ``name`` (a ``KeyError`` listing the known ones)."""
        try:
            return self._operations[name]
        except KeyError:
            raise KeyError(f"unknown operation {name!r}; known: "
                           f"{', '.join(self._operations)}") from None

    def names(self) -> tuple[str, ...]:
        """Every operation's name, in registration order."""
        return tuple(self._operations)

    def targets(self, name: str) -> tuple[list[type], list[Any], list[str]]:
        """The module classes, functions and tensor methods that name the operation
        ``name`` (in registration order)."""
        self.get(name)
        return ([t for t, n in self._modules.items() if n == name],
                [t for t, n in self._functions.items() if n == name],
                [t for t, n in self._methods.items() if n == name])

    def lookup(self, node: fx.Node, modules: dict[str, nn.Module]) -> Operation | None:
        """The operation a node runs (``None``: not one the table knows)."""
        name = None
        if node.op == "call_module":
            module = modules[node.target]
            for cls in type(module).__mro__:
                if cls in self._modules and type(module).forward is cls.forward:
                    name = self._modules[cls]
                    break
        elif node.op == "call_method":
            name = self._methods.get(node.target)
        elif node.op == "call_function":
            try:
                name = self._functions.get(node.target)
            except TypeError:  # an unhashable target
                name = None
        return self.get(name) if name is not None else None


OPERATIONS = OperationTable()


def register_operation(name: str, **kwargs: Any) -> Operation:
    """Register an operation in :data:`OPERATIONS` (see :meth:`OperationTable.register`)."""
    return OPERATIONS.register(name, **kwargs)


def register_bound(name: str) -> Callable[[Callable], Callable]:
    """Decorator: the verifier's bound rule of the operation ``name`` in
    :data:`OPERATIONS` (see :meth:`OperationTable.register_bound`)."""

    def decorate(rule: Callable) -> Callable:
        OPERATIONS.register_bound(name, rule)
        return rule

    return decorate


def register_interval(name: str) -> Callable[[Callable], Callable]:
    """Decorator: the interval screen's rule of the operation ``name`` in
    :data:`OPERATIONS` (see :meth:`OperationTable.register_interval`)."""

    def decorate(rule: Callable) -> Callable:
        OPERATIONS.register_interval(name, rule)
        return rule

    return decorate
