"""Output folders: whether one can hold results, and which of its entries are someone
else's."""

from __future__ import annotations

import os
import tempfile
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


def check_own_folder(directory: Path | str, marker: str, own_names: frozenset[str] | set[str],
                     what: str) -> None:
    """Refuse a folder that holds other files and not ``marker`` (what this kind of folder
    writes first): they would be mixed with its results. Temporary files of an atomic
    write (``.NAME.tmp``) belong to any folder.

    Args:
        directory: the output folder (missing: nothing to refuse).
        marker: the file that makes the folder one of this kind (``maps.npz``).
        own_names: the entries this kind of folder writes.
        what: the kind of folder, in words (``a scan``).

    Raises:
        OutputLocationError: other files, and no ``marker``.
    """
    directory = Path(directory)
    if (directory / marker).is_file():
        return
    foreign = foreign_entries(directory, lambda name, is_dir: name in own_names or (
        name.startswith(".") and name.endswith(".tmp")))
    if foreign:
        shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
        raise OutputLocationError(f"--out {directory} holds other files ({shown}) and no "
                                  f"{what}; choose an empty or new folder")


def check_writable_dir(directory: Path | str) -> None:
    """Fail before any work if ``directory`` cannot hold results. Creates no folder (a
    probe file is made in the nearest existing folder and removed at once).

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
    if not os.access(probe, os.W_OK | os.X_OK) or not _can_create_in(probe):
        raise OutputLocationError(f"cannot write into {probe}; choose another output folder")


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be made in ``folder``: tried (and removed at once), as
    ``os.access`` says yes to root everywhere, read-only mounts and ``/proc`` included."""
    try:  # named as an atomic write's temporary file: any folder kind tolerates one
        handle, name = tempfile.mkstemp(prefix=".pixelprior-probe-", suffix=".tmp",
                                        dir=folder)
    except OSError:
        return False
    os.close(handle)
    try:
        os.unlink(name)
    except OSError:
        pass  # (an append-only folder: writable; the empty probe stays)
    return True
