"""The interval screen's domain: a lower and an upper bound per neuron, and the rules
operations register for it (:func:`~pixelprior.scoring.cone.table.register_interval`).

Interval bound propagation (IBP; Gowal et al., 2018) is the loosest sound domain and the
cheapest: two values per neuron instead of a zonotope's ``1 + symbols``, so intervals of
many boxes of colors (every other pixel fixed) run through the network as a batch of
plain tensors, on any device: the windows of each pixel's cone, or whole images. A
network trained with it (``resnet8-ibp-cifar10``) is proved by it at most positions;
:mod:`.screen` runs it over the whole color cube of many positions at once, and the
verifier bounds only the positions it leaves open with zonotopes.

**Float error, proved.** Every rule returns bounds that hold for the network in real
arithmetic whenever its inputs' bounds do: each rounding of the float64 computation is
covered by widening the result outwards, neuron by neuron (Higham's ``γ_n`` for sums of
``n`` products, one unit roundoff for a single operation, :data:`REST_ROUNDINGS` units
for a library function, all doubled), and the last subtraction or addition of each bound
is stepped one float further out (``torch.nextafter``). No error is carried from layer to
layer: it is inside the bounds.

**The model's own float32 evaluation, proved** (:meth:`IntervalRule.error`). Beside its
bounds a value may carry ``error``: per neuron, how far the model evaluated in float32
(unit ``u``) can be from its real-arithmetic value anywhere in the box. Each rule passes
it on (an affine map by ``|A| error``, a sum by the sum of its arguments', a
nonlinearity by its Lipschitz bound) and adds what float32 rounds there: ``γ_n`` (with
float32's ``u``) of the magnitudes the float32 model can meet, the bounds' magnitude
plus the error. A monotone exact nonlinearity that is constant over
``[lower - error, upper + error]`` (a ReLU off over the box) passes no error at all:
without that, the worst case grows with the product of the layers' absolute row sums
(10^11 for the CIFAR SqueezeNet's). It holds for any order of each sum, with or without
fused multiply-adds (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1):
direct and GEMM convolutions, not Winograd or FFT ones. A constant the model applies
counts with its own gap (:meth:`IntervalStep.gap`): none for a parameter or buffer (the
float32 model and the float64 copy hold the same value), ``|c - fl32(c)|`` for a number
written in the model's code (``x - 0.1``, a clamp at 0.7: float32 holds another value),
and an unbounded one for a constant computed inside the model from its parameters
(float32 computes it with roundings of its own): no proof there.

**The same error with signs** (:mod:`.backward`): each rule also splits its error into
what the operation rounds itself (:meth:`IntervalRule.rounding`) and the slopes through
which its arguments' errors pass (:meth:`IntervalRule.pull`, as coefficients pulled back
from its output), so the backward bound sums the roundings with the signs of the paths
from them to the margin.

Hand-written: auto_LiRPA's IBP needs torch < 1.13 (its PyPI release); the rules here are
the operation table's, so every operation the zonotope engine bounds is screened alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .zonotope import (
    REST_ROUNDINGS,
    BoundUnsupportedError,
    Curved,
    Lipschitz,
    PiecewiseLinear,
    Product,
    Relaxation,
    SShaped,
    _chord,
    gamma,
    relaxation_error,
)

__all__ = ["BROADCAST", "EXACT", "MAXIMUM", "MAXIMUM_OVER", "REARRANGED", "RESHAPE", "SHAPE",
           "Activation", "BackwardUnsupportedError", "Coefficient", "Exact", "Interval",
           "IntervalRule", "IntervalStep", "IntervalUnsupportedError", "Maximum", "MaximumOver",
           "Negate", "PositiveSum", "Rearranged", "Reshape", "Scale", "Shape", "SignedAffine",
           "Sum", "UNDERFLOW", "UNIT", "constant_gap", "tiled", "widen"]

UNIT = 2.0**-53  # float64's unit roundoff (round to nearest)
# What gradual underflow adds to each value's float32 error, absolutely: a rounding into
# float32's subnormal range errs by up to 2^-150 whatever the value's size (the relative
# rules' gamma_n cover none of it), and an output element takes fewer than 2^50 of them
# (a model scaling its scores by 2^-149 ties classes the real margins separate)
UNDERFLOW = 2.0**-100


class IntervalUnsupportedError(ValueError):
    """The interval screen has no rule for an operation as the model calls it."""


@dataclass
class Interval:
    """Bounds ``lower <= x <= upper`` of a value, elementwise (``[N, ...]``, float64)."""

    lower: torch.Tensor
    upper: torch.Tensor
    error: torch.Tensor | None = None  # the float32 evaluation's error bound (module doc)

    def magnitude(self) -> torch.Tensor:
        """The largest ``|x|`` per neuron."""
        return torch.maximum(self.lower.abs(), self.upper.abs())

    def reach(self) -> torch.Tensor:
        """The largest ``|x|`` the float32 evaluation can meet per neuron: the magnitude
        plus the error."""
        return self.magnitude() + self.error


def unbounded_as_infinite(out: Any) -> Any:
    """``out`` with the NaN ends of an interval as infinite (``-inf`` below, ``inf``
    above): an unbounded range (a divisor's that holds 0) met by a zero weight or
    subtracted from itself leaves NaN, which a later comparison would read as a bound.
    Anything but an :class:`Interval` is returned as it is."""
    if isinstance(out, Interval):  # (not nan_to_num: it makes an infinite end finite)
        out.lower = torch.where(torch.isnan(out.lower), -math.inf, out.lower)
        out.upper = torch.where(torch.isnan(out.upper), math.inf, out.upper)
    return out


def widen(lower: torch.Tensor, upper: torch.Tensor,
          slack: torch.Tensor | float = 0.0) -> Interval:
    """``[lower - slack, upper + slack]``, each end one float further out (the rounding
    of that last subtraction or addition)."""
    inf = torch.tensor(math.inf, dtype=lower.dtype, device=lower.device)
    return Interval(torch.nextafter(lower - slack, -inf), torch.nextafter(upper + slack, inf))


class IntervalStep:
    """One node of the graph as an interval rule sees it.

    Attributes:
        intervals: the node's arguments that vary with the pixel, in the order they occur
            (one entry per occurrence: ``x - x`` has two).
        argument_of: per occurrence, the argument it is in (its position, or its keyword).
        params: the operation's settings (as the operation table reads them).
        exact_constants: the evaluation holds the model's constants as they are (a
            float64 copy's evaluation measured against itself): no constant has a gap,
            numbers and an activation's levels included.
    """

    def __init__(self, call: Callable[[Callable[[int, Interval], Any]], Any],
                 intervals: list[Interval], argument_of: list[int | str],
                 params: Any, argument: Callable[[int, str], Any],
                 gap: Callable[[int, str], Any] | None = None,
                 exact_constants: bool = False) -> None:
        self._call, self.intervals, self.params = call, intervals, params
        self.argument_of, self._argument, self._gap = argument_of, argument, gap
        self.exact_constants = exact_constants
        self.memo: dict[str, Any] = {}  # what a rule's pulls share (slopes, windows)

    def run(self, pick: Callable[[int, Interval], Any], constants: bool = True) -> Any:
        """The node's own operation with its ``k``-th varying argument replaced by
        ``pick(k, interval)`` (constant tensors as they are, or with ``constants=False``
        their gaps, :meth:`gap`: an error passed through exactly)."""
        return self._call(pick, constants)

    def gap(self, position: int, keyword: str) -> Any:
        """How far the float32 model's value of the argument at ``position`` (or
        ``keyword``) can be from the float64 copy's: its error where it varies; for a
        constant 0 (a parameter, a buffer: the same float32 value), ``|c - fl32(c)|`` (a
        number in the model's code) or ``inf`` (a constant computed inside the model:
        float32 rounds it its own way); 0 where the argument is absent."""
        if self._gap is None:
            value = self.argument(position, keyword)
            return value.error if isinstance(value, Interval) else constant_gap(value)
        return self._gap(position, keyword)

    def argument(self, position: int, keyword: str) -> Any:
        """The node's argument at ``position`` or ``keyword`` (an :class:`Interval`
        where it varies)."""
        return self._argument(position, keyword)

    def run_each(self, pick: Callable[[Interval], Any], constants: bool = True) -> Any:
        """:meth:`run` with every varying argument replaced by ``pick(interval)``."""
        return self._call(lambda k, value: pick(value), constants)

    def errors(self) -> Any:
        """The operation run on its arguments' errors, constant tensors as their gaps
        (for an operation that is exact and 1-Lipschitz, or a nonnegative sum)."""
        return self.run_each(lambda v: v.error, constants=False)


class IntervalRule:
    """How the interval screen runs an operation (subclasses say which way)."""

    def apply(self, step: IntervalStep) -> Interval | Any:
        """The bounds of the node's output (or its constant value: a shape)."""
        raise NotImplementedError

    def error(self, step: IntervalStep, out: Interval, unit: float) -> torch.Tensor:
        """The output's float32 evaluation error bound (the module docstring), given its
        bounds ``out`` and the arguments' errors; ``unit`` the evaluation's unit
        roundoff. Computed in float64; the caller widens it by a relative ``2^-20`` for
        that."""
        raise NotImplementedError(f"{type(self).__name__} has no float32 error rule")

    def rounding(self, step: IntervalStep, out: Interval, unit: float) -> torch.Tensor:
        """What the float32 evaluation adds to the error at this operation, per output:
        ``ρ`` in ``δ_out = J δ_in + ρ`` (the errors ``δ_in`` of the varying arguments
        passed on by the operation's local slopes ``J``; a constant argument's gap and the
        operation's own rounding in ``ρ``). :meth:`error` is ``|J| e_in`` plus this."""
        raise BackwardUnsupportedError(f"{type(self).__name__} has no rounding rule")

    def pull(self, step: IntervalStep, out: Interval, coefficient: Coefficient
             ) -> list[Coefficient]:
        """The coefficients of the arguments' errors (one per varying occurrence, in
        ``step.intervals``' order) from those of the output's: every ``c · J`` for
        ``c`` in ``coefficient`` and ``J`` the slopes the operation can have anywhere in
        the box (with the float32 errors), enclosed (:mod:`.backward`)."""
        raise BackwardUnsupportedError(f"{type(self).__name__} has no backward rule")


