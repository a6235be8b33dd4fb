"""Files written whole or not at all, strict JSON, and the errors of a full disk or a
folder that cannot be written.

:func:`atomic_write` is the one way a file is written: a temporary file beside it, then
``os.replace``; :func:`write_json_atomic` (strict JSON: ``null``, never ``NaN``),
:func:`write_text_atomic` and :func:`save_npz_atomic` use it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .folders import OutputLocationError

RESUME_HINT = "rows written so far are kept; free space and run the same command to resume"
# errors that mean the folder itself refuses writes (permissions, a read-only mount)
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


class DiskFullError(OSError):
    """The disk (or the user's quota) is full: the message names the file being written
    and how to resume. What was written before stays whole (temporary files are removed,
    a row never tears).

    Args:
        path: the file that was being written.
        code: ``errno.ENOSPC`` or ``errno.EDQUOT``.
    """

    def __init__(self, path: Path | str, code: int = errno.ENOSPC) -> None:
        what = "disk quota exceeded" if code == getattr(errno, "EDQUOT", -1) else (
            "no space left on device")
        super().__init__(code, f"{what} writing {path}; {RESUME_HINT}")
        self.filename = str(path)

    def __str__(self) -> str:
        return self.strerror


def disk_full(exc: BaseException, path: Path | str) -> DiskFullError | None:
    """``exc`` as a :class:`DiskFullError` naming ``path`` when it says the disk (or the
    quota) is full.

    Args:
        exc: any exception raised while writing ``path``.
        path: the file being written.

    Returns:
        The :class:`DiskFullError`, or ``None`` for any other error.
    """
    if isinstance(exc, DiskFullError):
        return exc
    codes = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
    if isinstance(exc, OSError) and exc.errno in codes:
        return DiskFullError(path, exc.errno)
    return None


def not_writable(exc: BaseException, path: Path | str) -> OutputLocationError | None:
    """``exc`` as an :class:`OutputLocationError` naming the folder of ``path`` when the
    folder refuses writes (permissions, a read-only file system), instead of the name of
    a temporary file.

    Args:
        exc: any exception raised while writing ``path``.
        path: the file being written.

    Returns:
        The error naming the folder, or ``None`` for any other error.
    """
    if not (isinstance(exc, OSError) and exc.errno in NOT_WRITABLE):
        return None
    folder = Path(path).parent
    return OutputLocationError(
        f"{folder} is not writable ({os.strerror(exc.errno).lower()}), so "
        f"{Path(path).name} cannot be written there; make the folder writable, or copy it "
        "somewhere writable and use the copy")


# --------------------------------------------------------------------------- JSON
def strict(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (JSON has no NaN).

    Args:
        value: a JSON-like value (dicts, lists, tuples, numbers, NumPy scalars, ...).

    Returns:
        The same structure, ``NaN`` and infinities as ``None``, NumPy scalars as Python's.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalars
        return strict(value.item())
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """Strict JSON text of ``value``.

    Args:
        value: what to write (``NaN`` → ``null``; other objects via ``str``).
        **kwargs: passed to :func:`json.dumps` (``indent``, ...).

    Returns:
        The JSON text.
    """
    return json.dumps(strict(value), allow_nan=False, default=str, **kwargs)


@contextlib.contextmanager
def atomic_write(path: Path | str, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success it replaces
    ``path`` in one step, on any error it is removed (nothing half-written remains).

    The temporary name (``.NAME.tmp``) starts with a dot, so no reader's pattern that
    matches ``path`` matches it.

    Args:
        path: the file to write.
        mode: ``"wb"`` or ``"w"``.

    Yields:
        The open temporary file.

    Raises:
        DiskFullError: the disk or the quota is full (names ``path``).
        OutputLocationError: the folder refuses writes (names the folder).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        f = open(tmp, mode)  # noqa: SIM115 - closed below, before the replace
    except OSError as exc:  # the folder refuses the file: say so, not the temp name
        raise disk_full(exc, path) or not_writable(exc, path) or exc from None
    try:
        with f:
            yield f
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        full = disk_full(exc, path)
        if full is not None and full is not exc:
            raise full from None
        raise


def write_json_atomic(path: Path | str, value: object) -> None:
    """Write strict JSON to ``path`` atomically (:func:`atomic_write`).

    Args:
        path: the file.
        value: a JSON-like value (indented; ``NaN`` written as ``null``).
    """
    write_text_atomic(path, dumps(value, indent=2) + "\n")


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_write`).

    Args:
        path: the file.
        text: its whole content.
    """
    with atomic_write(path, "w") as f:
        f.write(text)


def save_npz_atomic(path: Path | str, compressed: bool = True, **arrays: Any) -> None:
    """Write a NumPy ``.npz`` archive atomically (:func:`atomic_write`).

    Args:
        path: the archive.
        compressed: ``np.savez_compressed`` (else ``np.savez``).
        **arrays: the arrays by name.
    """
    import numpy as np

    with atomic_write(path) as f:
        (np.savez_compressed if compressed else np.savez)(f, **arrays)
