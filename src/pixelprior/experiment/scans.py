"""Exhaustive scans as resumable runs: ``maps.npz`` and ``summary.json`` of a folder,
rewritten atomically after every group of images.

A scan folder records what its maps were made with (``info`` in ``maps.npz``): the
model (its spec and fingerprint), the normalisation, the input size, the class names,
the color grid and the target. A resume compares every one of them and refuses another
(a scan with ``--mean`` 0.5 never continues with ``--mean`` 0.4); images are matched by
their pixels, and an index already scanned with other pixels is refused. What the work
costs is said before it starts (:func:`~pixelprior.experiment.cost.cost_lines`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._io import (
    Interrupts,
    RunLock,
    check_own_folder,
    check_writable_dir,
    write_json_atomic,
)
from .._streams import pixel_keys
from ..data import MAPS_FILE, SusceptibilityMaps, scan_summary
from ..models import code_changed, model_fingerprint, same_model
from ..search import SusceptibilityScan
from .cost import (  # noqa: F401  (their old import path)
    QUERY_RATES,
    WARN_QUERIES,
    WARN_SECONDS,
    cost_lines,
    duration,
)
from .environment import write_environment
from .progress import ProgressReporter, as_reporter, reporting
from .records import earlier_model_fingerprint

# what a scan folder holds (anything else there is someone's other files)
SCAN_FILES = frozenset({MAPS_FILE, "summary.json", ".lock", "environment.json",
                        "map_metrics.csv", "map_metrics.md", "map_metrics.json"} | {
    f"{name}.{ext}" for name in ("oracle_maps", "roc", "maps_compared", "ranked_scans")
    for ext in ("png", "pdf")})
# the options that change a scan's maps: a resume must be given the same ones (the
# engine and the device change float bits at most, and are not compared)
MAP_OPTIONS = ("levels", "model", "weights", "target", "mean", "std", "input_size",
               "classes")
FINGERPRINT = "model_fingerprint"


class ScanMismatchError(ValueError):
    """The folder holds a scan made with other options, another model or other images."""


def run_scan(out: str | Path, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             indices: list[int], levels: int = 3, engine: str = "auto",
             batch_images: int = 10, device: str = "cpu",
             progress: ProgressReporter | bool | None = None, info: dict | None = None,
             interrupts: Interrupts | None = None,
             log: Callable[[str], None] | None = None) -> SusceptibilityMaps:
    """Scan ``images`` into ``out``: ``maps.npz`` and ``summary.json``, rewritten
    atomically after every group of ``batch_images``, so an interrupted scan resumes where
    it stopped (same command), and ``environment.json`` (the machine and pixelprior
    version of each run into the folder). Images already in ``out`` (matched by their
    pixels) are not scanned again.

    Args:
        out: the scan folder.
        model: the model (images in [0, 1] → scores).
        images: float ``[N, C, H, W]`` in [0, 1].
        labels: int64 ``[N]``.
        indices: the images' dataset indices (``-1`` for a file).
        levels: colors per channel of the grid.
        engine: how candidates are scored.
        batch_images: images scanned together.
        device: where the model runs.
        progress: told the progress (``None``/``False``: nothing is told).
        info: what the maps are made with (:data:`MAP_OPTIONS`, the source, ...); the
            model's fingerprint is added here.
        interrupts: signals end the scan between groups, never inside a write.
        log: told notes (an earlier scan that did not record the model's fingerprint).

    Returns:
        Every image of the folder (:meth:`SusceptibilityMaps.rows_of` picks these).

    Raises:
        OutputLocationError: the folder holds other files and no scan.
        ScanMismatchError: the folder holds a scan made with other options, another
            model, or another image under one of these indices.
    """
    out = Path(out)
    reporter = as_reporter(progress)
    check_writable_dir(out)
    check_scan_folder(out)
    info = {"levels": levels, **(info or {})}
    info[FINGERPRINT] = model_fingerprint(model, info.get("model"))
    keys = pixel_keys(images)
    with RunLock(out):
        parts = _existing_parts(out, info, log)
        _check_indices(out, parts, keys, indices)
        check_same_labels(out, [(key, int(label)) for part in parts for key, label in zip(
            part.image_keys.tolist(), part.labels.tolist(), strict=True)], keys,
            labels.tolist(), indices, ScanMismatchError)
        done = {key for part in parts for key in part.image_keys.tolist()}
        todo = [n for n, key in enumerate(keys) if key not in done]
        scan = SusceptibilityScan(model, levels, engine, batch_invariant=True)
        earlier = float(parts[0].info.get("seconds", 0.0)) if parts else 0.0
        if parts and _recorded_fingerprint(parts[0]) is None:
            info.pop(FINGERPRINT)  # not recorded for the earlier images: not claimed
        write_environment(out, device, log or (lambda _: None))
        began = time.perf_counter()
        fooled_before = _fooled(parts, set(keys))
        guard = interrupts.critical if interrupts is not None else nullcontext
        with reporting(reporter, "scan", len(indices), len(indices) - len(todo),
                       fooled_before, what="fooled") as bar:
            for start in range(0, len(todo), batch_images):
                group = todo[start:start + batch_images]
                batch = images[group].to(device)
                result = scan(batch, labels[group].to(device))
                part = SusceptibilityMaps.from_scan(result, batch, labels[group],
                                                    [indices[n] for n in group], levels,
                                                    keys=[keys[n] for n in group])
                parts.append(part)
                maps = _merge(parts, levels, {
                    **info, "seconds": earlier + time.perf_counter() - began})
                with guard():
                    maps.save(out / MAPS_FILE)
                    write_json_atomic(out / "summary.json", _summary_json(maps))
                bar.advance(len(group), int(part.vulnerable.reshape(len(group), -1).any(1).sum()))
    return SusceptibilityMaps.load(out)


def check_scan_folder(out: Path | str) -> None:
    """Refuse a folder that holds other files and no scan (they would be mixed in).

    Args:
        out: the scan folder.

    Raises:
        OutputLocationError: other files, and no ``maps.npz``.
    """
    check_own_folder(out, MAPS_FILE, SCAN_FILES, "scan")


def _existing_parts(out: Path, info: dict, log: Callable[[str], None] | None = None
                    ) -> list[SusceptibilityMaps]:
    """What an earlier (interrupted) scan into ``out`` already holds; a scan made with
    other options or another model refuses to mix."""
    if not (out / MAPS_FILE).is_file():
        return []
    old = SusceptibilityMaps.load(out)
    for key in MAP_OPTIONS:
        if key in info and not same_setting(key, old.info, info):
            raise ScanMismatchError(f"{out} holds a scan with {key} = {old.info.get(key)!r}, "
                                    f"not {info[key]!r}; choose another output folder")
    was = _recorded_fingerprint(old)
    if was is None and log is not None:
        log(f"note: {out} does not record its model's fingerprint (made by an earlier "
            "version): the model is not checked")
    elif was is not None and FINGERPRINT in info and not same_model(was, info[FINGERPRINT]):
        raise ScanMismatchError(
            f"{out} holds a scan of another model: {info.get('model')} changed since it "
            f"was scanned (fingerprint {was}, now {info[FINGERPRINT]}); restore the model, "
            "or choose another output folder")
    return [old]


def check_scan_model(scan_path: str | Path, model: str, fingerprint: str) -> str | None:
    """Refuse a scan made with another model than the one it is used with (as the oracle
    prior or order, or to select the images it fooled): its positions and colours are
    another model's.

    Args:
        scan_path: the scan's folder (or its ``maps.npz``).
        model: the spec of the model it is used with.
        fingerprint: that model's :func:`~pixelprior.models.model_fingerprint`.

    Returns:
        A note to print where the scan records no model at all (it is not checked).

    Raises:
        ConfigError: the scan records another fingerprint or, made by an earlier version
            that recorded none, another model spec.
    """
    from .config import ConfigError

    scan = SusceptibilityMaps.load(scan_path)
    was = _recorded_fingerprint(scan)
    if was is not None and same_model(was, fingerprint):
        return None
    recorded = scan.info.get("model")
    if was is None and recorded is None:
        return (f"note: the oracle {scan_path} does not record the model it was made with: "
                "not checked")
    if was is None and _same_spec(recorded, model):
        return None
    made = "its model not recorded" if recorded is None else recorded
    raise ConfigError(
        f"the oracle {scan_path} is a scan of another model ({made}"
        f"{'' if was is None else f', fingerprint {_short(was)}'}), not of {model} "
        f"(fingerprint {_short(fingerprint)}); scan these images with this model: "
        f"`pixelprior susceptibility ... --model {model} --out DIR`")


def check_ground_truth_model(maps: SusceptibilityMaps, where: str | Path,
                             fingerprint: str) -> None:
    """Refuse a ground truth (a scan, exact verdicts) whose recorded model is not the one
    loaded now to be scored against it (its weights file replaced since, another file
    under the recorded relative path): the maps would be another model's.

    Args:
        maps: the ground truth, its ``info`` as recorded.
        where: its folder, for the message.
        fingerprint: :func:`~pixelprior.models.model_fingerprint` of the model loaded.

    Raises:
        ConfigError: another fingerprint recorded.
    """
    from .config import ConfigError

    was = _recorded_fingerprint(maps)
    if was is not None and not same_model(was, fingerprint):
        model = str(maps.info.get("model"))
        what = (f"the code of {model.rsplit(':', 1)[0]} (the model's factory) changed"
                if code_changed(was, fingerprint) else "its weights or code changed")
        raise ConfigError(
            f"{where} was made with model_fingerprint {_short(was)}, and the model loaded "
            f"now from its record ({model}, weights {maps.info.get('weights') or 'its own'})"
            f" is {_short(fingerprint)}: {what} since; restore it, or scan these images "
            "again")


def _short(fingerprint: str) -> str:
    """A fingerprint in a message: the first 12 digits of each of its parts (the
    weights', then a factory's code and files), so that two that differ show it."""
    first, *parts = fingerprint.split("+")
    return "+".join([first[:12], *(f"{p.split(':', 1)[0]}:{p.split(':', 1)[1][:12]}"
                                   if ":" in p else p[:12] for p in parts)])


def _same_spec(recorded: str | None, model: str) -> bool:
    """Two model specs name the same model: equal, or the same file by another path."""
    if recorded is None:
        return False
    if recorded == model:
        return True
    first, second = Path(recorded).expanduser(), Path(model).expanduser()
    return first.is_file() and second.is_file() and first.resolve() == second.resolve()


def _recorded_fingerprint(maps: SusceptibilityMaps) -> str | None:
    """The model fingerprint a scan recorded, or ``None`` (an earlier version recorded
    none, or one of the earlier form, which cannot be compared)."""
    was = maps.info.get(FINGERPRINT)
    return None if was is None or earlier_model_fingerprint(was) else was


def comparable_setting(value: Any) -> Any:
    """An option as compared: ``"0.5,0.5"`` and ``[0.5, 0.5]`` alike (the command line
    records text, the Python API lists)."""
    if isinstance(value, str) and value and all(
            part.strip().replace(".", "", 1).lstrip("-").isdigit()
            for part in value.split(",")):
        return tuple(float(part) for part in value.split(","))
    if isinstance(value, (list, tuple)):
        return tuple(float(v) if isinstance(v, (int, float)) else v for v in value)
    return value


def same_setting(name: str, earlier: dict, now: dict) -> bool:
    """Whether a recorded setting is the one given now. ``input_size`` (the flag, ``None``
    where the model's own size was used) is compared by the size the images ran at
    (``image_size``) where both record it: ``--input-size 32`` resumes a folder made
    without it from a 32-pixel model, and the other way round."""
    if name == "input_size" and earlier.get("image_size") is not None and (
            now.get("image_size") is not None):
        return comparable_setting(earlier["image_size"]) == comparable_setting(
            now["image_size"])
    return compared_setting(name, earlier.get(name)) == compared_setting(name, now.get(name))


def compared_setting(name: str, value: Any) -> Any:
    """A recorded setting as a resume compares it: the target and the weights, where they
    name an existing file or folder, by the resolved path (``./cat.png`` and ``cat.png``
    alike); the rest by :func:`comparable_setting`."""
    if (name in ("target", "weights") and isinstance(value, str)
            and value not in ("", "cifar10") and Path(value).exists()):
        return str(Path(value).resolve())
    return comparable_setting(value)


def _check_indices(out: Path, parts: list[SusceptibilityMaps], keys: list[str],
                   indices: list[int]) -> None:
    """An index already in the folder must come with the same pixels (else the maps of
    two images would share it: the data changed, or it was loaded another way)."""
    scanned = [(int(index), key) for part in parts
               for index, key in zip(part.image_indices.tolist(), part.image_keys.tolist(),
                                     strict=True)]
    check_same_pixels(out, scanned, keys, indices, ScanMismatchError)


def check_same_pixels(out: Path, earlier: list[tuple[int, str]], keys: list[str],
                      indices: list[int], error: type[ValueError]) -> None:
    """Refuse an index a folder holds with other pixels than the image given now.

    Image files have no index (``-1``). A folder of one file, given one file (the command
    line's form: a folder holds one target), refuses other pixels: the file changed, or
    another file is at its path now. Several files under ``-1`` (the Python API's) cannot
    be told from new ones, and are not checked.

    Args:
        out: the folder.
        earlier: ``(dataset index, pixel key)`` of each image it holds.
        keys: the pixel keys of the images given now.
        indices: their dataset indices (``-1``: an image file).
        error: the folder kind's mismatch error.

    Raises:
        ValueError: ``error``, naming the index (or the image file).
    """
    held_files = [key for index, key in earlier if index < 0]
    given_files = [key for index, key in zip(indices, keys, strict=True) if index < 0]
    if len(held_files) == 1 and len(given_files) == 1 and held_files != given_files:
        raise error(f"{out} holds an image file with other pixels than the one given now "
                    "(another file at its path, or the file changed); choose another "
                    "output folder")
    indexed = {index: key for index, key in earlier if index >= 0}
    for index, key in zip(indices, keys, strict=True):
        if index in indexed and indexed[index] != key:
            raise error(
                f"{out} holds image index {index} with other pixels than the image given "
                "now under that index (the data changed, or it was resized another way); "
                "restore the data, or choose another output folder")


def check_same_labels(out: Path, earlier: list[tuple[str, int]], keys: list[str],
                      labels: list[int], indices: list[int], error: type[ValueError]) -> None:
    """Refuse an image a folder holds under another label than the one given now (its
    answer was made for that label: the data's labels changed).

    Args:
        out: the folder.
        earlier: ``(pixel key, label)`` of each image it holds.
        keys: the pixel keys of the images given now.
        labels: their labels now.
        indices: their dataset indices (``-1``: an image file).
        error: the folder kind's mismatch error.

    Raises:
        ValueError: ``error``, naming the image and both labels.
    """
    held = dict(earlier)
    for key, label, index in zip(keys, labels, indices, strict=True):
        if key in held and held[key] != label:
            image = f"image index {index}" if index >= 0 else "the image file"
            raise error(f"{out} holds {image} with label {held[key]}; it is given with "
                        f"label {label} now (the data's labels changed); restore the data, "
                        "or choose another output folder")


def _fooled(parts: list[SusceptibilityMaps], wanted: set[str]) -> int:
    """How many of the ``wanted`` images the earlier parts found vulnerable."""
    return sum(bool(part.vulnerable[row].any()) for part in parts
               for row, key in enumerate(part.image_keys.tolist()) if key in wanted)


def _merge(parts: list[SusceptibilityMaps], levels: int, info: dict) -> SusceptibilityMaps:
    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts])

    return SusceptibilityMaps(cat("image_keys"), cat("image_indices"), cat("labels"),
                              cat("min_true_probability"), cat("min_margin"),
                              cat("vulnerable"), cat("best_colour"), levels, "", info)


def _summary_json(maps: SusceptibilityMaps) -> dict:
    images = scan_summary(maps)
    shape = maps.vulnerable.shape
    positions = int(np.prod(shape[1:]))
    colors = maps.levels ** 3
    vulnerable = maps.vulnerable.reshape(len(images), -1)
    return {**maps.info, "colours": colors, "positions": positions,
            "queries_per_image": positions * colors, "scanned": len(images),
            "fooled": sum(i["fooled"] for i in images),
            "vulnerable_share": float(vulnerable.mean()) if len(images) else None,
            "images": images}
