"""Priors over pixel positions: where the attack's initial population starts.

A prior turns a batch of images into a :class:`PositionDistribution`: for every image a
probability vector over its ``H·W`` pixels. The attack draws the ``(x, y)`` of its initial
candidates from it; later generations move freely (Kumar et al. 2019, Sec. 2.3).

- :class:`UniformPrior` — uniform over the image (the unconstrained attack of Su et al.);
- :class:`SusceptibleSetPrior` — uniform over ``S = {s > τ}`` (the paper's constrained mode);
- :class:`WeightedPrior` — proportional to the sensitivity ``s``;
- :class:`TopKPrior` — uniform over the ``k`` most sensitive pixels;
- :class:`RandomSetPrior` — a control: a random set of the same size as ``S``, drawn
  afresh per image and seed;
- :class:`OraclePrior` — the upper bound: the true vulnerable set from an exhaustive scan.

An empty set falls back to the whole image, and the distribution records that it did.
A new prior is one small class with a ``weights`` method.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from .data import image_digest
from .sensitivity import SensitivityMethod, make_sensitivity


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


class UniformPrior(Prior):
    """Every pixel equally likely: the unconstrained one-pixel attack."""

    name = "uniform"
    needs_sensitivity = False

    def __init__(self) -> None:
        super().__init__()

    def distribution(self, model: nn.Module | None, images: torch.Tensor,
                     labels: torch.Tensor, *, seed: int = 0,
                     keys: list[int] | None = None) -> PositionDistribution:
        sets = torch.ones(images.shape[0], images.shape[-2], images.shape[-1], dtype=torch.bool)
        return _from_sets(sets)

    def from_sensitivity(self, maps, height, width, **_):  # pragma: no cover - not used
        raise NotImplementedError


def check_tau(tau: float) -> float:
    """τ must lie strictly between 0 and 1 (the sensitivity is normalised to [0, 1])."""
    tau = float(tau)
    if not 0.0 < tau < 1.0:
        raise ValueError(f"tau must lie in (0, 1), got {tau}")
    return tau


class SusceptibleSetPrior(Prior):
    """Uniform over ``S = {s > τ}`` (Kumar et al. 2019); τ = 0.5 by default."""

    name = "susceptible"

    def __init__(self, tau: float = 0.5, sensitivity: SensitivityMethod | str = "smoothgrad",
                 **sensitivity_kwargs) -> None:
        super().__init__(sensitivity, **sensitivity_kwargs)
        self.tau = check_tau(tau)

    def config(self) -> dict:
        return {**super().config(), "tau": self.tau}

    def from_sensitivity(self, maps, height, width, **_):
        return _from_sets(maps.cpu() > self.tau, maps.cpu())


class WeightedPrior(Prior):
    """Probability proportional to the sensitivity ``s`` (no threshold)."""

    name = "weighted"

    def from_sensitivity(self, maps, height, width, **_):
        maps = maps.cpu()
        weights = maps.reshape(maps.shape[0], -1).double()
        total = weights.sum(1, keepdim=True)
        empty = (total <= 0).squeeze(1)
        weights = torch.where(empty[:, None], torch.ones_like(weights), weights)
        return PositionDistribution(weights / weights.sum(1, keepdim=True), height, width,
                                    empty, (weights > 0).sum(1), maps)


class TopKPrior(Prior):
    """Uniform over the ``k`` most sensitive pixels of each image."""

    name = "topk"

    def __init__(self, k: int = 50, sensitivity: SensitivityMethod | str = "smoothgrad",
                 **sensitivity_kwargs) -> None:
        super().__init__(sensitivity, **sensitivity_kwargs)
        if k < 1:
            raise ValueError("k must be >= 1")
        self.k = int(k)

    def config(self) -> dict:
        return {**super().config(), "k": self.k}

    def from_sensitivity(self, maps, height, width, **_):
        maps = maps.cpu()
        flat = maps.reshape(maps.shape[0], -1)
        top = flat.topk(min(self.k, flat.shape[1]), dim=1).indices
        sets = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, top, True)
        return _from_sets(sets.view_as(maps), maps)


class RandomSetPrior(Prior):
    """Control: a uniformly random set of pixels as large as ``S = {s > τ}``.

    Separates the effect of *where* the sensitivity points from the effect of merely
    starting in a smaller set. The set is drawn afresh for every image and attack seed
    (from a hash of the seed and the image), so over images and seeds the control is a
    random set, not one fixed pattern.
    """

    name = "random_set"

    def __init__(self, tau: float = 0.5, sensitivity: SensitivityMethod | str = "smoothgrad",
                 **sensitivity_kwargs) -> None:
        super().__init__(sensitivity, **sensitivity_kwargs)
        self.tau = check_tau(tau)

    def config(self) -> dict:
        return {**super().config(), "tau": self.tau}

    def from_sensitivity(self, maps, height, width, *, seed: int = 0,
                         keys: list[int] | None = None):
        maps = maps.cpu()
        if keys is None:  # no image keys: each map's own bytes identify the image
            keys = [image_digest(maps[i], 0) for i in range(maps.shape[0])]
        flat = maps.reshape(maps.shape[0], -1)
        sizes = (flat > self.tau).sum(1)
        sets = torch.zeros_like(flat, dtype=torch.bool)
        for row, (size, key) in enumerate(zip(sizes.tolist(), keys, strict=True)):
            digest = hashlib.blake2b(f"random_set:{seed}:{key}".encode(), digest_size=8)
            generator = torch.Generator().manual_seed(
                int.from_bytes(digest.digest(), "little") >> 1)
            sets[row, torch.randperm(flat.shape[1], generator=generator)[:size]] = True
        return _from_sets(sets.view_as(maps), maps)


class OraclePrior(Prior):
    """Upper bound: start inside the *true* vulnerable set of each image.

    ``scan`` is an exhaustive susceptibility scan (:mod:`pixelprior.susceptibility`: a
    folder holding ``maps.npz``, the file, or a loaded
    :class:`~pixelprior.susceptibility.SusceptibilityMaps`); images are matched by their
    pixels. The set is every position where some colour of the scan's grid changes the
    label; the map (``sensitivity``) ranks positions by how far the best colour there
    pushes the true class below the runner-up, so every vulnerable position ranks above
    every other. An image with no vulnerable position falls back to the whole image.
    """

    name = "oracle"
    needs_sensitivity = False

    def __init__(self, scan) -> None:
        super().__init__()
        from .susceptibility import SusceptibilityMaps

        self.scan = scan if isinstance(scan, SusceptibilityMaps) else (
            SusceptibilityMaps.load(scan))

    def config(self) -> dict:
        return {"prior": self.name, "scan": self.scan.source}

    def distribution(self, model: nn.Module | None, images: torch.Tensor,
                     labels: torch.Tensor, *, seed: int = 0,
                     keys: list[int] | None = None) -> PositionDistribution:
        rows = self.scan.rows_of(images)
        sets = torch.from_numpy(self.scan.vulnerable[rows])
        return _from_sets(sets, torch.from_numpy(self.scan.oracle_map()[rows]))

    def from_sensitivity(self, maps, height, width, **_):  # pragma: no cover - not used
        raise NotImplementedError


PRIORS: dict[str, type[Prior]] = {
    cls.name: cls for cls in (UniformPrior, SusceptibleSetPrior, WeightedPrior, TopKPrior,
                              RandomSetPrior, OraclePrior)
}
# The paper's two modes, by the names the CLI and the experiments use.
MODE_ALIASES = {"unconstrained": "uniform", "constrained": "susceptible"}


def make_prior(name: str, **kwargs) -> Prior:
    """Build a prior by name; ``unconstrained``/``constrained`` are the paper's modes."""
    key = MODE_ALIASES.get(name, name)
    try:
        cls = PRIORS[key]
    except KeyError:
        known = sorted([*PRIORS, *MODE_ALIASES])
        raise ValueError(f"unknown prior {name!r}; use one of {known}") from None
    return cls(**kwargs) if key != "uniform" else cls()