class BackwardUnsupportedError(ValueError):
    """The backward float32 error bound has no rule for an operation (the forward one,
    :meth:`IntervalRule.error`, still holds)."""


@dataclass
class Coefficient:
    """Every coefficient vector ``c`` with ``|c - center| <= radius`` (elementwise, shaped
    like the value it multiplies): an enclosure of ``∂ margin / ∂ value`` over a box."""

    center: torch.Tensor
    radius: torch.Tensor

    def magnitude(self) -> torch.Tensor:
        """The largest ``|c|`` per element."""
        return self.center.abs() + self.radius


def tiled(value: torch.Tensor, rows: int) -> torch.Tensor:
    """A per-box tensor ``[P, ...]`` repeated for ``rows = k P`` coefficient rows (``k``
    margins, margin-major); one of a single row broadcasts as it is."""
    if value.dim() == 0 or value.shape[0] in (1, rows):
        return value
    return value.repeat(rows // value.shape[0], *([1] * (value.dim() - 1)))


def _pullback(run: Callable[[list[torch.Tensor]], torch.Tensor], like: list[Interval],
              cotangent: torch.Tensor) -> list[torch.Tensor]:
    """``J^T cotangent`` of a linear ``run`` (its bias ignored) per argument, by autograd
    at zero, as many rows as ``cotangent`` has; zeros for an argument the output does
    not depend on."""
    rows = cotangent.shape[0]
    with torch.inference_mode(False), torch.enable_grad():
        xs = [torch.zeros((rows, *v.lower.shape[1:]), dtype=v.lower.dtype,
                          device=v.lower.device, requires_grad=True) for v in like]
        out = run(xs)
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            return [torch.zeros_like(x.detach()) for x in xs]
        grads = torch.autograd.grad(out, xs, cotangent, allow_unused=True)
    return [torch.zeros_like(x.detach()) if g is None else g.detach()
            for x, g in zip(xs, grads, strict=True)]


def _linear_pull(step: IntervalStep, out: Interval, coefficient: Coefficient,
                 run_abs: Callable[[torch.Tensor], torch.Tensor] | None = None
                 ) -> list[Coefficient]:
    """The pull of an operation linear in its varying arguments (plus constants): the
    center through ``J^T``, the radius through ``|J|^T`` (``run_abs``'s, or ``|J^T r|``
    where every argument element's coefficients share a sign: copies, selections,
    nonnegative or scalar weights), widened for the float64 sums of both (``γ`` of the
    output's elements per row, for any summation order).

    Without ``run_abs`` this is sound **only** for such operations: a rule that pulls
    through an operation with weights of both signs per argument element must give its
    ``|J|`` (as :class:`SignedAffine` does)."""
    center, radius = coefficient.center, coefficient.radius
    g = 4 * gamma(out.lower[0].numel() + 2, UNIT)  # (one row's elements: any batch)
    spread = radius + g * center.abs()
    centers = _pullback(lambda xs: step.run(lambda k, v: xs[k]), step.intervals, center)
    if run_abs is None:
        radii = [r.abs() for r in _pullback(lambda xs: step.run(lambda k, v: xs[k]),
                                            step.intervals, spread)]
    else:
        radii = _pullback(lambda xs: run_abs(xs[0]), step.intervals[:1], spread)
    return [Coefficient(c, r * (1 + g)) for c, r in zip(centers, radii, strict=True)]


def _constant_roundings(step: IntervalStep) -> torch.Tensor:
    """The operation run with its varying arguments at 0 and its constant tensors at
    their gaps: what a copy or a selection passes on from its constants."""
    return step.run(lambda k, v: torch.zeros_like(v.lower), constants=False)


def constant_gap(value: Any) -> Any:
    """The float32 model's distance from a constant it is given as a number (``|c -
    fl32(c)|``); 0 for anything else that is not a tensor (``None``, a flag)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return abs(float(value) - float(torch.tensor(float(value), dtype=torch.float32)))


def _slack(terms: float, magnitude: torch.Tensor | float) -> torch.Tensor | float:
    """Twice ``γ_terms`` of ``magnitude``: a bound of ``terms`` roundings relative to it,
    with room for the roundings of computing the bound itself."""
    return 2 * gamma(terms, UNIT) * magnitude


@dataclass(frozen=True)
class Exact(IntervalRule):
    """Nondecreasing in every varying argument and computed without rounding (max pooling,
    concatenation, reshapes, copies): ``[f(lower), f(upper)]``."""

    def apply(self, step):
        return Interval(step.run_each(lambda v: v.lower), step.run_each(lambda v: v.upper))

    def error(self, step, out, unit):
        # a maximum, a copy, a reshape: 1-Lipschitz in the largest coordinate, no rounding
        return step.errors()

    def rounding(self, step, out, unit):
        return _constant_roundings(step).expand_as(out.lower)

    def pull(self, step, out, coefficient):
        # a copy, a concatenation, a reshape: linear, each output one argument element
        return _linear_pull(step, out, coefficient)


@dataclass(frozen=True)
class Maximum(Exact):
    """Max pooling: an :class:`Exact` range; its error passes on through the window's
    largest element where that one is sure over the box (with the errors), else through
    any element that can be largest with a weight in [0, 1]
    (``max(a + δ) - max(a) = Σ s_i δ_i``, ``s`` in the simplex)."""

    def pull(self, step, out, coefficient):
        if "windows" not in step.memo:
            step.memo["windows"] = self._candidates(step)
        windows, candidate, sure = step.memo["windows"]
        rows = coefficient.center.shape[0]
        windows = windows.rows(rows)
        candidate, sure = tiled(candidate, rows), tiled(sure, rows)
        c = windows.spread(coefficient.center)
        r = windows.spread(coefficient.radius)
        lower = torch.where(sure, c - r, torch.minimum(c - r, torch.zeros_like(c)))
        upper = torch.where(sure, c + r, torch.maximum(c + r, torch.zeros_like(c)))
        zero = torch.zeros_like(c)
        lower, upper = torch.where(candidate, lower, zero), torch.where(candidate, upper, zero)
        center, radius = windows.fold((lower + upper) / 2), windows.fold((upper - lower) / 2)
        g = 4 * gamma(windows.kernel_size + 2, UNIT)  # the folds' sums, of their terms
        size = windows.fold((lower.abs() + upper.abs()) / 2)
        return [Coefficient(center, radius * (1 + g) + g * size)]

    def _candidates(self, step: IntervalStep
                    ) -> tuple[_PoolWindows | _Groups, torch.Tensor, torch.Tensor]:
        """The windows, which elements can be each window's maximum (their highest value
        reaches the least the maximum can be) and the windows where only one can."""
        value = step.intervals[0]
        low, high = value.lower - value.error, value.upper + value.error
        windows = self._windows(step.params, low.shape)
        floor = windows.pool(low)  # the least the window's maximum can be
        candidate = windows.unfold(high) >= windows.spread(floor)  # [N, C, k, L]
        return windows, candidate, candidate.sum(2, keepdim=True) == 1

    @staticmethod
    def _windows(params: Any, shape: torch.Size) -> _PoolWindows | _Groups:
        """The groups an output element is the maximum of: a max pooling's windows."""
        return _PoolWindows(params, shape)


