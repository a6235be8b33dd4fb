"""One-pixel robust accuracy: per model and image set, the share of images fooled,
certified on the corner grid, and neither, overall and per class, from the rows of
``fast`` modes (which record ``decided_by`` and ``corner_certified``); where the verifier
ran, the shares verified and unknown, the verified volume and the verifier revisions
that made the rows."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._format import number

if TYPE_CHECKING:  # matplotlib loads only where a figure is drawn
    import matplotlib.pyplot as plt

__all__ = ["has_certificates", "has_verification", "robustness_figure", "robustness_lines",
           "robustness_table", "verification_table"]


def has_certificates(frame: pd.DataFrame) -> bool:
    """Whether some mode's rows say how each image was decided (the ``fast`` modes).

    Args:
        frame: the rows.

    Returns:
        True when a row has ``decided_by``.
    """
    return "decided_by" in frame and bool(frame["decided_by"].notna().any())


def has_verification(frame: pd.DataFrame) -> bool:
    """Whether rows carry the verifier's fields (rows of ``fast`` since the verifier:
    ``verified``, ``verified_volume``); older rows keep the older report.

    Args:
        frame: the rows.

    Returns:
        True when some row of a fast mode has ``verified``.
    """
    return ("verified" in frame and "decided_by" in frame
            and bool(frame.loc[frame["decided_by"].notna(), "verified"].notna().any()))


def _outcome(frame: pd.DataFrame) -> pd.Series:
    """``fooled``, ``certified`` (not fooled, certified on the corner grid) or
    ``neither`` per row."""
    certified = frame["corner_certified"].fillna(False).astype(bool)
    return pd.Series(np.where(frame["success"], "fooled",
                              np.where(certified, "certified", "neither")), index=frame.index)


def _verified_outcome(frame: pd.DataFrame) -> pd.Series:
    """``fooled``, ``verified`` (proved over every color), ``unknown`` (the verifier's
    budget ran out), ``corners only`` (certified on the corner grid, not verified) or
    ``neither`` per row."""
    decided = frame["decided_by"]
    return pd.Series(np.select(
        [frame["success"].astype(bool), decided == "verified", decided == "unknown",
         frame["corner_certified"].fillna(False).astype(bool)],
        ["fooled", "verified", "unknown", "corners only"], "neither"), index=frame.index)


def verification_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per mode: the shares fooled, verified, unknown, certified on the corners only and
    neither, the share verified with the float32 evaluation proved too at every position
    (``verified_float32``, part of ``verified``), and the mean verified volume (the share
    of positions × colors proved) of the images the verifier ran on.

    Args:
        frame: result rows.

    Returns:
        One row per mode.
    """
    rows = frame[frame["decided_by"].notna()].copy()
    rows["outcome"] = _verified_outcome(rows)
    out = []
    for mode, group in rows.groupby("mode"):
        # the images left verified or unknown (a fooled one's volume is of the boxes
        # proved before its witness: no share of a robust image's threat space)
        open_or_proved = group["outcome"].isin(("verified", "unknown"))
        volume = pd.to_numeric(group.loc[open_or_proved, "verified_volume"],
                               errors="coerce").dropna()
        record = {"mode": mode, "attacks": len(group)}
        for outcome in ("fooled", "verified", "unknown", "corners only", "neither"):
            record[outcome] = float((group["outcome"] == outcome).mean())
        record["verified_volume"] = float(volume.mean()) if len(volume) else np.nan
        record["verified_images"] = len(volume)
        # rows from before the float32 proof say nothing of it: counted as not proved
        proved = (group["float32_proved"].astype(object).fillna(False).astype(bool)
                  if "float32_proved" in group else pd.Series(False, index=group.index))
        record["verified_float32"] = float(((group["outcome"] == "verified") & proved).mean())
        out.append(record)
    return pd.DataFrame(out)


