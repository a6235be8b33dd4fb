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

Hand-written: auto_LiRPA's IBP needs torch < 1.13 (its PyPI release); the rules here are
the operation table's, so every operation the zonotope engine bounds is screened alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .zonotope import (
    REST_ROUNDINGS,
    BoundUnsupportedError,
    Lipschitz,
    PiecewiseLinear,
    Product,
    Relaxation,
    SShaped,
    gamma,
    relaxation_error,
)

__all__ = ["EXACT", "SHAPE", "Activation", "Exact", "Interval", "IntervalRule", "IntervalStep",
           "IntervalUnsupportedError", "Negate", "PositiveSum", "Scale", "Shape",
           "SignedAffine", "Sum", "UNIT", "constant_gap", "widen"]

UNIT = 2.0**-53  # float64's unit roundoff (round to nearest)


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
        terms = self.terms or _window_terms(step.intervals[0].lower.shape, out.lower.shape)
        return step.errors() + gamma(terms, unit) * step.run_each(Interval.reach,
                                                                  constants=False)


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
        if self.alpha == 1:
            return Interval(*_outward(lower, upper, 4 * UNIT))
        first, second = step.argument(0, "input"), step.argument(1, "other")
        size = _magnitude(first) + abs(self.alpha) * _magnitude(second)
        return widen(lower, upper, _slack(3, size))

    def error(self, step, out, unit):
        # e_a + |alpha| e_b, a constant argument with its gap (a number float32 rounds)
        passed = (step.gap(0, "input")
                  + abs(self.alpha) * step.gap(1, "other"))
        if self.alpha == 1:  # one rounding of the float32 result
            return passed + unit * (out.magnitude() + passed)
        first, second = step.argument(0, "input"), step.argument(1, "other")
        size = _reach(first) + abs(self.alpha) * _reach(second)
        return passed + gamma(3, unit) * size


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


@dataclass(frozen=True)
class Scale(IntervalRule):
    """A product (a quotient) with one varying factor (dividend) and a constant other: the
    ends of each neuron's range map to the ends, in either order; one rounding each.

    Attributes:
        divides: the operation divides its first argument by the second.
    """

    divides: bool = False

    def check(self, node: Any, varying: Any) -> None:
        """Refuse a product of two varying values, or a varying divisor (as the
        zonotope engine's :class:`~.zonotope.Product` does)."""
        try:
            Product(self.divides).check(node, varying)
        except BoundUnsupportedError as exc:
            raise IntervalUnsupportedError(str(exc)) from None

    def apply(self, step):
        first, second = step.run_each(lambda v: v.lower), step.run_each(lambda v: v.upper)
        lower, upper = torch.minimum(first, second), torch.maximum(first, second)
        return Interval(*_outward(lower, upper, 4 * UNIT))

    def error(self, step, out, unit):
        # |c| e (|e / c|), plus the factor's own gap δ (a number float32 rounds):
        # δ |x| for a product, |x| δ / (|c| (|c| - δ)) for a quotient; then the product's
        # rounding, two for a quotient (CUDA divides by a reciprocal)
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
        passed = passed + moved
        return passed + 2 * unit * (out.magnitude() + passed)


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
        reach += _slack(self.terms + 8, size + self.offset)
        return Interval(center - reach, center + reach)

    def error(self, step, out, unit):
        return self.error_of(step.intervals[0], unit)

    def error_of(self, value: Interval, unit: float) -> torch.Tensor:
        """The float32 error of ``A x + b`` for ``x`` in ``value`` (with its error):
        ``|A| e + γ (|A| (|x| + e) + offset)``, in one pass as ``|A| (e + γ (|x| + e)) +
        γ offset``."""
        g = gamma(self.terms, unit)
        return self.run_abs(value.error + g * value.reach()) + g * self.offset


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

    def error(self, step, out, unit):
        value = step.intervals[0]
        rule = self.rule
        passed = rule.lipschitz * value.error
        if self.exact:  # monotone, no rounding; where f is constant over the values
            reachable = widen(value.lower, value.upper, value.error)  # reachable, only
            flat = rule.f(reachable.lower) == rule.f(reachable.upper)  # the gap of its
            gap = 0.0 if step.exact_constants else _level_gap(rule)  # levels (a clamp at
            # 0.7: float32 holds another value)
            return torch.where(flat, torch.full_like(passed, gap), passed + gap)
        # f's own float32 evaluation: a few library calls (as the bounds count them)
        own = REST_ROUNDINGS * unit * (rule.at_zero + rule.lipschitz * value.reach()
                                       + out.magnitude() + passed)
        return passed + 2 * own + rule.jump


EXACT, SHAPE = Exact(), Shape()


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
    if isinstance(rule, Lipschitz | PiecewiseLinear | SShaped):
        return Activation(rule, exact)
    return rule
