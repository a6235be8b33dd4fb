"""Files that cannot tear: atomic writes, JSON Lines rows, run locks, interrupts.

Everything that writes results goes through here:

- :class:`RunLock` — an exclusive ``flock`` on ``DIR/.lock`` held for the whole run. The
  OS releases it when the process dies (even by SIGKILL), so a killed run never blocks its
  resume; a second run on the folder stops at once, naming the holder.
- :func:`append_rows` / :func:`read_rows` — JSON Lines written one row per ``write`` (the
  row and its newline together, ``O_APPEND``), flushed to disk; a reader completes a last
  line that lacks only its newline and drops a torn one; damage elsewhere, or two rows for
  the same key, is an error.
- :func:`atomic_write` — the one way a file is written whole or not at all (a temporary
  file beside it, then ``os.replace``); :func:`write_json_atomic` (strict JSON: ``null``,
  never ``NaN``), :func:`write_text_atomic` and :func:`save_npz_atomic` use it.
- :class:`Interrupts` — SIGINT/SIGTERM end a run between rows, never inside a write;
  :func:`install_early_signals` covers the moments before (the command line's imports).
- :class:`DiskFullError` — a full disk (or quota) names the file and says how to resume;
  what was written before stays whole.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

LOCK_FILE = ".lock"


class RunLockedError(RuntimeError):
    """Another process is writing into the run directory."""


class CorruptResultsError(ValueError):
    """A results file is damaged (not only at its end) or holds duplicate rows."""


class OutputLocationError(ValueError):
    """The output folder cannot hold results (a file is there, or it is not writable)."""


RESUME_HINT = "rows written so far are kept; free space and run the same command to resume"


class DiskFullError(OSError):
    """The disk (or the user's quota) is full: the message names the file being written
    and how to resume. What was written before stays whole (temporary files are removed,
    a row never tears)."""

    def __init__(self, path: Path | str, code: int = errno.ENOSPC) -> None:
        what = "disk quota exceeded" if code == getattr(errno, "EDQUOT", -1) else (
            "no space left on device")
        super().__init__(code, f"{what} writing {path}; {RESUME_HINT}")
        self.filename = str(path)

    def __str__(self) -> str:
        return self.strerror


def disk_full(exc: BaseException, path: Path | str) -> DiskFullError | None:
    """``exc`` as a :class:`DiskFullError` naming ``path`` when it says the disk (or the
    quota) is full; ``None`` for any other error."""
    if isinstance(exc, DiskFullError):
        return exc
    codes = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
    if isinstance(exc, OSError) and exc.errno in codes:
        return DiskFullError(path, exc.errno)
    return None


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; ``exit_code`` is 130 or 143. A ``BaseException`` (like
    ``KeyboardInterrupt``), so no ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


# --------------------------------------------------------------------------- JSON
def strict(value):
    """``value`` with every non-finite float replaced by ``None`` (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalars
        return strict(value.item())
    return value


def dumps(value, **kwargs) -> str:
    """Strict JSON text of ``value`` (``NaN`` → ``null``; other objects via ``str``)."""
    return json.dumps(strict(value), allow_nan=False, default=str, **kwargs)


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "wb") -> Iterator:
    """Open a temporary file beside ``path`` for writing; on success it replaces
    ``path`` in one step, on any error it is removed (nothing half-written remains).

    The temporary name (``.NAME.tmp``) starts with a dot, so no reader's pattern that
    matches ``path`` matches it.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        full = disk_full(exc, path)
        if full is not None and full is not exc:
            raise full from None
        raise


def write_json_atomic(path: Path, value: object) -> None:
    """Write strict JSON to ``path`` atomically (:func:`atomic_write`)."""
    write_text_atomic(path, dumps(value, indent=2) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_write`)."""
    with atomic_write(path, "w") as f:
        f.write(text)


def save_npz_atomic(path: Path, compressed: bool = True, **arrays) -> None:
    """Write a NumPy ``.npz`` archive atomically (:func:`atomic_write`)."""
    import numpy as np

    with atomic_write(path) as f:
        (np.savez_compressed if compressed else np.savez)(f, **arrays)


# --------------------------------------------------------------------------- rows
def append_rows(path: Path, rows: Iterable[dict]) -> None:
    """Append rows: each row and its newline in one ``write`` on an ``O_APPEND``
    descriptor, then ``fsync``. A process killed mid-row leaves at most one torn line at
    the end, which :func:`read_rows` drops."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise disk_full(exc, path) or exc from None
    try:
        for row in rows:
            data = (dumps(row) + "\n").encode()
            size = os.fstat(fd).st_size
            try:
                written = os.write(fd, data)
            except OSError as exc:
                _truncate(fd, size)
                raise disk_full(exc, path) or exc from None
            if written != len(data):  # a full disk: the row would tear; take it back
                _truncate(fd, size)
                raise DiskFullError(path)
        try:
            os.fsync(fd)
        except OSError as exc:
            raise disk_full(exc, path) or exc from None
    finally:
        os.close(fd)


def _truncate(fd: int, size: int) -> None:
    """Cut a file back to ``size`` bytes (a row that could not be written whole)."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, size)


def read_rows(path: Path, repair: bool = False, key: tuple[str, ...] | None = None
              ) -> list[dict]:
    """Rows of a JSON Lines file.

    The last line may be unfinished (a run killed mid-write): if it parses, only its
    newline is missing and it is kept (and the newline written when ``repair``); if not,
    it is dropped (and the file rewritten atomically without it when ``repair``). A bad
    line elsewhere, a line that is not a JSON object, or two rows with the same ``key``
    fields, raises :class:`CorruptResultsError`.

    Args:
        path: the file (missing: no rows).
        repair: complete or drop an unfinished last line on disk too.
        key: fields that identify a row; two rows with the same values are refused.
    """
    return [row for _, row in read_numbered_rows(path, repair, key)]


def read_numbered_rows(path: Path, repair: bool = False, key: tuple[str, ...] | None = None
                       ) -> list[tuple[int, dict]]:
    """``(line number, row)`` of each row of a JSON Lines file (numbers from 1, as an
    editor shows them); otherwise as :func:`read_rows`.

    Args:
        path: the file (missing: no rows).
        repair: complete or drop an unfinished last line on disk too.
        key: fields that identify a row; two rows with the same values are refused.
    """
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    complete = data.endswith(b"\n") or not data
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
    if repair and bad:
        write_text_atomic(path, "".join(dumps(r) + "\n" for _, r in rows))
    elif repair and not complete:
        try:
            with open(path, "ab") as f:  # the last row parsed: only its newline was missing
                f.write(b"\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise disk_full(exc, path) or exc from None
    if key is not None:
        check_unique([r for _, r in rows], key, path, [n for n, _ in rows])
    return rows


def _json_kind(value) -> str:
    return {list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def check_unique(rows: list[dict], key: tuple[str, ...], path: Path | str = "rows",
                 lines: list[int] | None = None) -> None:
    """Refuse rows that repeat a key (two runs wrote into one folder, or a bad merge).

    Args:
        rows: the rows.
        key: the fields that identify a row.
        path: the file named in the error.
        lines: the line number of each row (default: its position, from 1).
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


def _hashable(value):
    """A key field as a dict key (a damaged row may hold a list or an object there)."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


# --------------------------------------------------------------------------- lock
class RunLock:
    """Exclusive lock on a run directory for the life of the ``with`` block."""

    def __init__(self, directory: Path, command: str | None = None) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.command = command or " ".join(sys.argv)
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        import fcntl

        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunLockedError(
                f"{self.directory} is in use by another run ({holder}); wait for it to "
                "finish or choose another output folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                            "command": self.command}).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock; the file stays (harmless)
            self.fd = None


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return (f"pid {info.get('pid')} on {info.get('host')} since {info.get('started')}: "
                f"{info.get('command')}")
    except (OSError, ValueError):
        return "holder unknown"


# --------------------------------------------------------------------------- signals
class Interrupts:
    """Turn SIGINT/SIGTERM into :class:`Interrupted`, but never inside :meth:`critical`
    sections (a row being written): there the signal waits until the section ends."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self.depth = 0
        self._old: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.depth:
            self.pending = signum
            return
        raise Interrupted(signum)

    def __enter__(self) -> Interrupts:
        import threading

        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._old[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)
        self._old.clear()

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.pending is not None:
                signum, self.pending = self.pending, None
                raise Interrupted(signum)


EARLY_MESSAGE = "interrupted before the run started ({name}); nothing was written"
_EARLY: dict = {"installed": False, "raise": False, "old": {}}


def _early_handler(signum, frame) -> None:
    if _EARLY["raise"]:  # a command is running: it turns this into its one line
        raise Interrupted(signum)
    # still importing or parsing: no file is open, nothing was written
    name = signal.Signals(signum).name
    os.write(2, (EARLY_MESSAGE.format(name=name) + "\n").encode())
    os._exit(128 + signum)


def install_early_signals() -> None:
    """SIGINT/SIGTERM handlers for the first moments of a command-line process (before
    the heavy imports): a signal then ends the process with one line, exit 130 / 143.
    Once a command runs (:func:`early_signals_raise`), a signal raises
    :class:`Interrupted` instead, for the command to report. Main thread only."""
    import threading

    if _EARLY["installed"] or threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        _EARLY["old"][signum] = signal.signal(signum, _early_handler)
    _EARLY["installed"] = True


def early_signals_raise(on: bool) -> None:
    """While ``on``, the early handlers raise :class:`Interrupted` (a command is running
    and reports it) rather than end the process at once."""
    _EARLY["raise"] = on


def restore_early_signals() -> None:
    """Put back the handlers :func:`install_early_signals` replaced (where they are
    still ours)."""
    if not _EARLY["installed"]:
        return
    for signum, handler in _EARLY["old"].items():
        if signal.getsignal(signum) is _early_handler:
            signal.signal(signum, handler)
    _EARLY.update(installed=False, old={}, **{"raise": False})


def foreign_entries(directory: Path, own) -> list[str]:
    """Names of the entries of ``directory`` that ``own(name, is_dir)`` does not claim
    (empty when the folder does not exist)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(entry.name for entry in directory.iterdir()
                  if not own(entry.name, entry.is_dir()))


def check_writable_dir(directory: Path) -> None:
    """Fail before any work if ``directory`` cannot hold results: a file is there, or the
    folder (or, when it does not exist yet, its nearest existing parent) is not
    writable. Creates nothing."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise OutputLocationError(f"{directory} is a file, not a folder; choose a folder")
    probe = directory
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputLocationError(f"{directory}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputLocationError(f"cannot write into {probe}; choose another output folder")


class Progress:
    """A rich progress bar over work items with a count of successes and an ETA (or
    nothing when ``enabled`` is false): ``label`` names the work, ``what`` the successes."""

    def __init__(self, enabled: bool, label: str, total: int, done: int = 0,
                 successes: int = 0, what: str = "success") -> None:
        self.enabled, self.label, self.what = enabled, label, what
        self.total, self.done, self.successes = total, done, successes

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar

            self.bar = Bar(TextColumn(f"[bold]{self.label}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn(f"{self.what} {{task.fields[rate]}}"), TimeElapsedColumn(),
                           TextColumn("ETA"), TimeRemainingColumn())
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total, completed=self.done,
                                          rate=self._rate())
        return self

    def _rate(self) -> str:
        return f"{self.successes}/{self.done}" if self.done else "-"

    def advance(self, count: int, successes: int) -> None:
        self.done += count
        self.successes += successes
        if self.enabled:
            self.bar.update(self.task, advance=count, rate=self._rate())

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.stop()
