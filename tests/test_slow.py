"""Long checks on the bundled CIFAR-10 model (run with `pytest -m slow`)."""

from __future__ import annotations

import pytest
import torch

from pixelprior import OnePixelAttack, SusceptibleSetPrior, load_cifar10, load_model, to_float
from pixelprior.experiment import correctly_classified

pytestmark = pytest.mark.slow


def correct_images(count: int):
    model = load_model("squeezenet1_1-cifar10")
    data = load_cifar10("sample")
    pick = correctly_classified(model, data, count)
    return model, to_float(data.images[pick]), data.labels[pick]


def test_real_model_batch_invariance_and_seed_reproducibility():
    model, images, labels = correct_images(4)
    make = lambda: OnePixelAttack(model, prior=SusceptibleSetPrior(0.5, n_samples=10),  # noqa
                                  popsize=100, maxiter=10, seed=3, batch_invariant=True)
    together = make()(images, labels)
    again = make()(images, labels)
    assert torch.equal(together.adversarial, again.adversarial)
    for i in range(4):
        alone = make()(images[i:i + 1], labels[i:i + 1])
        assert alone.results[0].true_probability == together.results[i].true_probability
        assert alone.results[0].pixels == together.results[i].pixels


def test_fast_query_model_gives_the_same_attack_outcomes():
    model, images, labels = correct_images(6)
    fast = OnePixelAttack(model, popsize=100, maxiter=10, seed=1)(images, labels)
    plain = OnePixelAttack(model, popsize=100, maxiter=10, seed=1, optimize=False)(images,
                                                                                  labels)
    assert [r.success for r in fast.results] == [r.success for r in plain.results]
    assert [r.adversarial_label for r in fast.results] == [
        r.adversarial_label for r in plain.results]
