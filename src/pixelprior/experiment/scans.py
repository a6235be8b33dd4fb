"""Exhaustive scans as resumable runs: ``maps.npz`` and ``summary.json`` of a folder,
rewritten atomically after every group of images."""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._io import Progress, RunLock, check_writable_dir, write_json_atomic
from .._streams import pixel_keys
from ..data import MAPS_FILE, SusceptibilityMaps, scan_summary
from ..search import SusceptibilityScan


def run_scan(out: str | Path, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             indices: list[int], levels: int = 3, engine="auto", batch_images: int = 10,
             device: str = "cpu", progress: bool = True, info: dict | None = None,
             interrupts=None) -> SusceptibilityMaps:
    """Scan ``images`` (float ``[N, C, H, W]``, dataset ``indices``) into ``out``:
    ``maps.npz`` and ``summary.json``, rewritten atomically after every group of
    ``batch_images``, so an interrupted scan resumes where it stopped (same command).
    Images already in ``out`` (matched by their pixels) are not scanned again; a folder
    holding a scan of another model, grid or target is refused. Returns every image of
    the folder (:meth:`SusceptibilityMaps.rows_of` picks these)."""
    out = Path(out)
    check_writable_dir(out)
    info = {"levels": levels, **(info or {})}
    keys = pixel_keys(images)
    with RunLock(out):
        parts = _existing_parts(out, info)
        done = {key for part in parts for key in part.image_keys.tolist()}
        todo = [n for n, key in enumerate(keys) if key not in done]
        scan = SusceptibilityScan(model, levels, engine, batch_invariant=True)
        earlier = float(parts[0].info.get("seconds", 0.0)) if parts else 0.0
        began = time.perf_counter()
        wanted = set(keys)
        fooled_before = sum(bool(part.vulnerable[row].any()) for part in parts
                            for row, key in enumerate(part.image_keys.tolist())
                            if key in wanted)
        with Progress(progress, "scan", len(indices), len(indices) - len(todo),
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
                guard = interrupts.critical() if interrupts is not None else nullcontext()
                with guard:
                    maps.save(out / MAPS_FILE)
                    write_json_atomic(out / "summary.json", _summary_json(maps))
                bar.advance(len(group), int(part.vulnerable.reshape(len(group), -1).any(1).sum()))
    maps = SusceptibilityMaps.load(out)
    return maps


def _existing_parts(out: Path, info: dict) -> list[SusceptibilityMaps]:
    """What an earlier (interrupted) scan into ``out`` already holds; a scan of another
    model or grid refuses to mix."""
    if not (out / MAPS_FILE).is_file():
        return []
    old = SusceptibilityMaps.load(out)
    for key in ("levels", "model", "weights", "target"):
        if key in info and old.info.get(key) != info[key]:
            raise ValueError(f"{out} holds a scan with {key} = {old.info.get(key)!r}, not "
                             f"{info[key]!r}; choose another output folder")
    return [old]


def _merge(parts: list[SusceptibilityMaps], levels: int, info: dict) -> SusceptibilityMaps:
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    return SusceptibilityMaps(cat("image_keys"), cat("image_indices"), cat("labels"),
                              cat("min_true_probability"), cat("min_margin"),
                              cat("vulnerable"), cat("best_colour"), levels, "", info)


def _summary_json(maps: SusceptibilityMaps) -> dict:
    images = scan_summary(maps)
    shape = maps.vulnerable.shape
    positions = int(np.prod(shape[1:]))
    colours = maps.levels ** 3
    vulnerable = maps.vulnerable.reshape(len(images), -1)
    return {**maps.info, "colours": colours, "positions": positions,
            "queries_per_image": positions * colours, "scanned": len(images),
            "fooled": sum(i["fooled"] for i in images),
            "vulnerable_share": float(vulnerable.mean()) if len(images) else None,
            "images": images}

