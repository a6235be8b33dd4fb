"""Map evaluation: metrics with known answers on synthetic maps; the whole command."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixelprior import SusceptibilityMaps, SusceptibilityScan
from pixelprior.report import roc_auc, roc_curve
from pixelprior.report.mapeval import evaluate_maps, image_metrics, summarise


def test_roc_auc_known_values():
    truth = np.array([1, 1, 0, 0, 0], dtype=bool)
    assert roc_auc(np.array([0.9, 0.8, 0.3, 0.2, 0.1]), truth) == 1.0
    assert roc_auc(np.array([0.1, 0.2, 0.3, 0.8, 0.9]), truth) == 0.0
    assert roc_auc(np.ones(5), truth) == 0.5  # all tied: half credit
    # one positive above both negatives... pairs: (0.9 > all 3), (0.2 > 0.1 only) = 4/6
    assert roc_auc(np.array([0.9, 0.2, 0.3, 0.25, 0.1]), truth) == pytest.approx(4 / 6)
    assert np.isnan(roc_auc(np.ones(3), np.zeros(3, dtype=bool)))


def test_random_maps_average_to_chance_and_curves_are_monotone():
    rng = np.random.default_rng(0)
    truth = rng.random((300, 64)) < 0.1
    aucs = [roc_auc(rng.random(64), t) for t in truth if t.any()]
    assert abs(np.mean(aucs) - 0.5) < 0.03
    grid = np.linspace(0, 1, 11)
    curve = roc_curve(rng.random(64), truth[0], grid)
    assert curve[0] >= 0 and curve[-1] == 1 and (np.diff(curve) >= 0).all()


def test_metrics_of_a_map_with_known_precision_lift_and_rank():
    vulnerable = np.zeros((4, 4), dtype=bool)
    vulnerable[0, :2] = True  # 2 of 16: base rate 1/8
    smap = np.zeros((4, 4))
    smap[0, 1] = 1.0  # the best position is vulnerable
    smap[3, 3] = 0.9  # the second is not
    smap[0, 0] = 0.4
    m = image_metrics(smap, vulnerable, smap, tau=0.5, top_k=(1, 2), colours=27,
                      generator=torch.Generator().manual_seed(0))
    assert m.set_size == 2 and m.precision_at_tau == 0.5 and m.base_rate == 1 / 8
    assert m.lift == {1: 8.0, 2: 4.0}
    assert m.first_rank == 0 and m.queries_to_first == 27
    assert m.auc == pytest.approx((14 + 13) / 28)  # 0.4 beats 13 of 14 negatives
    assert m.spearman == pytest.approx(1.0)


def test_the_oracle_ranks_first_and_the_summary_counts_images(bright_model):
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.3
    images[2, :, 2, 5] = 0.0
    labels = torch.zeros(3, dtype=torch.long)
    result = SusceptibilityScan(bright_model, levels=2)(images, labels)
    scan = SusceptibilityMaps.from_scan(result, images, labels, [0, 1, 2], 2)
    flat = np.random.default_rng(1).random((3, 8, 8)).astype(np.float32)
    rows = evaluate_maps(scan, {"oracle": scan.oracle_map(), "flat": flat}, top_k=(1,))
    oracle = [r for r in rows if r["method"] == "oracle"]
    assert all(r["auc"] == 1.0 and r["queries_to_first"] == 8 for r in oracle)
    summary = {s["method"]: s for s in summarise(rows, (1,))}
    assert summary["oracle"]["images_with_vulnerable"] == 3
    assert summary["oracle"]["lift_top1"] == pytest.approx(64.0)
    assert summary["flat"]["mean_queries_to_first"] >= 8


class RegionModel(torch.nn.Module):
    """Class 1 when some pixel of a 3×3 region is red enough (R − G > 0.8): nine
    vulnerable positions, smooth enough for gradients."""

    def forward(self, x):
        region = (x[:, 0, 1:4, 2:5] - x[:, 1, 1:4, 2:5]).flatten(1)
        score = torch.logsumexp(region * 20, 1) / 20
        return torch.stack([torch.zeros_like(score), 10 * (score - 0.8)], 1)


def test_scan_costs_equal_what_ranked_scan_attacks_spend():
    """queries_to_first from the scan equals a RankedScanAttack's queries, map by map."""
    from pixelprior.report.mapeval import method_maps
    from pixelprior.search import RankedScanAttack, ranked_prior

    tiny_net = RegionModel().eval()
    images = torch.rand(4, 3, 6, 6, generator=torch.Generator().manual_seed(3)) * 0.5
    labels = torch.zeros(4, dtype=torch.long)
    result = SusceptibilityScan(tiny_net, levels=2, batch_invariant=True)(images, labels)
    scan = SusceptibilityMaps.from_scan(result, images, labels, [0, 1, 2, 3], 2)
    assert scan.vulnerable.any()
    rows = list(range(4))
    maps = {m: method_maps(m, tiny_net, images, labels, scan, rows, {})
            for m in ("gradient", "random", "oracle")}
    metrics = evaluate_maps(scan, maps, seed=7, images=images)
    for method in maps:
        prior = ranked_prior(method, {}, scan)
        attack = RankedScanAttack(tiny_net, prior, levels=2, seed=7, batch_invariant=True)
        out = attack.run(images, labels)
        expected = [r["queries_to_first"] for r in metrics if r["method"] == method]
        assert [r.queries for r in out.results] == expected, method
        assert [r.success for r in out.results] == scan.vulnerable.reshape(4, -1).any(
            1).tolist()


