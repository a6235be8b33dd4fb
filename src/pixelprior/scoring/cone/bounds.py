"""Sound bounds of a network's class scores over a box of colors of one pixel.

:class:`BoundEngine` runs the cone engine's plan (the same windows, the same gathers from
a clean cache) on zonotopes instead of numbers (:mod:`.zonotope`): a box of colors at a
position enters as a 1×1 window with one symbol per channel; every operation applies the
bound rule registered for it in the operation table; outside a value's window the network
is the clean image's (exact, no symbols). Only the pixel's cone carries symbols.

Rows of a call are *boxes* (an image, a position, ``lo``/``hi`` per channel). A value of
``N`` boxes with ``R - 1`` symbols is stored as ``[N, R, ...]`` and run through an
operation as ``N · R`` rows: the center rows read the clean image's cache around the
window, the generator rows an all-zero image appended to the cache (a generator is a
change, zero outside the window). Affine operations then run as the model runs them and
the operation's value at zero (its bias) is subtracted from the generator rows.

Everything is computed in float64 on a float64 copy of the model (BatchNorm not folded:
the verifier bounds the model's own operations); a float32 engine exists only to measure
rounding.

**Float error, proved, per neuron.** Each value carries ``error``, shaped like its
center: how far the exact (real-arithmetic) values of each neuron may lie from the
computed zonotope, and ``size``, a bound of each neuron's computed ``|center| + Σ
|generators|``. Around a window the clean image's neurons have their own errors: a whole
image pass of the interval screen's error rules over the clean image
(:meth:`~.screen.IntervalScreen.clean_errors`), kept in the cache as one more image per
image, read around windows as the clean values are. An affine operation ``A`` passes
``|A| error`` on and adds ``γ_{terms+2}`` of ``|A| size`` and of its constant part per row
(``|A|`` from the operation's interval rule: ``|W|`` of a convolution or a linear layer,
``|α|`` of a sum, ``|c|`` of a product); a relaxation passes ``L · error`` and adds its own
roundings (:func:`~.zonotope.relaxation_error`), and **stops the error where ``f`` is
constant over every value the exact network can take** (a ReLU off: its relaxation is 0
exactly); a maximum passes the largest error of its candidates and adds its fold's. The
margins' bounds take the total off (:class:`MarginBounds`' ``rounding``), so they hold for
the network in real arithmetic. Without the stop the bound grows with the product of the
layers' absolute row sums (10^25 for the CIFAR SqueezeNet: a worst case of 10^9 in its
logits); with it, ~5·10^-3 of ``1 + max |logit|`` there.

**With signs, at the margins.** It still grows by ``|A|`` per layer where the ReLUs are
on. Where the forward total is not negligible, the steps on whole maps (kept on a tape as
they run) carry it again backwards from each margin with signs (:mod:`.signed`), and the
smaller bound is taken per margin, where the forward one takes more than
:data:`SIGNED_SHARE` of a margin that could be proved: refined all the way, on the
SqueezeNet's center pixel 3·10^-7 against 0.017 at a single color, 10^-6 against 0.036
over a box of side 0.06; on a stack of 16 linear layers with ReLUs 2·10^-7 against 3·10^6
(``benchmarks/signed_rounding.py``). Where the forward errors pass the values
themselves (a 20-layer ResNet with normalised values: 10^6), every slope after them is
in doubt and the signed bound is only ~15 times smaller: no box is proved there.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ...models import copy_module
from .decompose import DECOMPOSED, MATRIX_PRODUCT
from .engine import FxIncrementalForward
from .geometry import Box
from .graph import (
    FxUnsupportedError,
    TracedGraph,
    check_agreement,
    check_same_program,
    check_shape,
    computed_attributes,
    describe,
    model_dtype,
    training_module,
    untraceable,
)
from .intervals import Exact, Negate, PositiveSum, Scale, SignedAffine, Sum
from .operators.shape import indexed_after_ellipsis
from .plan import FullStep, InputStep, OutputStep, Plan, PointwiseStep, ShapeStep, SpatialStep
from .rounding import rounds_nothing
from .runtime import FxCache, Query, Window
from .screen import IntervalScreen, IntervalUnsupportedError
from .signed import Cut, LinearStep, SlopeStep, Tape
from .table import ELEMENTWISE
from .zonotope import (
    Affine,
    BoundUnsupportedError,
    Identity,
    MaxOver,
    MaxPool,
    PiecewiseLinear,
    Product,
    Rearrange,
    Relaxation,
    Reshape,
    Rounding,
    add_symbols,
    gamma,
    interval,
    magnitude,
    multiply,
    multiply_matrices,
    pad_rows,
    per_box,
    relaxation_error,
)

__all__ = ["BoundCache", "BoundEngine", "BoundUnsupportedError", "MarginBounds",
           "OperationSupport", "OutOfTime", "TooManySymbols"]


# the forward bound of a margin's float error past which the signed one is computed too
# (below it the forward bound is already far under any tolerance)
SIGNED_FROM = 2.0**-30
# ... and past this share of the margin's computed bound (below, it leaves the margin as
# good as the signed one would: the signed one is asked to stay under the same share)
SIGNED_SHARE = 1 / 8

@dataclass(frozen=True)
class OperationSupport:
    """One operation of a model as the verifier's copy runs it (:meth:`BoundEngine.operations`).

    Attributes:
        node: the operation as the refusals name it (``"Conv2d (features.0)"``, ``"F.pad"``;
            ``"... of what the verifier writes X as"`` for the operations a rewrite made).
        operation: the operation table's name (``"conv2d"``; ``None``: not one it knows).
        refused: why the bounds cannot run it (the line :meth:`BoundEngine.plan` raises),
            ``None`` where they can.
        screened: it has an interval rule (the interval screen, and the float32 proof,
            run through it).
        float32: ``"proved"`` (the interval rules prove the float32 error through it
            where intervals are tight), ``"estimated"`` (its kernel computes otherwise
            than the copy: a normalisation, a softmax, attention, a constant computed in
            ``forward``), ``"exact"`` (a copy or a size: nothing to round) or ``None``
            (refused).
    """

    node: str
    operation: str | None
    refused: str | None
    screened: bool
    float32: str | None


class TooManySymbols(RuntimeError):
    """A call went past the symbols it was allowed (its cost measure), and stopped."""


class OutOfTime(RuntimeError):
    """A call went past its deadline (between two operations), and stopped: nothing of
    it is bounded."""


@dataclass
class ZWindow:
    """Zonotopes of a window: ``values [N, R, C, h, w]`` at ``top``/``left`` (``[N]``)
    of ``box.map``; outside it the value is the clean image's. ``error`` and ``size``
    (``[N, C, h, w]``, the window's neurons; the clean neurons' are in the cache): how far
    each neuron's exact (real-arithmetic) values lie from the computed zonotope, and a
    bound of its computed ``|center| + Σ |generators|``."""

    values: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor
    box: Box
    error: torch.Tensor
    size: torch.Tensor

    def laid(self, tensor: torch.Tensor) -> Window:
        """``tensor`` (one row per box, shaped like the window) as a window at the same
        place."""
        return Window(tensor, self.top, self.left, self.box)


@dataclass
class ZFull:
    """Zonotopes of a whole value: ``values [N, R, *shape]``, each neuron's float error
    bound and size bound ``[N, *shape]`` (see :class:`ZWindow`)."""

    values: torch.Tensor
    error: torch.Tensor
    size: torch.Tensor


@dataclass
class ZSummed(ZFull):
    """The products node of a product of matrices of two varying values holding the
    whole product, summed over ``K`` already (:meth:`BoundEngine._matrix_product`): its
    sum passes it on."""


@dataclass
class ZFlat:
    """A flattened window: the center as a whole ``[N, F]`` (``F = C·H·W``), the
    generators still the window's (rows ``1..`` of ``window.values``), so that a linear
    layer after a flatten multiplies only the weights the window reaches. ``source``: the
    node flattened (whose clean maps surround the window)."""

    center: torch.Tensor
    window: ZWindow
    source: fx.Node


@dataclass
class BoundCache:
    """The clean images' cache with an all-zero image appended (index ``zero``, what
    generator rows read around their windows) and then, per image, a bound of its clean
    values' float error (index ``errors + image``)."""

    cache: FxCache
    zero: int
    errors: int


@dataclass
class MarginBounds:
    """Bounds of the margins ``z_label - z_j`` over each box.

    Tensors are in the engine's dtype (float64 unless made for measuring rounding). The
    bounds hold for the network in real arithmetic: the float error of computing them
    (``rounding``) is already subtracted from ``lower`` and added to ``upper``.

    Attributes:
        lower: ``[N, K]``, a lower bound of each margin (``+inf`` at the label).
        upper: ``[N, K]``, an upper bound (``+inf`` at the label).
        inputs: ``[N, K, C]``, each margin's coefficients of the color symbols.
        symbols: the symbols the call used (color channels and relaxation errors).
        row_elements: the neurons of the widest relaxed value, per box and symbol: with
            ``symbols``, the size of the call's largest tensors (its memory traffic).
        rounding: ``[N, K]``, the bound of the float error taken off (0 at the label).
        computed: ``[N, K]``, the lower bound as computed, before ``rounding`` is taken
            off (to measure rounding; it proves nothing).
    """

    lower: torch.Tensor
    upper: torch.Tensor
    inputs: torch.Tensor
    symbols: int
    row_elements: int = 0
    rounding: torch.Tensor | None = None
    computed: torch.Tensor | None = None

    @property
    def worst(self) -> torch.Tensor:
        """``[N]``: the lowest margin lower bound of each box."""
        return self.lower.min(1).values


