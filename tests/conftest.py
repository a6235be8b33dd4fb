"""Shared fixtures: tiny models with known answers, the shared data folder; the shared
helpers (:mod:`helpers`: ``invoke``, ``clean_error``, ``dark_images``, ``randomised``,
``MobileNetish``, ``VGGish``) are re-exported here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from helpers import (  # noqa: F401 - the shared helpers, one copy each
    MobileNetish,
    VGGish,
    clean_error,
    dark_images,
    invoke,
    randomised,
)
from torch import nn


def pytest_collection_modifyitems(config, items):
    """Tests marked ``checkout`` read a git checkout (its committed results/, 23 MB, or
    its git), which the sdist does not ship: there they are skipped, saying why."""
    root = Path(__file__).parents[1]
    if (root / "results").is_dir() and (root / ".git").exists():
        return
    skip = pytest.mark.skip(reason="reads a git checkout (results/, .git): not in the sdist")
    for item in items:
        if "checkout" in item.keywords:
            item.add_marker(skip)


class BrightPixelModel(nn.Module):
    """Two classes: class 1 iff pixel (x0, y0) is nearly white (sum of channels > 2.4).

    One pixel flips the class, and only that pixel: the attack's answer is known.
    """

    def __init__(self, x0: int = 5, y0: int = 2) -> None:
        super().__init__()
        self.x0, self.y0 = x0, y0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        brightness = x[:, :, self.y0, self.x0].sum(1)
        logit = 10.0 * (brightness - 2.4)
        return torch.stack([torch.zeros_like(logit), logit], 1)


class TinyConvNet(nn.Module):
    """A small random CNN (fixed seed) with a `.features` Sequential, for attribution tests."""

    def __init__(self, classes: int = 5, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def random_cifar_model(seed: int = 5) -> nn.Module:
    """The CIFAR SqueezeNet with random weights and BatchNorm statistics (every layer
    matters), in eval mode."""
    from pixelprior.models import SqueezeNetCifar

    return randomised(SqueezeNetCifar(), seed)


@pytest.fixture
def random_cifar() -> nn.Module:
    return random_cifar_model()


@pytest.fixture
def bright_model() -> BrightPixelModel:
    return BrightPixelModel().eval()


@pytest.fixture
def tiny_net() -> TinyConvNet:
    return TinyConvNet().eval()


@pytest.fixture
def shared_data() -> Path:
    """The shared data folder ($PIXELPRIOR_DATA); tests that need it skip without it."""
    value = os.environ.get("PIXELPRIOR_DATA")
    if not value or not (Path(value) / "cifar-10-batches-py" / "test_batch").is_file():
        pytest.skip("PIXELPRIOR_DATA does not point at the shared data")
    return Path(value)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Each test gets an empty cache directory, so none depends on the user's cache."""
    monkeypatch.setenv("PIXELPRIOR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("PIXELPRIOR_WEIGHTS", raising=False)


@pytest.fixture(autouse=True)
def torch_threads():
    """Each test leaves torch's thread count as it found it: an in-process Ray stand-in
    sets one thread (as a real worker does), and a test run after it would otherwise
    compare bits computed with another count."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
