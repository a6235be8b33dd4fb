"""The one-pixel attack: known answers, reproducibility, batching, bad input."""

from __future__ import annotations

import time

import pytest
import torch
from helpers import dark_images
from torch import nn

from pixelprior.priors import SusceptibleSetPrior, TopKPrior, UniformPrior
from pixelprior.scoring import ModelOutputError, apply_pixels
from pixelprior.search import (
    FastAttack,
    OnePixelAttack,
    RandomSearchAttack,
    RankedScanAttack,
    SusceptibilityScan,
)


def test_finds_the_one_pixel_that_flips_the_class(bright_model):
    images = dark_images()
    out = OnePixelAttack(bright_model, popsize=40, maxiter=60, seed=0).run(
        images, torch.zeros(3, dtype=torch.long))
    for result in out.results:
        assert result.success and result.adversarial_label == 1
        assert (result.pixels[0].x, result.pixels[0].y) == (5, 2)
        assert sum(result.pixels[0].new) > 2.4
        assert result.queries == 40 * (result.generations + 1)
    changed = (out.adversarial != images).any(1)  # exactly one pixel per image differs
    assert changed.flatten(1).sum(1).tolist() == [1, 1, 1]


def test_targeted_attack(bright_model):
    out = OnePixelAttack(bright_model, popsize=40, maxiter=60, targeted=True, seed=1).run(
        dark_images(2), torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long))
    assert all(r.success and r.target == 1 for r in out.results)


def test_same_seed_same_results_bit_for_bit(tiny_net):
    images, labels = dark_images(4, 10, seed=3), torch.tensor([0, 1, 2, 3])
    make = lambda: OnePixelAttack(tiny_net, prior=SusceptibleSetPrior(0.5, n_samples=4),  # noqa
                                  popsize=16, maxiter=5, seed=5)
    first, second = make().run(images, labels), make().run(images, labels)
    assert torch.equal(first.adversarial, second.adversarial)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa
    assert strip(first.rows()) == strip(second.rows())
    other = OnePixelAttack(tiny_net, popsize=16, maxiter=5, seed=6).run(images, labels)
    assert not torch.equal(first.adversarial, other.adversarial)


@pytest.mark.parametrize("invariant", [False, True])
def test_batched_equals_one_at_a_time(tiny_net, invariant):
    images, labels = dark_images(5, 10, seed=8), torch.tensor([0, 1, 2, 3, 4])
    attack = OnePixelAttack(tiny_net, prior=TopKPrior(k=10, n_samples=4), popsize=16,
                            maxiter=8, seed=2, batch_invariant=invariant)
    together = attack.run(images, labels)
    for i in range(5):
        alone = attack.run(images[i:i + 1], labels[i:i + 1])
        assert torch.equal(alone.adversarial[0], together.adversarial[i])
        a, b = alone.results[0], together.results[i]
        assert (a.success, a.generations, a.queries, a.pixels) == (
            b.success, b.generations, b.queries, b.pixels)
        if invariant:  # bit for bit, probabilities included
            assert a.true_probability == b.true_probability
        else:  # kernels chosen by batch size may change the last bits
            assert a.true_probability == pytest.approx(b.true_probability, abs=1e-5)


def test_k_pixels_and_uniform_colours(bright_model):
    out = OnePixelAttack(bright_model, popsize=30, maxiter=10, pixel_count=3, init_color="uniform",
                         seed=0).run(dark_images(1), torch.zeros(1, dtype=torch.long))
    assert len(out.results[0].pixels) == 3


def test_already_misclassified_image_costs_nothing(bright_model):
    images = dark_images(1)
    images[0, :, 2, 5] = 1.0  # already class 1
    result = OnePixelAttack(bright_model, popsize=8, maxiter=3).run(
        images, torch.zeros(1, dtype=torch.long)).results[0]
    assert result.success and not result.clean_correct
    assert result.queries == 0 and result.pixels == []


def test_empty_susceptible_set_falls_back_and_is_recorded(bright_model):
    # the model's gradient w.r.t. a dark image is zero except at one pixel; a constant
    # model gives a constant (all-zero) map, so S is empty
    class Constant(nn.Module):
        def forward(self, x):
            return x.sum((1, 2, 3))[:, None] * 0 + torch.tensor([[1.0, 0.0]])

    out = OnePixelAttack(Constant().eval(), prior=SusceptibleSetPrior(0.5, n_samples=2),
                         popsize=8, maxiter=1).run(dark_images(2), torch.zeros(2, dtype=torch.long))
    assert all(r.fell_back and r.support_size == 64 for r in out.results)


