"""JSON Lines rows that cannot tear: each row written with its newline in one ``write``
(``O_APPEND``) and flushed to disk; a reader completes a last line that lacks only its
newline and drops a torn one; damage elsewhere, or two rows for the same key, is an
error."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .atomic import DiskFullError, disk_full, dumps, write_text_atomic


class CorruptResultsError(ValueError):
    """A results file is damaged (not only at its end) or holds duplicate rows."""


def append_rows(path: Path | str, rows: Iterable[dict]) -> None:
    """Append rows: each row and its newline in one ``write`` on an ``O_APPEND``
    descriptor, then ``fsync``. A process killed mid-row leaves at most one torn line at
    the end, which :func:`read_rows` drops.

    Args:
        path: the JSON Lines file (created when missing).
        rows: JSON-like dicts.

    Raises:
        DiskFullError: the disk is full; the row being written is taken back whole.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise disk_full(exc, path) or exc from None
    try:
        for row in rows:
            _append_one(fd, (dumps(row) + "\n").encode(), path)
        try:
            os.fsync(fd)
        except OSError as exc:
            raise disk_full(exc, path) or exc from None
    finally:
        os.close(fd)


def _append_one(fd: int, data: bytes, path: Path | str) -> None:
    """Write one row whole, or take it back (a full disk never leaves half a row)."""
    size = os.fstat(fd).st_size
    try:
        written = os.write(fd, data)
    except OSError as exc:
        _truncate(fd, size)
        raise disk_full(exc, path) or exc from None
    if written != len(data):  # a full disk: the row would tear; take it back
        _truncate(fd, size)
        raise DiskFullError(path)


def _truncate(fd: int, size: int) -> None:
    """Cut a file back to ``size`` bytes (a row that could not be written whole)."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, size)


def read_rows(path: Path | str, repair: bool = False, key: tuple[str, ...] | None = None
              ) -> list[dict]:
    """Rows of a JSON Lines file.

    The last line may be unfinished (a run killed mid-write): if it parses, only its
    newline is missing and it is kept (and the newline written when ``repair``); if not,
    it is dropped (and the file rewritten atomically without it when ``repair``).

    Args:
        path: the file (missing: no rows).
        repair: complete or drop an unfinished last line on disk too.
        key: fields that identify a row; two rows with the same values are refused.

    Returns:
        The rows, in file order.

    Raises:
        CorruptResultsError: a bad line other than the last, a line that is not a JSON
            object, or two rows with the same ``key``.
    """
    return [row for _, row in read_numbered_rows(path, repair, key)]


def read_numbered_rows(path: Path | str, repair: bool = False,
                       key: tuple[str, ...] | None = None) -> list[tuple[int, dict]]:
    """``(line number, row)`` of each row of a JSON Lines file (numbers from 1, as an
    editor shows them); otherwise as :func:`read_rows`.

    Args:
        path: the file (missing: no rows).
        repair: complete or drop an unfinished last line on disk too.
        key: fields that identify a row; two rows with the same values are refused.

    Returns:
        ``(line number, row)`` pairs, in file order.

    Raises:
        CorruptResultsError: as :func:`read_rows`.
    """
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    complete = data.endswith(b"\n") or not data
    rows, bad, not_objects = _parse_lines(lines)
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    if any(b != last for b in bad) or (bad and complete):
        raise CorruptResultsError(f"{path}: corrupt lines {[b + 1 for b in bad]} (not an "
                                  "unfinished last line); move the file aside and rerun, or "
                                  "repair it by hand")
    if not_objects:
        number, kind = not_objects[0]
        more = f" (and {len(not_objects) - 1} more such lines)" if len(not_objects) > 1 else ""
        raise CorruptResultsError(f"{path} line {number}: a JSON {kind}, not a row (a JSON "
                                  f"object){more}; repair or remove the line")
    if repair:
        _repair_tail(path, rows, torn=bool(bad), complete=complete)
    if key is not None:
        check_unique([r for _, r in rows], key, path, [n for n, _ in rows])
    return rows


def _parse_lines(lines: list[bytes]
                 ) -> tuple[list[tuple[int, dict]], list[int], list[tuple[int, str]]]:
    """Rows (numbered from 1), the indices of lines that do not parse, and the lines that
    parse to something other than an object (numbered from 1, with its kind)."""
    rows: list[tuple[int, dict]] = []
    bad: list[int] = []
    not_objects: list[tuple[int, str]] = []
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            bad.append(number)
            continue
        if isinstance(value, dict):
            rows.append((number + 1, value))
        else:
            not_objects.append((number + 1, _json_kind(value)))
    return rows, bad, not_objects


def _repair_tail(path: Path, rows: list[tuple[int, dict]], torn: bool, complete: bool
                 ) -> None:
    """Drop a torn last line (rewriting the file whole), or write the newline a complete
    last row lacks."""
    if torn:
        write_text_atomic(path, "".join(dumps(r) + "\n" for _, r in rows))
    elif not complete:
        try:
            with open(path, "ab") as f:  # the last row parsed: only its newline was missing
                f.write(b"\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise disk_full(exc, path) or exc from None


def _json_kind(value: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def check_unique(rows: Sequence[dict], key: tuple[str, ...], path: Path | str = "rows",
                 lines: Sequence[int] | None = None) -> None:
    """Refuse rows that repeat a key (two runs wrote into one folder, or a bad merge).

    Args:
        rows: the rows.
        key: the fields that identify a row.
        path: the file named in the error.
        lines: the line number of each row (default: its position, from 1).

    Raises:
        CorruptResultsError: two rows share a key (the first such pair is named).
    """
    seen: dict[tuple, int] = {}
    duplicates = []
    numbers = lines if lines is not None else range(1, len(rows) + 1)
    for number, row in zip(numbers, rows, strict=True):
        value = tuple(_hashable(row.get(k)) for k in key)
        if value in seen:
            duplicates.append((value, seen[value], number))
        seen[value] = number
    if duplicates:
        value, first, second = duplicates[0]
        names = ", ".join(f"{k}={v}" for k, v in zip(key, value, strict=True))
        where = "lines" if lines is not None else "rows"
        raise CorruptResultsError(
            f"{path}: {len(duplicates)} duplicate row(s), e.g. {names} on {where} {first} and "
            f"{second}; results would be counted twice. Remove the duplicates (keep one row "
            "per key) before reporting.")


def _hashable(value: Any) -> Any:
    """A key field as a dict key (a damaged row may hold a list or an object there)."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value
