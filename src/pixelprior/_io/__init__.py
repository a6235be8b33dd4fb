"""Files that cannot tear: atomic writes, JSON Lines rows, run locks, interrupts.

Everything that writes results goes through here, one module per job:

- :mod:`~pixelprior._io.atomic` — :func:`atomic_write`, the one way a file is written
  whole or not at all; strict JSON; :class:`DiskFullError` (a full disk names the file
  and how to resume) and a folder that refuses writes named as such;
- :mod:`~pixelprior._io.rows` — :func:`append_rows` / :func:`read_rows`: JSON Lines
  written one row per ``write``; a torn last line dropped, damage elsewhere an error;
- :mod:`~pixelprior._io.lock` — :class:`RunLock`, an exclusive ``flock`` per run
  folder, and :func:`lock_holder` for readers;
- :mod:`~pixelprior._io.signals` — :class:`Interrupts`: SIGINT/SIGTERM end a run
  between rows, never inside a write; the early handlers of the command line;
- :mod:`~pixelprior._io.folders` — whether an output folder can hold results.

The terminal progress bar lives with the command line (:mod:`pixelprior.cli.progress`).
"""

from .atomic import (
    RESUME_HINT,
    DiskFullError,
    atomic_write,
    disk_full,
    dumps,
    not_writable,
    save_npz_atomic,
    strict,
    write_json_atomic,
    write_text_atomic,
)
from .folders import OutputLocationError, check_own_folder, check_writable_dir, foreign_entries
from .lock import LOCK_FILE, RunLock, RunLockedError, _read_holder, lock_holder  # noqa: F401
from .rows import CorruptResultsError, append_rows, check_unique, read_numbered_rows, read_rows
from .signals import (  # noqa: F401  (_early_handler: tests read it)
    EARLY_MESSAGE,
    Interrupted,
    Interrupts,
    _early_handler,
    early_signals_raise,
    install_early_signals,
    restore_early_signals,
)

__all__ = [
    "CorruptResultsError", "DiskFullError", "EARLY_MESSAGE", "Interrupted", "Interrupts",
    "LOCK_FILE", "OutputLocationError", "RESUME_HINT", "RunLock", "RunLockedError",
    "append_rows", "atomic_write", "check_own_folder", "check_unique", "check_writable_dir",
    "disk_full", "dumps",
    "early_signals_raise", "foreign_entries", "install_early_signals", "lock_holder",
    "not_writable", "read_numbered_rows", "read_rows", "restore_early_signals",
    "save_npz_atomic", "strict", "write_json_atomic", "write_text_atomic",
]
