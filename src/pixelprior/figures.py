"""Figures of a run (matplotlib, PNG and PDF), all drawn from measured results.

- ``pipeline``: image, sensitivity map, susceptible set S, adversarial image with the
  changed pixel circled and its coordinate in the title (the paper's Fig. 1);
- ``examples``: originals beside their successful adversarial images (the paper's Fig. 2);
- ``success_vs_queries``: share of images fooled within q model queries, per mode;
- ``generations_hist``: histogram of generations per mode (failures at the budget).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from .data import to_float  # noqa: E402
from .experiment import ExperimentConfig, build_model, load_dataset  # noqa: E402


def _save(fig: plt.Figure, directory: Path, name: str) -> None:
    for suffix in ("png", "pdf"):
        fig.savefig(directory / f"{name}.{suffix}", dpi=150, bbox_inches="tight")
    plt.close(fig)


def _adversarial(image: torch.Tensor, pixels: list[dict]) -> torch.Tensor:
    """Re-apply the recorded pixel changes to a float image ``[C, H, W]``."""
    out = image.clone()
    for p in pixels:
        out[:, p["y"], p["x"]] = torch.tensor(p["new"], dtype=out.dtype)
    return out


def _show(ax, image: torch.Tensor, title: str) -> None:
    array = image.permute(1, 2, 0).numpy()
    ax.imshow(array.squeeze() if array.shape[2] == 1 else array, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def pipeline_figure(directory: Path, frame: pd.DataFrame, config: ExperimentConfig,
                    count: int = 4) -> None:
    """Fig. 1 of the paper for ``count`` images attacked successfully in constrained mode."""
    mode = "constrained" if "constrained" in set(frame["mode"]) else frame["mode"].iloc[0]
    wins = frame[(frame["mode"] == mode) & frame["success"]].drop_duplicates("image_index")
    if wins.empty:
        return
    wins = wins.head(count)
    model = build_model(config)
    dataset = load_dataset(config)
    positions = [dataset.position_of(i) for i in wins["image_index"]]
    images = to_float(dataset.images[positions])
    labels = dataset.labels[positions]
    prior = config.prior("constrained")
    distribution = prior.distribution(model, images, labels)
    names = getattr(model, "class_names", None)
    fig, axes = plt.subplots(len(wins), 4, figsize=(8, 2.1 * len(wins)), squeeze=False)
    for row, (_, result) in enumerate(wins.iterrows()):
        adv = _adversarial(images[row], result["pixels"])
        x, y = result["pixels"][0]["x"], result["pixels"][0]["y"]
        true = names[result["true_label"]] if names else result["true_label"]
        fooled = names[result["adversarial_label"]] if names else result["adversarial_label"]
        _show(axes[row, 0], images[row], f"image {result['image_index']}: {true}")
        axes[row, 1].imshow(distribution.sensitivity[row].numpy(), cmap="inferno", vmin=0,
                            vmax=1)
        axes[row, 1].set_title(f"{config.sensitivity} map", fontsize=8)
        axes[row, 1].axis("off")
        axes[row, 2].imshow(distribution.susceptible[row].numpy(), cmap="gray")
        axes[row, 2].set_title(f"S = {{s > {config.tau}}} ({int(result['support_size'])} px)",
                               fontsize=8)
        axes[row, 2].axis("off")
        _show(axes[row, 3], adv, f"({x}, {y}) → {fooled}")
        axes[row, 3].add_patch(plt.Circle((x, y), radius=max(1.5, images.shape[-1] / 20),
                                          fill=False, color="cyan", linewidth=1))
    _save(fig, directory, "pipeline")


def examples_figure(directory: Path, frame: pd.DataFrame, config: ExperimentConfig,
                    count: int = 8) -> None:
    """Originals beside successful adversarial images, pixel coordinates in titles."""
    wins = frame[frame["success"]].drop_duplicates("image_index").head(count)
    if wins.empty:
        return
    dataset = load_dataset(config)
    cols = min(4, len(wins))
    rows = int(np.ceil(len(wins) / cols))
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(2 * 2 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (_, result) in enumerate(wins.iterrows()):
        image = to_float(dataset.images[dataset.position_of(result["image_index"])])
        adv = _adversarial(image, result["pixels"])
        r, c = divmod(k, cols)
        p = result["pixels"][0]
        _show(axes[r, 2 * c], image, f"#{result['image_index']} ({result['mode'][:5]})")
        _show(axes[r, 2 * c + 1], adv, f"({p['x']}, {p['y']})")
    _save(fig, directory, "examples")


def success_vs_queries(directory: Path, frame: pd.DataFrame, config: ExperimentConfig) -> None:
    """Share of (seed, image) attacks that succeeded within q queries, per mode."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    budget = config.popsize * (config.maxiter + 1)
    grid = np.linspace(0, budget, 200)
    for mode, group in frame.groupby("mode"):
        q = np.where(group["success"], group["queries"], np.inf)
        ax.plot(grid, [(q <= g).mean() for g in grid], label=mode)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
        lambda value, _: f"{value / 1000:.0f}k"))
    ax.set_xlabel("model queries")
    ax.set_ylabel("share of images fooled")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, directory, "success_vs_queries")


def generations_hist(directory: Path, frame: pd.DataFrame, config: ExperimentConfig) -> None:
    """Histogram of generations per mode; failures in the last bin (the budget)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    bins = np.arange(0, config.maxiter + 3) - 0.5
    for mode, group in frame.groupby("mode"):
        ax.hist(group["budget_generations"], bins=bins, alpha=0.55, label=mode)
    ax.set_xlabel(f"generations (failures at {config.maxiter + 1})")
    ax.set_ylabel("attacks")
    ax.legend()
    _save(fig, directory, "generations_hist")


def write_figures(directory: str | Path, frame: pd.DataFrame, config: ExperimentConfig) -> None:
    """All figures of a run into ``directory``."""
    directory = Path(directory)
    success_vs_queries(directory, frame, config)
    generations_hist(directory, frame, config)
    examples_figure(directory, frame, config)
    pipeline_figure(directory, frame, config)
