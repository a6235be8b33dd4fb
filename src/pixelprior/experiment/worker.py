"""Workers attack groups of images (one seed and mode each) and return their rows and
maps; the run's saved maps (``maps/``) are written and read here."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from .._io import save_npz_atomic
from ..data import image_fingerprints, to_float
from ..maps import METHODS
from ..models import gradient_problem, model_fingerprint
from ..search import SEARCHES
from .config import ConfigError, ExperimentConfig
from .environment import package_version
from .inputs import build_model, load_dataset
from .modes import build_attack, map_method

MAPS_DIR = "maps"


class GroupWorker:
    """Attacks groups of (seed, mode, position, index) work items: the model, the images
    and one scorer built once. The in-process runner holds one; each Ray actor holds one.

    Args:
        config: the run's config.
        device: where the model runs (default: the config's device).
    """

    def __init__(self, config: ExperimentConfig, device: str | None = None) -> None:
        self.config = config
        self.device = device or config.resolved_device()
        _deterministic_kernels(self.device)
        self.model = run_model(config, self.device)
        self.dataset = load_dataset(config)
        self._scorer = None
        self.log = None  # told each note of an attack once (e.g. why fast did not verify)
        self._said: set[str] = set()

    def check_engine(self, position: int) -> None:
        """Build the scorer of the config's engine once, on one image: an engine that
        cannot serve the model is refused before the run writes anything (``auto``
        falls back, and is not checked here).

        Args:
            position: an image's position in the dataset.

        Raises:
            ConfigError: the engine cannot score this model.
        """
        if self.config.engine == "auto":
            return
        images = to_float(self.dataset.images[[position]]).to(self.device)
        attack = build_attack(self.config, self.config.modes[0], self.model, 0)
        try:
            self._scorer = attack.scorer(images)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def check_gradients(self, position: int) -> None:
        """:func:`check_gradient_maps` on one image, before the run writes anything.

        Args:
            position: an image's position in the dataset.

        Raises:
            ConfigError: modes that read a gradient map of a model without gradients.
        """
        images = to_float(self.dataset.images[[position]]).to(self.device)
        check_gradient_maps(self.config, self.model, images)

    def inputs(self, positions: list[int]) -> dict:
        """What this worker attacks, as fingerprints: the model's (as the run records it)
        and the images' and labels at ``positions`` of its dataset. A Ray worker builds
        them on its own node; the run compares them with its own before any work.

        Args:
            positions: images' positions in the dataset.

        Returns:
            ``{"model": fingerprint, "images": [fingerprint, ...], "labels": [...]}``.
        """
        return {"model": model_fingerprint(self.model, self.config.model),
                "images": image_fingerprints(self.dataset.images[positions]),
                "labels": self.dataset.labels[positions].tolist()}

    def attack(self, group: list[tuple]) -> tuple[list[dict], dict[str, np.ndarray]]:
        """Attack one group.

        Args:
            group: ``(seed, mode, position, index)`` items sharing seed and mode.

        Returns:
            ``(rows, maps)``: one row per item (the result's fields and the runner's), and
            the group's maps (:func:`save_maps`).
        """
        config = self.config
        seed, mode = group[0][0], group[0][1]
        positions = torch.tensor([g[2] for g in group])
        images = to_float(self.dataset.images[positions]).to(self.device)
        labels = self.dataset.labels[positions].to(self.device)
        attack = build_attack(config, mode, self.model, seed, scorer=self._scorer)
        began = time.time()
        output = attack.run(images, labels)
        wall = time.time() - began
        self._scorer = attack.scorer(images)  # built and checked once, reused
        note = getattr(attack, "note", None)
        if note and self.log is not None and note not in self._said:
            self._said.add(note)
            self.log(f"note: {mode}: {note}")
        rows = []
        digest, version = config.digest(), package_version()  # once per group
        for (seed_, mode_, _, index), result in zip(group, output.results, strict=True):
            row = result.to_row()
            row.pop("index")  # position inside the attacked batch; image_index identifies it
            row.update(seed=seed_, mode=mode_, image_index=index, config_hash=digest,
                       group_seconds=wall, group_size=len(group), finished=time.time(),
                       device=self.device, engine=self._scorer.name,
                       chunk_rows=attack.chunk_rows, version=version)
            rows.append(row)
        return rows, _maps_of(output.distribution, [g[3] for g in group])


def check_gradient_maps(config: ExperimentConfig, model: torch.nn.Module,
                        images: torch.Tensor) -> None:
    """Refuse modes that read a gradient map of a model without input gradients (an ONNX
    graph onnx2torch cannot convert, a model that detaches its scores), and a GradCAM
    layer (``map_options.layer``) the model has no module of, before any work: else the
    first such mode stops a run midway, after rows were written.

    Args:
        config: the run's config (its modes and its map method).
        model: the model.
        images: float ``[B, C, H, W]`` in [0, 1], the first of which is probed.

    Raises:
        ConfigError: such modes, with why and what to run instead.
    """
    layer = config.map_options.get("layer")
    if layer is not None and any(map_method(mode, config.sensitivity) == "gradcam"
                                 for mode in config.modes):
        try:  # (run on one image: the layer must output a map)
            METHODS.get("gradcam")(model, layer=layer).layer_attribute(
                images[:1], torch.zeros(1, dtype=torch.long, device=images.device))
        except ValueError as exc:
            raise ConfigError(f"map_options.layer: {exc}") from None
    needs = {mode: method for mode in config.modes
             if (method := map_method(mode, config.sensitivity)) is not None
             and METHODS.get(method).needs_gradients}
    if not needs or (why := gradient_problem(model, images)) is None:
        return
    reads = ", ".join(f"{mode} ({method} map)" for mode, method in needs.items())
    raise ConfigError(
        f"{config.model}: {why}, so gradient maps cannot be made, and mode(s) {reads} read "
        "one: use the occlusion map (fast:occlusion, scan:occlusion, or --sensitivity "
        "occlusion for a run's DE priors) or a mode that reads no map (unconstrained, scan, "
        "fast:random, random_search)")


def run_model(config: ExperimentConfig, device: str | None = None) -> torch.nn.Module:
    """The model as the run's workers build it: what a run attacks, and what its
    fingerprint is taken of (by the run, and again by a resume and a report).

    Args:
        config: the run's config.
        device: where to load it (default: the config's device).

    Returns:
        The model (:func:`~pixelprior.experiment.inputs.build_model`).
    """
    return build_model(config, device or config.resolved_device())


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
    """Where a group's maps are saved.

    Args:
        directory: the run folder.
        seed: the group's seed.
        mode: its mode (``:`` written as ``-``).
        first_index: the dataset index of its first image.

    Returns:
        ``DIR/maps/MODE/seedS-I.npz``.
    """
    return Path(directory) / MAPS_DIR / mode.replace(":", "-") / f"seed{seed}-{first_index}.npz"


def save_maps(directory: Path, seed: int, mode: str, maps: dict[str, np.ndarray]) -> None:
    """Write one group's maps atomically (before its rows, so a row implies its map);
    nothing for a mode without a map or a start set.

    Args:
        directory: the run folder.
        seed: the group's seed.
        mode: its mode.
        maps: ``image_index`` int64 ``[n]``, and ``sensitivity`` float ``[n, H, W]`` and
            ``start_set`` bool ``[n, H, W]`` where the mode has them.
    """
    if len(maps) == 1:  # no map and no set (the uniform prior): nothing to draw
        return
    path = maps_path(directory, seed, mode, int(maps["image_index"][0]))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npz_atomic(path, **maps)  # its temporary name is outside load_maps' pattern


MAP_ARRAYS = {"sensitivity": "f", "start_set": "b"}  # per image [H, W]: float / bool


def load_maps(directory: Path, problems: list[tuple[Path, str]] | None = None
              ) -> dict[tuple[int, str, int], dict[str, np.ndarray]]:
    """Saved maps by (seed, mode, image_index). An unreadable or malformed file (a write
    cut short by a crash, a damaged disk) counts as missing — the runner's next resume
    writes it again — and is listed in ``problems`` as ``(path, why)`` when given.

    Args:
        directory: the run folder.
        problems: filled with the files that could not be used, and why.

    Returns:
        ``(seed, mode, image_index)`` → ``{"sensitivity": float [H, W], "start_set":
        bool [H, W]}`` (those the file holds).
    """
    out: dict[tuple[int, str, int], dict[str, np.ndarray]] = {}
    root = Path(directory) / MAPS_DIR
    for path in sorted(root.glob("*/seed*.npz")) if root.is_dir() else []:
        try:
            seed = int(path.stem[4:].split("-")[0])
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            why = _maps_problem(arrays)
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            why = f"unreadable ({type(exc).__name__}: {exc})"
        if why is not None:
            if problems is not None:
                problems.append((path, why))
            continue
        mode = _mode_of_folder(path.parent.name)
        for n, index in enumerate(arrays["image_index"].tolist()):
            out[(seed, mode, int(index))] = {k: v[n] for k, v in arrays.items()
                                             if k in MAP_ARRAYS}
    return out


def _maps_problem(arrays: dict[str, np.ndarray]) -> str | None:
    """What is wrong with the arrays of one maps file (``None``: nothing)."""
    index = arrays.get("image_index")
    if index is None or index.ndim != 1 or index.dtype.kind not in "iu" or not len(index):
        return "image_index must be a non-empty list of integers"
    for name, kind in MAP_ARRAYS.items():
        if name not in arrays:
            continue
        array = arrays[name]
        if array.ndim != 3 or len(array) != len(index) or array.dtype.kind != kind:
            return (f"{name} must be {'float' if kind == 'f' else 'bool'} [{len(index)}, H, W], "
                    f"got {array.dtype} {list(array.shape)}")
    return None


def _mode_of_folder(name: str) -> str:
    """The mode a ``maps/`` folder is named after (``scan-gradient`` → ``scan:gradient``,
    ``random_search-constrained`` → ``random_search:constrained``): mode names of the
    searches that take an argument hold no ``-`` of their own."""
    head, dash, tail = name.partition("-")
    return f"{head}:{tail}" if dash and head in SEARCHES else name