@dataclass(frozen=True)
class MaximumOver(Maximum):
    """A maximum over whole axes or an adaptive max pooling's windows, whose groups the
    input's shape gives (``params.groups``): as :class:`Maximum`; the groups are checked
    to keep each row of the batch axis its own before the range is taken."""

    def apply(self, step):
        try:
            step.params.groups(tuple(step.intervals[0].lower.shape[1:]))
        except ValueError as error:  # (a BoundUnsupportedError: the batch axis)
            raise IntervalUnsupportedError(str(error)) from error
        return super().apply(step)

    @staticmethod
    def _windows(params: Any, shape: torch.Size) -> _PoolWindows | _Groups:
        return _Groups(params, shape)  # (``params.groups``)


@dataclass(frozen=True)
class Reshape(Exact):
    """A reshape that keeps the batch axis: each row's elements in the same order, so a
    coefficient is reshaped back (whatever batch the model's traced sizes hold)."""

    def pull(self, step, out, coefficient):
        rows = coefficient.center.shape[0]
        shape = (rows, *step.intervals[0].lower.shape[1:])
        return [Coefficient(coefficient.center.reshape(shape),
                            coefficient.radius.reshape(shape))]


@dataclass(frozen=True)
class Rearranged(Exact):
    """A copy of elements that keeps each row of the batch axis its own (``unsqueeze``,
    ``squeeze``, an index keeping the batch axis, ``expand``): exact, linear; refused
    where it runs with another first axis than its input's, or (``broadcast``: an
    ``expand``) with more axes (it would mix the rows).

    Attributes:
        broadcast: the operation broadcasts its first argument (``expand``).
    """

    broadcast: bool = False

    def apply(self, step):
        out = super().apply(step)
        if self.broadcast and not isinstance(step.argument(0, "input"), Interval):
            return out  # a constant laid out as a varying value (bias.expand_as(h)): the
            # same in every row (a review: refused as moving the batch axis)
        given = step.intervals[0].lower
        if (out.lower.dim() == 0 or out.lower.shape[0] != given.shape[0]
                or (self.broadcast and out.lower.dim() != given.dim())
                or not _rows_kept(step, given)):
            raise IntervalUnsupportedError("an indexing, a new axis, an expand, a "
                                           "transpose, a flip or a roll that moves the "
                                           "batch axis (the boxes' rows)")
        return out


