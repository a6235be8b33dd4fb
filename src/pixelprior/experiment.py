"""Experiment runner: the paper's tables as resumable, append-only runs.

A run directory holds:

- ``config.json`` — the :class:`ExperimentConfig` and its hash;
- ``environment.json`` — versions, device, CPU/GPU name, start time;
- ``selection.json`` — the dataset indices attacked (and how they were chosen);
- ``results.jsonl`` — one JSON line per (seed, mode, image), appended as each group of
  images finishes, each line written with one ``write`` and flushed to disk.

Rerunning the same command resumes: finished (seed, mode, image) rows are skipped, and a
torn last line (a run killed mid-write) is dropped by an atomic rewrite of the file. A
changed config refuses to mix into an old directory unless ``force=True``, which moves
the old results aside.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .attack import ENGINES, OnePixelAttack
from .data import ImageSet, load_cifar10, to_float
from .models import load_model, predict
from .prior import Prior, make_prior

RESULTS = "results.jsonl"
# fields that do not change results: excluded from the config hash
NON_RESULT_FIELDS = ("out", "batch_images", "device", "max_batch")


class ConfigMismatchError(RuntimeError):
    """The run directory holds results of a different configuration."""


@dataclass
class ExperimentConfig:
    """Everything that defines an experiment (also readable from TOML/JSON)."""

    dataset: str = "cifar10"
    data: str | None = None
    source: str = "auto"  # cifar10: auto | sample | full
    model: str = "squeezenet1_1-cifar10"
    weights: str | None = None
    images: int = 100
    selection: str = "first_correct"  # first_correct | random_correct | first | random
    selection_seed: int = 0
    modes: list[str] = field(default_factory=lambda: ["unconstrained", "constrained"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    popsize: int = 400
    maxiter: int = 100
    mutation: float = 0.5
    pixels: int = 1
    init_color: str = "normal"
    tau: float = 0.5
    sensitivity: str = "smoothgrad"
    n_samples: int = 50
    noise_level: float = 0.15
    resize_inside: bool = False  # nips17: attack the 299x299 image, resize inside model
    engine: str = "auto"  # auto | incremental | full | onnxruntime: how candidates are scored
    batch_images: int = 10
    max_batch: int | None = None
    device: str = "cpu"
    out: str = "runs/cifar10"

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")

    @classmethod
    def from_file(cls, path: str | Path) -> ExperimentConfig:
        """Read a TOML or JSON config file; unknown keys are an error."""
        path = Path(path)
        if path.suffix == ".toml":
            import tomllib

            values = tomllib.loads(path.read_text())
        else:
            values = json.loads(path.read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"{path}: unknown config keys {sorted(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Hash of the fields that change results (not the output path or batching)."""
        relevant = {k: v for k, v in self.to_dict().items() if k not in NON_RESULT_FIELDS}
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]

    def prior(self, mode: str) -> Prior:
        """The prior of a mode name (``unconstrained``, ``constrained`` or any prior)."""
        if mode in ("unconstrained", "uniform"):
            return make_prior(mode)
        kwargs: dict = {"sensitivity": self.sensitivity}
        if self.sensitivity == "smoothgrad":
            kwargs.update(n_samples=self.n_samples, noise_level=self.noise_level)
        if mode in ("constrained", "susceptible", "random_set"):
            kwargs["tau"] = self.tau
        return make_prior(mode, **kwargs)


