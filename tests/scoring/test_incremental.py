"""Incremental inference equals the full forward pass (scores to float tolerance, labels)."""

from __future__ import annotations

import pytest
import torch
from helpers import randomised
from torch import nn

from pixelprior.models import (
    ChannelsLast,
    Fire,
    SqueezeNet,
    SqueezeNetCifar,
    fold_batchnorm,
)
from pixelprior.scoring import IncrementalForward, incremental_forward, perturb_rows


def rows_everywhere(images: torch.Tensor, count: int, seed: int = 0):
    """Rows at random pixels plus all four corners and edge midpoints of every image."""
    generator = torch.Generator().manual_seed(seed)
    n, channels, height, width = images.shape
    owner = torch.randint(0, n, (count,), generator=generator)
    y = torch.randint(0, height, (count,), generator=generator)
    x = torch.randint(0, width, (count,), generator=generator)
    special = [(0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1),
               (height // 2, 0), (0, width // 2), (height - 1, width // 2)]
    for i in range(n):
        owner = torch.cat([owner, torch.full((len(special),), i)])
        y = torch.cat([y, torch.tensor([s[0] for s in special])])
        x = torch.cat([x, torch.tensor([s[1] for s in special])])
    colour = torch.rand(len(owner), channels, generator=generator)
    return owner, y, x, colour


def full_pass(model, images, owner, y, x, colour):
    genes = torch.cat([x[:, None].float(), y[:, None].float(), colour], 1)[:, None, :]
    with torch.inference_mode():
        return model(perturb_rows(images, owner, genes))


@pytest.mark.parametrize("make, size", [
    (lambda: SqueezeNetCifar(), 32),
    (lambda: SqueezeNetCifar(), 19),  # odd sizes exercise the pools' borders
    (lambda: SqueezeNet("1_1", num_classes=20), 67),
    (lambda: SqueezeNet("1_0", num_classes=20), 75),  # 7×7/2 stem, ceil-mode pools
])
def test_equals_the_full_pass(make, size):
    model = randomised(make())
    images = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    owner, y, x, colour = rows_everywhere(images, 40)
    engine = IncrementalForward(model)
    expected = full_pass(model, images, owner, y, x, colour)
    got = engine(engine.prepare(images), owner, y, x, colour)
    scale = expected.abs().max()
    assert torch.allclose(got, expected, atol=1e-5 * scale, rtol=1e-4)
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_equals_the_full_pass_on_the_attacks_fast_copy():
    model = randomised(SqueezeNetCifar(), seed=2)
    fast = ChannelsLast(fold_batchnorm(model)).eval()
    engine = incremental_forward(fast)
    assert engine is not None and engine.channels_last
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    owner, y, x, colour = rows_everywhere(images, 30, seed=4)
    expected = full_pass(model, images, owner, y, x, colour)
    got = engine(engine.prepare(images), owner, y, x, colour)
    assert torch.allclose(got, expected, atol=1e-4 * expected.abs().max(), rtol=1e-3)
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_the_window_switches_to_full_passes_once_it_covers_the_map():
    model = randomised(SqueezeNetCifar())
    cache = IncrementalForward(model).prepare(torch.rand(1, 3, 32, 32))
    assert cache.window_sizes[0] == (3, 3)  # 3×3 stem: a 3×3 window
    assert cache.switch < len(IncrementalForward(model).steps)
    assert cache.at_switch.shape[-2:] == cache.window_sizes[-1]


class NotSqueezeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3))

    def forward(self, x):
        return self.features(x).mean((2, 3))


def test_unsupported_models_get_none():
    assert incremental_forward(NotSqueezeNet()) is None
    assert incremental_forward(SqueezeNetCifar().train()) is None


def test_an_unknown_layer_falls_back_to_full_passes_from_there():
    model = randomised(SqueezeNetCifar())
    model.features[5] = nn.Sequential(Fire(128, 16, 64, 64))  # not a layer it knows
    randomised(model)
    engine = IncrementalForward(model)
    assert engine.first_unsupported == 5
    images = torch.rand(2, 3, 32, 32)
    owner, y, x, colour = rows_everywhere(images, 10)
    expected = full_pass(model, images, owner, y, x, colour)
    got = engine(engine.prepare(images), owner, y, x, colour)
    assert torch.allclose(got, expected, atol=1e-5 * expected.abs().max(), rtol=1e-4)


# ------------------------------------------------------------------ inside the attack
def small_cifar_batch(seed: int = 5):
    model = randomised(SqueezeNetCifar(), seed=seed)
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        labels = model(images).argmax(1)
    return model, images, labels


@pytest.mark.parametrize("invariant", [False, True])
def test_the_attack_finds_the_same_pixels_with_either_engine(invariant):
    from pixelprior import OnePixelAttack

    model, images, labels = small_cifar_batch()
    runs = {engine: OnePixelAttack(model, popsize=24, maxiter=6, seed=3, engine=engine,
                                   batch_invariant=invariant).run(images, labels)
            for engine in ("full", "incremental")}
    for full, incremental in zip(runs["full"].results, runs["incremental"].results,
                                 strict=True):
        assert (full.success, full.generations, full.queries) == (
            incremental.success, incremental.generations, incremental.queries)
        if full.success:  # the answer itself; a failure's best-so-far may differ on a
            # near-tie of fitness (the engines agree to ~1e-7, not to the bit)
            assert (full.pixels, full.adversarial_label) == (
                incremental.pixels, incremental.adversarial_label)
            assert full.true_probability == pytest.approx(incremental.true_probability,
                                                          abs=1e-5)


def test_auto_uses_the_incremental_engine_only_where_it_applies(tiny_net):
    from pixelprior import OnePixelAttack

    model, images, labels = small_cifar_batch()
    attack = OnePixelAttack(model, popsize=8, maxiter=1, seed=0)
    attack(images, labels)
    assert attack.scorer(images).name == "incremental"
    several = OnePixelAttack(model, popsize=8, maxiter=1, pixels=2)
    several(images, labels)
    assert several.scorer(images).name == "full"  # k > 1: full passes
    other = OnePixelAttack(tiny_net, popsize=8, maxiter=1)
    image = torch.rand(1, 3, 8, 8)
    other(image, tiny_net(image).argmax(1))
    assert other.scorer(image).name == "full"


def test_asking_for_an_engine_that_cannot_apply_is_an_error(tiny_net):
    from pixelprior import OnePixelAttack

    with pytest.raises(ValueError, match="engine must be one of"):
        OnePixelAttack(tiny_net, engine="fast")
    with pytest.raises(ValueError, match="one-pixel candidates"):
        OnePixelAttack(tiny_net, engine="incremental", pixels=2)
    image = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="SqueezeNet-style"):
        OnePixelAttack(tiny_net, engine="incremental", popsize=8, maxiter=1)(
            image, tiny_net(image).argmax(1))


def test_an_engine_that_disagrees_with_the_full_pass_is_not_used(monkeypatch):
    from pixelprior import OnePixelAttack

    model, images, labels = small_cifar_batch()
    original = IncrementalForward.__call__
    monkeypatch.setattr(IncrementalForward, "__call__",
                        lambda self, *args: original(self, *args) + 1.0)
    auto = OnePixelAttack(model, popsize=8, maxiter=1, seed=0)
    with pytest.warns(RuntimeWarning, match="differ from the full pass"):
        auto(images, labels)
    assert auto.scorer(images).name == "full"
    with pytest.raises(ValueError, match="differ from the full pass"):
        OnePixelAttack(model, popsize=8, maxiter=1, engine="incremental")(images, labels)
