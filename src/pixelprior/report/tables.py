"""The report of a run directory: Table 1/2, statistics, exports (CSV, Parquet).

Conventions (stated in every report):

- **generations of a failure** count at the budget, ``maxiter + 1`` (one more than any
  success can use), so that failing is always worse than succeeding late. Searches
  without generations (scans, random search) are compared by their queries;
- **mean over all images** includes failures counted that way; **mean over successes**
  uses only successful attacks; **paired** means use only images that *both* modes
  attack successfully with the same seed;
- **time per image** is the attack's wall time attributed to images in proportion to
  their model queries (images are attacked in batches), plus an even share of the
  sensitivity computation;
- **the image is the unit of the statistics**: an image is fooled in all seeds or in none
  far more often than not, so seeds of one image are not independent samples. 95%
  intervals of ratios come from a percentile bootstrap that resamples *images* (all seeds
  of an image together, 10 000 resamples); per-seed summaries use Student-t over the
  seed means;
- **tests**: the Wilcoxon signed-rank test compares the generations (or queries) of the
  two modes on the images both fool (per image, mean over the seeds where both succeed):
  does one converge faster where both converge? The exact McNemar test compares success:
  among images where the two modes' success rates over seeds differ, does one mode win
  more often than chance? Neither test asks the other's question;
- **the paper's accounting** (:func:`paper_accounting`) recomputes the same rows the way
  the paper's Table 1 appears to count, beside the like-for-like comparison.
"""

from __future__ import annotations

import collections
import math
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .._format import number as _fmt
from .._io import atomic_write, dumps, write_text_atomic
from ..data import ImageSet
from ..experiment import RESULTS, ExperimentConfig, load_dataset
from ..experiment.inputs import check_one_index_per_image
from ..experiment.modes import map_method, mode_meaning, parse_mode, reads_tau
from ..experiment.rows import fallback_notes, row_fields
from ..experiment.rundir import read_run
from .accounting import accounting_lines, paper_accounting
from .checks import check_inputs, check_writable, in_progress
from .figures import class_names_of, write_figures
from .robustness import (
    has_certificates,
    has_verification,
    robustness_figure,
    robustness_lines,
    robustness_table,
    verification_table,
)
from .stats import paired_comparison, t_interval


def load_rows(directory: str | Path) -> tuple[pd.DataFrame, ExperimentConfig]:
    """The results of a run directory as a DataFrame, with its config.

    Every row is checked by type and value and against the run that owns the folder
    (config hash, seeds, modes, images: :func:`pixelprior.experiment.rundir.read_run`);
    a damaged row, a row of another run, or duplicate (seed, mode, image) rows are
    refused, naming the line — never counted. Images the model already got wrong are
    left out (their count is in ``frame.attrs["already_misclassified"]``).

    Args:
        directory: the run folder.

    Returns:
        ``(frame, config)``: one row per attack, with ``budget_generations``.

    Raises:
        CorruptResultsError: a damaged file or row, or a row of another run.
        ValueError: no results yet, or every image was already misclassified.
    """
    directory = Path(directory)
    rows, config, _ = read_run(directory)
    if not rows:
        raise ValueError(f"{directory / RESULTS} holds no results yet")
    return _frame(directory, rows, config), config


def _frame(directory: Path, rows: list[dict], config: ExperimentConfig) -> pd.DataFrame:
    """The rows as a frame: misclassified images left out (counted), budgets added."""
    frame = pd.DataFrame(rows)
    # images the model already got wrong need no attack: reported, not counted as successes
    misclassified = int((~frame["clean_correct"]).sum()) if "clean_correct" in frame else 0
    per_mode = (frame.loc[~frame["clean_correct"], "mode"].value_counts().to_dict()
                if misclassified else {})
    if misclassified:
        frame = frame[frame["clean_correct"]].copy()
    if frame.empty:
        raise ValueError(f"{directory}: every image was already misclassified")
    frame.attrs["already_misclassified"] = misclassified
    frame.attrs["misclassified_per_mode"] = {str(k): int(v) for k, v in per_mode.items()}
    return add_budget(frame, config)


