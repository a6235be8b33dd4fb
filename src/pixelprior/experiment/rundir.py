"""Run folders: reading and checking what a run recorded, and the ``--force`` policy.

A run folder holds ``config.json`` (the config, its hash, a hash per field, the model's
fingerprint), ``selection.json`` (the images: dataset indices, positions, a fingerprint
per image, their shape and the model's number of classes), ``results.jsonl`` and
``maps/``. Whoever reads a folder (:func:`read_run`: the report, every export, a resume)
checks:

- ``config.json``: valid, its config builds and gives its own hash (an edited field is
  named from the per-field hashes);
- ``selection.json``: valid, one index per image;
- every row of ``results.jsonl`` by type and value (:mod:`~pixelprior.experiment.rows`)
  and against the run (:class:`RunRows`): its config hash, seeds, modes and images. A
  row of another run is refused, naming its line and the file, never counted. Rows of
  the *same* configuration with another number of ``images`` are the same attacks on
  the same images, and are kept;
- what the run ran on (:func:`inputs_problem`): the model's fingerprint and each
  image's, recomputed by a resume and a report. Folders made before fingerprints were
  recorded say so (:func:`unrecorded`) and are read as before.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._io import CorruptResultsError, OutputLocationError, check_unique, foreign_entries
from .._io import read_numbered_rows as _read_numbered_rows
from ..data.nips17 import PUBLISHED_SIZE
from ..models import MODELS, model_spec
from .config import ConfigError, ExperimentConfig
from .rows import RESULTS, ROW_KEY, RowLimits, row_fields, row_problem, shown
from .worker import MAPS_DIR

FIGURES = ("pipeline", "examples", "success_vs_queries", "generations_hist")
# pixelprior's own files in a run folder: what --force moves aside, and what a folder may
# hold without being someone else's
RUN_FILES = frozenset({"config.json", "environment.json", "selection.json", RESULTS,
                       "report.md", "table.csv", "summary.json", "paper_accounting.csv",
                       "results.csv", "results.parquet", "robustness.csv", ".lock",
                       MAPS_DIR} | {
    f"{name}.{ext}" for name in (*FIGURES, "robustness") for ext in ("png", "pdf")})
ASIDE = re.compile(r"old-\d{8}-\d{6}(-\d+)?$")
NEUTRAL = frozenset({".gitignore", ".DS_Store"})  # neither a run's nor a user's work
FORCE_HINT = "pass --force to move the old run's files aside and start afresh"


class ForeignRowError(CorruptResultsError):
    """A row of ``results.jsonl`` belongs to another run (another config hash, seed, mode
    or image than the folder's run)."""


class InputsChangedError(CorruptResultsError):
    """The model or an image the run attacked is no longer what the run recorded."""


# --------------------------------------------------------------------------- records
def read_record(directory: Path | str) -> dict | None:
    """``config.json`` of a run folder, checked.

    Args:
        directory: the run folder.

    Returns:
        ``{"hash": str, "config": {...}, "experiment": ExperimentConfig, ...}`` (with
        ``field_hashes`` and ``model_fingerprint`` where recorded), or ``None`` when the
        folder has no ``config.json``.

    Raises:
        CorruptResultsError: not JSON, not a run's record, a config that does not build,
            or fields that no longer give the recorded hash (an edit, named).
    """
    path = Path(directory) / "config.json"
    if not path.is_file():
        return None
    value = _read_json(path, "it records the configuration of the run in this folder")
    if not isinstance(value, dict) or not isinstance(value.get("config"), dict):
        raise CorruptResultsError(f"{path}: not a run's config.json (an object with "
                                  "\"hash\" and \"config\"); restore it, or move the folder's "
                                  "files aside")
    if not isinstance(value.get("hash"), str) or not value["hash"]:
        raise CorruptResultsError(f"{path}: \"hash\" must be the config's hash (a string), "
                                  f"got {shown(value.get('hash'))}; restore the file")
    try:
        value["experiment"] = ExperimentConfig.from_dict(value["config"])
    except ConfigError as exc:
        raise CorruptResultsError(f"{path}: {exc}; restore the file (it records what ran)"
                                  ) from None
    _check_own_hash(path, value)
    return value


def _check_own_hash(path: Path, record: dict) -> None:
    """The recorded config gives the recorded hash (or the hash earlier releases wrote
    for it); otherwise a field was edited after the run, and it is named."""
    config: ExperimentConfig = record["experiment"]
    if record["hash"] in (config.digest(), config.digest(prior_versions=False)):
        return
    recorded = record.get("field_hashes")
    changed = _changed_fields(config, recorded) if isinstance(recorded, dict) else []
    what = (f"the config field{'s' if len(changed) > 1 else ''} "
            f"{', '.join(f'`{name}`' for name in changed)} {'were' if len(changed) > 1 else 'was'}"
            if changed else "a field of the config was")
    raise CorruptResultsError(f"{path}: {what} changed after the run (its fields no longer "
                              f"give the recorded hash {record['hash']}); restore the file "
                              "(it records what ran)")


def _changed_fields(config: ExperimentConfig, recorded: dict) -> list[str]:
    now = config.field_hashes()
    return sorted(name for name in set(now) | set(recorded) if now.get(name) != recorded.get(name))


def config_record(config: ExperimentConfig, model_fingerprint: str | None) -> dict:
    """What ``config.json`` records.

    Args:
        config: the run's config.
        model_fingerprint: the model's fingerprint (``None``: not known).

    Returns:
        ``{"hash", "config", "field_hashes", "model_fingerprint"}``.
    """
    record = {"hash": config.digest(), "config": config.to_dict(),
              "field_hashes": config.field_hashes()}
    if model_fingerprint is not None:
        record["model_fingerprint"] = model_fingerprint
    return record


def read_selection(directory: Path | str) -> dict | None:
    """``selection.json`` of a run folder, checked.

    Args:
        directory: the run folder.

    Returns:
        The selection (``indices`` and ``positions``: lists of distinct non-negative
        integers of one length; ``fingerprints``, ``image_shape``, ``num_classes`` where
        recorded), or ``None`` when there is none.

    Raises:
        CorruptResultsError: not JSON, the wrong types, lists of unequal length, or an
            index given to two images.
    """
    path = Path(directory) / "selection.json"
    if not path.is_file():
        return None
    value = _read_json(path, "it records the images of the run; delete it to have them "
                             "chosen again (the choice is deterministic)")
    if not isinstance(value, dict):
        raise CorruptResultsError(f"{path}: not a selection (an object with \"indices\" and "
                                  "\"positions\"); delete it to have the images chosen again")
    for name in ("indices", "positions"):
        items = value.get(name)
        if not (isinstance(items, list) and all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in items)):
            raise CorruptResultsError(f"{path}: {name} must be a list of integers >= 0, got "
                                      f"{shown(items)}; delete the file to have the images "
                                      "chosen again")
    _check_one_index_per_image(path, value)
    _check_recorded_lists(path, value)
    return value


