"""Helpers shared by the models tests: writing a model in each format, probe-sized
random images, and the one-line check of error messages."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn


def random_images(count: int = 3, side: int = 32, channels: int = 3, seed: int = 1
                  ) -> torch.Tensor:
    """``float32 [count, channels, side, side]`` in [0, 1), seeded."""
    return torch.rand(count, channels, side, side,
                      generator=torch.Generator().manual_seed(seed))


def save_torchscript(model: nn.Module, path: Path, trace: bool = False,
                     example: torch.Tensor | None = None) -> Path:
    """``model`` scripted (or traced on ``example``) in the mode it is in, saved at
    ``path``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = (torch.jit.trace(model, example if example is not None
                                    else random_images(1), check_trace=False)
                    if trace else torch.jit.script(model))
    exported.save(str(path))
    return path


def assert_one_line(message: str) -> None:
    """An error message fit for the terminal: one line, no escape codes, short."""
    assert "\n" not in message and "\x1b" not in message and len(message) < 700, message


@pytest.fixture
def torchscript_file(tmp_path) -> Callable[..., Path]:
    """``torchscript_file(model, name, trace=False)``: the model saved as TorchScript in
    ``tmp_path``."""
    def save(model: nn.Module, name: str = "net.pt", trace: bool = False,
             example: torch.Tensor | None = None) -> Path:
        return save_torchscript(model, tmp_path / name, trace, example)
    return save


@pytest.fixture
def pickle_file(tmp_path) -> Callable[..., Path]:
    """``pickle_file(model, name)``: ``torch.save(model)`` in ``tmp_path``."""
    def save(model: nn.Module, name: str = "net.pkl") -> Path:
        torch.save(model, tmp_path / name)
        return tmp_path / name
    return save


@pytest.fixture(name="random_images")
def random_images_fixture() -> Callable[..., torch.Tensor]:
    """:func:`random_images` as a fixture: ``random_images(count, side, channels, seed)``."""
    return random_images


@pytest.fixture
def one_line() -> Callable[[str], None]:
    """:func:`assert_one_line` as a fixture."""
    return assert_one_line
