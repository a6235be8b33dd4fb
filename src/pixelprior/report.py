"""Reports of an experiment directory: Table 1/2, statistics, figures, exports.

Conventions (stated in every report):

- **generations of a failure** count at the budget, ``maxiter + 1`` (one more than any
  success can use), so that failing is always worse than succeeding late;
- **mean over all images** includes failures counted that way; **mean over successes**
  uses only successful attacks (what the paper's tables appear to report); **paired**
  means use only images that *both* modes attack successfully with the same seed;
- **time per image** is the attack's wall time attributed to images in proportion to
  their model queries (images are attacked in batches), plus an even share of the
  sensitivity computation;
- **95% intervals**: Student-t over the seed means for per-seed summaries; percentile
  bootstrap (10 000 resamples of images, paired across modes) for ratios;
- **paired test**: Wilcoxon signed-rank on per-image generations (mean over seeds),
  unconstrained vs constrained, failures at the budget.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .experiment import RESULTS, ExperimentConfig, read_results

PAPER_TABLE1 = pd.DataFrame({
    "seed_run": [1, 2, 3, 4, 5],
    "unconstrained_total_s": [207.98, 216.00, 212.10, 210.71, 210.72],
    "unconstrained_mean_s": [2.08, 2.16, 2.12, 2.11, 2.11],
    "unconstrained_mean_iterations": [35.61, 37.40, 36.72, 36.39, 36.24],
    "constrained_total_s": [37.15, 35.36, 34.16, 37.03, 36.05],
    "constrained_mean_s": [0.56, 0.54, 0.52, 0.58, 0.55],
    "constrained_mean_iterations": [2.52, 2.33, 2.26, 2.52, 2.40],
})


def load_rows(directory: str | Path) -> tuple[pd.DataFrame, ExperimentConfig]:
    """The results of a run directory as a DataFrame, with its config."""
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory} is not a run directory (no config.json)")
    config = ExperimentConfig(**json.loads(config_path.read_text())["config"])
    rows = read_results(directory / RESULTS)
    if not rows:
        raise ValueError(f"{directory / RESULTS} holds no results yet")
    frame = pd.DataFrame(rows)
    # images the model already got wrong need no attack: reported, not counted as successes
    misclassified = int((~frame["clean_correct"]).sum()) if "clean_correct" in frame else 0
    if misclassified:
        frame = frame[frame["clean_correct"]].copy()
    if frame.empty:
        raise ValueError(f"{directory}: every image was already misclassified")
    frame.attrs["already_misclassified"] = misclassified
    frame["budget_generations"] = np.where(frame["success"], frame["generations"],
                                           config.maxiter + 1)
    return frame, config


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Mean ± Student-t half-width (NaN width for fewer than 2 values)."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    mean = float(values.mean()) if values.size else float("nan")
    if values.size < 2:
        return mean, float("nan")
    half = stats.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / np.sqrt(
        values.size)
    return mean, float(half)


def per_seed_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Table 1 layout: one row per (seed, mode) with totals, means, success, queries."""
    def summarise(group: pd.DataFrame) -> pd.Series:
        wins = group[group["success"]]
        return pd.Series({
            "images": len(group),
            "success_rate": group["success"].mean(),
            "total_s": group["seconds"].sum(),
            "mean_s": group["seconds"].mean(),
            "mean_generations_all": group["budget_generations"].mean(),
            "mean_generations_success": wins["generations"].mean() if len(wins) else np.nan,
            "mean_queries": group["queries"].mean(),
            "mean_start_pixels": group["support_size"].mean(),  # |S|, or H*W if uniform
        })

    return frame.groupby(["seed", "mode"]).apply(summarise, include_groups=False).reset_index()