def _check_one_index_per_image(path: Path, selection: dict) -> None:
    """Rows are keyed by the image's index: an index given to two images would mix their
    rows, and choosing the images again gives the same repeat (the data repeats it)."""
    if len(selection["indices"]) != len(selection["positions"]):
        raise CorruptResultsError(f"{path}: indices and positions differ in length; delete "
                                  "the file to have the images chosen again")
    if len(set(selection["positions"])) != len(selection["positions"]):
        raise CorruptResultsError(f"{path}: positions repeat an image; delete the file to "
                                  "have the images chosen again")
    seen: set[int] = set()
    repeated = next((i for i in selection["indices"] if i in seen or seen.add(i)), None)
    if repeated is not None:
        raise CorruptResultsError(
            f"{path}: index {repeated} is given to more than one image, so their rows "
            "cannot be told apart (the data repeats the index: an .npz `indices` array, or "
            "a CSV listing a file twice). Give each image its own index in the data, then "
            f"run again with --force to start afresh; these rows cannot be reported")


def _check_recorded_lists(path: Path, selection: dict) -> None:
    prints = selection.get("fingerprints")
    if prints is not None and not (isinstance(prints, list) and len(prints) == len(
            selection["indices"]) and all(isinstance(p, str) for p in prints)):
        raise CorruptResultsError(f"{path}: fingerprints must be a list of strings, one per "
                                  "image; restore the file")
    shape = selection.get("image_shape")
    if shape is not None and not (isinstance(shape, list) and len(shape) == 3 and all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
        raise CorruptResultsError(f"{path}: image_shape must be [channels, height, width], "
                                  f"got {shown(shape)}; restore the file")
    classes = selection.get("num_classes")
    if classes is not None and not (isinstance(classes, int) and classes > 0):
        raise CorruptResultsError(f"{path}: num_classes must be a positive integer, got "
                                  f"{shown(classes)}; restore the file")


def _read_json(path: Path, why: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptResultsError(f"{path}: not valid JSON ({exc}); {why}") from None


# --------------------------------------------------------------------------- inputs
def unrecorded(record: dict, selection: dict | None) -> list[str]:
    """What a run folder made by an earlier version does not record (so is not checked).

    Args:
        record: ``config.json`` (:func:`read_record`).
        selection: ``selection.json`` (:func:`read_selection`; ``None``: not asked).

    Returns:
        E.g. ``["the model's fingerprint", "the images' fingerprints"]``.
    """
    missing = []
    if "model_fingerprint" not in record:
        missing.append("the model's fingerprint")
    if selection is not None and "fingerprints" not in selection:
        missing.append("the images' fingerprints")
    return missing


def model_in_words(config: ExperimentConfig) -> str:
    """The model of a run as a person finds it: the file, or the weights file, or the
    registered name.

    Args:
        config: the run's config.

    Returns:
        E.g. ``"the model file net.pt"``.
    """
    if Path(config.model).expanduser().is_file():
        return f"the model file {config.model}"
    if config.weights:
        return f"the weights file {config.weights} (of {config.model})"
    return f"the model {config.model} (its weights)"


def inputs_problem(config: ExperimentConfig, record: dict, selection: dict,
                   model_fingerprint: str | None, image_fingerprints: list[str] | None
                   ) -> str | None:
    """What changed since the run recorded its model and images (``None``: nothing, or
    nothing recorded to compare with): :func:`model_problem`, then
    :func:`images_problem`.

    Args:
        config: the run's config.
        record: its ``config.json``.
        selection: its ``selection.json``.
        model_fingerprint: the model's fingerprint now (``None``: not checked).
        image_fingerprints: the selected images' fingerprints now, in the selection's
            order (``None``: not checked).

    Returns:
        One phrase naming what changed (the model file, image N of the selection).
    """
    return (model_problem(config, record, model_fingerprint)
            or images_problem(config, selection, image_fingerprints))


def model_problem(config: ExperimentConfig, record: dict, fingerprint: str | None
                  ) -> str | None:
    """Whether the model is still the one the run recorded.

    Args:
        config: the run's config.
        record: its ``config.json``.
        fingerprint: the model's fingerprint now (``None``: not checked).

    Returns:
        One phrase naming the model file (or weights) that changed, or ``None``.
    """
    was = record.get("model_fingerprint")
    if fingerprint is None or was is None or was == fingerprint:
        return None
    return (f"{model_in_words(config)} changed since the run used it (fingerprint {was}, "
            f"now {fingerprint})")


def images_problem(config: ExperimentConfig, selection: dict,
                   fingerprints: list[str] | None) -> str | None:
    """Whether the selected images are still those the run attacked.

    Args:
        config: the run's config.
        selection: its ``selection.json``.
        fingerprints: the selected images' fingerprints now (``None``: not checked).

    Returns:
        One phrase naming the first image that changed (image N of the selection), or
        ``None``.
    """
    before = selection.get("fingerprints")
    if fingerprints is None or before is None:
        return None
    changed = [n for n, (old, new) in enumerate(zip(before, fingerprints, strict=True))
               if old != new]
    if not changed:
        return None
    more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
    first = changed[0]
    return (f"image {first + 1} of the selection (index {selection['indices'][first]}) "
            f"changed since the run attacked it{more}: the data "
            f"({config.data or config.dataset}) holds other pixels there now")


def positions_problem(selection: dict, dataset_size: int) -> str | None:
    """Whether the selection's positions still lie in the data (it may have shrunk).

    Args:
        selection: the run's selection.
        dataset_size: how many images the data holds now.

    Returns:
        One phrase, or ``None``.
    """
    outside = [n for n, p in enumerate(selection["positions"]) if p >= dataset_size]
    if not outside:
        return None
    return (f"image {outside[0] + 1} of the selection (position "
            f"{selection['positions'][outside[0]]}) is not in the data any more (it holds "
            f"{dataset_size} images)")


# --------------------------------------------------------------------------- rows
def run_limits(config: ExperimentConfig, selection: dict) -> RowLimits:
    """The image size, channels and classes a run's rows must lie within: recorded in
    ``selection.json``, else known from a registered model (runs of earlier versions).

    Args:
        config: the run's config.
        selection: its selection.

    Returns:
        The limits (``None`` where not known).
    """
    shape = selection.get("image_shape")
    if shape is not None:
        return RowLimits(shape[1], shape[2], shape[0], selection.get("num_classes"))
    if config.model not in MODELS or config.classes or config.input_size:
        return RowLimits(classes=selection.get("num_classes"))
    spec = model_spec(config.model)
    side = PUBLISHED_SIZE if config.resize_inside else spec.input_size
    return RowLimits(side, side, 3, selection.get("num_classes") or len(spec.class_names()))


class RunRows:
    """Checks rows against the run that owns a folder (its hash, seeds, modes, images and
    limits).

    Args:
        run_hash: the run's config hash.
        config: its config.
        selection: its selection.
    """

    def __init__(self, run_hash: str, config: ExperimentConfig, selection: dict) -> None:
        self.run_hash = run_hash
        self.config = config
        self.images = set(selection["indices"])
        self.dataset_size = selection.get("dataset_size")
        self.limits = run_limits(config, selection)
        self._fields = row_fields()
        self._hashes: dict[str, bool] = {run_hash: True}

    def same_run(self, digest: str) -> bool:
        """Whether rows with config hash ``digest`` are this run's.

        Args:
            digest: a row's ``config_hash``.

        Returns:
            True for the run's own hash, or the hash of this config with another number
            of images (the same attacks).
        """
        if digest not in self._hashes:
            most = self.dataset_size if isinstance(self.dataset_size, int) else 10_000
            self._hashes[digest] = self.config.digest() == self.run_hash and any(
                dataclasses.replace(self.config, images=n).digest() == digest
                for n in range(1, max(most, self.config.images) + 1))
        return self._hashes[digest]

    def problem(self, row: dict) -> tuple[str, bool] | None:
        """What is wrong with one row.

        Args:
            row: the row.

        Returns:
            ``(what is wrong, whether the row is another run's)``, or ``None``.
        """
        damaged = row_problem(row, self.limits, self._fields)
        if damaged:
            return damaged, False
        config = self.config
        if not self.same_run(row["config_hash"]):
            return (f"a row of another run (config hash {row['config_hash']}; this run's is "
                    f"{self.run_hash})"), True
        if row["seed"] not in config.seeds:
            return (f"seed {row['seed']} is not a seed of this run (seeds "
                    f"{config.seeds})"), True
        if row["mode"] not in config.modes:
            return (f"mode {row['mode']!r} is not a mode of this run (modes "
                    f"{', '.join(config.modes)})"), True
        if row["image_index"] not in self.images:
            return (f"image {row['image_index']} is not one of this run's "
                    f"{len(self.images)} images (selection.json)"), True
        return None

    def check(self, numbered: list[tuple[int, dict]], path: Path) -> None:
        """Refuse the rows if any is damaged or another run's, or if two rows share a
        (seed, mode, image).

        Args:
            numbered: ``(line number, row)`` pairs (:func:`~pixelprior._io.read_numbered_rows`).
            path: the file, named in the refusal.

        Raises:
            ForeignRowError: a row of another run (the first named, with its line).
            CorruptResultsError: a damaged row (likewise), or duplicate rows.
        """
        found = [(n, p) for n, row in numbered if (p := self.problem(row)) is not None]
        if not found:
            check_unique([row for _, row in numbered], ROW_KEY, path, [n for n, _ in numbered])
            return
        number, (problem, foreign) = found[0]
        more = f" ({len(found) - 1} more such rows)" if len(found) > 1 else ""
        if foreign:
            raise ForeignRowError(f"{path} line {number}: {problem}{more}; it would be counted "
                                  "as this run's. Remove the line (or move it to the folder "
                                  "of its own run)")
        raise CorruptResultsError(f"{path} line {number}: damaged row: {problem}{more}; repair "
                                  "or remove the line")


def read_run(directory: str | Path) -> tuple[list[dict], ExperimentConfig, dict]:
    """The rows of a run folder with its config and selection, every record and row
    checked (:func:`read_record`, :func:`read_selection`, :class:`RunRows`).

    Args:
        directory: the run folder.

    Returns:
        ``(rows, config, selection)``.

    Raises:
        FileNotFoundError: no ``config.json`` (not a run folder).
        CorruptResultsError: a damaged file, or a row of another run (its line named).
    """
    directory = Path(directory)
    record = read_record(directory)
    if record is None:
        raise FileNotFoundError(f"{directory} is not a run directory (no config.json)")
    selection = read_selection(directory)
    if selection is None:
        raise CorruptResultsError(f"{directory / 'selection.json'} is missing: it records "
                                  "the images of the run; run the same `pixelprior "
                                  "reproduce` command to write it again")
    path = directory / RESULTS
    numbered = _read_numbered_rows(path)
    RunRows(record["hash"], record["experiment"], selection).check(numbered, path)
    return [row for _, row in numbered], record["experiment"], selection


# --------------------------------------------------------------------------- policy
def is_run_file(name: str, is_dir: bool) -> bool:
    """Whether an entry of a run folder is pixelprior's own.

    Args:
        name: the entry's name.
        is_dir: whether it is a folder.

    Returns:
        True for :data:`RUN_FILES`, earlier runs moved aside and temporary files.
    """
    return (name in RUN_FILES or (is_dir and bool(ASIDE.match(name)))
            or (name.startswith(".") and name.endswith(".tmp"))
            or name.startswith("environment-unreadable-"))


def check_foreign_folder(out: Path, config_file: Path | None) -> None:
    """Before any work: a folder holding files and no run is someone else's; refuse to
    mix the results in.

    Args:
        out: the run folder.
        config_file: the config file of the command (lying in ``out``, it is not someone
            else's file there).

    Raises:
        OutputLocationError: the folder holds other files and no run.
    """
    if (out / "config.json").exists():
        return
    mine = (config_file.name if config_file is not None and out.is_dir()
            and config_file.resolve().parent == out.resolve() else None)
    foreign = [name for name in foreign_entries(out, is_run_file)
               if name != mine and name not in NEUTRAL]
    if foreign:
        shown_names = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
        raise OutputLocationError(
            f"--out {out} is not empty and holds no pixelprior run ({shown_names}); "
            "choose an empty or new folder, or pass --force to run there (your files "
            "stay where they are)")


def move_aside(out: Path, log: Callable[[str], None]) -> bool:
    """``--force``: pixelprior's own files of the old run — results, config,
    environment, maps, report and figures — move into ``old-STAMP/`` beside the new run,
    whole; other files in the folder stay where they are.

    Args:
        out: the run folder.
        log: told where the files went.

    Returns:
        Whether anything was moved.
    """
    entries = [entry for entry in out.iterdir()
               if entry.name != ".lock" and not ASIDE.match(entry.name)
               and is_run_file(entry.name, entry.is_dir())]
    if not entries:
        return False
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = out / f"old-{stamp}"
    n = 1
    while aside.exists():
        aside, n = out / f"old-{stamp}-{n}", n + 1
    aside.mkdir()
    for entry in entries:
        os.replace(entry, aside / entry.name)
    log(f"note: the earlier run's files ({len(entries)}) were moved into {aside}")
    return True


def force_hint(exc: Exception) -> Exception:
    """``exc`` (a refusal of the folder's old files) with how ``--force`` starts afresh.

    Args:
        exc: the refusal.

    Returns:
        The same kind of error, its message ending with the hint (other errors as they
        are).
    """
    if not isinstance(exc, CorruptResultsError) or "--force" in str(exc):
        return exc
    text = str(exc).rstrip()
    joint = " Or" if text.endswith(".") else "; or"
    return type(exc)(f"{text}{joint} {FORCE_HINT}")