def add_budget(frame: pd.DataFrame, config: ExperimentConfig) -> pd.DataFrame:
    """The rows with ``budget_generations``: generations, failures at ``maxiter + 1``.

    Args:
        frame: the rows.
        config: the run's config (``maxiter``).

    Returns:
        A copy; NaN budgets for searches without generations.
    """
    frame = frame.copy()
    generations = pd.to_numeric(frame.get("generations"), errors="coerce")
    frame["generations"] = generations
    frame["budget_generations"] = np.where(
        generations.isna(), np.nan, np.where(frame["success"], generations,
                                             config.maxiter + 1))
    return frame


def per_seed_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Table 1 layout.

    Args:
        frame: the rows (with ``budget_generations``).

    Returns:
        One row per (seed, mode): images, success rate, total and mean seconds, mean
        generations (all, successes), mean queries, mean start pixels (scans: positions
        scanned).
    """
    def summarise(group: pd.DataFrame, scans: bool) -> dict:
        wins = group[group["success"]]
        return {
            "images": len(group),
            "success_rate": group["success"].mean(),
            "total_s": group["seconds"].sum(),
            "mean_s": group["seconds"].mean(),
            "mean_generations_all": group["budget_generations"].mean(),
            "mean_generations_success": wins["generations"].mean() if len(wins) else np.nan,
            "mean_queries": group["queries"].mean(),
            "mean_queries_success": wins["queries"].mean() if len(wins) else np.nan,
            # DE: the start set (|S|, or H*W if uniform); a scan has no start set, and what
            # says how far it went is the positions it scanned
            "mean_start_pixels": group["support_size"].mean() if not scans else (
                group["positions_scanned"].mean()),
        }

    rows = []
    for (seed, mode), group in frame.groupby(["seed", "mode"]):
        scans = "positions_scanned" in group and bool(group["positions_scanned"].notna().all())
        rows.append({"seed": seed, "mode": mode, **summarise(group, scans)})
    return pd.DataFrame(rows)


def _as_spelled(mode: str, modes: set) -> str:
    """``mode`` as the rows spell it: ``uniform`` for ``unconstrained``, ``susceptible``
    for ``constrained`` (two names of one mode, by ``mode_meaning``), where only that
    spelling ran."""
    if mode in modes:
        return mode
    meaning = mode_meaning(mode)
    return next((m for m in sorted(modes) if mode_meaning(m) == meaning), mode)


def summary(frame: pd.DataFrame, config: ExperimentConfig,
            a: str = "unconstrained", b: str = "constrained") -> dict:
    """Headline statistics.

    Args:
        frame: the rows (with ``budget_generations``).
        config: the run's config.
        a: the baseline mode.
        b: the mode the paper compares with it.

    Returns:
        ``modes``: per-mode means with CIs over seeds; ``paired``: ``a`` against ``b``
        (the paper's comparison) and ``paper_accounting``; ``paired_vs_a``: every other
        mode against ``a``; the budget and the devices.
    """
    modes = set(frame["mode"])
    a, b = _as_spelled(a, modes), _as_spelled(b, modes)
    per_seed = per_seed_table(frame)
    out: dict = {"modes": {}, "maxiter": config.maxiter, "popsize": config.popsize,
                 "devices": sorted(frame["device"].dropna().unique().tolist())
                 if "device" in frame else ["cpu"]}
    for mode, group in per_seed.groupby("mode"):
        out["modes"][mode] = {
            column: t_interval(group[column].to_numpy())
            for column in ("success_rate", "total_s", "mean_s", "mean_generations_all",
                           "mean_generations_success", "mean_queries", "mean_queries_success")}
    if {a, b} <= modes:
        out["paired"] = paired_comparison(frame, a, b)
        out["paper_accounting"] = paper_accounting(frame, config, a, b).to_dict("records")
    if a in modes:
        out["paired_vs_a"] = {mode: out["paired"] if mode == b and "paired" in out
                              else paired_comparison(frame, a, mode)
                              for mode in sorted(modes - {a})}
    return out


def markdown_report(frame: pd.DataFrame, config: ExperimentConfig, stats_: dict,
                    notes: list[str] | None = None, partial: str | None = None,
                    class_names: Sequence[str] | None = None) -> str:
    """The report as Markdown: Table 1 per seed, the means with CIs, paired comparisons,
    the paper's accounting.

    Args:
        frame: the rows (:func:`load_rows`).
        config: the run's config.
        stats_: :func:`summary` of the rows.
        notes: lines added at the end (what could not be drawn).
        partial: a line saying the report is partial (a run in progress), put first.
        class_names: the model's class names (``None``: :func:`class_names_of` the
            config; :func:`write_report` gives those the run folder records).

    Returns:
        The Markdown text.
    """
    table = per_seed_table(frame)
    kind = "one-pixel" if config.pixels == 1 else f"{config.pixels}-pixel"
    lines = [f"# {config.dataset} {kind} attack: {config.model}", "",
             *([f"**{partial}**", ""] if partial else []),
             f"{frame['image_index'].nunique()} images, seeds "
             f"{sorted(int(seed) for seed in frame['seed'].unique())}, modes "
             f"{', '.join(sorted(frame['mode'].unique()))}; "
             + "".join(f"{part}; " for part in _settings_read(config, frame['mode'].unique()))
             + f"computed on {', '.join(stats_.get('devices', ['cpu']))}.", "",
             "## Per seed and mode (Table 1 layout)", "",
             "| seed | mode | images | success | total s | mean s | mean gen (all) | "
             "mean gen (successes) | mean queries | mean start pixels"
             + (" (scans: positions scanned)" if _any_scan(frame) else "")
             + " |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        lines.append(f"| {r['seed']} | {r['mode']} | {int(r['images'])} | "
                     f"{r['success_rate']:.0%} | {r['total_s']:.1f} | {r['mean_s']:.3f} | "
                     f"{_fmt(r['mean_generations_all'])} | "
                     f"{_fmt(r['mean_generations_success'])} | "
                     f"{r['mean_queries']:.0f} | {r['mean_start_pixels']:.1f} |")
    lines += ["", "## Mean ± 95% CI over seeds", "",
              "| mode | success rate | total s | mean s | mean gen (all) | "
              "mean gen (successes) | mean queries |", "|---|---|---|---|---|---|---|"]
    for mode, m in stats_["modes"].items():
        lines.append(f"| {mode} | {_fmt(m['success_rate'], 3)} | {_fmt(m['total_s'], 1)} | "
                     f"{_fmt(m['mean_s'], 3)} | {_fmt(m['mean_generations_all'])} | "
                     f"{_fmt(m['mean_generations_success'])} | {_fmt(m['mean_queries'], 0)} |")
    for paired in ([stats_["paired"]] if "paired" in stats_ else []) + [
            value for mode, value in stats_.get("paired_vs_a", {}).items()
            if "paired" not in stats_ or mode != stats_["paired"]["b"]]:
        lines += _paired_lines(paired, config)
    if stats_.get("paper_accounting"):
        lines += accounting_lines(stats_["paper_accounting"], stats_["paired"], config)
    if has_certificates(frame):
        lines += robustness_lines(frame, class_names if class_names is not None
                                  else class_names_of(config))
    if "fell_back" in frame:
        lines += [f"\n**{line.removeprefix('note: ')}**"
                  for line in fallback_notes(frame[["mode", "fell_back"]].to_dict("records"))]
    if frame.attrs.get("already_misclassified"):
        lines += ["", f"{frame.attrs['already_misclassified']} (seed, mode, image) rows were "
                  "left out: the model already misclassified those images."]
    for note in notes or []:
        lines += ["", note]
    lines += ["", "Conventions: see `pixelprior.report` — failures count at maxiter + 1 "
              "generations; time per image is attributed by queries within a batch; "
              "intervals of ratios resample images (all seeds of an image together)."]
    return "\n".join(lines) + "\n"


def _settings_read(config: ExperimentConfig, modes) -> list[str]:
    """The settings the run's modes read, as the report's header says them: DE's where a
    mode runs it, τ where a prior draws a set from a map, each map method read (with
    SmoothGrad's samples and noise); a fast-only run lists no DE or SmoothGrad settings
    it never used."""
    parts = []
    if any(parse_mode(mode)[0] == "de" for mode in modes):
        parts.append(f"DE {config.strategy}, population {config.popsize}, at most "
                     f"{config.maxiter} generations")
    if any(reads_tau(mode) for mode in modes):
        parts.append(f"τ = {config.tau}")
    for method in sorted({map_method(mode, config.sensitivity) for mode in modes} - {None}):
        parts.append(f"{method} (n = {config.n_samples}, σ = {config.noise_level})"
                     if method == "smoothgrad" else f"{method} map")
    return parts


def _any_scan(frame: pd.DataFrame) -> bool:
    """Whether some mode of the frame scanned positions (its rows count them)."""
    return "positions_scanned" in frame and any(
        bool(group.notna().all()) for _, group in frame.groupby("mode")["positions_scanned"])


def _paired_lines(paired: dict, config: ExperimentConfig) -> list[str]:
    """Markdown lines of one paired comparison."""
    a, b = paired["a"], paired["b"]
    lines = ["", f"## Paired: {a} vs {b} on the same images and seeds", "",
             f"- pairs (seed, image): {paired['pairs']} over {paired['images']} images; both "
             f"succeed: {paired['both_success']}; only {a}: {paired['only_a_success']}; "
             f"only {b}: {paired['only_b_success']}"]
    if paired["effort"] == "generations":
        ga, gb = paired["mean_generations_both"]
        lines.append(f"- mean generations where both succeed: {a} {_fmt(ga)}, {b} {_fmt(gb)}")
        keys = (("generation_ratio_both", "generations, both succeed"),
                ("generation_ratio_all", "generations, all pairs (failures at budget)"),
                ("query_ratio_all", "queries, all pairs"),
                ("time_ratio_all", "time per image, all pairs"))
    else:
        qa, qb = paired["mean_queries_both"]
        lines.append(f"- mean queries where both succeed: {a} {_fmt(qa, 0)}, {b} {_fmt(qb, 0)}")
        keys = (("query_ratio_both", "queries, both succeed"),
                ("query_ratio_all", "queries, all pairs (failures at their budget)"),
                ("time_ratio_all", "time per image, all pairs"))
    for key, label in keys:
        r, lo, hi = paired[key]
        if r is None or np.isnan(r):
            lines.append(f"- ratio {a}/{b}, {label}: – (no pairs, or {b} spent nothing)")
            continue
        lines.append(f"- ratio {a}/{b}, {label}: {_fmt(r)} (95% CI {_fmt(lo)}–{_fmt(hi)}, "
                     "images resampled)")
    if paired["wilcoxon_p"] is not None:
        lines.append(f"- Wilcoxon signed-rank on the {paired['images_both_fool']} images both "
                     f"fool ({paired['effort']} per image, mean over the seeds where both "
                     f"succeed): W = {paired['wilcoxon_statistic']:.1f}, "
                     f"p = {paired['wilcoxon_p']:.3g}")
    lines.append(f"- exact McNemar test of success over images: {a} fools more often on "
                 f"{paired['mcnemar_images_only_a']} images, {b} on "
                 f"{paired['mcnemar_images_only_b']}; p = {paired['mcnemar_p']:.3g}")
    return lines


def write_report(directory: str | Path, figures: bool = True, exports: bool = True,
                 log: Callable[[str], None] | None = None) -> dict:
    """Write ``report.md``, ``table.csv``, ``summary.json``, exports and figures, each
    file whole or not at all.

    Before any of it: the folder must be writable, its records and rows are checked
    (:func:`load_rows`), and so are the model and the images the run recorded
    (:func:`~pixelprior.report.checks.check_inputs`). A run still writing into the folder
    makes the report partial: said to ``log`` and at the top of ``report.md``.

    Args:
        directory: the run folder.
        figures: draw the figures.
        exports: write ``results.csv`` and ``results.parquet``.
        log: told each note (what could not be drawn or checked, a partial report); the
            figures' notes are in ``report.md`` too.

    Returns:
        The statistics (``summary.json``).

    Raises:
        OutputLocationError: the folder is not writable.
        CorruptResultsError: a damaged record or row, a row of another run, or
            (:class:`~pixelprior.experiment.InputsChangedError`) a changed model or image.
        ValueError: no results yet.
    """
    directory = Path(directory)
    say = log if log is not None else (lambda note: None)
    rows, config, selection = read_run(directory)
    check_writable(directory)
    per_mode = dict(collections.Counter(row.get("mode") for row in rows))
    running = in_progress(directory, len(rows),
                          len(config.seeds) * len(config.modes) * len(selection["indices"]),
                          per_mode)
    if not rows:
        raise ValueError(f"{directory}: the run in progress there ({running.holder}) has "
                         "finished no attack yet; report when it has"
                         if running and running.holder else
                         f"{directory / RESULTS} holds no results yet")
    if running is not None:
        say(running.line(directory))
    frame = _frame(directory, rows, config)
    everything = add_budget(pd.DataFrame(rows), config)  # the exports: every row
    dataset, unloadable = _dataset(config, figures, selection)
    check_inputs(directory, config, dataset, say)
    stats_ = summary(frame, config)
    if running is not None:
        stats_["partial"] = {"finished": running.finished, "of": running.total,
                             "run": running.holder, "per_mode": per_mode}
    notes = write_figures(directory, frame, config, dataset, unloadable) if figures else []
    for note in notes:
        say(note)
    write_text_atomic(directory / "report.md", markdown_report(
        frame, config, stats_, notes, partial=running.line(directory) if running else None,
        class_names=class_names_of(config, directory)))
    _write_tables(directory, frame, config, stats_, figures, everything if exports else None)
    return stats_


def _dataset(config: ExperimentConfig, figures: bool, selection: dict
             ) -> tuple[ImageSet | None, str | None]:
    """The run's images when the figures or the fingerprint check need them, else
    ``(None, None)``; ``(None, why)`` when they cannot be loaded."""
    if not figures and "fingerprints" not in selection:
        return None, None
    try:
        dataset = load_dataset(config)
        check_one_index_per_image(dataset)  # figures find an image by its index
    except Exception as exc:  # noqa: BLE001 - data moved or missing: said, the rest reported
        return None, str(exc)
    return dataset, None


def _write_tables(directory: Path, frame: pd.DataFrame, config: ExperimentConfig,
                  stats_: dict, figures: bool, exports: pd.DataFrame | None) -> None:
    """``table.csv``, ``paper_accounting.csv``, ``summary.json``, the robustness table
    and figure, and the exports (every row, ``clean_correct`` saying which images were
    misclassified before any attack; the tables leave those out)."""
    _write_csv(per_seed_table(frame), directory / "table.csv")
    if stats_.get("paper_accounting"):
        _write_csv(pd.DataFrame(stats_["paper_accounting"]), directory / "paper_accounting.csv")
    write_text_atomic(directory / "summary.json",
                      dumps(_infinities_named(stats_), indent=2) + "\n")
    if has_certificates(frame):
        _write_csv(robustness_table(frame, by_class=True,
                                    class_names=class_names_of(config, directory)),
                   directory / "robustness.csv")
        if has_verification(frame):
            _write_csv(verification_table(frame), directory / "verification.csv")
        if figures:
            robustness_figure(directory, frame)
    if exports is not None:
        flat = exported(exports)
        _write_csv(flat, directory / "results.csv")
        with atomic_write(directory / "results.parquet") as f:
            flat.to_parquet(f, index=False)


def _infinities_named(value):
    """``value`` with ±inf as the strings ``"inf"`` / ``"-inf"`` (a confidence limit
    that is unbounded; JSON has no infinity, and ``null`` is what NaN becomes: the two
    were told apart in report.md but not in summary.json)."""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: _infinities_named(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_infinities_named(v) for v in value]
    if isinstance(value, np.floating):
        return _infinities_named(float(value))
    return value


def exported(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows as ``results.csv`` and ``results.parquet`` hold them: one column per
    field, the changed pixels (position, old and new color of each) as JSON text in
    ``pixels`` (``[{"x": .., "y": .., "old": [..], "new": [..]}, ...]``), which a CSV
    cell and a Parquet string column both keep whole."""
    flat = frame.copy()
    flat["pixels"] = [dumps(pixels) for pixels in frame["pixels"]]
    for name, dtype in _export_dtypes().items():
        if name in flat:
            try:
                flat[name] = flat[name].astype(dtype)
            except (TypeError, ValueError, OverflowError):  # a value the type cannot
                pass  # hold (a seed past 2**63): pandas' own type, the values whole
    return flat


def _export_dtypes() -> dict[str, str]:
    """The pandas type of each known row field in the exports: nullable integers,
    booleans and strings, so that a column has one Parquet type whatever the rows hold
    (an integer field with a missing value was written as double, a boolean one with a
    missing value as double or object). A field of several kinds (``int | float``) is a
    number; unknown fields keep pandas' own type."""
    kinds = {int: "Int64", float: "float64", bool: "boolean", str: "string"}
    out = {}
    for name, annotation in row_fields().items():
        arms = {arm for arm in typing.get_args(annotation) or (annotation,)
                if arm is not type(None)}
        if len(arms) == 1 and next(iter(arms)) in kinds:
            out[name] = kinds[next(iter(arms))]
        elif arms and arms <= {int, float}:
            out[name] = "float64"
    return out


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """A CSV written whole or not at all."""
    with atomic_write(path, "w") as f:
        frame.to_csv(f, index=False)

