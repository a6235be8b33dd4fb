"""Report: tables, statistics and figures on a small real run, and on synthetic rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pixelprior.experiment import ExperimentConfig, ExperimentRunner
from pixelprior.report import (
    bootstrap_ratio,
    image_bootstrap_ratio,
    mcnemar_exact,
    paper_accounting,
    per_seed_table,
    summary,
    t_interval,
    write_report,
)


def synthetic(maxiter=10):
    rows = []
    for seed in (0, 1):
        for image in range(6):
            for mode, gens in (("unconstrained", image + 4), ("constrained", image + 1)):
                success = not (mode == "unconstrained" and image == 5)
                rows.append(dict(seed=seed, mode=mode, image_index=image, success=success,
                                 true_label=0, adversarial_label=1, pixels=[],
                                 generations=gens if success else maxiter,
                                 seconds=0.1 * gens, queries=10 * (gens + 1),
                                 support_size=16 if mode == "constrained" else 64))
    frame = pd.DataFrame(rows)
    frame["budget_generations"] = np.where(frame["success"], frame["generations"], maxiter + 1)
    return frame


def test_statistics_on_synthetic_rows():
    config = ExperimentConfig(maxiter=10)
    stats = summary(synthetic(), config)
    paired = stats["paired"]
    assert paired["pairs"] == 12 and paired["both_success"] == 10
    assert paired["only_b_success"] == 2 and paired["only_a_success"] == 0
    ratio, low, high = paired["generation_ratio_both"]
    assert ratio == pytest.approx(np.mean([4, 5, 6, 7, 8]) / np.mean([1, 2, 3, 4, 5]))
    assert low <= ratio <= high
    # Wilcoxon on the 5 images both fool (mean over seeds): all differences equal 3
    assert paired["images_both_fool"] == 5 and paired["wilcoxon_p"] == pytest.approx(0.0625)
    assert (paired["mcnemar_images_only_a"], paired["mcnemar_images_only_b"]) == (0, 1)
    assert paired["mcnemar_p"] == 1.0
    table = per_seed_table(synthetic())
    row = table[(table["seed"] == 0) & (table["mode"] == "unconstrained")].iloc[0]
    assert row["success_rate"] == pytest.approx(5 / 6)
    assert row["mean_generations_all"] == pytest.approx((4 + 5 + 6 + 7 + 8 + 11) / 6)


def test_the_papers_comparison_is_made_under_the_priors_names_too():
    """--modes uniform,susceptible is the paper's experiment; its report had no paired
    comparison (the pair was looked up by the paper's names only)."""
    renamed = synthetic().replace({"mode": {"unconstrained": "uniform",
                                            "constrained": "susceptible"}})
    paired = summary(renamed, ExperimentConfig(maxiter=10))["paired"]
    assert (paired["a"], paired["b"], paired["pairs"]) == ("uniform", "susceptible", 12)


def test_the_bootstrap_resamples_images_not_seeds():
    # two images, four seeds each: image 0 always ratio 1, image 1 always ratio 3
    images = np.repeat([0, 1], 4)
    num = np.array([1.0] * 4 + [3.0] * 4)
    den = np.ones(8)
    ratio, low, high = image_bootstrap_ratio(images, num, den, resamples=4000)
    assert ratio == pytest.approx(2.0)
    assert low == pytest.approx(1.0) and high == pytest.approx(3.0)  # whole images drawn
    rows = bootstrap_ratio(num, den, resamples=4000)  # rows as units: far narrower
    assert rows[2] - rows[1] < high - low


def test_exact_mcnemar_counts_images():
    frame = synthetic()
    for image in (0, 1, 2, 3):  # constrained fails on four images in every seed
        frame.loc[(frame["mode"] == "constrained") & (frame["image_index"] == image),
                  "success"] = False
    test = mcnemar_exact(frame, "unconstrained", "constrained")
    assert (test["images_only_a"], test["images_only_b"]) == (4, 1)
    assert test["p"] == pytest.approx(0.375)  # two-sided binomial, 4 of 5


def test_the_paper_accounting_is_recomputed_from_rows():
    frame = synthetic(maxiter=10)
    table = paper_accounting(frame, ExperimentConfig(maxiter=10))
    seed0 = table[table["seed"] == 0].iloc[0]
    # unconstrained: all 6 images, the failure at the iteration limit (10)
    assert seed0["unconstrained_images"] == 6
    assert seed0["unconstrained_mean_itr"] == pytest.approx((4 + 5 + 6 + 7 + 8 + 10) / 6)
    # constrained: its successes only (all 6 here), generations 1..6
    assert seed0["constrained_images"] == 6
    assert seed0["constrained_mean_itr"] == pytest.approx(3.5)
    assert seed0["itr_ratio_paper_style"] == pytest.approx((40 / 6) / 3.5)
    assert seed0["gen_ratio_like_for_like"] == pytest.approx(6.0 / 3.0)
    unconstrained = frame[(frame["seed"] == 0) & (frame["mode"] == "unconstrained")]
    assert seed0["unconstrained_total_s"] == pytest.approx(unconstrained["seconds"].sum())
    assert seed0["unconstrained_mean_s"] == pytest.approx(unconstrained["seconds"].mean())


def test_intervals():
    mean, half = t_interval(np.array([1.0, 2.0, 3.0]))
    assert mean == 2.0 and half == pytest.approx(2.4841, rel=1e-3)
    assert np.isnan(t_interval(np.array([1.0]))[1])
    r, lo, hi = bootstrap_ratio(np.array([2.0, 4.0]), np.array([1.0, 2.0]))
    assert r == lo == hi == pytest.approx(2.0)


def test_report_of_a_real_small_run(tmp_path):
    config = ExperimentConfig(source="sample", images=4, seeds=[0], popsize=12, maxiter=3,
                              n_samples=4, device="cpu", out=str(tmp_path))
    ExperimentRunner(config).run(progress=False)
    write_report(tmp_path)
    for name in ("report.md", "table.csv", "summary.json", "results.csv", "results.parquet",
                 "success_vs_queries.png", "generations_hist.pdf"):
        assert (tmp_path / name).is_file(), name
    parquet = pd.read_parquet(tmp_path / "results.parquet")
    csv = pd.read_csv(tmp_path / "results.csv")
    assert parquet.shape[0] == csv.shape[0] == 8
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    by_key = {(r["seed"], r["mode"], r["image_index"]): r["pixels"] for r in rows}
    for table in (parquet, csv):  # the changed pixels kept whole (an audit found them dropped)
        for _, row in table.iterrows():
            key = (int(row["seed"]), row["mode"], int(row["image_index"]))
            assert json.loads(row["pixels"]) == by_key[key]
    assert any(by_key.values())  # some attack succeeded: a pixel list is compared
    text = (tmp_path / "report.md").read_text()
    assert "Per seed and mode" in text and "The paper's accounting, reproduced" in text
    assert "NaN" not in (tmp_path / "summary.json").read_text()


def test_rows_that_fell_back_to_the_whole_image_are_said_in_the_log_and_the_report():
    from pixelprior.experiment.rows import fallback_notes
    from pixelprior.report import markdown_report

    rows = [{"mode": "constrained", "fell_back": n < 2} for n in range(5)] + [
        {"mode": "unconstrained", "fell_back": False}]
    (line,) = fallback_notes(rows)
    assert line.startswith("note: constrained started from the whole image on 2 of 5 rows")
    frame = synthetic()
    frame["fell_back"] = [mode == "constrained" and index == 0
                          for mode, index in zip(frame["mode"], frame["image_index"],
                                                 strict=True)]
    config = ExperimentConfig(maxiter=10)
    text = markdown_report(frame, config, summary(frame, config))
    fell, total = int(frame["fell_back"].sum()), int((frame["mode"] == "constrained").sum())
    assert f"**constrained started from the whole image on {fell} of {total} rows" in text
    assert "unconstrained started" not in text


def test_every_other_mode_is_compared_with_the_unconstrained_baseline():
    from pixelprior.report import markdown_report

    frame = synthetic()
    control = frame[frame["mode"] == "constrained"].assign(
        mode="random_set", generations=lambda f: f["generations"] + 2,
        budget_generations=lambda f: f["budget_generations"] + 2)
    frame = pd.concat([frame, control], ignore_index=True)
    config = ExperimentConfig(maxiter=10)
    stats = summary(frame, config)
    assert set(stats["paired_vs_a"]) == {"constrained", "random_set"}
    assert stats["paired_vs_a"]["constrained"] == stats["paired"]
    versus = stats["paired_vs_a"]["random_set"]
    assert (versus["a"], versus["b"], versus["pairs"]) == ("unconstrained", "random_set", 12)
    assert versus["mean_generations_both"][1] == pytest.approx(
        stats["paired"]["mean_generations_both"][1] + 2)
    text = markdown_report(frame, config, stats)
    assert text.count("## Paired: unconstrained vs constrained") == 1
    assert "## Paired: unconstrained vs random_set" in text


def test_a_ratio_whose_resamples_can_have_a_zero_denominator_is_unbounded():
    # image 0 has a denominator of 0 (e.g. the oracle start: 0 generations); a resample
    # holding only image 0 has no finite ratio, so the upper end is inf, never num / 1e-12
    images = np.array([0, 0, 1])
    num, den = np.array([3.0, 4.0, 4.0]), np.array([0.0, 0.0, 1.0])
    ratio, low, high = image_bootstrap_ratio(images, num, den, resamples=400)
    assert ratio == 11.0 and np.isfinite(low) and high == np.inf
    from pixelprior.report import _fmt
    assert _fmt(high) == "∞"
    # finite resamples keep NumPy's linear percentiles
    values = np.array([1.0, 2.0, 3.0, np.inf])
    from pixelprior.report import _percentiles
    assert _percentiles(values, (2.5, 50.0)) == [np.percentile(values[:3], 3.75), 2.5]


def test_a_scan_reports_the_positions_it_scanned_not_a_start_set():
    frame = synthetic()
    scan = frame[frame["mode"] == "unconstrained"].assign(
        mode="scan:gradient", support_size=63, positions_scanned=[3, 5] * 6)
    table = per_seed_table(pd.concat([frame, scan], ignore_index=True))
    by_mode = table[table["seed"] == 0].set_index("mode")["mean_start_pixels"]
    assert by_mode["scan:gradient"] == 4.0  # positions scanned, not the map's support
    assert by_mode["constrained"] == 16 and by_mode["unconstrained"] == 64


def test_an_unbounded_confidence_limit_is_inf_in_summary_json_not_null():
    """report.md shows '145.00–∞'; summary.json wrote null, as for a missing value."""
    import math

    from pixelprior.report.tables import _infinities_named
    named = _infinities_named({"ratio": [339.5, 145.0, math.inf], "low": -math.inf,
                               "nan": math.nan, "n": np.float64(math.inf)})
    assert named["ratio"] == [339.5, 145.0, "inf"] and named["low"] == "-inf"
    assert named["n"] == "inf" and math.isnan(named["nan"])  # NaN stays: dumps writes null


def test_the_header_lists_only_the_settings_the_modes_read():
    """A fast-only report listed DE's population and SmoothGrad's samples, which no mode
    used (an audit's case)."""
    from pixelprior.experiment import ExperimentConfig
    from pixelprior.report.tables import _settings_read

    config = ExperimentConfig(device="cpu")
    assert _settings_read(config, ["fast"]) == ["gradient map"]
    assert _settings_read(config, ["unconstrained", "constrained"]) == [
        "DE rand1bin, population 400, at most 100 generations", "τ = 0.5",
        "smoothgrad (n = 50, σ = 0.15)"]


def test_an_export_column_has_one_type_whatever_the_rows_hold(tmp_path):
    """A nullable integer, a boolean with a missing value and a text field keep their
    Parquet types when one run's rows have the value and another's do not (an audit
    found ``target`` written as int64 in one run and double in the next)."""
    import pyarrow.parquet as pq

    from pixelprior.report.tables import exported

    base = {"seed": 0, "mode": "fast", "image_index": 0, "pixels": [], "success": True,
            "queries": 3, "float32_proved": True, "target": 2, "decided_by": "corners"}
    missing = {**base, "float32_proved": None, "target": None, "decided_by": None}
    schemas = []
    for rows in ([base, base], [base, missing], [missing, missing]):
        path = tmp_path / f"{len(schemas)}.parquet"
        exported(pd.DataFrame(rows)).to_parquet(path, index=False)
        schemas.append({f.name: str(f.type) for f in pq.read_schema(path)})
    assert schemas[0] == schemas[1] == schemas[2]
    assert (schemas[0]["target"], schemas[0]["float32_proved"],
            schemas[0]["queries"]) == ("int64", "bool", "int64")
    assert schemas[0]["decided_by"] in ("string", "large_string")


def test_a_value_an_export_type_cannot_hold_keeps_pandas_type():
    """A review: a seed of 2**63 (the config takes any non-negative one) made the Int64
    cast raise, and the report with it."""
    from pixelprior.report.tables import exported

    flat = exported(pd.DataFrame([{"seed": 2**63, "mode": "fast", "image_index": 0,
                                   "pixels": [], "success": True}]))
    assert int(flat["seed"][0]) == 2**63 and str(flat["image_index"].dtype) == "Int64"