def paired_frame(frame: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Per (seed, image) rows holding both modes' outcomes side by side."""
    keys = ["seed", "image_index"]
    cols = keys + ["success", "generations", "budget_generations", "seconds", "queries"]
    left = frame[frame["mode"] == a][cols]
    right = frame[frame["mode"] == b][cols]
    return left.merge(right, on=keys, suffixes=(f"_{a}", f"_{b}"))


def bootstrap_ratio(num: np.ndarray, den: np.ndarray, resamples: int = 10_000,
                    seed: int = 0) -> tuple[float, float, float]:
    """Ratio of means ``mean(num)/mean(den)`` with a paired percentile bootstrap 95% CI."""
    rng = np.random.default_rng(seed)
    num, den = np.asarray(num, float), np.asarray(den, float)
    if num.size == 0 or den.mean() == 0:
        return float("nan"), float("nan"), float("nan")
    idx = rng.integers(0, num.size, size=(resamples, num.size))
    ratios = num[idx].mean(1) / np.maximum(den[idx].mean(1), 1e-12)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(num.mean() / den.mean()), float(low), float(high)


def paired_comparison(frame: pd.DataFrame, a: str, b: str) -> dict:
    """Mode ``a`` against mode ``b`` on the same (seed, image) pairs: successes of each,
    generation and time ratios with bootstrap CIs, Wilcoxon on per-image generations."""
    from scipy import stats

    paired = paired_frame(frame, a, b)
    both = paired[paired[f"success_{a}"] & paired[f"success_{b}"]]
    per_image = paired.groupby("image_index")[[f"budget_generations_{a}",
                                               f"budget_generations_{b}"]].mean()
    diff = per_image.iloc[:, 0] - per_image.iloc[:, 1]
    test = (stats.wilcoxon(per_image.iloc[:, 0], per_image.iloc[:, 1])
            if (diff != 0).any() else None)
    return {
        "a": a, "b": b, "pairs": len(paired), "both_success": len(both),
        "only_a_success": int((paired[f"success_{a}"] & ~paired[f"success_{b}"]).sum()),
        "only_b_success": int((~paired[f"success_{a}"] & paired[f"success_{b}"]).sum()),
        "mean_generations_both": (float(both[f"generations_{a}"].mean()),
                                  float(both[f"generations_{b}"].mean())),
        "generation_ratio_all": bootstrap_ratio(paired[f"budget_generations_{a}"],
                                                paired[f"budget_generations_{b}"]),
        "generation_ratio_both": bootstrap_ratio(both[f"generations_{a}"],
                                                 both[f"generations_{b}"]),
        "time_ratio_all": bootstrap_ratio(paired[f"seconds_{a}"], paired[f"seconds_{b}"]),
        "wilcoxon_statistic": float(test.statistic) if test is not None else None,
        "wilcoxon_p": float(test.pvalue) if test is not None else None,
        "images": int(per_image.shape[0]),
    }


def summary(frame: pd.DataFrame, config: ExperimentConfig,
            a: str = "unconstrained", b: str = "constrained") -> dict:
    """Headline statistics: per-mode means with CIs; ``paired``: mode ``a`` against
    ``b`` (the paper's comparison); ``paired_vs_a``: every other mode against ``a``."""
    per_seed = per_seed_table(frame)
    out: dict = {"modes": {}, "maxiter": config.maxiter, "popsize": config.popsize}
    for mode, group in per_seed.groupby("mode"):
        out["modes"][mode] = {
            column: t_interval(group[column].to_numpy())
            for column in ("success_rate", "total_s", "mean_s", "mean_generations_all",
                           "mean_generations_success", "mean_queries")}
    modes = set(frame["mode"])
    if {a, b} <= modes:
        out["paired"] = paired_comparison(frame, a, b)
    if a in modes:
        out["paired_vs_a"] = {mode: paired_comparison(frame, a, mode)
                              for mode in sorted(modes - {a})}
    return out


def _fmt(value: tuple[float, float] | float, digits: int = 2) -> str:
    if isinstance(value, tuple):
        mean, half = value
        return f"{mean:.{digits}f}" if np.isnan(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"
    return f"{value:.{digits}f}"


def markdown_report(frame: pd.DataFrame, config: ExperimentConfig, stats_: dict) -> str:
    """The report as Markdown: Table 1 per seed, the means with CIs, the paired comparison."""
    table = per_seed_table(frame)
    lines = [f"# {config.dataset} one-pixel attack: {config.model}", "",
             f"{frame['image_index'].nunique()} images, seeds "
             f"{sorted(int(seed) for seed in frame['seed'].unique())},"
             f" population {config.popsize}, at most {config.maxiter} generations, "
             f"τ = {config.tau}, {config.sensitivity} (n = {config.n_samples}, "
             f"σ = {config.noise_level}).", "",
             "## Per seed and mode (Table 1 layout)", "",
             "| seed | mode | images | success | total s | mean s | mean gen (all) | "
             "mean gen (successes) | mean queries | mean start pixels |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        lines.append(f"| {r['seed']} | {r['mode']} | {int(r['images'])} | "
                     f"{r['success_rate']:.0%} | {r['total_s']:.1f} | {r['mean_s']:.3f} | "
                     f"{r['mean_generations_all']:.2f} | {r['mean_generations_success']:.2f} | "
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
    if frame.attrs.get("already_misclassified"):
        lines += ["", f"{frame.attrs['already_misclassified']} (seed, mode, image) rows were "
                  "left out: the model already misclassified those images."]
    lines += ["", "Conventions: see `pixelprior.report` — failures count at maxiter + 1 "
              "generations; time per image is attributed by queries within a batch."]
    return "\n".join(lines) + "\n"


def _paired_lines(paired: dict, config: ExperimentConfig) -> list[str]:
    """Markdown lines of one paired comparison."""
    a, b = paired["a"], paired["b"]
    ga, gb = paired["mean_generations_both"]
    lines = ["", f"## Paired: {a} vs {b} on the same images and seeds", "",
             f"- pairs (seed, image): {paired['pairs']}; both succeed: "
             f"{paired['both_success']}; only {a}: {paired['only_a_success']};"
             f" only {b}: {paired['only_b_success']}",
             f"- mean generations where both succeed: {a} {ga:.2f}, {b} {gb:.2f}"]
    for key, label in (("generation_ratio_all", "generations, all pairs (failures at "
                        "budget)"), ("generation_ratio_both", "generations, both succeed"),
                       ("time_ratio_all", "time per image, all pairs")):
        r, lo, hi = paired[key]
        lines.append(f"- ratio {a}/{b}, {label}: {r:.2f} (95% bootstrap CI {lo:.2f}–{hi:.2f})")
    if paired["wilcoxon_p"] is not None:
        lines.append(f"- Wilcoxon signed-rank on per-image generations (mean over seeds, "
                     f"failures at {config.maxiter + 1}): "
                     f"W = {paired['wilcoxon_statistic']:.1f}, "
                     f"p = {paired['wilcoxon_p']:.3g} ({paired['images']} images)")
    return lines


def write_report(directory: str | Path, figures: bool = True, exports: bool = True) -> dict:
    """Write ``report.md``, ``table.csv``, ``summary.json``, exports and figures."""
    directory = Path(directory)
    frame, config = load_rows(directory)
    stats_ = summary(frame, config)
    (directory / "report.md").write_text(markdown_report(frame, config, stats_))
    per_seed_table(frame).to_csv(directory / "table.csv", index=False)
    (directory / "summary.json").write_text(json.dumps(stats_, indent=2) + "\n")
    if exports:
        flat = frame.drop(columns=["pixels"]).copy()
        flat.to_csv(directory / "results.csv", index=False)
        flat.to_parquet(directory / "results.parquet", index=False)
    if figures:
        from .figures import write_figures

        write_figures(directory, frame, config)
    return stats_
