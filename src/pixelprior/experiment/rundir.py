"""Run folders: reading a run's rows checked against the run, and the ``--force``
policy (what is pixelprior's in a folder, what is moved aside).

A run folder holds ``config.json`` and ``selection.json`` (:mod:`~pixelprior.experiment.records`),
``results.jsonl`` and ``maps/``. Whoever reads a folder (:func:`read_run`: the report,
every export, a resume) checks:

- ``config.json``: valid, its config builds and gives its own hash (an edited field is
  named from the per-field hashes);
- ``selection.json``: valid, one index per image;
- every row of ``results.jsonl`` by type and value (:mod:`~pixelprior.experiment.rows`)
  and against the run (:class:`RunRows`): its config hash, seeds, modes and images. A
  row of another run is refused, naming its line and the file, never counted. Rows of
  the *same* configuration with another number of ``images`` are the same attacks on
  the same images, and are kept;
- what the run ran on (:func:`~pixelprior.experiment.records.inputs_problem`): the
  model's fingerprint and each image's, recomputed by a resume and a report. Folders made
  before fingerprints were recorded say so and are read as before.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._io import CorruptResultsError, OutputLocationError, check_unique, foreign_entries
from .._io import read_numbered_rows as _read_numbered_rows
from ..data.nips17 import PUBLISHED_SIZE
from ..models import MODELS, model_spec, same_model
from .config import ExperimentConfig
from .modes import parse_mode
from .records import (  # noqa: F401  (their names here before the split)
    config_record,
    images_problem,
    inputs_problem,
    model_in_words,
    model_problem,
    positions_problem,
    read_record,
    read_selection,
    unrecorded,
)
from .rows import RESULTS, ROW_KEY, RowLimits, row_fields, row_problem
from .worker import MAPS_DIR

FIGURES = ("pipeline", "examples", "success_vs_queries", "generations_hist")
# pixelprior's own files in a run folder: what --force moves aside, and what a folder may
# hold without being someone else's
RUN_FILES = frozenset({"config.json", "environment.json", "selection.json", RESULTS,
                       "report.md", "table.csv", "summary.json", "paper_accounting.csv",
                       "results.csv", "results.parquet", "robustness.csv", ".lock",
                       MAPS_DIR} | {
    f"{name}.{ext}" for name in (*FIGURES, "robustness") for ext in ("png", "pdf")})
# the last verifier revision whose ``fast`` rows did not record it (``verifier``)
LAST_UNRECORDED = 2
ASIDE = re.compile(r"old-\d{8}-\d{6}(-\d+)?$")
NEUTRAL = frozenset({".gitignore", ".DS_Store"})  # neither a run's nor a user's work
FORCE_HINT = "pass --force to move the old run's files aside and start afresh"


class ForeignRowError(CorruptResultsError):
    """A row of ``results.jsonl`` belongs to another run (another config hash, seed, mode
    or image than the folder's run)."""


class InputsChangedError(CorruptResultsError):
    """The model or an image the run attacked is no longer what the run recorded."""


# --------------------------------------------------------------------------- rows
def verifier_ran(row: dict) -> bool:
    """Whether the verifier ran on a row's image (``fast`` with verification: its
    ``verified_volume`` is set, ``null`` elsewhere and in other modes' rows)."""
    return row.get("verified_volume") is not None


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


def _by_index(selection: dict, key: str) -> dict[int, Any]:
    """A selection's per-image list ``key`` by dataset index (empty where not recorded
    or not one per image)."""
    values, indices = selection.get(key), selection["indices"]
    if not isinstance(values, list) or len(values) != len(indices):
        return {}
    return dict(zip(indices, values, strict=True))


class RunRows:
    """Checks rows against the run that owns a folder (its hash, seeds, modes, images and
    limits).

    Args:
        run_hash: the run's config hash.
        config: its config.
        selection: its selection.
        verifier: the verifier revision a resume adds rows with: a row verified by
            another (its ``verifier``) is refused, so that one run never mixes two
            algorithms' verdicts. ``None`` (reading a finished run): not checked.
        model_fingerprint: the run's model (now, or as ``config.json`` records it): a
            row that names another (its ``model_fingerprint``) is refused. ``None``:
            not checked.

    A row that names its image (``image_fingerprint``) must name the one the selection
    records at its index, and its ``true_label`` must be the selection's label there: a
    row outliving a lost ``selection.json`` or ``config.json`` is checked by what it
    says it was made of.
    """

    def __init__(self, run_hash: str, config: ExperimentConfig, selection: dict,
                 verifier: int | None = None, model_fingerprint: str | None = None
                 ) -> None:
        self.run_hash = run_hash
        self.verifier = verifier
        self.model = model_fingerprint
        self.config = config
        self.images = set(selection["indices"])
        self.prints = _by_index(selection, "fingerprints")
        self.labels = _by_index(selection, "labels")
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
        generations = row.get("generations")
        if (generations is not None and parse_mode(row["mode"])[0] == "de"
                and generations > config.maxiter):
            return (f"generations {generations} is past the run's maxiter "
                    f"({config.maxiter})"), False
        if row["image_index"] not in self.images:
            return (f"image {row['image_index']} is not one of this run's "
                    f"{len(self.images)} images (selection.json)"), True
        return self._inputs_problem(row) or self._revision_problem(row)

    def _inputs_problem(self, row: dict) -> tuple[str, bool] | None:
        """A row made with another model or on another image than the run's, or whose
        true label is not the image's."""
        index, made_with = row["image_index"], row.get("model_fingerprint")
        if self.model is not None and made_with is not None and not same_model(
                made_with, self.model):
            return (f"a row made with another model (fingerprint {made_with[:16]}…; the "
                    f"run's is {self.model[:16]}…)"), True
        image, want = row.get("image_fingerprint"), self.prints.get(index)
        if image is not None and want is not None and image != want:
            return (f"a row made on another image at index {index} (fingerprint "
                    f"{image[:16]}…; the run's image there is {want[:16]}…)"), True
        label = self.labels.get(index)
        if label is not None and row["true_label"] != label:
            return (f"a row whose true label {row['true_label']} is not the label "
                    f"{label} of image {index} (selection.json)"), True
        return None

    def _revision_problem(self, row: dict) -> tuple[str, bool] | None:
        """A row the verifier ran on, made by another revision than ``verifier``: rows
        that do not record it were made by revision :data:`LAST_UNRECORDED` or before."""
        if self.verifier is None or not verifier_ran(row):
            return None
        revision = row.get("verifier")
        if revision is None and self.verifier > LAST_UNRECORDED:
            return (f"a row verified before rows recorded the verifier revision (revision "
                    f"{LAST_UNRECORDED} or earlier); this pixelprior verifies with revision "
                    f"{self.verifier}, and one run's rows are of one algorithm"), True
        if revision is not None and revision != self.verifier:
            return (f"a row verified by verifier revision {revision}; this pixelprior "
                    f"verifies with revision {self.verifier}, and one run's rows are of "
                    "one algorithm"), True
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
    RunRows(record["hash"], record["experiment"], selection,
            model_fingerprint=record.get("model_fingerprint")).check(numbered, path)
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


# files that make a folder another command's: a run never shares it, not even with --force
# (which would move that command's summary.json and environment.json aside)
OTHER_KINDS = {"maps.npz": "a susceptibility scan", "verification.jsonl": "a verification",
               "fast.json": "fast answers"}


def check_other_kind(out: Path) -> None:
    """Refuse a folder that holds another command's results and no run.

    Args:
        out: the run folder.

    Raises:
        OutputLocationError: a scan's, a verification's or fast answers' folder.
    """
    if (out / "config.json").exists():
        return
    for name, what in OTHER_KINDS.items():
        if (out / name).is_file():
            raise OutputLocationError(f"--out {out} holds {what} ({name}); a run cannot "
                                      "share its folder (not even with --force): choose "
                                      "another --out")


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
