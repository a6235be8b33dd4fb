"""Deprecated import path, kept for one release (0.3); it warns on import.

Its names live elsewhere now (mostly in ``pixelprior._io``);
import them from there.
"""

import warnings

from pixelprior._io import (
    LOCK_FILE,
    CorruptResultsError,
    Interrupted,
    Interrupts,
    OutputLocationError,
    RunLock,
    RunLockedError,
    _read_holder,
    append_rows,
    check_unique,
    check_writable_dir,
    dumps,
    read_rows,
    strict,
    write_json_atomic,
    write_text_atomic,
)
from pixelprior.cli.progress import Progress

__all__ = [
    "CorruptResultsError", "Interrupted", "Interrupts", "LOCK_FILE", "OutputLocationError",
    "Progress", "RunLock", "RunLockedError", "_read_holder", "append_rows", "check_unique",
    "check_writable_dir", "dumps", "read_rows", "strict", "write_json_atomic",
    "write_text_atomic",
]

warnings.warn("pixelprior.rundir moved (see pixelprior._io); this import "
              "path goes in pixelprior 0.4", DeprecationWarning, stacklevel=2)
