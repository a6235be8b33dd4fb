"""The verifier's interval screen: sound bounds of the margins over the whole color cube
of many positions at once, by interval bound propagation (:mod:`.intervals`).

For each position the image enters as two images, the pixel set to the box's lowest
colors in one and its highest in the other; every operation applies the interval rule
registered for it in the operation table. No symbols: hundreds of positions cost one
batched forward of a few passes. The bounds are loose where the network was not trained
for them, and there they prove nothing: the verifier bounds what is left with zonotopes,
so the screen can only save time (or cost its pass).

**In the pixel's cone.** Where the cone engine's plan (:mod:`.plan`) saves work, only
the windows of the pixel's cone are bounded, laid over the clean image's bounds around
them: the rules run on the same window and patch tensors as the cone engine's steps (a
sliding-window layer's :class:`~.intervals.SignedAffine` through its ``patch_abs``).
The clean image's bounds come from one whole-image pass of the same rules with a box of
width 0, so the neurons outside a window are enclosed, not assumed exact: the float
error argument is the whole image's. Float64 on 2 CPU cores, a position: ResNet8 1.2 ms
in the cone against 7-8 ms on whole images, ConvSmall 0.2 against 0.65 ms, SqueezeNet
4 against 14 ms.

The last linear layer is folded into the margins before its bounds are taken (``(W_y -
W_j) h + b_y - b_j`` over the interval of ``h``: the usual IBP specification; far
tighter than ``lower_y - upper_j``).

**The model's float32 error, proved** (:meth:`IntervalScreen.bounds` with a ``unit``):
beside the bounds every value carries a bound of how far the model evaluated in float32
can be from its real-arithmetic value anywhere in the box (:mod:`.intervals`' ``error``
rules; the clean image's errors around the windows, from the same whole-image pass). Per
margin it bounds ``|m(float32) - m(real)|`` over the box: the verifier's tolerance, a
proof where the first-order :func:`~.rounding.rounding_error` is an estimate. It is
small where intervals are (ConvSmall, the interval-trained ResNet8: 1-4 times the
estimate over a whole color cube) and vacuous where they are not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ...models import copy_module
from .decompose import DECOMPOSED
from .engine import FxIncrementalForward
from .geometry import Box
from .graph import (
    FxUnsupportedError,
    TracedGraph,
    check_agreement,
    check_same_program,
    check_shape,
    describe,
    model_dtype,
    training_module,
    untraceable,
)
from .intervals import (
    SHAPE,
    UNDERFLOW,
    UNIT,
    Interval,
    IntervalStep,
    IntervalUnsupportedError,
    SignedAffine,
    constant_gap,
    unbounded_as_infinite,
)
from .plan import (
    MIN_SAVING,
    InputStep,
    OutputStep,
    Plan,
    PointwiseStep,
    ShapeStep,
    SpatialStep,
)
from .rounding import UNIT_ROUNDOFF
from .runtime import FxCache, Query, Window

__all__ = ["OVERFLOW", "IntervalScreen", "IntervalUnsupportedError", "ScreenBounds"]

GROWN = 1 + 2.0**-20  # each float32 error bound, computed in float64, is widened by this
# A value whose real magnitude plus its error, or the sum of the magnitudes its rounding
# rule was computed from (at most its error over float32's unit), may reach this may
# overflow to inf in float32 (2^127, half the largest float32): its error is unbounded
OVERFLOW = 2.0**127


@dataclass(frozen=True)
class ScreenBounds:
    """The screen's bounds of the margins ``z_label - z_j`` over each box.

    Attributes:
        lower: float64 ``[P, K]``, at most each margin's minimum over the box for the
            network in real arithmetic (``+inf`` at the label).
        error: float64 ``[P, K]``, at least ``|m(float32) - m(real)|`` of each margin
            anywhere in the box (0 at the label); ``None`` when not asked for.
    """

    lower: torch.Tensor
    error: torch.Tensor | None = None


class IntervalScreen:
    """Sound lower bounds of the margins ``z_label - z_j`` over boxes of colors of one
    pixel, by interval bound propagation through the pixel's cone (or whole images).

    >>> screen = IntervalScreen(model)
    >>> screen.margins(image, positions, lo, hi, label)   # [P, K]; > 0 proves the box

    Args:
        model: the network (images in [0, 1] → class scores), in eval mode.
        cone: bound only the pixel's cone (see the module docstring): ``None`` where its
            windows leave at least :data:`~.plan.MIN_SAVING` of the network's
            multiply-accumulates undone, ``True`` wherever the cone engine's plan has
            windows, ``False`` never (whole images). Either way only where every
            sliding-window layer's rule has a form for patches (else whole images).
        shape: the images' ``(C, H, W)``, where a setting the model computes from a
            value's size is read on them (see :class:`~.bounds.BoundEngine`).

    Attributes:
        shape: the one image shape the screen bounds, ``None`` where any.

    Raises:
        IntervalUnsupportedError: ``torch.fx`` cannot trace the model, or an operation
            that depends on the image has no interval rule (named).
    """

    def __init__(self, model: nn.Module, cone: bool | None = None,
                 shape: tuple[int, ...] | None = None) -> None:
        training = training_module(model)
        if training is not None:
            raise IntervalUnsupportedError(f"{training} is in training mode; call "
                                           "model.eval()")
        copied = copy_module(model).to(torch.float64).eval()
        # the model's own tensors: float32 in the model, the same values here (a tensor
        # the trace computed from them and kept is not: float64 computed it)
        self._state = {name for name, _ in copied.named_parameters()} | {
            name for name, _ in copied.named_buffers()}
        try:
            self.engine = FxIncrementalForward(copied, fold=False, float_as=torch.float64,
                                               decompose=True,
                                               source_dtype=model_dtype(model, torch.float32),
                                               shape=shape)
            # the model as copied, traced in its own dtype: its scores are checked
            # against it per image (code torch.fx does not see, weights changed since)
            self._as_traced = TracedGraph(model, fold=False)
            check_same_program(model, copied, IntervalUnsupportedError)
        except IntervalUnsupportedError:
            raise
        except FxUnsupportedError as exc:
            raise IntervalUnsupportedError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - tracing fails in many ways
            raise IntervalUnsupportedError(untraceable(model, exc)) from None
        self.graph = self.engine.graph
        self.shape = self.graph.shape
        self.model = model
        self._agreed: torch.Tensor | None = None  # the last image checked against the trace
        self.cone = cone
        self._plans: dict[tuple, Plan | None] = {}
        self._patch_rules: dict[fx.Node, Any] = {}  # sliding windows' rules on patches
        self._clean: tuple[torch.Tensor, float | None, FxCache] | None = None  # the last
        self._unit: float | None = None  # the float32 unit of the call running (or None)
        self._boxes = 0  # the rows the input of the run going on has (its boxes)
        self._exact_constants = False  # constants as the float64 copy holds them (no gap)
        self.rules: dict[fx.Node, Any] = {}
        self.params: dict[fx.Node, Any] = {}
        for node in self.graph.nodes:
            if node.op.startswith("call") and node not in self.graph.statics:
                self.rules[node] = self._rule(node)
        self.output = next(n for n in self.graph.nodes if n.op == "output")
        self.head = self._head()
        # affine layers whose weights the model computes in forward (a functional conv of
        # a standardised weight): their rule holds the float64 copy's values, float32
        # computes others, so no float32 error is proved through them
        # (the model's own parameters and buffers, and exact copies of them, are held
        # alike: w[:, None, None])
        self._held = self.graph.copied_constants(lambda n: n.target in self._state)
        self.computed_weights = {
            node for node, rule in self.rules.items() if isinstance(rule, SignedAffine)
            and any(n in self.graph.statics and n not in self._held
                    for n in node.all_input_nodes)}

    def _rule(self, node: fx.Node) -> Any:
        resolved = self.graph.resolve(node)
        if node in self.graph.sizes:  # a size or arithmetic of sizes (x.shape[0]): a
            self.params[node] = resolved.params  # constant, run as it is
            return SHAPE
        name = describe(node, self.graph.modules)
        operation = resolved.operation
        if operation is None or operation.interval is None:
            why = f" ({resolved.params})" if isinstance(resolved.params, str) else ""
            raise IntervalUnsupportedError(f"the interval screen has no rule for {name}{why}")
        if isinstance(resolved.params, str):
            raise IntervalUnsupportedError(f"the interval screen has no rule for {name} "
                                           f"({resolved.params})")
        rule = operation.interval(resolved.params)
        if isinstance(rule, str):
            raise IntervalUnsupportedError(f"the interval screen has no rule for {name} "
                                           f"({rule})")
        check = getattr(rule, "check", None)
        if check is not None:  # a rule that depends on which arguments vary
            varying = {n for n in self.graph.nodes if n not in self.graph.statics
                       and n not in self.graph.sizes}  # (a size: a constant, x / x.shape[1])
            check(node, varying)
        self.params[node] = resolved.params
        return rule

    def _head(self) -> tuple[fx.Node, torch.Tensor, torch.Tensor] | None:
        """The last linear layer, when the output is it: ``(node, weight, bias)``."""
        result = self.output.args[0]
        if not isinstance(result, fx.Node) or result not in self.rules:
            return None
        resolved = self.graph.resolve(result)
        if resolved.operation is None or resolved.operation.name != "linear":
            return None
        weight = resolved.params.weight.detach().to(torch.float64)
        bias = resolved.params.bias
        bias = (torch.zeros(weight.shape[0], dtype=torch.float64) if bias is None
                else bias.detach().to(torch.float64))
        return result, weight, bias

    # ------------------------------------------------------------------ bounds
    def margins(self, image: torch.Tensor, positions: torch.Tensor, lo: torch.Tensor,
                hi: torch.Tensor, label: int) -> torch.Tensor:
        """Lower bounds of the margins over each box (:meth:`bounds`' ``lower``).

        Args:
            image: float ``[1, C, H, W]`` in [0, 1].
            positions: long ``[P]``, flat ``y · W + x``.
            lo, hi: ``[P, C]``, each box's colors.
            label: the class the margins are taken from.

        Returns:
            float64 ``[P, K]`` (``+inf`` at the label); each entry at most the minimum of
            that margin over the box, for the network in real arithmetic.
        """
        return self.bounds(image, positions, lo, hi, label).lower

    @torch.inference_mode()
    def bounds(self, image: torch.Tensor, positions: torch.Tensor, lo: torch.Tensor,
               hi: torch.Tensor, label: int, unit: float | None = None) -> ScreenBounds:
        """Lower bounds of the margins over each box, and with ``unit`` a bound of the
        model's float32 evaluation error of each margin over the box.

        Args:
            image: float ``[1, C, H, W]`` in [0, 1].
            positions: long ``[P]``, flat ``y · W + x``.
            lo, hi: ``[P, C]``, each box's colors.
            label: the class the margins are taken from.

            unit: the unit roundoff of the model's evaluation (``2^-24`` for float32, see
                :func:`~pixelprior.search.verify.rounding_unit`); ``None``: no error bound.

        Returns:
            The bounds (see :class:`ScreenBounds`).

        Raises:
            IntervalUnsupportedError: the model's scores on ``image`` differ from its
                traced graph's (see :func:`~.graph.check_agreement`).
        """
        if unit is not None and not 0 <= unit < 2.0**-8:
            raise ValueError(f"unit must be a unit roundoff in [0, 2^-8), got {unit!r}")
        self._check_agrees(image)
        self._unit = unit
        try:
            return self._bounds(image, positions, lo, hi, label)
        finally:
            self._unit = None

    def agreed(self, image: torch.Tensor) -> None:
        """Record that the model's scores on ``image`` were checked against a trace made
        with this screen's (the verifier's bound engine checks each image it prepares),
        so :meth:`bounds` does not check them again."""
        self._agreed = image.detach().clone()

    def _check_agrees(self, image: torch.Tensor) -> None:
        """The model's scores against its traced graph's, once per image in a row."""
        kept = self._agreed
        if (kept is not None and kept.shape == image.shape and kept.device == image.device
                and kept.dtype == image.dtype and torch.equal(kept, image)):
            return
        check_agreement(self.model, self._as_traced, image, IntervalUnsupportedError,
                        self.engine.graph)
        self.agreed(image)

    def _bounds(self, image: torch.Tensor, positions: torch.Tensor, lo: torch.Tensor,
                hi: torch.Tensor, label: int) -> ScreenBounds:
        check_shape(self.shape, image, IntervalUnsupportedError)
        device = image.device
        lo = lo.to(device=device, dtype=torch.float64)
        hi = hi.to(device=device, dtype=torch.float64)
        positions = positions.to(device)
        plan = self._plan(image)
        if plan is None:
            value = self._run(self._whole_images(image, positions, lo, hi))
        else:
            value = self._run_cone(image, plan, positions, lo, hi)
        if self.head is not None:
            bounds, error = self._folded(value, label)
        else:
            bounds, error = _difference(value, label)
        # an unbounded end met by a zero weight (the head's midpoint of -inf and inf)
        bounds = torch.where(torch.isnan(bounds), -torch.inf, bounds)
        bounds[:, label] = torch.inf
        if error is not None:
            error[:, label] = 0.0
        return ScreenBounds(bounds, error)

    @torch.inference_mode()
    def clean_errors(self, images: torch.Tensor, unit: float) -> dict[str, torch.Tensor]:
        """Per node (by name), a bound of how far the model's values on ``images``,
        evaluated with unit roundoff ``unit`` (the plain operations, as a cone engine's
        clean pass runs them), lie from the float64 copy's values in real arithmetic
        (the zonotope engine's clean cache: :class:`~.bounds.BoundEngine`). With
        float64's unit the copy's constants are its own (no gap); with a coarser one, as
        for the float32 model (:meth:`bounds`). Nodes from the last linear layer on are
        not visited (the engines fold it).

        Args:
            images: float ``[B, C, H, W]``.
            unit: the unit roundoff of the evaluation (``2^-53`` for float64).

        Returns:
            float64 ``[B, ...]`` per node name.
        """
        if not 0 <= unit < 2.0**-8:
            raise ValueError(f"unit must be a unit roundoff in [0, 2^-8), got {unit!r}")
        check_shape(self.shape, images, IntervalUnsupportedError)
        images = images.to(torch.float64)
        errors: dict[str, torch.Tensor] = {}

        def keep(node: fx.Node, value: Any) -> None:
            if isinstance(value, Interval) and value.error is not None:
                errors[node.name] = value.error

        # constants as the evaluated copy holds them: a float64 copy holds the model's
        # own (no gap); a float32 one rounds numbers in the code (their gap, as for the
        # float32 model) and computes constants its own way (unbounded)
        self._unit, self._exact_constants = unit, unit <= 2.0**-53
        try:
            self._run(Interval(images, images.clone(), torch.zeros_like(images)), keep)
        finally:
            self._unit, self._exact_constants = None, False
        return errors

    def uses_cone(self, image: torch.Tensor) -> bool:
        """Whether images like ``image`` are bounded in the pixel's cone (else whole)."""
        return self._plan(image) is not None

    def _whole_images(self, image: torch.Tensor, positions: torch.Tensor, lo: torch.Tensor,
                      hi: torch.Tensor) -> Interval:
        """One image per box: the pixel's colors ``lo`` in the lower bound, ``hi`` in the
        upper."""
        width, count = image.shape[-1], positions.shape[0]
        lower = image.to(torch.float64).expand(count, -1, -1, -1).clone()
        upper = lower.clone()
        rows = torch.arange(count, device=image.device)
        y, x = positions // width, positions % width
        lower[rows, :, y, x] = lo
        upper[rows, :, y, x] = hi
        return Interval(lower, upper, self._no_error(lower))

    def _no_error(self, like: torch.Tensor) -> torch.Tensor | None:
        """The error of an exact input (the image, a color the model is given): zeros,
        when errors are bounded."""
        return None if self._unit is None else torch.zeros_like(like)

    def _run(self, images: Interval,
             visit: Callable[[fx.Node, Any], None] | None = None) -> Interval:
        """The bounds of the node the output returns (its input, with a head);
        ``visit(node, value)`` sees every value as it is made."""
        env: dict[fx.Node, Any] = dict(self.graph.statics)
        env[self.graph.input] = images
        self._boxes = images.lower.shape[0]
        if visit is not None:
            visit(self.graph.input, images)
        stop = self.head[0] if self.head is not None else None
        last_use = self.graph.last_use
        for i, node in enumerate(self.graph.nodes):
            if node in env or node.op in ("placeholder", "get_attr"):
                continue
            if node is stop or node.op == "output":
                return env[_source(node)]
            env[node] = self._apply(node, env)
            if visit is not None:
                visit(node, env[node])
            for n in node.all_input_nodes:
                if last_use.get(n) == i and n not in self.graph.statics:
                    del env[n]
        raise AssertionError("the graph has no output")  # pragma: no cover

    def _apply(self, node: fx.Node, env: dict[fx.Node, Any],
               given: dict[fx.Node, Interval] | None = None,
               invoke: Callable[[Callable[[fx.Node], Any]], Any] | None = None,
               rule: Any = None) -> Any:
        """The node's interval rule, on the values ``env`` holds (``given`` first); the
        node's own operation runs as ``invoke(value_of_each_input)`` (by default the
        graph's call)."""
        rule = rule if rule is not None else self.rules[node]
        step = self._step(node, env, given, invoke)
        out = unbounded_as_infinite(rule.apply(step))
        boxes = self._boxes
        if isinstance(out, Interval) and step.intervals and boxes and (
                out.lower.dim() == 0 or out.lower.shape[0] % boxes
                or out.lower.shape[0] < boxes):
            # each box keeps a whole number of rows (channels folded into the batch axis
            # and back are fine); fewer, or a share, mixes boxes
            raise IntervalUnsupportedError(
                f"{describe(node, self.graph.modules)} changes the batch axis (the boxes' "
                "rows): a reshape to a literal batch size, a reduction over the batch")
        if self._unit is not None and isinstance(out, Interval) and step.intervals:
            out.error = self.proved(node, rule.error(step, out, self._unit), self._unit,
                                   out)
        return out

    def proved(self, node: fx.Node, error: torch.Tensor, unit: float,
               out: Interval | None = None) -> torch.Tensor:
        """A float32 error bound of ``node`` as the rules computed it with unit roundoff
        ``unit``, widened for their float64 arithmetic and, for a float32 (or TF32)
        evaluation, for gradual underflow (:data:`UNDERFLOW`); NaN as ``inf``; ``inf``
        where the weights are computed in the model, unless the constants are the copy's
        own, and, for a float32 evaluation, where the value may overflow
        (:data:`OVERFLOW`): its bounds ``out`` plus what its rounding was computed from
        (at most the error over float32's unit; that alone where ``out`` is not given, as
        for the head folded into the margins)."""
        if (node in self.computed_weights or DECOMPOSED in node.meta) and (
                not self._exact_constants):  # (a fused normalisation's float32 kernel
            return torch.full_like(error, torch.inf)  # computes otherwise: no proof)
        # float32's or TF32's evaluation; float64's own underflow (2^-1075 a rounding) is
        # below every tolerance's 2^-100, so the bound engine's errors keep their bits
        single = unit >= UNIT_ROUNDOFF  # float32's unit; TF32's is larger
        bound = _no_nan(error * GROWN) + (UNDERFLOW if single else 0.0)
        if not single:
            return bound
        reach = bound / UNIT_ROUNDOFF
        if out is not None:
            reach = reach + torch.maximum(out.lower.abs(), out.upper.abs())
        return torch.where(reach < OVERFLOW, bound, torch.inf)

    def _step(self, node: fx.Node, env: dict[fx.Node, Any],
              given: dict[fx.Node, Interval] | None = None,
              invoke: Callable[[Callable[[fx.Node], Any]], Any] | None = None
              ) -> IntervalStep:
        """The node as its interval rule sees it (:meth:`_apply`'s arguments)."""
        given = given or {}
        intervals: list[Interval] = []
        argument_of: list[int | str] = []

        def lookup(n: fx.Node) -> Any:
            return given[n] if n in given else env[n]

        def collect(argument: int | str):
            def seen(n: fx.Node) -> Any:
                value = lookup(n)
                if isinstance(value, Interval):
                    intervals.append(value)
                    argument_of.append(argument)
                return value
            return seen

        for position, arg in enumerate(node.args):
            fx.node.map_arg(arg, collect(position))
        for key, arg in node.kwargs.items():
            fx.node.map_arg(arg, collect(key))

        def call(pick, constants: bool = True) -> Any:
            counter = iter(range(len(intervals)))

            def value(n: fx.Node) -> Any:
                found = lookup(n)
                if isinstance(found, Interval):
                    return pick(next(counter), found)
                if not constants and isinstance(found, torch.Tensor):
                    return self._tensor_gap(n, found)
                return found

            if invoke is not None:
                return invoke(value)
            return self.graph.call(node, value)

        def argument(position: int, keyword: str) -> Any:
            given_arg = (node.args[position] if len(node.args) > position
                         else node.kwargs.get(keyword))
            return fx.node.map_arg(given_arg, lookup)

        def gap(position: int, keyword: str) -> Any:
            given_arg = (node.args[position] if len(node.args) > position
                         else node.kwargs.get(keyword))
            if not isinstance(given_arg, fx.Node):
                return 0.0 if self._exact_constants else constant_gap(given_arg)
            value = lookup(given_arg)
            if isinstance(value, Interval):
                return value.error
            if isinstance(value, torch.Tensor):
                return self._tensor_gap(given_arg, value)
            return 0.0 if self._exact_constants else constant_gap(value)

        return IntervalStep(call, intervals, argument_of, self.params[node], argument, gap,
                            self._exact_constants)

    def _tensor_gap(self, node: fx.Node, value: torch.Tensor) -> torch.Tensor:
        """How far the float32 model's value of a constant tensor can be from the
        float64 copy's: 0 for one of the model's parameters or buffers (the same float32
        values), unbounded for one computed from them (inside the model, or by the trace
        here in float64: float32 rounds it its own way, so no proof goes through it)."""
        dtype = value.dtype if value.is_floating_point() else torch.float64
        if node in self._held or (self._exact_constants and node.op == "get_attr"):
            # (exact constants: the copy's own, as it holds them)
            return torch.zeros(value.shape, dtype=dtype, device=value.device)
        # one computed in forward from them rounds there, unlike the real network (an
        # integer one too: (w * 10).long() may truncate another way; one made from sizes
        # too: torch.arange(n).float() * 0.1 is float64's in the copy; a review met a
        # RuntimeError filling an integer tensor with inf)
        return torch.full(value.shape, torch.inf, dtype=dtype, device=value.device)

    # ------------------------------------------------------------------ the cone
    def _plan(self, image: torch.Tensor) -> Plan | None:
        """The cone engine's plan of images like ``image``, where the cone is used."""
        if self.cone is False:
            return None
        key = (tuple(image.shape[1:]), image.device)
        if key not in self._plans:
            try:
                plan = self.engine.plan(image[:1].to(torch.float64))
            except Exception:  # noqa: BLE001 - an operation the planner did not foresee:
                self._plans[key] = None  # whole images bound it all the same
                return None
            windowed = any(isinstance(step, (PointwiseStep, SpatialStep))
                           for _, step, _ in plan.steps)
            patches = {step.node: self._windowed_rule(step) for _, step, _ in plan.steps
                       if isinstance(step, SpatialStep)}
            self._patch_rules.update(patches)  # made once, not per call
            usable = windowed and all(rule is not None for rule in patches.values())
            if self.cone is None:  # the plan's own test of a saving, without its minimum
                # network size: the rules' elementwise passes shrink with the windows, so
                # even ConvSmall (too small for the fast engine's cone) screens 3.7x faster
                # in it (benchmarks/screen_cost.py)
                usable = usable and plan.cone_macs <= (1 - MIN_SAVING) * plan.full_macs
            self._plans[key] = plan if usable else None
        return self._plans[key]

    def _windowed_rule(self, step: SpatialStep) -> Any:
        """A sliding-window layer's rule on patches the cone padded (``None``: it has no
        form for them)."""
        rule = self.rules[step.node]
        if isinstance(rule, SignedAffine):
            return None if rule.patch_abs is None else replace(rule, run_abs=rule.patch_abs)
        return rule

    def _clean_cache(self, image: torch.Tensor, plan: Plan) -> FxCache:
        """The clean image's bounds (a box of width 0), kept as the cone engine's cache
        of two images: its lower bounds (index 0) and its upper bounds (index 1); with a
        float32 unit, a third: its errors (index 2; zero padding: a pad is exact)."""
        image = image.to(torch.float64)
        if self._clean is not None:
            kept, unit, cache = self._clean
            if kept.shape == image.shape and kept.device == image.device and torch.equal(
                    kept, image) and cache.plan is plan and unit == self._unit:
                return cache
        tensors: dict[str, torch.Tensor] = {}

        def keep(node: fx.Node, value: Any) -> None:
            for key, (pads, fill) in plan.needs.get(node, {}).items():
                ends = [value.lower, value.upper]
                if pads is not None:
                    ends = [F.pad(end, pads, value=fill) for end in ends]
                if value.error is not None:
                    ends.append(value.error if pads is None else F.pad(value.error, pads))
                tensors[key] = torch.cat(ends).permute(0, 2, 3, 1).contiguous()

        self._run(Interval(image, image.clone(), self._no_error(image)), keep)
        error = [] if self._unit is None else [torch.zeros_like(image)]
        cache = FxCache(torch.cat([image, image, *error]), tensors, plan)
        self._clean = (image.clone(), self._unit, cache)
        return cache

    def _run_cone(self, image: torch.Tensor, plan: Plan, positions: torch.Tensor,
                  lo: torch.Tensor, hi: torch.Tensor) -> Interval:
        """:meth:`_run` on the windows of each position's cone."""
        cache = self._clean_cache(image, plan)
        width, count = image.shape[-1], positions.shape[0]
        self._boxes = count
        y, x = positions // width, positions % width
        owner = torch.zeros(count, dtype=torch.long, device=image.device)
        queries = tuple(Query(cache, owner + i, y, x, None)
                        for i in range(3 if self._unit is not None else 2))
        env: dict[fx.Node, Any] = dict(self.graph.statics)
        stop = self.head[0] if self.head is not None else None
        for node, step, done in plan.steps:
            if node is stop or isinstance(step, OutputStep):
                source = _source(node)
                return _whole(source, env[source], queries)
            env[node] = self._cone_step(step, env, queries, lo, hi)
            for n in done:
                del env[n]
        raise AssertionError("the plan has no output")  # pragma: no cover

    def _cone_step(self, step: Any, env: dict[fx.Node, Any], queries: tuple[Query, ...],
                   lo: torch.Tensor, hi: torch.Tensor) -> Any:
        """One step of the plan on interval windows (:class:`_Windows`) or whole
        intervals (``queries``: of the lower bounds, the upper ones, and the errors)."""
        low, high = queries[:2]
        node = step.node
        if isinstance(step, InputStep):
            error = self._no_error(lo[:, :, None, None])
            return _windows(low.window(lo[:, :, None, None], step.box),
                            high.window(hi[:, :, None, None], step.box),
                            None if error is None else queries[2].window(error, step.box))
        if isinstance(step, ShapeStep):  # a shape: the lower bounds' windows have it
            return step.run(low, {n: env[n].lower if isinstance(env[n], (_Windows, Interval))
                                  else env[n] for n in node.all_input_nodes})
        if isinstance(step, SpatialStep):
            source = env[step.source]
            patch = Interval(step.gather(low, source.lower), step.gather(high, source.upper),
                             None if source.error is None
                             else step.gather(queries[2], source.error))
            out = self._apply(node, env, {step.source: patch},
                              lambda value: step.slide.patch(value(step.source)),
                              self._patch_rules[node])
            return _on_box(out, step.box, queries)
        given: dict[fx.Node, Interval] = {}
        for n in node.all_input_nodes:
            value = env[n]
            if not isinstance(value, _Windows):
                continue
            if isinstance(step, PointwiseStep):
                given[n] = _expanded(value, step.expand.get(n), queries)
            else:
                given[n] = _whole(n, value, queries)
        out = self._apply(node, env, given)
        return _on_box(out, step.box, queries) if isinstance(step, PointwiseStep) else out

    def _folded(self, value: Interval, label: int
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Margins through the folded last layer: ``(W_y - W_j) h + b_y - b_j``; with
        errors, the float32 model's: it computes the scores ``W h + b`` (each off by
        ``|W| e + γ_{in+1} (|W| (|h| + e) + |b|)``), whose difference it compares."""
        _, weight, bias = self.head
        weight, bias = weight.to(value.lower.device), bias.to(value.lower.device)
        rows, offsets = weight[label] - weight, bias[label] - bias
        flat = Interval(value.lower.flatten(1), value.upper.flatten(1))
        middle = (flat.lower + flat.upper) / 2
        radius = (flat.upper - flat.lower) / 2
        rule = SignedAffine(lambda t: F.linear(t, rows.abs()), offsets.abs(),
                            weight.shape[1] + 4)  # the rows' own rounding: a few more
        lower = rule.bounds(F.linear(middle, rows, offsets), middle, radius).lower
        if value.error is None:
            return lower, None
        flat.error = value.error.flatten(1)
        scores = self.rules[self.head[0]].error_of(flat, self._unit)  # the linear's rule
        return lower, _margin_errors(self.proved(self.head[0], scores, self._unit), label)


@dataclass(frozen=True)
class _Windows:
    """Bounds of a value on the windows of the pixels' cones (the clean image's bounds
    around them): the cone engine's windows of the lower and of the upper bounds, and of
    the float32 errors (or ``None``)."""

    lower: Window
    upper: Window
    error: Window | None = None


def _windows(lower: Window | torch.Tensor, upper: Window | torch.Tensor,
             error: Window | torch.Tensor | None = None) -> _Windows | Interval:
    """Windows of both bounds (an :class:`Interval` once they cover the map)."""
    if isinstance(lower, Window):
        return _Windows(lower, upper, error)
    return Interval(lower, upper, error)


def _on_box(value: Interval, box: Box, queries: tuple[Query, ...]) -> _Windows | Interval:
    """A step's bounds on its output box, as windows."""
    error = None if value.error is None else queries[2].window(value.error, box)
    return _windows(queries[0].window(value.lower, box), queries[1].window(value.upper, box),
                    error)