def _rows_kept(step: IntervalStep, given: torch.Tensor) -> bool:
    """Whether the copy puts each row's elements on that row alone: the operation run on
    each row's number (its index + 1; ``transpose(-4, 2)`` of a 4-D value keeps the
    rows' count where the boxes are as many as the axis it swaps in, and mixes them; a
    review), each output its row's number or 0 (the zeros a padded ``nn.Unfold`` puts
    in: no row's)."""
    rows = given.shape[0]
    if rows < 2:
        return True
    number = torch.arange(1, rows + 1, dtype=given.dtype, device=given.device)
    probe = number.view(-1, *([1] * (given.dim() - 1))).expand_as(given)
    moved = step.run_each(lambda v: probe)
    own = number.view(-1, *([1] * (moved.dim() - 1)))
    return bool(((moved == own) | (moved == 0)).all())


class _PoolWindows:
    """A max pooling's windows as columns (``F.unfold``; ``ceil_mode``'s extra windows
    padded with ``-inf``), and their sums back on the input (``F.fold``)."""

    def __init__(self, params: Any, shape: torch.Size) -> None:
        self.params = params
        (kh, kw), (sh, sw) = params.kernel, params.stride
        (ph, pw), (dh, dw) = params.padding, params.dilation
        self.shape, self.kernel_size = shape, kh * kw
        self.outputs = tuple(
            _pooled(n, k, s, p, d, params.ceil_mode)
            for n, k, s, p, d in ((shape[2], kh, sh, ph, dh), (shape[3], kw, sw, pw, dw)))
        need = [(o - 1) * s + d * (k - 1) + 1
                for o, k, s, d in zip(self.outputs, (kh, kw), (sh, sw), (dh, dw), strict=True)]
        self.pads = (pw, max(0, need[1] - shape[3] - pw), ph, max(0, need[0] - shape[2] - ph))
        self.padded = (shape[2] + self.pads[2] + self.pads[3], shape[3] + self.pads[0]
                       + self.pads[1])
        self.geometry = {"kernel_size": (kh, kw), "dilation": (dh, dw), "stride": (sh, sw)}

    def rows(self, rows: int) -> _PoolWindows:
        """The same windows for ``rows`` rows."""
        if rows == self.shape[0]:
            return self
        return _PoolWindows(self.params, torch.Size((rows, *self.shape[1:])))

    def unfold(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, k, L]``: each window's elements (``-inf`` outside the map)."""
        padded = F.pad(x, self.pads, value=-math.inf)
        n, c = x.shape[:2]
        return F.unfold(padded, **self.geometry).view(n, c, self.kernel_size, -1)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, 1, L]``: each window's maximum."""
        return self.unfold(x).amax(2, keepdim=True)

    def spread(self, x: torch.Tensor) -> torch.Tensor:
        """A value per window (``[N, C, L]``-like) over its elements: ``[N, C, k, L]``."""
        n, c = x.shape[:2]
        return x.reshape(n, c, 1, -1).expand(n, c, self.kernel_size, -1)

    def fold(self, columns: torch.Tensor) -> torch.Tensor:
        """Each input element's sum over the windows it is in (``[N, C, H, W]``)."""
        n, c = columns.shape[:2]
        summed = F.fold(columns.reshape(n, c * self.kernel_size, -1), self.padded,
                        **self.geometry)
        top, left = self.pads[2], self.pads[0]
        return summed[:, :, top:top + self.shape[2], left:left + self.shape[3]]


class _Groups:
    """A maximum's groups (``params.groups``: ``[M, K]`` flat positions in one row,
    ``-1`` none) as :class:`_PoolWindows` gives its windows: one channel of ``M``
    windows of ``K`` elements."""

    def __init__(self, params: Any, shape: torch.Size) -> None:
        self.params, self.shape = params, shape
        index, _ = params.groups(tuple(shape[1:]))
        self.elements = math.prod(shape[1:])
        self.index = torch.where(index < 0, self.elements, index)
        self.kernel_size = index.shape[1]

    def rows(self, rows: int) -> _Groups:
        """The same groups for ``rows`` rows."""
        if rows == self.shape[0]:
            return self
        return _Groups(self.params, torch.Size((rows, *self.shape[1:])))

    def unfold(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 1, K, M]``: each group's elements (``-inf`` for none)."""
        flat = F.pad(x.reshape(x.shape[0], -1), (0, 1), value=-math.inf)
        return flat[:, self.index.to(x.device).T][:, None]

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 1, 1, M]``: each group's maximum."""
        return self.unfold(x).amax(2, keepdim=True)

    def spread(self, x: torch.Tensor) -> torch.Tensor:
        """A value per group over its elements: ``[N, 1, K, M]``."""
        n = x.shape[0]
        return x.reshape(n, 1, 1, -1).expand(n, 1, self.kernel_size, -1)

    def fold(self, columns: torch.Tensor) -> torch.Tensor:
        """Each input element's sum over the groups it is in (the input's shape)."""
        n = columns.shape[0]
        summed = columns.new_zeros(n, self.elements + 1)
        summed.index_add_(1, self.index.to(columns.device).T.reshape(-1),
                          columns.reshape(n, -1))
        return summed[:, :-1].reshape(n, *self.shape[1:])


