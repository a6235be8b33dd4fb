"""One run per folder: an exclusive ``flock`` on ``DIR/.lock`` held for the whole run.

The OS releases it when the process dies (even by SIGKILL), so a killed run never blocks
its resume; a second run on the folder stops at once, naming the holder. Readers (a
report) ask :func:`lock_holder` whether a run is writing there right now.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from .atomic import dumps

LOCK_FILE = ".lock"


class RunLockedError(RuntimeError):
    """Another process is writing into the run directory."""


class RunLock:
    """Exclusive lock on a run directory for the life of the ``with`` block.

    Args:
        directory: the run folder (created when missing).
        command: what holds the lock, said to a second run (default: this command line).
    """

    def __init__(self, directory: Path | str, command: str | None = None) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.command = command or " ".join(sys.argv)
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        """Take the lock and record the holder in the lock file.

        Raises:
            RunLockedError: another process holds it (the holder is named).
        """
        import fcntl

        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunLockedError(
                f"{self.directory} is in use by another run ({holder}); wait for it to "
                "finish or choose another output folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                            "command": self.command}).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock; the file stays (harmless)
            self.fd = None


def lock_holder(directory: Path | str) -> str | None:
    """Who holds the run lock of ``directory`` right now, without taking it for long.

    Args:
        directory: a run folder.

    Returns:
        The holder in words (pid, host, start, command), or ``None`` when no process holds
        the lock (no lock file, or a lock left by a process that ended).
    """
    import fcntl

    path = Path(directory) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return (f"pid {info.get('pid')} on {info.get('host')} since {info.get('started')}: "
                f"{info.get('command')}")
    except (OSError, ValueError):
        return "holder unknown"
