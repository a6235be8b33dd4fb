"""Numbers as reports and terminals show them: the one formatter."""

from __future__ import annotations

import math

__all__ = ["number"]


def number(value, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals; ``–`` for missing or NaN, ``∞`` for infinite.

    Args:
        value: a number, ``None``, or a ``(mean, half_width)`` pair (shown as
            ``mean ± half``; the half-width is left out when it is missing).
        digits: decimals shown.
    """
    if isinstance(value, (tuple, list)):
        mean, half = value
        if _missing(mean):
            return "–"
        return number(mean, digits) if _missing(half) else (
            f"{number(mean, digits)} ± {number(half, digits)}")
    if _missing(value):
        return "–"
    value = float(value)
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.{digits}f}"


def _missing(value) -> bool:
    """None, a NaN of any float type (Python, NumPy float16/32/64), or pandas' NA."""
    if value is None:
        return True
    try:
        return math.isnan(float(value))
    except TypeError:  # pandas.NA refuses float(); nothing else reaches here
        return repr(value) == "<NA>"
