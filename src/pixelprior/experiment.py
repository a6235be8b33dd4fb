"""Experiment runner: the paper's tables as resumable, append-only runs.

A run directory holds:

- ``config.json`` — the :class:`~pixelprior.config.ExperimentConfig` that ran, and its hash;
- ``environment.json`` — versions, device, CPU/GPU name, start time;
- ``selection.json`` — the dataset indices attacked (and how they were chosen);
- ``results.jsonl`` — one JSON line per (seed, mode, image), appended as each group of
  images finishes (:func:`pixelprior.rundir.append_rows`);
- ``maps/`` — each attacked image's sensitivity map and start set (or scan order), saved
  before its rows, so figures draw what the run did without rebuilding the model.

Rerunning the same command resumes: finished (seed, mode, image) rows are skipped and an
unfinished last line is completed or dropped. One run per folder (an exclusive lock); a
changed config refuses to mix into an old directory unless ``force=True``, which moves the
old results, config and environment aside. Work runs in this process or, with
``workers > 1``, on Ray (:mod:`pixelprior.distributed`); either way this process is the one
writer, so locking, resume and uniqueness hold unchanged.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from .config import (  # noqa: F401  (re-exported: the runner's configuration)
    ConfigError,
    ConfigMismatchError,
    ExperimentConfig,
    parse_mode,
)
from .data import ImageSet, load_cifar10, to_float
from .models import load_model, predict
from .rundir import (  # noqa: F401  (re-exported for readers of run directories)
    Interrupted,
    Interrupts,
    Progress,
    RunLock,
    append_rows,
    check_writable_dir,
    read_rows,
    write_json_atomic,
)

RESULTS = "results.jsonl"
MAPS_DIR = "maps"
ROW_KEY = ("seed", "mode", "image_index")


class SelectionError(ValueError):
    """Fewer images qualify than the configuration asks for."""


def read_results(path: Path, repair: bool = False) -> list[dict]:
    """Rows of a ``results.jsonl`` (unfinished last line completed or dropped; corrupt
    lines elsewhere and duplicate (seed, mode, image) rows are errors)."""
    return read_rows(path, repair=repair, key=ROW_KEY)


def environment(device: str = "cpu") -> dict:
    """Versions and hardware, saved beside the results."""
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
    env["pixelprior"] = _version()
    return env


def _version() -> str:
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


# --------------------------------------------------------------------------- data
def load_dataset(config: ExperimentConfig) -> ImageSet:
    """The evaluation images of the configured dataset."""
    if config.dataset == "cifar10":
        return load_cifar10(config.source, config.data, download=config.source == "full")
    if config.dataset == "nips17":
        from .models import model_spec
        from .nips17 import PUBLISHED_SIZE, load_nips17

        size = PUBLISHED_SIZE if config.resize_inside else model_spec(config.model).input_size
        return load_nips17(config.data, size=size)
    raise ConfigError(f"unknown dataset {config.dataset!r}; use 'cifar10' or 'nips17'")


def build_model(config: ExperimentConfig, device: str | None = None) -> torch.nn.Module:
    """The configured model, wrapped to resize inside when ``resize_inside``."""
    model = load_model(config.model, config.weights,
                       device=device or config.resolved_device())
    if config.resize_inside:
        from .models import model_spec
        from .nips17 import ResizeInside

        model = ResizeInside(model, model_spec(config.model).input_size).eval()
    return model


def correctly_classified(model: torch.nn.Module, dataset: ImageSet, count: int | None = None,
                         device: str = "cpu") -> torch.Tensor:
    """Positions of the first ``count`` images of ``dataset`` the model gets right."""
    correct = (predict(model, dataset, device) == dataset.labels).nonzero().flatten()
    return correct[:count] if count is not None else correct


def select_images(config: ExperimentConfig, model: torch.nn.Module, dataset: ImageSet,
                  device: str = "cpu") -> dict:
    """Choose the images to attack; returns the selection record (indices and rule).
    Fewer qualifying images than ``config.images`` is an error, never a smaller run."""
    predicted = predict(model, dataset, device)
    correct = (predicted == dataset.labels).nonzero().flatten()
    if config.selection == "first":
        chosen = torch.arange(min(config.images, len(dataset)))
    elif config.selection == "first_correct":
        chosen = correct[:config.images]
    elif config.selection in ("random", "random_correct"):
        pool = correct if config.selection == "random_correct" else torch.arange(len(dataset))
        generator = torch.Generator().manual_seed(config.selection_seed)
        chosen = pool[torch.randperm(len(pool), generator=generator)[:config.images]]
    elif config.selection in ("vulnerable", "robust"):
        chosen = scanned_positions(config.oracle, dataset,
                                   config.selection == "vulnerable")[:config.images]
    else:
        raise ConfigError(f"unknown selection {config.selection!r}")
    if len(chosen) < config.images:
        hint = (" (the bundled sample holds 100 test images; set PIXELPRIOR_DATA or --data "
                "to the full test set)" if dataset.source == "bundled sample" else "")
        raise SelectionError(
            f"only {len(chosen)} images qualify for selection {config.selection!r} in "
            f"{dataset.source} ({len(dataset)} images, {len(correct)} classified correctly), "
            f"but images = {config.images}; lower --images{hint}")
    official = dataset.official_indices
    return {"rule": config.selection, "seed": config.selection_seed,
            "source": dataset.source, "dataset_size": len(dataset), "clean_accuracy": float(
                (predicted == dataset.labels).float().mean()),
            "positions": chosen.tolist(), "indices": official[chosen].tolist(),
            "ids": [dataset.ids[i] for i in chosen.tolist()] if dataset.ids else None}


def scanned_positions(scan_path: str, dataset: ImageSet, vulnerable: bool = True
                      ) -> torch.Tensor:
    """Positions in ``dataset`` of the images a susceptibility scan found a one-pixel
    adversarial for (``vulnerable``) or none for, in the scan's order. Matched by pixels,
    so a scan of another dataset or source is an error, never a silent pick of other
    images."""
    from .susceptibility import SusceptibilityMaps, image_keys

    scan = SusceptibilityMaps.load(scan_path)
    fooled = scan.vulnerable.reshape(len(scan.labels), -1).any(1)
    rows = (fooled if vulnerable else ~fooled).nonzero()[0]
    keys = [key for start in range(0, len(dataset), 1000)
            for key in image_keys(to_float(dataset.images[start:start + 1000]))]
    where = {key: position for position, key in enumerate(keys)}
    missing = [int(scan.image_indices[r]) for r in rows if scan.image_keys[r] not in where]
    if missing:
        raise SelectionError(
            f"{len(missing)} {'vulnerable' if vulnerable else 'robust'} images of the scan "
            f"{scan.source} are not in {dataset.source} (e.g. index "
            f"{missing[0]}); scan this dataset's images")
    return torch.tensor([where[scan.image_keys[r]] for r in rows], dtype=torch.long)


# --------------------------------------------------------------------------- workers
class GroupWorker:
    """Attacks groups of (seed, mode, position, index) work items: the model, the images
    and one scorer built once. The in-process runner holds one; each Ray actor holds one."""

    def __init__(self, config: ExperimentConfig, device: str | None = None) -> None:
        self.config = config
        self.device = device or config.resolved_device()
        _deterministic_kernels(self.device)
        self.model = build_model(config, self.device)
        self.dataset = load_dataset(config)
        self._scorer = None

    def attack(self, group: list[tuple]) -> tuple[list[dict], dict[str, np.ndarray]]:
        """Rows and maps of one group (same seed and mode)."""
        config = self.config
        seed, mode = group[0][0], group[0][1]
        positions = torch.tensor([g[2] for g in group])
        images = to_float(self.dataset.images[positions]).to(self.device)
        labels = self.dataset.labels[positions].to(self.device)
        attack = config.attack(mode, self.model, seed, scorer=self._scorer)
        began = time.time()
        output = attack(images, labels)
        wall = time.time() - began
        self._scorer = attack.scorer(images)  # built and checked once, reused
        rows = []
        digest, version = config.digest(), _version()  # once per group, not per row
        for (seed_, mode_, _, index), result in zip(group, output.results, strict=True):
            row = result.to_row()
            row.pop("index")  # position inside the attacked batch; image_index identifies it
            row.update(seed=seed_, mode=mode_, image_index=index, config_hash=digest,
                       group_seconds=wall, group_size=len(group), finished=time.time(),
                       device=self.device, engine=self._scorer.name,
                       chunk_rows=attack.chunk_rows, version=version)
            rows.append(row)
        return rows, _maps_of(output.distribution, [g[3] for g in group])


def _deterministic_kernels(device: str) -> None:
    """Runs are reproducible: on CUDA fixed (deterministic) cuDNN algorithms instead of
    the fastest one found by timing, which can differ between processes."""
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def _maps_of(distribution, indices: list[int]) -> dict[str, np.ndarray]:
    """What a group's figures need: the map and the start set per image (when the mode
    has them)."""
    out = {"image_index": np.asarray(indices, dtype=np.int64)}
    if distribution.sensitivity is not None:
        out["sensitivity"] = distribution.sensitivity.float().cpu().numpy()
    if distribution.susceptible is not None and not (
            distribution.sensitivity is None and bool(distribution.susceptible.all())):
        out["start_set"] = distribution.susceptible.cpu().numpy()  # (not the whole image)
    return out


def maps_path(directory: Path, seed: int, mode: str, first_index: int) -> Path:
    return Path(directory) / MAPS_DIR / mode.replace(":", "-") / f"seed{seed}-{first_index}.npz"


def save_maps(directory: Path, seed: int, mode: str, maps: dict[str, np.ndarray]) -> None:
    """Write one group's maps atomically (before its rows, so a row implies its map)."""
    if len(maps) == 1:  # no map and no set (the uniform prior): nothing to draw
        return
    path = maps_path(directory, seed, mode, int(maps["image_index"][0]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # outside the pattern load_maps reads
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **maps)
    os.replace(tmp, path)


def load_maps(directory: Path) -> dict[tuple[int, str, int], dict[str, np.ndarray]]:
    """Saved maps by (seed, mode, image_index). An unreadable file (a write cut short by
    a crash) counts as missing: the runner's next resume writes it again."""
    import zipfile

    out: dict[tuple[int, str, int], dict[str, np.ndarray]] = {}
    root = Path(directory) / MAPS_DIR
    for path in sorted(root.glob("*/seed*.npz")) if root.is_dir() else []:
        seed = int(path.stem[4:].split("-")[0])
        try:
            with np.load(path) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            continue
        mode = _mode_of_folder(path.parent.name)
        for n, index in enumerate(arrays["image_index"].tolist()):
            out[(seed, mode, int(index))] = {k: v[n] for k, v in arrays.items()
                                             if k != "image_index"}
    return out


def _mode_of_folder(name: str) -> str:
    return name.replace("-", ":", 1) if name.startswith("scan-") else name


# --------------------------------------------------------------------------- runner
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

        Raises :class:`~pixelprior.rundir.Interrupted` on SIGINT/SIGTERM (with
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
        import json

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
        import json

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
        from .distributed import ray_groups

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
                attack = self.config.attack(mode, worker.model, seed)
                keys = [_key(images[i], int(labels[i])) for i in range(len(part))]
                distribution = attack.start_distribution(images, labels, keys)
                save_maps(self.out, seed, mode, _maps_of(distribution, part))
        if missing:
            self.log(f"note: saved the maps of {sum(map(len, missing.values()))} earlier "
                     "rows (made before runs saved their maps)")


def _key(image: torch.Tensor, label: int) -> int:
    from .attack import image_key

    return image_key(image, label)


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


def run_experiment(config: ExperimentConfig, force: bool = False,
                   progress: bool = True) -> list[dict]:
    """Convenience wrapper: run or resume ``config``; return all result rows."""
    return ExperimentRunner(config, force=force).run(progress=progress)
