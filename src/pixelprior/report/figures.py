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
- maps scored against a scan: :mod:`~pixelprior.report.scan_figures`; the command
  line's single-image figures: :mod:`~pixelprior.report.image_figures` (both
  importable from here too).

Images come from the configured dataset (no model needed); the class names from the
model registry. Each drawing function returns its figure (saved and closed: its axes,
texts and patches can still be read), or ``None`` when it draws nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.ticker
import numpy as np
import pandas as pd
import torch

from ..data import ImageSet, parse_classes, to_float
from ..experiment import ExperimentConfig, load_dataset, load_maps, parse_mode
from ..experiment.modes import map_method, reads_oracle
from ..experiment.records import read_record, recorded_class_names
from ..models import model_spec
from ..search import SEARCHES
from .drawing import _adversarial, _circle, _save, _show, plt
from .image_figures import attack_figure, explain_figure  # noqa: F401  (their old path)
from .scan_figures import (  # noqa: F401  (their old path)
    maps_compared_figure,
    ranked_scans_figure,
    roc_figure,
)
from .stats import counts_generations


def class_names_of(config: ExperimentConfig, run: str | Path | None = None
                   ) -> tuple[str, ...] | None:
    """The class names of the run's model.

    Args:
        config: the run's config.
        run: the run folder, whose ``config.json`` records the names the run read (runs
            since the thirty-first session); ``None``: not read.

    Returns:
        The names the run folder records; else ``--classes`` where given (a list
        ``a,b,c`` or a file by its absolute path), as the run named the model's classes
        (over a registered model's own names too); ``None`` for a file given by a
        relative path (read here it may be another file: indices are shown rather than
        another file's names); else a registered model's names; else ``None``.
    """
    if run is not None:
        try:
            recorded = recorded_class_names(read_record(run))
        except Exception:  # noqa: BLE001 - no readable record: the config's names
            recorded = None
        if recorded is not None:
            return recorded
    if config.classes:
        if "," not in config.classes and not Path(config.classes).expanduser().is_absolute():
            return None  # a names file relative to where the run was made, which the
            # report does not know: read here it may be another file (indices, not names)
        try:
            return parse_classes(config.classes)
        except Exception:  # a names file gone since the run: indices, not other names
            return None
    try:
        return model_spec(config.model).class_names()
    except Exception:  # a model spec: its own names, or indices
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
    drawn = draw_pipeline(frame, config, dataset, maps, count,
                          class_names=class_names_of(config, directory))
    if isinstance(drawn, str):
        return drawn
    _save(drawn, directory, "pipeline")
    return None


def draw_pipeline(frame: pd.DataFrame, config: ExperimentConfig, dataset: ImageSet,
                  maps: dict, count: int = 4, class_names: Sequence[str] | None = None
                  ) -> plt.Figure | str:
    """Fig. 1 of the paper for ``count`` successful attacks of a mode with saved maps:
    the image, its map, the start set and the adversarial image with the changed pixel
    circled and its coordinate in the title.

    Args:
        frame: the run's rows.
        config: the run's config.
        dataset: the run's images.
        maps: the saved maps by (seed, mode, image index).
        count: successful attacks shown.
        class_names: the model's class names (``None``: :func:`class_names_of` the
            config).

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
    names = class_names if class_names is not None else class_names_of(config)
    fig, axes = plt.subplots(len(wins), 4, figsize=(8, 2.1 * len(wins)), squeeze=False)
    for row, (_, result) in enumerate(wins.iterrows()):
        saved = maps[(int(result["seed"]), mode, int(result["image_index"]))]
        _pipeline_row(axes[row], result, saved, mode, config, dataset, names)
    fig.suptitle(f"{mode}: image, map, start set, adversarial", fontsize=9)
    return fig


def _pipeline_row(axes, result: pd.Series, saved: dict, mode: str, config: ExperimentConfig,
                  dataset: ImageSet, names: Sequence[str] | None) -> None:
    """One attack of the pipeline figure: image, map, start set, adversarial."""
    image = to_float(dataset.images[dataset.position_of(result["image_index"])])
    adv = _adversarial(image, result["pixels"])
    x, y = result["pixels"][0]["x"], result["pixels"][0]["y"]
    _show(axes[0], image, f"image {result['image_index']}: "
                          f"{_name(names, result['true_label'])}")
    if "sensitivity" in saved:
        axes[1].imshow(saved["sensitivity"], cmap="inferno", vmin=0, vmax=1)
    axes[1].set_title(_map_title(mode, config), fontsize=8)
    axes[1].axis("off")
    if "start_set" in saved:
        axes[2].imshow(saved["start_set"], cmap="gray")
        axes[2].set_title(f"start set ({int(result['support_size'])} px)", fontsize=8)
    else:  # a scan's order (fast): positions ranked by the map, no set drawn from it
        axes[2].set_title("no start set (positions in the map's order)", fontsize=8)
    axes[2].axis("off")
    _show(axes[3], adv, f"({x}, {y}) → {_name(names, result['adversarial_label'])}")
    _circle(axes[3], x, y, image.shape[-1])


def _map_title(mode: str, config: ExperimentConfig) -> str:
    """What drew the map panel of a mode: the oracle's map, the method's the mode reads
    (``map_method`` of :mod:`pixelprior.experiment.modes`: fast's and a scan's order, a
    prior's configured method), or a scan's order that is no map (``raster order``)."""
    if reads_oracle(mode):
        return "oracle map"
    method = map_method(mode, config.sensitivity)
    if method is not None:
        return f"{method} map"
    kind, order = parse_mode(mode)
    ordered = kind is not None and SEARCHES.get(kind).argument == "order"
    return f"{order} order" if ordered and order else "no map"


def examples_figure(directory: Path, frame: pd.DataFrame, config: ExperimentConfig,
                    dataset: ImageSet, count: int = 8) -> plt.Figure | None:
    """Originals beside successful adversarial images (the paper's Fig. 2): mode, true →
    adversarial class, the changed pixel circled and its coordinate;
    ``examples.png`` / ``.pdf``.

    Args:
        directory: where to write it.
        frame: the run's rows.
        config: the run's config (class names, with the folder's record:
            :func:`class_names_of`).
        dataset: the run's images.
        count: successful images shown (one per image, first seed).

    Returns:
        The (saved, closed) figure, or ``None`` when no attack succeeded (nothing
        written).
    """
    wins = frame[frame["success"]].drop_duplicates("image_index").head(count)
    if wins.empty:
        return None
    names = class_names_of(config, directory)
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
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_thousands))
    ax.set_xlabel("model queries")
    ax.set_ylabel("share of images fooled")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, directory, "success_vs_queries")


def _thousands(value: float, _position: object = None) -> str:
    """A query count as ticks show it: ``0``, ``500``, ``1.5k``, ``40k``, ``1.2M``
    (whole thousands rounded 500 to "0k" and 1,500 to "2k")."""
    if abs(value) < 1000:
        return f"{value:.0f}"
    if abs(value) < 1e6:
        return f"{value / 1000:.4g}k"
    return f"{value / 1e6:.4g}M"


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


