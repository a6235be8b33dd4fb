"""Output folders: whether one can hold results, and which of its entries are someone
else's."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


class OutputLocationError(ValueError):
    """The output folder cannot hold results (a file is there, or it is not writable)."""


def foreign_entries(directory: Path | str, own: Callable[[str, bool], bool]) -> list[str]:
    """Names of the entries of ``directory`` that ``own`` does not claim.

    Args:
        directory: the folder (missing: no entries).
        own: ``own(name, is_dir)`` is true for the entries that belong there.

    Returns:
        The other entries' names, sorted.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(entry.name for entry in directory.iterdir()
                  if not own(entry.name, entry.is_dir()))


def check_writable_dir(directory: Path | str) -> None:
    """Fail before any work if ``directory`` cannot hold results. Creates nothing.

    Args:
        directory: the output folder (it need not exist yet).

    Raises:
        OutputLocationError: a file is there, or the folder (or, when it does not exist
            yet, its nearest existing parent) is not writable.
    """
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
