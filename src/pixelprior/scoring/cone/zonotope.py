"""The verifier's abstract domain: zonotopes over a pixel's colors, and the bound rules
operations register.

A zonotope of a value is ``center + Σ_i generator_i · ε_i`` with every ``ε_i`` in
[-1, 1]: the first ``C`` symbols are the pixel's color channels (the box
``[lo, hi]`` as ``(lo + hi) / 2 + (hi - lo) / 2 · ε``), each further symbol the error of
one relaxed nonlinearity (DeepZ; Singh et al., NeurIPS 2018). Values are stored as
``values [N, R, *shape]``: row 0 the center, rows ``1..R-1`` the generators of the ``N``
boxes (one box per row of the batch). Affine operations map zonotopes exactly; a
nonlinearity ``f`` is replaced on each neuron's range ``[l, u]`` by ``λ x + μ ± β``
(a new symbol of radius ``β`` per neuron where ``β > 0``), sound because
``f(x) - λ x`` lies in ``[μ - β, μ + β]`` for every ``x`` in ``[l, u]``.

The rules here are what :func:`~pixelprior.scoring.cone.table.register_bound` attaches
to operations; :mod:`.bounds` runs them. Everything is computed in float64.

Hand-written: the verifiers that offer zonotopes (ERAN, auto_LiRPA) bound whole networks
over every input pixel; none runs on the windows of one pixel's cone, where the speed of
this engine comes from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import torch

__all__ = ["EXACT_COPY", "IDENTITY", "MAX_OVER", "MAX_POOL", "RESHAPE", "Affine",
           "BoundRule", "BoundUnsupportedError", "Curved", "Exponential", "Identity",
           "InverseSquareRoot", "Lipschitz", "Logarithm", "MaxOver", "MaxPool", "ONE_ROUNDING",
           "PiecewiseLinear", "Power", "Product", "Rearrange", "Reciprocal", "Relaxation",
           "Reshape", "Rounding", "SShaped", "Square", "SquareRoot", "add_symbols", "gamma",
           "interval", "magnitude", "multiply", "multiply_matrices", "pad_rows", "per_box",
           "relaxation_error"]


class BoundUnsupportedError(ValueError):
    """The bound engine has no rule for an operation of the model (named in the message)."""


# ------------------------------------------------------------------ zonotope algebra
def interval(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper bounds of zonotopes.

    Args:
        values: float64 ``[N, R, *shape]`` (row 0 the center).

    Returns:
        ``(lower, upper)``, each ``[N, *shape]``.
    """
    center = values[:, 0]
    radius = values[:, 1:].abs().sum(1)
    return center - radius, center + radius


def magnitude(values: torch.Tensor) -> torch.Tensor:
    """``|center| + Σ |generators|`` per neuron (``[N, *shape]``): the largest ``|x|``
    over each zonotope, and what a row's rounding errors are summed against."""
    return values[:, 0].abs() + values[:, 1:].abs().sum(1)


def per_box(values: torch.Tensor) -> torch.Tensor:
    """The largest entry of each box (``[N, ...]`` → ``[N]``; 0 for an empty value);
    NaN counts as infinite (a bound it poisons is no bound)."""
    flat = values.flatten(1)
    if flat.shape[1] == 0:
        return flat.new_zeros(flat.shape[0])
    return torch.nan_to_num(flat, nan=math.inf, posinf=math.inf).amax(1)


class TF32Unit(float):
    """The unit that stands for TF32 evaluation in :func:`gamma`: a float of TF32's
    ``2^-11`` (what rows record), told apart by its type, not its value (float16's unit
    roundoff is ``2^-11`` too, and means plain roundings)."""


TF32 = TF32Unit(2.0**-11)
TF32_INPUT = 2.0**-10  # a TF32 input's relative error: 10 mantissa bits, truncated or not
TF32_SUM = 2.0**-23  # float32 sums on tensor cores may truncate (Fasi et al. 2021)
FLOAT32 = 2.0**-24


def gamma(n: float, unit: float) -> float:
    """``γ_n = n u / (1 - n u)``: the relative error of ``n`` roundings of unit ``u``
    (infinite where ``n u >= 1``).

    ``unit = TF32`` (:class:`TF32Unit`) stands for float32 work whose products run in
    TF32 (CUDA's default for convolutions): each product's two inputs are cut to TF32's
    10 mantissa bits (relative error below ``2^-10`` each, rounded or truncated), and the
    products are summed in float32, perhaps truncating (``2^-23``). So
    ``(1 + 2^-10)² (1 + γ_n(2^-23)) − 1``: finite for any fan-in a network has (a plain
    ``γ_n(2^-11)`` is infinite past 2,047 terms), and an upper bound too for the
    operations that run in plain float32.
    """
    if isinstance(unit, TF32Unit):
        return (1 + TF32_INPUT) ** 2 * (1 + gamma(n, TF32_SUM)) - 1
    product = n * unit
    return math.inf if product >= 1 else product / (1 - product)


def pad_rows(values: torch.Tensor, rows: int) -> torch.Tensor:
    """Zonotopes with zero generators appended up to ``rows`` rows (symbols they do not
    depend on)."""
    missing = rows - values.shape[1]
    if missing <= 0:
        return values
    return torch.cat([values, values.new_zeros(values.shape[0], missing, *values.shape[2:])],
                     1)


def add_symbols(values: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Zonotopes with one new symbol per neuron whose ``radius`` is positive.

    Args:
        values: float64 ``[N, R, *shape]``.
        radius: ``[N, *shape]``, each neuron's new error radius (0: none).

    Returns:
        ``[N, R + G, *shape]`` with ``G`` the most new symbols of one box; the new symbol
        ``k`` of box ``n`` is its ``k``-th neuron with a positive radius.
    """
    count, rows = values.shape[:2]
    flat = radius.reshape(count, -1)
    mask = flat > 0
    new = int(mask.sum(1).max()) if mask.any() else 0
    if new == 0:
        return values
    generators = flat.new_zeros(count, new, flat.shape[1])
    index = (mask.cumsum(1) - 1).clamp(min=0)
    boxes, neurons = mask.nonzero(as_tuple=True)
    generators[boxes, index[boxes, neurons], neurons] = flat[boxes, neurons]
    return torch.cat([values, generators.view(count, new, *values.shape[2:])], 1)


# ------------------------------------------------------------------ rules
class BoundRule:
    """How the bound engine runs an operation (subclasses say which way)."""


@dataclass(frozen=True)
class Rounding:
    """How much an affine operation ``y = A x + b`` can move a value's float error.

    Computed in floating point with unit roundoff ``u``, each output of a row is off by at
    most ``γ_terms (|A| |x| + |b|)`` (any summation order, fused multiply-adds or not;
    Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1), and an error ``e``
    already in ``x`` reaches ``y`` as at most ``‖|A|‖_∞ · e``.

    Attributes:
        gain: ``‖|A|‖_∞`` per varying argument, the largest absolute row sum (an upper
            bound: 1 for additions, copies and averages).
        terms: roundings each output may collect (the terms of its sum, plus the bias and
            a few more); ``None``: the input elements per output, known when it runs (a
            global average).
        offset: constants each output's sum rounds beside ``A x`` and ``A 0`` (BatchNorm's
            ``|mean| · |scale| + |bias|``: it subtracts the mean, then adds the bias).
    """

    gain: float
    terms: int | None
    offset: float = 0.0


EXACT_COPY = Rounding(1.0, 0)  # a concatenation, a negation: no rounding
ONE_ROUNDING = Rounding(1.0, 1)  # a sum of two values, or of a value and a constant


@dataclass(frozen=True)
class Affine(BoundRule):
    """An affine map of the varying arguments: applied to the center and the generators,
    the map's value at zero subtracted from the generators (exact in real arithmetic;
    ``rounding`` bounds what floating point adds).

    Attributes:
        rounding: the operation's :class:`Rounding` (required: a rule that forgot it
            would bound the float error of a convolution as that of an addition).
    """

    rounding: Rounding


@dataclass(frozen=True)
class Identity(BoundRule):
    """The value of the first argument, unchanged (``clone``, dropout in eval mode; a
    ``.float()`` cast is the identity too: bounds stay in float64)."""


@dataclass(frozen=True)
class Reshape(BoundRule):
    """A reshape that keeps the batch axis: the zonotope takes the node's output shape."""


