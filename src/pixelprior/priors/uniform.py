"""Every pixel equally likely: the unconstrained one-pixel attack of Su et al."""

from __future__ import annotations

import torch
from torch import nn

from .base import PositionDistribution, Prior, _from_sets


class UniformPrior(Prior):
    """Every pixel equally likely: the unconstrained one-pixel attack. It takes no
    options and computes no map."""

    name = "uniform"
    needs_sensitivity = False

    def __init__(self) -> None:
        super().__init__()

    def distribution(self, model: nn.Module | None, images: torch.Tensor,
                     labels: torch.Tensor, *, seed: int = 0,
                     keys: list[int] | None = None) -> PositionDistribution:
        """Uniform over each image (see base class :meth:`Prior.distribution`)."""
        sets = torch.ones(images.shape[0], images.shape[-2], images.shape[-1], dtype=torch.bool)
        return _from_sets(sets)

    def from_sensitivity(self, maps, height, width, **_):  # pragma: no cover - not used
        """Not used: the uniform prior needs no map (see base class)."""
        raise NotImplementedError

