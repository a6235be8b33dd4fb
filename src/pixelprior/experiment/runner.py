"""Experiment runner: the paper's tables as resumable, append-only runs.

A run directory holds:

- ``config.json`` — the :class:`~pixelprior.experiment.ExperimentConfig` that ran, and its hash;
- ``environment.json`` — versions, device, CPU/GPU name, start time;
- ``selection.json`` — the dataset indices attacked (and how they were chosen);
- ``results.jsonl`` — one JSON line per (seed, mode, image), appended as each group of
  images finishes (:func:`pixelprior._io.append_rows`);
- ``maps/`` — each attacked image's sensitivity map and start set (or scan order), saved
  before its rows, so figures draw what the run did without rebuilding the model.

Rerunning the same command resumes: finished (seed, mode, image) rows are skipped and an
unfinished last line is completed or dropped. One run per folder (an exclusive lock); a
changed config refuses to mix into an old directory unless ``force=True``, which moves
pixelprior's own files of the old run into ``old-STAMP/`` (other files stay). A folder
holding other files and no run is refused (``force=True`` runs there, leaving them be).
Work runs in this process or, with ``workers > 1``, on Ray
(:mod:`pixelprior.experiment.distributed`); either way this process is the one writer, so
locking, resume and uniqueness hold unchanged.

**Every row belongs to its run.** Whoever reads a folder (:func:`read_run`: the report,
every export, a resume) checks each row of ``results.jsonl`` by type
(:data:`ROW_FIELDS`) and against the run that owns the folder: its config hash (the
``hash`` of ``config.json``), its seeds and modes (``config.json``) and its images
(``selection.json``). A row of another run is refused, naming its line and the file,
never counted. The one exception: rows of the *same* configuration with another number
of ``images`` (a run grown or shrunk while its ``config.json`` was lost) are the same
attacks on the same images, and are kept.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from .._io import (
    CorruptResultsError,
    Interrupts,
    OutputLocationError,
    Progress,
    RunLock,
    append_rows,
    check_unique,
    check_writable_dir,
    foreign_entries,
    read_numbered_rows,
    read_rows,
    write_json_atomic,
)
from .._streams import image_key
from ..data import to_float
from ..models import model_spec
from ..search.fast import MAX_RECHECKED
from .config import ConfigError, ConfigMismatchError, ExperimentConfig
from .distributed import ray_groups
from .environment import environment
from .inputs import PUBLISHED_SIZE, select_images
from .modes import build_attack, parse_mode
from .scans import cost_lines
from .worker import MAPS_DIR, GroupWorker, _maps_of, load_maps, save_maps

RESULTS = "results.jsonl"
ROW_KEY = ("seed", "mode", "image_index")
FIGURES = ("pipeline", "examples", "success_vs_queries", "generations_hist")
# pixelprior's own files in a run folder: what --force moves aside, and what a folder may
# hold without being someone else's
RUN_FILES = frozenset({"config.json", "environment.json", "selection.json", RESULTS,
                       "report.md", "table.csv", "summary.json", "paper_accounting.csv",
                       "results.csv", "results.parquet", ".lock", MAPS_DIR} | {
    f"{name}.{ext}" for name in FIGURES for ext in ("png", "pdf")})
ASIDE = re.compile(r"old-\d{8}-\d{6}(-\d+)?$")
NEUTRAL = frozenset({".gitignore", ".DS_Store"})  # neither a run's nor a user's work


class ForeignRowError(CorruptResultsError):
    """A row of ``results.jsonl`` belongs to another run (another config hash, seed, mode
    or image than the folder's run)."""


# --------------------------------------------------------------------------- rows
# field -> (type, required); types: int, number, bool, str, pixels; "?" allows null
ROW_FIELDS: dict[str, tuple[str, bool]] = {
    "seed": ("int", True), "mode": ("str", True), "image_index": ("int", True),
    "success": ("bool", True), "true_label": ("int", True),
    "adversarial_label": ("int", True), "pixels": ("pixels", True),
    "queries": ("int", True), "seconds": ("number", True), "support_size": ("int", True),
    "config_hash": ("str", True),
    "original_label": ("int", False), "target": ("int?", False),
    "true_probability": ("number?", False), "target_probability": ("number?", False),
    "generations": ("int?", False), "positions_scanned": ("int?", False),
    "prior": ("str", False), "fell_back": ("bool", False), "clean_correct": ("bool", False),
    "x": ("int", False), "y": ("int", False), "group_seconds": ("number", False),
    "group_size": ("int", False), "finished": ("number", False), "device": ("str", False),
    "engine": ("str", False), "chunk_rows": ("int?", False), "version": ("str", False),
}
_KINDS = {"int": "an integer", "number": "a number", "bool": "true or false",
          "str": "a string"}
NON_NEGATIVE = ("seed", "image_index", "queries", "seconds", "support_size", "generations",
                "positions_scanned", "true_label", "adversarial_label")


def _fits(value, kind: str) -> bool:
    if kind.endswith("?"):
        return value is None or _fits(value, kind[:-1])
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
    if kind == "bool":
        return isinstance(value, bool)
    return isinstance(value, str)


def _shown(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def row_problem(row: dict) -> str | None:
    """What is wrong with the fields of one ``results.jsonl`` row (``None``: nothing).
    Every field a reader uses is checked by type; unknown fields are left alone."""
    for name, (kind, required) in ROW_FIELDS.items():
        if name not in row:
            if required:
                return f"the field {name!r} is missing"
            continue
        value = row[name]
        if kind == "pixels":
            problem = _pixels_problem(value)
            if problem:
                return problem
            continue
        if not _fits(value, kind):
            wanted = _KINDS[kind.rstrip("?")] + (" or null" if kind.endswith("?") else "")
            return f"{name} must be {wanted}, got {_shown(value)}"
        if name in NON_NEGATIVE and value is not None and value < 0:
            return f"{name} must be >= 0, got {_shown(value)}"
    if row["success"] and row.get("clean_correct", True) and not row["pixels"]:
        return "a success that changed no pixel (pixels is empty)"
    return None


def _pixels_problem(value) -> str | None:
    if not isinstance(value, list):
        return f"pixels must be a list of {{x, y, old, new}}, got {_shown(value)}"
    for n, pixel in enumerate(value):
        if not isinstance(pixel, dict) or not {"x", "y", "old", "new"} <= set(pixel):
            return f"pixels[{n}] must be an object with x, y, old and new, got {_shown(pixel)}"
        for axis in ("x", "y"):
            if not _fits(pixel[axis], "int") or pixel[axis] < 0:
                return f"pixels[{n}].{axis} must be an integer >= 0, got {_shown(pixel[axis])}"
        for colour in ("old", "new"):
            values = pixel[colour]
            if not (isinstance(values, list) and values
                    and all(_fits(v, "number") for v in values)):
                return (f"pixels[{n}].{colour} must be a list of numbers (a colour), got "
                        f"{_shown(values)}")
    return None


def read_results(path: Path, repair: bool = False) -> list[dict]:
    """Rows of a ``results.jsonl`` (unfinished last line completed or dropped; corrupt
    lines elsewhere and duplicate (seed, mode, image) rows are errors). The rows are not
    checked against a run here: :func:`read_run` does that."""
    return read_rows(path, repair=repair, key=ROW_KEY)


# --------------------------------------------------------------------------- records
def read_record(directory: Path) -> dict | None:
    """``config.json`` of a run folder, checked: ``{"hash": str, "config": {...}}`` with
    a config that builds (``None`` when there is none)."""
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
                                  f"got {_shown(value.get('hash'))}; restore the file")
    try:
        value["experiment"] = ExperimentConfig.from_dict(value["config"])
    except ConfigError as exc:
        raise CorruptResultsError(f"{path}: {exc}; restore the file (it records what ran)"
                                  ) from None
    return value


def read_selection(directory: Path) -> dict | None:
    """``selection.json`` of a run folder, checked: ``indices`` and ``positions`` lists
    of distinct non-negative integers of one length (``None`` when there is none)."""
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
        if not (isinstance(items, list) and all(_fits(i, "int") and i >= 0 for i in items)):
            raise CorruptResultsError(f"{path}: {name} must be a list of integers >= 0, got "
                                      f"{_shown(items)}; delete the file to have the images "
                                      "chosen again")
        if len(set(items)) != len(items):
            raise CorruptResultsError(f"{path}: {name} repeat an image; delete the file to "
                                      "have the images chosen again")
    if len(value["indices"]) != len(value["positions"]):
        raise CorruptResultsError(f"{path}: indices and positions differ in length; delete "
                                  "the file to have the images chosen again")
    return value


def _read_json(path: Path, why: str):
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptResultsError(f"{path}: not valid JSON ({exc}); {why}") from None


class RunRows:
    """Checks rows against the run that owns a folder (its hash, seeds, modes, images)."""

    def __init__(self, run_hash: str, config: ExperimentConfig, selection: dict) -> None:
        self.run_hash = run_hash
        self.config = config
        self.images = set(selection["indices"])
        self.dataset_size = selection.get("dataset_size")
        self._hashes: dict[str, bool] = {run_hash: True}

    def same_run(self, digest: str) -> bool:
        """Whether rows with config hash ``digest`` are this run's: the run's own hash, or
        the hash of this config with another number of images (the same attacks)."""
        if digest not in self._hashes:
            most = self.dataset_size if isinstance(self.dataset_size, int) else 10_000
            self._hashes[digest] = self.config.digest() == self.run_hash and any(
                dataclasses.replace(self.config, images=n).digest() == digest
                for n in range(1, max(most, self.config.images) + 1))
        return self._hashes[digest]

    def problem(self, row: dict) -> tuple[str, bool] | None:
        """``(what is wrong, whether the row is another run's)`` or ``None``."""
        damaged = row_problem(row)
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
        """Refuse the rows if any is damaged or another run's — one line naming the first
        such row (its line) and the file, and how many more there are — or if two rows
        share a (seed, mode, image).

        Args:
            numbered: ``(line number, row)`` pairs (:func:`~pixelprior._io.read_numbered_rows`).
            path: the file, named in the refusal.
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
    """The rows of a run folder with its config and selection, every row checked by type
    and against the run (:class:`RunRows`); for reports and exports.

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
    numbered = read_numbered_rows(path)
    RunRows(record["hash"], record["experiment"], selection).check(numbered, path)
    return [row for _, row in numbered], record["experiment"], selection


def is_run_file(name: str, is_dir: bool) -> bool:
    """Whether an entry of a run folder is pixelprior's own (:data:`RUN_FILES`, earlier
    runs moved aside, temporary files)."""
    return (name in RUN_FILES or (is_dir and bool(ASIDE.match(name)))
            or (name.startswith(".") and name.endswith(".tmp"))
            or name.startswith("environment-unreadable-"))


def max_queries(config: ExperimentConfig, mode: str) -> int | None:
    """The most model queries one attack of ``mode`` spends (searches stop early when they
    succeed); ``None`` for a search whose budget is not known here."""
    search, _ = parse_mode(mode)
    if search == "de":
        return config.popsize * (config.maxiter + 1)
    if search == "random_search":
        return config.query_budget or 10_000
    side = PUBLISHED_SIZE if config.resize_inside else _input_side(config)
    if side is None:
        return None
    positions = min(config.scan_positions or side * side, side * side)
    if search == "scan":
        return positions * config.levels ** 3
    if search == "fast":  # the corners, the certificate's re-checks, the refine budget
        return 8 * positions + 8 * MAX_RECHECKED + (
            config.fast_refine_queries if config.fast_refine == "de" else 0)
    return None


def _input_side(config: ExperimentConfig) -> int | None:
    """The side of the model's input (``None`` when it is not known here)."""
    side = getattr(config, "input_size", None)
    if isinstance(side, int):
        return side
    try:
        return model_spec(config.model).input_size
    except KeyError:
        return None


class ExperimentRunner:
    """Runs (or resumes) an experiment into ``config.out``."""

    def __init__(self, config: ExperimentConfig, force: bool = False,
                 log: Callable[[str], None] = print, config_file: str | Path | None = None
                 ) -> None:
        """A runner of ``config`` into ``config.out``.

        Args:
            config: what to run (``config.out`` is the run folder).
            force: move an old run of another config (or damaged run files) aside, or run
                in a folder of other files.
            log: told each note (and the cost before the work).
            config_file: the file the config came from; lying in the run folder, it is not
                someone else's file there.
        """
        self.config = config
        self.out = Path(config.out)
        self.force = force
        self.log = log
        self.config_file = Path(config_file) if config_file is not None else None
        self.kept = 0
        self.total = 0
        self.wrote = False  # whether this run has written into the folder yet

    def run(self, progress: bool = True, on_group: Callable[[list[dict]], None] | None = None,
            interrupts: Interrupts | None = None) -> list[dict]:
        """Attack every (seed, mode, image) not yet in ``results.jsonl``; return all rows.

        Raises :class:`~pixelprior._io.Interrupted` on SIGINT/SIGTERM (with
        ``interrupts``) after the rows of finished groups are safely written."""
        self.config.validate()
        check_writable_dir(self.out)
        self._check_folder()
        created = not self.out.exists()
        had_lock = (self.out / ".lock").exists()
        with RunLock(self.out):
            try:
                worker, selection = self._prepare()
            except BaseException:
                if created:  # a rejected run leaves no files behind
                    shutil.rmtree(self.out, ignore_errors=True)
                elif not had_lock and not self.wrote:
                    (self.out / ".lock").unlink(missing_ok=True)
                raise
            return self._run(worker, selection, progress, on_group, interrupts)

    def _check_folder(self) -> None:
        """Before any work: a folder holding files and no run is someone else's; refuse
        to mix the results in (``force``: run there, leaving those files be)."""
        if self.force or (self.out / "config.json").exists():
            return
        mine = (self.config_file.name if self.config_file is not None and self.out.is_dir()
                and self.config_file.resolve().parent == self.out.resolve() else None)
        foreign = [name for name in foreign_entries(self.out, is_run_file)
                   if name != mine and name not in NEUTRAL]
        if foreign:
            shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
            raise OutputLocationError(
                f"--out {self.out} is not empty and holds no pixelprior run ({shown}); "
                "choose an empty or new folder, or pass --force to run there (your files "
                "stay where they are)")

    def _prepare(self) -> tuple[GroupWorker | None, dict]:
        """Check the directory against the config, choose the images, check the rows
        already there, write the records. Nothing is moved or written until every check
        has passed."""
        config = self.config
        saved = self.out / "config.json"
        selection_path = self.out / "selection.json"
        problem = None
        try:
            old = read_record(self.out)
            if old is not None and old["hash"] != config.digest():
                problem = ConfigMismatchError(
                    f"{self.out} holds results of another config (hash {old['hash']}, now "
                    f"{config.digest()}); choose another --out or pass --force to move the "
                    "old results aside")
            selection = read_selection(self.out) if problem is None else None
        except CorruptResultsError as exc:
            problem, selection = exc, None
        if problem is not None and not self.force:
            raise _force_hint(problem)
        replacing = problem is not None
        checked = False
        if not replacing and selection is not None:  # refuse foreign rows before any work
            replacing = not self._rows_are_the_runs(selection)
            checked = True
        worker = GroupWorker(config) if config.workers == 1 else None
        if selection is None or replacing:
            source = worker or GroupWorker(config)
            selection = select_images(config, source.model, source.dataset, source.device)
        if not replacing and not checked:
            replacing = not self._rows_are_the_runs(selection)
        if replacing or (self.force and not saved.exists()):
            self._move_aside()
        self.wrote = True
        write_json_atomic(saved, {"hash": config.digest(), "config": config.to_dict()})
        self._write_environment()
        write_json_atomic(selection_path, selection)
        return worker, selection

    def _rows_are_the_runs(self, selection: dict) -> bool:
        """Whether the rows already in the folder are this run's; ``False`` (they are to
        be moved aside) only with ``force``, else the refusal is raised."""
        try:
            self._check_rows(selection)
        except CorruptResultsError as exc:
            if not self.force:
                raise _force_hint(exc) from None
            return False
        return True

    def _check_rows(self, selection: dict) -> None:
        """The rows already in the folder are this run's, checked before anything is
        written (a foreign ``results.jsonl`` is refused, its line named)."""
        path = self.out / RESULTS
        RunRows(self.config.digest(), self.config, selection).check(
            read_numbered_rows(path), path)


    def _write_environment(self) -> None:
        """``environment.json`` of this run, keeping those of the earlier runs that wrote
        into the folder (under ``earlier``); a different pixelprior version is said."""
        path = self.out / "environment.json"
        now = environment(self.config.resolved_device())
        earlier: list = []
        old = None
        if path.is_file():
            try:
                old = json.loads(path.read_text())
            except (ValueError, UnicodeDecodeError):
                aside = path.with_name(f"environment-unreadable-{time.strftime('%Y%m%d-%H%M%S')}"
                                       ".json")
                os.replace(path, aside)
                self.log(f"note: {path} was not valid JSON; kept as {aside.name}, and a new "
                         "one written")
        if isinstance(old, dict):
            earlier = old.pop("earlier", [])
            earlier = (earlier if isinstance(earlier, list) else []) + [old]
            versions = sorted({str(e.get("pixelprior", "unknown")) for e in earlier
                               if isinstance(e, dict)} - {now["pixelprior"]})
            if versions:
                self.log(f"note: earlier rows in {self.out} were written by pixelprior "
                         f"{', '.join(versions)}; this run is {now['pixelprior']} (each row "
                         "records its version)")
        write_json_atomic(path, {**now, "earlier": earlier})

    def _move_aside(self) -> None:
        """``--force``: pixelprior's own files of the old run — results, config,
        environment, maps, report and figures — move into ``old-STAMP/`` beside the new
        run, whole; other files in the folder stay where they are."""
        entries = [entry for entry in self.out.iterdir()
                   if entry.name != ".lock" and not ASIDE.match(entry.name)
                   and is_run_file(entry.name, entry.is_dir())]
        if not entries:
            return
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.out / f"old-{stamp}"
        n = 1
        while aside.exists():
            aside, n = self.out / f"old-{stamp}-{n}", n + 1
        aside.mkdir()
        self.wrote = True
        for entry in entries:
            os.replace(entry, aside / entry.name)
        self.log(f"note: the earlier run's files ({len(entries)}) were moved into {aside}")

    def _run(self, worker, selection: dict, progress: bool, on_group, interrupts
             ) -> list[dict]:
        config = self.config
        results_path = self.out / RESULTS
        rows = read_results(results_path, repair=True)
        self._note_devices(rows)
        done = {(r["seed"], r["mode"], r["image_index"]) for r in rows}
        work = [(seed, mode, pos, idx) for seed in config.seeds for mode in config.modes
                for pos, idx in zip(selection["positions"], selection["indices"], strict=True)
                if (seed, mode, idx) not in done]
        self.total, self.kept = len(work) + len(done), len(done)
        if work:
            for line in self._cost(work):
                self.log(line)
        if worker is not None:
            self._backfill_maps(worker, rows, selection)
        guard = interrupts.critical if interrupts is not None else nullcontext
        with Progress(progress, "attack", self.total, len(done),
                      sum(r["success"] for r in rows)) as bar:
            for new, maps in self._execute(worker, list(_groups(work,
                                                               config.images_per_group()))):
                with guard():
                    save_maps(self.out, new[0]["seed"], new[0]["mode"], maps)
                    append_rows(results_path, new)
                    self.kept += len(new)
                rows.extend(new)
                bar.advance(len(new), sum(r["success"] for r in new))
                if on_group is not None:
                    on_group(new)
        return rows

    def _cost(self, work: list[tuple]) -> list[str]:
        """What the attacks still to do cost (an upper bound: searches stop at success)."""
        counts: dict[str, int] = {}
        for _, mode, _, _ in work:
            counts[mode] = counts.get(mode, 0) + 1
        parts = []
        for mode, count in counts.items():
            most = max_queries(self.config, mode)
            if most is not None:
                kind = "scan" if parse_mode(mode)[0] == "scan" else "search"
                parts.append((most * count, kind))
        return cost_lines(parts, self.config.model, self.config.resolved_device(),
                          f"{len(work)} attacks ({len(counts)} mode(s))",
                          advice="lower --images, --seeds or the search's budget")

    def _execute(self, worker, groups: list[list[tuple]]
                 ) -> Iterator[tuple[list[dict], dict[str, np.ndarray]]]:
        """Each group's (rows, maps), in this process or on Ray workers."""
        if not groups:
            return
        if worker is not None:
            for group in groups:
                yield worker.attack(group)
            return
        yield from ray_groups(self.config, groups, self.log)

    def _note_devices(self, rows: list[dict]) -> None:
        device = self.config.resolved_device()
        others = sorted({r.get("device", "cpu") for r in rows} - {device})
        if others:
            self.log(f"note: {self.out} holds rows computed on {', '.join(others)}; new rows "
                     f"are computed on {device}. Successes agree across devices; generations "
                     "may differ in rare cases (float order). Each row records its device.")

    def _backfill_maps(self, worker: GroupWorker, rows: list[dict], selection: dict) -> None:
        """Rows from a run made before maps were saved get their maps (the prior is
        recomputed exactly as the attack computed it; no attack is rerun)."""
        have = load_maps(self.out)
        position = dict(zip(selection["indices"], selection["positions"], strict=True))
        missing: dict[tuple[int, str], list[int]] = {}
        for row in rows:
            key = (row["seed"], row["mode"], row["image_index"])
            kind, _ = parse_mode(row["mode"])
            if key not in have and kind == "de" and row["mode"] not in (
                    "unconstrained", "uniform"):
                missing.setdefault(key[:2], []).append(key[2])
        for (seed, mode), indices in missing.items():
            for start in range(0, len(indices), worker.config.images_per_group()):
                part = indices[start:start + worker.config.images_per_group()]
                pos = torch.tensor([position[i] for i in part])
                images = to_float(worker.dataset.images[pos]).to(worker.device)
                labels = worker.dataset.labels[pos].to(worker.device)
                attack = build_attack(self.config, mode, worker.model, seed)
                keys = [image_key(images[i], int(labels[i])) for i in range(len(part))]
                distribution = attack.start_distribution(images, labels, keys)
                save_maps(self.out, seed, mode, _maps_of(distribution, part))
        if missing:
            self.log(f"note: saved the maps of {sum(map(len, missing.values()))} earlier "
                     "rows (made before runs saved their maps)")


def _force_hint(exc: Exception) -> Exception:
    """``exc`` (a refusal of the folder's old files) with how ``--force`` starts afresh."""
    if not isinstance(exc, CorruptResultsError):
        return exc
    text = str(exc).rstrip()
    joint = " Or" if text.endswith(".") else "; or"
    return type(exc)(f"{text}{joint} pass --force to move the old run's files aside and "
                     "start afresh")


def _groups(work: list[tuple], size: int) -> Iterable[list[tuple]]:
    """Consecutive chunks of at most ``size`` items sharing (seed, mode)."""
    group: list[tuple] = []
    for item in work:
        if group and (len(group) == size or item[:2] != group[0][:2]):
            yield group
            group = []
        group.append(item)
    if group:
        yield group

