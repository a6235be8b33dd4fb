"""Downloads that are checked before they count, and file checksums."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

from .base import CorruptDataError


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in 1 MiB chunks.

    Args:
        path: the file.
        algorithm: a :mod:`hashlib` name (``md5``, ``sha256`` ...).

    Returns:
        The lowercase hex digest.
    """
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def md5sum(path: Path) -> str:
    """Hex MD5 of a file.

    Args:
        path: the file.

    Returns:
        The lowercase hex digest.
    """
    return file_digest(path, "md5")


def sha256sum(path: Path) -> str:
    """Hex SHA-256 of a file.

    Args:
        path: the file.

    Returns:
        The lowercase hex digest.
    """
    return file_digest(path, "sha256")


def download_file(url: str, dest: Path, *, md5: str | None = None,
                  sha256: str | None = None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically with a progress bar and a checksum check.

    The file is written to ``dest.part`` and renamed only once its hash matches, so a
    broken download never leaves a file that looks complete.

    Args:
        url: what to fetch.
        dest: where the file goes.
        md5: the expected MD5 (a prefix is enough), or ``None``.
        sha256: the expected SHA-256 (a prefix is enough), or ``None``.
        timeout: seconds to wait for the server.

    Returns:
        ``dest``.

    Raises:
        OSError: the server cannot be reached or the transfer fails (nothing is left).
        CorruptDataError: a checksum mismatch (the download is deleted).
    """
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
        total = int(response.headers.get("Content-Length") or 0) or None
        dest.parent.mkdir(parents=True, exist_ok=True)  # only once the source answers
        try:
            with open(part, "wb") as f, Progress(
                *Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                transient=True,
            ) as bar:
                task = bar.add_task(f"download {dest.name}", total=total)
                while block := response.read(1 << 16):
                    f.write(block)
                    bar.update(task, advance=len(block))
        except BaseException:
            part.unlink(missing_ok=True)  # a broken download leaves nothing behind
            raise
    for name, expected, func in (("MD5", md5, md5sum), ("SHA-256", sha256, sha256sum)):
        if expected and not func(part).startswith(expected):
            part.unlink(missing_ok=True)
            raise CorruptDataError(f"{url}: {name} mismatch (expected {expected}); "
                                   "the download was deleted")
    os.replace(part, dest)
    return dest

