"""The exact ground truth against the 27-color grid: where one pixel of ANY color fools
a model (``pixelprior verify --exact``, every position decided by the sound verifier)
against where one of the grid's 27 colors does (``pixelprior susceptibility``).

Made with (this folder's README lists the machine and the times)::

    pixelprior verify cifar10 --model convsmall-cifar10 --images 50 --exact --budget 0 \
        --max-boxes 40000 --deterministic --out results/cifar10-verified/exact
    pixelprior susceptibility cifar10 --model convsmall-cifar10 --images 50 \
        --out results/cifar10-verified/scan27
    python results/cifar10-verified/compare.py

and for another model, its own folder holding ``exact/`` and ``scan27/``::

    python results/cifar10-verified/compare.py --model resnet8-ibp-cifar10 \
        --folder results/cifar10-verified/resnet8-ibp

Writes ``comparison.md``, ``comparison.json`` and ``verdicts.png`` here: per image and in
total, the positions the verifier proves robust, finds vulnerable, and leaves unknown; how
many vulnerable positions the grid finds; the fast mode's answer from the 8 corner colors
(fooled, or certified on the corners); and the soundness check (a position proved robust
that the grid fools, or an image verified that the corners fool, would be a bug: counted,
must be 0).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from pixelprior import FastAttack, load_cifar10, load_model, to_float
from pixelprior.data import SusceptibilityMaps
from pixelprior.experiment import load_positions, read_rows, write_json_atomic
from pixelprior.report import roc_auc
from pixelprior.report.mapeval import method_maps

METHODS = ("smoothgrad", "gradient", "integrated_gradients", "occlusion")

HERE = Path(__file__).parent
NAMES = {"convsmall-cifar10": "ConvSmall",
         "resnet8-ibp-cifar10": "the ResNet8 fine-tuned for one pixel"}


def corner_answers(spec: str, indices: list[int]) -> dict[int, bool]:
    """The fast mode (8 corner colors, no verify stage) per test index: fooled?"""
    model = load_model(spec).eval()
    data = load_cifar10("full")
    where = {int(i): n for n, i in enumerate(data.official_indices)}
    pick = torch.tensor([where[i] for i in indices])
    out = FastAttack(model, verify="off", batch_invariant=True).run(
        to_float(data.images[pick]), data.labels[pick])
    return {i: bool(r.success) for i, r in zip(indices, out.results, strict=True)}


def map_aucs(spec: str, rows: list[dict], maps: SusceptibilityMaps,
             statuses: dict[int, np.ndarray]) -> dict:
    """Each map's mean ROC AUC at finding the vulnerable positions, against the exact
    verdicts (over the positions they decide: an unknown position is neither) and against
    the 27-color grid, over the images with both kinds of position under both (the same
    images for both columns)."""
    model = load_model(spec).eval()
    data = load_cifar10("full")
    where = {int(i): n for n, i in enumerate(data.official_indices)}
    by_index = {int(i): n for n, i in enumerate(maps.image_indices)}
    picked = [row["image_index"] for row in rows
              if (statuses[row["image_index"]] == 1).any()
              and (statuses[row["image_index"]] == 0).any()
              and 0 < maps.vulnerable[by_index[row["image_index"]]].sum()
              < maps.vulnerable[by_index[row["image_index"]]].size]
    if not picked:
        return {"images": 0}
    images = to_float(data.images[torch.tensor([where[i] for i in picked])])
    labels = data.labels[torch.tensor([where[i] for i in picked])]
    scan_rows = [by_index[i] for i in picked]
    out: dict = {"images": len(picked)}
    for method in METHODS:
        smaps = method_maps(method, model, images, labels, maps, scan_rows, {})
        exact = [roc_auc(smaps[n][statuses[i] != 2], statuses[i][statuses[i] != 2] == 1)
                 for n, i in enumerate(picked)]
        grid = [roc_auc(smaps[n], maps.vulnerable[by_index[i]]) for n, i in enumerate(picked)]
        out[method] = {"auc_exact": float(np.mean(exact)), "auc_grid": float(np.mean(grid))}
    return out


def compare(spec: str, exact_dir: Path, scan_dir: Path) -> dict:
    rows = read_rows(exact_dir / "verification.jsonl")
    settings = json.loads((exact_dir / "verification.json").read_text(encoding="utf-8"))
    if settings.get("model") != spec:
        raise SystemExit(f"{exact_dir} holds verdicts of {settings.get('model')!r} (its "
                         f"verification.json), not {spec}")
    maps = SusceptibilityMaps.load(scan_dir)
    by_index = {int(i): n for n, i in enumerate(maps.image_indices)}
    corners = corner_answers(spec, [row["image_index"] for row in rows])
    images = []
    statuses = {}
    for row in rows:
        status = load_positions(exact_dir / row["positions_file"])["status"]
        statuses[row["image_index"]] = status
        grid = maps.vulnerable[by_index[row["image_index"]]]
        images.append({
            "image_index": row["image_index"],
            "robust": int((status == 0).sum()), "vulnerable": int((status == 1).sum()),
            "unknown": int((status == 2).sum()), "grid_vulnerable": int(grid.sum()),
            "grid_only": int((grid & (status != 1)).sum()),
            "proved_robust_but_grid_fools": int((grid & (status == 0)).sum()),
            "exact_only": int(((status == 1) & ~grid).sum()),
            "seconds": row["seconds"], "verified": row["verified"],
            "corners_fool": corners[row["image_index"]]})
    total = {key: sum(image[key] for image in images) for key in
             ("robust", "vulnerable", "unknown", "grid_vulnerable", "grid_only",
              "proved_robust_but_grid_fools", "exact_only")}
    total.update(images=len(images),
                 images_verified=sum(image["verified"] for image in images),
                 images_fooled_exact=sum(image["vulnerable"] > 0 for image in images),
                 images_fooled_grid=sum(image["grid_vulnerable"] > 0 for image in images),
                 images_fooled_corners=sum(image["corners_fool"] for image in images),
                 corner_certified_but_fooled=sum(not image["corners_fool"]
                                                 and image["vulnerable"] > 0
                                                 for image in images),
                 verified_but_corners_fool=sum(image["verified"] and image["corners_fool"]
                                               for image in images),
                 median_seconds=float(np.median([image["seconds"] for image in images])),
                 max_seconds=max(image["seconds"] for image in images))
    total.update(model=spec, budget=settings["budget"],
                 max_boxes=settings.get("max_boxes"))
    return {"total": total, "maps": map_aucs(spec, rows, maps, statuses), "images": images}


def markdown(result: dict) -> str:
    t = result["total"]
    name = NAMES.get(t["model"], t["model"])
    limits = ([f"{t['budget']:g} s per image"] if t["budget"] else []) + (
        [f"{t['max_boxes']:,} boxes per image"] if t.get("max_boxes") else [])
    budget = " and ".join(limits) or "no limit"
    lines = [
        f"# {name[0].upper() + name[1:]}: the exact one-pixel ground truth against the "
        "27-color grid", "",
        f"{t['images']} images (the first correctly classified CIFAR-10 test images); "
        f"every position of every image given to the verifier (`--exact`, {budget}: "
        f"median {t['median_seconds']:.1f} s, largest {t['max_seconds']:.1f} s); a "
        "position it did not decide within that is unknown, never robust.", "",
        "| | positions | images with one |", "|---|---|---|",
        f"| vulnerable to some color (exact) | {t['vulnerable']:,} | "
        f"{t['images_fooled_exact']} |",
        f"| vulnerable to a grid color (27-color scan) | {t['grid_vulnerable']:,} | "
        f"{t['images_fooled_grid']} |",
        f"| vulnerable, missed by the grid | {t['exact_only']:,} | |",
        f"| proved robust to every color | {t['robust']:,} | {t['images_verified']} "
        "(every position) |",
        f"| unknown | {t['unknown']:,} | |", "",
        f"The fast mode (8 corner colors) fools {t['images_fooled_corners']} of the "
        f"{t['images']} images and certifies the rest on the corners; of those, "
        f"{t['corner_certified_but_fooled']} are fooled by a color off the corners (the "
        "corner certificate is a sample, the verifier's answer a proof).", "",
        f"Soundness check: positions proved robust that the grid fools: "
        f"{t['proved_robust_but_grid_fools']}; images verified that the corners fool: "
        f"{t['verified_but_corners_fool']} (both must be 0).", "",
        "Maps against the exact ground truth and against the grid (mean ROC AUC at "
        "ranking the vulnerable positions first, over the "
        f"{result['maps']['images']} images with vulnerable and robust positions under "
        "both; unknown positions are left out of the exact column):", "",
        "| map | AUC vs exact | AUC vs 27-color grid |", "|---|---|---|",
        *[f"| {m} | {result['maps'][m]['auc_exact']:.3f} | "
          f"{result['maps'][m]['auc_grid']:.3f} |" for m in METHODS
          if m in result["maps"]], "",
        "| image | vulnerable (exact) | vulnerable (grid) | missed by the grid | robust | "
        "unknown | s |", "|---|---|---|---|---|---|---|"]
    for image in result["images"]:
        lines.append(f"| {image['image_index']} | {image['vulnerable']} | "
                     f"{image['grid_vulnerable']} | {image['exact_only']} | "
                     f"{image['robust']} | {image['unknown']} | {image['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def figure(result: dict, path: Path) -> None:
    """Per image: vulnerable positions, exact against the grid, and the verdicts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = result["images"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    exact = [image["vulnerable"] for image in images]
    grid = [image["grid_vulnerable"] for image in images]
    left.scatter(grid, exact, s=14)
    top = max(exact + grid + [1])
    left.plot([0, top], [0, top], color="grey", lw=0.8, ls="--")
    left.set_xlabel("vulnerable positions, 27-color grid")
    left.set_ylabel("vulnerable positions, any color (exact)")
    model = result["total"]["model"]
    left.set_title(f"where one pixel fools {NAMES.get(model, model)}")
    kinds = {"fooled by a corner": [i["corners_fool"] for i in images],
             "corner-certified, fooled off the corners": [
                 not i["corners_fool"] and i["vulnerable"] > 0 for i in images],
             "verified (every color, every position)": [i["verified"] for i in images]}
    right.barh(list(kinds), [sum(v) for v in kinds.values()],
               color=["tab:red", "tab:orange", "tab:green"])
    right.set_xlabel(f"images (of {len(images)})")
    right.set_title("verdict per image")
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="convsmall-cifar10",
                        help="the model the verdicts are of [convsmall-cifar10]")
    parser.add_argument("--folder", type=Path, default=HERE,
                        help="holds exact/ and scan27/; the comparison is written there "
                             "[this folder]")
    args = parser.parse_args()
    folder = args.folder
    result = compare(args.model, folder / "exact", folder / "scan27")
    assert result["total"]["proved_robust_but_grid_fools"] == 0, "unsound verdict"
    assert result["total"]["verified_but_corners_fool"] == 0, "unsound verdict"
    write_json_atomic(folder / "comparison.json", result)
    (folder / "comparison.md").write_text(markdown(result), encoding="utf-8")
    figure(result, folder / "verdicts.png")
    print(json.dumps(result["total"], indent=1))


if __name__ == "__main__":
    main()
