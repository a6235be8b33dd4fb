"""Scorers: one interface for every engine, checked against the full pass; fixed shapes."""

from __future__ import annotations

import pytest
import torch

from pixelprior import OnePixelAttack
from pixelprior.scoring import (
    CUDA_FIXED_MAX_ROWS,
    CUDA_MAX_ROWS,
    CUDA_MIN_ROWS,
    FullPassScorer,
    ScorerMismatchError,
    check_scorer,
    make_scorer,
    perturb_rows,
    rows_for_memory,
)


def candidate_rows(images: torch.Tensor, count: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    owner = torch.randint(0, images.shape[0], (count,), generator=generator)
    xy = torch.randint(0, images.shape[-1], (count, 2), generator=generator).float()
    genes = torch.cat([xy, torch.rand(count, images.shape[1], generator=generator)], 1)
    return owner, genes[:, None]


ENGINES = ["full", "incremental"] + (
    ["onnxruntime"] if __import__("importlib").util.find_spec("onnxruntime") else [])


@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_scores_like_the_plain_model(engine, random_cifar):
    model = random_cifar
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    scorer = make_scorer(model, images, engine)
    assert scorer.name == engine and check_scorer(scorer, model, images[:1]) is None
    owner, genes = candidate_rows(images, 50)
    with torch.inference_mode():
        expected = model(perturb_rows(images, owner, genes)).softmax(1)
    got = scorer.probabilities(scorer.prepare(images), images, owner, genes, chunk=16)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert torch.equal(got.argmax(1), expected.argmax(1))


@pytest.mark.parametrize("engine", ["full", "incremental"])
def test_fixed_shape_chunks_make_a_rows_bits_independent_of_its_neighbours(engine,
                                                                          random_cifar):
    model = random_cifar
    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    scorer = make_scorer(model, images, engine)
    state = scorer.prepare(images)
    owner, genes = candidate_rows(images, 40, seed=3)
    alone = scorer.probabilities(state, images, owner[:7], genes[:7], 32, fixed_shape=True)
    for shift in (0, 5, 13, 29):  # the same rows at other places among other rows
        other_owner, other_genes = candidate_rows(images, shift, seed=10 + shift)
        mixed = scorer.probabilities(state, images, torch.cat([other_owner, owner[:7]]),
                                     torch.cat([other_genes, genes[:7]]), 32,
                                     fixed_shape=True)
        assert torch.equal(mixed[shift:], alone)


def test_rows_for_memory_is_a_power_of_two_within_bounds():
    gib = 2**30
    assert rows_for_memory(1024**2, 80 * gib) == 8192  # 8 GiB budget / 1 MiB per row
    assert rows_for_memory(1024, 80 * gib) == CUDA_MAX_ROWS
    assert rows_for_memory(1024, 80 * gib, fixed_shape=True) == CUDA_FIXED_MAX_ROWS
    assert rows_for_memory(1024**2, 2 * gib) == 1024  # half of what is free
    assert rows_for_memory(10 * gib, 80 * gib) == CUDA_MIN_ROWS
    rows = rows_for_memory(3_000_000, 40 * gib)
    assert rows & (rows - 1) == 0 and rows * 3_000_000 <= 8 * gib


def test_engine_choice_and_errors(tiny_net, random_cifar):
    image = torch.rand(1, 3, 8, 8)
    assert make_scorer(tiny_net, image, "auto").name == "full"  # not a SqueezeNet
    with pytest.raises(ValueError, match="SqueezeNet-style"):
        make_scorer(tiny_net, image, "incremental")
    with pytest.raises(ValueError, match="one-pixel"):
        make_scorer(random_cifar, torch.rand(1, 3, 32, 32), "incremental", pixels=2)
    with pytest.raises(ValueError, match="engine must be one of"):
        make_scorer(tiny_net, image, "gpu")


def test_a_scorer_that_disagrees_is_refused(tiny_net, monkeypatch):
    image = torch.rand(1, 3, 8, 8)
    monkeypatch.setattr(FullPassScorer, "logits",
                        lambda self, state, owner, genes: tiny_net(
                            perturb_rows(state, owner, genes)) + 1.0)
    with pytest.raises(ScorerMismatchError, match="differ from the full pass"):
        make_scorer(tiny_net, image, "full")


def test_bf16_is_an_explicit_option_close_to_fp32(random_cifar):
    model = random_cifar
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    owner, genes = candidate_rows(images, 64)
    exact = make_scorer(model, images, "full")
    low = make_scorer(model, images, "full", precision="bf16")
    assert low.precision == "bf16"
    a = exact.probabilities(exact.prepare(images), images, owner, genes, 64)
    b = low.probabilities(low.prepare(images), images, owner, genes, 64)
    assert a.dtype == b.dtype == torch.float32
    assert (a - b).abs().max() < 0.1 and not torch.equal(a, b)
    with pytest.raises(ValueError, match="precision"):
        make_scorer(model, images, "full", precision="fp8")


def test_a_scorer_can_be_built_once_and_shared_between_attacks(bright_model):
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.3
    labels = torch.zeros(2, dtype=torch.long)
    scorer = make_scorer(bright_model, images, "full")
    shared = OnePixelAttack(bright_model, popsize=20, maxiter=20, seed=1, engine=scorer)
    own = OnePixelAttack(bright_model, popsize=20, maxiter=20, seed=1, engine="full")
    assert [r.to_row() | {"seconds": 0} for r in shared.run(images, labels).results] == [
        r.to_row() | {"seconds": 0} for r in own.run(images, labels).results]
    assert shared.scorer(images) is scorer


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_cuda_chunks_come_from_device_memory(random_cifar):
    model = random_cifar.cuda()
    images = torch.rand(2, 3, 32, 32, device="cuda")
    for engine in ("full", "incremental"):
        scorer = make_scorer(model, images, engine)
        rows = scorer.chunk_rows(scorer.prepare(images), images)
        assert CUDA_MIN_ROWS <= rows <= CUDA_MAX_ROWS and rows & (rows - 1) == 0


@cuda
def test_cuda_graphs_give_the_eager_scores(random_cifar):
    model = random_cifar.cuda()
    images = torch.rand(3, 3, 32, 32, device="cuda")
    owner, genes = candidate_rows(images.cpu(), 100)
    owner, genes = owner.cuda(), genes.cuda()
    eager = make_scorer(model, images, "full")
    graphed = make_scorer(model, images, "full", cuda_graphs=True)
    a = eager.probabilities(images, images, owner, genes, 64, fixed_shape=True)
    b = graphed.probabilities(images, images, owner, genes, 64, fixed_shape=True)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def _cancelling_model() -> torch.nn.Module:
    """A BatchNorm taking off a bias of 2^22: the model rounds to steps of 0.5, its folded
    copy does not; both agree on a black image, and part at one-pixel candidates."""
    from torch import nn

    conv, bn = nn.Conv2d(3, 1, 1), nn.BatchNorm2d(1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0] = 0.3
        conv.bias.fill_(2.0 ** 22)
        bn.running_mean.fill_(2.0 ** 22)
        bn.running_var.fill_(1 - bn.eps)

    class Head(nn.Module):
        def forward(self, h: torch.Tensor) -> torch.Tensor:
            total = 4.0 * h.flatten(1).sum(1)
            return torch.stack([torch.full_like(total, 1.6), total], 1)

    return nn.Sequential(conv, bn, Head()).eval()


@pytest.mark.parametrize("engine", ["auto", "full"])
def test_a_folded_copy_parting_from_the_model_at_candidates_gives_way_to_the_model(engine):
    """It was a ScorerMismatchError on a valid model (an audit's case): the model's own
    passes are the engine, and the note says why."""
    model = _cancelling_model()
    scorer = make_scorer(model, torch.zeros(1, 3, 8, 8), engine)
    assert isinstance(scorer, FullPassScorer) and scorer.query_model is model
    assert "the faster copy (BatchNorm folded) was checked" in scorer.note


def test_a_model_scoring_one_image_twice_differently_is_named_as_such():
    class Noisy(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, :2] + torch.randn(x.shape[0], 2)

    with pytest.raises(ScorerMismatchError, match="scores the same image differently on "
                                                  "two calls"):
        make_scorer(Noisy(), torch.zeros(1, 3, 8, 8), "full")
