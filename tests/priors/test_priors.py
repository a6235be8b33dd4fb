"""Priors over positions: sets, fallback, sizes, sampling."""

from __future__ import annotations

import pytest
import torch

from pixelprior.maps import SmoothGrad
from pixelprior.priors import (
    RandomSetPrior,
    SusceptibleSetPrior,
    TopKPrior,
    UniformPrior,
    WeightedPrior,
    make_prior,
)


def maps():
    m = torch.zeros(2, 4, 4)
    m[0, 1, 2] = 1.0
    m[0, 3, 0] = 0.7
    m[0, 0, 0] = 0.5  # not > τ = 0.5
    return m  # image 1 has no signal at all


def test_susceptible_set_and_fallback():
    dist = SusceptibleSetPrior(0.5).from_sensitivity(maps(), 4, 4)
    assert dist.support_size.tolist() == [2, 16]
    assert dist.fell_back.tolist() == [False, True]
    probs = dist.probabilities[0].view(4, 4)
    assert probs[1, 2] == probs[3, 0] == 0.5 and probs.sum() == 1
    positions = dist.sample(0, 200, torch.Generator().manual_seed(0))
    assert {tuple(p) for p in positions.tolist()} == {(2, 1), (0, 3)}  # (x, y)


@pytest.mark.parametrize("tau", [0.0, 1.0, -0.1, 1.5])
def test_tau_must_be_inside_unit_interval(tau):
    with pytest.raises(ValueError, match="tau must lie in"):
        SusceptibleSetPrior(tau)


def test_uniform_prior_covers_image():
    dist = UniformPrior().distribution(None, torch.rand(3, 3, 5, 7), torch.zeros(3).long())
    assert dist.probabilities.shape == (3, 35)
    assert torch.allclose(dist.probabilities, torch.full((3, 35), 1 / 35, dtype=torch.float64))
    assert not dist.fell_back.any()


def test_weighted_topk_and_random_set():
    weighted = WeightedPrior().from_sensitivity(maps(), 4, 4)
    assert weighted.probabilities[0].view(4, 4)[1, 2] == pytest.approx(1.0 / 2.2)
    assert weighted.fell_back.tolist() == [False, True]
    topk = TopKPrior(k=1).from_sensitivity(maps(), 4, 4)
    assert topk.support_size.tolist() == [1, 16]  # a constant map ranks nothing: it falls
    assert topk.fell_back.tolist() == [False, True]  # back, said (an audit found it silent)
    control = RandomSetPrior(0.5).from_sensitivity(maps(), 4, 4, seed=3)
    assert control.support_size.tolist() == [2, 16]  # same size as S; empty S falls back


def test_the_random_set_is_fresh_per_image_and_seed():
    same = torch.zeros(3, 16, 16)
    same[:, 4:8, 4:8] = 1.0  # three images with identical maps: |S| = 16 each
    prior = RandomSetPrior(0.5)
    sets = prior.from_sensitivity(same, 16, 16, seed=0, keys=[1, 2, 3]).susceptible
    assert sets.flatten(1).sum(1).tolist() == [16, 16, 16]
    assert not torch.equal(sets[0], sets[1]) and not torch.equal(sets[1], sets[2])
    again = prior.from_sensitivity(same, 16, 16, seed=0, keys=[1, 2, 3]).susceptible
    assert torch.equal(sets, again)  # a function of (seed, image), nothing else
    other_seed = prior.from_sensitivity(same, 16, 16, seed=1, keys=[1, 2, 3]).susceptible
    assert not torch.equal(sets[0], other_seed[0])


def test_make_prior_aliases():
    assert isinstance(make_prior("unconstrained"), UniformPrior)
    assert make_prior("constrained", tau=0.3).tau == 0.3
    with pytest.raises(ValueError, match="unknown prior"):
        make_prior("psychic")


def test_prior_computes_sensitivity_with_model(tiny_net):
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    dist = SusceptibleSetPrior(0.5, n_samples=4).distribution(tiny_net, images,
                                                             torch.tensor([0, 1]))
    assert dist.sensitivity.shape == (2, 8, 8)
    assert (dist.support_size == dist.susceptible.flatten(1).sum(1)).all()
    assert SusceptibleSetPrior(0.5).config()["sensitivity"]["method"] == "smoothgrad"


# ------------------------------------------------------------------ options
def test_a_map_option_the_method_does_not_take_is_refused_when_the_prior_is_built():
    with pytest.raises(TypeError, match=r"SusceptibleSetPrior\(\) got an unknown option "
                                        "'n_sample'; sensitivity method 'smoothgrad' takes: "
                                        ".*n_samples"):
        SusceptibleSetPrior(0.5, n_sample=3)
    with pytest.raises(TypeError, match=r"WeightedPrior\(\) got an unknown option 'tau'"):
        WeightedPrior(tau=0.5)
    with pytest.raises(TypeError, match="unknown option 'n_samples'; sensitivity method "
                                        "'gradient' takes"):
        TopKPrior(k=5, sensitivity="gradient", n_samples=4)
    with pytest.raises(ValueError, match="unknown sensitivity method 'smothgrad'"):
        WeightedPrior(sensitivity="smothgrad")


def test_options_given_with_a_method_instance_are_refused(tiny_net):
    with pytest.raises(TypeError, match=r"options \['n_samples'\] with a SmoothGrad instance;"
                                        " set them on the instance"):
        SusceptibleSetPrior(0.5, sensitivity=SmoothGrad(tiny_net), n_samples=3)
    with pytest.raises(TypeError, match="sensitivity must be a method name or a "
                                        "SensitivityMethod, got int"):
        WeightedPrior(sensitivity=3)


@pytest.mark.parametrize(("name", "options", "message"), [
    ("uniform", {"tau": 0.3}, "prior 'uniform' got an unknown option 'tau'; it takes: no "
                              "options"),
    ("unconstrained", {"k": 3}, "prior 'unconstrained' got an unknown option 'k'"),
    ("oracle", {"scan": "x", "tau": 0.3}, "prior 'oracle' got an unknown option 'tau'; it "
                                          "takes: scan"),
    ("weighted", {"sensitivity": "gradient", "n_samples": 3}, "unknown option 'n_samples'"),
    ("constrained", {"tau": 0.3, "k": 3}, "unknown option 'k'"),
])
def test_make_prior_refuses_options_the_prior_does_not_take(name, options, message):
    with pytest.raises(TypeError, match=message):
        make_prior(name, **options)


def test_a_prior_checks_its_map_model(tiny_net):
    other = type(tiny_net)(seed=1).eval()
    SusceptibleSetPrior(0.5, sensitivity=SmoothGrad(tiny_net)).check_model(tiny_net)
    SusceptibleSetPrior(0.5, sensitivity=SmoothGrad()).check_model(tiny_net)
    with pytest.raises(ValueError, match="built on another model"):
        SusceptibleSetPrior(0.5, sensitivity=SmoothGrad(other)).check_model(tiny_net)
