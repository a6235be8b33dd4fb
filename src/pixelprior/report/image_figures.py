"""The command line's single-image figures: a map beside its image (``explain``) and an
adversarial at the file's own resolution with the changed box marked (``attack``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .drawing import _save, _show, plt


def explain_figure(path: Path, image: torch.Tensor, smap: np.ndarray, susceptible: np.ndarray,
                   title: str, method: str, tau: float) -> plt.Figure:
    """The map of one image as a person reads it: the image, the map with a colour bar,
    and the susceptible set S outlined on the image.

    Args:
        path: the PNG to write.
        image: float ``[C, H, W]`` in [0, 1] (the model's input).
        smap: the map ``[H, W]`` in [0, 1].
        susceptible: bool ``[H, W]``: S (map > τ).
        title: what the image is (file name and class).
        method: the map's method.
        tau: the threshold of S.

    Returns:
        The (saved, closed) figure.
    """
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.4))
    _show(axes[0], image, "the image (as the model sees it)")
    shown = axes[1].imshow(smap, cmap="inferno", vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_title(f"{method} map", fontsize=8)
    axes[1].axis("off")
    bar = fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04)
    bar.ax.axhline(tau, color="cyan", linewidth=1)
    bar.ax.tick_params(labelsize=7)
    bar.set_label(f"sensitivity (τ = {tau} marked)", fontsize=7)
    _show(axes[2], image, f"S: {int(susceptible.sum())} of {susceptible.size} px "
                          f"(map > τ = {tau})")
    axes[2].imshow(np.ma.masked_where(~susceptible, susceptible), cmap="cool", alpha=0.45,
                   vmin=0, vmax=1, interpolation="nearest")
    if susceptible.any() and not susceptible.all():
        axes[2].contour(susceptible, levels=[0.5], colors="cyan", linewidths=0.8)
    fig.suptitle(f"{title}: where a one-pixel change is likely to matter", fontsize=9)
    return _save(fig, path.parent, path.stem, suffixes=("png",))


def attack_figure(path: Path, original: np.ndarray, adversarial: np.ndarray,
                  boxes: list[tuple[int, int, int, int]], title: str, verdict: str
                  ) -> plt.Figure:
    """An attack on a file at the file's own resolution: the original beside the
    adversarial with each changed box of file pixels marked.

    Args:
        path: the PNG to write.
        original: uint8 ``[H, W, 3]``: the file's pixels.
        adversarial: uint8 ``[H, W, 3]``: the same with the changed boxes recoloured.
        boxes: ``(x0, y0, x1, y1)`` (inclusive) of each changed box of file pixels.
        title: what happened (classes).
        verdict: what the model says of the file-resolution copy.

    Returns:
        The (saved, closed) figure.
    """
    height, width = original.shape[:2]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.8 * height / max(width, 1) + 0.8))
    _show(axes[0], original, f"original ({width}×{height})")
    _show(axes[1], adversarial, verdict)
    for x0, y0, x1, y1 in boxes:
        pad = max(2, min(width, height) // 60)
        axes[1].add_patch(plt.Rectangle((x0 - pad - 0.5, y0 - pad - 0.5),
                                        x1 - x0 + 1 + 2 * pad, y1 - y0 + 1 + 2 * pad,
                                        fill=False, color="cyan", linewidth=1.5))
        axes[1].annotate(f"x {x0}..{x1}, y {y0}..{y1}", (x0, y0 - pad), color="cyan",
                         fontsize=7, xytext=(0, 4), textcoords="offset points",
                         va="bottom", bbox={"facecolor": "black", "alpha": 0.7, "pad": 1.5,
                                            "edgecolor": "none"})
    fig.suptitle(title, fontsize=9)
    return _save(fig, path.parent, path.stem, suffixes=("png",))
