"""Helpers of the experiment tests: a tiny user model (a Python factory with fixed
weights) and tiny image sets (``.npz``), so runs take a fraction of a second."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import without_unread_maps

from pixelprior.experiment import ExperimentConfig

TINY_NET = '''
import torch
from torch import nn

SEED = {seed}


class Tiny(nn.Module):
    """A fixed random CNN of any input size: 3 classes, global pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)
        generator = torch.Generator().manual_seed(SEED)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator))

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def tiny():
    return Tiny().eval()
'''


def write_tiny_net(folder: Path, seed: int = 0) -> str:
    """Write the tiny factory into ``folder`` (its weights drawn with ``seed``); its
    model spec (``.../nets.py:tiny``)."""
    path = folder / "nets.py"
    path.write_text(TINY_NET.format(seed=seed))
    return f"{path}:tiny"


def tiny_model(seed: int = 0):
    """The tiny model itself (weights drawn with ``seed``)."""
    namespace: dict = {}
    exec(TINY_NET.format(seed=seed), namespace)  # noqa: S102 - the test's own model code
    return namespace["tiny"]()


def write_tiny_script(path: Path, seed: int = 0) -> Path:
    """The tiny model (weights drawn with ``seed``) as a TorchScript file."""
    import torch

    torch.jit.trace(tiny_model(seed), torch.rand(1, 3, 8, 8)).save(str(path))
    return path


def write_images(path: Path, count: int = 5, height: int = 8, width: int = 8, seed: int = 0,
                 indices: list[int] | None = None) -> Path:
    """An ``.npz`` of ``count`` random uint8 images (NHWC), labelled as the tiny model
    (seed 0) classifies them, so that every image is attacked."""
    import torch

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, height, width, 3), dtype=np.uint8)
    with torch.inference_mode():
        scores = tiny_model()(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    arrays = {"images": images, "labels": scores.argmax(1).numpy(),
              "class_names": np.array(["a", "b", "c"])}
    if indices is not None:
        arrays["indices"] = np.asarray(indices)
    np.savez(path, **arrays)
    return path


def tiny_run_config(folder: Path, out: Path, **overrides) -> ExperimentConfig:
    """A run of the tiny model on tiny images: every image, one seed, DE and the fast
    mode, a few queries each."""
    values = dict(model=write_tiny_net(folder), dataset="npz",
                  data=str(write_images(folder / "images.npz")), images=5, selection="first",
                  seeds=[0], modes=["unconstrained", "fast"], popsize=8, maxiter=2,
                  n_samples=2, batch_images=2, device="cpu", out=str(out))
    values.update(overrides)
    return ExperimentConfig(**without_unread_maps(values))



@pytest.fixture
def tiny_run(tmp_path):
    """A factory of tiny run configs in ``tmp_path`` (``out`` relative to it)."""
    def make(out: str = "run", **overrides) -> ExperimentConfig:
        return tiny_run_config(tmp_path, tmp_path / out, **overrides)

    return make


@pytest.fixture
def tiny_images(tmp_path):
    """A factory of ``.npz`` image sets in ``tmp_path`` (:func:`write_images`)."""
    def make(name: str = "images.npz", **kwargs) -> Path:
        return write_images(tmp_path / name, **kwargs)

    return make


@pytest.fixture
def tiny_kit():
    """The helpers of this file for tests that need them directly (importing
    ``conftest`` by name would find another folder's)."""
    import types

    return types.SimpleNamespace(write_tiny_net=write_tiny_net, tiny_model=tiny_model,
                                 write_tiny_script=write_tiny_script,
                                 write_images=write_images)
