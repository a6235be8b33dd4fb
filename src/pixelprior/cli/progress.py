"""The terminal progress bar of runs and scans (rich): items done, successes and an ETA.

The runner and the scans draw nothing themselves; they are given a reporter
(:class:`~pixelprior.experiment.progress.ProgressReporter`) and the command line passes
:class:`ProgressBar`.
"""

from __future__ import annotations

from typing import Any


class ProgressBar:
    """A rich progress bar over work items with a count of successes and an ETA; a
    :class:`~pixelprior.experiment.progress.ProgressReporter`."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.task: Any = None
        self.done = 0
        self.successes = 0

    def start(self, label: str, total: int, done: int, successes: int, what: str) -> None:
        """Draw the bar.

        Args:
            label: the work in one word (``"attack"``, ``"scan"``).
            total: items of work in all.
            done: items already finished (a resume).
            successes: how many of those succeeded.
            what: what a success is called.
        """
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        self.done, self.successes = done, successes
        self.bar = Bar(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn(f"{what} {{task.fields[rate]}}"), TimeElapsedColumn(),
                       TextColumn("ETA"), TimeRemainingColumn())
        self.bar.start()
        self.task = self.bar.add_task(label, total=total, completed=done, rate=self._rate())

    def _rate(self) -> str:
        return f"{self.successes}/{self.done}" if self.done else "-"

    def advance(self, count: int, successes: int) -> None:
        """Move the bar.

        Args:
            count: items just finished.
            successes: how many of them succeeded.
        """
        self.done += count
        self.successes += successes
        if self.bar is not None:
            self.bar.update(self.task, advance=count, rate=self._rate())

    def stop(self) -> None:
        """Stop drawing (the bar stays on the terminal as it last was)."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


class Progress:
    """The bar of 0.3 as a context manager (kept for ``pixelprior.rundir`` and
    ``pixelprior.experiment.Progress``, one release): nothing is drawn unless
    ``enabled``.

    Args:
        enabled: draw the bar.
        label: the work in one word.
        total: items of work in all.
        done: items already finished.
        successes: how many of those succeeded.
        what: what a success is called.
    """

    def __init__(self, enabled: bool, label: str, total: int, done: int = 0,
                 successes: int = 0, what: str = "success") -> None:
        self.enabled, self.label, self.what = enabled, label, what
        self.total, self.done, self.successes = total, done, successes
        self._bar = ProgressBar() if enabled else None

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start(self.label, self.total, self.done, self.successes, self.what)
        return self

    def advance(self, count: int, successes: int) -> None:
        """Count finished items.

        Args:
            count: items just finished.
            successes: how many of them succeeded.
        """
        self.done += count
        self.successes += successes
        if self._bar is not None:
            self._bar.advance(count, successes)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