def _verification_lines(frame: pd.DataFrame) -> list[str]:
    table = verification_table(frame)
    lines = ["", "### Verified against any color", "",
             "The verifier proves an image over the whole threat model — one pixel at any "
             "position set to any color in [0, 1]³ — or finds a witness: **verified** "
             "(every box of every position proved), **unknown** (its budget ran out: the "
             "verified volume says how much of the threat space was proved), **corners "
             "only** (certified on the corner grid, the verifier not run). Fooled off the "
             "corners by the verifier counts as fooled. **float32 proved**: verified, and "
             "the model's float32 evaluation proved not to change the label either, at "
             "every position (elsewhere it rests on a first-order estimate). **neither**: "
             "the corner scan was cut short, or its near-tie label change was not confirmed "
             "by the model itself.", "",
             "| mode | attacks | fooled | verified | of them float32 proved | unknown | "
             "corners only | neither | verified volume (mean, images verified or unknown) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        volume = (f"{r['verified_volume']:.2%} ({r['verified_images']})"
                  if r["verified_images"] else "–")
        lines.append(f"| {r['mode']} | {r['attacks']} | {r['fooled']:.1%} | "
                     f"{r['verified']:.1%} | {r['verified_float32']:.1%} | "
                     f"{r['unknown']:.1%} | {r['corners only']:.1%} | "
                     f"{r['neither']:.1%} | {volume} |")
    return lines + _revision_lines(frame)


def _revision_lines(frame: pd.DataFrame) -> list[str]:
    """Which revisions of the verifier made the rows it ran on (rows record it as
    ``verifier``; those from before say nothing and are counted apart)."""
    if "verified_volume" not in frame:
        return []
    ran = frame[pd.to_numeric(frame["verified_volume"], errors="coerce").notna()]
    if ran.empty:
        return []
    recorded = (pd.to_numeric(ran["verifier"], errors="coerce") if "verifier" in ran
                else pd.Series(np.nan, index=ran.index))
    counts = recorded.dropna().astype(int).value_counts().sort_index()
    parts = [f"revision {revision} ({count} row{'s' * (count != 1)})"
             for revision, count in counts.items()]
    missing = int(recorded.isna().sum())
    if missing:
        parts.append(f"{missing} row{'s' * (missing != 1)} from before rows recorded it")
    return ["", f"Verifier: {', '.join(parts)}."]


