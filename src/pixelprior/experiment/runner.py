"""Experiment runner: the paper's tables as resumable, append-only runs.

The runner orchestrates; what a run folder holds and how it is read and checked is
:mod:`~pixelprior.experiment.rundir`, the rows' schema :mod:`~pixelprior.experiment.rows`.

Rerunning the same command resumes: finished (seed, mode, image) rows are skipped and an
unfinished last line is completed or dropped. Before any work a resume checks that the
folder is this run's: its config (and its own hash), every row, and what the run ran on
(the model's and every image's fingerprint). One run per folder (an exclusive lock); a
changed config, damaged run files or changed inputs are refused unless ``force=True``,
which moves pixelprior's own files of the old run into ``old-STAMP/`` (other files
stay). A folder holding other files and no run is refused (``force=True`` runs there,
leaving them be). Work runs in this process or, with ``workers > 1``, on Ray
(:mod:`pixelprior.experiment.distributed`); either way this process is the one writer,
so locking, resume and uniqueness hold unchanged. Progress is told to the reporter the
caller gives (:mod:`~pixelprior.experiment.progress`); the runner draws nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from .._io import (
    CorruptResultsError,
    Interrupts,
    RunLock,
    append_rows,
    check_writable_dir,
    read_numbered_rows,
    write_json_atomic,
)
from .._streams import image_key
from ..data import image_fingerprints, to_float
from ..models import model_fingerprint
from ..priors import OraclePrior
from ..search.verify import REVISION
from .config import ConfigError, ConfigMismatchError, ExperimentConfig
from .cost import cost_lines, max_queries
from .distributed import ActorPool, group_pool
from .environment import write_environment
from .inputs import check_one_index_per_image, select_images, selection_inputs
from .modes import build_attack, parse_mode, reads_oracle
from .progress import ProgressReporter, as_reporter, reporting
from .records import (
    config_changes,
    config_record,
    inputs_problem,
    positions_problem,
    read_record,
    read_selection,
    selection_problem,
    unrecorded,
)
from .rows import RESULTS, ROW_KEY, fallback_notes, read_results, row_problem  # noqa: F401  (old paths)
from .rundir import (  # noqa: F401  (ForeignRowError, read_run, is_run_file: old paths)
    ForeignRowError,
    InputsChangedError,
    RunRows,
    check_foreign_folder,
    check_other_kind,
    force_hint,
    is_run_file,
    move_aside,
    read_run,
    verifier_ran,
)
from .scans import check_scan_model
from .worker import GroupWorker, _maps_of, load_maps, save_maps

__all__ = ["ExperimentRunner", "max_queries"]


class ExperimentRunner:
    """Runs (or resumes) an experiment into ``config.out``.

    Args:
        config: what to run (``config.out`` is the run folder).
        force: move an old run of another config (or damaged run files, or a run whose
            inputs changed) aside, or run in a folder of other files.
        log: told each note (and the cost before the work).
        config_file: the file the config came from; lying in the run folder, it is not
            someone else's file there.
    """

    def __init__(self, config: ExperimentConfig, force: bool = False,
                 log: Callable[[str], None] = print, config_file: str | Path | None = None
                 ) -> None:
        self.config = config
        self.out = Path(config.out)
        self.force = force
        self.log = log
        self.config_file = Path(config_file) if config_file is not None else None
        self.kept = 0
        self.total = 0
        self.wrote = False  # whether this run has written into the folder yet
        self.fingerprint: str | None = None  # the model's, once loaded and checked
        self.pool: ActorPool | None = None  # Ray workers (workers > 1), opened by _prepare
        self.image_size: tuple[int, int] | None = None  # (height, width) attacked

    def run(self, progress: ProgressReporter | bool | None = None,
            on_group: Callable[[list[dict]], None] | None = None,
            interrupts: Interrupts | None = None) -> list[dict]:
        """Attack every (seed, mode, image) not yet in ``results.jsonl``.

        Args:
            progress: told the progress (e.g. :class:`pixelprior.cli.progress.ProgressBar`);
                ``None`` or ``False``: nothing is told.
            on_group: called with each group's new rows once they are written.
            interrupts: SIGINT/SIGTERM end the run between groups, never inside a write.

        Returns:
            Every row of the run (earlier ones included).

        Raises:
            Interrupted: a signal arrived (with ``interrupts``); finished groups are kept.
            ConfigError: refused before any work (nothing written); so are
                OutputLocationError, ConfigMismatchError, CorruptResultsError and
                InputsChangedError.
        """
        reporter = as_reporter(progress)
        self.config.validate()
        check_writable_dir(self.out)
        check_other_kind(self.out)
        if not self.force:
            check_foreign_folder(self.out, self.config_file)
        created = not self.out.exists()
        had_lock = (self.out / ".lock").exists()
        with RunLock(self.out):
            try:
                worker, selection = self._prepare(interrupts)
            except BaseException:
                self._close_pool()
                if created:  # a rejected run leaves no files behind
                    shutil.rmtree(self.out, ignore_errors=True)
                elif not had_lock and not self.wrote:
                    (self.out / ".lock").unlink(missing_ok=True)
                raise
            try:
                return self._run(worker, selection, reporter, on_group, interrupts)
            finally:
                self._close_pool()

    # ------------------------------------------------------------------ before the work
    def _prepare(self, interrupts: Interrupts | None = None
                 ) -> tuple[GroupWorker | None, dict]:
        """Check the folder against the config and the inputs, choose the images, start
        and check the Ray workers (``workers`` > 1), write the records. Nothing is moved
        or written until every check has passed."""
        config = self.config
        old, selection, problem = self._read_old()
        if problem is not None and not self.force:
            raise force_hint(problem)
        replacing = problem is not None
        source = GroupWorker(config)  # the model and the images: checked, then chosen
        source.log = self.log
        check_one_index_per_image(source.dataset)  # rows are keyed by the index
        self.image_size = tuple(source.dataset.images.shape[-2:])
        fingerprint = self.fingerprint = model_fingerprint(source.model, config.model)
        if config.oracle and config.uses_oracle():
            note = check_scan_model(config.oracle, config.model, fingerprint)
            if note is not None:
                self.log(note)
        checked = False
        if not replacing and selection is not None:
            replacing = not self._selection_is_the_configs(selection)
        if not replacing and selection is not None:  # refuse foreign rows before any work
            replacing = not (self._inputs_are_the_runs(old, selection, source, fingerprint)
                             and self._rows_are_the_runs(selection, fingerprint))
            checked = True
        if selection is None or replacing:
            selection = select_images(config, source.model, source.dataset, source.device)
        else:
            selection = self._completed(selection, source)
        if not replacing and not checked:  # rows kept from a lost selection.json
            replacing = not (self._inputs_are_the_runs(old, None, source, fingerprint)
                             and self._rows_are_the_runs(selection, fingerprint))
        if selection["positions"]:
            source.check_gradients(int(selection["positions"][0]))
            source.check_engine(int(selection["positions"][0]))
            self._check_oracle_images(selection, source)
        aside = replacing or (self.force and not (self.out / "config.json").exists())
        self._open_pool(selection, aside, interrupts, source)
        if aside:
            self.wrote = move_aside(self.out, self.log) or self.wrote
        # a folder of an earlier version keeps no class names: its rows may have been
        # made under other ones (said by _note_unrecorded), so none are recorded for it
        names = (source.dataset.class_names
                 if old is None or replacing or "class_names" in old else None)
        self._write_records(selection, fingerprint, names)
        return (source if config.workers == 1 else None), selection

    def _check_oracle_images(self, selection: dict, source: GroupWorker) -> None:
        """The images the oracle modes attack must be in the oracle scan: refused before
        anything is written (the run stopped at its first group, its records written, and
        the corrected command was then refused as another config)."""
        if not (self.config.oracle and any(map(reads_oracle, self.config.modes))):
            return
        images = to_float(source.dataset.images[selection["positions"]])
        try:
            OraclePrior(self.config.oracle).scan.rows_of(images)
        except KeyError as exc:
            raise ConfigError(f"{exc.args[0]}: the oracle modes attack images of this run "
                              f"that {self.config.oracle} does not hold; give the scan of "
                              "these images as the oracle") from None

    def _open_pool(self, selection: dict, aside: bool, interrupts: Interrupts | None,
                   source: GroupWorker) -> None:
        """With ``workers`` > 1, start the Ray workers for what is left to attack (all
        of it where the old files are to be moved ``aside``): each says which code it
        runs, and that it loaded the model and images ``source`` holds, before anything
        is moved or written (a refusal leaves the folder as it was); signals are taken
        back from Ray."""
        if self.config.workers == 1:
            return
        rows = [] if aside else read_numbered_rows(self.out / RESULTS)
        done = {(row["seed"], row["mode"], row["image_index"]) for _, row in rows}
        count = len(list(_groups(self._work(selection, done),
                                 self.config.images_per_group())))
        if count:
            positions = [int(p) for p in selection["positions"]]
            self.pool = group_pool(self.config, count, self.log, interrupts,
                                   source.inputs(positions), positions)
            self.pool.__enter__()

    def _close_pool(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def _read_old(self) -> tuple[dict | None, dict | None, Exception | None]:
        """The folder's config record and selection, and why they are not this run's
        (another config, damaged files), if so."""
        try:
            old = read_record(self.out)
            if old is not None and old["hash"] != self.config.digest():
                changes = config_changes(old["experiment"], self.config)
                return old, None, ConfigMismatchError(
                    f"{self.out} holds results of another config ("
                    f"{changes or 'hash ' + old['hash'] + ', now ' + self.config.digest()}); "
                    "choose another --out or pass --force to move the old results aside")
            return old, read_selection(self.out), None
        except CorruptResultsError as exc:
            return None, None, exc

    def _selection_is_the_configs(self, selection: dict) -> bool:
        """Whether ``selection.json`` is the one this config chooses (it may outlive a
        lost ``config.json``); ``False`` only with ``force``, else the refusal."""
        problem = selection_problem(self.config, selection)
        if problem is None:
            return True
        if not self.force:
            raise ConfigMismatchError(
                f"{self.out}: {problem} (config.json is missing or was replaced); restore "
                "config.json or give the run's own settings, or pass --force to move the "
                "old results aside and start afresh")
        return False

    def _rows_are_the_runs(self, selection: dict, fingerprint: str) -> bool:
        """Whether the rows already in the folder are this run's (its config, images and
        model ``fingerprint``); ``False`` (they are to be moved aside) only with
        ``force``, else the refusal is raised."""
        path = self.out / RESULTS
        try:
            RunRows(self.config.digest(), self.config, selection, REVISION,
                    model_fingerprint=fingerprint).check(read_numbered_rows(path), path)
        except CorruptResultsError as exc:
            if not self.force:
                raise force_hint(exc) from None
            return False
        return True

    def _inputs_are_the_runs(self, old: dict | None, selection: dict | None,
                             source: GroupWorker, fingerprint: str) -> bool:
        """Whether the model and the images (when ``selection`` is given) are those the
        run recorded; ``False`` only with ``force``, else the refusal (naming what
        changed) is raised."""
        problem = None
        if selection is not None:
            problem = positions_problem(selection, len(source.dataset))
        if problem is None:
            now, labels = None, None
            if selection is not None:
                now = image_fingerprints(source.dataset.images[selection["positions"]])
                labels = source.dataset.labels[selection["positions"]].tolist()
            problem = inputs_problem(self.config, old or {}, selection or {}, fingerprint,
                                     now, labels, class_names=source.dataset.class_names)
        if problem is None:
            self._note_unrecorded(old, selection)
            return True
        if not self.force:
            raise InputsChangedError(f"{self.out}: {problem}; the rows there were made on "
                                     "the old inputs. Restore them, or pass --force to move "
                                     "the old run's files aside and start afresh")
        return False

    def _note_unrecorded(self, old: dict | None, selection: dict | None) -> None:
        """Say what a folder of an earlier version did not record (it is not checked)."""
        if old is None:
            return
        missing = unrecorded(old, selection)
        if missing:
            self.log(f"note: {self.out} does not record {' or '.join(missing)} (made by an "
                     "earlier version): not checked; recorded from now on")
        if "class_names" not in old:
            self.log(f"note: {self.out} does not record the class names its rows were made "
                     "under (made by an earlier version): not checked, and the report "
                     "names classes as before")

    def _completed(self, selection: dict, source: GroupWorker) -> dict:
        """A selection of an earlier version with what this version records added."""
        if all(key in selection for key in ("fingerprints", "labels", "image_shape",
                                            "num_classes")):
            return selection
        inputs = selection_inputs(selection["positions"], source.model, source.dataset,
                                  source.device)
        return {**inputs, **selection}

    def _write_records(self, selection: dict, fingerprint: str,
                       class_names: Sequence[str] | None) -> None:
        """``config.json``, ``environment.json`` and ``selection.json`` of this run."""
        self.wrote = True
        write_json_atomic(self.out / "config.json",
                          config_record(self.config, fingerprint, class_names))
        write_environment(self.out, self.config.resolved_device(), self.log)
        write_json_atomic(self.out / "selection.json", selection)

    # ------------------------------------------------------------------ the work
    def _run(self, worker: GroupWorker | None, selection: dict, reporter: ProgressReporter,
             on_group: Callable[[list[dict]], None] | None,
             interrupts: Interrupts | None) -> list[dict]:
        """Attack what is not done yet, group by group, writing each group's maps then
        its rows."""
        results_path = self.out / RESULTS
        rows = read_results(results_path, repair=True)
        self._note_devices(rows)
        self._note_unrecorded_verifier(rows)
        work = self._work(selection, {(r["seed"], r["mode"], r["image_index"]) for r in rows})
        self.total, self.kept = len(work) + len(rows), len(rows)
        for line in self._cost(work) if work else []:
            self.log(line)
        if worker is not None:
            self._backfill_maps(worker, rows, selection)
        guard = interrupts.critical if interrupts is not None else nullcontext
        groups = list(_groups(work, self.config.images_per_group()))
        with reporting(reporter, "attack", self.total, len(rows),
                       _fooled(rows)) as bar:
            prints = dict(zip(selection["indices"], selection["fingerprints"], strict=True))
            for new, maps in self._execute(worker, groups):
                for row in new:  # what it was made of, as checked before the work
                    row.update(model_fingerprint=self.fingerprint,
                               image_fingerprint=prints[row["image_index"]])
                with guard():
                    save_maps(self.out, new[0]["seed"], new[0]["mode"], maps)
                    append_rows(results_path, new)
                    self.kept += len(new)
                rows.extend(new)
                bar.advance(len(new), _fooled(new))
                if on_group is not None:
                    on_group(new)
        for line in fallback_notes(rows):
            self.log(line)
        return rows

    def _work(self, selection: dict, done: set[tuple]) -> list[tuple]:
        """``(seed, mode, position, index)`` of every attack not yet done, in run order."""
        config = self.config
        return [(seed, mode, pos, idx) for seed in config.seeds for mode in config.modes
                for pos, idx in zip(selection["positions"], selection["indices"], strict=True)
                if (seed, mode, idx) not in done]

    def _cost(self, work: list[tuple]) -> list[str]:
        """What the attacks still to do cost (an upper bound: searches stop at success),
        from the attacked images' size."""
        counts: dict[str, int] = {}
        for _, mode, _, _ in work:
            counts[mode] = counts.get(mode, 0) + 1
        parts, unbounded = [], []
        for mode, count in counts.items():
            most = max_queries(self.config, mode, self.image_size)
            if most is None:
                unbounded.append(mode)
                continue
            kind = "scan" if parse_mode(mode)[0] == "scan" else "search"
            parts.append((most * count, kind))
        verified = [mode for mode in counts if parse_mode(mode)[0] == "fast"
                    and mode not in unbounded and self.config.fast_verify != "off"]
        what = f"{len(work)} attacks ({len(counts)} mode(s))" + (
            f"; not counted: {', '.join(unbounded)} (no bound known)" if unbounded else "") + (
            f"; not counted: the queries of {', '.join(verified)}'s verifier where it runs "
            f"(at most {self.config.verify_boxes:,} boxes an image, "
            + (f"at most {self.config.verify_seconds:g} s" if self.config.verify_seconds
               else "no time limit: seconds to many minutes an image")
            + "; run --verify off skips it, --verify-seconds caps it)" if verified else "")
        return cost_lines(parts, self.config.model, self.config.resolved_device(), what,
                          advice="lower --images, --seeds or the search's budget")

    def _execute(self, worker: GroupWorker | None, groups: list[list[tuple]]
                 ) -> Iterator[tuple[list[dict], dict[str, np.ndarray]]]:
        """Each group's (rows, maps), in this process or on Ray workers."""
        if not groups:
            return
        if worker is not None:
            for group in groups:
                yield worker.attack(group)
            return
        if self.pool is None:  # (not opened: nothing was left to attack then)
            raise RuntimeError("Ray workers were not started before the run's work")
        said: set[str] = set()
        for rows, maps, notes in self.pool.map("attack", [(group,) for group in groups]):
            for note in notes:  # a worker's notes, once each (as one process says them)
                if note not in said:
                    said.add(note)
                    self.log(note)
            yield rows, maps

    def _note_unrecorded_verifier(self, rows: list[dict]) -> None:
        """Say how many rows the verifier decided before rows recorded its revision
        (resumed by revision 2 only, :data:`~pixelprior.experiment.rundir.LAST_UNRECORDED`:
        each row's ``version`` names the commit that made it)."""
        verified = [r for r in rows if "verifier" not in r and verifier_ran(r)]
        if verified:
            self.log(f"note: {len(verified)} row(s) in {self.out} were decided by the "
                     "verifier before rows recorded its revision (each row's version names "
                     f"its commit); new rows are verified by revision {REVISION}")

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
        size = worker.config.images_per_group()
        for (seed, mode), indices in missing.items():
            for start in range(0, len(indices), size):
                self._save_recomputed_maps(worker, seed, mode, indices[start:start + size],
                                           position)
        if missing:
            self.log(f"note: saved the maps of {sum(map(len, missing.values()))} earlier "
                     "rows (made before runs saved their maps)")

    def _save_recomputed_maps(self, worker: GroupWorker, seed: int, mode: str,
                              part: list[int], position: dict[int, int]) -> None:
        pos = torch.tensor([position[i] for i in part])
        images = to_float(worker.dataset.images[pos]).to(worker.device)
        labels = worker.dataset.labels[pos].to(worker.device)
        attack = build_attack(self.config, mode, worker.model, seed)
        keys = [image_key(images[i], int(labels[i])) for i in range(len(part))]
        distribution = attack.start_distribution(images, labels, keys)
        save_maps(self.out, seed, mode, _maps_of(distribution, part))


def _fooled(rows: list[dict]) -> int:
    """The attacks that fooled the model (an image it misclassified already counts as
    no success of the attack: the tables leave it out too)."""
    return sum(bool(row["success"]) and row.get("clean_correct", True) is not False
               for row in rows)


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
