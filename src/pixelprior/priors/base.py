"""Priors over pixel positions: where the attack's initial population starts.

A prior turns a batch of images into a :class:`PositionDistribution`: for every image a
probability vector over its ``H·W`` pixels. The attack draws the ``(x, y)`` of its initial
candidates from it; later generations move freely (Kumar et al. 2019, Sec. 2.3).

- :class:`UniformPrior` — uniform over the image (the unconstrained attack of Su et al.);
- :class:`SusceptibleSetPrior` — uniform over ``S = {s > τ}`` (the paper's constrained
  mode);
- :class:`WeightedPrior` — proportional to the sensitivity ``s``;
- :class:`TopKPrior` — uniform over the ``k`` most sensitive pixels;
- :class:`RandomSetPrior` — a control: a random set of the same size as ``S``, drawn
  afresh per image and seed;
- :class:`OraclePrior` — the upper bound: the true vulnerable set from an exhaustive scan.

An empty set falls back to the whole image, and the distribution records that it did.
A new prior is one small class with a ``from_sensitivity`` method (or its own
``distribution``) and one line in :data:`~pixelprior.priors.PRIORS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from ..maps import SensitivityMethod, make_sensitivity


@dataclass
class PositionDistribution:
    """Per-image distributions over pixel positions (row-major ``y * W + x``)."""

    probabilities: torch.Tensor  # float [B, H*W], rows sum to 1
    height: int
    width: int
    fell_back: torch.Tensor  # bool [B]: the prior's set was empty, whole image used
    support_size: torch.Tensor  # int64 [B]: pixels with non-zero probability
    sensitivity: torch.Tensor | None = None  # float [B, H, W] in [0, 1], when computed
    susceptible: torch.Tensor | None = None  # bool [B, H, W], when the prior is set-based

    @staticmethod
    def cat(parts: list[PositionDistribution]) -> PositionDistribution:
        """Concatenate per-image distributions (all of the same image size)."""
        first = parts[0]
        optional = lambda name: (None if getattr(first, name) is None  # noqa: E731
                                 else torch.cat([getattr(p, name) for p in parts]))
        return PositionDistribution(
            torch.cat([p.probabilities for p in parts]), first.height, first.width,
            torch.cat([p.fell_back for p in parts]), torch.cat([p.support_size for p in parts]),
            optional("sensitivity"), optional("susceptible"))

    def sample(self, row: int, count: int, generator: torch.Generator) -> torch.Tensor:
        """Draw ``count`` positions for image ``row``: ``int64 [count, 2]`` as (x, y)."""
        flat = torch.multinomial(self.probabilities[row].cpu().double(), count,
                                 replacement=True, generator=generator)
        return torch.stack([flat % self.width, flat // self.width], dim=1)


def _from_sets(sets: torch.Tensor, sensitivity: torch.Tensor | None = None
               ) -> PositionDistribution:
    """Uniform distributions over boolean sets ``[B, H, W]``; empty sets fall back."""
    batch, height, width = sets.shape
    flat = sets.reshape(batch, -1)
    empty = ~flat.any(1)
    flat = flat | empty[:, None]
    weights = flat.double()
    return PositionDistribution(weights / weights.sum(1, keepdim=True), height, width, empty,
                                flat.sum(1), sensitivity, sets)


class Prior(ABC):
    """Base class of position priors."""

    name = "prior"
    needs_sensitivity = True

    def __init__(self, sensitivity: SensitivityMethod | str = "smoothgrad",
                 **sensitivity_kwargs) -> None:
        self.sensitivity = sensitivity
        self.sensitivity_kwargs = sensitivity_kwargs

    def sensitivity_method(self, model: nn.Module) -> SensitivityMethod:
        """The bound sensitivity method (built from its name on first use)."""
        if isinstance(self.sensitivity, SensitivityMethod):
            return self.sensitivity
        return make_sensitivity(self.sensitivity, model, **self.sensitivity_kwargs)

    def distribution(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                     *, seed: int = 0, keys: list[int] | None = None) -> PositionDistribution:
        """The position distribution of each image (computes sensitivity when needed).

        ``seed`` and ``keys`` (one per image; default: a hash of its pixels) are the
        attack's: priors with randomness of their own draw it per image and seed."""
        maps = None
        if self.needs_sensitivity:
            maps = self.sensitivity_method(model)(images, labels)
        return self.from_sensitivity(maps, images.shape[-2], images.shape[-1], seed=seed,
                                     keys=keys)

    @abstractmethod
    def from_sensitivity(self, maps: torch.Tensor | None, height: int, width: int, *,
                         seed: int = 0, keys: list[int] | None = None
                         ) -> PositionDistribution:
        """The distribution given sensitivity maps ``[B, H, W]`` (None if not needed);
        ``seed``/``keys`` as in :meth:`distribution`."""

    def config(self) -> dict:
        """Parameters that identify this prior (for experiment records)."""
        out: dict = {"prior": self.name}
        if self.needs_sensitivity:
            method = self.sensitivity
            out["sensitivity"] = (method.config() if isinstance(method, SensitivityMethod)
                                  else {"method": method, **self.sensitivity_kwargs})
        return out


def check_tau(tau: float) -> float:
    """τ must lie strictly between 0 and 1 (the sensitivity is normalised to [0, 1])."""
    tau = float(tau)
    if not 0.0 < tau < 1.0:
        raise ValueError(f"tau must lie in (0, 1), got {tau}")
    return tau