@dataclass(frozen=True)
class MaxPool(BoundRule):
    """Max pooling: per output the candidates that can be the largest, combined with
    ``max(a, b) = a + relu(b - a)`` (exact where one candidate dominates)."""


@dataclass(frozen=True)
class MaxOver(BoundRule):
    """A maximum over groups of elements the input's shape gives (``amax`` over axes,
    adaptive max pooling; the params' ``groups``): each group's candidates combined as
    :class:`MaxPool` combines a window's."""


@dataclass(frozen=True)
class Product(BoundRule):
    """A product or quotient: affine when one factor (or only the dividend) varies; a
    product of two varying factors (a gate ``x * sigmoid(...)``, ``h * h``) is bounded by
    :func:`multiply`.

    Attributes:
        divides: the operation divides its first argument by the second.
    """

    divides: bool = False

    def rounding(self, factor: torch.Tensor | float) -> Rounding:
        """The :class:`Rounding` of multiplying (dividing) by the constant ``factor``."""
        magnitude = torch.as_tensor(factor, dtype=torch.float64).abs()
        if self.divides:
            smallest = float(magnitude.min()) if magnitude.numel() else 1.0
            gain = math.inf if smallest == 0 else 1 / smallest
        else:
            gain = float(magnitude.max()) if magnitude.numel() else 0.0
        return Rounding(gain * (1 + 2**-50), 1)

    @staticmethod
    def factors(node) -> list:
        """The node's two factors (dividend and divisor), positional or keywords
        (``input``, ``other``), as given."""
        given = list(node.args[:2])
        for keyword in ("input", "other")[len(given):]:
            given.append(node.kwargs.get(keyword))
        return given

    def varying_factors(self, node, varying) -> list:
        """The factors that vary with the pixel, one entry per occurrence (``h * h``:
        two)."""
        return [a for a in self.factors(node) if isinstance(a, Hashable) and a in varying]

    def check(self, node, varying) -> None:
        """Refuse a varying divisor (a quotient is affine only in its dividend).

        Args:
            node: the ``torch.fx`` node.
            varying: the node's arguments that vary with the pixel.

        Raises:
            BoundUnsupportedError: the operation divides by a varying value.
        """
        divisor = self.factors(node)[1]
        if self.divides and isinstance(divisor, Hashable) and divisor in varying:
            raise BoundUnsupportedError(f"{node.name}: a division by a value that changes "
                                        "with the pixel")


