"""The one-line error mapping of the command line.

Every user error ends in one line saying what is wrong and what to do, with exit code 2
for usage errors (options, config files, requests that make no sense) and 1 for runtime
failures (missing data or weights, a busy run folder, I/O); an interrupt ends a command
with 130 / 143 and a line saying what was kept. :func:`error_line` decides the code and
the words; the app (:mod:`pixelprior.cli._app`) prints them.
"""

from __future__ import annotations

import contextlib
import re
import traceback
from collections.abc import Iterator
from typing import NoReturn

from rich.markup import escape

from .._io import (
    EARLY_MESSAGE,
    CorruptResultsError,
    Interrupted,
    Interrupts,
    OutputLocationError,
    RunLockedError,
)
from ..data import ClassNamesError, DataError, DataSpecError
from ..experiment import ConfigError, ConfigMismatchError, SelectionError
from ..experiment.distributed import WorkerLostError
from ..models import WeightsError
from ..scoring import ModelOutputError, ScorerMismatchError

MAX_MESSAGE = 600  # characters of an error line; the rest behind --debug
BEFORE_RUN = "before the run started"  # on_interrupt(BEFORE_RUN): the early message
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")

# what the running command leaves behind if interrupted, and whether --debug was given
STATE: dict = {"debug": False, "interrupted": None}


class UsageProblem(ValueError):
    """A request the command cannot carry out as given (exit 2)."""


# class names that do not fit the data or the model: what --classes (or the data's own
# names) say against each other, as the README's table has it (2)
USAGE_ERRORS = (UsageProblem, ConfigError, ConfigMismatchError, SelectionError,
                OutputLocationError, DataSpecError, ClassNamesError)
RUNTIME_ERRORS = (DataError, WeightsError, RunLockedError, CorruptResultsError,
                  ModelOutputError, ScorerMismatchError, OSError, ImportError,
                  WorkerLostError)


def fail(message: str) -> NoReturn:
    """End the command with a usage error.

    Args:
        message: what is wrong and what to do, one line.

    Raises:
        UsageProblem: always.
    """
    raise UsageProblem(message)


def exit_code(exc: BaseException) -> int | None:
    """The exit code of a user error, or ``None`` for an internal error.

    Args:
        exc: the exception a command raised.

    Returns:
        2 for usage errors, 1 for runtime failures, the signal's code for an interrupt,
        ``None`` when ``exc`` is no error of the user's (a bug to report).
    """
    if isinstance(exc, Interrupted):
        return exc.exit_code
    if isinstance(exc, USAGE_ERRORS):
        return 2
    if isinstance(exc, RUNTIME_ERRORS) or _out_of_memory(exc):
        return 1
    if isinstance(exc, (ValueError, TypeError, KeyError)) and _from_pixelprior(exc):
        return 2
    return None


def error_line(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one line (rich markup, user text escaped) for ``exc``.

    Args:
        exc: the exception a command raised.

    Returns:
        ``(exit code, line)``.
    """
    code = exit_code(exc)
    if isinstance(exc, Interrupted):
        return code, _interrupted_line(exc)
    if _out_of_memory(exc):
        return code, (f"[red]error:[/red] out of memory ({escape(message(exc)[:160])}): "
                      "ask for less at once: fewer --images, a smaller --popsize, "
                      "--input-size or --levels, or --batch-images 1")
    if code is None:
        return 1, (f"[red]error:[/red] internal error ({type(exc).__name__}: "
                   f"{escape(message(exc))}); rerun with --debug for the traceback and "
                   "report it")
    return code, f"[red]error:[/red] {escape(message(exc))}"


def _interrupted_line(exc: Interrupted) -> str:
    kept = getattr(exc, "kept", None) or STATE.get("interrupted")
    if kept == BEFORE_RUN:
        return escape(EARLY_MESSAGE.format(name=exc.args[0]))
    return (f"[yellow]interrupted[/yellow] ({escape(exc.args[0])}): "
            f"{escape(kept or 'nothing was written')}")


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation that failed (the request too large for the
    machine: a user's setting, not a bug)."""
    text = str(exc)
    return isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text.lower()))


def _from_pixelprior(exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc`` is pixelprior's own code (a message written
    for users) rather than a library's or Python's (an internal error)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and "/pixelprior/" in frames[-1].filename.replace("\\", "/")


