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
changed config refuses to mix into an old directory unless ``force=True``, which moves the
old results, config and environment aside. Work runs in this process or, with
``workers > 1``, on Ray (:mod:`pixelprior.experiment.distributed`); either way this
process is the one writer, so locking, resume and uniqueness hold unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from .._io import (
    Interrupts,
    Progress,
    RunLock,
    append_rows,
    check_writable_dir,
    read_rows,
    write_json_atomic,
)
from .._streams import image_key
from ..data import to_float
from .config import ConfigMismatchError, ExperimentConfig
from .distributed import ray_groups
from .environment import environment
from .inputs import select_images
from .modes import build_attack, parse_mode
from .worker import GroupWorker, _maps_of, load_maps, save_maps

RESULTS = "results.jsonl"
ROW_KEY = ("seed", "mode", "image_index")


def read_results(path: Path, repair: bool = False) -> list[dict]:
    """Rows of a ``results.jsonl`` (unfinished last line completed or dropped; corrupt
    lines elsewhere and duplicate (seed, mode, image) rows are errors)."""
    return read_rows(path, repair=repair, key=ROW_KEY)


class ExperimentRunner:
    """Runs (or resumes) an experiment into ``config.out``."""

    def __init__(self, config: ExperimentConfig, force: bool = False,
                 log: Callable[[str], None] = print) -> None:
        self.config = config
        self.out = Path(config.out)
        self.force = force
        self.log = log
        self.kept = 0
        self.total = 0

    def run(self, progress: bool = True, on_group: Callable[[list[dict]], None] | None = None,
            interrupts: Interrupts | None = None) -> list[dict]:
        """Attack every (seed, mode, image) not yet in ``results.jsonl``; return all rows.

        Raises :class:`~pixelprior._io.Interrupted` on SIGINT/SIGTERM (with
        ``interrupts``) after the rows of finished groups are safely written."""
        self.config.validate()
        check_writable_dir(self.out)
        created = not self.out.exists()
        with RunLock(self.out):
            try:
                worker, selection = self._prepare()
            except BaseException:
                if created:  # a rejected run leaves no files behind
                    shutil.rmtree(self.out, ignore_errors=True)
                raise
            return self._run(worker, selection, progress, on_group, interrupts)

    def _prepare(self) -> tuple[GroupWorker | None, dict]:
        """Check the directory against the config, choose the images, write the records.
        Nothing is moved or written until every check has passed."""
        config = self.config
        saved = self.out / "config.json"
        replacing = False
        if saved.is_file():
            old = json.loads(saved.read_text())
            if old.get("hash") != config.digest():
                if not self.force:
                    raise ConfigMismatchError(
                        f"{self.out} holds results of another config (hash {old.get('hash')},"
                        f" now {config.digest()}); choose another --out or pass --force to "
                        "move the old results aside")
                replacing = True
        worker = GroupWorker(config) if config.workers == 1 else None
        selection_path = self.out / "selection.json"
        if selection_path.is_file() and not replacing:
            selection = json.loads(selection_path.read_text())
        else:
            source = worker or GroupWorker(config)
            selection = select_images(config, source.model, source.dataset, source.device)
        if replacing:
            self._move_aside()
        write_json_atomic(saved, {"hash": config.digest(), "config": config.to_dict()})
        self._write_environment()
        write_json_atomic(selection_path, selection)
        return worker, selection

    def _write_environment(self) -> None:
        """``environment.json`` of this run, keeping those of the earlier runs that wrote
        into the folder (under ``earlier``); a different pixelprior version is said."""
        path = self.out / "environment.json"
        now = environment(self.config.resolved_device())
        earlier: list = []
        if path.is_file():
            old = json.loads(path.read_text())
            earlier = old.pop("earlier", []) + [old]
            versions = sorted({e.get("pixelprior", "unknown") for e in earlier}
                              - {now["pixelprior"]})
            if versions:
                self.log(f"note: earlier rows in {self.out} were written by pixelprior "
                         f"{', '.join(versions)}; this run is {now['pixelprior']} (each row "
                         "records its version)")
        write_json_atomic(path, {**now, "earlier": earlier})

    def _move_aside(self) -> None:
        """``--force``: the old run — results, config, environment, maps, report and
        figures — moves into ``old-STAMP/`` beside the new run, whole."""
        aside = self.out / f"old-{time.strftime('%Y%m%d-%H%M%S')}"
        aside.mkdir()
        for entry in self.out.iterdir():
            if entry.name != ".lock" and entry != aside and not entry.name.startswith("old-"):
                os.replace(entry, aside / entry.name)
        self.log(f"note: the earlier run was moved into {aside}")

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