def test_apply_pixels_rounds_and_clips():
    images = torch.zeros(1, 3, 4, 4)
    genes = torch.tensor([[[[2.6, -3.0, 2.0, 0.5, -1.0]]]])  # x→3, y→0, colour clipped
    out = apply_pixels(images, genes)
    assert out[0, :, 0, 3].tolist() == [1.0, 0.5, 0.0]
    assert out.count_nonzero() == 2


def test_of_two_genes_on_one_pixel_the_later_stays():
    images = torch.zeros(2, 3, 4, 4)
    genes = torch.tensor([[[[1.0, 2.0, 0.2, 0.2, 0.2], [1.2, 1.8, 0.9, 0.8, 0.7]]],
                          [[[1.0, 2.0, 0.9, 0.8, 0.7], [0.6, 2.4, 0.2, 0.2, 0.2]]]])
    out = apply_pixels(images, genes)
    assert out[0, :, 2, 1].tolist() == pytest.approx([0.9, 0.8, 0.7])
    assert out[1, :, 2, 1].tolist() == pytest.approx([0.2, 0.2, 0.2])
    assert out.count_nonzero() == 6


@pytest.mark.parametrize("images, labels, error", [
    (torch.rand(2, 3, 8, 8) + 1.0, torch.zeros(2).long(), "\\[0, 1\\]"),
    (torch.rand(3, 8, 8), torch.zeros(3).long(), "\\[B, C, H, W\\]"),
    (torch.randint(0, 255, (2, 3, 8, 8), dtype=torch.uint8), torch.zeros(2).long(), "float"),
    (torch.rand(2, 3, 8, 8), torch.tensor([0, 2]), "labels must lie in 0..1"),
    (torch.rand(2, 3, 8, 8), torch.tensor([0, -1]), "labels must lie"),
    (torch.rand(2, 3, 8, 8), torch.tensor([0]), "labels must have shape"),
])
def test_bad_input_is_rejected(bright_model, images, labels, error):
    with pytest.raises((ValueError, TypeError), match=error):
        OnePixelAttack(bright_model, popsize=8, maxiter=1)(images, labels)


def test_bad_models_and_settings(bright_model):
    class NaNModel(nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 2), float("nan"))

    class FlatModel(nn.Module):
        def forward(self, x):
            return x.sum((1, 2, 3))

    images, labels = dark_images(2), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ModelOutputError, match="NaN"):
        OnePixelAttack(NaNModel().eval(), popsize=8, maxiter=1)(images, labels)
    with pytest.raises(ModelOutputError, match="\\[B, K\\]"):
        OnePixelAttack(FlatModel().eval(), popsize=8, maxiter=1)(images, labels)
    with pytest.raises(ValueError, match="popsize"):
        OnePixelAttack(bright_model, popsize=3)
    with pytest.raises(ValueError, match="needs `targets`"):
        OnePixelAttack(bright_model, targeted=True, popsize=8)(images, labels)
    with pytest.raises(ValueError, match="targets must lie"):
        OnePixelAttack(bright_model, targeted=True, popsize=8)(images, labels,
                                                               torch.tensor([1, 5]))
    with pytest.raises(ValueError, match="pixel_count must be >= 1"):
        OnePixelAttack(bright_model, pixel_count=0)
    with pytest.raises(ValueError, match="tau"):
        SusceptibleSetPrior(1.0)


