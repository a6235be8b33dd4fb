"""The machine a run ran on: versions and hardware, saved beside its results."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch


def environment(device: str = "cpu") -> dict:
    """Versions and hardware of this machine (``device``: the one the run uses)."""
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


def package_version() -> str:
    """The installed pixelprior version ("unknown" when not installed)."""
    try:
        from importlib.metadata import version

        return version("pixelprior")
    except Exception:  # pragma: no cover - not installed as a distribution
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"