def message(exc: BaseException) -> str:
    """One line of ``exc``'s message: ANSI escape codes removed, whitespace folded, and a
    very long message cut (``--debug`` shows all of it).

    Args:
        exc: any exception.

    Returns:
        The line (the exception's type name when it has no message).
    """
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, WeightsError):
        text = weights_summary(exc)
    return shorten(" ".join(ANSI.sub("", str(text)).split()) or type(exc).__name__)


def shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to about ``limit`` characters, saying how much was left out.

    Args:
        text: one line.
        limit: the most characters kept.

    Returns:
        ``text``, or its first ``limit`` characters and how many more there were.
    """
    if len(text) <= limit:
        return text
    return (f"{text[:limit].rstrip()} … ({len(text) - limit} more characters; --debug "
            "shows the whole message)")


_MISSING = r"Missing key\(s\) in state_dict: (.*?)\.\s*(?:\n|Unexpected|size mismatch|$)"
_UNEXPECTED = r"Unexpected key\(s\) in state_dict: (.*?)\.\s*(?:\n|size mismatch|$)"


def weights_summary(exc: BaseException) -> str:
    """A one-line account of a :class:`~pixelprior.models.WeightsError`: what the file
    holds and what to do, instead of the loader's pages of torch text.

    Args:
        exc: the error (its ``__cause__`` holds torch's own message).

    Returns:
        The line; the error's own text when it is of no known kind.
    """
    text = ANSI.sub("", str(exc))
    cause = ANSI.sub("", str(exc.__cause__)) if exc.__cause__ is not None else ""
    unfit = re.match(r"(?s)(.*?): weights do not fit (\S+):", text)
    if unfit and "Error(s) in loading state_dict" in cause:
        return _unfit_weights(*unfit.groups(), cause)
    unreadable = re.match(r"(?s)(.*?): not a readable PyTorch weights file", text)
    if unreadable:
        path = unreadable.group(1)
        pickled = re.search(r"Unsupported global: GLOBAL (\S+)", cause)
        if pickled:
            return (f"{path}: holds a pickled Python object ({pickled.group(1)}), not a "
                    "state_dict of tensors; safe loading (weights_only) will not run its "
                    "code. Save model.state_dict() with torch.save and pass that file")
        return (f"{path}: not a PyTorch weights file (torch.load cannot read it: damaged, "
                "or another kind of file); pass a state_dict saved with torch.save")
    return text


def _unfit_weights(path: str, name: str, cause: str) -> str:
    """Weights of another model: how many tensors are missing, unexpected or reshaped."""
    counts = []
    for label, pattern in (("missing", _MISSING), ("unexpected", _UNEXPECTED)):
        found = re.search(pattern, cause, re.S)
        if found:
            keys = re.findall(r'"([^"]+)"', found.group(1))
            counts.append(f"{len(keys)} {label} (e.g. {keys[0]})" if keys else "")
    shapes = re.findall(r"size mismatch for ([^:]+):", cause)
    if shapes:
        counts.append(f"{len(shapes)} of another shape (e.g. {shapes[0]})")
    found = ", ".join(c for c in counts if c) or "they differ"
    return (f"{path}: these weights are not for {name}: tensors {found}; pass the weights "
            f"of {name}, or the --model these weights belong to")


# --------------------------------------------------------------------------- interrupts
def on_interrupt(note: str | None) -> None:
    """What an interrupt of the running command leaves behind, in words.

    Args:
        note: ``None`` (the default) says nothing was written; :data:`BEFORE_RUN` says
            the run had not started and nothing was written (a run or scan, until it
            writes); any other text is said as it is.
    """
    STATE["interrupted"] = note


@contextlib.contextmanager
def finishing(done: str) -> Iterator[None]:
    """The last writes of a command: a signal during them waits until every file is
    written whole, then ends the command saying ``done``.

    Args:
        done: what was written, in words.

    Yields:
        Nothing; the writes run inside.

    Raises:
        Interrupted: a signal arrived during the writes (after them).
    """
    with Interrupts() as interrupts:
        try:
            with interrupts.critical():
                yield
        except Interrupted as exc:
            exc.kept = done
            raise
