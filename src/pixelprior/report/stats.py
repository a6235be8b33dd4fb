"""Statistics with the image as the unit: intervals, bootstrap ratios that resample
images, the paired comparison of two modes, exact McNemar, and ROC curves."""

from __future__ import annotations

import numpy as np
import pandas as pd

RESAMPLES = 10_000


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Mean ± Student-t half-width.

    Args:
        values: float ``[n]`` (NaN values are left out).
        level: the interval's confidence.

    Returns:
        ``(mean, half-width)``; the width is NaN for fewer than 2 values.
    """
    from scipy import stats

    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    mean = float(values.mean()) if values.size else float("nan")
    if values.size < 2:
        return mean, float("nan")
    half = stats.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / np.sqrt(
        values.size)
    return mean, float(half)


def counts_generations(frame: pd.DataFrame, mode: str) -> bool:
    """Whether every row of a mode records generations (a differential evolution).

    Args:
        frame: the rows.
        mode: the mode.

    Returns:
        True when the mode has rows and every one has generations.
    """
    values = pd.to_numeric(frame.loc[frame["mode"] == mode, "generations"], errors="coerce")
    return bool(len(values)) and bool(values.notna().all())


def paired_frame(frame: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Both modes' outcomes side by side.

    Args:
        frame: the rows.
        a: the first mode.
        b: the second mode.

    Returns:
        One row per (seed, image) attacked by both: ``success``, ``generations``,
        ``budget_generations``, ``seconds``, ``queries``, suffixed ``_a`` / ``_b``.
    """
    keys = ["seed", "image_index"]
    cols = keys + ["success", "generations", "budget_generations", "seconds", "queries"]
    left = frame[frame["mode"] == a][cols]
    right = frame[frame["mode"] == b][cols]
    return left.merge(right, on=keys, suffixes=(f"_{a}", f"_{b}"))


def image_bootstrap_ratio(images: np.ndarray, num: np.ndarray, den: np.ndarray,
                          resamples: int = RESAMPLES, seed: int = 0
                          ) -> tuple[float, float, float]:
    """Ratio of means ``sum(num)/sum(den)`` over rows, with a 95% percentile bootstrap CI
    that resamples *images* (every row of a drawn image comes along).

    Args:
        images: the image of each row ``[n]``.
        num: numerators ``[n]``.
        den: denominators ``[n]``.
        resamples: bootstrap resamples.
        seed: the resampling's seed.

    Returns:
        ``(ratio, low, high)``; NaN without rows or with a zero denominator; ``high`` is
        infinite when resamples can have a zero denominator.
    """
    images, num, den = np.asarray(images), np.asarray(num, float), np.asarray(den, float)
    if num.size == 0 or den.sum() == 0:
        return float("nan"), float("nan"), float("nan")
    ids, inverse = np.unique(images, return_inverse=True)
    num_sum = np.bincount(inverse, weights=num, minlength=ids.size)
    den_sum = np.bincount(inverse, weights=den, minlength=ids.size)
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, ids.size, size=(resamples, ids.size))
    num_draw, den_draw = num_sum[draw].sum(1), den_sum[draw].sum(1)
    # a resample whose denominator is 0 has an unbounded ratio (inf, not num / 1e-12)
    ratios = np.divide(num_draw, den_draw, out=np.full(resamples, np.inf),
                       where=den_draw > 0)
    low, high = _percentiles(ratios, (2.5, 97.5))
    return float(num.sum() / den.sum()), float(low), float(high)


