"""Exhaustive scans equal brute force; ranked scans find what the oracle says, first."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import torch
from helpers import dark_images

from pixelprior.data import SusceptibilityMaps, scan_summary
from pixelprior.priors import OraclePrior, UniformPrior, WeightedPrior
from pixelprior.search import RankedScanAttack, SusceptibilityScan, colour_grid


def test_colour_grid():
    assert colour_grid(3).shape == (27, 3) and colour_grid(2).shape == (8, 3)
    assert set(colour_grid(3).unique().tolist()) == {0.0, 0.5, 1.0}
    with pytest.raises(ValueError, match="levels"):
        colour_grid(1)


def test_the_scan_equals_brute_force(tiny_net):
    images = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        labels = tiny_net(images).argmax(1)
    result = SusceptibilityScan(tiny_net, levels=2, max_batch=7)(images, labels)
    for b, y, x in itertools.product(range(2), range(5), range(5)):
        probs = []
        for colour in colour_grid(2):
            image = images[b].clone()
            image[:, y, x] = colour
            with torch.inference_mode():
                probs.append(tiny_net(image[None]).softmax(1)[0])
        probs = torch.stack(probs)
        true = probs[:, labels[b]]
        others = probs.clone()
        others[:, labels[b]] = -1
        margin = true - others.max(1).values
        assert result.min_fitness[b, y, x] == pytest.approx(float(true.min()), abs=1e-6)
        assert result.min_margin[b, y, x] == pytest.approx(float(margin.min()), abs=1e-6)
        assert bool(result.vulnerable[b, y, x]) == bool((probs.argmax(1) != labels[b]).any())
        assert torch.equal(result.best_colour[b, y, x], colour_grid(2)[margin.argmin()])
    assert result.queries.tolist() == [25 * 8, 25 * 8] and result.scanned.all()


def test_one_vulnerable_pixel_is_found_and_found_first_by_the_oracle(bright_model, tmp_path):
    images, labels = dark_images(3), torch.zeros(3, dtype=torch.long)
    scan = SusceptibilityScan(bright_model, levels=3)(images, labels)
    assert scan.vulnerable.flatten(1).sum(1).tolist() == [1, 1, 1]
    assert scan.vulnerable[:, 2, 5].all()  # BrightPixelModel's pixel (x=5, y=2)
    maps = SusceptibilityMaps.from_scan(scan, images, labels, [10, 11, 12], 3)
    maps.save(tmp_path / "maps.npz")
    loaded = SusceptibilityMaps.load(tmp_path)
    assert np.array_equal(loaded.vulnerable, maps.vulnerable) and loaded.levels == 3
    assert [s["vulnerable_positions"] for s in scan_summary(loaded)] == [1, 1, 1]
    oracle = RankedScanAttack(bright_model, OraclePrior(loaded), seed=0).run(images, labels)
    for result in oracle.results:
        assert result.success and (result.pixels[0].x, result.pixels[0].y) == (5, 2)
        assert result.positions_scanned == 1 and result.queries == 27
        assert result.generations is None and "positions_scanned" in result.to_row()
    raster = RankedScanAttack(bright_model, UniformPrior(), tie_break="raster").run(images, labels)
    assert [r.positions_scanned for r in raster.results] == [2 * 8 + 5 + 1] * 3
    assert [r.queries for r in raster.results] == [22 * 27] * 3


def test_random_order_depends_on_seed_and_top_k_limits_the_scan(bright_model):
    images, labels = dark_images(4), torch.zeros(4, dtype=torch.long)
    one = RankedScanAttack(bright_model, UniformPrior(), seed=0).run(images, labels)
    two = RankedScanAttack(bright_model, UniformPrior(), seed=1).run(images, labels)
    assert all(r.success for r in one.results + two.results)
    assert [r.positions_scanned for r in one.results] != [r.positions_scanned
                                                            for r in two.results]
    top = RankedScanAttack(bright_model, UniformPrior(), tie_break="raster",
                           max_positions=10).run(images, labels)
    assert all(not r.success and r.positions_scanned == 10 and r.queries == 270
               for r in top.results)


def test_ranked_by_a_sensitivity_map_and_batched_equals_alone(tiny_net):
    images = torch.rand(3, 3, 6, 6, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        labels = tiny_net(images).argmax(1)
    prior = WeightedPrior(sensitivity="gradient")
    attack = RankedScanAttack(tiny_net, prior, levels=2, seed=3, batch_invariant=True)
    together = attack.run(images, labels).rows()
    for i in range(3):
        alone = attack.run(images[i:i + 1], labels[i:i + 1]).rows()[0]
        strip = lambda row: {k: v for k, v in row.items() if k not in ("seconds", "index")}  # noqa
        assert strip(alone) == strip(together[i])


def test_an_image_missing_from_the_scan_is_a_clear_error(bright_model):
    images, labels = dark_images(1), torch.zeros(1, dtype=torch.long)
    scan = SusceptibilityScan(bright_model)(images, labels)
    maps = SusceptibilityMaps.from_scan(scan, images, labels, [0], 3)
    with pytest.raises(KeyError, match="not in the susceptibility scan"):
        OraclePrior(maps).distribution(None, dark_images(1, seed=9), labels)
    with pytest.raises(FileNotFoundError, match="pixelprior susceptibility"):
        SusceptibilityMaps.load("/nonexistent")


def test_a_scan_file_is_read_once_per_version(bright_model, tmp_path):
    images, labels = dark_images(2), torch.zeros(2, dtype=torch.long)
    maps = SusceptibilityMaps.from_scan(SusceptibilityScan(bright_model)(images, labels),
                                        images, labels, [0, 1], 3)
    maps.save(tmp_path / "maps.npz")
    first = SusceptibilityMaps.load(tmp_path)
    assert SusceptibilityMaps.load(tmp_path / "maps.npz") is first  # the same version
    assert first.oracle_map() is first.oracle_map()  # computed once
    changed = SusceptibilityMaps.from_scan(SusceptibilityScan(bright_model)(images, labels),
                                           images, labels, [7, 8], 3)
    changed.save(tmp_path / "maps.npz")  # a new version (size or time) is read again
    os.utime(tmp_path / "maps.npz", ns=(0, 1))
    assert SusceptibilityMaps.load(tmp_path).image_indices.tolist() == [7, 8]


def test_a_set_prior_is_scanned_set_first_and_a_random_set_is_no_map_order():
    """Scans ranked by the map alone: a random-set control scanned in the map's order, as
    the map prior did. Its set now comes first (each part in the map's order)."""
    from pixelprior.priors import PositionDistribution
    from pixelprior.search.scan import rank_positions, ranking_scores
    sensitivity = torch.linspace(1, 0, 6).reshape(1, 2, 3)  # position 0 highest
    chosen = torch.tensor([[False, False, False], [False, True, True]])  # 4 and 5
    probabilities = chosen.flatten().double()[None] / 2
    distribution = PositionDistribution(probabilities, 2, 3, torch.tensor([False]),
                                        torch.tensor([2]), sensitivity, chosen[None])
    order = rank_positions(ranking_scores(distribution, [0]), None)
    assert order.tolist() == [[4, 5, 0, 1, 2, 3]]
    without_set = PositionDistribution(torch.full((1, 6), 1 / 6, dtype=torch.float64), 2, 3,
                                       torch.tensor([False]), torch.tensor([6]), sensitivity)
    assert rank_positions(ranking_scores(without_set, [0]), None).tolist() == [
        [0, 1, 2, 3, 4, 5]]
