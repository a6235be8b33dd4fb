"""Image sizes in one convention: ``(height, width)`` pairs, given as a side or a pair,
shown as ``W×H`` (as image viewers and PIL write them)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["Size", "as_height_width", "format_size"]

Size = int | tuple[int, int]  # a square's side, or (height, width)


def as_height_width(size: Size | Sequence[int] | None, name: str = "size"
                    ) -> tuple[int, int] | None:
    """``size`` as ``(height, width)``.

    Args:
        size: a positive side, a ``(height, width)`` pair, or ``None``.
        name: the setting's name, for the error message.

    Returns:
        ``(height, width)``, or ``None`` when ``size`` is ``None``.

    Raises:
        ValueError: not a positive integer side or a pair of them.
    """
    if size is None:
        return None
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                 for v in pair):
        raise ValueError(f"{name} must be a positive side or (height, width), got {size!r}")
    return int(pair[0]), int(pair[1])


def format_size(height_width: tuple[int, int]) -> str:
    """``(height, width)`` as ``"W×H"`` text.

    Args:
        height_width: ``(height, width)``.

    Returns:
        e.g. ``"500×375"`` for ``(375, 500)``.
    """
    return f"{height_width[1]}×{height_width[0]}"
