"""How runs and scans tell about their progress: through a reporter they are given
(the command line passes a terminal bar, :class:`pixelprior.cli.progress.ProgressBar`);
they draw nothing themselves."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol, runtime_checkable


@runtime_checkable
class ProgressReporter(Protocol):
    """What a run or a scan tells about its work, as it goes."""

    def start(self, label: str, total: int, done: int, successes: int, what: str) -> None:
        """The work begins (or resumes).

        Args:
            label: the work in one word (``"attack"``, ``"scan"``).
            total: items of work in all (finished ones included).
            done: items already finished (a resume).
            successes: how many of those succeeded.
            what: what a success is called (``"success"``, ``"fooled"``).
        """

    def advance(self, count: int, successes: int) -> None:
        """``count`` more items are finished, ``successes`` of them succeeded.

        Args:
            count: items just finished.
            successes: how many of them succeeded.
        """

    def stop(self) -> None:
        """The work ended (finished, failed or interrupted)."""


class NoProgress:
    """A reporter that says nothing (the default of the Python API)."""

    def start(self, label: str, total: int, done: int, successes: int, what: str) -> None:
        """Say nothing.

        Args:
            label: unused.
            total: unused.
            done: unused.
            successes: unused.
            what: unused.
        """

    def advance(self, count: int, successes: int) -> None:
        """Say nothing.

        Args:
            count: unused.
            successes: unused.
        """

    def stop(self) -> None:
        """Say nothing."""


def as_reporter(progress: ProgressReporter | bool | None) -> ProgressReporter:
    """The reporter a run or a scan uses.

    Args:
        progress: a reporter; ``None`` or ``False`` for none.

    Returns:
        ``progress``, or a :class:`NoProgress`.

    Raises:
        TypeError: ``True`` or anything that is not a reporter (the runner draws no bar
            itself: pass one, e.g. :class:`pixelprior.cli.progress.ProgressBar`).
    """
    if progress is None or progress is False:
        return NoProgress()
    if isinstance(progress, ProgressReporter) and not isinstance(progress, bool):
        return progress
    raise TypeError(f"progress must be a reporter with start, advance and stop (e.g. "
                    f"pixelprior.cli.progress.ProgressBar()) or None, got {progress!r}")


@contextlib.contextmanager
def reporting(progress: ProgressReporter, label: str, total: int, done: int = 0,
              successes: int = 0, what: str = "success") -> Iterator[ProgressReporter]:
    """Start ``progress`` for the ``with`` block and stop it however the block ends.

    Args:
        progress: the reporter.
        label: the work in one word.
        total: items of work in all.
        done: items already finished.
        successes: how many of those succeeded.
        what: what a success is called.

    Yields:
        The started reporter.
    """
    progress.start(label, total, done, successes, what)
    try:
        yield progress
    finally:
        progress.stop()