class ModeRecorder(nn.Module):
    """The bright-pixel model with a dropout layer (switched off in eval mode) that
    records the mode of every forward pass."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.dropout = nn.Dropout(0.5)
        self.seen: list[bool] = []

    def forward(self, x):
        self.seen.append(self.training)
        return self.dropout(self.inner(x))


def test_a_model_in_training_mode_is_attacked_in_eval_mode_and_restored(bright_model):
    images, labels = dark_images(2), torch.zeros(2, dtype=torch.long)
    model = ModeRecorder(bright_model).train()
    model.inner.eval()  # a submodule's own mode is restored too
    first = OnePixelAttack(model, popsize=40, maxiter=10, seed=0).run(images, labels)
    assert model.seen and not any(model.seen)  # every query in eval mode: no dropout
    assert model.training and model.dropout.training and not model.inner.training
    second = OnePixelAttack(model, popsize=40, maxiter=10, seed=0).run(images, labels)
    assert first.rows()[0]["true_probability"] == second.rows()[0]["true_probability"]


def test_a_model_in_eval_mode_stays_in_eval_mode_and_an_error_restores_the_mode(
        bright_model):
    images, labels = dark_images(1), torch.zeros(1, dtype=torch.long)
    model = ModeRecorder(bright_model).eval()
    OnePixelAttack(model, popsize=8, maxiter=1)(images, labels)
    assert not model.training and not any(model.seen)
    model.train()
    with pytest.raises(ValueError, match="labels must lie"):
        OnePixelAttack(model, popsize=8, maxiter=1)(images, torch.tensor([5]))
    assert model.training and model.dropout.training


def test_result_rows_are_json_ready(bright_model):
    import json

    out = OnePixelAttack(bright_model, prior=UniformPrior(), popsize=20, maxiter=20).run(
        dark_images(1), torch.zeros(1, dtype=torch.long))
    row = json.loads(json.dumps(out.rows()[0]))
    assert row["x"] == 5 and row["y"] == 2 and row["prior"] == "uniform"
    assert out.success.tolist() == [True]


def test_the_attack_accounts_for_its_queries_and_their_time(tiny_net):
    images = dark_images(2, 10, seed=4)
    attack = OnePixelAttack(tiny_net, popsize=16, maxiter=4, seed=0)
    began = time.perf_counter()
    out = attack.run(images, tiny_net(images).argmax(1))
    wall = time.perf_counter() - began
    assert attack.queries == sum(r.queries for r in out.results) > 0
    assert 0 < attack.query_seconds < wall


@pytest.mark.parametrize("engine", ["incremental", "full"])
def test_batch_invariant_results_do_not_depend_on_the_batch(engine, random_cifar):
    """Bit for bit, whatever else is attacked alongside: the clean state is prepared one
    image at a time and every scoring call has one fixed shape."""
    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    with torch.inference_mode():
        labels = random_cifar(images).argmax(1)
    attack = OnePixelAttack(random_cifar, popsize=16, maxiter=3, seed=2, engine=engine,
                            batch_invariant=True)
    together = attack.run(images, labels).rows()
    strip = lambda row: {k: v for k, v in row.items() if k not in ("seconds", "index")}  # noqa
    for i in range(6):
        assert strip(attack.run(images[i:i + 1], labels[i:i + 1]).rows()[0]) == strip(together[i])


def test_without_early_stop_a_success_keeps_its_generation(bright_model):
    images = dark_images(2)
    out = OnePixelAttack(bright_model, popsize=40, maxiter=30, seed=0, early_stop=False).run(
        images, torch.zeros(2, dtype=torch.long))
    stopped = OnePixelAttack(bright_model, popsize=40, maxiter=30, seed=0).run(
        images, torch.zeros(2, dtype=torch.long))
    assert [r.generations for r in out.results] == [r.generations for r in stopped.results]
    assert any(r.success and r.generations < 30 for r in out.results)
    assert all(r.queries == 40 * 31 for r in out.results)  # it kept evaluating


def test_calling_returns_the_adversarial_images_and_run_everything(bright_model):
    images, labels = dark_images(2), torch.zeros(2, dtype=torch.long)
    make = lambda: OnePixelAttack(bright_model, popsize=40, maxiter=60, seed=0)  # noqa: E731
    adversarial = make()(images, labels)
    output = make().run(images, labels)
    assert isinstance(adversarial, torch.Tensor) and adversarial.shape == images.shape
    assert torch.equal(adversarial, output.adversarial)
    with pytest.warns(DeprecationWarning, match="Attack.run"):
        old = make().attack(images, labels)
    assert old.rows()[0]["success"] == output.rows()[0]["success"]


def test_batch_invariant_verdicts_do_not_depend_on_the_thread_count():
    """The verdicts are the model's own forward: at 2 threads its kernels may round a sum
    otherwise than at 1 (a Ray worker's), so a batch-invariant attack runs that pass at
    one thread, and a run on 2 workers gives the same rows as one on 1."""
    from pixelprior import load_cifar10, load_model, to_float

    model = load_model("squeezenet1_1-cifar10")
    data = load_cifar10("sample")
    images, labels = to_float(data.images[:6]), data.labels[:6]
    threads = torch.get_num_threads()
    bits = []
    for count in (1, 2):
        torch.set_num_threads(count)
        out = OnePixelAttack(model, popsize=10, maxiter=1, seed=0,
                             batch_invariant=True).run(images, labels)
        bits.append([(r.true_probability, r.adversarial_label) for r in out.results])
        assert torch.get_num_threads() == count  # the count given back
    torch.set_num_threads(threads)
    assert bits[0] == bits[1]


class _TieModel(nn.Module):
    """Logits ``[0, second(x), -5, ...]``; by default ``second`` is 1e-45 whatever the
    image: class 1 by its logits, while their softmax rounds classes 0 and 1 to one
    probability."""

    def __init__(self, second=lambda x: 1e-45):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(()))
        self.second = second

    def forward(self, x):
        logits = torch.full((x.shape[0], 10), -5.0) + self.scale * x.mean()
        logits[:, 0] = 0.0
        logits[:, 1] = self.second(x)
        return logits


def test_labels_are_the_models_argmax_not_the_rounded_softmaxs():
    """The argmax of probabilities named class 0 (the first of two equal ones), so an
    image the model labels 1 counted as fooled before any query."""
    probs = torch.tensor([[0.0, 1e-45]]).softmax(1)
    assert probs[0, 0] == probs[0, 1]  # the case is real in float32
    result = OnePixelAttack(_TieModel(), popsize=8, maxiter=1, seed=0).run(
        dark_images(1), torch.ones(1, dtype=torch.long)).results[0]
    assert (result.original_label, result.adversarial_label, result.success) == (1, 1, False)
    assert result.clean_correct and result.queries > 0


@pytest.mark.parametrize("search", ["de", "random", "scan", "fast"])
def test_a_search_judges_success_by_the_models_argmax_not_the_rounded_softmaxs(search):
    """Mid-search success read the softmax's argmax too: every candidate of the tie model
    counted as a success, so DE and the random search stopped at their first query and
    the scans marked every position vulnerable, while the model's label never moved."""
    model, images, labels = _TieModel(), dark_images(1), torch.ones(1, dtype=torch.long)
    attack = {"de": lambda: OnePixelAttack(model, popsize=8, maxiter=2, seed=0),
              "random": lambda: RandomSearchAttack(model, budget=5, seed=0),
              "scan": lambda: RankedScanAttack(model, levels=2, seed=0),
              "fast": lambda: FastAttack(model, seed=0, verify=False)}[search]()
    result = attack.run(images, labels).results[0]
    assert not result.success and result.adversarial_label == 1
    corners = 8 * 64  # 8 corner colours at each of the 64 positions
    # the whole budget, nothing stopped early (fast checks its corners with the model)
    spent = {"de": 8 * 3, "random": 5, "scan": corners, "fast": 2 * corners}[search]
    assert result.queries == spent


def test_the_exhaustive_scan_finds_no_position_where_only_the_softmax_ties():
    result = SusceptibilityScan(_TieModel(), levels=2)(dark_images(1),
                                                       torch.ones(1, dtype=torch.long))
    assert result.scanned.all() and not result.vulnerable.any()
    assert (result.first == -1).all()


def _RedByAHair() -> nn.Module:  # noqa: N802  (a model, named like one)
    """Class 0 unless pixel (0, 0) is more than half red; then class 1 by logits 1e-30
    apart, which the softmax rounds to one probability at every colour."""
    return _TieModel(lambda x: 1e-30 * (x[:, 0, 0, 0] - 0.5))


@pytest.mark.parametrize("search", ["scan", "fast"])
@pytest.mark.parametrize("targeted", [False, True])
def test_a_scan_answers_with_a_colour_that_changes_the_label(search, targeted):
    """With success read from the logits, a position was vulnerable while its colour was
    the first of equal probability margins, black, which changes nothing: the scan and
    fast reported failures (a review's case)."""
    images, labels = dark_images(1), torch.zeros(1, dtype=torch.long)
    options = {"seed": 0, "tie_break": "raster", "targeted": targeted}
    attack = (RankedScanAttack(_RedByAHair(), levels=2, **options) if search == "scan"
              else FastAttack(_RedByAHair(), verify="off", **options))
    result = attack.run(images, labels, torch.ones(1, dtype=torch.long) if targeted else None
                        ).results[0]
    assert result.success and result.adversarial_label == 1
    assert result.pixels[0].new == [1.0, 0.0, 0.0] and result.queries == 8


def test_a_scans_margin_is_negative_exactly_where_the_label_changes():
    result = SusceptibilityScan(_RedByAHair(), levels=2)(dark_images(1),
                                                         torch.zeros(1, dtype=torch.long))
    assert result.vulnerable.flatten().tolist() == [True] + [False] * 63
    assert ((result.min_margin < 0) == result.vulnerable).all()
    assert ((result.min_log_margin < 0) == result.vulnerable).all()
    assert result.best_colour[0, 0, 0].tolist() == [1.0, 0.0, 0.0]


class _OneLogit(nn.Module):
    """A binary model of one logit (class 1 iff pixel (0, 0) is bright red), or its
    ``[B]``-shaped form."""

    def __init__(self, flat: bool = False):
        super().__init__()
        self.flat = flat
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x):
        logit = self.scale * x[:, 0, 0, 0] - 5.0
        return logit if self.flat else logit[:, None]


