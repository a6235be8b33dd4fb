"""One way to build and call every attack: ``Cls(model, prior=None, *, option=...)``, the
signatures of 0.2 kept one release with a deprecation, unknown options refused, each
search's steps record declared, and bad input refused in one line before any work."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from pixelprior.maps import SmoothGrad, VanillaGradient
from pixelprior.priors import SusceptibleSetPrior, UniformPrior, WeightedPrior
from pixelprior.search import (
    SEARCHES,
    STEP_KINDS,
    Attack,
    FastAttack,
    OnePixelAttack,
    RandomSearchAttack,
    RankedScanAttack,
    SearchOutcome,
    SusceptibilityScan,
)

ATTACKS = [OnePixelAttack, RankedScanAttack, RandomSearchAttack, FastAttack]
# small budgets, so every attack runs in a moment on the tiny models
SMALL = {OnePixelAttack: {"popsize": 8, "maxiter": 1}, RankedScanAttack: {"levels": 2},
         RandomSearchAttack: {"budget": 5}, FastAttack: {}}


def dark(count: int = 2, size: int = 8) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(0)) * 0.3


# ------------------------------------------------------------------ one signature
@pytest.mark.parametrize("cls", ATTACKS)
def test_every_attack_takes_model_and_prior_by_position_and_the_rest_by_keyword(cls):
    parameters = list(inspect.signature(cls).parameters.values())
    assert [p.name for p in parameters[:2]] == ["model", "prior"]
    assert parameters[1].default is None
    assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in parameters[2:])


def test_the_shared_options_are_those_of_the_attack_base():
    parameters = inspect.signature(Attack.__init__).parameters.values()
    assert Attack.shared_options == tuple(p.name for p in parameters
                                          if p.kind is p.KEYWORD_ONLY)


@pytest.mark.parametrize("cls", ATTACKS)
def test_every_attack_takes_the_shared_options(cls, bright_model):
    attack = cls(bright_model, None, seed=3, targeted=True, engine="full", max_batch=16,
                 batch_invariant=True, optimize=False, precision="fp32", cuda_graphs=False,
                 pixel_count=1, **SMALL[cls])
    assert (attack.seed, attack.targeted, attack.engine, attack.max_batch,
            attack.batch_invariant, attack.optimize, attack.pixel_count) == (
        3, True, "full", 16, True, False, 1)


@pytest.mark.parametrize("cls", ATTACKS)
def test_an_unknown_option_is_refused_naming_it_and_the_accepted_ones(cls, bright_model):
    with pytest.raises(TypeError, match=rf"{cls.__name__}\(\) got an unknown option "
                                        r"'popsise'; it takes: .*engine.*seed"):
        cls(bright_model, popsise=10)


@pytest.mark.parametrize("cls", ATTACKS)
def test_more_positional_arguments_than_the_old_signature_are_refused(cls, bright_model):
    with pytest.raises(TypeError, match="takes model and prior by position"):
        cls(bright_model, None, *range(30))


# ------------------------------------------------------------------ deprecations
def test_old_positional_arguments_of_differential_evolution_still_work(bright_model):
    with pytest.warns(DeprecationWarning, match=r"OnePixelAttack\(\): passing popsize, "
                                                r"maxiter by position is deprecated"):
        attack = OnePixelAttack(bright_model, UniformPrior(), 12, 3)
    assert (attack.config.popsize, attack.config.maxiter) == (12, 3)
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="'popsize' both"):
        OnePixelAttack(bright_model, None, 12, popsize=8)


def test_old_positional_pixels_is_the_pixel_count(bright_model):
    with pytest.warns(DeprecationWarning) as caught:
        attack = OnePixelAttack(bright_model, None, 8, 1, 0.5, 3)
    assert attack.pixel_count == 3
    assert any("pixels=...) is deprecated" in str(w.message) for w in caught)


def test_old_positional_levels_and_tie_break_of_the_ranked_scan(bright_model):
    with pytest.warns(DeprecationWarning, match="passing levels, tie_break by position"):
        attack = RankedScanAttack(bright_model, UniformPrior(), 2, "raster")
    assert attack.levels == 2 and attack.tie_break == "raster"


@pytest.mark.parametrize("cls", [OnePixelAttack, RandomSearchAttack])
def test_the_pixels_keyword_and_attribute_are_the_pixel_count(cls, bright_model):
    with pytest.warns(DeprecationWarning, match=r"\(pixels=...\) is deprecated.*pixel_count"):
        attack = cls(bright_model, pixels=2, engine="full", **SMALL[cls])
    assert attack.pixel_count == 2
    with pytest.warns(DeprecationWarning, match=rf"{cls.__name__}.pixels is deprecated"):
        assert attack.pixels == 2


def test_the_old_colours_attribute_of_the_ranked_scan(bright_model):
    attack = RankedScanAttack(bright_model, levels=2)
    with pytest.warns(DeprecationWarning, match="colours is deprecated"):
        assert attack.colours is attack.colors


def test_a_subclass_passing_pixels_to_the_base_is_warned(bright_model):
    class Mine(Attack):
        def __init__(self, model):
            super().__init__(model, pixels=2)

        def _search(self, images, labels, targets, distribution, rows, generators):
            raise NotImplementedError

    with pytest.warns(DeprecationWarning, match=r"Mine\(pixels=...\)"):
        assert Mine(bright_model).pixel_count == 2


# ------------------------------------------------------------------ steps records
@pytest.mark.parametrize("name", list(SEARCHES))
def test_every_search_declares_its_steps_record(name):
    cls = SEARCHES.get(name)
    assert cls.step_fields and all(k.removesuffix("?") in STEP_KINDS
                                   for k in cls.step_fields.values())
    assert cls.step_names == tuple(cls.step_fields)


def test_the_fast_steps_record():
    assert FastAttack.step_fields == {"positions_scanned": "int", "refine_queries": "int",
                                      "corner_certified": "bool", "decided_by": "str?",
                                      "verified": "bool", "verified_volume": "number?",
                                      "lowest_bound": "number?", "boxes": "int",
                                      "float32_proved": "bool?", "verifier": "int?"}


def test_a_steps_record_of_an_unknown_kind_is_refused_at_class_definition():
    with pytest.raises(TypeError, match=r"Bad.step_fields\['n'\] is 'integer'"):
        class Bad(Attack):  # noqa: F841
            step_fields = {"n": "integer"}


@pytest.mark.parametrize("cls", ATTACKS)
def test_rows_carry_the_declared_steps_with_their_kinds(cls, bright_model):
    images = dark(2)
    images[1, :, 2, 5] = 1.0  # already fooled: the record of an image not searched
    out = cls(bright_model, engine="full", **SMALL[cls]).run(
        images, torch.zeros(2, dtype=torch.long))
    for row in out.rows():
        for name, kind in cls.step_fields.items():
            value = row[name]
            if value is None:
                assert kind.endswith("?"), (name, row)
                continue
            expected = {"int": int, "number": (int, float), "bool": bool, "str": str}
            assert isinstance(value, expected[kind.removesuffix("?")]), (name, value)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("cls", ATTACKS)
def test_a_target_equal_to_the_true_label_is_refused(cls, bright_model):
    attack = cls(bright_model, targeted=True, engine="full", **SMALL[cls])
    with pytest.raises(ValueError, match=r"the target is the true class of image\(s\) \[1\]"):
        attack(dark(2), torch.tensor([0, 1]), torch.tensor([1, 1]))
    assert attack.queries == 0


@pytest.mark.parametrize("cls", ATTACKS)
def test_targets_of_the_wrong_shape_are_refused(cls, bright_model):
    with pytest.raises(ValueError, match=r"targets must have shape \[2\]"):
        cls(bright_model, targeted=True, **SMALL[cls])(dark(2), torch.zeros(2).long(),
                                                        torch.ones(3).long())


@pytest.mark.parametrize("cls", ATTACKS)
def test_an_empty_batch_gives_an_empty_output(cls, bright_model):
    images = dark(2)
    attack = cls(bright_model, **SMALL[cls])
    out = attack.run(images[:0], torch.zeros(0, dtype=torch.long))
    assert out.results == [] and out.rows() == [] and out.success.shape == (0,)
    assert out.adversarial.shape == (0, 3, 8, 8)
    assert out.distribution.probabilities.shape == (0, 64)
    assert attack(images[:0], torch.zeros(0, dtype=torch.long)).shape == (0, 3, 8, 8)
    assert attack.queries == 0
    with pytest.raises(ValueError, match=r"labels must have shape \[0\]"):
        attack(images[:0], torch.zeros(1, dtype=torch.long))


@pytest.mark.parametrize("cls", ATTACKS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_images_that_are_not_float32_are_refused_in_one_line(cls, dtype, bright_model):
    with pytest.raises(TypeError, match=rf"images must be float32, got {dtype}; convert "
                                        r"them with images.float\(\)"):
        cls(bright_model, **SMALL[cls])(dark(2).to(dtype), torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("cls", [FastAttack, OnePixelAttack])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_half_precision_model_is_named_not_the_images_layout(cls, dtype, tiny_net):
    """A model in float16 fails on float32 images; the message used to ask whether the
    images were channels first."""
    with pytest.raises(ValueError, match=rf"parameters are {str(dtype)[6:]} and the images "
                                         r"float32: convert the model with model.float"):
        cls(tiny_net.to(dtype), **SMALL[cls])(dark(2), torch.zeros(2, dtype=torch.long))


def test_the_exhaustive_scan_refuses_float64_and_scans_an_empty_batch(bright_model):
    with pytest.raises(TypeError, match="images must be float32, got torch.float64"):
        SusceptibilityScan(bright_model, levels=2)(dark(1).double(), torch.zeros(1).long())
    empty = SusceptibilityScan(bright_model, levels=2)(dark(1)[:0], torch.zeros(0).long())
    assert empty.vulnerable.shape == (0, 8, 8) and empty.queries.shape == (0,)


def test_the_exhaustive_scan_runs_in_eval_mode(bright_model):
    seen = []

    class Recorder(nn.Module):
        def forward(self, x):
            seen.append(self.training)
            return bright_model(x)

    model = Recorder().train()
    SusceptibilityScan(model, levels=2, engine="full")(dark(1), torch.zeros(1).long())
    assert seen and not any(seen) and model.training


# ------------------------------------------------------------------ maps and their model
def test_a_map_built_on_another_model_is_refused_before_any_work(tiny_net):
    other = type(tiny_net)(seed=1).eval()
    prior = SusceptibleSetPrior(0.5, sensitivity=SmoothGrad(other, n_samples=2))
    with pytest.raises(ValueError, match="the SmoothGrad map was built on another model"):
        OnePixelAttack(tiny_net, prior, popsize=8, maxiter=1)


def test_a_map_built_without_a_model_is_bound_to_the_attacked_model(tiny_net):
    images, labels = dark(2, 10), torch.tensor([0, 1])
    method = VanillaGradient()
    unbound = FastAttack(tiny_net, WeightedPrior(sensitivity=method), engine="full")
    named = FastAttack(tiny_net, WeightedPrior(sensitivity="gradient"), engine="full")
    own = FastAttack(tiny_net, WeightedPrior(sensitivity=VanillaGradient(tiny_net)),
                     engine="full")
    maps = [a.run(images, labels).distribution.sensitivity for a in (unbound, named, own)]
    assert torch.equal(maps[0], maps[1]) and torch.equal(maps[0], maps[2])
    assert method.model is None  # the instance given is left as it was


def test_the_outcome_of_a_search_is_public():
    outcome = SearchOutcome(torch.zeros(1, 5), torch.zeros(1, dtype=torch.long))
    assert outcome.steps == {}


@pytest.mark.parametrize(("build", "error", "message"), [
    (lambda: SmoothGrad(n_samples=2.5), TypeError, "n_samples must be an integer"),
    (lambda: SmoothGrad(batch_size=0), ValueError, "batch_size must be >= 1"),
    (lambda: OnePixelAttack(nn.Identity(), mutation=True), TypeError, r"mutation \(F\) must be a "
                                                             "number"),
    (lambda: OnePixelAttack(nn.Identity(), replace_on_tie="no"), TypeError,
     "replace_on_tie must be True or False"),
])
def test_options_of_the_wrong_type_are_refused_where_given(build, error, message):
    """Each was accepted: some failed at first use in torch's words, some were coerced
    (True as F = 1, 'no' as True)."""
    with pytest.raises(error, match=message):
        build()


def test_a_topk_of_a_fractional_k_is_refused_not_truncated():
    from pixelprior.priors import TopKPrior
    with pytest.raises(TypeError, match="k must be an integer, got 2.7"):
        TopKPrior(k=2.7)
    import numpy as np
    assert TopKPrior(k=np.int64(3)).k == 3


def test_keys_must_be_one_per_image(bright_model):
    attack = RankedScanAttack(bright_model, levels=2)
    for keys in ([1], [1, 2, 3]):
        with pytest.raises(ValueError, match=r"keys must hold one key per image \(2\)"):
            attack.run(dark(2), torch.zeros(2, dtype=torch.long), keys=keys)


# ------------------------------------------------------------------ an audit's findings
def test_a_prior_may_be_given_by_name(bright_model):
    attack = OnePixelAttack(bright_model, "uniform", popsize=8, maxiter=1)
    assert isinstance(attack.prior, UniformPrior)
    with pytest.raises(ValueError, match="unknown prior 'nonsense'"):
        OnePixelAttack(bright_model, "nonsense")


def test_a_model_that_is_not_a_module_is_refused_in_one_line(bright_model):
    from pixelprior import Verifier

    def plain(x):
        return bright_model(x)

    for make in (lambda: OnePixelAttack(plain), lambda: SusceptibilityScan(plain),
                 lambda: Verifier(plain)):
        with pytest.raises(TypeError, match="takes an nn.Module .* got function"):
            make()


def test_a_model_returning_a_tuple_is_refused_in_one_line(bright_model):
    from pixelprior.scoring import ModelOutputError

    class Pair(nn.Module):
        def forward(self, x):
            return (bright_model(x),)

    with pytest.raises(ModelOutputError, match="returns a tuple, not class scores"):
        OnePixelAttack(Pair(), popsize=8, maxiter=1).run(dark(), torch.zeros(2).long())


def test_labels_outside_the_classes_are_refused_by_maps_and_scans(tiny_net):
    from pixelprior.maps import Occlusion

    labels = torch.tensor([0, 5])
    for method in (SmoothGrad(tiny_net, n_samples=2), Occlusion(tiny_net)):
        with pytest.raises(ValueError, match="labels must lie in 0..4"):
            method(dark(), labels)
    with pytest.raises(ValueError, match="labels must lie in 0..4"):
        SusceptibilityScan(tiny_net, levels=2)(dark(), labels)


def test_a_scan_order_that_leaves_positions_out_is_refused(tiny_net):
    images = dark()
    with torch.no_grad():
        labels = tiny_net(images).argmax(1)
    scan = SusceptibilityScan(tiny_net, levels=2)
    with pytest.raises(ValueError, match="order must have shape"):
        scan(images, labels, order=torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="every position 0..63 once"):
        scan(images, labels, order=torch.zeros(2, 64, dtype=torch.long))
    flipped = torch.arange(64).flip(0).expand(2, 64)
    assert torch.equal(scan(images, labels, order=flipped).min_margin,
                       scan(images, labels).min_margin)


def test_images_of_other_channels_than_the_first_convolution_are_warned(tiny_net):
    gray = dark()[:, :1]
    with torch.no_grad():
        labels = tiny_net(gray.expand(-1, 3, -1, -1)).argmax(1)

    class Spread(nn.Module):  # a normalisation that spreads one channel to three
        def __init__(self):
            super().__init__()
            self.net = tiny_net
            self.register_buffer("mean", torch.zeros(1, 3, 1, 1))

        def forward(self, x):
            return self.net(x - self.mean)

    with pytest.warns(RuntimeWarning, match="images have 1 channel.* takes 3"):
        OnePixelAttack(Spread(), popsize=8, maxiter=1).run(gray, labels)


def test_tau_as_text_is_refused():
    with pytest.raises(TypeError, match="tau must be a number"):
        SusceptibleSetPrior("0.5")


def test_fooled_leaves_out_images_misclassified_already(bright_model):
    images = dark()
    images[1, :, 2, 5] = 1.0  # already class 1
    out = FastAttack(bright_model).run(images, torch.zeros(2).long())
    assert out.success.tolist() == [True, True]
    assert out.clean_correct.tolist() == [True, False]
    assert out.fooled.tolist() == [True, False]


def test_the_verifier_takes_a_model_in_train_mode_and_restores_it(tiny_net):
    from pixelprior import Verifier

    tiny_net.train()
    images = dark(1)
    with torch.no_grad():
        labels = tiny_net(images).argmax(1)
    verdict = Verifier(tiny_net, budget=None, max_boxes=50).verify(images, labels)
    assert len(verdict) == 1 and tiny_net.training


def test_a_model_that_makes_its_own_channels_is_not_warned(tiny_net):
    """CoordConv-like: the gray image beside two coordinate maps into a 3-channel first
    convolution, as meant (a spread of gray to three copies is warned above)."""
    import warnings

    gray = dark()[:, :1]

    class Coordinates(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tiny_net

        def forward(self, x):
            rows = torch.linspace(0, 1, x.shape[-2]).view(1, 1, -1, 1).expand_as(x)
            cols = torch.linspace(0, 1, x.shape[-1]).view(1, 1, 1, -1).expand_as(x)
            return self.net(torch.cat([x, rows, cols], 1))

    model = Coordinates()
    with torch.no_grad():
        labels = model(gray).argmax(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        OnePixelAttack(model, popsize=8, maxiter=1).run(gray, labels)