def _percentiles(values: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """NumPy's (linear) percentiles, except that one whose interpolation touches an
    infinite value is infinite (NumPy answers NaN there)."""
    ordered = np.sort(values)
    out = []
    for q in qs:
        upper = ordered[int(np.ceil(q / 100 * (len(ordered) - 1)))]
        out.append(float(upper) if np.isinf(upper) else float(np.percentile(ordered, q)))
    return out


def bootstrap_ratio(num: np.ndarray, den: np.ndarray, resamples: int = RESAMPLES,
                    seed: int = 0) -> tuple[float, float, float]:
    """Ratio of means with a bootstrap over rows (each row its own unit).

    Args:
        num: numerators ``[n]``.
        den: denominators ``[n]``.
        resamples: bootstrap resamples.
        seed: the resampling's seed.

    Returns:
        ``(ratio, low, high)`` as :func:`image_bootstrap_ratio`.
    """
    return image_bootstrap_ratio(np.arange(len(num)), num, den, resamples, seed)


def mcnemar_exact(frame: pd.DataFrame, a: str, b: str) -> dict:
    """Exact McNemar test of success at the image level: per image the share of seeds each
    mode fools it; images where the shares differ are discordant, counted for the mode
    with the higher share; two-sided binomial test of those counts against 1/2.

    Args:
        frame: the rows.
        a: the first mode.
        b: the second mode.

    Returns:
        ``{"images_only_a", "images_only_b", "p"}``.
    """
    from scipy import stats

    paired = paired_frame(frame, a, b)
    share = paired.groupby("image_index")[[f"success_{a}", f"success_{b}"]].mean()
    wins_a = int((share.iloc[:, 0] > share.iloc[:, 1]).sum())
    wins_b = int((share.iloc[:, 1] > share.iloc[:, 0]).sum())
    p = (float(stats.binomtest(wins_a, wins_a + wins_b, 0.5).pvalue)
         if wins_a + wins_b else 1.0)
    return {"images_only_a": wins_a, "images_only_b": wins_b, "p": p}


def paired_comparison(frame: pd.DataFrame, a: str, b: str) -> dict:
    """Mode ``a`` against mode ``b`` on the same (seed, image) pairs (the statistics:
    :mod:`pixelprior.report.tables`).

    Args:
        frame: the rows (with ``budget_generations``).
        a: the first mode.
        b: the second mode.

    Returns:
        Counts of pairs and successes, mean effort where both succeed, bootstrap ratios
        of generations, queries and time, the Wilcoxon and exact McNemar tests.
    """
    from scipy import stats

    paired = paired_frame(frame, a, b)
    both = paired[paired[f"success_{a}"] & paired[f"success_{b}"]]
    # generations compare where both searches count them (differential evolution);
    # any other search is compared by its queries
    effort = "generations" if all(counts_generations(frame, m) for m in (a, b)) else (
        "queries")
    per_image = both.groupby("image_index")[[f"{effort}_{a}", f"{effort}_{b}"]].mean()
    test = None
    if len(per_image) and (per_image.iloc[:, 0] != per_image.iloc[:, 1]).any():
        test = stats.wilcoxon(per_image.iloc[:, 0], per_image.iloc[:, 1])
    ratio = lambda data, column: image_bootstrap_ratio(  # noqa: E731
        data["image_index"], data[f"{column}_{a}"], data[f"{column}_{b}"])
    mcnemar = mcnemar_exact(frame, a, b)
    out = {
        "a": a, "b": b, "effort": effort, "pairs": len(paired), "both_success": len(both),
        "only_a_success": int((paired[f"success_{a}"] & ~paired[f"success_{b}"]).sum()),
        "only_b_success": int((~paired[f"success_{a}"] & paired[f"success_{b}"]).sum()),
        "images": int(paired["image_index"].nunique()),
        "images_both_fool": int(len(per_image)),
        "mean_generations_both": (float(both[f"generations_{a}"].mean()),
                                  float(both[f"generations_{b}"].mean())),
        "mean_queries_both": (float(both[f"queries_{a}"].mean()),
                              float(both[f"queries_{b}"].mean())),
        "generation_ratio_both": ratio(both, "generations"),
        "generation_ratio_all": ratio(paired, "budget_generations"),
        "query_ratio_both": ratio(both, "queries"),
        "query_ratio_all": ratio(paired, "queries"),
        "time_ratio_all": ratio(paired, "seconds"),
        "wilcoxon_statistic": float(test.statistic) if test is not None else None,
        "wilcoxon_p": float(test.pvalue) if test is not None else None,
        "mcnemar_images_only_a": mcnemar["images_only_a"],
        "mcnemar_images_only_b": mcnemar["images_only_b"],
        "mcnemar_p": mcnemar["p"],
    }
    return out



def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (ties count half).

    Args:
        scores: any shape.
        positive: bool, the same shape: the positives.

    Returns:
        The AUC; NaN when a class is empty.
    """
    from scipy.stats import rankdata

    positive = positive.astype(bool).ravel()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores.ravel())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores: np.ndarray, positive: np.ndarray, grid: np.ndarray
              ) -> np.ndarray:
    """The ROC curve on a grid of false-positive rates.

    Args:
        scores: any shape.
        positive: bool, the same shape: the positives.
        grid: false-positive rates ``[g]``.

    Returns:
        True-positive rates ``[g]`` (interpolated).
    """
    order = np.argsort(-scores.ravel(), kind="stable")
    positive = positive.ravel()[order].astype(bool)
    tpr = np.concatenate([[0.0], np.cumsum(positive) / max(positive.sum(), 1)])
    fpr = np.concatenate([[0.0], np.cumsum(~positive) / max((~positive).sum(), 1)])
    return np.interp(grid, fpr, tpr)

