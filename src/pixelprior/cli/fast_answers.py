"""``susceptibility --fast``: the fast mode's answer per image (fooled, or certified on
the corner grid) into ``fast.json``, beside the answers the folder holds of other images."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .._io import check_own_folder
from ..data import to_float
from ..experiment.scans import same_setting
from ._app import console
from .errors import fail

FAST_FILE = "fast.json"


# what a folder's fast answers were made of: a rerun must name the same (it replaces them)
FAST_SETTINGS = ("model", "weights", "target", "source", "classes", "mean", "std",
                 "input_size")


def check_fast_folder(out: Path, info: dict) -> None:
    """Refuse a folder of other files, or fast answers of other data or another model
    (a rerun answers its images again, replacing their answers; other images' are kept).
    Called before the model opens, and again once ``info`` holds the images' size (an
    ``input_size`` flag is compared by the size the images ran at)."""
    check_own_folder(out, FAST_FILE, {FAST_FILE, ".lock"}, "fast answers")
    if not (out / FAST_FILE).is_file():
        return
    try:
        settings = json.loads((out / FAST_FILE).read_text()).get("settings")
    except (ValueError, AttributeError):
        fail(f"{out / FAST_FILE} is not a readable fast answer; choose another --out")
    if settings is None:
        fail(f"{out / FAST_FILE} does not say what it answered (made by an earlier "
             "version); choose another --out, or remove it")
    changed = [k for k in FAST_SETTINGS if not same_setting(k, settings, info)
               and (k != "input_size" or "image_size" in info)]  # then: by the size
    if changed:
        said = ", ".join(f"{k} {settings.get(k)!r} (now {info.get(k)!r})" for k in changed)
        fail(f"{out} holds fast answers made with {said}; choose another --out")


def earlier_fast_rows(out: Path) -> list[dict]:
    """The answers a folder holds already (of the same settings: checked before)."""
    try:
        return list(json.loads((out / FAST_FILE).read_text()).get("images") or [])
    except (OSError, ValueError, AttributeError):
        return []


def fast_answers(out: Path, net, batch, labels, indices, device: str, engine: str = "auto",
                  group: int = 10, info: dict | None = None) -> None:
    """``--fast``: the fast mode on each image; per image fooled (with the pixel and its
    queries) or certified on the corner grid, into ``out/fast.json`` (with ``info``, what
    it was made of), beside the answers it holds of other images (the same image's
    replaced)."""
    from .._io import write_json_atomic
    from ..models import gradient_problem
    from ..priors import WeightedPrior
    from ..search import FastAttack

    images = to_float(batch) if batch.dtype == torch.uint8 else batch
    order = "gradient"
    if (why := gradient_problem(net, images[:1].to(device))) is not None:
        order = "occlusion"  # the answers are the same in any order; only queries differ
        console.print("note: positions ranked by the occlusion map, not the gradient's "
                      f"(the model has no input gradients: {why})")
    info = {**(info or {}), "order": order}
    attack = FastAttack(net, WeightedPrior(sensitivity=order), batch_invariant=True,
                        engine=engine, verify="off")  # corners: the answer this command
    # gives (`verify` proves; FastAttack verifies by default)
    rows = []
    for start in range(0, len(labels), group):
        part = slice(start, start + group)
        output = attack.run(images[part].to(device), labels[part].to(device))
        for index, result in zip(indices[part], output.results, strict=True):
            rows.append({"image_index": index, **result.to_row()})
    out.mkdir(parents=True, exist_ok=True)
    answered = {row["image_index"] for row in rows}
    kept = [row for row in earlier_fast_rows(out) if row.get("image_index") not in answered]
    every = sorted(kept + rows, key=lambda row: row["image_index"])
    write_json_atomic(out / FAST_FILE, {"settings": info or {},
                                        "model_queries": sum(r["queries"] for r in every),
                                        "images": every})
    if kept:
        console.print(f"note: {out / FAST_FILE} also holds the answers of {len(kept)} other "
                      "image(s), kept")
    fooled = sum(r["success"] for r in rows)
    certified = sum(bool(r["corner_certified"]) and not r["success"] for r in rows)
    console.print(f"{fooled} of {len(rows)} images fooled by one pixel, {certified} certified "
                  f"on the corner grid (no corner colour at any position changes the label), "
                  f"{len(rows) - fooled - certified} neither; "
                  f"{sum(r['queries'] for r in rows):,} queries; written to {out / 'fast.json'}")