def _pooled(size: int, kernel: int, stride: int, padding: int, dilation: int,
            ceil_mode: bool) -> int:
    """A max pooling's output size along one axis (as ``F.max_pool2d`` computes it)."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


@dataclass(frozen=True)
class Shape(IntervalRule):
    """``size``/``shape``/``dim`` of a value: a constant, the same for both bounds."""

    def apply(self, step):
        return step.run_each(lambda v: v.lower)


@dataclass(frozen=True)
class PositiveSum(IntervalRule):
    """A sum with nonnegative weights (average pooling, a mean): nondecreasing, and off
    by at most ``γ_terms`` of the same sum of the magnitudes.

    Attributes:
        terms: roundings per output (``None``: the input elements per output plus one,
            known when it runs: a global average).
    """

    terms: int | None

    def apply(self, step):
        lower, upper = step.run_each(lambda v: v.lower), step.run_each(lambda v: v.upper)
        terms = self.terms or _window_terms(step.intervals[0].lower.shape, lower.shape)
        return widen(lower, upper, _slack(terms, step.run_each(Interval.magnitude)))

    def error(self, step, out, unit):
        return step.errors() + self.rounding(step, out, unit)

    def rounding(self, step, out, unit):
        terms = self.terms or _window_terms(step.intervals[0].lower.shape, out.lower.shape)
        return gamma(terms, unit) * step.run_each(Interval.reach, constants=False)

    def pull(self, step, out, coefficient):
        return _linear_pull(step, out, coefficient)  # nonnegative weights


def _window_terms(given: torch.Size, out: torch.Size) -> int:
    """Roundings per output of an average whose windows the shapes imply: the largest
    window (an adaptive pool's are ``ceil(n / m) + 1`` wide along an axis ``m`` does not
    divide) plus the division; a mean that drops axes divides them evenly."""
    if len(given) != len(out):
        return max(1, math.prod(given) // max(math.prod(out), 1)) + 1
    terms = 1
    for n, m in zip(given, out, strict=True):
        if m and n != m:
            terms *= -(-n // m) + (1 if n % m else 0)
    return terms + 1


@dataclass(frozen=True)
class Sum(IntervalRule):
    """``a + alpha · b`` (``a - alpha · b``), either argument may be a constant.

    With ``alpha = 1`` one rounding, relative to the result; otherwise two, relative to
    ``|a| + |alpha| |b|``.

    Attributes:
        subtracts: the second argument is subtracted.
        alpha: its factor.
    """

    subtracts: bool = False
    alpha: float = 1.0

    def apply(self, step):
        flips = self.subtracts != (self.alpha < 0)  # the second argument is antitone

        def antitone(k: int) -> bool:
            return flips and step.argument_of[k] in (1, "other")

        lower = step.run(lambda k, v: v.upper if antitone(k) else v.lower)
        upper = step.run(lambda k, v: v.lower if antitone(k) else v.upper)
        _check_rows(step, lower)
        if self.alpha == 1:
            return Interval(*_outward(lower, upper, 4 * UNIT))
        first, second = step.argument(0, "input"), step.argument(1, "other")
        size = _magnitude(first) + abs(self.alpha) * _magnitude(second)
        return widen(lower, upper, _slack(3, size))

    def error(self, step, out, unit):
        # e_a + |alpha| e_b of the varying arguments, plus the rounding
        return self._passed(step, varying=True) + self.rounding(step, out, unit)

    def rounding(self, step, out, unit):
        # a constant argument's gap (a number float32 rounds), then one rounding of the
        # float32 result (two with alpha), relative to what float32 meets
        constants = self._passed(step, varying=False)
        if self.alpha == 1:
            passed = self._passed(step, varying=True) + constants
            own = unit * (out.magnitude() + passed)
        else:
            first, second = step.argument(0, "input"), step.argument(1, "other")
            own = gamma(3, unit) * (_reach(first) + abs(self.alpha) * _reach(second))
        return (constants + own).expand_as(out.lower)

    def _passed(self, step: IntervalStep, varying: bool) -> Any:
        """``|factor| gap`` summed over the arguments that vary (their errors) or over
        the constant ones (their gaps)."""
        return sum(abs(factor) * step.gap(position, keyword)
                   for position, keyword, factor in ((0, "input", 1.0),
                                                     (1, "other", self.alpha))
                   if isinstance(step.argument(position, keyword), Interval) == varying)

    def pull(self, step, out, coefficient):
        return _linear_pull(step, out, coefficient)  # a factor ±alpha per argument


def _check_rows(step: IntervalStep, out: torch.Tensor) -> None:
    """Refuse an elementwise operation that broadcasts a varying argument of fewer axes
    than its result (``z * z.mean(1)``, ``[P, K]`` times ``[P]``): its first axis, the
    boxes' rows, would meet another axis of the result."""
    if any(v.lower.dim() != out.dim() for v in step.intervals):
        raise IntervalUnsupportedError("an elementwise operation that broadcasts a value "
                                       "of fewer axes across the batch axis (the boxes' "
                                       "rows); keep the axes, e.g. mean(1, keepdim=True)")


def _magnitude(value: Any) -> torch.Tensor | float:
    """The largest ``|x|`` of an interval, a tensor or a number."""
    if isinstance(value, Interval):
        return value.magnitude()
    if isinstance(value, torch.Tensor):
        return value.abs()
    return abs(value)


def _reach(value: Any) -> torch.Tensor | float:
    """The largest ``|x|`` the float32 evaluation meets in an interval (with its error), a
    tensor or a number."""
    return value.reach() if isinstance(value, Interval) else _magnitude(value)


