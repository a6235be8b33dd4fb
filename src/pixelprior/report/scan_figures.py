"""Figures of maps scored against a susceptibility scan (``evaluate-maps``): ROC curves,
maps side by side and ranked scans (PNG and PDF). Each returns its figure (saved and
closed), or ``None`` when it draws nothing. (A scan's own oracle maps:
:func:`pixelprior.report.figures.oracle_figure`.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .drawing import _save, _show, plt
from .stats import roc_auc, roc_curve


def roc_figure(directory: Path, scan, maps: dict) -> plt.Figure:
    """Mean ROC curve of each map against the vulnerable positions (over the images with
    any), its AUC in the legend; ``roc.png`` / ``.pdf``.

    Args:
        directory: where to write it.
        scan: the scan (:class:`~pixelprior.data.SusceptibilityMaps`).
        maps: method → maps ``[N, H, W]`` of the scan's images.

    Returns:
        The (saved, closed) figure (axes only when no image is vulnerable).
    """
    grid = np.linspace(0, 1, 201)
    fooled = [r for r in range(len(scan.labels)) if scan.vulnerable[r].any()]
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for method, values in maps.items():
        if not fooled:
            break
        known = {r: scan.decided(r) for r in fooled}  # undecided positions left out
        curve = np.mean([roc_curve(values[r][known[r]], scan.vulnerable[r][known[r]], grid)
                         for r in fooled], 0)
        aucs = np.array([roc_auc(values[r][known[r]], scan.vulnerable[r][known[r]])
                         for r in fooled])
        auc = float(aucs[~np.isnan(aucs)].mean()) if (~np.isnan(aucs)).any() else np.nan
        ax.plot(grid, curve, label=f"{method} (AUC {auc:.2f})",
                linestyle=":" if method in ("random", "oracle") else "-")
    ax.plot([0, 1], [0, 1], color="gray", linewidth=0.5)
    ax.set_xlabel("false-positive rate (positions)")
    ax.set_ylabel("true-positive rate (vulnerable positions)")
    ax.set_title(f"mean ROC over {len(fooled)} images", fontsize=9)
    if fooled:  # (no curve, no legend)
        ax.legend(fontsize=7)
    return _save(fig, Path(directory), "roc")


def maps_compared_figure(directory: Path, scan, images: torch.Tensor, maps: dict,
                         count: int = 4) -> plt.Figure | None:
    """The oracle map beside each method's map for ``count`` images with vulnerable
    positions (vulnerable positions outlined); ``maps_compared.png`` / ``.pdf``.

    Args:
        directory: where to write it.
        scan: the scan (:class:`~pixelprior.data.SusceptibilityMaps`).
        images: float ``[N, C, H, W]``: the scan's images.
        maps: method → maps ``[N, H, W]``.
        count: images shown at most.

    Returns:
        The (saved, closed) figure, or ``None`` when no image is vulnerable.
    """
    rows = [r for r in range(len(scan.labels)) if scan.vulnerable[r].any()][:count]
    if not rows:
        return None
    methods = [m for m in maps if m != "oracle"]
    oracle = scan.oracle_map()
    fig, axes = plt.subplots(len(rows), 2 + len(methods), squeeze=False,
                             figsize=(1.7 * (2 + len(methods)), 1.8 * len(rows)))
    for i, r in enumerate(rows):
        _show(axes[i, 0], images[r].cpu(), f"#{int(scan.image_indices[r])}")
        for j, (name, values) in enumerate([("oracle", oracle), *[(m, maps[m])
                                                                   for m in methods]]):
            ax = axes[i, j + 1]
            ax.imshow(values[r], cmap="inferno", vmin=0, vmax=1)
            ax.contour(scan.vulnerable[r], levels=[0.5], colors="cyan", linewidths=0.6)
            ax.set_title(name if i == 0 else "", fontsize=7)
            ax.axis("off")
    return _save(fig, Path(directory), "maps_compared")


def ranked_scans_figure(directory: Path, rows: pd.DataFrame, scan) -> plt.Figure:
    """Share of all scanned images fooled within q queries by a scan ranked by each map
    (log scale); ``ranked_scans.png`` / ``.pdf``.

    Args:
        directory: where to write it.
        rows: per method and image: ``vulnerable_positions`` and ``queries_to_first``.
        scan: the scan (its grid sets the axis).

    Returns:
        The (saved, closed) figure.
    """
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    colours = scan.colours
    total = int(np.prod(scan.vulnerable.shape[1:])) * colours
    grid = np.unique(np.concatenate([np.geomspace(colours, total, 300), [total]]))
    for method, group in rows.groupby("method", sort=False):
        q = np.where(group["vulnerable_positions"] > 0, group["queries_to_first"], np.inf)
        ax.plot(grid, [(q <= g).mean() for g in grid], label=method,
                linestyle=":" if method in ("random", "oracle") else "-")
    ax.set_xscale("log")
    ax.set_xlabel(("positions verified" if scan.exact else "model queries")
                  + " (ranked scan, log scale)")
    ax.set_ylabel("share of images fooled")
    top = float((rows.groupby("method")["vulnerable_positions"].apply(
        lambda v: (v > 0).mean())).max()) if len(rows) else 1.0
    ax.set_ylim(0, min(1.0, top + 0.1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, Path(directory), "ranked_scans")