def test_undecided_positions_are_left_out_of_the_metrics_and_walked_by_the_scan():
    vulnerable = np.zeros((4, 4), dtype=bool)
    vulnerable[0, :2] = True
    decided = np.ones((4, 4), dtype=bool)
    decided[3, :] = False  # 4 positions the verifier left undecided
    smap = np.random.default_rng(0).random((4, 4))
    smap[3, :] = 2.0  # the map ranks the undecided positions first
    smap[0, 0] = 1.5
    m = image_metrics(smap, vulnerable, smap, tau=0.5, top_k=(1,), colours=1,
                      generator=torch.Generator().manual_seed(0), decided=decided)
    known = decided.ravel()
    assert m.auc == roc_auc(smap.ravel()[known], vulnerable.ravel()[known])
    assert m.base_rate == 2 / 12 and m.lift == {1: 6.0}  # the best decided one is vulnerable
    assert m.set_size == int((smap.ravel()[known] > 0.5).sum())
    assert m.first_rank == 4 and m.queries_to_first == 5  # the scan walks the undecided 4


def test_maps_are_scored_against_exact_verdicts_without_their_unknowns():
    status = np.array([[[1, 0], [2, 0]], [[0, 0], [0, 1]]])
    truth = SusceptibilityMaps(
        np.array(["a" * 16, "b" * 16]), np.array([3, 4]), np.array([0, 1]),
        np.full((2, 2, 2), np.nan, np.float32),
        np.select([status == 1, status == 2], [-1.0, 0.0], 1.0).astype(np.float32),
        status == 1, np.zeros((2, 2, 2, 3), np.float32), 0, unknown=status == 2)
    assert truth.exact and truth.colours == 1
    smap = np.array([[[0.9, 0.1], [1.0, 0.2]], [[0.3, 0.1], [0.2, 0.8]]], np.float32)
    rows = evaluate_maps(truth, {"m": smap}, top_k=(1,))
    assert [r["unknown_positions"] for r in rows] == [1, 0]
    assert [r["auc"] for r in rows] == [1.0, 1.0]  # the unknown position ranked first is out
    assert [r["queries_to_first"] for r in rows] == [2, 1]
    assert truth.oracle_map()[0].tolist() == [[1.0, 0.0], [0.5, 0.0]]
    with pytest.raises(ValueError, match="verification folder"):
        truth.save("never.npz")


def test_a_top_k_of_every_position_is_refused_and_the_default_fits_the_image():
    """An audit: --top-k 5000 on 1,024 positions gave a lift of 1.00 whatever the map."""
    from pixelprior.report.mapeval import lift_ks

    images = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    labels = torch.zeros(2, dtype=torch.long)
    result = SusceptibilityScan(RegionModel().eval(), levels=2)(images, labels)
    scan = SusceptibilityMaps.from_scan(result, images, labels, [0, 1], 2)
    assert lift_ks(None, scan) == (10,)  # 36 positions: the defaults below them
    assert lift_ks((5, 20), scan) == (5, 20)
    with pytest.raises(ValueError, match="k below the 36 positions"):
        lift_ks((10, 36), scan)


def fake_scan(vulnerable: np.ndarray, margins: np.ndarray) -> SusceptibilityMaps:
    count = len(margins)
    return SusceptibilityMaps(
        image_keys=np.array([str(i) for i in range(count)]), image_indices=np.arange(count),
        labels=np.zeros(count, dtype=np.int64), min_true_probability=np.zeros_like(margins),
        min_margin=margins, vulnerable=vulnerable,
        best_colour=np.zeros((*margins.shape, 3), dtype=np.float32), levels=2)


def test_the_summary_says_over_how_many_images_the_auc_is_defined():
    """An image whose every position is vulnerable has no AUC (nothing robust to rank
    below); the mean is over the others, and the summary and the table say so."""
    from pixelprior.report.mapeval import markdown

    vulnerable = np.zeros((2, 2, 2), dtype=bool)
    vulnerable[0] = True  # every position of image 0
    vulnerable[1, 0, 0] = True
    margins = np.where(vulnerable, -1.0, 1.0).astype(np.float32)
    margins[1, 1, 1] = 2.0
    scan = fake_scan(vulnerable, margins)
    rows = evaluate_maps(scan, {"oracle": scan.oracle_map()}, top_k=(1,))
    (summary,) = summarise(rows, (1,))
    assert summary["images_with_vulnerable"] == 2 and summary["auc_images"] == 1
    assert summary["auc_mean"] == 1.0
    text = markdown([summary], scan, 0.5, (1,), {})
    assert "over fewer than the 2 images for oracle 1" in text


def test_the_oracle_map_ranks_every_vulnerable_position_above_every_robust_one():
    """Margins ±1e-8 beside ±1 round to the same float32 value once normalised; the
    vulnerable one is lifted a step above."""
    margins = np.array([[[1.0, -1e-8], [1e-8, -1.0]]], dtype=np.float32)
    scan = fake_scan(margins < 0, margins)
    oracle = scan.oracle_map()[0]
    assert oracle[0, 1] > oracle[1, 0] > oracle[0, 0]
    (row,) = evaluate_maps(scan, {"oracle": scan.oracle_map()}, top_k=(1,))
    assert row["auc"] == 1.0
    top = np.array([[[-1e-9, 1e-9], [0.5, 0.3]]], dtype=np.float32)  # ties at the top
    oracle = fake_scan(top < 0, top).oracle_map()[0]
    assert oracle.max() == 1.0 and oracle[0, 0] > oracle[0, 1] > oracle[1, 1]  # in [0, 1]
