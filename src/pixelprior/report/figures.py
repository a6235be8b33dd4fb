"""Figures of a run (matplotlib, PNG and PDF), all drawn from what the run saved.

- ``pipeline``: image, sensitivity map, susceptible set S, adversarial image with the
  changed pixel circled and its coordinate in the title (the paper's Fig. 1), from the
  maps the runner saved (``maps/``) — no model is rebuilt and no map recomputed;
- ``examples``: originals beside their successful adversarial images, with the mode,
  true → adversarial class and the pixel circled (the paper's Fig. 2);
- ``success_vs_queries``: share of attacks that succeeded within q model queries, per mode
  (DE and scans on one axis);
- ``generations_hist``: histogram of generations per DE mode (failures at the budget);
- :func:`oracle_figure`: a susceptibility scan's oracle maps and vulnerable pixels;
- :func:`explain_figure` and :func:`attack_figure`: the command line's single-image
  figures (a map beside its image, with a color bar and S; an adversarial at the file's
  own resolution with the changed box marked).

Images come from the configured dataset (no model needed); the class names from the
model registry. Each drawing function returns its figure (saved and closed: its axes,
texts and patches can still be read), or ``None`` when it draws nothing.
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

from .._io import atomic_write  # noqa: E402
from ..data import ImageSet, to_float  # noqa: E402
from ..experiment import ExperimentConfig, load_dataset, load_maps, parse_mode  # noqa: E402
from ..models import model_spec  # noqa: E402
from .stats import counts_generations, roc_auc, roc_curve  # noqa: E402


def _save(fig: plt.Figure, directory: Path, name: str, suffixes=("png", "pdf")
          ) -> plt.Figure:
    """Write a figure whole or not at all (each file atomically), then close it; the
    closed figure is returned (its axes, texts and patches can still be read)."""
    try:
        for suffix in suffixes:
            with atomic_write(Path(directory) / f"{name}.{suffix}") as f:
                fig.savefig(f, format=suffix, dpi=150, bbox_inches="tight")
    finally:
        plt.close(fig)
    return fig


def _adversarial(image: torch.Tensor, pixels: list[dict]) -> torch.Tensor:
    """Re-apply the recorded pixel changes to a float image ``[C, H, W]``."""
    out = image.clone()
    for p in pixels:
        out[:, p["y"], p["x"]] = torch.tensor(p["new"], dtype=out.dtype)
    return out


def _show(ax, image, title: str) -> None:
    array = image.permute(1, 2, 0).numpy() if isinstance(image, torch.Tensor) else image
    ax.imshow(array.squeeze() if array.shape[2] == 1 else array, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def _circle(ax, x: int, y: int, size: int) -> None:
    ax.add_patch(plt.Circle((x, y), radius=max(1.5, size / 20), fill=False, color="cyan",
                            linewidth=1))


def class_names_of(config: ExperimentConfig) -> tuple[str, ...] | None:
    """The class names of the run's model.

    Args:
        config: the run's config.

    Returns:
        A registered model's names; for other models ``--classes`` when given as a list
        (``a,b,c``); else ``None`` (indices are shown).
    """
    try:
        return model_spec(config.model).class_names()
    except Exception:  # a model spec: its own names, or indices
        if config.classes and "," in config.classes:
            return tuple(name.strip() for name in config.classes.split(","))
        return None


_class_names = class_names_of


def _name(names, label: int) -> str:
    return names[int(label)] if names is not None else str(int(label))


def pipeline_figure(directory: Path, frame: pd.DataFrame, config: ExperimentConfig,
                    dataset: ImageSet, maps: dict, count: int = 4) -> str | None:
    """Fig. 1 of the paper (:func:`draw_pipeline`), written as ``pipeline.png`` / ``.pdf``.

    Args:
        directory: where to write it.
        frame: the run's rows.
        config: the run's config.
        dataset: the run's images.
        maps: the saved maps (:func:`~pixelprior.experiment.load_maps`).
        count: successful attacks shown (rows of the figure).

    Returns:
        ``None`` when drawn, else a note saying why it cannot be drawn.
    """
    drawn = draw_pipeline(frame, config, dataset, maps, count)
    if isinstance(drawn, str):
        return drawn
    _save(drawn, directory, "pipeline")
    return None


def draw_pipeline(frame: pd.DataFrame, config: ExperimentConfig, dataset: ImageSet,
                  maps: dict, count: int = 4) -> plt.Figure | str:
    """Fig. 1 of the paper for ``count`` successful attacks of a mode with saved maps:
    the image, its map, the start set and the adversarial image with the changed pixel
    circled and its coordinate in the title.

    Args:
        frame: the run's rows.
        config: the run's config.
        dataset: the run's images.
        maps: the saved maps by (seed, mode, image index).
        count: successful attacks shown.

    Returns:
        The figure (not saved), or a note saying why it cannot be drawn.
    """
    mapped = [m for m in ("constrained", *sorted(set(frame["mode"]))) if m in set(frame["mode"])
              and any(key[1] == m for key in maps)]
    if not mapped:
        return ("No pipeline figure: the run saved no sensitivity maps (runs made before "
                "maps were saved get them when the same command is run again).")
    mode = mapped[0]
    wins = frame[(frame["mode"] == mode) & frame["success"]]
    wins = wins[[(int(s), mode, int(i)) in maps for s, i in zip(wins["seed"],
                                                                 wins["image_index"],
                                                                 strict=True)]]
    wins = wins.drop_duplicates("image_index").head(count)
    if wins.empty:
        return f"No pipeline figure: mode {mode} fooled no image with a saved map."
    fig, axes = plt.subplots(len(wins), 4, figsize=(8, 2.1 * len(wins)), squeeze=False)
    for row, (_, result) in enumerate(wins.iterrows()):
        saved = maps[(int(result["seed"]), mode, int(result["image_index"]))]
        _pipeline_row(axes[row], result, saved, mode, config, dataset)
    fig.suptitle(f"{mode}: image, map, start set, adversarial", fontsize=9)
    return fig


def _pipeline_row(axes, result: pd.Series, saved: dict, mode: str, config: ExperimentConfig,
                  dataset: ImageSet) -> None:
    """One attack of the pipeline figure: image, map, start set, adversarial."""
    names = class_names_of(config)
    image = to_float(dataset.images[dataset.position_of(result["image_index"])])
    adv = _adversarial(image, result["pixels"])
    x, y = result["pixels"][0]["x"], result["pixels"][0]["y"]
    _show(axes[0], image, f"image {result['image_index']}: "
                          f"{_name(names, result['true_label'])}")
    if "sensitivity" in saved:
        axes[1].imshow(saved["sensitivity"], cmap="inferno", vmin=0, vmax=1)
    axes[1].set_title(f"{_map_name(mode, config)} map", fontsize=8)
    axes[1].axis("off")
    if "start_set" in saved:
        axes[2].imshow(saved["start_set"], cmap="gray")
    axes[2].set_title(f"start set ({int(result['support_size'])} px)", fontsize=8)
    axes[2].axis("off")
    _show(axes[3], adv, f"({x}, {y}) → {_name(names, result['adversarial_label'])}")
    _circle(axes[3], x, y, image.shape[-1])


def _map_name(mode: str, config: ExperimentConfig) -> str:
    """What drew the map of a mode: the oracle, a scan's order, or the configured method."""
    kind, order = parse_mode(mode)
    if mode == "oracle" or order == "oracle":
        return "oracle"
    return order if kind == "scan" else config.sensitivity