def robustness_table(frame: pd.DataFrame, by_class: bool = False,
                     class_names: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Per mode (and per true class with ``by_class``): images, the shares fooled,
    certified and neither, mean and median queries to the first success, mean queries.

    Args:
        frame: result rows (one per seed, mode and image).
        by_class: one row per (mode, class) instead of per mode.
        class_names: names of the classes, for the ``class`` column.

    Returns:
        One row per mode (and class).
    """
    rows = frame[frame["decided_by"].notna()].copy()
    rows["outcome"] = _outcome(rows)
    keys = ["mode", "true_label"] if by_class else ["mode"]
    out = []
    for key, group in rows.groupby(keys):
        key = key if isinstance(key, tuple) else (key,)
        wins = group[group["success"]]
        record = dict(zip(keys, key, strict=True))
        if by_class:
            label = int(record["true_label"])
            record["class"] = class_names[label] if class_names is not None else str(label)
        record.update({
            "attacks": len(group),
            "fooled": float((group["outcome"] == "fooled").mean()),
            "certified": float((group["outcome"] == "certified").mean()),
            "neither": float((group["outcome"] == "neither").mean()),
            "robust_accuracy_upper": float(1 - (group["outcome"] == "fooled").mean()),
            "mean_queries_to_first": float(wins["queries"].mean()) if len(wins) else np.nan,
            "median_queries_to_first": float(wins["queries"].median()) if len(wins)
            else np.nan,
            "mean_queries": float(group["queries"].mean()),
            "by_refine": int((group["decided_by"] == "refine").sum()),
        })
        out.append(record)
    return pd.DataFrame(out)


def robustness_lines(frame: pd.DataFrame, class_names: tuple[str, ...] | None = None
                     ) -> list[str]:
    """The report's section on one-pixel robust accuracy.

    Args:
        frame: the rows.
        class_names: names of the classes (``None``: indices).

    Returns:
        Markdown lines.
    """
    table = robustness_table(frame)
    lines = ["", "## One-pixel robust accuracy (fast modes)", "",
             "Each image is **fooled** (a verified one-pixel adversarial), **certified** on "
             "the corner grid (no corner of the colour cube at any position changes the "
             "label; near ties re-scored by the model itself), or **neither** (the scan was "
             "cut short by its budget, or the label change it found at a near tie was not "
             "confirmed when the model itself re-scored it). Robust accuracy against one "
             "pixel is at most 1 − fooled; the certified share is the robust accuracy "
             "against one pixel set to a corner colour (a certificate covers the 8 "
             "corners, not every colour)."
             + _misclassified_sentence(frame, table), "",
             "| mode | attacks | fooled | certified | neither | queries to first success "
             "(mean / median) | mean queries | fooled off the corners |",
             "|---|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        lines.append(f"| {r['mode']} | {r['attacks']} | {r['fooled']:.1%} | "
                     f"{r['certified']:.1%} | {r['neither']:.1%} | "
                     f"{number(r['mean_queries_to_first'], 0)} / "
                     f"{number(r['median_queries_to_first'], 0)} | "
                     f"{number(r['mean_queries'], 0)} | {r['by_refine']} |")
    if has_verification(frame):
        lines += _verification_lines(frame)
    per_class = robustness_table(frame, by_class=True, class_names=class_names)
    lines += ["", "Per class:", "", "| mode | class | attacks | fooled | certified | neither |",
              "|---|---|---|---|---|---|"]
    for _, r in per_class.iterrows():
        lines.append(f"| {r['mode']} | {r['class']} | {r['attacks']} | {r['fooled']:.0%} | "
                     f"{r['certified']:.0%} | {r['neither']:.0%} |")
    return lines


def _misclassified_sentence(frame: pd.DataFrame, table: pd.DataFrame) -> str:
    """Where images were misclassified before any attack: the shares above are of the
    images the model got right, and over every image selected the bound is lower."""
    per_mode = frame.attrs.get("misclassified_per_mode") or {}
    if not per_mode:
        return ""
    bounds = []
    for _, r in table.iterrows():
        wrong = per_mode.get(str(r["mode"]), 0)
        total = r["attacks"] + wrong
        bounds.append(f"{r['mode']} {r['robust_accuracy_upper'] * r['attacks'] / total:.1%} "
                      f"of {total}")
    return (f" The shares are of the images the model classified correctly; "
            f"{sum(per_mode.values())} attacks on images it already misclassified count as "
            f"not robust over every image selected: robust accuracy at most "
            f"{', '.join(bounds)}.")


def robustness_figure(directory: Path, frame: pd.DataFrame) -> plt.Figure:
    """Share of images fooled within q queries (log scale) for each fast mode, with the
    certified share marked: ``robustness.png`` and ``.pdf``, each written whole.

    Args:
        directory: where to write it.
        frame: the rows.

    Returns:
        The (saved, closed) figure.
    """
    from .drawing import _save, plt

    rows = frame[frame["decided_by"].notna()]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    top = max(8, int(rows["queries"].max()))
    grid = np.unique(np.geomspace(8, top, 300).round())
    for mode, group in rows.groupby("mode"):
        q = np.where(group["success"], group["queries"], np.inf)
        line, = ax.plot(grid, [(q <= g).mean() for g in grid], label=f"{mode}: fooled")
        certified = float((_outcome(group) == "certified").mean())
        ax.axhline(1 - certified, color=line.get_color(), linestyle=":", linewidth=0.8,
                   label=f"{mode}: 1 − certified ({certified:.0%})")
    ax.set_xscale("log")
    ax.set_xlabel("model queries to the first success (log scale)")
    ax.set_ylabel("share of images")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, directory, "robustness")
