"""Exhaustive scans as resumable runs: ``maps.npz`` and ``summary.json`` of a folder,
rewritten atomically after every group of images; and what scans and runs cost, said
before the work starts (:func:`cost_lines`)."""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._io import (
    OutputLocationError,
    Progress,
    RunLock,
    check_writable_dir,
    foreign_entries,
    write_json_atomic,
)
from .._streams import pixel_keys
from ..data import MAPS_FILE, SusceptibilityMaps, scan_summary
from ..search import SusceptibilityScan

# queries per second of whole attacks on the CPU, measured on the 2-core machine of
# benchmarks/RESULTS.md (the committed runs: DE ~2,000/s, scans ~1,100/s on the bundled
# CIFAR model; ImageNet SqueezeNets from the engines' rates there): estimates only
QUERY_RATES = {"squeezenet1_1-cifar10": {"search": 2000, "scan": 1100},
               "squeezenet1_1": {"search": 300, "scan": 300},
               "squeezenet1_0": {"search": 250, "scan": 250}}
WARN_QUERIES = 10**8  # a warning line past this many queries ...
WARN_SECONDS = 3600  # ... or past an hour (estimated)
# what a scan folder holds (anything else there is someone's other files)
SCAN_FILES = frozenset({MAPS_FILE, "summary.json", ".lock", "map_metrics.csv",
                        "map_metrics.md", "map_metrics.json"} | {
    f"{name}.{ext}" for name in ("oracle_maps", "roc", "maps_compared", "ranked_scans")
    for ext in ("png", "pdf")})


def duration(seconds: float) -> str:
    """A rough duration in words: ``40 s``, ``12 min``, ``3.5 h``, ``6 days``."""
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:,.0f} days"


def cost_lines(parts: list[tuple[int, str]], model: str, device: str, what: str,
               exact: bool = False, advice: str = "") -> list[str]:
    """The cost of the work in words, before it starts: queries, and on the CPU the time
    at a measured rate (an estimate); a ``warning:`` line past :data:`WARN_QUERIES`
    queries or :data:`WARN_SECONDS`.

    Args:
        parts: ``(queries, kind)`` of each part of the work; kind ``search`` or ``scan``
            (their rates differ).
        model: the model's registry name (its rate).
        device: where the work runs (times are estimated for ``cpu`` only).
        what: the work, in words (``"12 attacks"``).
        exact: the queries are exact (a scan), not an upper bound (searches stop early).
        advice: how to make the work smaller (said in the warning).
    """
    queries = sum(q for q, _ in parts)
    rates = QUERY_RATES.get(model)
    seconds = None
    if device == "cpu" and rates is not None:
        seconds = sum(q / rates[kind] for q, kind in parts)
        rate = min(rates[kind] for _, kind in parts) if parts else rates["search"]
        timing = (f"; about {duration(seconds)} at ~{rate:,} queries/s (an estimate for "
                  "a 2-core CPU)")
    else:
        timing = f" (time not estimated on {device}: no measured rate for {model} there)"
    lines = [f"cost: {'' if exact else 'at most '}{queries:,} model queries for "
             f"{what}{timing}"]
    if queries > WARN_QUERIES or (seconds is not None and seconds > WARN_SECONDS):
        size = f"{queries:.1e} queries" + (f", about {duration(seconds)}"
                                           if seconds is not None else "")
        lines.append(f"warning: this is a large job ({size}); {advice + '; ' if advice else ''}"
                     "Ctrl-C stops it, keeping what is finished")
    return lines


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
    check_scan_folder(out)
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


def check_scan_folder(out: Path) -> None:
    """Refuse a folder that holds other files and no scan (they would be mixed in)."""
    if (Path(out) / MAPS_FILE).is_file():
        return
    foreign = foreign_entries(out, lambda name, is_dir: name in SCAN_FILES or (
        name.startswith(".") and name.endswith(".tmp")))
    if foreign:
        shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
        raise OutputLocationError(f"--out {out} holds other files ({shown}) and no scan; "
                                  "choose an empty or new folder for the scan")


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

