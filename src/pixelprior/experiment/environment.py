"""The machine a run ran on: versions and hardware, saved beside its results."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .._io import write_json_atomic


def environment(device: str = "cpu") -> dict:
    """Versions and hardware of this machine.

    Args:
        device: the device the run uses (a GPU is named, with its cuDNN settings).

    Returns:
        Python, torch, NumPy and pixelprior versions, platform, CPU model and capability,
        core and thread counts, the device and the start time.
    """
    import numpy

    env = {"python": platform.python_version(), "torch": torch.__version__,
           "numpy": numpy.__version__, "platform": platform.platform(),
           "processor": platform.processor() or platform.machine(),
           "cpu_model": _cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "cuda": torch.cuda.is_available(), "device": device,
           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
        env["cudnn_deterministic"] = torch.backends.cudnn.deterministic
        env["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    env["pixelprior"] = package_version()
    return env


@functools.cache
def package_version() -> str:
    """The installed pixelprior version, with the source revision where it runs from a
    git checkout (an editable install), so that rows written by two commits of one
    release are told apart.

    Returns:
        The version (``0.3.0``), ``0.3.0+g1a2b3c4`` from a checkout at that commit
        (``.dirty`` added where tracked files differ from it), or ``"unknown"`` when not
        installed as a distribution.
    """
    try:
        from importlib.metadata import version

        found = version("pixelprior")
    except Exception:  # pragma: no cover - not installed as a distribution
        return "unknown"
    # the whole package's files (experiment/ alone missed a changed search/verify.py)
    revision = source_revision(Path(__file__).resolve().parent.parent)
    return f"{found}+{revision}" if revision else found


def source_revision(directory: Path) -> str | None:
    """``g<short hash>`` of the git checkout that tracks the package in ``directory``
    (every file below it), with ``.dirty-<8 hex digits>`` added where its tracked files
    were changed: the digits hash the changes, so two different edits of one commit are
    told apart (a resume by other code, a Ray worker running other code); ``None``
    where no checkout tracks it (an installed copy, even in a virtual environment inside
    a checkout), or without git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(directory), *args], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()

    try:  # the package's own files tracked there (not a copy in an ignored venv)
        git("ls-files", "--error-unmatch", "__init__.py")
        short = git("rev-parse", "--short=7", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".")
        # the same edits, the same text on any machine (no user diff settings)
        changes = git("diff", "--no-ext-diff", "--no-color", "--full-index", "--no-renames",
                      "--src-prefix=a/", "--dst-prefix=b/", "HEAD", "--", ".") if dirty else ""
    except (OSError, subprocess.SubprocessError):
        return None
    if not dirty:
        return f"g{short}"
    return f"g{short}.dirty-{hashlib.sha256(changes.encode()).hexdigest()[:8]}"


def write_environment(directory: Path | str, device: str,
                      log: Callable[[str], None]) -> None:
    """``environment.json`` of this run, keeping those of the earlier runs that wrote
    into the folder (under ``earlier``).

    Args:
        directory: the run folder.
        device: the device of this run.
        log: told of an unreadable earlier record (kept aside) and of rows written by
            another pixelprior version.
    """
    path = Path(directory) / "environment.json"
    now = environment(device)
    old = _earlier_record(path, log)
    earlier: list = []
    if isinstance(old, dict):
        earlier = old.pop("earlier", [])
        earlier = (earlier if isinstance(earlier, list) else []) + [old]
        versions = sorted({str(e.get("pixelprior", "unknown")) for e in earlier
                           if isinstance(e, dict)} - {now["pixelprior"]})
        if versions:
            log(f"note: earlier rows in {directory} were written by pixelprior "
                f"{', '.join(versions)}; this run is {now['pixelprior']} (each row "
                "records its version)")
    write_json_atomic(path, {**now, "earlier": earlier})


def _earlier_record(path: Path, log: Callable[[str], None]) -> object:
    """The folder's earlier ``environment.json`` (``None``: none); an unreadable one is
    kept aside under another name, and said."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        aside = path.with_name(f"environment-unreadable-{time.strftime('%Y%m%d-%H%M%S')}"
                               ".json")
        os.replace(path, aside)
        log(f"note: {path} was not valid JSON; kept as {aside.name}, and a new one written")
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