def examples_figure(directory: Path, frame: pd.DataFrame, config: ExperimentConfig,
                    dataset: ImageSet, count: int = 8) -> plt.Figure | None:
    """Originals beside successful adversarial images (the paper's Fig. 2): mode, true →
    adversarial class, the changed pixel circled and its coordinate;
    ``examples.png`` / ``.pdf``.

    Args:
        directory: where to write it.
        frame: the run's rows.
        config: the run's config (class names).
        dataset: the run's images.
        count: successful images shown (one per image, first seed).

    Returns:
        The (saved, closed) figure, or ``None`` when no attack succeeded (nothing
        written).
    """
    wins = frame[frame["success"]].drop_duplicates("image_index").head(count)
    if wins.empty:
        return None
    names = _class_names(config)
    cols = min(4, len(wins))
    rows = int(np.ceil(len(wins) / cols))
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(2 * 2 * cols, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (_, result) in enumerate(wins.iterrows()):
        image = to_float(dataset.images[dataset.position_of(result["image_index"])])
        adv = _adversarial(image, result["pixels"])
        r, c = divmod(k, cols)
        p = result["pixels"][0]
        _show(axes[r, 2 * c], image, f"#{result['image_index']} {result['mode']}\n"
                                     f"{_name(names, result['true_label'])}")
        _show(axes[r, 2 * c + 1], adv, f"({p['x']}, {p['y']})\n→ "
                                       f"{_name(names, result['adversarial_label'])}")
        _circle(axes[r, 2 * c + 1], p["x"], p["y"], image.shape[-1])
    return _save(fig, directory, "examples")


def success_vs_queries(directory: Path, frame: pd.DataFrame, config: ExperimentConfig
                       ) -> plt.Figure:
    """Share of (seed, image) attacks that succeeded within q queries, one line per mode
    (dashed for searches without generations); ``success_vs_queries.png`` / ``.pdf``.

    Args:
        directory: where to write it.
        frame: the run's rows.
        config: the run's config (the DE budget sets the axis).

    Returns:
        The (saved, closed) figure.
    """
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    budget = max(config.popsize * (config.maxiter + 1), int(frame["queries"].max()))
    grid = np.linspace(0, budget, 400)
    for mode, group in frame.groupby("mode"):
        q = np.where(group["success"], group["queries"], np.inf)
        ax.plot(grid, [(q <= g).mean() for g in grid], label=mode,
                linestyle="-" if counts_generations(frame, mode) else "--")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
        lambda value, _: f"{value / 1000:.0f}k"))
    ax.set_xlabel("model queries")
    ax.set_ylabel("share of images fooled")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, directory, "success_vs_queries")