def _expanded(value: _Windows, expand: Callable | None, queries: tuple[Query, ...]
              ) -> Interval:
    """A pointwise step's input windows (expanded to the output's where it says)."""
    if expand is None:
        error = None if value.error is None else value.error.values
        return Interval(value.lower.values, value.upper.values, error)
    error = None if value.error is None else expand(queries[2], value.error)
    return Interval(expand(queries[0], value.lower), expand(queries[1], value.upper), error)


def _whole(node: fx.Node, value: Any, queries: tuple[Query, ...]) -> Any:
    """``value`` as whole maps (windows laid over the clean image's bounds)."""
    if not isinstance(value, _Windows):
        return value
    error = None if value.error is None else queries[2].full(node, value.error)
    return Interval(queries[0].full(node, value.lower), queries[1].full(node, value.upper),
                    error)


def _no_nan(error: torch.Tensor) -> torch.Tensor:
    """An error bound with its NaNs (an unbounded error times a zero weight) as ``inf``:
    unbounded, never proved."""
    return torch.nan_to_num(error, nan=torch.inf, posinf=torch.inf)


def _source(node: fx.Node) -> fx.Node:
    """The value a head (or the output) reads."""
    return node.args[0] if node.args else node.kwargs["input"]


def _difference(value: Interval, label: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``lower_label - upper_j``, rounded down; and the float32 scores' errors summed
    (the model compares its scores: no rounding of its own)."""
    lower = value.lower[:, label:label + 1] - value.upper
    lower = torch.nextafter(lower - 2 * UNIT * lower.abs(),
                            torch.tensor(-torch.inf, dtype=lower.dtype, device=lower.device))
    if value.error is None:
        return lower, None
    return lower, _margin_errors(value.error.flatten(1), label)


def _margin_errors(scores: torch.Tensor, label: int) -> torch.Tensor:
    """``[P, K]`` float32 errors of the margins ``z_label - z_j`` from the scores' own:
    ``e_label + e_j`` (the model compares its scores: nothing more rounds)."""
    return (scores[:, label:label + 1] + scores) * GROWN