def _outward(lower: torch.Tensor, upper: torch.Tensor, relative: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each end ``x`` of one rounded operation moved out by ``relative |x|``
    (``relative >= 2u``: the exact end is within ``u |x| / (1 - u)``, and moving
    rounds once more, by at most ``u |x| (1 + relative)``; ``relative`` a power of two,
    so its product with ``|x|`` is exact)."""
    return (torch.addcmul(lower, lower.abs(), torch.tensor(-relative, dtype=lower.dtype)),
            torch.addcmul(upper, upper.abs(), torch.tensor(relative, dtype=upper.dtype)))


@dataclass(frozen=True)
class Negate(IntervalRule):
    """``-x``: exact."""

    def apply(self, step):
        value = step.intervals[0]
        return Interval(-value.upper, -value.lower)

    def error(self, step, out, unit):
        return step.intervals[0].error

    def rounding(self, step, out, unit):
        return torch.zeros_like(out.lower)

    def pull(self, step, out, coefficient):
        return _linear_pull(step, out, coefficient)


@dataclass(frozen=True)
class Scale(IntervalRule):
    """A product (a quotient) with one varying factor (dividend) and a constant other: the
    ends of each neuron's range map to the ends, in either order; one rounding each. A
    product of two varying factors (a gate ``x * sigmoid(...)``, ``h * h``) takes the
    least and the largest of the four products of their ends.

    Attributes:
        divides: the operation divides its first argument by the second.
    """

    divides: bool = False

    def check(self, node: Any, varying: Any) -> None:
        """Refuse a varying divisor (as the zonotope engine's
        :class:`~.zonotope.Product` does)."""
        try:
            Product(self.divides).check(node, varying)
        except BoundUnsupportedError as exc:
            raise IntervalUnsupportedError(str(exc)) from None

    def apply(self, step):
        if len(step.intervals) == 2:
            ends = torch.stack([step.run(lambda k, v, i=i: v.upper if i >> k & 1 else v.lower)
                                for i in range(4)])
            _check_rows(step, ends[0])
            return Interval(*_outward(ends.amin(0), ends.amax(0), 4 * UNIT))
        first, second = step.run_each(lambda v: v.lower), step.run_each(lambda v: v.upper)
        _check_rows(step, first)
        lower, upper = torch.minimum(first, second), torch.maximum(first, second)
        return Interval(*_outward(lower, upper, 4 * UNIT))

    def error(self, step, out, unit):
        if len(step.intervals) == 2:
            # x̃ỹ - x y = ỹ (x̃ - x) + x (ỹ - y): |y| e_x + |x| e_y + e_x e_y
            passed = (_pair(step, Interval.magnitude, _error)
                      + _pair(step, _error, Interval.magnitude) + _pair(step, _error, _error))
            return passed + self.rounding(step, out, unit)
        # |c| e (|e / c|), plus the factor's own gap δ (a number float32 rounds):
        # δ |x| for a product, |x| δ / (|c| (|c| - δ)) for a quotient; then the product's
        # rounding, two for a quotient (CUDA divides by a reciprocal)
        return step.run_each(lambda v: v.error).abs() + self.rounding(step, out, unit)

    def rounding(self, step, out, unit):
        if len(step.intervals) == 2:  # the product's one rounding, of at most |x̃| |ỹ|
            return 2 * unit * _pair(step, Interval.reach, Interval.reach)
        # the factor's gap moves the result by at most `moved`; then the product rounds
        passed = step.run_each(lambda v: v.error).abs()
        first = step.argument(0, "input")
        varying, position = (first, 1) if isinstance(first, Interval) else (
            step.argument(1, "other"), 0)
        factor = step.argument(position, ("input", "other")[position])
        gap = step.gap(position, ("input", "other")[position])
        size = varying.reach()
        if self.divides:
            c = abs(factor) if not isinstance(factor, torch.Tensor) else factor.abs()
            room = c - gap
            moved = torch.where(torch.as_tensor(room > 0), size * gap / (c * room),
                                torch.as_tensor(math.inf, dtype=size.dtype))
        else:
            moved = size * gap
        return moved + 2 * unit * (out.magnitude() + passed + moved)

    def pull(self, step, out, coefficient):
        if len(step.intervals) == 2:
            return _product_pull(step, out, coefficient)
        if step.intervals[0].lower.shape[1:] != out.lower.shape[1:]:  # |Σ c r| != Σ |c| r
            raise BackwardUnsupportedError("a product broadcasting its varying factor")
        return _linear_pull(step, out, coefficient)


def _error(value: Interval) -> torch.Tensor:
    return value.error


def _pair(step: IntervalStep, first: Callable[[Interval], torch.Tensor],
          second: Callable[[Interval], torch.Tensor]) -> torch.Tensor:
    """A product of two varying factors run on ``first`` of the first factor and
    ``second`` of the other (nonnegative parts: their product, as the model broadcasts
    them), widened by a relative ``2^-50`` for its rounding."""
    return step.run(lambda k, v: (first, second)[k](v)) * (1 + 2.0**-50)


def _product_pull(step: IntervalStep, out: Interval, coefficient: Coefficient
                  ) -> list[Coefficient]:
    """The pull of ``x y`` (two varying factors): ``x̃ ỹ - x y = ỹ δ_x + x δ_y``, so the
    coefficient of ``δ_x`` is ``c ỹ`` with ``ỹ`` in ``[l_y - e_y, u_y + e_y]`` (the
    float32 value) and that of ``δ_y`` is ``c x`` with ``x`` in ``[l_x, u_x]`` (the real
    one): interval products, summed over the axes the factor was broadcast along (its
    float64 sums widened by ``4 γ`` of their terms, as :func:`_linear_pull` does)."""
    rows = coefficient.center.shape[0]
    c, r = coefficient.center, coefficient.radius
    x, y = step.intervals
    pulled = []
    for slope, factor in ((widen(y.lower, y.upper, y.error), x), (x, y)):
        low, high = tiled(slope.lower, rows), tiled(slope.upper, rows)
        ends = torch.stack([(c - r) * low, (c - r) * high, (c + r) * low, (c + r) * high])
        least, most = ends.amin(0), ends.amax(0)
        center = (least + most) / 2
        radius = (most - least) / 2 + 4 * UNIT * (least.abs() + most.abs())
        shape = (rows, *factor.lower.shape[1:])
        g = 4 * gamma(max(1, center[0].numel() // max(1, math.prod(shape[1:]))) + 2, UNIT)
        size = (center.abs() + radius).sum_to_size(shape)
        pulled.append(Coefficient(center.sum_to_size(shape),
                                  (radius.sum_to_size(shape) + g * size) * (1 + g)))
    return pulled


@dataclass(frozen=True)
class SignedAffine(IntervalRule):
    """``y = A x + b`` with weights of both signs (convolutions, linear layers,
    BatchNorm): ``A m + b ± |A| r`` with ``m``, ``r`` the inputs' midpoint and radius.

    Attributes:
        run_abs: ``x ↦ |A| x`` (no bias), in float64.
        offset: the magnitude of the constant part each output rounds beside ``A x``
            (``|b|``; BatchNorm's ``|scale| |mean| + |b|``), broadcasting against the
            output, or a number.
        terms: roundings per output (the terms of its sum and a few more).
        size_bound: ``v ↦`` an upper bound of ``|A| v`` for ``v >= 0`` broadcasting
            against the output (default: ``run_abs`` itself); a cheaper one spares a pass
            (a convolution's: per channel, the weights' absolute sum times the largest
            input of each input channel), at the price of a looser rounding bound.
        patch_abs: ``x ↦ |A| x`` on a patch the cone has already padded (a sliding-window
            layer run on a window of the pixel's cone, :mod:`.screen`); ``None``: no form
            for patches, and the screen bounds whole images wherever the layer is a
            sliding window (a pointwise layer's ``run_abs`` serves windows as it is).
    """

    run_abs: Callable[[torch.Tensor], torch.Tensor]
    offset: torch.Tensor | float
    terms: int
    size_bound: Callable[[torch.Tensor], torch.Tensor] | None = None
    patch_abs: Callable[[torch.Tensor], torch.Tensor] | None = None

    def apply(self, step):
        value = step.intervals[0]
        middle = (value.lower + value.upper) / 2
        radius = (value.upper - value.lower) / 2
        center = step.run_each(lambda v: middle)  # the operation itself, bias included
        return self.bounds(center, middle, radius)

    def bounds(self, center: torch.Tensor, middle: torch.Tensor, radius: torch.Tensor
               ) -> Interval:
        """The output's bounds from its computed ``center`` and the input's ``middle``
        and ``radius``.

        The midpoint and radius of the input are off by a rounding each (the radius
        taken one unit wider covers the midpoint's); ``A m + b`` and ``|A| r`` each by
        ``γ_terms`` of ``S = |A| (|m| + r) + offset``; the two subtractions (additions)
        of each end by ``2u (|A m + b| + |A| r + slack) <= 4.2u S``. All of it is below
        ``γ_{terms+9} S``, and the slack is twice ``γ_{terms+8} S``: no end needs a
        further step out.
        """
        reach = self.run_abs(radius)
        size = (self.size_bound or self.run_abs)(middle.abs() + radius)
        reach += _slack(self.terms + 8, size + self.offset_for(center))
        return Interval(center - reach, center + reach)

    def error(self, step, out, unit):
        return self.error_of(step.intervals[0], unit)

    def error_of(self, value: Interval, unit: float) -> torch.Tensor:
        """The float32 error of ``A x + b`` for ``x`` in ``value`` (with its error):
        ``|A| e + γ (|A| (|x| + e) + offset)``, in one pass as ``|A| (e + γ (|x| + e)) +
        γ offset``."""
        g = gamma(self.terms, unit)
        return self.run_abs(value.error + g * value.reach()) + g * self.offset_for(value.lower)

    def rounding(self, step, out, unit):
        return self.rounding_of(step.intervals[0], unit)

    def rounding_of(self, value: Interval, unit: float) -> torch.Tensor:
        """The float32 rounding of ``A x + b`` for ``x`` in ``value`` (with its error):
        ``γ (|A| (|x| + e) + offset)``."""
        g = gamma(self.terms, unit)
        return g * self.run_abs(value.reach()) + g * self.offset_for(value.lower)

    def offset_for(self, like: torch.Tensor) -> torch.Tensor | float:
        """:attr:`offset` as it broadcasts against the operation's values ``like`` (a
        rule whose offset is per channel of values of any rank shapes it here)."""
        return self.offset

    def pull(self, step, out, coefficient):
        return _linear_pull(step, out, coefficient, self.run_abs)


@dataclass(frozen=True)
class Activation(IntervalRule):
    """A pointwise nonlinearity, from the zonotope engine's relaxation of it.

    * piecewise linear (ReLU and its kin): the exact range, from ``f`` at the ends and
      at the kinks between them;
    * S-shaped (sigmoid, tanh; nondecreasing): ``[f(l), f(u)]``;
    * any other (a Lipschitz bound): the relaxation ``λ x + μ ± β`` over ``[l, u]``.

    Attributes:
        rule: the zonotope engine's relaxation (its ``f``, kinks, Lipschitz bound).
        exact: ``f`` is nondecreasing and rounds nothing (ReLU, ReLU6, hardtanh, clamp):
            ``[f(l), f(u)]`` as computed.

    Otherwise ``f`` is evaluated with a few roundings (:data:`REST_ROUNDINGS` units relative to
    ``|f(x)| + L |x| + |f(0)|``); the relaxation's own error is
    :func:`~.zonotope.relaxation_error`'s.
    """

    rule: Relaxation
    exact: bool = False

    def apply(self, step):
        value = step.intervals[0]
        lower, upper = value.lower, value.upper
        rule = self.rule
        if self.exact:  # nondecreasing and computed without rounding: ReLU, clamps
            return Interval(rule.f(lower), rule.f(upper))
        if isinstance(rule, Curved):  # f monotone on a piece (x² but for its 0)
            low, high = rule.extremes(lower, upper)
            size = rule.largest(lower, upper) + torch.maximum(low.abs(), high.abs())
            return widen(low, high, 2 * REST_ROUNDINGS * UNIT * size)
        if isinstance(rule, PiecewiseLinear | SShaped):
            low, high = rule.f(lower), rule.f(upper)
            if isinstance(rule, PiecewiseLinear):
                low, high = torch.minimum(low, high), torch.maximum(low, high)
                for point in rule.breakpoints:
                    point = torch.as_tensor(point, dtype=lower.dtype, device=lower.device)
                    inside = (lower < point) & (point < upper)
                    at = rule.f(point.expand_as(lower))
                    low = torch.where(inside, torch.minimum(low, at), low)
                    high = torch.where(inside, torch.maximum(high, at), high)
            size = (rule.lipschitz * value.magnitude() + rule.at_zero
                    + torch.maximum(low.abs(), high.abs()))
            return widen(low, high, 2 * REST_ROUNDINGS * UNIT * size)
        slope, offset, radius = rule.coefficients(lower, upper)
        first, second = slope * lower, slope * upper
        low = torch.minimum(first, second) + offset - radius
        high = torch.maximum(first, second) + offset + radius
        error = relaxation_error(rule, lower, upper, slope, offset, radius, 0.0, 1, UNIT)
        applied = 8 * UNIT * (slope.abs() * value.magnitude() + offset.abs() + radius)
        return widen(low, high, error + applied)

    def _passed_on(self, step: IntervalStep) -> tuple[Interval, torch.Tensor]:
        """The values the input may take (``[l - e, u + e]``) and how far ``f`` moves its
        error (:func:`_passed`): once per step, for :meth:`error` and :meth:`rounding`."""
        if "passed" not in step.memo:
            value = step.intervals[0]
            reachable = widen(value.lower, value.upper, value.error)
            step.memo["passed"] = reachable, _passed(self.rule, value, reachable)
        return step.memo["passed"]

    def error(self, step, out, unit):
        rule = self.rule
        reachable, passed = self._passed_on(step)
        if self.exact:  # monotone, no rounding; where f is constant over the values
            # reachable, only the gap of its levels (the rounding: a clamp at 0.7,
            # float32 holds another value)
            flat = rule.f(reachable.lower) == rule.f(reachable.upper)
            passed = torch.where(flat, torch.zeros_like(passed), passed)
        return passed + self.rounding(step, out, unit)

    def rounding(self, step, out, unit):
        value, rule = step.intervals[0], self.rule
        if self.exact:  # no rounding; the gap of its levels (0 for ReLU)
            gap = 0.0 if step.exact_constants else _level_gap(rule)
            return torch.full_like(out.lower, gap)
        # f's own float32 evaluation: a few library calls (as the bounds count them)
        reachable, passed = self._passed_on(step)
        own = REST_ROUNDINGS * unit * (rule.largest(reachable.lower, reachable.upper)
                                       + out.magnitude() + passed)
        if not rule.jump:
            return 2 * own
        # a jump (softplus's switch to x) only where the values, exact or computed, may
        # lie on both sides of it: within their error (and a few units) of the range
        near = widen(value.lower, value.upper,
                     (value.error + 4 * unit * value.magnitude()) * (1 + 1e-6))
        return 2 * own + rule.jump_within(near.lower, near.upper)

    def pull(self, step, out, coefficient):
        # f(x + δ) - f(x) = s δ (plus its jump, in the rounding), s between the least and
        # the largest slope over [l - e, u + e]
        if "slopes" not in step.memo:
            step.memo["slopes"] = self.slopes(step.intervals[0])
        rows = coefficient.center.shape[0]
        low, high = (tiled(s, rows) for s in step.memo["slopes"])
        c, r = coefficient.center, coefficient.radius
        ends = torch.stack([(c - r) * low, (c - r) * high, (c + r) * low, (c + r) * high])
        least, most = ends.amin(0), ends.amax(0)
        center, radius = (least + most) / 2, (most - least) / 2
        return [Coefficient(center, radius + 4 * UNIT * (least.abs() + most.abs()))]

    def slopes(self, value: Interval) -> tuple[torch.Tensor, torch.Tensor]:
        """The least and the largest slope ``(f(b) - f(a)) / (b - a)`` of ``f`` between
        any two points of ``[l - e, u + e]`` (exact 0 where ``f`` is constant there; the
        piece's slope on one linear piece; else ``[0, L]`` for a nondecreasing ``f``,
        ``[-L, L]`` otherwise)."""
        rule = self.rule
        reachable = widen(value.lower, value.upper, value.error)
        low, high = reachable.lower, reachable.upper
        if isinstance(rule, Curved):  # f' monotone on a piece: its values at the ends
            least, most = rule.slope_range(low, high)
            slack = 2.0**-40 * torch.maximum(least.abs(), most.abs())
            return least - slack, most + slack
        bound = rule.lipschitz * (1 + 2.0**-40)
        monotone = self.exact or isinstance(rule, SShaped)
        least = torch.full_like(low, 0.0 if monotone else -bound)
        most = torch.full_like(low, bound)
        if isinstance(rule, PiecewiseLinear):
            left, right, kinked = rule.piece(low, high)
            flat = ~kinked & (rule.f(left) == rule.f(right))  # (constant_over's test)
            # the chord of the whole piece, and its roundings: f's (a few units of |f|),
            # the difference's, the width's and the quotient's
            slope, width = _chord(rule.f, left, right)
            ends = rule.f(left).abs() + rule.f(right).abs()
            slack = 8 * UNIT * (ends / torch.where(width > 0, width, torch.ones_like(width))
                                + slope.abs())
            linear = ~kinked & (width > 0)
            least = torch.where(linear, slope - slack, least)
            most = torch.where(linear, slope + slack, most)
            zero = torch.zeros_like(low)
            least, most = torch.where(flat, zero, least), torch.where(flat, zero, most)
        return least, most


def _passed(rule: Relaxation, value: Interval, reachable: Interval) -> torch.Tensor:
    """How far ``f`` moves the float32 error ``e`` of its input: ``L e``, with ``L`` a
    bound of ``|f'|`` over every value the input may take (``reachable``:
    ``[l - e, u + e]``); ``inf`` where ``f`` is unbounded there (also at ``e = 0``: the
    range itself is then no bound)."""
    steepest = torch.as_tensor(rule.steepest(reachable.lower, reachable.upper),
                               dtype=value.error.dtype, device=value.error.device)
    return torch.where(torch.isfinite(steepest), steepest * value.error, math.inf)


EXACT, SHAPE, MAXIMUM, RESHAPE = Exact(), Shape(), Maximum(), Reshape()
MAXIMUM_OVER = MaximumOver()
REARRANGED, BROADCAST = Rearranged(), Rearranged(broadcast=True)


def _level_gap(rule: Relaxation) -> float:
    """The most a piecewise-linear ``f``'s breakpoints and its values there move when
    float32 holds them (a clamp's limits, given as numbers): 0 for ReLU and ReLU6."""
    gap = 0.0
    for point in getattr(rule, "breakpoints", ()):
        at = torch.as_tensor(point, dtype=torch.float64).reshape(-1)
        for value in (at, rule.f(at)):
            gap = max(gap, float((value - value.float().double()).abs().max()))
    return gap


def activation(rule: Relaxation | Any, exact: bool = False) -> Activation | Any:
    """The interval rule of a bound rule that relaxes (what activations register;
    ``exact``: see :class:`Activation`)."""
    if isinstance(rule, Curved | Lipschitz | PiecewiseLinear | SShaped):
        return Activation(rule, exact)
    return rule