@pytest.mark.parametrize("flat", [False, True])
def test_a_model_of_one_score_is_refused_by_every_attack_and_the_verifier(flat):
    """Its argmax is always 0: the API certified it on the corners (FastAttack), found
    nothing (DE, scans) or crashed with an IndexError (the Verifier); the CLI refused
    it at load."""
    from pixelprior.search import FastAttack, SusceptibilityScan, Verifier

    model, image = _OneLogit(flat).eval(), torch.zeros(1, 3, 4, 4)
    label = torch.zeros(1, dtype=torch.long)
    calls = [lambda: FastAttack(model, verify="off").run(image, label),
             lambda: OnePixelAttack(model, popsize=8, maxiter=1, seed=0).run(image, label),
             lambda: SusceptibilityScan(model, levels=2)(image, label),
             lambda: Verifier(model, budget=None).verify(image, label)]
    phrase = "must return \\[B, K\\] scores" if flat else "at least 2 classes"
    for call in calls:
        with pytest.raises(ModelOutputError, match=phrase):
            call()


class _BatchStatistics(nn.Module):
    """BatchNorm on the statistics of each batch: an image's scores depend on the others."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4, track_running_stats=False)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.conv(x))).mean((2, 3)))


def test_a_model_whose_scores_depend_on_the_batch_is_refused():
    """The API scored candidates many to a batch: FastAttack reported successes whose
    adversarial image, scored alone, kept its label (an audit's case); the CLI refused
    such a model at load."""
    from pixelprior.search import FastAttack, SusceptibilityScan, Verifier

    model, images = _BatchStatistics().eval(), dark_images(2, 6, seed=1)
    labels = torch.cat([model(images[i:i + 1]).argmax(1) for i in range(2)])
    calls = [lambda: FastAttack(model, verify="off").run(images, labels),
             lambda: OnePixelAttack(model, popsize=8, maxiter=1, seed=0).run(images, labels),
             lambda: SusceptibilityScan(model, levels=2)(images, labels),
             lambda: Verifier(model, budget=None).verify(images[:1], labels[:1])]
    for call in calls:
        with pytest.raises(ValueError, match="change with the other images in its batch"):
            call()


def test_the_batch_check_sees_equal_images_a_given_scorer_and_randomness():
    """Two equal images hid batch statistics; a scorer given as engine= skipped the
    check; a forward drawing random numbers was blamed on BatchNorm (a review's cases)."""
    from pixelprior.models import batch_dependence
    from pixelprior.scoring import make_scorer
    from pixelprior.search import FastAttack

    model, image = _BatchStatistics().eval(), dark_images(1, 6, seed=1)
    twice = image.repeat(2, 1, 1, 1)
    label = model(image).argmax(1).repeat(2)
    with pytest.raises(ValueError, match="change with the other images in its batch"):
        FastAttack(model, verify="off").run(twice, label)
    with pytest.raises(ValueError, match="change with the other images in its batch"):
        FastAttack(model, engine=make_scorer(model, image, "full", 1), verify="off").run(
            twice, label)
    noisy = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(108, 3)).train()
    assert "two forwards of the same image give different scores" in batch_dependence(
        noisy, image)