def multiply(x: torch.Tensor, y: torch.Tensor, errors: tuple[torch.Tensor, torch.Tensor],
             sizes: tuple[torch.Tensor, torch.Tensor], unit: float
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The product of two zonotopes over the same symbols (DeepZ's multiplication, as
    DeepT bounds attention's products).

    With ``x = x0 + Σ a_i ε_i`` and ``y = y0 + Σ b_i ε_i``,
    ``x y = x0 y0 + Σ (x0 b_i + y0 a_i) ε_i + q`` where ``q = Σ_i a_i b_i ε_i² +
    Σ_{i≠j} a_i b_j ε_i ε_j`` lies in ``[D⁻ - c, D⁺ + c]``: ``D^±`` the sums of the
    positive (negative) ``a_i b_i`` (``ε_i²`` is in [0, 1]) and ``c = A B - Σ |a_i b_i|``
    (``A = Σ |a_i|``, ``B = Σ |b_i|``) the cross terms' largest size. ``q`` becomes the
    center's shift and one new symbol per neuron. Exact where a factor is constant over
    the box (its generators 0).

    Float error: the exact values lie within ``e_x`` (``e_y``) of the computed factors,
    whose sizes are at most ``s_x`` (``s_y``), so the exact product lies within ``s_x e_y
    + s_y e_x + e_x e_y`` of ``x y``; computing the center, the generators and ``q``'s
    ends rounds sums of at most ``2R`` products, each below ``γ_{2R+8}`` of a term of
    ``(|x0| + A)(|y0| + B) <= s_x s_y`` (``8`` of them, generously). The result's size is
    at most ``(|x0| + A)(|y0| + B)`` (``|mid| + radius <= A B``) plus that rounding.

    Args:
        x, y: float64 ``[N, R, ...]`` with the same rows, broadcasting against each other.
        errors: ``(e_x, e_y)``, ``[N, ...]`` each.
        sizes: ``(s_x, s_y)``, ``[N, ...]`` each.
        unit: the arithmetic's unit roundoff.

    Returns:
        ``(values, radius, error, size)``: the product's zonotopes ``[N, R, ...]`` before
        the new symbols, each neuron's new symbol radius and its error and size bounds.
    """
    x0, a = x[:, 0], x[:, 1:]
    y0, b = y[:, 0], y[:, 1:]
    generators = x0[:, None] * b + y0[:, None] * a
    both = a * b
    cross = (a.abs().sum(1) * b.abs().sum(1) - both.abs().sum(1)).clamp(min=0)
    low = both.clamp(max=0).sum(1) - cross
    high = both.clamp(min=0).sum(1) + cross
    center = x0 * y0 + (low + high) / 2
    values = torch.cat([center[:, None], generators], 1)
    radius = (high - low) / 2
    (ex, ey), (sx, sy) = errors, sizes
    g = gamma(2 * x.shape[1] + 8, unit)
    rounding = 8 * g * sx * sy
    error = (sx * ey + sy * ex + ex * ey + rounding) * (1 + 1e-6)
    size = (sx * sy + rounding) * (1 + 1e-6)
    return (values, radius, torch.nan_to_num(error, nan=math.inf, posinf=math.inf),
            torch.nan_to_num(size, nan=math.inf, posinf=math.inf))


def multiply_matrices(x: torch.Tensor, y: torch.Tensor,
                      errors: tuple[torch.Tensor, torch.Tensor],
                      sizes: tuple[torch.Tensor, torch.Tensor], unit: float
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The product of matrices ``x @ y`` of two zonotopes over the same symbols: DeepZ's
    product (:func:`multiply`) of each pair ``x[t, k] y[k, m]``, summed over ``k`` before
    the new symbols are taken — one per output ``[t, m]``, not one per product, ``K``
    times fewer — each sum computed as a product of matrices over the symbols.

    With ``q_tm = Σ_k Σ_ij a_i[t,k] b_j[k,m] ε_i ε_j``: its terms ``i = j`` sum to
    ``S = Σ_i (a_i @ b_i)``, of which at most ``S_abs = Σ_i (|a_i| @ |b_i|)`` in size, so
    they lie in ``[(S - S_abs) / 2, (S + S_abs) / 2]`` (``ε_i²`` is in [0, 1]); the cross
    terms are at most ``c = A @ B - S_abs`` in size (``A = Σ_i |a_i|``, ``B`` alike).

    Float error: per output the ``K`` products' bounds of :func:`multiply` summed:
    ``s_x @ e_y + e_x @ s_y + e_x @ e_y``; and the rounding: each of the eight quantities
    computed (the center, a row's generator, ``S``, ``S_abs``, ``c``, the ends) sums at
    most ``2 (K + R) + 8`` terms in any order (a product of matrices over ``K``, then a
    sum over ``R`` rows, a few more), their sizes together below ``s_x @ s_y``: at most
    ``8 γ_{2(K + R) + 8} (s_x @ s_y)``.

    Args:
        x: float64 ``[N, R, ..., T, K]``; ``y``: ``[N, R, ..., K, M]`` (the same rows;
            their other axes broadcast as ``torch.matmul`` broadcasts them).
        errors: ``(e_x, e_y)``, ``[N, ..., T, K]`` and ``[N, ..., K, M]``.
        sizes: ``(s_x, s_y)``, alike.
        unit: the arithmetic's unit roundoff.

    Returns:
        ``(values, radius, error, size)`` as :func:`multiply` returns them, ``[N, R, ...,
        T, M]`` and ``[N, ..., T, M]``.
    """
    x0, a = x[:, 0], x[:, 1:]
    y0, b = y[:, 0], y[:, 1:]
    generators = x0[:, None] @ b + a @ y0[:, None]
    diagonal = (a @ b).sum(1)
    diagonal_size = (a.abs() @ b.abs()).sum(1)
    cross = (a.abs().sum(1) @ b.abs().sum(1) - diagonal_size).clamp(min=0)
    low = (diagonal - diagonal_size) / 2 - cross
    high = (diagonal + diagonal_size) / 2 + cross
    values = torch.cat([(x0 @ y0 + (low + high) / 2)[:, None], generators], 1)
    radius = (high - low) / 2
    (ex, ey), (sx, sy) = errors, sizes
    g = gamma(2 * (x.shape[-1] + x.shape[1]) + 8, unit)
    both = sx @ sy
    rounding = 8 * g * both
    error = (sx @ ey + ex @ sy + ex @ ey + rounding) * (1 + 1e-6)
    size = (both + rounding) * (1 + 1e-6)
    return (values, radius, torch.nan_to_num(error, nan=math.inf, posinf=math.inf),
            torch.nan_to_num(size, nan=math.inf, posinf=math.inf))


@dataclass(frozen=True)
class Rearrange(BoundRule):
    """A copy of elements that keeps each image on its row of the batch axis (an
    ``unsqueeze``, a ``squeeze``, an index such as ``g[:, :, None, None]``, an ``expand``):
    the zonotope's rows run through the operation as rows of its batch, exact; its error
    and size bounds alike.

    Attributes:
        broadcast: the output is the input broadcast to the node's shape (``expand``,
            ``expand_as``, whose sizes name the batch's).
    """

    broadcast: bool = False


IDENTITY, RESHAPE, MAX_POOL, MAX_OVER = Identity(), Reshape(), MaxPool(), MaxOver()


class Relaxation(BoundRule):
    """A pointwise nonlinearity ``f`` replaced on ``[l, u]`` by ``λ x + μ ± β``.

    Attributes (class defaults, set per rule):
        lipschitz: an upper bound of ``|f'|`` (off its jumps): how far ``f`` moves an error
            already in ``x``, and how far the relaxation may be off just outside ``[l, u]``.
        jump: the largest jump of ``f`` (0: continuous).
    """

    lipschitz: float = 1.0
    jump: float = 0.0

    @property
    def at_zero(self) -> float:
        """``|f(0)|`` (largest over channels), computed once."""
        cached = getattr(self, "_at_zero", None)
        if cached is None:
            f = getattr(self, "f", None)
            cached = 0.0 if f is None else float(
                f(torch.zeros(1, dtype=torch.float64)).abs().max())
            self._at_zero = cached
        return cached

    def coefficients(self, lower: torch.Tensor, upper: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(λ, μ, β)`` per neuron, with ``f(x) - λ x`` in ``[μ - β, μ + β]`` on
        ``[lower, upper]``."""
        raise NotImplementedError

    def jump_within(self, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor | float:
        """The largest jump of ``f`` on ``[lower, upper]`` per neuron: :attr:`jump`
        wherever it may lie, unless a rule knows where its jumps are."""
        return self.jump

    def steepest(self, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor | float:
        """An upper bound of ``|f'|`` on ``[lower, upper]`` per neuron (``inf`` where
        ``f`` is undefined or unbounded there): :attr:`lipschitz` unless a rule knows
        better (:class:`Curved`: ``1 / x`` is steep only near 0)."""
        return self.lipschitz

    def largest(self, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        """An upper bound of ``|f|`` on ``[lower, upper]`` per neuron:
        ``|f(0)| + L max(|l|, |u|)`` unless a rule knows better."""
        return self.at_zero + self.lipschitz * torch.maximum(lower.abs(), upper.abs())

    def slopes(self, lower: torch.Tensor, upper: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The least and the largest slope ``(f(a) - f(b)) / (a - b)`` of ``f`` between
        two points of ``[lower, upper]`` per neuron, off its jumps (what an error
        ``a - b`` is moved by): ``±`` :meth:`steepest` unless a rule knows better (a
        ReLU on one side of 0: exactly 1 or 0). Rounded outward, computed in float64
        whatever the ranges' dtype (the pads are float64's)."""
        lower, upper = lower.double(), upper.double()
        steep = torch.as_tensor(self.steepest(lower, upper), dtype=lower.dtype,
                                device=lower.device).expand_as(lower)
        return -steep, steep

    def apply(self, values: torch.Tensor) -> torch.Tensor:
        """The relaxed image of zonotopes ``[N, R, *shape]`` (new symbols appended)."""
        return self.apply_rounded(values, 0.0, 0.0)[0]

    def constant_over(self, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        """Per neuron, whether ``f`` is constant on ``[lower, upper]`` and its relaxation
        there is that constant exactly (``λ = 0``, ``μ = f(l)``, ``β = 0``, no rounding):
        none by default."""
        return torch.zeros_like(lower, dtype=torch.bool)

    def apply_rounded(self, values: torch.Tensor, error: torch.Tensor | float, unit: float,
                      parts: dict | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`apply`, with a bound of the float error carried through, per neuron.

        Args:
            values: zonotopes ``[N, R, *shape]`` as computed.
            error: ``[N, *shape]`` (or a number): how far each neuron's exact values may
                lie from the computed zonotope.
            unit: the unit roundoff of the arithmetic.
            parts: filled, where given, with the error's two parts for the signed bound
                (:mod:`.signed`): ``"own"`` (:func:`relaxation_own_error`) and
                ``"slopes"`` (:meth:`slopes` over the reach of the exact values), both 0
                where ``f`` is constant over it.

        Returns:
            The relaxed zonotopes, their error bound ``[N, *shape]``
            (:func:`relaxation_error`; 0 where ``f`` is constant over every value the
            exact network can take: a ReLU off stops the error) and a bound
            ``[N, *shape]`` of their ``|center| + Σ |generators|`` (from the ranges
            already at hand: no pass over the rows).
        """
        lower, upper = interval(values)
        slope, offset, radius = self.coefficients(lower, upper)
        out = values * slope[:, None]
        out[:, 0] += offset
        rows = values.shape[1]
        moved = relaxation_error(self, lower, upper, slope, offset, radius, error, rows, unit)
        if unit:
            # the exact values lie within the computed range's own rounding (r) plus the
            # incoming error of it; where f is constant there, the relaxation computed
            # is that constant exactly (its rows 0 · x, its center f(l)): no error at all
            reach = (gamma(rows + 1, unit) * torch.maximum(lower.abs(), upper.abs())
                     + error) * (1 + 1e-6)
            inf = torch.tensor(math.inf, dtype=lower.dtype, device=lower.device)
            reach_low = torch.nextafter(lower - reach, -inf)
            reach_high = torch.nextafter(upper + reach, inf)
            flat = self.constant_over(reach_low, reach_high)
            moved = torch.where(flat, torch.zeros_like(moved), moved)
            if parts is not None:
                zero = torch.zeros_like(moved)
                own = relaxation_own_error(self, lower, upper, slope, offset, radius, error,
                                           rows, unit)
                least, most = self.slopes(reach_low, reach_high)
                parts["own"] = torch.where(flat, zero, own)
                parts["slopes"] = (torch.where(flat, zero, least),
                                   torch.where(flat, zero, most))
                parts["range"] = (lower, upper, gamma(rows + 1, unit) * torch.maximum(
                    lower.abs(), upper.abs()))
        size = slope.abs() * torch.maximum(lower.abs(), upper.abs()) + offset.abs() + radius
        return add_symbols(out, radius), moved, size * (1 + 8 * unit)


# roundings of one rest f(x) - λ x and of μ, β from the rests: a library call of a few
# units in the last place (exp, erf, tanh, log1p), a product, a difference, a half-sum,
# counted generously
REST_ROUNDINGS = 32
# a few of float64's least subnormal (2^-1074): what a value or a slope that underflows
# may lie above the 0 computed, each rounding in the subnormal range off by half of one
SUBNORMAL = 2.0**-1070
# eight units of 1 in float64: how far a derivative computed as 1 minus a value near 1
# (σ(1 - σ), 1 - tanh²) may be from its own, absolutely
DERIVATIVE_CANCELS = 2.0**-50


def relaxation_error(rule: Relaxation, lower: torch.Tensor, upper: torch.Tensor,
                     slope: torch.Tensor, offset: torch.Tensor, radius: torch.Tensor,
                     incoming: torch.Tensor | float, rows: int, unit: float,
                     own: bool = False) -> torch.Tensor:
    """Per neuron, how far ``f`` of the exact values may lie outside the relaxed zonotope
    computed in floating point (``own``: without the incoming error's ``L · incoming``,
    :func:`relaxation_own_error`).

    ``[lower, upper]`` was computed from the zonotope (``rows`` rows) and may miss its
    exact range by ``r = γ_{R+1} m`` (``m = max(|l|, |u|)``); the exact values lie within
    ``incoming`` of the computed ones, so within ``[l - s, u + s]``, ``s = r + incoming``.
    With ``L`` a bound of ``|f'|`` there (:meth:`~Relaxation.steepest`) and
    ``g = f - λ x`` (``|g'| <= L + |λ|``):

    * ``f`` moves an incoming error by at most ``L · incoming`` (plus a jump);
    * just outside ``[l, u]`` (by ``r``) ``g`` leaves ``[μ - β, μ + β]`` by at most
      ``(L + |λ|) r``;
    * ``λ, μ, β`` come from rests ``f(x) - λ x`` rounded :data:`REST_ROUNDINGS` times
      relative to ``max |f| + |λ| m + |μ| + β`` (:meth:`~Relaxation.largest`);
    * scaling the rows by ``λ`` and adding ``μ`` round ``u (|λ| m + |μ|)`` more.

    Where ``f`` is undefined or unbounded on ``[l - s, u + s]`` (``1 / x`` of a range
    that holds 0) the error is ``inf``, whatever the unit: the relaxation computed there
    is a placeholder, and the box's bound is none.

    Returns:
        float64, shaped like ``lower``.
    """
    size = torch.maximum(lower.abs(), upper.abs())
    edge = gamma(rows + 1, unit) * size
    spread = (edge + incoming) * (1 + 1e-6)
    reach_low, reach_high = lower - spread, upper + spread
    lipschitz = rule.steepest(reach_low, reach_high)
    if unit == 0:
        unbounded = ~torch.isfinite(torch.as_tensor(lipschitz, dtype=lower.dtype)
                                    ).expand_as(lower)
        return torch.where(unbounded, math.inf, torch.zeros_like(lower))
    steep = lipschitz + slope.abs()
    largest = rule.largest(reach_low, reach_high)
    # (each rounding off by a unit of its value, or by half float64's least subnormal
    # where it underflows: the absolute term, as for x ** 1.5 at 1e-220 computed as 0)
    rests = REST_ROUNDINGS * (unit * (largest + slope.abs() * size + offset.abs() + radius)
                              + SUBNORMAL)
    applied = 2 * unit * (slope.abs() * size + offset.abs())
    jumped = 0.0
    if rule.jump:  # a jump the exact values may cross: within the range's reach
        jumped = rule.jump_within(reach_low, reach_high)
    if own:
        error = steep * edge + rests + applied + jumped
    else:
        error = lipschitz * incoming + steep * edge + rests + applied + jumped
    return torch.nan_to_num(error, nan=math.inf, posinf=math.inf)  # 0 · inf: unbounded


def relaxation_own_error(rule: Relaxation, lower: torch.Tensor, upper: torch.Tensor,
                         slope: torch.Tensor, offset: torch.Tensor, radius: torch.Tensor,
                         incoming: torch.Tensor | float, rows: int, unit: float
                         ) -> torch.Tensor:
    """:func:`relaxation_error` less the incoming error's part ``L · incoming``: what the
    relaxation adds of its own (its roundings, a jump), with the range's reach still
    widened by ``incoming``. The signed bound (:mod:`.signed`) carries the incoming error
    by the slopes :meth:`Relaxation.slopes` gives instead of by ``L``."""
    return relaxation_error(rule, lower, upper, slope, offset, radius, incoming, rows, unit,
                            own=True)


def _chord(f: Callable[[torch.Tensor], torch.Tensor], lower: torch.Tensor,
           upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The chord slope of ``f`` on ``[lower, upper]`` (0 on empty intervals) and width."""
    width = upper - lower
    safe = torch.where(width > 0, width, torch.ones_like(width))
    slope = torch.where(width > 0, (f(upper) - f(lower)) / safe, torch.zeros_like(width))
    return slope, width


class PiecewiseLinear(Relaxation):
    """A continuous piecewise-linear ``f`` with kinks at ``breakpoints`` (ReLU, leaky
    ReLU, ReLU6, hardtanh, clamp, hardsigmoid).

    On a range without a kink ``f`` is linear: exact (``β = 0``). Otherwise the chord
    slope, and ``f(x) - λ x`` is bounded exactly by its values at ``l``, ``u`` and the
    kinks between them (its extremes). For ReLU this is DeepZ's relaxation.

    Args:
        f: the function on tensors.
        breakpoints: its kinks, as numbers or per-channel tensors broadcasting against the
            values (``[C, 1, 1]``).
        lipschitz: the steepest slope of its pieces (in absolute value).
    """

    def __init__(self, f: Callable[[torch.Tensor], torch.Tensor],
                 breakpoints: Sequence[float | torch.Tensor], lipschitz: float = 1.0) -> None:
        self.f, self.breakpoints, self.lipschitz = f, tuple(breakpoints), lipschitz

    def constant_over(self, lower, upper):
        # one piece (no kink strictly inside), flat by construction: f is equal at the
        # piece's own ends, or one unit past [l, u] where the piece is unbounded. Ends a
        # unit apart or more keep a sloped piece's values apart (f(l) == f(u) would not:
        # hardsigmoid's x / 6 + 1/2 rounds to 1/2 on a tiny range). The chord slope is
        # then 0 / width = 0 and the offset f(l) - 0 · l = f(l), both exact
        left, right, inside = self.piece(lower, upper)
        return ~inside & (self.f(left) == self.f(right))

    def piece(self, lower: torch.Tensor, upper: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per element, the ends of the piece ``[lower, upper]`` lies on (a unit past it
        where the piece is unbounded) and whether a kink lies strictly inside instead."""
        inside = torch.zeros_like(lower, dtype=torch.bool)
        left, right = lower - 1, upper + 1
        for point in self.breakpoints:
            point = torch.as_tensor(point, dtype=lower.dtype, device=lower.device)
            inside |= (lower < point) & (point < upper)
            point = point.expand_as(lower)
            left = torch.where(point <= lower, torch.maximum(left, point), left)
            right = torch.where(point >= upper, torch.minimum(right, point), right)
        return left, right, inside

    def slopes(self, lower, upper):
        # each piece's slope from two of its points (a unit past the outer kinks), taken
        # where the piece meets [lower, upper]; rounded outward by the roundings of f at
        # those points and of the quotient (in float64: the pads are float64's)
        lower, upper = lower.double(), upper.double()
        kinks = [torch.as_tensor(p, dtype=lower.dtype, device=lower.device).expand_as(lower)
                 for p in self.breakpoints]
        if not kinks:
            return super().slopes(lower, upper)
        kinks = list(torch.stack(kinks).sort(0).values)
        inf = torch.full_like(lower, math.inf)
        pieces = [(-inf, kinks[0], kinks[0] - 1, kinks[0])]  # (start, stop, a, b)
        pieces += [(a, b, a, b) for a, b in zip(kinks, kinks[1:], strict=False)]
        pieces += [(kinks[-1], inf, kinks[-1], kinks[-1] + 1)]
        least, most = inf, -inf
        for start, stop, a, b in pieces:
            meets = (lower <= stop) & (upper >= start) & (b > a)
            fa, fb = self.f(a), self.f(b)
            width = torch.where(b > a, b - a, torch.ones_like(a))
            slope = (fb - fa) / width
            pad = 2.0**-48 * ((fa.abs() + fb.abs()) / width + slope.abs()) + SUBNORMAL
            least = torch.where(meets, torch.minimum(least, slope - pad), least)
            most = torch.where(meets, torch.maximum(most, slope + pad), most)
        # (a range inside one kink's point alone meets no piece of positive width)
        return torch.where(least > most, -inf, least), torch.where(least > most, inf, most)

    def coefficients(self, lower, upper):
        slope, width = _chord(self.f, lower, upper)
        rest_low = self.f(lower) - slope * lower
        rest_high = self.f(upper) - slope * upper
        low, high = torch.minimum(rest_low, rest_high), torch.maximum(rest_low, rest_high)
        kinked = torch.zeros_like(width, dtype=torch.bool)
        for point in self.breakpoints:
            point = torch.as_tensor(point, dtype=lower.dtype, device=lower.device)
            inside = (lower < point) & (point < upper)
            at = torch.where(inside, point.expand_as(lower), lower)
            rest = self.f(at) - slope * at
            low = torch.where(inside, torch.minimum(low, rest), low)
            high = torch.where(inside, torch.maximum(high, rest), high)
            kinked |= inside
        offset = (low + high) / 2
        radius = torch.where(kinked, (high - low) / 2, torch.zeros_like(width))
        # without a kink f is linear on the range: f(x) = slope x + rest_low exactly (the
        # two ends' rests differ only by rounding, which the tolerance covers)
        offset = torch.where(kinked, offset, rest_low)
        return slope, offset, radius


class SShaped(Relaxation):
    """Sigmoid, tanh, softsign and erf: ``f'`` is largest at 0 and falls on both sides, so with
    ``λ = min(f'(l), f'(u))`` the rest ``f(x) - λ x`` is nondecreasing on ``[l, u]``:
    bounded by its values at the ends (DeepZ's rule).

    Args:
        f: the function; ``derivative``: its derivative.
        lipschitz: an upper bound of ``f'`` (its value at 0): 1 for tanh and softsign
            (sigmoid's 1/4 is within it), ``2 / √π`` for erf.
    """

    def __init__(self, f: Callable[[torch.Tensor], torch.Tensor],
                 derivative: Callable[[torch.Tensor], torch.Tensor],
                 lipschitz: float = 1.0) -> None:
        self.f, self.derivative, self.lipschitz = f, derivative, lipschitz

    def slopes(self, lower, upper):
        # f' > 0 is largest at 0 and falls on both sides, widened for its roundings: a
        # relative few units, and an absolute DERIVATIVE_CANCELS (σ(1 - σ) and 1 - tanh²
        # cancel: near 0 they are off by units of 1, not of themselves; past x ≈ 37 and
        # 19 they are 0 — a review); in float64, whatever the ranges' dtype
        lower, upper = lower.double(), upper.double()
        first, second = self.derivative(lower), self.derivative(upper)
        peak = self.derivative(torch.zeros_like(lower))
        most = torch.where((lower <= 0) & (upper >= 0), peak, torch.maximum(first, second))
        least = torch.minimum(first, second)
        return (least * (1 - 2.0**-40) - DERIVATIVE_CANCELS).clamp(min=0.0), (
            most * (1 + 2.0**-40) + DERIVATIVE_CANCELS)

    def coefficients(self, lower, upper):
        slope = torch.minimum(self.derivative(lower), self.derivative(upper))
        low = self.f(lower) - slope * lower
        high = self.f(upper) - slope * upper
        high = torch.maximum(high, low)
        return slope, (low + high) / 2, (high - low) / 2


class Lipschitz(Relaxation):
    """Any function with ``|f'| <= lipschitz`` (SiLU, GELU, Mish, softplus, ELU,
    hardswish): the chord slope, and the rest ``g = f - λ x`` bounded from a grid of
    ``points`` values plus ``(lipschitz + |λ|) · h / 2`` (``h`` the grid step), since
    every ``x`` lies within ``h / 2`` of a grid point.

    A function continuous but for jumps of at most ``jump`` (PyTorch's softplus switches to
    ``x`` past its threshold) gets ``jump`` more slack on both sides: between ``x`` and
    its grid point ``g`` may also jump by that much.

    Args:
        f: the function on tensors.
        lipschitz: an upper bound of ``|f'|`` on the real line (off its jumps).
        points: grid points per range.
        jump: the largest jump of ``f`` (0: continuous).
    """

    def __init__(self, f: Callable[[torch.Tensor], torch.Tensor], lipschitz: float,
                 points: int = 17, jump: float = 0.0) -> None:
        self.f, self.lipschitz, self.points, self.jump = f, lipschitz, points, jump

    def coefficients(self, lower, upper):
        slope, width = _chord(self.f, lower, upper)
        steps = torch.linspace(0, 1, self.points, dtype=lower.dtype, device=lower.device)
        grid = lower[..., None] + width[..., None] * steps
        rest = self.f(grid) - slope[..., None] * grid
        slack = (self.lipschitz + slope.abs()) * width / (2 * (self.points - 1)) + self.jump
        low = rest.min(-1).values - slack
        high = rest.max(-1).values + slack
        return slope, (low + high) / 2, (high - low) / 2


# the largest |x| a curved relaxation is computed for (its squares stay finite)
LARGEST = 2.0**500


class Curved(Relaxation):
    """A function whose derivative is monotone on each piece of its domain (convex or
    concave there): ``x²``, ``√x``, ``1 / √x``, ``1 / x`` on either side of 0, ``eˣ``,
    ``log x``. What the normalisations a network computes from its own values are made of
    (LayerNorm's and GroupNorm's variance, its square root, a division by it), and a
    softmax (exponentials, a division by their sum).

    On ``[l, u]`` inside one piece, with the chord slope ``λ`` (or a rule's own
    :meth:`slope`), the rest ``g = f - λ x`` is convex (concave) for any ``λ``: its largest
    (least) value is at an end, and it is bounded on the other side by its tangent at
    any point ``x₀`` of ``[l, u]``: ``g(x) >= g(x₀) - |f'(x₀) - λ| · max(x₀ - l, u - x₀)``
    (the reverse for concave). ``x₀`` is where ``f' = λ`` (:meth:`touch`), clamped into the
    range: a rounded ``x₀`` costs a second-order sliver, never soundness. Where a range
    leaves the domain (a divisor's range holds 0, a square root's a negative value)
    the coefficients are placeholders and :meth:`steepest` is ``inf``: the error bound
    (:func:`relaxation_error`) is ``inf`` and the box is not proved.

    Subclasses give ``f``, :meth:`derivative`, :meth:`touch`, :meth:`inside` and
    :meth:`convex`.
    """

    lipschitz = math.inf  # no global bound: per range, :meth:`steepest`
    even = False  # f(-x) = f(x) >= f(0) = 0 (x², x⁴): a range that holds 0 has 0 for least

    def f(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def derivative(self, t: torch.Tensor) -> torch.Tensor:
        """``f'``."""
        raise NotImplementedError

    def touch(self, slope: torch.Tensor) -> torch.Tensor:
        """Where ``f' = slope`` (any value where there is no such point: it is clamped)."""
        raise NotImplementedError

    def inside(self, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        """Per neuron, whether ``[lower, upper]`` lies in one piece of the domain."""
        raise NotImplementedError

    def convex(self, lower: torch.Tensor) -> torch.Tensor | bool:
        """Per neuron, whether ``f`` is convex on the piece ``lower`` lies in."""
        raise NotImplementedError

    def slope(self, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        """``λ``: the chord's (``f'`` on a range of width 0)."""
        slope, width = _chord(self.f, lower, upper)
        return torch.where(width > 0, slope, self.derivative(lower))

    def _placed(self, lower: torch.Tensor, upper: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Whether each range is inside the domain, and the range there (``[1, 1]``, a
        point of every piece's domain, where it is not: a placeholder)."""
        # (beyond 2^500 the chord's products may overflow: no bound is claimed there)
        inside = self.inside(lower, upper) & (torch.maximum(lower.abs(), upper.abs()) < LARGEST)
        one = torch.ones_like(lower)
        return inside, torch.where(inside, lower, one), torch.where(inside, upper, one)

    def rests(self, low_end: torch.Tensor, high_end: torch.Tensor, slope: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """The least and the largest ``f(x) - slope · x`` on ``[low_end, high_end]``
        (inside one piece): at the ends on the side ``f`` bends away from, by the tangent
        at the touching point on the other (see the class docstring)."""
        ends = (self.f(low_end) - slope * low_end, self.f(high_end) - slope * high_end)
        low, high = torch.minimum(*ends), torch.maximum(*ends)
        at = self.touch(slope)
        at = torch.where(torch.isfinite(at), at, low_end)
        at = torch.minimum(torch.maximum(at, low_end), high_end)
        gap = ((self.derivative(at) - slope).abs()
               * torch.maximum(at - low_end, high_end - at))
        middle = self.f(at) - slope * at
        convex = torch.as_tensor(self.convex(low_end), device=low_end.device)
        low = torch.where(convex, torch.minimum(low, middle - gap), low)
        high = torch.where(convex, high, torch.maximum(high, middle + gap))
        return low, high

    def coefficients(self, lower, upper):
        inside, low_end, high_end = self._placed(lower, upper)
        slope = self.slope(low_end, high_end)
        low, high = self.rests(low_end, high_end, slope)
        # a range where f' is unbounded (√x at 0) leaves non-finite coefficients: a
        # placeholder too (its error is infinite: `steepest`)
        kept = inside & torch.isfinite(slope) & torch.isfinite(low) & torch.isfinite(high)
        zero = torch.zeros_like(lower)
        return (torch.where(kept, slope, zero), torch.where(kept, (low + high) / 2, zero),
                torch.where(kept, (high - low) / 2, zero))

    def slope_range(self, lower: torch.Tensor, upper: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The least and the largest ``f'`` on ``[lower, upper]`` (at its ends: ``f'`` is
        monotone on a piece), ``(-inf, inf)`` outside the domain."""
        inside, low_end, high_end = self._placed(lower, upper)
        first, second = self.derivative(low_end), self.derivative(high_end)
        inf = torch.full_like(lower, math.inf)
        return (torch.where(inside, torch.minimum(first, second), -inf),
                torch.where(inside, torch.maximum(first, second), inf))

    def slopes(self, lower, upper):
        lower, upper = lower.double(), upper.double()  # (the pads are float64's)
        least, most = self.slope_range(lower, upper)  # (a difference quotient lies
        # between f' at two points of the range: the mean value theorem), widened
        return (least - least.abs() * 2.0**-40 - SUBNORMAL,
                most + most.abs() * 2.0**-40 + SUBNORMAL)

    def steepest(self, lower, upper):
        least, most = self.slope_range(lower, upper)
        # (+ a few of float64's least subnormals: a slope that underflows to 0, x ** -3 at
        # 1e83, is below them, and the error it moves is not 0 — a review)
        return torch.maximum(least.abs(), most.abs()) * (1 + 2.0**-40) + SUBNORMAL

    def largest(self, lower, upper):
        inside, low_end, high_end = self._placed(lower, upper)
        most = torch.maximum(self.f(low_end).abs(), self.f(high_end).abs())
        return torch.where(inside, most * (1 + 2.0**-40) + SUBNORMAL, math.inf)

    def extremes(self, lower: torch.Tensor, upper: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """The least and the largest ``f`` on ``[lower, upper]`` as computed (``f`` is
        monotone on a piece; an :attr:`even` one's least is its 0 where the range holds
        0), ``(-inf, inf)`` outside the domain."""
        inside, low_end, high_end = self._placed(lower, upper)
        first, second = self.f(low_end), self.f(high_end)
        inf = torch.full_like(lower, math.inf)
        # a value that underflows lies within SUBNORMAL of the one computed, and at or
        # above 0 where f is nonnegative (a square's 0 stays 0: its root is defined)
        least = torch.minimum(first, second) - SUBNORMAL
        least = torch.where(torch.as_tensor(self.nonnegative(low_end), device=lower.device),
                            least.clamp(min=0.0), least)
        least = torch.where(inside, least, -inf)
        if self.even:  # (x², x⁴: decreasing, then increasing)
            least = torch.where((lower < 0) & (upper > 0), torch.zeros_like(least), least)
        return least, torch.where(inside, torch.maximum(first, second) + SUBNORMAL, inf)

    def nonnegative(self, lower: torch.Tensor) -> torch.Tensor | bool:
        """Per neuron, whether ``f`` is nonnegative on the piece ``lower`` lies in."""
        return False


class Square(Curved):
    """``x²`` (``x * x``, ``x ** 2``, ``torch.square``): convex and even. The slope is kept
    where the relaxation's lower line stays nonnegative on ``[l, u]`` — the chord's
    ``l + u`` up to ``4 l`` for ``l >= 0`` (``4 u`` for ``u <= 0``), 0 where the range holds 0
    — so a variance (a mean of squares) is bounded below by 0, and the ``ε`` added to it
    keeps a square root or a division by it defined (DeepZ's least-area choice, the
    chord, would bound ``x²`` below 0 on wide ranges)."""

    even = True

    def f(self, t):
        return t * t

    def derivative(self, t):
        return 2 * t

    def touch(self, slope):
        return slope / 2

    def inside(self, lower, upper):
        return torch.isfinite(lower) & torch.isfinite(upper)

    def convex(self, lower):
        return True

    def slope(self, lower, upper):
        chord = lower + upper
        return torch.where(lower >= 0, torch.minimum(chord, 4 * lower),
                           torch.where(upper <= 0, torch.maximum(chord, 4 * upper),
                                       torch.zeros_like(chord)))

    def nonnegative(self, lower):
        return True


class SquareRoot(Curved):
    """``√x`` on ``x >= 0``: concave and nondecreasing (its slope unbounded at 0: a range
    that reaches 0 is bounded, its error is not)."""

    def f(self, t):
        return torch.sqrt(t)

    def derivative(self, t):
        return 0.5 / torch.sqrt(t)

    def touch(self, slope):
        return 0.25 / (slope * slope)

    def inside(self, lower, upper):
        return (lower >= 0) & torch.isfinite(upper)

    def convex(self, lower):
        return False

    def nonnegative(self, lower):
        return True


class InverseSquareRoot(Curved):
    """``1 / √x`` (``torch.rsqrt``, ``x ** -0.5``) on ``x > 0``: convex and decreasing."""

    def f(self, t):
        return torch.rsqrt(t)

    def derivative(self, t):
        return -0.5 * torch.rsqrt(t) / t

    def touch(self, slope):
        return (-2 * slope) ** (-2.0 / 3.0)

    def inside(self, lower, upper):
        return (lower > 0) & torch.isfinite(upper)

    def convex(self, lower):
        return True

    def nonnegative(self, lower):
        return True


class Reciprocal(Curved):
    """``1 / x`` (``torch.reciprocal``, a division by a value that varies) on either side
    of 0: convex and decreasing on ``x > 0``, concave and decreasing on ``x < 0``."""

    def f(self, t):
        return 1 / t

    def derivative(self, t):
        return -1 / (t * t)

    def touch(self, slope):
        return torch.rsqrt(-slope)  # the positive piece's; mirrored by `coefficients`

    def inside(self, lower, upper):
        return ((lower > 0) & torch.isfinite(upper)) | ((upper < 0) & torch.isfinite(lower))

    def convex(self, lower):
        return lower > 0

    def coefficients(self, lower, upper):
        # on x < 0, 1/x = -(1/(-x)): the positive piece's relaxation, mirrored
        negative = upper < 0
        low, high = torch.where(negative, -upper, lower), torch.where(negative, -lower, upper)
        slope, offset, radius = super().coefficients(low, high)
        return slope, torch.where(negative, -offset, offset), radius

    def nonnegative(self, lower):
        return lower > 0


# the largest exponent an exponential's relaxation is computed for: e^256 < 2^370, so that
# its chord and rests (slopes up to e^256 times ranges within EXPONENT_FLOOR) stay finite
EXPONENT_CEILING = 256.0
EXPONENT_FLOOR = -(2.0**40)


class Exponential(Curved):
    """``eˣ`` (``torch.exp``; a softmax's terms): convex and increasing. The slope is the
    chord's up to ``e^(l + 1/2)``: the lower line, tangent where ``eˣ = λ``, is then at
    least ``λ / 2 > 0`` on ``[l, u]`` (``λ (l + 1 - log λ)`` at ``l``), so a sum of
    exponentials is bounded away from 0 and the reciprocal a softmax divides by stays
    defined (the chord's lower line dips below 0 on ranges wider than about 2.5).
    Ranges reaching past ``e^256`` (or below ``-2^40``) are outside the domain the
    relaxation is computed for: their error is ``inf`` and nothing is proved there."""

    def f(self, t):
        return torch.exp(t)

    def slope(self, lower, upper):
        return torch.minimum(super().slope(lower, upper), torch.exp(lower + 0.5))

    def derivative(self, t):
        return torch.exp(t)

    def touch(self, slope):
        return torch.log(slope)  # -inf or NaN where slope <= 0: clamped to the range

    def inside(self, lower, upper):
        return (lower >= EXPONENT_FLOOR) & (upper <= EXPONENT_CEILING)

    def convex(self, lower):
        return True

    def nonnegative(self, lower):
        return True


class Logarithm(Curved):
    """``log x`` (``torch.log``; a log-softmax's normaliser) on ``x > 0``: concave and
    increasing (its slope unbounded at 0: a range that reaches 0 is outside the domain)."""

    def f(self, t):
        return torch.log(t)

    def derivative(self, t):
        return 1 / t

    def touch(self, slope):
        return 1 / slope

    def inside(self, lower, upper):
        return (lower > 0) & torch.isfinite(upper)

    def convex(self, lower):
        return False


class Power(Curved):
    """``x ** c`` for a constant ``c`` (the exponents 2, 0.5, -0.5 and -1 have rules of
    their own): on ``x >= 0`` for ``c > 0`` (``x > 0`` for ``c < 0``), convex for ``c > 1``
    or ``c < 0`` and concave between; an even whole ``c`` on the whole line (convex, its
    least value 0 at 0: as :class:`Square`); an odd whole ``c > 1`` on the whole line too
    (convex above 0, concave below: on one side the positive piece's relaxation mirrored,
    ``(-x)^c = -x^c``; on a range that holds 0 the chord's slope ``λ`` and the rests
    ``f - λ x`` of each side, the positive piece's on ``[0, u]`` and, mirrored, on
    ``[0, -l]``: a hand-written GELU's ``x ** 3``).
    LocalResponseNorm's ``(k + α/n Σ x²)^-β`` and a model's own ``x ** 1.5``, ``x ** 3``.

    Args:
        exponent: ``c``, finite and not 0 or 1.
    """

    def __init__(self, exponent: float) -> None:
        if not math.isfinite(exponent) or exponent in (0.0, 1.0):
            raise ValueError(f"a power's exponent must be finite and not 0 or 1, got "
                             f"{exponent!r}")
        self.exponent = float(exponent)
        whole = self.exponent.is_integer() and self.exponent > 1
        self.even = whole and int(self.exponent) % 2 == 0
        self.odd = whole and not self.even

    def __repr__(self) -> str:
        return f"Power({self.exponent:g})"

    def f(self, t):
        return torch.pow(t, self.exponent)

    def derivative(self, t):
        return self.exponent * torch.pow(t, self.exponent - 1)

    def touch(self, slope):
        ratio = slope / self.exponent
        if self.even:  # f' = c t^(c-1) is odd and increasing: one root of each sign
            return torch.sign(ratio) * ratio.abs() ** (1 / (self.exponent - 1))
        return ratio ** (1 / (self.exponent - 1))  # NaN off the piece: clamped

    def inside(self, lower, upper):
        finite = torch.isfinite(lower) & torch.isfinite(upper)
        if self.even or self.odd:
            return finite
        return finite & ((lower >= 0) if self.exponent > 0 else (lower > 0))

    def convex(self, lower):
        return self.even or self.odd or self.exponent > 1 or self.exponent < 0

    def coefficients(self, lower, upper):
        if not self.odd:
            return super().coefficients(lower, upper)
        # on x <= 0, x^c = -((-x)^c): the positive piece's relaxation, mirrored
        negative = upper <= 0
        low, high = torch.where(negative, -upper, lower), torch.where(negative, -lower, upper)
        slope, offset, radius = super().coefficients(low, high)
        offset = torch.where(negative, -offset, offset)
        across = (lower < 0) & (upper > 0)
        if not bool(across.any()):
            return slope, offset, radius
        return tuple(torch.where(across, a, b) for a, b in zip(
            self._across_zero(lower, upper, across), (slope, offset, radius), strict=True))

    def _across_zero(self, lower, upper, across):
        """An odd power's relaxation on ranges that hold 0: the chord's slope, and the
        rests of each side (``[0, u]``, and ``[0, -l]`` mirrored) joined."""
        left = torch.where(across, lower, -torch.ones_like(lower))
        right = torch.where(across, upper, torch.ones_like(upper))
        slope = (self.f(right) - self.f(left)) / (right - left)
        zero = torch.zeros_like(left)
        above = self.rests(zero, right, slope)
        below = self.rests(zero, -left, slope)  # (f - λ x on [l, 0] is its negation)
        low = torch.minimum(above[0], -below[1])
        high = torch.maximum(above[1], -below[0])
        kept = (across & torch.isfinite(slope) & torch.isfinite(low) & torch.isfinite(high)
                & (torch.maximum(left.abs(), right.abs()) < LARGEST))
        return (torch.where(kept, slope, zero), torch.where(kept, (low + high) / 2, zero),
                torch.where(kept, (high - low) / 2, zero))

    def slope_range(self, lower, upper):
        least, most = super().slope_range(lower, upper)
        if not self.odd:
            return least, most
        # f' = c x^(c-1) >= 0 is least at 0, inside a range that holds it
        across = (lower < 0) & (upper > 0)
        return torch.where(across, torch.zeros_like(least), least), most

    def nonnegative(self, lower):
        return (lower >= 0) if self.odd else True