def generations_hist(directory: Path, frame: pd.DataFrame, config: ExperimentConfig
                     ) -> plt.Figure | None:
    """Histogram of generations per DE mode, failures in the last bin (the budget);
    ``generations_hist.png`` / ``.pdf``.

    Args:
        directory: where to write it.
        frame: the run's rows (with ``budget_generations``).
        config: the run's config (``maxiter``).

    Returns:
        The (saved, closed) figure, or ``None`` when no mode counts generations.
    """
    de = frame[frame["budget_generations"].notna()]
    if de.empty:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.5))
    bins = np.arange(0, config.maxiter + 3) - 0.5
    for mode, group in de.groupby("mode"):
        ax.hist(group["budget_generations"], bins=bins, alpha=0.55, label=mode)
    ax.set_xlabel(f"generations (failures at {config.maxiter + 1})")
    ax.set_ylabel("attacks")
    ax.legend()
    return _save(fig, directory, "generations_hist")


def write_figures(directory: str | Path, frame: pd.DataFrame, config: ExperimentConfig,
                  dataset: ImageSet | None = None, unloadable: str | None = None
                  ) -> list[str]:
    """All figures of a run into ``directory``.

    Args:
        directory: the run folder.
        frame: the rows (:func:`~pixelprior.report.load_rows`).
        config: the run's config.
        dataset: the run's images (default: loaded here).
        unloadable: why the images could not be loaded (they are not tried again).

    Returns:
        Notes on figures not drawn, and why.
    """
    directory = Path(directory)
    success_vs_queries(directory, frame, config)
    generations_hist(directory, frame, config)
    if dataset is None and unloadable is None:
        try:
            dataset = load_dataset(config)
        except Exception as exc:  # noqa: BLE001 - data moved or missing: said, others drawn
            unloadable = str(exc)
    if dataset is None:
        return [f"No example or pipeline figures: the images could not be loaded "
                f"({unloadable})."]
    examples_figure(directory, frame, config, dataset)
    problems: list[tuple[Path, str]] = []
    maps = load_maps(directory, problems)
    notes = [_maps_note(directory, path, why) for path, why in problems]
    note = pipeline_figure(directory, frame, config, dataset, maps)
    return notes + ([note] if note else [])


