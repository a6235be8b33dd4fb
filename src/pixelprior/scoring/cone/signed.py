"""The bound engine's own float64 error at the margins, with signs: a backward bound.

:class:`~.bounds.BoundEngine` carries each neuron's float error forward by ``|A|``
(:func:`~.bounds._propagated`): it holds, but it adds every path from a rounding to a
margin in absolute value, so it grows with the product of the layers' absolute row sums.
On akamaster's 20-layer CIFAR ResNet (random weights) it reaches ~0.15 at the margins at a
single color, more than most margins: nothing is proved, though float64 itself is off by
far less there (the paths cancel).

Here the same roundings are carried with their signs, as :mod:`.backward` carries the
float32 model's. Each operation the engine runs on whole maps gives
``d_out = J d_in + ρ``: the exact values' distance from the computed zonotope ``d``
passed on by the operation's linear part ``J`` (an affine map: its own; a relaxation:
``s ∈ [min, max]`` of ``f``'s slopes between the exact and the computed values,
:meth:`~.zonotope.Relaxation.slopes`), plus ``|ρ|`` at most what it rounds itself (the
forward bound's own part: ``γ (|A| (s + e) + ...)`` of an affine map,
:func:`~.zonotope.relaxation_own_error` of a relaxation). Unrolled,

``m(computed) - m(real) = Σ_l λ_l · ρ_l + Σ_entries λ · d``, ``λ_l = ∂ m / ∂ h_l``,

bounded by ``Σ max |λ| · bound``. The coefficients ``λ`` are enclosed backwards from each
margin (a center and a radius per neuron), through ``J^T`` (autograd at zero, as the
interval screen's pulls) for the center and ``|J|^T`` (the engine's own ``|A|`` map) for
the radius, widened for the float64 sums of both. Where the taped steps begin (the
windows before them, a step not taped) the values' errors enter as they are: the forward
bound's, each multiplied by its ``max |λ|`` (*entries*). An operation the pull cannot take
(a maximum, a product of two varying values) is *cut*: its output's forward error enters
there the same way, and nothing is pulled past it.

A slope not sure (``s`` in ``[m - h, m + h]``: a ReLU whose input may lie on either side
of 0) splits ``c s d`` as ``ĉ m d + ĉ (s - m) d + (c - ĉ) s d``: the first and the last
are pulled on, the middle one is either pulled on too (a radius ``|ĉ| h``, which grows by
``|W|`` per layer upstream as the forward bound does) or bounded where it stands, ``|ĉ|
h`` times the input's error bound (which :meth:`Tape.refine` tightens). Both are bounds;
each margin takes the smaller of the two pulls. Every part is a bound, so the sum is one;
the engine takes the smaller of it and the forward one per margin.

:meth:`Tape.refine` carries the errors forward again with the steps' own roundings at the
magnitudes they stored (the forward pass used its carried size bounds, which grow by
``|A|`` too), then bounds each neuron whose slope is not sure by a pull of its own, so
that its slope may become sure (its value on one side of the kink by more than its error)
or its error small; in passes each deeper than the last (:data:`REFINE_CUTS`), until the
margins' bounds are small enough for the caller.

Taped: the steps on whole maps (:class:`~.bounds.ZFull`), where the windows have grown
to the map and the forward bound grows fastest. Costs two linear backward passes per
margin over those steps, on one row per box (not the zonotopes' ``R``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import fx

from .intervals import UNIT, _pullback
from .zonotope import Relaxation, gamma

__all__ = ["Cut", "LinearStep", "SlopeStep", "Tape"]

GROWN = 1 + 2.0**-20  # the final sums of nonnegative terms, rounded up
# a taped value whose forward error is at most this is not pulled through: its error
# enters as it is (what it adds is below any margin's tolerance; the pulls before it,
# through the layers where the forward bound is still tight, are saved)
CUT_BELOW = 2.0**-30
# the same for the pulls of :meth:`Tape.refine`, each pass deeper than the last (they
# decide a neuron's side of a kink: a shallow pass is cheap and decides most): akamaster's
# ResNet-20 at a single color, 2^-12: 4·10^-4 at the margins in 1.2 s, 2^-24: 8·10^-10 in
# 4.3 s (random weights, 2-core Intel Xeon)
REFINE_CUTS = (2.0**-12, 2.0**-24)
# the most neurons per call whose error :meth:`Tape.refine` bounds by pulls of their own
# (rows of a pull at once: its memory is rows × the largest value, in float64)
REFINE_MOST, REFINE_ROWS = 2048, 512


@dataclass
class _Like:
    """A stand-in for an interval in :func:`~.intervals._pullback` (it reads the shape
    and dtype of ``lower``)."""

    lower: torch.Tensor


@dataclass
class LinearStep:
    """An affine step's linear part: ``run`` the map on its varying inputs (any rows),
    ``magnitude`` ``|A|`` of it (the engine's map, node → rows), ``own`` what the step
    rounds per neuron (``[N, *shape]``)."""

    node: fx.Node
    inputs: list[fx.Node]
    like: list[torch.Tensor]  # one row of each input, its shape and dtype
    run: Callable[[list[torch.Tensor]], torch.Tensor]
    magnitude: Callable[[dict[fx.Node, torch.Tensor]], torch.Tensor]
    own: torch.Tensor
    error: torch.Tensor
    entries: dict[fx.Node, torch.Tensor] = field(default_factory=dict)
    dtype: torch.dtype = torch.float64  # what ``run`` computes in (the engine's)


@dataclass
class SlopeStep:
    """A relaxation: its slopes' enclosure ``[least, most]`` per neuron and its own
    error; with the rule, the computed range of its input (``lower``, ``upper`` and that
    range's own rounding ``edge``) and the input's forward error, so that the slopes can
    be taken again over a reach narrowed by a tighter error (:meth:`Tape.refine`)."""

    node: fx.Node
    input: fx.Node
    least: torch.Tensor
    most: torch.Tensor
    own: torch.Tensor
    error: torch.Tensor
    entry: torch.Tensor | None = None
    rule: Relaxation | None = None
    range: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    incoming: torch.Tensor | None = None

    def slopes_within(self, incoming: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The slopes over the reach of the exact values with ``incoming`` for the input's
        error (0 where ``f`` is constant there), as the forward pass takes them."""
        lower, upper, edge = self.range
        spread = (edge + incoming) * (1 + 1e-6)
        inf = torch.tensor(math.inf, dtype=lower.dtype, device=lower.device)
        low = torch.nextafter(lower - spread, -inf)
        high = torch.nextafter(upper + spread, inf)
        least, most = self.rule.slopes(low, high)
        flat = self.rule.constant_over(low, high)
        zero = torch.zeros_like(least)
        return torch.where(flat, zero, least), torch.where(flat, zero, most)


@dataclass
class Cut:
    """A step the pull does not pass: its output's forward error enters as it is."""

    node: fx.Node
    error: torch.Tensor


@dataclass
class _Coefficient:
    center: torch.Tensor
    radius: torch.Tensor

    def magnitude(self) -> torch.Tensor:
        return self.center.abs() + self.radius


class Tape:
    """The whole-map steps of one engine call, in order, and the pull of the margins
    through them (see the module docstring)."""

    def __init__(self, active: bool = True) -> None:
        self.active = active  # False: nothing is recorded (the forward bound alone)
        self.steps: list[LinearStep | SlopeStep | Cut] = []
        self.taped: set[fx.Node] = set()
        self.fallbacks: list[str] = []  # steps the pull could not pass, and why

    def add(self, step: LinearStep | SlopeStep | Cut) -> None:
        """Record a step (its node's value is on the tape from now on)."""
        if not self.active:
            return
        self.steps.append(step)
        self.taped.add(step.node)

    def cut(self, node: fx.Node, error: torch.Tensor) -> None:
        """Record ``node`` as a cut (or turn its step into one: a value the engine made
        unbounded after the step, a constant float32 rounds its own way)."""
        if not self.active:
            return
        self.steps = [s for s in self.steps if s.node is not node]
        self.add(Cut(node, error))

    def margin_errors(self, logits: fx.Node, labels: torch.Tensor, classes: int,
                      wanted: torch.Tensor | None = None, enough: torch.Tensor | None = None
                      ) -> torch.Tensor | None:
        """Per box and class, a bound of ``|d_label - d_j|``: how far the exact margin
        ``z_label - z_j`` lies from the computed one by the float errors of the logits
        (``[N, K]``, 0 at the label; ``inf`` where not ``wanted``), or ``None`` where the
        logits are not taped.

        Args:
            logits: the node whose value the scores are.
            labels: long ``[N]``.
            classes: ``K``.
            wanted: bool ``[N, K]``, the margins to bound (default: all).
            enough: ``[N, K]``, a bound small enough for the caller: the refinements
                (:meth:`refine`, cut ever deeper: :data:`REFINE_CUTS`) stop once every
                wanted margin's is below it (default: all of them run). Cost only: any
                result is a bound.
        """
        if logits not in self.taped:
            return None
        boxes, device = labels.shape[0], labels.device
        if wanted is None:
            wanted = torch.ones(boxes, classes, dtype=torch.bool, device=device)
        wanted = wanted.clone()
        wanted[torch.arange(boxes, device=device), labels] = False
        result = torch.full((boxes, classes), math.inf, dtype=torch.float64, device=device)
        result[torch.arange(boxes, device=device), labels] = 0.0
        pairs = wanted.nonzero()
        if not len(pairs):
            return result
        box, other = pairs[:, 0], pairs[:, 1]
        rows = torch.arange(len(pairs), device=device)
        center = torch.zeros(len(pairs), classes, dtype=torch.float64, device=device)
        center[rows, labels[box]] = 1.0
        center[rows, other] = -1.0
        start = _Coefficient(center, torch.zeros_like(center))
        done = torch.zeros_like(box, dtype=torch.bool)
        total = None
        for stage, cut in enumerate((None, *REFINE_CUTS)):
            # (the first pass carries the errors again without pulls: the forward pass's
            # grew by its carried sizes too, the steps' own roundings here do not)
            self.refine(torch.unique(box[~done]), cut, pulls=stage > 0)
            found = torch.minimum(*(self._pulled(logits, start, box, inject=inject)
                                    for inject in (False, True)))
            before, total = total, torch.nan_to_num(found * GROWN, nan=math.inf,
                                                    posinf=math.inf)
            done = (torch.zeros_like(total, dtype=torch.bool) if enough is None
                    else total <= enough[box, other])
            if bool(done.all()) or (before is not None and not bool(
                    (total[~done] * 2 <= before[~done]).any())):
                break  # (enough, or a refinement that halved no margin's: the forward
                # errors it starts from are past the values, the next one would not help)
        result[box, other] = total
        return result

    def refine(self, boxes: torch.Tensor | None = None, cut: float | None = 2.0**-24,
               pulls: bool = True) -> None:
        """Tighten every taped value's error and every relaxation's slopes, in the order
        of the steps: each value's error carried forward again from its inputs' (``|A|
        e + own`` of a linear step, ``max |s| · e + own`` of a relaxation) where smaller
        than the forward pass's, and each relaxation's slopes taken again over the reach
        of that error. Where a neuron's slope is not sure (a ReLU's input on one side of
        0 within its error of it, or on both over the box), its error is bounded by a
        pull of its own (an identity row pulled back through the steps before it,
        stopping at taped values whose error is at most ``cut``), for at most
        :data:`REFINE_MOST` neurons per call (the first met), of ``boxes`` only (default:
        all); ``pulls=False``: none, the errors carried again alone. Each error stays a
        bound of its value's, so each slope stays one: the forward pass's errors grow by
        ``|A|`` from the last refined layer, not from the first."""
        budget = REFINE_MOST
        made = {step.node: step for step in self.steps}

        def error_of(node: fx.Node, entry: torch.Tensor | None) -> torch.Tensor | None:
            step = made.get(node)
            return entry if step is None else step.error

        for step in self.steps:
            if isinstance(step, Cut):
                continue
            if isinstance(step, LinearStep):
                errors = {n: error_of(n, step.entries.get(n)) for n in step.inputs}
                if any(e is None for e in errors.values()):
                    continue
                try:
                    carried = step.magnitude(errors) + step.own
                except (RuntimeError, KeyError, TypeError, ValueError):
                    continue  # (the forward error stays)
                step.error = _least(step.error, carried.reshape_as(step.error))
                continue
            incoming = error_of(step.input, step.entry)
            if incoming is None:
                continue
            if step.rule is not None and pulls and budget > 0 and step.input in self.taped:
                incoming, budget = self._refined(step, incoming, boxes, cut, budget,
                                                 made.get(step.input))
            step.incoming = incoming if step.incoming is None else _least(step.incoming,
                                                                          incoming)
            if step.rule is not None:
                least, most = step.slopes_within(incoming)
                step.least = torch.maximum(least, step.least)
                step.most = torch.minimum(most, step.most)
            steepest = torch.maximum(step.least.abs(), step.most.abs())
            carried = (steepest * incoming + step.own) * (1 + 4 * UNIT)
            step.error = _least(step.error, carried)

    def _refined(self, step: SlopeStep, incoming: torch.Tensor,
                 boxes: torch.Tensor | None, cut: float, budget: int,
                 producer: LinearStep | SlopeStep | Cut | None = None
                 ) -> tuple[torch.Tensor, int]:
        """``incoming`` (the error of ``step``'s input) with each neuron whose slope it
        leaves in doubt bounded by its own pull (see :meth:`refine`), and the budget
        left; the refined error written to ``producer`` too (the input's step, if taped)."""
        least, most = step.slopes_within(incoming)
        # (every neuron whose slope is not sure: in doubt by the error alone, or over the
        # box; the pulls bound its error, which multiplies the half-width of its slopes.
        # A slope sure but for its own rounding, 1 ± 10^-14, is not worth a pull)
        doubtful = ((most - least) > 2.0**-30 * torch.maximum(least.abs(), most.abs())
                    ).reshape(incoming.shape[0], -1)
        if boxes is not None:
            chosen = torch.zeros(doubtful.shape[0], dtype=torch.bool, device=doubtful.device)
            chosen[boxes] = True
            doubtful &= chosen[:, None]
        doubtful = doubtful.nonzero()[:budget]
        if not len(doubtful):
            return incoming, budget
        flat = incoming.reshape(incoming.shape[0], -1).clone()
        for chunk in doubtful.split(REFINE_ROWS):
            box, neuron = chunk[:, 0], chunk[:, 1]
            center = torch.zeros(len(chunk), flat.shape[1], dtype=torch.float64,
                                 device=flat.device)
            center[torch.arange(len(chunk), device=center.device), neuron] = 1.0
            center = center.view(len(chunk), *incoming.shape[1:])
            start = _Coefficient(center, torch.zeros_like(center))
            total = self._pulled(step.input, start, box, cut)
            total = torch.nan_to_num(total * GROWN, nan=math.inf, posinf=math.inf)
            flat[box, neuron] = torch.minimum(flat[box, neuron], total)
        refined = flat.view_as(incoming)
        if producer is not None:  # (the input's own error, for the steps that read it too)
            producer.error = _least(producer.error, refined)
        return refined, budget - len(doubtful)

    def _pulled(self, last: fx.Node, start: _Coefficient, box: torch.Tensor,
                cut_below: float | None = None, inject: bool = True) -> torch.Tensor:
        """``Σ max |λ| · bound`` per coefficient row (row ``i`` of box ``box[i]``), pulled
        back from ``start`` on ``last``'s value; a taped value whose forward error is at
        most ``cut_below`` enters with it, not pulled through. ``inject``: a slope's doubt
        bounded where it stands, times its input's error (else pulled on as radius: the
        module docstring)."""
        pending: dict[fx.Node, _Coefficient] = {last: start}
        rows = start.center.shape[0]
        total = torch.zeros(rows, dtype=torch.float64, device=start.center.device)

        def weigh(coefficient: _Coefficient, bound: torch.Tensor) -> torch.Tensor:
            product = coefficient.magnitude() * _of_rows(bound, box)
            return product.reshape(rows, -1).sum(1)

        def hand(node: fx.Node, part: _Coefficient, entry: torch.Tensor | None) -> None:
            nonlocal total
            if node in self.taped:
                pending[node] = _added(pending.get(node), part)
            else:
                total = total + weigh(part, entry)

        for step in reversed(self.steps):
            coefficient = pending.pop(step.node, None)
            if coefficient is None:
                continue
            if isinstance(step, Cut) or (cut_below is not None and step.node is not last
                                         and float(step.error.max()) <= cut_below):
                total = total + weigh(coefficient, step.error)
                continue
            if isinstance(step, SlopeStep):
                total = total + weigh(coefficient, step.own)
                passed, spread = _through_slopes(coefficient, step, box)
                if not inject:  # the doubt pulled on as radius instead
                    passed = _Coefficient(passed.center, (passed.radius + spread)
                                          * (1 + 4 * UNIT))
                elif step.incoming is not None:  # (0 where the slope is sure: no 0 · inf)
                    doubt = spread * _of_rows(step.incoming, box)
                    total = total + torch.where(spread > 0, doubt, 0.0).reshape(rows, -1).sum(1)
                else:  # (no bound of the input's error at hand: the doubt pulled on)
                    passed = _Coefficient(passed.center, (passed.radius + spread)
                                          * (1 + 4 * UNIT))
                hand(step.input, passed, step.entry)
                continue
            try:
                parts = _through_linear(coefficient, step)
            except (RuntimeError, KeyError, TypeError, ValueError) as exc:
                # a map autograd cannot transpose here: its output's forward error
                # enters as it is (a cut, as sound), and the reason is kept
                self.fallbacks.append(f"{step.node.name}: {type(exc).__name__}: {exc}")
                total = total + weigh(coefficient, step.error)
                continue
            total = total + weigh(coefficient, step.own)
            for node, part in zip(step.inputs, parts, strict=True):
                hand(node, part, step.entries.get(node))
        return total


def _least(kept: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
    """The smaller of two bounds per element (NaN in ``found`` counts as none)."""
    return torch.minimum(kept, torch.nan_to_num(found, nan=math.inf, posinf=math.inf))


def _of_rows(value: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """A per-box tensor ``[N, ...]`` for coefficient rows of boxes ``box`` (one box's
    broadcast as it is)."""
    return value if value.shape[0] == 1 else value[box]


def _through_slopes(coefficient: _Coefficient, step: SlopeStep, box: torch.Tensor
                    ) -> tuple[_Coefficient, torch.Tensor]:
    """``c · s d`` for every ``c`` of the coefficient (center ``ĉ``, radius ``r``) and
    ``s`` in ``[least, most]``, split as ``ĉ m d + ĉ (s - m) d + (c - ĉ) s d`` (``m``
    the slopes' middle, ``h`` their half-width): the coefficient passed on, ``ĉ m ± r
    max |s|`` (widened for the products' roundings), and ``|ĉ| h``, what multiplies the
    input's error bound as a rounding of this step's own (not pulled further: the radius
    it would add grows by ``|W|`` per layer as the forward bound does, from the forward
    errors, while the input's error here may be a refined one)."""
    least, most = _of_rows(step.least, box), _of_rows(step.most, box)
    middle = (least + most) / 2
    half = (most - least) / 2 * (1 + 4 * UNIT) + middle.abs() * 2 * UNIT
    center = coefficient.center * middle
    radius = (coefficient.radius * torch.maximum(least.abs(), most.abs())
              + 2 * UNIT * center.abs()) * (1 + 4 * UNIT)
    radius = torch.nan_to_num(radius, nan=math.inf, posinf=math.inf)
    spread = torch.nan_to_num(coefficient.center.abs() * half * (1 + 4 * UNIT), nan=math.inf,
                              posinf=math.inf)
    return (_Coefficient(torch.nan_to_num(center, nan=0.0, posinf=0.0, neginf=0.0), radius),
            spread)


def _through_linear(coefficient: _Coefficient, step: LinearStep) -> list[_Coefficient]:
    """``J^T c`` per input (autograd at zero, in the engine's dtype: the center cast to
    it rounds once more), and ``|J|^T`` of the radius plus ``γ`` of both for the sums
    (``γ`` of the output's elements per row: any order), in float64."""
    center, radius = coefficient.center, coefficient.radius
    unit = torch.finfo(step.dtype).eps / 2
    g = 4 * gamma(center[0].numel() + 3, unit)
    centers = [c.double() for c in _pullback(
        step.run, [_Like(t.to(step.dtype)) for t in step.like], center.to(step.dtype))]
    spread = radius + g * center.abs()
    radii = _pullback(lambda xs: step.magnitude(dict(zip(step.inputs, xs, strict=True))),
                      [_Like(t) for t in step.like], spread)
    return [_Coefficient(c, torch.nan_to_num(r.abs() * (1 + g), nan=math.inf,
                                             posinf=math.inf))
            for c, r in zip(centers, radii, strict=True)]


def _added(kept: _Coefficient | None, part: _Coefficient) -> _Coefficient:
    """The coefficient of a value used twice (a residual's): the sum, its center's
    rounding in the radius."""
    if kept is None:
        return part
    center = kept.center + part.center
    return _Coefficient(center, (kept.radius + part.radius + 2 * UNIT * center.abs())
                        * (1 + 4 * UNIT))
