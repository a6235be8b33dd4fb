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
- :class:`Interrupts` — SIGINT/SIGTERM end a run between rows, never inside a write.
"""

from __future__ import annotations

import contextlib
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
    except BaseException:
        tmp.unlink(missing_ok=True)
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
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for row in rows:
            data = (dumps(row) + "\n").encode()
            written = os.write(fd, data)
            if written != len(data):  # a full disk: say so rather than tear silently
                raise OSError(f"{path}: only {written} of {len(data)} bytes written")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_rows(path: Path, repair: bool = False, key: tuple[str, ...] | None = None
              ) -> list[dict]:
    """Rows of a JSON Lines file.

    The last line may be unfinished (a run killed mid-write): if it parses, only its
    newline is missing and it is kept (and the newline written when ``repair``); if not,
    it is dropped (and the file rewritten atomically without it when ``repair``). A bad
    line elsewhere, or two rows with the same ``key`` fields, raises
    :class:`CorruptResultsError`.
    """
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    complete = data.endswith(b"\n") or not data
    rows, bad = [], []
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            bad.append(number)
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    if any(b != last for b in bad) or (bad and complete):
        raise CorruptResultsError(f"{path}: corrupt lines {[b + 1 for b in bad]} (not an "
                                  "unfinished last line); move the file aside and rerun, or "
                                  "repair it by hand")
    if repair and bad:
        write_text_atomic(path, "".join(dumps(r) + "\n" for r in rows))
    elif repair and not complete:
        with open(path, "ab") as f:  # the last row parsed: only its newline was missing
            f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())
    if key is not None:
        check_unique(rows, key, path)
    return rows


def check_unique(rows: list[dict], key: tuple[str, ...], path: Path | str = "rows") -> None:
    """Refuse rows that repeat a key (two runs wrote into one folder, or a bad merge)."""
    seen: dict[tuple, int] = {}
    duplicates = []
    for number, row in enumerate(rows, start=1):
        value = tuple(row.get(k) for k in key)
        if value in seen:
            duplicates.append((value, seen[value], number))
        seen[value] = number
    if duplicates:
        value, first, second = duplicates[0]
        names = ", ".join(f"{k}={v}" for k, v in zip(key, value, strict=True))
        raise CorruptResultsError(
            f"{path}: {len(duplicates)} duplicate row(s), e.g. {names} on rows {first} and "
            f"{second}; results would be counted twice. Remove the duplicates (keep one row "
            "per key) before reporting.")


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
