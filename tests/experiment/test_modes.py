"""Modes: names parsed into (search, argument), and attacks built from a config with its
settings, the same way for the runner, the command line and the API."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pixelprior.experiment import ConfigError, ExperimentConfig
from pixelprior.experiment.modes import (
    ADAPTERS,
    DE_MODES,
    SCAN_ORDERS,
    build_attack,
    de_prior,
    map_method,
    mode_prior,
    modes_help,
    parse_mode,
)
from pixelprior.priors import (
    MODE_ALIASES,
    PRIORS,
    RandomSetPrior,
    SusceptibleSetPrior,
    UniformPrior,
    WeightedPrior,
)
from pixelprior.search import (
    SEARCHES,
    FastAttack,
    OnePixelAttack,
    RandomSearchAttack,
    RankedScanAttack,
)


def config(**values) -> ExperimentConfig:
    return ExperimentConfig(device="cpu", **values)


# ------------------------------------------------------------------ names
def test_de_modes_are_the_paper_names_then_every_prior():
    assert DE_MODES[:2] == ("unconstrained", "constrained")
    assert set(DE_MODES) == set(MODE_ALIASES) | set(PRIORS)


@pytest.mark.parametrize("mode", DE_MODES)
def test_every_de_mode_parses_to_de_and_itself(mode):
    assert parse_mode(mode) == ("de", mode)


def test_scan_defaults_to_raster_order():
    assert parse_mode("scan") == ("scan", "raster")


@pytest.mark.parametrize("order", SCAN_ORDERS)
def test_every_scan_order_parses(order):
    assert parse_mode(f"scan:{order}") == ("scan", order)


def test_scan_gradient():
    assert parse_mode("scan:gradient") == ("scan", "gradient")


@pytest.mark.parametrize("mode", ["scan:nope", "scan:", "scan:constrained", "de",
                                  "de:constrained", "nope", "", "Scan", "random_search:raster",
                                  "random_search:nope", "constrained:scan"])
def test_unknown_modes_parse_to_none(mode):
    assert parse_mode(mode) == (None, None)


def test_random_search_defaults_to_the_uniform_prior():
    assert parse_mode("random_search") == ("random_search", "uniform")


@pytest.mark.parametrize("prior", DE_MODES)
def test_random_search_takes_every_prior(prior):
    assert parse_mode(f"random_search:{prior}") == ("random_search", prior)


def test_random_search_constrained():
    assert parse_mode("random_search:constrained") == ("random_search", "constrained")


def test_modes_help_names_every_search_and_every_argument():
    text = modes_help()
    for name in SEARCHES:
        if name == "de":  # differential evolution's modes are the bare prior names
            continue
        assert name in text
        kind = SEARCHES.get(name).argument
        if kind is not None:
            assert f"{name}:ARG" in text
    for mode in DE_MODES:
        assert mode in text
    for order in SCAN_ORDERS:
        assert order in text


def test_every_mode_named_in_the_help_parses():
    text = modes_help()
    first, *others = text.split("; ")
    for mode in first.split(", "):
        assert parse_mode(mode)[0] == "de"
    for part in others:
        name = part.split(" ")[0]
        assert parse_mode(name)[0] == name
        if " with ARG in " in part:
            for argument in part.split(" with ARG in ")[1].split(", "):
                assert parse_mode(f"{name}:{argument}") == (name, argument)


def test_the_config_error_of_an_unknown_mode_carries_the_help():
    problems = config(modes=["scan:nope"]).problems()
    assert problems == [f"unknown mode 'scan:nope'; use one of: {modes_help()}"]


# ------------------------------------------------------------------ attacks
def test_unconstrained_builds_differential_evolution_with_the_config(tiny_net):
    cfg = config(popsize=17, maxiter=6, mutation=[0.5, 1.0], init_color="uniform",
                 strategy="best1bin", recombination=0.7, out_of_bounds="resample",
                 stop_on="best", replace_on_tie=False, max_batch=64, precision="bf16")
    attack = build_attack(cfg, "unconstrained", tiny_net, seed=3)
    assert type(attack) is OnePixelAttack
    assert isinstance(attack.prior, UniformPrior)
    evolution = attack.config
    assert (evolution.popsize, evolution.maxiter, evolution.mutation) == (17, 6, (0.5, 1.0))
    assert (evolution.strategy, evolution.recombination, evolution.out_of_bounds,
            evolution.stop_on, evolution.replace_on_tie) == ("best1bin", 0.7, "resample",
                                                             "best", False)
    assert attack.init_color == "uniform" and attack.seed == 3
    assert attack.max_batch == 64 and attack.precision == "bf16"
    assert attack.batch_invariant is True and attack.targeted is False


def test_constrained_prior_has_the_config_tau_and_map_settings(tiny_net):
    cfg = config(tau=0.3, sensitivity="smoothgrad", n_samples=7, noise_level=0.05)
    attack = build_attack(cfg, "constrained", tiny_net, seed=0)
    assert type(attack) is OnePixelAttack
    assert isinstance(attack.prior, SusceptibleSetPrior)
    assert attack.prior.tau == 0.3
    assert attack.prior.sensitivity == "smoothgrad"
    assert attack.prior.sensitivity_kwargs["n_samples"] == 7
    assert attack.prior.sensitivity_kwargs["noise_level"] == 0.05


def test_random_set_prior_has_the_config_tau(tiny_net):
    prior = de_prior(config(tau=0.2), "random_set")
    assert isinstance(prior, RandomSetPrior) and prior.tau == 0.2


def test_de_prior_gives_options_only_to_priors_that_take_tau():
    prior = de_prior(config(tau=0.2, sensitivity="gradient"), "weighted")
    assert isinstance(prior, WeightedPrior) and not hasattr(prior, "tau")
    assert prior.sensitivity == "gradient"
    assert "n_samples" not in prior.sensitivity_kwargs  # gradient takes no samples


def test_scan_builds_a_raster_scan_with_the_levels(tiny_net):
    attack = build_attack(config(levels=2, scan_positions=9), "scan", tiny_net, seed=1)
    assert type(attack) is RankedScanAttack
    assert attack.tie_break == "raster" and attack.levels == 2
    assert tuple(attack.colors.shape) == (8, 3)
    assert attack.max_positions == 9 and isinstance(attack.prior, UniformPrior)


def test_scan_in_a_map_order_breaks_ties_at_random(tiny_net):
    attack = build_attack(config(levels=4, n_samples=3), "scan:gradient", tiny_net, seed=1)
    assert type(attack) is RankedScanAttack and attack.tie_break == "random"
    assert tuple(attack.colors.shape) == (64, 3) and attack.max_positions is None
    assert isinstance(attack.prior, WeightedPrior) and attack.prior.sensitivity == "gradient"


def test_scan_random_has_no_map(tiny_net):
    attack = build_attack(config(), "scan:random", tiny_net, seed=1)
    assert isinstance(attack.prior, UniformPrior) and attack.tie_break == "random"


def test_random_search_takes_the_query_budget_and_pixels(tiny_net):
    attack = build_attack(config(query_budget=321, pixels=2), "random_search", tiny_net,
                          seed=4)
    assert type(attack) is RandomSearchAttack
    assert attack.budget == 321 and attack.pixel_count == 2 and attack.seed == 4
    assert isinstance(attack.prior, UniformPrior)


def test_random_search_without_a_budget_spends_sparse_rs_ten_thousand(tiny_net):
    assert build_attack(config(), "random_search", tiny_net, seed=0).budget == 10_000


def test_constrained_random_search_prior_has_the_config_tau(tiny_net):
    attack = build_attack(config(tau=0.35, query_budget=10), "random_search:constrained",
                          tiny_net, seed=0)
    assert type(attack) is RandomSearchAttack
    assert isinstance(attack.prior, SusceptibleSetPrior) and attack.prior.tau == 0.35


def test_fast_takes_the_refine_settings_as_its_budget(tiny_net):
    attack = build_attack(config(fast_refine="de", fast_refine_queries=900, scan_positions=7),
                          "fast:smoothgrad", tiny_net, seed=1)
    assert type(attack) is FastAttack
    assert (attack.refine, attack.refine_budget, attack.max_positions) == ("de", 900, 7)
    assert isinstance(attack.prior, WeightedPrior) and attack.prior.sensitivity == "smoothgrad"


def test_every_search_has_one_adapter_and_the_searches_know_no_config():
    assert set(ADAPTERS) == set(SEARCHES)
    for name in SEARCHES:
        cls = SEARCHES.get(name)
        assert not hasattr(cls, "from_settings") and not hasattr(cls, "settings"), name


def test_a_search_without_an_adapter_is_a_clear_error(tiny_net, monkeypatch):
    monkeypatch.delitem(ADAPTERS, "scan")
    with pytest.raises(ValueError, match="search 'scan' has no adapter in "
                                         "pixelprior.experiment.modes.ADAPTERS"):
        build_attack(config(), "scan", tiny_net, seed=0)


def test_build_attack_passes_the_shared_arguments(tiny_net):
    attack = build_attack(config(engine="full"), "scan", tiny_net, seed=2,
                          batch_invariant=False, targeted=True)
    assert attack.engine == "full" and attack.batch_invariant is False
    assert attack.targeted is True


def test_build_attack_refuses_an_unknown_mode_with_the_help(tiny_net):
    with pytest.raises(ValueError, match="unknown mode 'scan:nope'; use one of: "):
        build_attack(config(), "scan:nope", tiny_net, seed=0)


def test_oracle_orders_need_a_scan(tiny_net):
    with pytest.raises(ValueError, match="the oracle order needs a susceptibility scan"):
        build_attack(config(), "scan:oracle", tiny_net, seed=0)


@pytest.mark.parametrize("mode", ["scan:gradient", "random_search:constrained",
                                  "fast:smoothgrad", "fast", "constrained", "random_set"])
def test_saved_maps_folders_name_their_mode_back(mode):
    from pixelprior.experiment.worker import _mode_of_folder, maps_path

    assert _mode_of_folder(maps_path(Path("run"), 0, mode, 0).parent.name) == mode


@pytest.mark.parametrize(("given", "modes", "selection", "unread"), [
    ({"query_budget": 5}, ["fast"], None, ["query_budget"]),
    ({"query_budget": 5}, ["fast", "random_search"], None, []),
    ({"tau": 0.3, "levels": 5}, ["fast"], None, ["tau", "levels"]),
    ({"tau": 0.3}, ["constrained"], None, []),
    ({"tau": 0.3}, ["unconstrained"], None, ["tau"]),
    ({"oracle": "scan"}, ["fast"], None, ["oracle"]),
    ({"oracle": "scan"}, ["unconstrained"], "vulnerable", []),
    ({"oracle": "scan"}, ["scan:oracle"], None, []),
    ({"fast_verify": "on", "verify_boxes": 5}, ["unconstrained"], None,
     ["fast_verify", "verify_boxes"]),
    # the differential evolution's own, set in a config file (an audit: accepted beside
    # fast alone, where the option --popsize was refused)
    ({"popsize": 10, "query_budget": None}, ["fast"], None, ["popsize"]),
    # map settings: read where a prior or an order is a map that takes them (an audit
    # found them accepted by a run of unconstrained DE alone, changing only its hash)
    ({"n_samples": 7, "sensitivity": "gradient", "score": "probability"}, ["unconstrained"],
     None, ["n_samples", "sensitivity", "score"]),
    ({"n_samples": 7, "noise_level": 0.3}, ["constrained"], None, []),
    ({"n_samples": 7, "score": "probability"}, ["scan:gradient"], None, ["n_samples"]),
    ({"noise_level": 0.3}, ["fast"], None, ["noise_level"]),  # its order: the gradient
    ({"noise_level": 0.3}, ["fast:smoothgrad"], None, []),
    ({"sensitivity": "gradient"}, ["scan:random", "oracle"], None, ["sensitivity"]),
])
def test_settings_no_mode_reads_are_named(given, modes, selection, unread):
    from pixelprior.experiment.modes import unread_settings

    assert unread_settings(given, modes, selection) == unread


def test_every_search_says_which_settings_it_reads():
    from pixelprior.experiment.modes import ADAPTERS, SEARCH_FIELDS

    assert set(SEARCH_FIELDS) == set(ADAPTERS) == set(SEARCHES)


@pytest.mark.parametrize(("given", "values", "unread"), [
    ({"percentile": 50}, {"normalization": "minmax"}, ["percentile"]),
    ({"percentile": 50}, {"normalization": "percentile"}, []),
    ({"fast_refine_queries": 99}, {"fast_refine": "none"}, ["fast_refine_queries"]),
    ({"fast_refine_queries": 99}, {"fast_refine": "de"}, []),
    ({"verify_boxes": 5}, {"fast_verify": "off"}, ["verify_boxes"]),
    ({"verify_boxes": 5}, {"fast_verify": "auto"}, []),
    ({"selection_seed": 3}, {"selection": "first_correct"}, ["selection_seed"]),
    ({"selection_seed": 3}, {"selection": "random_correct"}, []),
])
def test_settings_read_only_beside_another_value_are_named(given, values, unread):
    """Each was accepted where the setting it depends on made it unread (an audit)."""
    from pixelprior.experiment.modes import unread_settings

    values = {"normalization": "minmax", "fast_refine": "none", "fast_verify": "auto",
              "selection": "first_correct", **values}
    assert unread_settings(given, ["fast", "constrained"], values["selection"],
                           values=values) == unread



@pytest.mark.parametrize(("mode", "method"), [
    ("constrained", "occlusion"), ("weighted", "occlusion"), ("unconstrained", None),
    ("oracle", None), ("fast", "gradient"), ("fast:random", None),
    ("scan:smoothgrad", "smoothgrad"), ("scan", None), ("random_search", None),
    ("random_search:constrained", "occlusion"), ("nonsense", None)])
def test_map_method_names_the_map_a_mode_reads(mode, method):
    assert map_method(mode, "occlusion") == method


def test_a_new_prior_without_a_map_runs_as_its_class_says():
    """A contributor's audit: a prior registered with ``needs_sensitivity = False`` (one
    class and one registry line, as priors/base.py says) was given the map settings, by
    name checks for "uniform" and "oracle", and failed every run after it started."""
    import torch

    from pixelprior.priors.base import PositionDistribution

    class Centre(UniformPrior):
        name = "centre"

        def __init__(self, sigma: float = 0.25) -> None:
            super().__init__()
            self.sigma = sigma

        def distribution(self, model, images, labels, *, seed=0, keys=None
                         ) -> PositionDistribution:
            return super().distribution(model, images, labels, seed=seed, keys=keys)

    PRIORS.register("centre", Centre, "positions near the centre", options=("sigma",))
    try:
        prior = de_prior(config(), "centre")
        assert isinstance(prior, Centre) and map_method("centre", "smoothgrad") is None
        assert prior.distribution(None, torch.rand(1, 3, 4, 4), torch.tensor([0])) is not None
    finally:
        del PRIORS._entries["centre"]


def test_a_maps_and_a_priors_own_options_reach_a_run(tmp_path):
    """A contributor's audit: ``steps`` (integrated gradients) or ``k`` (topk) could not
    be set in a run; they are ``[map_options]`` and ``[prior_options]`` tables now."""
    file = tmp_path / "c.toml"
    file.write_text('modes = ["topk", "scan:integrated_gradients"]\n'
                    "[map_options]\nsteps = 8\n[prior_options]\nk = 5\n")
    built = ExperimentConfig.build(file)
    assert built.map_options == {"steps": 8} and built.prior_options == {"k": 5}
    assert de_prior(built, "topk").config()["k"] == 5
    order = mode_prior(built, "scan", "integrated_gradients")
    assert order.config()["sensitivity"]["steps"] == 8
    plain = ExperimentConfig.build(overrides={"modes": built.modes})
    assert built.digest() != plain.digest()  # a run of other settings: another folder
    assert "map_options" not in plain.result_fields()  # earlier folders keep their hash


@pytest.mark.parametrize(("options", "message"), [
    ({"map_options": {"steps": 0}}, "map_options.steps = 0: integrated_gradients refuses"),
    ({"map_options": {"layer": 3}, "modes": ["scan:gradcam"]},
     "gradcam refuses it (GradCAM's layer is one of the model's modules or its name"),
    ({"map_options": {"layer": "features.3"}}, "read by gradcam, which no mode of this run"),
    ({"map_options": {"n_samples": 3}}, "set it as `n_samples`, its own setting"),
    ({"map_options": {"stpes": 8}}, "no map takes 'stpes'; the map options are baseline"),
    ({"map_options": {"steps": 8}, "modes": ["constrained"]},
     "read by integrated_gradients, which no mode of this run uses"),
    ({"prior_options": {"k": 5}, "modes": ["constrained"]}, "read by topk, which no mode"),
    ({"prior_options": {"tau": 0.3}}, "set it as `tau`"),
    ({"map_options": 3}, "map_options must be a table of names and values"),
])
def test_map_and_prior_options_a_run_cannot_use_are_refused(options, message):
    overrides = {"modes": ["scan:integrated_gradients"], **options}
    with pytest.raises(ConfigError, match=re.escape(message)):
        ExperimentConfig.build(overrides=overrides)


def test_map_options_are_checked_by_the_maps_the_run_makes():
    """A review: ``steps = 8.5`` passed and failed mid-run; a baseline valid for
    integrated gradients was refused by occlusion, which the run does not make."""
    with pytest.raises(ConfigError, match="steps must be an integer >= 1, got 8.5"):
        ExperimentConfig.build(overrides={"modes": ["scan:integrated_gradients"],
                                          "map_options": {"steps": 8.5}})
    built = ExperimentConfig.build(overrides={"modes": ["scan:integrated_gradients"],
                                              "map_options": {"baseline": 0.5}})
    assert built.map_options == {"baseline": 0.5}