# --------------------------------------------------------------------------- files
def write_json_atomic(path: Path, value: object) -> None:
    """Write JSON to ``path`` via a temporary file and ``os.replace``."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def read_results(path: Path, repair: bool = False) -> list[dict]:
    """Rows of a ``results.jsonl``; a torn last line is dropped (and the file rewritten
    atomically without it when ``repair``). A bad line elsewhere is an error."""
    if not path.is_file():
        return []
    lines = path.read_bytes().split(b"\n")
    rows, bad = [], []
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            bad.append(number)
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    if any(b != last for b in bad):
        raise ValueError(f"{path}: corrupt lines {[b + 1 for b in bad]} (not a torn tail)")
    if bad and repair:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        os.replace(tmp, path)
    return rows


def append_rows(path: Path, rows: Iterable[dict]) -> None:
    """Append rows, one ``write`` per line, then flush and fsync."""
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def environment() -> dict:
    """Versions and hardware, saved beside the results."""
    import numpy

    env = {"python": platform.python_version(), "torch": torch.__version__,
           "numpy": numpy.__version__, "platform": platform.platform(),
           "processor": platform.processor() or platform.machine(),
           "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "cuda": torch.cuda.is_available(),
           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    try:
        from importlib.metadata import version

        env["pixelprior"] = version("pixelprior")
    except Exception:  # pragma: no cover - not installed as a distribution
        env["pixelprior"] = "unknown"
    return env


# --------------------------------------------------------------------------- data
def load_dataset(config: ExperimentConfig) -> ImageSet:
    """The evaluation images of the configured dataset."""
    if config.dataset == "cifar10":
        return load_cifar10(config.source, config.data)
    if config.dataset == "nips17":
        from .models import model_spec
        from .nips17 import PUBLISHED_SIZE, load_nips17

        if config.data is None:
            raise ValueError("the nips17 dataset needs `data` (a directory in the DEV layout)")
        size = PUBLISHED_SIZE if config.resize_inside else model_spec(config.model).input_size
        return load_nips17(config.data, size=size)
    raise ValueError(f"unknown dataset {config.dataset!r}; use 'cifar10' or 'nips17'")


def build_model(config: ExperimentConfig) -> torch.nn.Module:
    """The configured model, wrapped to resize inside when ``resize_inside``."""
    model = load_model(config.model, config.weights, device=config.device)
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


def select_images(config: ExperimentConfig, model: torch.nn.Module,
                  dataset: ImageSet) -> dict:
    """Choose the images to attack; returns the selection record (indices and rule)."""
    predicted = predict(model, dataset, config.device)
    correct = (predicted == dataset.labels).nonzero().flatten()
    if config.selection == "first":
        chosen = torch.arange(min(config.images, len(dataset)))
    elif config.selection == "first_correct":
        chosen = correct[:config.images]
    elif config.selection in ("random", "random_correct"):
        pool = correct if config.selection == "random_correct" else torch.arange(len(dataset))
        generator = torch.Generator().manual_seed(config.selection_seed)
        chosen = pool[torch.randperm(len(pool), generator=generator)[:config.images]]
    else:
        raise ValueError(f"unknown selection {config.selection!r}")
    if len(chosen) < config.images:
        print(f"note: only {len(chosen)} images available for selection {config.selection!r}")
    official = dataset.official_indices
    return {"rule": config.selection, "seed": config.selection_seed,
            "dataset_size": len(dataset), "clean_accuracy": float(
                (predicted == dataset.labels).float().mean()),
            "positions": chosen.tolist(), "indices": official[chosen].tolist(),
            "ids": [dataset.ids[i] for i in chosen.tolist()] if dataset.ids else None}


# --------------------------------------------------------------------------- runner
class ExperimentRunner:
    """Runs (or resumes) an experiment into ``config.out``."""

    def __init__(self, config: ExperimentConfig, force: bool = False) -> None:
        self.config = config
        self.out = Path(config.out)
        self.force = force

    def prepare(self) -> None:
        """Create the directory, check the config against an existing one."""
        self.out.mkdir(parents=True, exist_ok=True)
        saved = self.out / "config.json"
        digest = self.config.digest()
        if saved.is_file():
            old = json.loads(saved.read_text())
            if old.get("hash") != digest:
                if not self.force:
                    raise ConfigMismatchError(
                        f"{self.out} holds results of another config (hash {old.get('hash')},"
                        f" now {digest}); choose another --out or pass --force to move the "
                        "old results aside")
                stamp = time.strftime("%Y%m%d-%H%M%S")
                for name in (RESULTS, "selection.json"):
                    if (self.out / name).exists():
                        os.replace(self.out / name, self.out / f"{name}.old-{stamp}")
        write_json_atomic(saved, {"hash": digest, "config": self.config.to_dict()})
        write_json_atomic(self.out / "environment.json", environment())

    def run(self, progress: bool = True,
            on_group: Callable[[list[dict]], None] | None = None) -> list[dict]:
        """Attack every (seed, mode, image) not yet in ``results.jsonl``; return all rows."""
        self.prepare()
        config = self.config
        model = build_model(config)
        dataset = load_dataset(config)
        selection_path = self.out / "selection.json"
        if selection_path.is_file():
            selection = json.loads(selection_path.read_text())
        else:
            selection = select_images(config, model, dataset)
            write_json_atomic(selection_path, selection)
        results_path = self.out / RESULTS
        rows = read_results(results_path, repair=True)
        done = {(r["seed"], r["mode"], r["image_index"]) for r in rows}
        work = [(seed, mode, pos, idx) for seed in config.seeds for mode in config.modes
                for pos, idx in zip(selection["positions"], selection["indices"], strict=True)
                if (seed, mode, idx) not in done]
        with _progress(progress, total=len(work) + len(done), done=len(done),
                       successes=sum(r["success"] for r in rows)) as bar:
            for group in _groups(work, config.batch_images):
                new = self._attack_group(model, dataset, group)
                append_rows(results_path, new)
                rows.extend(new)
                bar.advance(new)
                if on_group is not None:
                    on_group(new)
        return rows

    def _attack_group(self, model, dataset: ImageSet, group: list[tuple]) -> list[dict]:
        """Attack one group (same seed and mode) and return its rows."""
        config = self.config
        seed, mode = group[0][0], group[0][1]
        positions = torch.tensor([g[2] for g in group])
        images = to_float(dataset.images[positions]).to(config.device)
        labels = dataset.labels[positions].to(config.device)
        attack = OnePixelAttack(
            model, prior=config.prior(mode), popsize=config.popsize, maxiter=config.maxiter,
            mutation=config.mutation, pixels=config.pixels, init_color=config.init_color,
            seed=seed, max_batch=config.max_batch, batch_invariant=True, engine=config.engine)
        began = time.time()
        output = attack(images, labels)
        wall = time.time() - began
        rows = []
        for (seed_, mode_, _, index), result in zip(group, output.results, strict=True):
            row = result.to_row()
            row.pop("index")  # position inside the attacked batch; image_index identifies it
            row.update(seed=seed_, mode=mode_, image_index=index, config_hash=config.digest(),
                       group_seconds=wall, group_size=len(group), finished=time.time())
            rows.append(row)
        return rows


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


class _progress:
    """A rich progress bar with images done, success so far and ETA (or nothing)."""

    def __init__(self, enabled: bool, total: int, done: int, successes: int) -> None:
        self.enabled, self.total, self.done, self.successes = enabled, total, done, successes

    def __enter__(self) -> _progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("[bold]attack"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("success {task.fields[rate]}"), TimeElapsedColumn(),
                                TextColumn("ETA"), TimeRemainingColumn())
            self.bar.start()
            self.task = self.bar.add_task("attack", total=self.total, completed=self.done,
                                          rate=self._rate())
        return self

    def _rate(self) -> str:
        return f"{self.successes}/{self.done}" if self.done else "-"

    def advance(self, rows: list[dict]) -> None:
        self.done += len(rows)
        self.successes += sum(r["success"] for r in rows)
        if self.enabled:
            self.bar.update(self.task, advance=len(rows), rate=self._rate())

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.stop()


def run_experiment(config: ExperimentConfig, force: bool = False,
                   progress: bool = True) -> list[dict]:
    """Convenience wrapper: run or resume ``config``; return all result rows."""
    return ExperimentRunner(config, force=force).run(progress=progress)
