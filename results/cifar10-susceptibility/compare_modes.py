"""Every mode on one axis: share of the vulnerable images fooled against model queries.

    cd results/cifar10-susceptibility && python compare_modes.py > compare_modes.md

Reads what the runs saved (no attack is rerun). The images are the 35 of Table 1's 100 that
the exhaustive scan (``table1/maps.npz``) finds a one-pixel adversarial for on its 27-colour
grid: on the other 65 no search can succeed on the grid, and DE never did in Table 1's
1,000 attacks, so every curve is drawn on the images where a start or an order can matter.

- DE: ``results/cifar10`` (Table 1, DE/rand/1, both modes, 5 seeds: its rows for these
  images), ``results/cifar10-best1bin`` (Su et al.'s code), ``results/cifar10-priors``
  (random start set, oracle start set); every (seed, image) attack counts;
- scans: ``results/cifar10-ranked`` (the runner's ``scan`` / ``scan:ORDER`` rows, seed 0)
  and, for maps the runner did not scan, ``table1/map_metrics.csv`` (queries exactly as
  ``RankedScanAttack`` counts them);
- the check behind the choice of images: ``results/cifar10-best1bin-robust`` and
  ``...-robust-constrained`` (best1bin on the 65 images the scan calls robust, seed 0).

Writes ``modes_vs_queries.png`` / ``.pdf`` beside this script and prints Markdown: the table,
then two checks (the ablation's unconstrained rows against Table 1's; the runner's scan
rows against the scan-derived queries).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pixelprior.data import SusceptibilityMaps  # noqa: E402
from pixelprior.report import load_rows  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent
BUDGET_DE = 400 * 101
BUDGET_SCAN = 1024 * 27
SAME = ["success", "generations", "queries", "x", "y"]


def vulnerable_indices() -> np.ndarray:
    scan = SusceptibilityMaps.load(HERE / "table1")
    fooled = scan.vulnerable.reshape(len(scan.labels), -1).any(1)
    return scan.image_indices[fooled]


def rows_of(run: str, indices: np.ndarray) -> pd.DataFrame | None:
    if not (RESULTS / run / "results.jsonl").is_file():
        return None
    frame, _ = load_rows(RESULTS / run)
    return frame[frame["image_index"].isin(indices)]


def queries_to_success(group: pd.DataFrame) -> np.ndarray:
    return np.where(group["success"], group["queries"], np.inf)


def de_curves(indices: np.ndarray) -> dict[str, np.ndarray]:
    """Queries to success per (seed, image) attack (inf for failures), per DE mode."""
    out = {}
    for run, label in (("cifar10", "DE rand1bin"), ("cifar10-best1bin", "DE best1bin"),
                       ("cifar10-priors", "DE rand1bin")):
        frame = rows_of(run, indices)
        if frame is None:
            continue
        for mode, group in frame.groupby("mode"):
            name = f"{label}, {mode}"
            if name not in out:  # the ablation's unconstrained rows are Table 1's (checked)
                out[name] = queries_to_success(group)
    return out


def scan_curves(indices: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    ranked = rows_of("cifar10-ranked", indices)
    if ranked is not None:
        for mode, group in ranked.groupby("mode", sort=False):
            if mode.startswith("scan"):
                order = mode.partition(":")[2] or "raster order"
                out[f"scan, {order}"] = queries_to_success(group)
    metrics = pd.read_csv(HERE / "table1" / "map_metrics.csv")
    metrics = metrics[metrics["image_index"].isin(indices)]
    for method, group in metrics.groupby("method", sort=False):
        if f"scan, {method}" not in out:
            out[f"scan, {method} (from the scan)"] = group["queries_to_first"].to_numpy(float)
    return out


def print_table(curves: dict[str, np.ndarray], images: int) -> None:
    print(f"# The {images} vulnerable images of Table 1: share fooled against model queries\n")
    print("| mode | attacks | fooled | median queries of a success | mean queries, all "
          "attacks (failures at their budget) | fooled within 100 queries | within 1,000 | "
          "within 10,000 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, queries in curves.items():
        fooled = np.isfinite(queries)
        spent = np.where(fooled, queries, BUDGET_DE if name.startswith("DE") else BUDGET_SCAN)
        median = np.median(queries[fooled]) if fooled.any() else float("nan")
        print(f"| {name} | {len(queries)} | {fooled.mean():.0%} | {median:,.0f} | "
              f"{spent.mean():,.0f} | {(queries <= 100).mean():.0%} | "
              f"{(queries <= 1000).mean():.0%} | {(queries <= 10000).mean():.0%} |")
    print("\nDE curves count every (seed, image) attack (5 seeds); scans are deterministic "
          "given the map (the random order: seed 0). A DE failure spends 40,400 queries, a "
          "full scan 27,648.")


def draw(curves: dict[str, np.ndarray]) -> None:
    grid = np.unique(np.geomspace(10, BUDGET_DE, 400).round())
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name, queries in curves.items():
        style = "--" if name.startswith("scan") else "-"
        ax.plot(grid, [(queries <= g).mean() for g in grid], style, label=name, linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("model queries (log scale)")
    ax.set_ylabel("share of attacks that fooled the model")
    ax.set_title("Table 1's 35 vulnerable images (CIFAR-10 SqueezeNet)", fontsize=9)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    for suffix in ("png", "pdf"):
        fig.savefig(HERE / f"modes_vs_queries.{suffix}", dpi=150, bbox_inches="tight")


def print_checks(indices: np.ndarray) -> None:
    print("\n## Checks\n")
    table1, priors = rows_of("cifar10", indices), rows_of("cifar10-priors", indices)
    if priors is not None:
        key = ["seed", "image_index"]
        pair = (table1[table1["mode"] == "unconstrained"].merge(
            priors[priors["mode"] == "unconstrained"], on=key, suffixes=("_t", "_p")))
        same = np.all([pair[f"{c}_t"].fillna(-1) == pair[f"{c}_p"].fillna(-1)
                       for c in SAME], axis=0)
        print(f"- The ablation's unconstrained rows equal Table 1's (success, generations, "
              f"queries, pixel position) for {same.sum()} of {len(pair)} attacks.")
    for run in ("cifar10-best1bin-robust", "cifar10-best1bin-robust-constrained"):
        if not (RESULTS / run / "results.jsonl").is_file():
            continue
        robust, _ = load_rows(RESULTS / run)
        print(f"- best1bin on the {len(robust)} grid-robust images (seed 0, "
              f"{robust['mode'].iloc[0]}): fooled {int(robust['success'].sum())}; lowest "
              f"true-class probability reached {robust['true_probability'].min():.3f}.")
    ranked = rows_of("cifar10-ranked", indices)
    if ranked is None:
        return
    metrics = pd.read_csv(HERE / "table1" / "map_metrics.csv")
    for method, group in metrics.groupby("method", sort=False):
        rows = ranked[ranked["mode"] == f"scan:{method}"]
        if rows.empty:
            continue
        pair = rows.merge(group, on="image_index")
        same = (pair["queries"] == pair["queries_to_first"]).sum()
        print(f"- `scan:{method}` rows spend the queries `evaluate-maps` computed from the "
              f"scan on {same} of {len(pair)} images.")
    table1_seed0 = table1[(table1["mode"] == "unconstrained") & (table1["seed"] == 0)]
    pair = table1_seed0.merge(ranked[ranked["mode"] == "unconstrained"], on="image_index",
                              suffixes=("_t", "_r"))
    same = np.all([pair[f"{c}_t"].fillna(-1) == pair[f"{c}_r"].fillna(-1) for c in SAME],
                  axis=0)
    print(f"- The ranked run's DE rows equal Table 1's seed 0 for {same.sum()} of {len(pair)} "
          "images.")


def main() -> None:
    indices = vulnerable_indices()
    curves = {**de_curves(indices), **scan_curves(indices)}
    print_table(curves, len(indices))
    draw(curves)
    print_checks(indices)


if __name__ == "__main__":
    main()
