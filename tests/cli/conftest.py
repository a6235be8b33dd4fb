"""Fixtures of the command-line tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from pixelprior.data import load_cifar10_sample


@pytest.fixture
def cat_png(tmp_path: Path) -> Path:
    """Test image 0 of CIFAR-10 as a PNG: a cat, and the bundled model says cat."""
    path = tmp_path / "cat.png"
    Image.fromarray(load_cifar10_sample().images[0].permute(1, 2, 0).numpy()).save(path)
    return path
