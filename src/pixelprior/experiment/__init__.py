"""Experiments: the configuration, modes, inputs, workers, the resumable runner, Ray and
exhaustive scans as runs.

A run directory holds ``config.json``, ``environment.json``, ``selection.json``,
``results.jsonl`` (one row per (seed, mode, image)) and ``maps/``; see
:mod:`pixelprior.experiment.runner`.
"""

from .._io import (  # noqa: F401  (re-exported for readers of run directories)
    Interrupted,
    Interrupts,
    Progress,
    RunLock,
    append_rows,
    check_writable_dir,
    read_rows,
    write_json_atomic,
)
from .config import (
    ConfigError,
    ConfigMismatchError,
    ExperimentConfig,
    device_problem,
    read_config_file,
    resolve_device,
)
from .environment import environment, package_version
from .inputs import (
    SelectionError,
    build_model,
    correctly_classified,
    describe_inputs,
    input_size,
    load_dataset,
    load_model_of,
    scanned_positions,
    select_images,
)
from .modes import DE_MODES, SCAN_ORDERS, SENSITIVITIES, build_attack, modes_help, parse_mode
from .runner import RESULTS, ROW_KEY, ExperimentRunner, read_results
from .scans import run_scan
from .worker import MAPS_DIR, GroupWorker, load_maps, maps_path, save_maps

__all__ = [
    "ConfigError", "ConfigMismatchError", "DE_MODES", "ExperimentConfig",
    "ExperimentRunner", "GroupWorker", "MAPS_DIR", "RESULTS", "ROW_KEY", "SCAN_ORDERS",
    "SENSITIVITIES", "SelectionError", "build_attack", "build_model",
    "correctly_classified", "describe_inputs", "device_problem", "environment",
    "input_size", "load_dataset", "load_maps", "load_model_of", "maps_path", "modes_help",
    "package_version", "parse_mode", "read_config_file", "read_results", "resolve_device",
    "run_scan", "save_maps", "scanned_positions", "select_images",
]