class _Call:
    """One call's boxes: their rows, origins and the global symbol count."""

    def __init__(self, bound_cache: BoundCache, owner: torch.Tensor, y: torch.Tensor,
                 x: torch.Tensor, channels: int, unit: float,
                 max_symbols: int | None = None, signed: bool = True) -> None:
        self.max_symbols, self.unit = max_symbols, unit
        self.cache, self.zero = bound_cache.cache, bound_cache.zero
        self.owner, self.y, self.x = owner, y, x
        self.count = owner.shape[0]
        self.rows = 1 + channels
        self.row_elements = 0  # the widest relaxed value's neurons per row
        self.shapes = bound_cache.cache.plan.shapes
        self.error: torch.Tensor | None = None  # the output's, per neuron
        # the whole-map steps, for the signed bound (:mod:`.signed`)
        self.tape = Tape(active=signed)
        self.logits: fx.Node | None = None  # the node whose value the output is
        self._queries: dict[int, Query] = {}
        # errors and sizes in one query of 2N rows: the error images, then the clean ones
        self._carried = Query(self.cache, torch.cat([owner + bound_cache.errors, owner]),
                              y.repeat(2), x.repeat(2), None)

    def query(self, rows: int) -> Query:
        """The cone engine's query of ``N · rows`` stacked rows (center rows on the clean
        image, generator rows on the zero image)."""
        if rows not in self._queries:
            owner = torch.full((self.count, rows), self.zero, dtype=torch.long,
                               device=self.owner.device)
            owner[:, 0] = self.owner
            self._queries[rows] = Query(self.cache, owner.flatten(),
                                        self.y.repeat_interleave(rows),
                                        self.x.repeat_interleave(rows), None)
        return self._queries[rows]

    def origins(self, box: Box) -> tuple[torch.Tensor, torch.Tensor]:
        return box.top[self.y], box.left[self.x]

    def stacked_window(self, value: ZWindow) -> tuple[Query, Window]:
        """``value`` as the cone engine's window of stacked rows, with its query."""
        rows = value.values.shape[1]
        flat = value.values.flatten(0, 1)
        return self.query(rows), Window(flat, value.top.repeat_interleave(rows),
                                        value.left.repeat_interleave(rows), value.box)

    def grow(self, values: torch.Tensor) -> torch.Tensor:
        """Zonotopes padded to the call's symbols (before new ones are appended)."""
        return pad_rows(values, self.rows)

    def gathered(self, reader: Any, value: ZWindow) -> tuple[torch.Tensor, torch.Tensor]:
        """A window's errors and sizes through a step's gather (or expansion) ``reader``:
        the clean image's around the window (its errors, its values' magnitudes)."""
        return self._split(reader(self._carried, self._both(value)))

    def materialised(self, node: fx.Node, value: ZWindow
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """A window's errors and sizes as whole maps ``[N, C, H, W]`` (the clean image's
        around it)."""
        return self._split(self._carried._materialise(node, self._both(value)))

    def _both(self, value: ZWindow) -> Window:
        """A window's errors and sizes stacked (``2N`` rows), in the cache's dtype."""
        stacked = torch.cat([value.error, value.size]).to(self.cache.images.dtype)
        return Window(stacked, value.top.repeat(2), value.left.repeat(2), value.box)

    def _split(self, both: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        error, size = both.double().split(self.count)
        return error, size.abs()

    def relax(self, rule: Relaxation, values: torch.Tensor, error: torch.Tensor,
              parts: dict | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The relaxed zonotopes, their error bound and their size bound (per neuron);
        ``parts`` filled for the signed bound (:meth:`~.zonotope.Relaxation.apply_rounded`)."""
        out, moved, size = rule.apply_rounded(self.grow(values), error, self.unit, parts)
        return self._counted(out), moved.double(), size.double()

    def add(self, values: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
        return self._counted(add_symbols(self.grow(values), radius))

    def _counted(self, out: torch.Tensor) -> torch.Tensor:
        self.rows = out.shape[1]
        self.row_elements = max(self.row_elements, out[0, 0].numel())
        if self.max_symbols is not None and self.rows - 1 > self.max_symbols:
            raise TooManySymbols(f"more than {self.max_symbols:,} symbols")
        return out


class BoundEngine:
    """Sound lower bounds of the margins ``z_y - z_j`` of a network over boxes of colors
    of one pixel (see the module docstring).

    >>> engine = BoundEngine(model)
    >>> cache = engine.prepare(images)                        # [B, C, H, W] in [0, 1]
    >>> bounds = engine.margins(cache, owner, y, x, lo, hi, labels)
    >>> bounds.worst                                          # [N]: > 0 proves the box

    Args:
        model: the network (images in [0, 1] → class scores), in eval mode.
        dtype: the arithmetic of the bounds. float64 is what the verifier's tolerance
            covers; float32 exists to measure rounding (``benchmarks/bound_rounding.py``:
            the float32 bounds' distance from the float64 ones, scaled by the ratio of
            the units, estimates float64's error) — its bounds prove nothing.
        shape: the images' ``(C, H, W)``: a setting the model computes from a value's
            size (``F.avg_pool2d(out, out.size()[3])``) is read on such images, and the
            engine then bounds images of this shape only (:attr:`shape`; ``None``: such
            a setting is refused; :class:`~pixelprior.Verifier` gives it).
        signed: also bound the margins' float error with signs (:mod:`.signed`), where
            the forward bound is not negligible, and take the smaller; ``False``: the
            forward bound alone (to measure what the signed one saves).

    Attributes:
        shape: the one image shape the engine bounds, ``None`` where any.
        signed: see above.
        signed_fallbacks: the steps the last signed bound could not pull through (cut
            there: their forward error entered instead), with why; empty where none.

    Raises:
        BoundUnsupportedError: ``torch.fx`` cannot trace the model, or an operation has
            no bound rule (named, when the plan of an image size is built).
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.float64,
                 shape: tuple[int, ...] | None = None, signed: bool = True) -> None:
        training = training_module(model)
        if training is not None:
            raise BoundUnsupportedError(f"{training} is in training mode; call model.eval()")
        self.signed = signed
        if dtype not in (torch.float64, torch.float32):
            raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
        self.dtype = dtype
        self.unit = torch.finfo(dtype).eps / 2  # round to nearest
        self.model = model  # run as written, its scores checked against a traced copy's
        copied = copy_module(model).to(dtype).eval()
        try:
            self.engine = FxIncrementalForward(copied, fold=False, float_as=dtype,
                                               decompose=True,
                                               source_dtype=model_dtype(model, torch.float32),
                                               shape=shape)
        except FxUnsupportedError as exc:
            raise BoundUnsupportedError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - tracing fails in many ways
            raise BoundUnsupportedError(untraceable(model, exc)) from None
        self.graph = self.engine.graph
        self.shape = self.graph.shape
        check_same_program(model, copied, BoundUnsupportedError)
        # the model as the engine copied it, traced in its own dtype: a model changed
        # since (new weights) no longer agrees with it, and is refused
        self._as_traced = TracedGraph(model, fold=False)
        self._checked: set[tuple] = set()
        self._rules: dict[fx.Node, Any] = {}
        self._interval_rules: dict[fx.Node, Any] = {}  # per node (its |A|), or None
        # the steps the last signed bound could not pull through (cut there), and why
        self.signed_fallbacks: list[str] = []
        # nodes that apply a tensor computed in forward from the parameters (not one of
        # them, a literal, or an exact copy of them such as w[:, None, None]; also what
        # torch.fx folded into a constant as it traced): the copy rounds it,
        # the network in real arithmetic does not, and nothing bounds the difference, so
        # their error is unbounded and no proof goes through
        computed = computed_attributes(model, self.graph.graph_module)
        held = self.graph.copied_constants(
            lambda n: n.target not in computed or DECOMPOSED in n.meta)
        self._rounded_constants = {
            node for node in self.graph.nodes
            if any(n in self.graph.statics and n not in held
                   and isinstance(self.graph.statics[n], torch.Tensor)
                   for n in node.all_input_nodes)}
        try:  # the clean images' float error, by the interval rules (the same table)
            self._screen: IntervalScreen | None = IntervalScreen(model, cone=False,
                                                                 shape=self.shape)
        except IntervalUnsupportedError:
            self._screen = None  # no bound of it: the errors are unbounded

    def plan(self, images: torch.Tensor) -> Plan:
        """The plan of images like ``images`` (every operation checked for a bound rule).

        Raises:
            BoundUnsupportedError: an operation of the model has no bound rule, or the
                verifier's copy does not run on such images (an operation it wrote out
                given a value of another layout, ``nn.MultiheadAttention`` of ``[B, E]``).
        """
        plan = self._planned(images)
        key = tuple(images.shape[1:])
        if key not in self._checked:
            for _, _, refused in self._refusals(plan):
                if refused is not None:
                    raise BoundUnsupportedError(refused)
            self._checked.add(key)
        return plan

    def _planned(self, images: torch.Tensor) -> Plan:
        """The engine's plan of images of this shape (a run of the copy that fails on
        them refused in one line)."""
        check_shape(self.shape, images, BoundUnsupportedError)
        try:
            return self.engine.plan(images.to(self.dtype))
        except RuntimeError as exc:  # (the model's own errors show when it runs first)
            first = (str(exc).strip().splitlines() or [""])[0]
            raise BoundUnsupportedError(
                f"the verifier's copy of the model does not run on images of shape "
                f"{list(images.shape[1:])} ({first}): an operation it writes out (attention, "
                "a normalisation) was given values of another layout") from None

    def _refusals(self, plan: Plan):
        """Each step of ``plan`` that computes from the image, with why the bounds cannot
        run it (the line :meth:`plan` raises) or ``None``: ``(node, step, refused)``."""
        varying = {n for n in self.graph.nodes if n not in self.graph.statics
                   and n not in self.graph.sizes}
        for node, step, _ in plan.steps:
            if node in self.graph.sizes:  # a size, or arithmetic of sizes: run as is
                continue
            problem = self._unsupported(step)  # "": no rule, nothing more to say
            if problem is None:
                problem = (self._mixes_images(node, plan)
                           or _moves_batch_axis(node, step, plan, varying))
            if problem is not None:
                yield node, step, (f"the verifier has no bound rule for "
                                   f"{describe(node, self.graph.modules)}{problem}"
                                   + _last_softmax_advice(node, self.graph.modules))
            else:
                yield node, step, self._product_problem(node, step, varying)

    def operations(self, images: torch.Tensor) -> list[OperationSupport]:
        """Every operation of the model the verifier's copy runs on images of this shape,
        with what the bounds, the interval screen and the float32 proof make of it — all
        the refusals at once, where :meth:`plan` names the first.

        Args:
            images: float ``[B, C, H, W]`` (only the shape counts).

        Returns:
            One :class:`OperationSupport` per operation that computes from the image, in
            the graph's order.

        Raises:
            BoundUnsupportedError: the copy does not run on such images.
        """
        listed = []
        for node, step, refused in self._refusals(self._planned(images)):
            if isinstance(step, (InputStep, OutputStep)):
                continue
            resolved = self.graph.resolve(node)
            operation = resolved.operation
            interval = operation.interval if operation is not None else None
            screened = interval is not None and not isinstance(resolved.params, str) and (
                not isinstance(interval(resolved.params), str))
            if refused is not None:
                float32 = None
            elif not screened or DECOMPOSED in node.meta or node in self._rounded_constants:
                float32 = "estimated"
            else:
                float32 = "exact" if isinstance(step, ShapeStep) or (
                    operation is not None and rounds_nothing(operation.name)) else "proved"
            listed.append(OperationSupport(describe(node, self.graph.modules),
                                           operation.name if operation else None,
                                           refused, screened, float32))
        return listed

    def _mixes_images(self, node: fx.Node, plan: Plan) -> str | None:
        """Why a value computed from the image mixes the images of a batch, or ``None``:
        a concatenation or stack along the batch axis (as test-time augmentation stacks
        copies), a reduction over it (a mean of the whole batch). The engine runs boxes
        as rows of that axis; a reshape folding channels into it and back keeps each
        image's rows together and is left to run. ``plan.shapes`` are of one image."""
        shape = plan.shapes.get(node)
        if shape is None or node in self.graph.statics or node.op == "output":
            return None
        name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
        resolved = self.graph.resolve(node)
        if resolved.operation is not None and resolved.operation.name == "pad":
            source = plan.shapes.get(_first_argument(node))  # (pads name the last axes)
            if source is None or len(resolved.params) >= 2 * len(source):
                return (f" (of one image it makes a value of shape {tuple(shape)}: it pads "
                        "the batch axis; give pads for the axes after it)")
            return None
        if name in ("cat", "concat", "concatenate", "stack"):
            if len(shape) >= 1 and shape[0] == 1:  # one value: a copy
                return None
            axes = _axes(node, 0, plan)
        elif name in _REDUCTIONS:  # over the batch, kept or not (mean(0, keepdim=True))
            axes = _axes(node, None, plan)
        else:
            return None
        if axes is not None and 0 not in axes:
            return None
        return (f" (of one image it makes a value of shape {tuple(shape)}: it computes "
                "across the batch axis, which the verifier bounds one image a row at; "
                "keep each image on its own row, e.g. test-time copies on another axis)")

    def _product_problem(self, node: fx.Node, step: Any, varying: set[fx.Node]
                         ) -> str | None:
        """Why a division by a value computed from the image that the copy's rewrite left
        cannot be bounded (:mod:`.decompose` runs each it finds as a product with the
        reciprocal; the rules of a quotient divide by constants only), else ``None``.
        ``varying``: the nodes computed from the image."""
        resolved = getattr(step, "resolved", None)
        if resolved is None or resolved.operation is None or resolved.operation.bound is None:
            return None
        rule = resolved.operation.bound(resolved.params)
        if not isinstance(rule, Product):
            return None
        try:
            rule.check(node, varying)
        except BoundUnsupportedError as exc:
            what = str(exc).partition(": ")[2] or str(exc)
            name = describe(node, self.graph.modules)
            name += f" ({node.name})" if node.name != name else ""
            return (f"{name} is {what} that the verifier's copy did not rewrite as a "
                    "product with its reciprocal: the rules of a quotient divide by "
                    "constants only")
        return None

    @staticmethod
    def _unsupported(step: Any) -> str | None:
        if isinstance(step, (InputStep, OutputStep, ShapeStep)):
            return None
        resolved = step.resolved
        if resolved.operation is None:
            return ""
        if isinstance(resolved.params, str):
            return f" ({resolved.params})"
        if resolved.operation.bound is None:
            return ""
        rule = resolved.operation.bound(resolved.params)
        return f" ({rule})" if isinstance(rule, str) else None

    @torch.inference_mode()
    def check_agrees(self, images: torch.Tensor) -> None:
        """Refuse a model whose own scores differ from those of the copy traced when the
        engine was made, the function the bounds are of: code ``torch.fx`` does not
        record, or a model changed since (new weights), computes another. Both run in the
        model's own dtype, the same operations: only such a difference parts them beyond
        rounding. (What tracing can see, in-place writes and hooks, is refused when the
        engine is made.)

        Args:
            images: float ``[B, C, H, W]``.

        Raises:
            BoundUnsupportedError: the model does not return scores ``[B, K]``, or a score
                differs by more than :data:`~.graph.AGREEMENT` relative to the image's largest.
        """
        check_agreement(self.model, self._as_traced, images, BoundUnsupportedError,
                        self.graph)

    def prepare(self, images: torch.Tensor) -> BoundCache:
        """The clean images' cache (in the engine's dtype), with the zero image the
        generators read.

        Args:
            images: float ``[B, C, H, W]`` in [0, 1].

        Returns:
            The cache every call on these images reuses.
        """
        self.check_agrees(images)
        images = images.to(self.dtype)
        self.plan(images)
        cache = self.engine.prepare(images)
        errors = self._clean_errors(images, cache)
        tensors = {key: torch.cat([t, torch.zeros_like(t[:1]), errors[key]])
                   for key, t in cache.tensors.items()}
        zero = torch.zeros_like(images[:1])
        return BoundCache(FxCache(torch.cat([cache.images, zero, torch.zeros_like(images)]),
                                  tensors, cache.plan), images.shape[0], images.shape[0] + 1)

    def _clean_errors(self, images: torch.Tensor, cache: FxCache) -> dict[str, torch.Tensor]:
        """Per cache key, a bound of how far the clean values it holds (computed in the
        engine's dtype) lie from their real-arithmetic values, laid out as the key's
        tensor (channels last, padded with zeros: a pad is exact); unbounded where the
        interval screen cannot run the model."""
        found: dict[str, torch.Tensor] = {}
        if self._screen is not None:
            try:
                found = self._screen.clean_errors(images, self.unit)
            except IntervalUnsupportedError:  # a rule refusing these arguments: no bound
                pass
        errors = {key: torch.full_like(like, math.inf) for key, like in cache.tensors.items()}
        for node, needs in cache.plan.needs.items():
            error = found.get(node.name)
            if error is None:
                continue
            for key, (pads, _) in needs.items():
                padded = error if pads is None else F.pad(error, pads)
                # rounded up into the engine's dtype (float32 holds it within 2^-24)
                errors[key] = (padded * (1 + 2.0**-20)).to(cache.tensors[key].dtype).permute(
                    0, 2, 3, 1).contiguous()
        return errors

    def logits(self, cache: BoundCache, owner: torch.Tensor, y: torch.Tensor, x: torch.Tensor,
               lower: torch.Tensor, upper: torch.Tensor,
               max_symbols: int | None = None) -> torch.Tensor:
        """Zonotopes of the class scores over each box.

        Args:
            cache: from :meth:`prepare`.
            owner, y, x: long ``[N]``: each box's image and pixel.
            lower, upper: float ``[N, C]``: each box's colors, in [0, 1].
            max_symbols: stop past this many symbols (a cost limit).

        Returns:
            ``[N, R, K]`` in the engine's dtype (row 0 the center, then the generators);
            NaN where a score's float error is unbounded (a relaxation left its
            domain, as an exponential past ``e^256`` does: its zonotope there is a
            placeholder, not the score; a review found finite, wrong centers).

        Raises:
            TooManySymbols: past ``max_symbols``.
        """
        values, call = self._logits(cache, owner, y, x, lower, upper, max_symbols)
        error = torch.as_tensor(call.error, device=values.device)
        unbounded = ~torch.isfinite(error.expand(values.shape[0], values.shape[-1]))
        return torch.where(unbounded[:, None], torch.nan, values)

    @torch.inference_mode()
    def _logits(self, cache: BoundCache, owner: torch.Tensor, y: torch.Tensor,
                x: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
                max_symbols: int | None, deadline: float | None = None
                ) -> tuple[torch.Tensor, _Call]:
        lower, upper = lower.to(self.dtype), upper.to(self.dtype)
        call = _Call(cache, owner, y, x, lower.shape[1], self.unit, max_symbols, self.signed)
        env: dict[fx.Node, Any] = dict(self.graph.statics)
        result = None
        for node, step, done in cache.cache.plan.steps:
            if deadline is not None and time.perf_counter() > deadline:
                raise OutOfTime(f"past the deadline at {node.name}")
            env[node] = result = self._run(step, call, env, lower, upper)
            for n in done:
                del env[n]
            if isinstance(step, OutputStep) and isinstance(node.args[0], fx.Node):
                call.logits = node.args[0]
        if isinstance(result, ZWindow):
            raise BoundUnsupportedError("the model's output is a feature map, not scores")
        call.error = result.error
        return call.grow(result.values), call

    def margins(self, cache: BoundCache, owner: torch.Tensor, y: torch.Tensor,
                x: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
                labels: torch.Tensor, max_symbols: int | None = None,
                deadline: float | None = None) -> MarginBounds:
        """Bounds of ``z_label - z_j`` over each box (see :meth:`logits`).

        Args:
            labels: long ``[N]``: each box's class whose margins are bounded.
            deadline: a ``time.perf_counter()`` past which the call stops between two
                operations (``None``: none).

        Returns:
            The margins' lower and upper bounds and their color coefficients.

        Raises:
            TooManySymbols: past ``max_symbols``.
            OutOfTime: past ``deadline``.
        """
        values, call = self._logits(cache, owner, y, x, lower, upper, max_symbols, deadline)
        own = values.gather(2, labels.view(-1, 1, 1).expand(-1, values.shape[1], 1))
        margin = own - values  # [N, R, K]
        low, high = interval(margin)
        # NaN (an unbounded value met by a zero weight) is no bound: -inf, inf
        low = torch.where(torch.isnan(low), -math.inf, low)
        high = torch.where(torch.isnan(high), math.inf, high)
        rounding = self._margin_rounding(values, margin,
                                         self._carried_error(call, labels, low), labels)
        at_label = F.one_hot(labels, values.shape[2]).bool()
        inf = torch.tensor(float("inf"), dtype=low.dtype, device=low.device)
        channels = lower.shape[1]
        lowest = low - rounding
        lowest = torch.where(torch.isnan(lowest), -inf, lowest)  # (inf - inf: no bound)
        return MarginBounds(torch.where(at_label, inf, lowest),
                            torch.where(at_label, inf, high + rounding),
                            margin[:, 1:1 + channels].transpose(1, 2), values.shape[1] - 1,
                            call.row_elements, torch.where(at_label, 0.0, rounding),
                            torch.where(at_label, inf, low))

    def _carried_error(self, call: _Call, labels: torch.Tensor, low: torch.Tensor
                       ) -> torch.Tensor:
        """``[N, K]``: how far each exact margin lies from the computed logits' difference
        by the logits' float errors: ``e_label + e_j`` of the forward bound, or the
        signed bound's (:mod:`.signed`) where smaller, taken where the forward one is not
        negligible and the computed lower bound ``low`` is above 0 (below, no rounding
        bound proves the margin)."""
        self.signed_fallbacks = []
        error = call.error.reshape(call.error.shape[0], -1)
        both = error.gather(1, labels.view(-1, 1)) + error
        at_label = F.one_hot(labels, both.shape[1]).bool()
        # (a box with a margin whose computed bound is at most 0 is not proved whatever
        # the rounding: none of its margins is worth the pulls)
        provable = ((low > 0) | at_label).all(1, keepdim=True)
        wanted = (both > SIGNED_FROM) & (both > low * SIGNED_SHARE) & provable & ~at_label
        if call.logits is None or not call.tape.active or not bool(wanted.any()):
            return both
        # (enough: that share of the computed bound, the rest left for the tolerance)
        signed = call.tape.margin_errors(call.logits, labels, both.shape[1], wanted,
                                         low * SIGNED_SHARE)
        self.signed_fallbacks = call.tape.fallbacks
        return both if signed is None else torch.minimum(both, signed)

    def _margin_rounding(self, logits: torch.Tensor, margin: torch.Tensor,
                         both: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``[N, K]``: a bound of the float error of each margin's interval bounds.

        The logits' exact values lie within ``both [N, K]`` of the computed ones (a
        margin's within ``e_label + e_j``, or the signed bound), the difference rounds
        ``u`` of each row, the
        interval's sum over ``R`` rows ``γ_{R+1}`` of ``|center| + Σ |generators|``; the
        total is rounded up by a relative ``10^-6`` and ``4u`` of the bound, so that
        subtracting it in floating point stays a bound (:mod:`.zonotope`'s rules give the
        rest).
        """
        unit, rows = self.unit, margin.shape[1]
        size = magnitude(margin)
        total = (both + unit * 2 * per_box(magnitude(logits))[:, None]
                 + gamma(rows + 1, unit) * size)
        return total * (1 + 1e-6) + 4 * unit * (size + total)

    # ---------------------------------------------------------------- steps
    def _rule(self, step: Any) -> Any:
        """The node's bound rule, made once (its gains read the weights once)."""
        rule = self._rules.get(step.node)
        if rule is None:
            rule = self._rules[step.node] = step.resolved.operation.bound(step.resolved.params)
        return rule

    def _run(self, step: Any, call: _Call, env: dict, lower: torch.Tensor,
             upper: torch.Tensor) -> Any:
        if isinstance(step, InputStep):
            return self._input(step, call, lower, upper)
        if isinstance(step, OutputStep):
            return env[step.node.args[0]]
        if isinstance(step, ShapeStep):
            return self._shape(step, call, env)
        if step.node in self.graph.sizes:  # x.shape[0]: the same for every color
            return step.run(call.query(1), env)
        fused = step.node.meta.get(MATRIX_PRODUCT)
        if fused is not None:  # a product of matrices written as products summed
            value = self._matrix_product(call, env, fused)
            if value is not None:
                return value
        rule = self._rule(step)
        if isinstance(step, SpatialStep):
            value = self._spatial(step, rule, call, env)
        elif isinstance(step, PointwiseStep):
            value = self._pointwise(step, rule, call, env)
        else:
            value = self._full(step, rule, call, env)
        if step.node in self._rounded_constants and isinstance(value, (ZWindow, ZFull)):
            value.error = torch.full_like(value.error, math.inf)
            if step.node in call.tape.taped:
                call.tape.cut(step.node, value.error)
        return value

    @staticmethod
    def _matrix_product(call: _Call, env: dict, fused: Any) -> ZFull | None:
        """``a @ b`` of two varying values, written ``(a.unsqueeze(-1) *
        b.unsqueeze(-3)).sum(-2)`` by :mod:`.decompose`: computed whole at the products
        node (:func:`~.zonotope.multiply_matrices`, a new symbol per output where the
        products' own rule takes one per product), passed on by the sum. ``None`` where
        a factor is constant (the products are affine: run, then summed, as written)."""
        if isinstance(fused, fx.Node):  # the sum: the products node holds the result
            done = env[fused]
            return ZFull(done.values, done.error, done.size) if isinstance(
                done, ZSummed) else None
        if any(type(env[n]) is not ZFull for n in fused):
            return None
        (a, b) = (env[n] for n in fused)
        rows = max(a.values.shape[1], b.values.shape[1])
        x, y = pad_rows(a.values, rows).squeeze(-1), pad_rows(b.values, rows).squeeze(-3)
        errors = (a.error.squeeze(-1), b.error.squeeze(-3))
        sizes = (_stored_size(x, a.size.squeeze(-1), call.unit),
                 _stored_size(y, b.size.squeeze(-3), call.unit))
        values, radius, error, size = multiply_matrices(x, y, errors, sizes, call.unit)
        shape = values[:, 0].shape
        return ZSummed(call.add(values, radius), error.expand(shape).contiguous(),
                       size.expand(shape).contiguous())

    def _input(self, step: InputStep, call: _Call, lower, upper) -> ZWindow | ZFull:
        count, channels = lower.shape
        values = lower.new_zeros(count, 1 + channels, channels, 1, 1)
        values[:, 0, :, 0, 0] = (lower + upper) / 2
        index = torch.arange(channels, device=lower.device)
        values[:, 1 + index, index, 0, 0] = (upper - lower) / 2
        # (lo + hi) / 2 and (hi - lo) / 2 round once each; the clean image is exact
        error = (call.unit * (lower.abs() + upper.abs()))[:, :, None, None].double()
        size = magnitude(values).double() * (1 + call.unit)
        return self._wrap(values, step.box, call, error, size)

    def _shape(self, step: ShapeStep, call: _Call, env: dict) -> Any:
        def value(n: fx.Node):
            v = env[n]
            if isinstance(v, (ZWindow, ZFull, ZFlat)):
                return torch.empty((call.count, *call.shapes[n][1:]), device="meta")
            return v

        return step.call(*fx.node.map_arg(step.node.args, value),
                         **fx.node.map_arg(step.node.kwargs, value))

    def _wrap(self, values: torch.Tensor, box: Box, call: _Call, error: torch.Tensor,
              size: torch.Tensor) -> ZWindow | ZFull:
        if box.covers:
            return ZFull(values, error, size)
        return ZWindow(values, *call.origins(box), box, error, size)

    def _pointwise(self, step: PointwiseStep, rule: Any, call: _Call, env: dict
                   ) -> ZWindow | ZFull:
        stacked: dict[fx.Node, torch.Tensor] = {}
        carried: dict[fx.Node, tuple[torch.Tensor, torch.Tensor]] = {}
        for n in step.node.all_input_nodes:
            value = env[n]
            if not isinstance(value, ZWindow):
                continue
            if n in step.expand:
                q, window = call.stacked_window(value)
                patch = step.expand[n](q, window)
                stacked[n] = patch.reshape(call.count, value.values.shape[1], *patch.shape[1:])
                carried[n] = call.gathered(step.expand[n], value)
            else:
                stacked[n] = value.values
                carried[n] = (value.error, value.size)
        first = _first_argument(step.node)
        if isinstance(rule, Relaxation):
            values, error, size = call.relax(rule, stacked[first], carried[first][0])
            return self._wrap(values, step.box, call, error, size)
        if isinstance(rule, Identity):
            return self._wrap(stacked[first], step.box, call, *carried[first])
        if isinstance(rule, (Affine, Product)):
            values, error, size = self._affine(step, call, env, stacked, carried)
            return self._wrap(values, step.box, call, error, size)
        raise BoundUnsupportedError(f"no windowed bound rule {type(rule).__name__} for "
                                    f"{describe(step.node, self.graph.modules)}")

    def _affine(self, step: Any, call: _Call, env: dict, stacked: dict[fx.Node, torch.Tensor],
                carried: dict[fx.Node, tuple[torch.Tensor, torch.Tensor]], taped: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """An affine node on zonotopes ``stacked`` (node → ``[N, R, ...]``, with their
        errors and sizes ``carried``): the node's own call on center and generator rows,
        its value at zero subtracted from the generators; with the result's error and
        size bounds (:meth:`_propagated`). ``taped``: a whole-map step, recorded on the
        call's tape (:mod:`.signed`)."""
        rule = self._rule(step)
        if isinstance(rule, Product):
            rule.check(step.node, stacked)
            factors = rule.varying_factors(step.node, stacked)
            if len(factors) == 2:
                out = self._multiply(factors, call, stacked, carried)
                if taped:
                    call.tape.add(Cut(step.node, out[1]))
                return out
        rows = max(v.shape[1] for v in stacked.values())
        grown = {n: pad_rows(v, rows) for n, v in stacked.items()}

        def argument(n: fx.Node, zero: bool):
            if n in grown:
                v = grown[n]
                if zero:
                    return v.new_zeros(1, *v.shape[2:])
                return v.flatten(0, 1)
            value = env[n]
            if isinstance(value, (ZWindow, ZFull, ZFlat)):
                raise BoundUnsupportedError("a windowed argument was not expanded")
            return value

        args = fx.node.map_arg(step.node.args, lambda n: argument(n, False))
        kwargs = fx.node.map_arg(step.node.kwargs, lambda n: argument(n, False))
        if _concatenates(step) and args and isinstance(args[0], (list, tuple)):
            args = (_constants_on_every_row(args[0], call.count * rows), *args[1:])
        out = step.call(*args, **kwargs)
        zero_args = fx.node.map_arg(step.node.args, lambda n: argument(n, True))
        zero_kwargs = fx.node.map_arg(step.node.kwargs, lambda n: argument(n, True))
        at_zero = step.call(*zero_args, **zero_kwargs)
        out = _generators_from(out.view(call.count, rows, *out.shape[1:]), at_zero,
                               (args, kwargs))
        if isinstance(rule, Product):
            factor = _factor(step.node, args, kwargs, grown, rule.divides)
            rounding = rule.rounding(factor)
        else:
            factor, rounding = None, rule.rounding
        constants = _constants_of(step, env, grown) if taped else env
        apply = self._magnitude_map(step, constants, factor, rounding, out[:, 0])
        stored = ({n: _stored_size(v, carried[n][1], call.unit) for n, v in grown.items()}
                  if taped else None)
        error, size, *own = _propagated(apply, rounding, carried, at_zero, rows, call.unit,
                                        out[0, 0].numel(), own=taped, stored=stored)
        if taped:
            self._tape_linear(step, call, list(grown), constants, apply, own[0], error,
                              carried)
        return out, error, size

    def _tape_linear(self, step: Any, call: _Call, varying: list[fx.Node], constants: dict,
                     apply: Any, own: torch.Tensor, error: torch.Tensor,
                     carried: dict[fx.Node, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Record an affine whole-map step's linear part (its varying arguments replaced,
        its constants as they are), or a cut where its ``|A|`` is only a bound of the
        largest row sum (not a map the pull can transpose)."""
        if getattr(apply, "bounded", False):
            call.tape.add(Cut(step.node, error))
            return

        def run(xs: list[torch.Tensor]) -> torch.Tensor:
            values = dict(zip(varying, xs, strict=True))
            # (constants made in inference mode cannot be saved for autograd: copies)
            args = fx.node.map_arg(step.node.args, lambda n: values[n] if n in values
                                   else _usable(constants[n]))
            kwargs = fx.node.map_arg(step.node.kwargs, lambda n: values[n] if n in values
                                     else _usable(constants[n]))
            if _concatenates(step) and args and isinstance(args[0], (list, tuple)):
                args = (_constants_on_every_row(args[0], xs[0].shape[0]), *args[1:])
            return step.call(*args, **kwargs)

        call.tape.add(LinearStep(
            step.node, varying, [carried[n][0][:1] for n in varying], run, apply, own, error,
            {n: carried[n][0] for n in varying if n not in call.tape.taped},
            dtype=self.dtype))

    @staticmethod
    def _multiply(factors: list[fx.Node], call: _Call, stacked: dict[fx.Node, torch.Tensor],
                  carried: dict[fx.Node, tuple[torch.Tensor, torch.Tensor]]
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A product of two varying factors (:func:`~.zonotope.multiply`), one new symbol
        per neuron where the factors' generators meet."""
        rows = max(stacked[n].shape[1] for n in factors)
        x, y = (pad_rows(stacked[n], rows) for n in factors)
        (ex, sx), (ey, sy) = carried[factors[0]], carried[factors[1]]
        sx, sy = _stored_size(x, sx, call.unit), _stored_size(y, sy, call.unit)
        values, radius, error, size = multiply(x, y, (ex, ey), (sx, sy), call.unit)
        shape = values[:, 0].shape
        return (call.add(values, radius), error.expand(shape).contiguous(),
                size.expand(shape).contiguous())

    def _magnitude_map(self, step: Any, env: dict, factor: Any, rounding: Rounding,
                       like: torch.Tensor) -> Any:
        """``v ↦ |A| v`` of an affine node ``A`` (``v``: node → one row per box, each
        varying argument's, nonnegative; the result shaped like ``like``), from its
        interval rule: ``|W| v`` of a convolution, a linear layer or a BatchNorm, ``v_a +
        |α| v_b`` of a sum, ``|c| v`` of a product, the operation itself where its weights
        are nonnegative (pooling, means, concatenations, copies). An operation without
        one passes ``gain · max v`` to every output (``gain``: ``‖|A|‖_∞``)."""
        node = step.node
        rule = self._interval_rule(step)
        patch = isinstance(step, SpatialStep)
        if isinstance(rule, SignedAffine):
            run = rule.patch_abs if patch else rule.run_abs
            if run is not None:
                return lambda v: run(next(iter(v.values())))
        elif isinstance(rule, Sum):
            return lambda v: _sum_magnitude(node, v, rule.alpha)
        elif isinstance(rule, Scale) and factor is not None:
            c = torch.as_tensor(factor, dtype=torch.float64, device=like.device).abs()
            return (lambda v: next(iter(v.values())) / _usable(c)) if rule.divides else (
                lambda v: next(iter(v.values())) * _usable(c))
        elif isinstance(rule, Negate):
            return lambda v: next(iter(v.values()))
        elif isinstance(rule, (PositiveSum, Exact)):
            if patch:
                return lambda v: step.slide.patch(next(iter(v.values())))
            return lambda v: _nonnegative_call(step, env, v)

        def bounded(v: dict[fx.Node, torch.Tensor]) -> torch.Tensor:
            largest = sum(per_box(t) for t in v.values())  # one per row of v
            return (rounding.gain * largest).view(-1, *[1] * (like.dim() - 1)).expand(
                len(largest), *like.shape[1:]).clone()

        bounded.bounded = True  # not linear: the signed bound cuts there
        return bounded

    def _interval_rule(self, step: Any) -> Any:
        """The node's interval rule (what gives ``|A|``), or ``None``."""
        if step.node not in self._interval_rules:
            operation, params = step.resolved.operation, step.resolved.params
            rule = None
            if operation is not None and operation.interval is not None and not isinstance(
                    params, str):
                # (its |W| made outside inference mode: the signed bound's pulls run
                # autograd through it)
                with torch.inference_mode(False):
                    made = operation.interval(params)
                rule = None if isinstance(made, str) else made
            self._interval_rules[step.node] = rule
        return self._interval_rules[step.node]

    def _spatial(self, step: SpatialStep, rule: Any, call: _Call, env: dict
                 ) -> ZWindow | ZFull:
        value = env[step.source]
        q, window = call.stacked_window(value)
        patch = step.gather(q, window)
        rows = value.values.shape[1]
        error, size = call.gathered(step.gather, value)
        if isinstance(rule, Affine):
            out = step.slide.patch(patch)
            at_zero = step.slide.patch(patch.new_zeros(1, *patch.shape[1:]))
            out = _generators_from(out.view(call.count, rows, *out.shape[1:]), at_zero,
                                   (patch,))
            apply = self._magnitude_map(step, env, None, rule.rounding, out[:, 0])
            error, size = _propagated(apply, rule.rounding, {step.source: (error, size)},
                                      at_zero, rows, call.unit, out[0, 0].numel())
            return self._wrap(out, step.box, call, error, size)
        if isinstance(rule, MaxPool):
            slide = step.slide
            candidates = _candidates(patch.view(call.count, rows, *patch.shape[1:]),
                                     slide.kernel, slide.stride, slide.dilation)
            incoming = _candidates(error[:, None], slide.kernel, slide.stride,
                                   slide.dilation)[:, 0].amax(2)
            values, error, size = _max(candidates, call, incoming)
            return self._wrap(values, step.box, call, error, size)
        raise BoundUnsupportedError(f"no spatial bound rule {type(rule).__name__} for "
                                    f"{describe(step.node, self.graph.modules)}")

    def _full(self, step: FullStep, rule: Any, call: _Call, env: dict) -> ZFull | ZFlat:
        shortcut = self._head_shortcut(step, rule, call, env)
        if shortcut is not None:
            return shortcut
        stacked: dict[fx.Node, torch.Tensor] = {}
        carried: dict[fx.Node, tuple[torch.Tensor, torch.Tensor]] = {}
        for n in step.node.all_input_nodes:
            value = env[n]
            if isinstance(value, ZWindow):
                stacked[n] = self._materialise(n, value, call)
                carried[n] = call.materialised(n, value)
            elif isinstance(value, ZFlat):
                stacked[n] = self._materialise(value.source, value.window, call).flatten(2)
                error, size = call.materialised(value.source, value.window)
                carried[n] = (error.flatten(1), size.flatten(1))
            elif isinstance(value, ZFull):
                stacked[n] = value.values
                carried[n] = (value.error, value.size)
        if not stacked:  # no input varies: a constant (shapes, sizes)
            return step.run(call.query(1), env)
        first = _first_argument(step.node)
        entry = (None if first in call.tape.taped or first not in carried
                 else carried[first][0])
        if isinstance(rule, Relaxation):
            parts: dict | None = {} if call.tape.active else None
            out = ZFull(*call.relax(rule, stacked[first], carried[first][0], parts))
            if parts:
                call.tape.add(SlopeStep(step.node, first, *parts["slopes"], parts["own"],
                                        out.error, entry, rule, parts["range"],
                                        carried[first][0]))
            return out
        if isinstance(rule, Identity):
            one = torch.ones_like(carried[first][0])
            call.tape.add(SlopeStep(step.node, first, one, one, torch.zeros_like(one),
                                    carried[first][0], entry, incoming=carried[first][0]))
            return ZFull(stacked[first], *carried[first])
        if isinstance(rule, Reshape):
            shape = call.shapes[step.node]
            values = stacked[first]
            error, size = (t.reshape(t.shape[0], *shape[1:]) for t in carried[first])

            def reshaped(xs: list[torch.Tensor]) -> torch.Tensor:
                return xs[0].reshape(xs[0].shape[0], *shape[1:])

            call.tape.add(LinearStep(step.node, [first], [carried[first][0][:1]], reshaped,
                                     lambda v: reshaped([v[first]]), torch.zeros_like(error),
                                     error, {} if entry is None else {first: entry},
                                     dtype=self.dtype))
            return ZFull(values.reshape(values.shape[0], values.shape[1], *shape[1:]), error,
                         size)
        if isinstance(rule, Rearrange):
            return self._rearranged(step, rule, call, env, first, stacked, carried)
        if isinstance(rule, (Affine, Product)):
            return ZFull(*self._affine(step, call, env, stacked, carried,
                                       taped=call.tape.active))
        if isinstance(rule, MaxPool):
            out = ZFull(*self._full_max_pool(step, stacked[first], call, carried[first][0]))
            call.tape.add(Cut(step.node, out.error))
            return out
        if isinstance(rule, MaxOver):
            out = ZFull(*_max_over(step.resolved.params, stacked[first], call,
                                   carried[first][0]))
            call.tape.add(Cut(step.node, out.error))
            return out
        raise BoundUnsupportedError(f"no bound rule {type(rule).__name__} for "
                                    f"{describe(step.node, self.graph.modules)}")

    def _rearranged(self, step: FullStep, rule: Rearrange, call: _Call, env: dict,
                    first: Any, stacked: dict[fx.Node, torch.Tensor],
                    carried: dict[fx.Node, tuple[torch.Tensor, torch.Tensor]]
                    ) -> ZFull | torch.Tensor:
        """A copy that keeps the batch axis (:class:`~.zonotope.Rearrange`): the rows
        ``N · R`` (and the error and size bounds' ``N``) as the batch of the node's own
        call, or broadcast to the node's shape; refused where the result's first axis is
        not the rows' (an index that reached into the batch axis)."""
        shape = call.shapes[step.node]  # of one image
        if first not in stacked:  # bias.expand_as(h): a constant laid out as a varying
            if not rule.broadcast:  # value's shape, the same in every row
                raise BoundUnsupportedError(f"{describe(step.node, self.graph.modules)} of "
                                            "a constant by a value computed from the image")
            return torch.as_tensor(env[first]).expand(1, *shape[1:])
        values = stacked[first]
        count, rows = values.shape[:2]
        constants = _constants_of(step, env, stacked)

        def run(tensor: torch.Tensor) -> torch.Tensor:
            if rule.broadcast:
                if tensor.dim() != len(shape):
                    raise BoundUnsupportedError(
                        f"{describe(step.node, self.graph.modules)} adds axes before the "
                        "batch axis")
                out = tensor.expand(tensor.shape[0], *shape[1:])
            else:
                out = self._call_with(step, constants, {first: tensor})
            if out.dim() != len(shape) or tuple(out.shape) != (tensor.shape[0], *shape[1:]):
                raise BoundUnsupportedError(
                    f"{describe(step.node, self.graph.modules)} does not keep the batch "
                    "axis whole")
            return out.contiguous()

        out = run(values.flatten(0, 1))
        error, size = (run(t) for t in carried[first])
        # a copy: its own map is its |A| (each output one input element)
        copied = (lambda xs: run(xs[0])), (lambda v: run(v[first]))
        entry = None if first in call.tape.taped else carried[first][0]
        call.tape.add(LinearStep(step.node, [first], [carried[first][0][:1]], *copied,
                                 torch.zeros_like(error), error,
                                 {} if entry is None else {first: entry},
                                 dtype=self.dtype))
        return ZFull(out.view(count, rows, *out.shape[1:]), error, size)

    def _materialise(self, node: fx.Node, value: ZWindow, call: _Call) -> torch.Tensor:
        """A window's zonotopes as whole maps ``[N, R, C, H, W]``."""
        q, window = call.stacked_window(value)
        full = q._materialise(node, window)
        return full.reshape(call.count, value.values.shape[1], *full.shape[1:])

    @staticmethod
    def _center(node: fx.Node, value: ZWindow, call: _Call) -> torch.Tensor:
        """The center of a window's zonotopes as whole maps ``[N, C, H, W]``."""
        return call.query(1)._materialise(node, value.laid(value.values[:, 0]))

    def _head_shortcut(self, step: FullStep, rule: Any, call: _Call, env: dict
                       ) -> ZFull | ZFlat | None:
        """The head on a window without materialising its generators: a flatten (kept as
        :class:`ZFlat`), a linear layer after it, a global average pool; ``None`` when the
        node is none of these."""
        inputs = step.node.all_input_nodes
        if len(inputs) != 1:
            return None
        source = inputs[0]
        value = env[source]
        name = step.resolved.operation.name if step.resolved.operation else None
        if isinstance(value, ZWindow) and isinstance(rule, Reshape):
            shape = call.shapes[step.node]
            if len(shape) == 2 and shape[1] == math.prod(call.shapes[source][1:]):
                center = self._center(source, value, call).flatten(1)
                return ZFlat(center, value, source)
            return None
        if isinstance(value, ZFlat) and name == "linear":
            return ZFull(*self._windowed_linear(step, rule, value, call))
        if isinstance(value, ZWindow) and name in ("adaptive_avg_pool2d", "mean"):
            channels = call.shapes[source][1]
            if tuple(call.shapes[step.node][1:]) not in ((channels,), (channels, 1, 1)):
                return None  # not a global average over the map
            if name == "mean" and not _over_map(step.node, len(call.shapes[source])):
                return None  # a mean over other axes (say, [N, C, H, W] with W == C)
            center = self._call_with(step, env, {source: self._center(source, value, call)})
            height, width = value.box.map
            generators = value.values[:, 1:].sum((-2, -1)) / (height * width)
            generators = generators.view(*generators.shape, *center.shape[2:])
            # a sum of the map's h·w values and a division, rows and center alike
            entry, size = call.materialised(source, value)
            constants = _constants_of(step, env, {source: None})

            def averaged(v: dict[fx.Node, torch.Tensor]) -> torch.Tensor:
                return self._call_with(step, constants, {source: v[source]})

            error, size, *own = _propagated(
                averaged, Rounding(1.0, height * width + 1), {source: (entry, size)}, 0.0,
                value.values.shape[1], call.unit, 1, own=call.tape.active)
            if own:
                call.tape.add(LinearStep(step.node, [source], [entry[:1]],
                                         lambda xs: averaged({source: xs[0]}), averaged,
                                         own[0], error, {source: entry}, dtype=self.dtype))
            return ZFull(torch.cat([center[:, None], generators], 1), error, size)
        return None

    @staticmethod
    def _call_with(step: FullStep, env: dict, values: dict[fx.Node, Any]) -> Any:
        """The node's own call with ``values`` for some of its inputs."""
        def value(n: fx.Node):
            return values[n] if n in values else _usable(env[n])

        return step.call(*fx.node.map_arg(step.node.args, value),
                         **fx.node.map_arg(step.node.kwargs, value))

    def _windowed_linear(self, step: FullStep, rule: Affine, value: ZFlat, call: _Call
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``linear`` of a flattened window: the center whole, each generator through the
        weights of its window → ``[N, R, out]``, with its error and size bounds."""
        params = step.resolved.params
        weight = params.weight.to(value.center.dtype)
        bias = params.bias.to(weight.dtype) if params.bias is not None else None
        window = value.window
        channels, (height, width) = window.values.shape[2], window.box.map
        h, w = window.values.shape[-2:]
        center = torch.nn.functional.linear(value.center, weight, bias)
        grid = weight.view(weight.shape[0], channels, height, width).permute(2, 3, 0, 1)
        rows = window.top[:, None] + torch.arange(h, device=weight.device)
        cols = window.left[:, None] + torch.arange(w, device=weight.device)
        reached = grid[rows[:, :, None], cols[:, None, :]]  # [N, h, w, out, C]
        reached = reached.permute(0, 4, 1, 2, 3).reshape(len(rows), channels * h * w, -1)
        generators = torch.bmm(window.values[:, 1:].flatten(2), reached)  # [N, G, out]
        at_zero = bias if bias is not None else torch.zeros_like(center[:1])
        entry, size = call.materialised(value.source, window)
        entry = entry.flatten(1)
        apply = self._magnitude_map(step, {}, None, rule.rounding, center)
        error, size, *own = _propagated(apply, rule.rounding,
                                        {value.source: (entry, size.flatten(1))}, at_zero,
                                        window.values.shape[1], call.unit, 1,
                                        own=call.tape.active)
        flat = step.node.all_input_nodes[0]  # the flatten, a window: not on the tape
        if not own:
            pass
        elif getattr(apply, "bounded", False):
            call.tape.add(Cut(step.node, error))
        else:
            call.tape.add(LinearStep(
                step.node, [flat], [entry[:1]],
                lambda xs: F.linear(xs[0], _usable(weight)),
                lambda v: apply({value.source: v[flat]}), own[0], error, {flat: entry},
                dtype=self.dtype))
        return torch.cat([center[:, None], generators], 1), error, size

    def _full_max_pool(self, step: FullStep, values: torch.Tensor, call: _Call,
                       error: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        params = step.resolved.params
        shape = call.shapes[step.node]
        count, rows = values.shape[:2]
        pad_h, pad_w = params.padding
        out_h, out_w = shape[-2:]
        stride, kernel, dilation = params.stride, params.kernel, params.dilation
        need_h = (out_h - 1) * stride[0] + dilation[0] * (kernel[0] - 1) + 1
        need_w = (out_w - 1) * stride[1] + dilation[1] * (kernel[1] - 1) + 1
        extra_h = max(0, need_h - values.shape[-2] - pad_h)
        extra_w = max(0, need_w - values.shape[-1] - pad_w)
        pads = (pad_w, extra_w, pad_h, extra_h)
        center = F.pad(values[:, 0], pads, value=float("-inf"))
        generators = F.pad(values[:, 1:].flatten(0, 1), pads, value=0.0)
        padded = torch.cat([center[:, None], generators.view(count, rows - 1,
                                                             *generators.shape[1:])], 1)
        incoming = _candidates(F.pad(error, pads)[:, None], kernel, stride, dilation)
        incoming = incoming[:, 0, :, :, :out_h, :out_w].amax(2)
        return _max(_candidates(padded, kernel, stride, dilation)[..., :out_h, :out_w], call,
                    incoming)


def _max_over(params: Any, values: torch.Tensor, call: _Call, error: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zonotopes of each group's largest element (:class:`~.zonotope.MaxOver`): ``[N, R,
    *shape]`` → ``[N, R', *out]``, with their float error and size bounds ``[N, *out]``.
    The groups (``params.groups``) index one image's flat elements, ``-1`` none: a
    column of ``-inf`` centres and zero generators, which no bound can reach (as the
    padding of a max pooling)."""
    count, rows = values.shape[:2]
    index, out = params.groups(tuple(values.shape[2:]))
    flat = values.flatten(2)
    none = flat.new_zeros(count, rows, 1)
    none[:, 0] = float("-inf")
    index = torch.where(index < 0, flat.shape[2], index).to(values.device)
    candidates = torch.cat([flat, none], 2)[:, :, index]  # [N, R, M, K]
    incoming = torch.cat([error.flatten(1), error.new_zeros(count, 1)], 1)[:, index]
    maxima, error, size = _max(candidates[..., None, None], call,
                               incoming.amax(2)[..., None, None])
    return (maxima.reshape(*maxima.shape[:2], *out), error.reshape(count, *out),
            size.reshape(count, *out))


def _concatenates(step: Any) -> bool:
    resolved = getattr(step, "resolved", None)
    return (resolved is not None and resolved.operation is not None
            and resolved.operation.name == "cat")


def _constants_on_every_row(parts: list | tuple, rows: int) -> list:
    """A concatenation's parts with each constant of one row (a constant laid out by a
    varying value, ``p.expand_as(h)``: one row in the engines, the same for every box)
    expanded to the varying parts' ``rows`` (a review: a raw size mismatch). The model
    concatenates it with a batch of images, so it holds as many rows as they do: one
    that holds one row alone runs on one image only, which the batch probe refuses."""
    return [part.expand(rows, *part.shape[1:])
            if isinstance(part, torch.Tensor) and part.dim() and part.shape[0] == 1 else part
            for part in parts]


def _stored_size(values: torch.Tensor, size: torch.Tensor, unit: float) -> torch.Tensor:
    """``size`` (a bound of each stored zonotope's ``|center| + Σ |generators|``, carried
    from the arguments') or, where smaller, that sum itself, computed from the stored
    values and rounded up (``R`` terms: ``γ_{R+1}``, and a relative ``10^-6``): what a
    product of two varying factors takes as their sizes. The carried bound loses every
    cancellation — ``x - mean(x)`` is carried as twice ``x``'s size, LayerNorm's ``(x -
    μ) · r`` as the product of the sizes — and a product's error is its factors' sizes
    times their errors, so through stacked normalisations and attention the carried
    sizes grew geometrically (two post-norm transformer layers: an error of 5·10³ at a
    box of width 0); the stored values' own are the value's. (Taken at the products
    only, where the sizes multiply: elsewhere a loose size adds only ``γ`` of itself.)"""
    own = magnitude(values).double() * (1 + gamma(values.shape[1] + 1, unit)) * (1 + 1e-6)
    own = torch.nan_to_num(own, nan=math.inf, posinf=math.inf)
    return torch.minimum(size, own)


def _first_argument(node: fx.Node) -> Any:
    """The node's first argument, positional or by keyword (``torch.mul(input=a,
    other=b)``, ``F.relu(input=h)``); ``None`` where it has none."""
    if node.args:
        return node.args[0]
    return node.kwargs.get("input", next(iter(node.kwargs.values()), None))


def _sum_magnitude(node: fx.Node, v: dict[fx.Node, torch.Tensor], alpha: float
                   ) -> torch.Tensor:
    """``v_a + |α| v_b`` of a sum ``a ± α b`` (a constant argument contributes nothing:
    its part is the operation's value at zero)."""
    total: torch.Tensor | float = 0.0
    for position, keyword, factor in ((0, "input", 1.0), (1, "other", abs(alpha))):
        argument = (node.args[position] if len(node.args) > position
                    else node.kwargs.get(keyword))
        if isinstance(argument, fx.Node) and argument in v:
            total = total + factor * v[argument]
    return torch.as_tensor(total)


def _nonnegative_call(step: Any, env: dict, v: dict[fx.Node, torch.Tensor]) -> torch.Tensor:
    """An operation with nonnegative weights run on ``v`` (its constant tensor arguments
    as zeros: their part is the operation's value at zero)."""
    def value(n: fx.Node):
        if n in v:
            return v[n]
        found = env[n]
        return torch.zeros_like(found) if isinstance(found, torch.Tensor) else found

    args = fx.node.map_arg(step.node.args, value)
    if _concatenates(step) and args and isinstance(args[0], (list, tuple)) and v:
        args = (_constants_on_every_row(args[0], next(iter(v.values())).shape[0]),
                *args[1:])
    return step.call(*args, **fx.node.map_arg(step.node.kwargs, value))


def _last_softmax_advice(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """What to do where the operation without a rule is a softmax over the classes (the
    scores' axis 1, or no axis named: the last of 2-D scores) the model ends with."""
    name = describe(node, modules).split(" ")[0].lower().removeprefix("tensor.")
    last = bool(node.users) and all(user.op == "output" for user in node.users)
    if node.op == "call_module":
        dim = getattr(modules[node.target], "dim", None)
    else:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    if last and dim in (1, -1, None) and name.rstrip("()") in ("softmax", "log_softmax",
                                                               "logsoftmax"):
        return ("; it is the model's last operation: give the model without it (the "
                "scores before it, whose largest is the same class)")
    return ""


def _factor(node: fx.Node, args: tuple, kwargs: dict, varying: dict, divides: bool) -> Any:
    """The constant factor of a product (the divisor of a quotient), resolved."""
    given = [*node.args, *node.kwargs.values()]
    values = [*args, *kwargs.values()]
    if divides:  # the divisor: the second positional argument, or ``other``
        return args[1] if len(args) > 1 else kwargs.get("other", 1.0)
    for original, value in zip(given, values, strict=True):
        if not (isinstance(original, fx.Node) and original in varying):
            if isinstance(value, (torch.Tensor, int, float)):
                return value
    return 1.0


def _generators_from(out: torch.Tensor, at_zero: torch.Tensor, arguments: Any
                     ) -> torch.Tensor:
    """An affine operation's output on center and generator rows ``[N, R, ...]`` with its
    value at zero subtracted from the generators, in place: copied first only where the
    operation returned memory of an argument, and nothing subtracted where that value is
    exactly zero (``x - 0`` is ``x`` to the bit). Both skips measured: 1.1-1.3 times
    faster on the SqueezeNet's boxes, whose concatenations and convolutions write hundreds
    of MB of float64 symbols (``benchmarks/affine_output.py``)."""
    storage = out.untyped_storage().data_ptr()
    shared = []
    fx.node.map_aggregate(arguments, lambda a: shared.append(
        isinstance(a, torch.Tensor) and a.untyped_storage().data_ptr() == storage))
    if any(shared):
        out = out.clone()
    if at_zero.any():
        out[:, 1:] -= at_zero
    return out


def _propagated(apply: Any, rounding: Rounding,
                carried: dict[fx.Node, tuple[torch.Tensor, torch.Tensor]],
                at_zero: torch.Tensor | float, rows: int, unit: float, out_elements: int,
                own: bool = False, stored: dict[fx.Node, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, ...]:
    """The error and size bounds of an affine operation's result, per neuron (with
    ``own``, a third: what the operation rounds itself, ``γ (|A| (s + e) + 2R (|A 0| +
    offset))``, for the signed bound of :mod:`.signed`; ``stored``: where given, the
    arguments' stored magnitudes (:func:`_stored_size`) in place of their carried sizes
    there, which grow by ``|A|`` as the errors do).

    ``apply`` is ``v ↦ |A| v`` (:meth:`BoundEngine._magnitude_map`); each varying argument
    comes with its ``(error, size)``, one row per box. Each of the ``R`` rows rounds at
    most ``γ_{terms+2} (|A| |row| + 2 (|A 0| + offset))`` (the row's sum, then the value at
    zero and its subtraction), so the result is off by
    ``|A| e + γ (|A| (s + e) + 2R (|A 0| + offset))``, and its computed ``|center| + Σ
    |generators|`` is at most ``(|A| s + |A 0|)(1 + γ) + γ 2(R + 1)(|A 0| + offset)``.
    An exact copy (``terms = 0``: a concatenation, a negation) passes ``|A| e`` on.
    """
    errors = {n: e.double() for n, (e, _) in carried.items()}  # bounds in float64,
    sizes = {n: s.double() for n, (_, s) in carried.items()}  # whatever the engine's dtype
    count = next(iter(errors.values())).shape[0]
    zero = torch.as_tensor(at_zero).abs().double()
    if rounding.terms == 0:
        error, size = apply({n: torch.cat([errors[n], sizes[n]]) for n in errors}).split(count)
        found = (torch.nan_to_num(error, nan=math.inf, posinf=math.inf),
                 torch.nan_to_num(size + zero, nan=math.inf, posinf=math.inf))
        return (*found, torch.zeros_like(found[0])) if own else found
    terms = rounding.terms
    if terms is None:  # a global average: the input elements per output (4× for overlaps)
        elements = max(e[0].numel() for e in errors.values())
        terms = 4 * math.ceil(elements / max(1, out_elements)) + 1
    g = gamma(terms + 2, unit)
    constant = zero + rounding.offset
    # |A| (e + γ (s + e)) and |A| s in one call (2N rows)
    reached, size = apply({n: torch.cat([errors[n] + g * (sizes[n] + errors[n]), sizes[n]])
                           for n in errors}).split(count)
    error = (reached + g * 2 * rows * constant) * (1 + 1e-6)
    size = ((size + zero) * (1 + g) + g * 2 * (rows + 1) * constant) * (1 + 1e-6)
    # 0 · inf (a zero weight on an unbounded error) is no bound: NaN counts as infinite
    found = (torch.nan_to_num(error, nan=math.inf, posinf=math.inf),
             torch.nan_to_num(size, nan=math.inf, posinf=math.inf))
    if not own:
        return found
    spread = apply({n: (sizes[n] if stored is None else stored[n].double()) + errors[n]
                    for n in errors})
    rounded = (g * spread + g * 2 * rows * constant) * (1 + 1e-6)
    return (*found, torch.nan_to_num(rounded, nan=math.inf, posinf=math.inf))


def _over_map(node: fx.Node, ndim: int) -> bool:
    """Whether a ``mean`` node averages exactly the last two axes of a 4-D value."""
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    if isinstance(dims, int):
        dims = (dims,)
    if ndim != 4 or not isinstance(dims, (tuple, list)) or not all(
            isinstance(d, int) for d in dims):
        return False
    return sorted(d % ndim for d in dims) == [2, 3]


def _candidates(values: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
                dilation: tuple[int, int]) -> torch.Tensor:
    """Max-pooling candidates of unpadded patches ``[N, R, C, r, c]`` →
    ``[N, R, C, K, oh, ow]`` (``K`` kernel positions)."""
    count, rows, channels = values.shape[:3]
    out = values
    for axis, (k, s, d) in enumerate(zip(kernel, stride, dilation, strict=True)):
        reach = d * (k - 1) + 1
        out = out.unfold(3 + axis, reach, s)[..., ::d]  # [..., positions, k]
    # out: [N, R, C, oh, ow, kh, kw]
    oh, ow = out.shape[3:5]
    return out.permute(0, 1, 2, 5, 6, 3, 4).reshape(count, rows, channels, -1, oh, ow)


def _max(candidates: torch.Tensor, call: _Call, error: torch.Tensor
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zonotopes of the largest candidate: ``[N, R, C, K, oh, ow]`` → ``[N, R', C, oh, ow]``,
    with their float error and size bounds (``[N, C, oh, ow]``).

    Candidates whose upper bound is at most the largest lower bound cannot be the
    largest; the one with that lower bound starts, and each other candidate ``x`` that
    may exceed it is folded in as ``m + relu(x - m)``.

    The maximum is 1-Lipschitz in the largest coordinate, so the exact values' maximum
    lies within ``error`` (the largest of the candidates' errors, per output) of the
    computed candidates' maximum; the fold adds its own rounding (``drift``): each step's
    difference, relaxation (:func:`relaxation_error`) and sum, and the pruning on rounded
    intervals (``2 γ_{R+1}`` of the candidates' size).
    """
    relu = PiecewiseLinear(torch.relu, (0.0,))
    unit, rows, count = call.unit, candidates.shape[1], candidates.shape[3]
    lower, upper = interval(candidates)
    finite = torch.isfinite(lower) & torch.isfinite(upper)
    edge = torch.where(finite, torch.maximum(lower.abs(), upper.abs()), 0.0)
    drift = 2 * gamma(rows + 1, unit) * edge.amax(2)
    best_low, first = lower.max(2)
    alive = upper > best_low[:, :, None]
    index = first[:, None, :, None].expand(-1, candidates.shape[1], -1, 1, -1, -1)
    current = candidates.gather(3, index).squeeze(3)
    size = edge.gather(2, first[:, :, None]).squeeze(2)  # |current| per neuron, a bound
    for k in range(count):
        active = alive[:, :, k] & (first != k)
        if not bool(active.any()):
            continue
        current = call.grow(current)
        other = call.grow(candidates[:, :, :, k])
        difference = torch.where(active[:, None], other - current, 0.0)
        low, high = interval(difference)
        low = torch.where(active, low, torch.full_like(low, -1.0))
        high = torch.where(active, high, torch.full_like(high, -1.0))
        slope, offset, radius = relu.coefficients(low, high)
        step = difference * slope[:, None]
        step[:, 0] += offset
        current = call.add(current + step, radius)
        apart = torch.where(active, torch.maximum(low.abs(), high.abs()), 0.0)
        grown = size + slope.abs() * apart + offset.abs() + radius
        if unit:
            moved = relaxation_error(relu, low, high, slope, offset, radius,
                                     drift + unit * (size + edge[:, :, k]), current.shape[1],
                                     unit)
            drift = drift + torch.where(active, moved + unit * grown, 0.0)
        size = torch.where(active, grown, size)
    # each fold rounds its rows' sums (relative u); the first size is an interval's end
    size = size * (1 + gamma(rows + 4 * count + 2, unit))
    return current, error + drift * (1 + 1e-6), size


# the copies along named axes, and what each does to an axis (a negative one may name
# the batch axis: :func:`_moves_batch_axis`)
_AXIS_VERBS = {"squeeze": "squeezes", "transpose": "transposes",
               "unsqueeze": "puts a new axis at", "piece": "splits",
               "repeat_interleave": "repeats", "flip": "flips", "roll": "rolls",
               "unfold_axis": "unfolds"}


def _moves_batch_axis(node: fx.Node, step: Any, plan: Plan,
                      varying: set[fx.Node]) -> str | None:
    """Why a squeeze, an elementwise operation or an ``expand`` would mix the rows of the
    batch axis, or ``None``: a squeeze whose negative dim names that axis, or a value
    computed from the image with fewer axes than the result (``z * z.mean(1)``, a ``[B,
    K]`` times a ``[B]``; ``m.expand_as(z)``), whose batch axis broadcasts against another
    axis, right for one image only; the bounds run boxes as the rows of that axis."""
    resolved = getattr(step, "resolved", None)
    if resolved is None or resolved.operation is None:
        return None
    name = resolved.operation.name
    if name == "getitem" and indexed_after_ellipsis(resolved.params):
        source = plan.shapes.get(_first_argument(node))  # x[..., :8] of a [B] value
        if source is not None and indexed_after_ellipsis(resolved.params) >= len(source):
            return (f" (after the ellipsis it indexes every axis of a value of shape "
                    f"{tuple(source)}, the batch axis too; index from the front, e.g. "
                    "x[:, ..., :8])")
        return None
    if name in ("pixel_shuffle", "unfold"):  # (channels, height, width): the last three
        source = plan.shapes.get(_first_argument(node))
        if source is not None and len(source) < 4:
            verb = "shuffles" if name == "pixel_shuffle" else "unfolds"
            return (f" (it {verb} the batch axis of a value of shape {tuple(source)} as "
                    "channels; give it [N, C, H, W])")
        return None
    if name in _AXIS_VERBS and isinstance(resolved.params, tuple):
        source = plan.shapes.get(_first_argument(node))  # a negative dim may name axis 0
        rank = None if source is None else len(source) + (name == "unsqueeze")
        if rank is not None and any(d % rank == 0 for d in resolved.params):
            verb = _AXIS_VERBS[name]
            return (f" (it {verb} the batch axis of a value of shape {tuple(source)}; "
                    "give the dims from the front)")
        return None
    if resolved.rule == ELEMENTWISE:
        given = node.all_input_nodes
    elif resolved.operation.name == "expand":
        given = [_first_argument(node)]
    else:
        return None
    shape = plan.shapes.get(node)
    if shape is None:
        return None
    for n in given:
        source = plan.shapes.get(n)
        if n in varying and source is not None and len(source) < len(shape):
            return (f" (it broadcasts {n.name}, of shape {tuple(source)}, against a value of "
                    f"shape {tuple(shape)}: for a batch its first axis would meet another "
                    "axis; keep the axes, e.g. mean(1, keepdim=True))")
    return None


_REDUCTIONS = frozenset({"mean", "sum", "amax", "amin", "max", "min", "prod", "std", "var",
                         "logsumexp", "norm", "median", "nansum", "nanmean"})


def _axes(node: fx.Node, default: int | None, plan: Plan) -> set[int] | None:
    """The axes a concatenation or reduction node works along, made nonnegative with its
    first argument's rank (``None``: every axis, a reduction given none; or not known)."""
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else default)
    if dim is None:
        return None
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    if not all(isinstance(d, int) for d in dims):
        return None
    first = node.args[0] if node.args else None
    if isinstance(first, (tuple, list)):
        first = first[0] if first else None
    source = plan.shapes.get(first) if isinstance(first, fx.Node) else None
    rank = len(source) if source is not None else None
    return {d % rank if rank and d < 0 else d for d in dims}


def _constants_of(step: Any, env: dict, varying: dict) -> dict:
    """The values of a node's arguments that do not vary (what its call reads besides
    the varying ones), kept for the signed bound's pull after ``env`` lets them go."""
    return {n: env[n] for n in step.node.all_input_nodes if n not in varying and n in env}


def _usable(value: Any) -> Any:
    """``value`` as autograd can save it: a copy of a tensor made in inference mode when
    called outside it (the signed bound's pulls), else as it is."""
    if (isinstance(value, torch.Tensor) and value.is_inference()
            and not torch.is_inference_mode_enabled()):
        return value.clone()
    return value
