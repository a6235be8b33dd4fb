"""Experiments: the configuration, modes, inputs, workers, the resumable runner, Ray and
exhaustive scans as runs.

A run directory holds ``config.json``, ``environment.json``, ``selection.json``,
``results.jsonl`` (one row per (seed, mode, image)) and ``maps/``; see
:mod:`pixelprior.experiment.rundir` (reading and checking a folder),
:mod:`pixelprior.experiment.rows` (the rows) and :mod:`pixelprior.experiment.runner`
(running and resuming).
"""

from __future__ import annotations

import importlib
import warnings

from .._io import (  # noqa: F401  (re-exported for readers of run directories)
    Interrupted,
    Interrupts,
    RunLock,
    append_rows,
    check_writable_dir,
    read_rows,
    write_json_atomic,
)
from .classes import fit_classes
from .config import (
    ConfigError,
    ConfigMismatchError,
    ExperimentConfig,
    device_problem,
    read_config_file,
    resolve_device,
)
from .cost import cost_lines, max_queries
from .distributed import WorkerMismatchError
from .environment import environment, package_version
from .inputs import (
    SelectionError,
    build_model,
    correctly_classified,
    data_classes,
    describe_inputs,
    input_size,
    load_dataset,
    load_model_of,
    scanned_positions,
    select_images,
)
from .modes import DE_MODES, SCAN_ORDERS, SENSITIVITIES, build_attack, modes_help, parse_mode
from .progress import NoProgress, ProgressReporter
from .rows import RESULTS, ROW_KEY, RowLimits, read_results, row_problem
from .rundir import ForeignRowError, InputsChangedError, read_run
from .runner import ExperimentRunner
from .scans import ScanMismatchError, check_scan_model, run_scan
from .verification import (
    VerificationMismatchError,
    exact_ground_truth,
    load_positions,
    run_verification,
)
from .worker import MAPS_DIR, GroupWorker, check_gradient_maps, load_maps, maps_path, save_maps

__all__ = [
    "ConfigError", "ConfigMismatchError", "DE_MODES", "ExperimentConfig",
    "ExperimentRunner", "ForeignRowError", "GroupWorker", "InputsChangedError", "MAPS_DIR",
    "NoProgress", "ProgressReporter", "RESULTS", "ROW_KEY", "RowLimits", "SCAN_ORDERS",
    "SENSITIVITIES", "ScanMismatchError", "SelectionError", "VerificationMismatchError",
    "WorkerMismatchError",
    "build_attack", "build_model", "check_gradient_maps", "check_scan_model",
    "correctly_classified", "cost_lines",
    "data_classes", "describe_inputs", "fit_classes", "device_problem", "environment",
    "exact_ground_truth", "input_size", "load_dataset", "load_maps", "load_model_of",
    "load_positions", "maps_path", "max_queries", "modes_help", "package_version",
    "parse_mode", "read_config_file", "read_results", "read_run", "resolve_device",
    "row_problem", "run_scan", "run_verification", "save_maps", "scanned_positions",
    "select_images",
]


def __getattr__(name: str):
    """``pixelprior.experiment.Progress``: the terminal bar moved to the command line
    (:mod:`pixelprior.cli.progress`); this old path resolves there for one release, with
    a warning. (Looked up by name at access, not imported: nothing in this package
    depends on the command line.)"""
    if name != "Progress":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn("pixelprior.experiment.Progress moved to pixelprior.cli.progress "
                  "(ProgressBar); this path goes in the next release", DeprecationWarning,
                  stacklevel=2)
    return importlib.import_module("pixelprior.cli.progress").Progress
