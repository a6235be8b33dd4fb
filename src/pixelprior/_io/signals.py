"""SIGINT and SIGTERM: a run ends between rows, never inside a write
(:class:`Interrupts`); :func:`install_early_signals` covers the moments before a command
runs (the command line's imports)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from types import FrameType

EARLY_MESSAGE = "interrupted before the run started ({name}); nothing was written"
_EARLY: dict = {"installed": False, "raise": False, "old": {}}


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; ``exit_code`` is 130 or 143. A ``BaseException`` (like
    ``KeyboardInterrupt``), so no ``except Exception`` on the way swallows it.

    Args:
        signum: the signal's number.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


class Interrupts:
    """Turn SIGINT/SIGTERM into :class:`Interrupted`, but never inside :meth:`critical`
    sections (a row being written): there the signal waits until the section ends."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self.depth = 0
        self._old: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
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

    def reinstall(self) -> None:
        """Take SIGINT/SIGTERM back after a library replaced their handlers (Ray's
        ``init`` does)."""
        for signum in self._old:
            signal.signal(signum, self._handle)

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)
        self._old.clear()

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """A section a signal does not cut: it is raised when the section ends.

        Yields:
            Nothing; the section runs inside the ``with`` block.

        Raises:
            Interrupted: a signal arrived during the section.
        """
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.pending is not None:
                signum, self.pending = self.pending, None
                raise Interrupted(signum)


def _early_handler(signum: int, frame: FrameType | None) -> None:
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
    """Whether the early handlers raise :class:`Interrupted` rather than end the process.

    Args:
        on: true while a command runs and reports interrupts itself.
    """
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
