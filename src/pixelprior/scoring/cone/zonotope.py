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

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import torch

__all__ = ["AFFINE", "IDENTITY", "MAX_POOL", "RESHAPE", "Affine", "BoundRule",
           "BoundUnsupportedError", "Identity", "Lipschitz", "MaxPool", "PiecewiseLinear",
           "Product", "Relaxation", "Reshape", "SShaped", "add_symbols", "interval",
           "pad_rows"]


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
class Affine(BoundRule):
    """An affine map of the varying arguments: applied to the center and the generators,
    the map's value at zero subtracted from the generators (exact)."""


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
class Product(BoundRule):
    """A product or quotient: affine when one factor (or only the dividend) varies.

    Attributes:
        divides: the operation divides its first argument by the second.
    """

    divides: bool = False

    def check(self, node, varying) -> None:
        """Refuse a product of two varying values (or a varying divisor).

        Args:
            node: the ``torch.fx`` node.
            varying: the node's arguments that vary with the pixel.

        Raises:
            BoundUnsupportedError: the operation is not affine in the varying values.
        """
        given = (*node.args, *node.kwargs.values())  # keywords too; ``h * h`` twice
        args = [a for a in given if isinstance(a, Hashable) and a in varying]
        if len(args) > 1:
            raise BoundUnsupportedError(f"{node.name}: a product of two values that change "
                                        "with the pixel (not affine)")
        divisor = node.args[1] if len(node.args) > 1 else node.kwargs.get("other")
        if self.divides and isinstance(divisor, Hashable) and divisor in varying:
            raise BoundUnsupportedError(f"{node.name}: a division by a value that changes "
                                        "with the pixel")


AFFINE, IDENTITY, RESHAPE, MAX_POOL = Affine(), Identity(), Reshape(), MaxPool()


class Relaxation(BoundRule):
    """A pointwise nonlinearity ``f`` replaced on ``[l, u]`` by ``λ x + μ ± β``."""

    def coefficients(self, lower: torch.Tensor, upper: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(λ, μ, β)`` per neuron, with ``f(x) - λ x`` in ``[μ - β, μ + β]`` on
        ``[lower, upper]``."""
        raise NotImplementedError

    def apply(self, values: torch.Tensor) -> torch.Tensor:
        """The relaxed image of zonotopes ``[N, R, *shape]`` (new symbols appended)."""
        lower, upper = interval(values)
        slope, offset, radius = self.coefficients(lower, upper)
        out = values * slope[:, None]
        out[:, 0] += offset
        return add_symbols(out, radius)


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
    """

    def __init__(self, f: Callable[[torch.Tensor], torch.Tensor],
                 breakpoints: Sequence[float | torch.Tensor]) -> None:
        self.f, self.breakpoints = f, tuple(breakpoints)

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
    """Sigmoid and tanh: ``f'`` is largest at 0 and falls on both sides, so with
    ``λ = min(f'(l), f'(u))`` the rest ``f(x) - λ x`` is nondecreasing on ``[l, u]``:
    bounded by its values at the ends (DeepZ's rule).

    Args:
        f: the function; ``derivative``: its derivative.
    """

    def __init__(self, f: Callable[[torch.Tensor], torch.Tensor],
                 derivative: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.f, self.derivative = f, derivative

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
