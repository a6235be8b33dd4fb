"""Terminal tables that keep every column at 80 columns (``report``, ``evaluate-maps``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

from .._format import number
from ._app import console

if TYPE_CHECKING:
    from rich.table import Table


def table(title: str, columns: list[str], fold: int = 0) -> Table:
    """A terminal table that fits 80 columns: short headers never cut, no outer border,
    one space between columns; column ``fold`` (names) folds when it must.

    Args:
        title: the table's title.
        columns: the headers.
        fold: the column of names (left-aligned, folded when too long).

    Returns:
        An empty rich table with those columns.
    """
    from rich import box
    from rich.table import Table
    from rich.text import Text

    # (the title as plain text: a model spec or a folder in it is not markup or emoji,
    # nets.py:two showed as nets.py and an emoji)
    out = Table(title=Text(title), box=box.SIMPLE_HEAD, pad_edge=False, padding=0,
                title_justify="left")
    for n, column in enumerate(columns):
        out.add_column(column, justify="left" if n == fold else "right",
                       no_wrap=n != fold, min_width=max(len(column), 8 if n == fold else 1),
                       overflow="fold" if n == fold else "ellipsis")
    return out


def print_table(shown: Table) -> None:
    """Print a :func:`table`, at least 80 columns wide (a narrower terminal wraps the
    lines rather than lose columns).

    Args:
        shown: the table.
    """
    if console.width >= 80:
        console.print(shown)
        return
    wide = Console(file=console.file, width=80, force_terminal=console.is_terminal,
                   color_system=console.color_system, emoji=False)
    wide.print(shown)


def num(value: float | None, digits: int = 2) -> str:
    """A number for a terminal table (the report's formatter).

    Args:
        value: the number (``None`` or NaN shows as a dash).
        digits: digits after the point.

    Returns:
        The text.
    """
    return number(value, digits)
