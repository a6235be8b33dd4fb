"""Logits or probabilities: a model that returns probabilities is never soft-maxed twice."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from helpers import dark_images
from torch import nn

from pixelprior.scoring import (
    FullPassScorer,
    IncrementalScorer,
    make_scorer,
    perturb_rows,
)
from pixelprior.search import OnePixelAttack, SusceptibilityScan

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None


class Sharpened(nn.Module):
    """A model's logits times ``factor`` (confident: a second softmax would show)."""

    def __init__(self, model: nn.Module, factor: float = 40.0) -> None:
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.factor


def softmaxed(model: nn.Module) -> nn.Module:
    return nn.Sequential(model, nn.Softmax(1)).eval()


@pytest.fixture
def sharp(tiny_net) -> nn.Module:
    return Sharpened(tiny_net).eval()


def candidates(images: torch.Tensor, count: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    owner = torch.randint(0, images.shape[0], (count,), generator=generator)
    xy = torch.randint(0, images.shape[-1], (count, 2), generator=generator).float()
    genes = torch.cat([xy, torch.rand(count, images.shape[1], generator=generator)], 1)
    return owner, genes[:, None]


def test_attack_on_a_probability_model_reports_its_true_probabilities(sharp):
    images, labels = dark_images(4, 10, seed=3), torch.tensor([0, 1, 2, 3])
    model = softmaxed(sharp)
    attack = OnePixelAttack(model, popsize=16, maxiter=5, seed=5)
    out = attack.run(images, labels)
    assert attack.scorer(images).output_kind == "probabilities"
    with torch.no_grad():
        own = model(out.adversarial)
    assert (own.softmax(1) - own).abs().max() > 0.05  # a second softmax would show
    for i, result in enumerate(out.results):
        assert result.true_probability == pytest.approx(float(own[i, labels[i]]), abs=1e-6)


def test_probability_and_logit_models_find_the_same_pixels(sharp):
    images, labels = dark_images(4, 10, seed=3), torch.tensor([0, 1, 2, 3])
    make = lambda model: OnePixelAttack(model, popsize=16, maxiter=5, seed=5)  # noqa: E731
    logits, probabilities = make(sharp).run(images, labels), make(softmaxed(sharp)).run(
        images, labels)
    assert torch.equal(logits.adversarial, probabilities.adversarial)
    for a, b in zip(logits.results, probabilities.results, strict=True):
        assert [(p.x, p.y) for p in a.pixels] == [(p.x, p.y) for p in b.pixels]
        assert (a.success, a.adversarial_label, a.queries) == (b.success, b.adversarial_label,
                                                               b.queries)
        assert a.true_probability == pytest.approx(b.true_probability, abs=1e-6)


def test_a_logit_model_is_unchanged(tiny_net):
    images = dark_images(4, 10, seed=3)
    scorer = FullPassScorer(tiny_net, images, optimize=False)
    got = scorer.image_probabilities(images, chunk=2)
    with torch.inference_mode():
        expected = tiny_net(images).softmax(1)
    assert scorer.output_kind == "logits" and torch.equal(got, expected)
    owner, genes = candidates(images, 12)
    with torch.inference_mode():
        expected = tiny_net(perturb_rows(images, owner, genes)).softmax(1)
    torch.testing.assert_close(scorer.probabilities(images, images, owner, genes, 5), expected)


def test_candidates_alone_decide_from_their_first_chunk(tiny_net):
    images, model = dark_images(4, 10, seed=3), softmaxed(tiny_net)
    scorer = FullPassScorer(model, images)
    owner, genes = candidates(images, 20)
    got = scorer.probabilities(scorer.prepare(images), images, owner, genes, 8)
    with torch.inference_mode():
        expected = model(perturb_rows(images, owner, genes))
    assert scorer.output_kind == "probabilities"
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_set_output_kind_is_explicit_and_checked(tiny_net):
    images = dark_images(4, 10, seed=3)
    scorer = FullPassScorer(tiny_net, images, optimize=False)
    scorer.set_output_kind("probabilities")  # believed: used as they are, clamped
    with torch.inference_mode():
        raw = tiny_net(images)
    assert torch.equal(scorer.image_probabilities(images, 4), raw.clamp(0, 1))
    with pytest.raises(ValueError, match="output kind"):
        scorer.set_output_kind("scores")


def test_the_incremental_engine_follows_the_same_decision(random_cifar):
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    owner, genes = candidates(images, 10)
    scorer = make_scorer(random_cifar, images, "incremental")
    assert isinstance(scorer, IncrementalScorer)
    scorer.image_probabilities(images, 2)
    assert scorer.output_kind == "logits"
    got = scorer.probabilities(scorer.prepare(images), images, owner, genes, 4)
    with torch.inference_mode():
        logits = random_cifar(perturb_rows(images, owner, genes))
    torch.testing.assert_close(got, logits.softmax(1), atol=1e-5, rtol=1e-4)
    declared = make_scorer(random_cifar, images, "incremental")
    declared.set_output_kind("probabilities")  # the decision reaches the cone's scores
    got = declared.probabilities(declared.prepare(images), images, owner, genes, 4)
    torch.testing.assert_close(got, logits.clamp(0, 1), atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime is not installed")
def test_onnx_runtime_engine_on_a_probability_model(tiny_net):
    images, model = dark_images(4, 10, seed=3), softmaxed(tiny_net)
    scorer = make_scorer(model, images, "onnxruntime")
    with torch.inference_mode():
        expected = model(images)
    torch.testing.assert_close(scorer.image_probabilities(images, 4), expected, atol=1e-5,
                               rtol=1e-4)
    assert scorer.output_kind == "probabilities"
    owner, genes = candidates(images, 9)
    with torch.inference_mode():
        expected = model(perturb_rows(images, owner, genes))
    torch.testing.assert_close(scorer.probabilities(scorer.prepare(images), images, owner,
                                                    genes, 4), expected, atol=1e-5, rtol=1e-4)


def test_a_scan_of_a_probability_model_equals_the_logit_models(tiny_net):
    images, labels = dark_images(2, 6, seed=3), torch.tensor([0, 1])
    logits = SusceptibilityScan(tiny_net, levels=2)(images, labels)
    probabilities = SusceptibilityScan(softmaxed(tiny_net), levels=2)(images, labels)
    assert torch.equal(logits.vulnerable, probabilities.vulnerable)
    torch.testing.assert_close(logits.min_fitness, probabilities.min_fitness, atol=1e-6,
                               rtol=1e-5)