def _maps_note(directory: Path, path: Path, why: str) -> str:
    """A note on a saved maps file that could not be used (the images it held are left out
    of the pipeline figure)."""
    relative = path.relative_to(directory)
    mode = path.parent.name
    again = ("Run the same `pixelprior reproduce` command to write it again (no attack is "
             "rerun)." if parse_mode(mode)[0] == "de" else
             "The rows are unaffected; move the file aside to silence this note.")
    return (f"{relative} could not be used ({why}); the images it holds are left out of "
            f"pipeline.png. {again}")


def oracle_figure(directory: str | Path, maps, images: torch.Tensor, class_names,
                  rows: list[int] | None = None, count: int = 8,
                  names: list[str] | None = None) -> plt.Figure | None:
    """For up to ``count`` scanned images: the image, the oracle map (how far the best
    grid color at each position pushes the true class below the runner-up) and the
    vulnerable positions; ``oracle_maps.png`` / ``.pdf``.

    Args:
        directory: where to write it.
        maps: the scan (:class:`~pixelprior.data.SusceptibilityMaps`).
        images: uint8 or float ``[N, C, H, W]``: the scan's ``rows``.
        class_names: the model's class names (``None``: indices).
        rows: the scan's rows of ``images`` (default: its first rows, in order).
        count: images shown at most.
        names: titles of the images (default: ``#`` and the dataset index), e.g. the
            file names of scanned image files.

    Returns:
        The (saved, closed) figure, or ``None`` for no rows (nothing written).
    """
    directory = Path(directory)
    rows = list(range(images.shape[0])) if rows is None else rows
    count = min(count, len(rows))
    if count == 0:
        return None
    oracle = maps.oracle_map()
    images = to_float(images) if images.dtype == torch.uint8 else images
    fig, axes = plt.subplots(count, 3, figsize=(6, 2.1 * count), squeeze=False)
    for n, row in enumerate(rows[:count]):
        label = int(maps.labels[row])
        name = class_names[label] if class_names is not None else str(label)
        vulnerable = maps.vulnerable[row]
        shown = names[n] if names is not None else f"#{int(maps.image_indices[row])}"
        _show(axes[n, 0], images[n].cpu(), f"{shown}: {name}")
        axes[n, 1].imshow(oracle[row], cmap="inferno", vmin=0, vmax=1)
        axes[n, 1].set_title("oracle map", fontsize=8)
        axes[n, 1].axis("off")
        axes[n, 2].imshow(vulnerable, cmap="gray", vmin=0, vmax=1)
        axes[n, 2].set_title(f"vulnerable: {int(vulnerable.sum())} px", fontsize=8)
        axes[n, 2].axis("off")
    return _save(fig, directory, "oracle_maps")


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
        curve = np.mean([roc_curve(values[r], scan.vulnerable[r], grid) for r in fooled], 0)
        auc = np.nanmean([roc_auc(values[r], scan.vulnerable[r]) for r in fooled])
        ax.plot(grid, curve, label=f"{method} (AUC {auc:.2f})",
                linestyle=":" if method in ("random", "oracle") else "-")
    ax.plot([0, 1], [0, 1], color="gray", linewidth=0.5)
    ax.set_xlabel("false-positive rate (positions)")
    ax.set_ylabel("true-positive rate (vulnerable positions)")
    ax.set_title(f"mean ROC over {len(fooled)} images", fontsize=9)
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
    colours = scan.levels ** scan.best_colour.shape[-1]
    total = int(np.prod(scan.vulnerable.shape[1:])) * colours
    grid = np.unique(np.concatenate([np.geomspace(colours, total, 300), [total]]))
    for method, group in rows.groupby("method", sort=False):
        q = np.where(group["vulnerable_positions"] > 0, group["queries_to_first"], np.inf)
        ax.plot(grid, [(q <= g).mean() for g in grid], label=method,
                linestyle=":" if method in ("random", "oracle") else "-")
    ax.set_xscale("log")
    ax.set_xlabel("model queries (ranked scan, log scale)")
    ax.set_ylabel("share of images fooled")
    top = float((rows.groupby("method")["vulnerable_positions"].apply(
        lambda v: (v > 0).mean())).max()) if len(rows) else 1.0
    ax.set_ylim(0, min(1.0, top + 0.1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, Path(directory), "ranked_scans")


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
