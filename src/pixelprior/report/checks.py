"""What a report checks of a run folder before it writes anything: that the folder can
be written, whether a run is still writing there (the report is then partial), and that
the model and the images are still those the run recorded."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .._io import OutputLocationError, lock_holder
from ..data import ImageSet, image_fingerprints
from ..experiment import ExperimentConfig
from ..experiment.records import (
    images_problem,
    model_problem,
    positions_problem,
    read_record,
    read_selection,
    unrecorded,
)
from ..experiment.rundir import InputsChangedError
from ..experiment.worker import run_model
from ..models import model_fingerprint


@dataclass(frozen=True)
class InProgress:
    """A run still writing into the folder the report reads.

    Args:
        holder: the run in words (pid, host, start, command).
        finished: attacks finished so far.
        total: attacks the run will make.
    """

    holder: str | None
    finished: int
    total: int
    per_mode: dict[str, int] | None = None  # attacks per mode, where they differ

    def line(self, directory: Path) -> str:
        """The partial report in one sentence (two where the modes reached different
        images).

        Args:
            directory: the run folder.

        Returns:
            What the report shows and why it is partial.
        """
        if self.holder is None:
            head = (f"Partial report: the run in {directory} stopped after {self.finished} "
                    f"of its {self.total} attacks (no run holds the folder: it was "
                    "interrupted). Run the same command to finish it, then report again.")
        else:
            head = (f"Partial report: the run in {directory} is in progress ({self.holder});"
                    f" this report shows the {self.finished} of {self.total} attacks "
                    "finished so far. Report again when the run has finished.")
        if not self.per_mode:
            return head
        counts = ", ".join(f"{mode} {count}" for mode, count in sorted(self.per_mode.items()))
        return (f"{head} The modes reached different attacks ({counts}): the per-mode "
                "tables compare different images; the paired comparison uses the images "
                "both modes reached.")


def check_writable(directory: Path) -> None:
    """Refuse, before any work, a run folder the report cannot write into.

    Args:
        directory: the run folder.

    Raises:
        OutputLocationError: the folder is not writable (named, with what to do).
    """
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputLocationError(
            f"{directory} is not writable: the report writes report.md, its tables and "
            f"figures into the run folder; make it writable (chmod u+w {directory}) or "
            "copy the folder and report the copy")


def in_progress(directory: Path, finished: int, total: int,
                per_mode: dict[str, int] | None = None) -> InProgress | None:
    """Whether the folder's run is unfinished: a run holds its lock right now, or fewer
    rows than attacks were written (a run interrupted and not resumed).

    Args:
        directory: the run folder.
        finished: the rows read.
        total: the attacks of the run (seeds × modes × images).
        per_mode: the rows of each mode (said where they differ).

    Returns:
        The unfinished run (``holder`` ``None`` where none runs now), or ``None``.
    """
    holder = lock_holder(directory)
    if holder is None and finished >= total:
        return None
    uneven = per_mode if per_mode and len(set(per_mode.values())) > 1 else None
    return InProgress(holder, finished, total, uneven)


def check_inputs(directory: Path, config: ExperimentConfig, dataset: ImageSet | None,
                 log: Callable[[str], None]) -> None:
    """The model and the images are those the run recorded (their fingerprints), or
    the report is refused: its numbers would describe other inputs than the run's.

    Args:
        directory: the run folder.
        config: its config.
        dataset: the run's images as loaded now (``None``: not loaded, not checked).
        log: told what cannot be checked (not recorded, or not loadable) and why.

    Raises:
        InputsChangedError: the model or an image changed (named, with what to do).
    """
    record = read_record(directory) or {}
    selection = read_selection(directory) or {}
    missing = unrecorded(record, selection)
    if missing:
        log(f"{directory} does not record {' or '.join(missing)} (made by an earlier "
            "version): not checked")
    fingerprint = _model_fingerprint(config, log) if "model_fingerprint" in record else None
    problem = model_problem(config, record, fingerprint)
    if problem is not None:
        raise InputsChangedError(f"{directory}: {problem}; restore it to report this run "
                                 "(its rows were made with the recorded model)")
    if dataset is None or "fingerprints" not in selection:
        if dataset is None and "fingerprints" in selection:
            log("the run's images could not be loaded: their fingerprints are not checked")
        return
    positions = selection["positions"]
    problem = positions_problem(selection, len(dataset)) or images_problem(
        config, selection, image_fingerprints(dataset.images[positions]),
        dataset.labels[positions].tolist())
    if problem is not None:
        raise InputsChangedError(f"{directory}: {problem}; restore the data to report this "
                                 "run (its rows were made on the recorded images)")


def _model_fingerprint(config: ExperimentConfig, log: Callable[[str], None]) -> str | None:
    """The fingerprint of the run's model as the run built it (on the CPU), or ``None``
    when it cannot be loaded here (said)."""
    try:
        return model_fingerprint(run_model(config, "cpu"), config.model)
    except Exception as exc:  # noqa: BLE001 - moved or unreadable: said, the rest reported
        log(f"the model could not be loaded to check its fingerprint ({exc}); not checked")
        return None
