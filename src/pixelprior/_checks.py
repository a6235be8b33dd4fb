"""Checks of option values that every layer makes (an integer count is an integer)."""

from __future__ import annotations

import numbers

__all__ = ["check_int"]


def check_int(name: str, value: int, low: int) -> None:
    """Refuse an integer option given as a float or bool (``popsize=20.7``), or below
    ``low``, in words.

    Args:
        name: the option's name.
        value: its value.
        low: the smallest value allowed.

    Raises:
        TypeError: ``value`` is not an integer (a bool is not; NumPy's integers are).
        ValueError: ``value < low``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # NumPy's too
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
