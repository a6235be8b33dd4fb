"""Priors drawn from a sensitivity map: the susceptible set S (the paper), weights
proportional to the map, the top k, and the random-set control."""

from __future__ import annotations

from typing import Any

import torch

from .._checks import check_int
from .._streams import image_digest, stream
from ..maps import SensitivityMethod
from .base import PositionDistribution, Prior, _from_sets, check_tau


class SusceptibleSetPrior(Prior):
    """Uniform over the susceptible set ``S = {s > τ}`` (Kumar et al. 2019).

    >>> SusceptibleSetPrior(tau=0.5, sensitivity="smoothgrad", n_samples=50)

    Args:
        tau: the threshold τ in (0, 1) (0.5).
        sensitivity: the map's method, by name or as an instance (see
            :class:`~pixelprior.priors.Prior`).
        **sensitivity_kwargs: options of the method named.

    Raises:
        ValueError: τ outside (0, 1), an unknown method.
        TypeError: an option the method does not take.
    """

    name = "susceptible"

    def __init__(self, tau: float = 0.5, sensitivity: SensitivityMethod | str = "smoothgrad",
                 **sensitivity_kwargs: Any) -> None:
        super().__init__(sensitivity, **sensitivity_kwargs)
        self.tau = check_tau(tau)

    def config(self) -> dict:
        """Returns: the base record plus ``tau``."""
        return {**super().config(), "tau": self.tau}

    def from_sensitivity(self, maps, height, width, **_):
        """Uniform over ``maps > tau``; an empty set falls back to the whole image
        (see base class :meth:`Prior.from_sensitivity`)."""
        return _from_sets(maps.cpu() > self.tau, maps.cpu())


class WeightedPrior(Prior):
    """Probability proportional to the sensitivity ``s`` (no threshold).

    Args:
        sensitivity: the map's method, by name or as an instance (see
            :class:`~pixelprior.priors.Prior`).
        **sensitivity_kwargs: options of the method named.

    Raises:
        ValueError: an unknown method.
        TypeError: an option the method does not take.
    """

    name = "weighted"

    def from_sensitivity(self, maps, height, width, **_):
        """Proportional to ``maps``; an all-zero map falls back to uniform
        (see base class :meth:`Prior.from_sensitivity`)."""
        maps = maps.cpu()
        weights = maps.reshape(maps.shape[0], -1).double()
        total = weights.sum(1, keepdim=True)
        empty = (total <= 0).squeeze(1)
        weights = torch.where(empty[:, None], torch.ones_like(weights), weights)
        return PositionDistribution(weights / weights.sum(1, keepdim=True), height, width,
                                    empty, (weights > 0).sum(1), maps)


class TopKPrior(Prior):
    """Uniform over the ``k`` most sensitive pixels of each image.

    Args:
        k: pixels in the set (>= 1).
        sensitivity: the map's method, by name or as an instance (see
            :class:`~pixelprior.priors.Prior`).
        **sensitivity_kwargs: options of the method named.

    Raises:
        ValueError: ``k < 1``, an unknown method.
        TypeError: an option the method does not take.
    """

    name = "topk"

    def __init__(self, k: int = 50, sensitivity: SensitivityMethod | str = "smoothgrad",
                 **sensitivity_kwargs: Any) -> None:
        super().__init__(sensitivity, **sensitivity_kwargs)
        check_int("k", k, 1)
        self.k = int(k)

    def config(self) -> dict:
        """Returns: the base record plus ``k``."""
        return {**super().config(), "k": self.k}

    def from_sensitivity(self, maps, height, width, **_):
        """Uniform over the ``k`` highest values of each map
        (see base class :meth:`Prior.from_sensitivity`)."""
        maps = maps.cpu()
        flat = maps.reshape(maps.shape[0], -1)
        top = flat.topk(min(self.k, flat.shape[1]), dim=1).indices
        sets = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, top, True)
        # a constant map ranks nothing (its "top k" would be the tie-break's first k
        # positions): an empty set, so the whole image, said in fell_back
        sets[flat.amax(1) == flat.amin(1)] = False
        return _from_sets(sets.view_as(maps), maps)


class RandomSetPrior(Prior):
    """Control: a uniformly random set of pixels as large as ``S = {s > τ}``.

    Separates the effect of *where* the sensitivity points from the effect of merely
    starting in a smaller set. The set is drawn afresh for every image and attack seed
    (from a hash of the seed and the image), so over images and seeds the control is a
    random set, not one fixed pattern.

    Args:
        tau: the threshold τ in (0, 1) whose set's size the random set takes.
        sensitivity: the map's method, by name or as an instance (see
            :class:`~pixelprior.priors.Prior`).
        **sensitivity_kwargs: options of the method named.

    Raises:
        ValueError: τ outside (0, 1), an unknown method.
        TypeError: an option the method does not take.
    """

    name = "random_set"

    def __init__(self, tau: float = 0.5, sensitivity: SensitivityMethod | str = "smoothgrad",
                 **sensitivity_kwargs: Any) -> None:
        super().__init__(sensitivity, **sensitivity_kwargs)
        self.tau = check_tau(tau)

    def config(self) -> dict:
        """Returns: the base record plus ``tau``."""
        return {**super().config(), "tau": self.tau}

    def from_sensitivity(self, maps, height, width, *, seed: int = 0,
                         keys: list[int] | None = None):
        """A random set of ``|{maps > tau}|`` pixels per image, from the seed and key
        (see base class :meth:`Prior.from_sensitivity`)."""
        maps = maps.cpu()
        if keys is None:  # no image keys: each map's own bytes identify the image
            keys = [image_digest(maps[i], 0) for i in range(maps.shape[0])]
        flat = maps.reshape(maps.shape[0], -1)
        sizes = (flat > self.tau).sum(1)
        sets = torch.zeros_like(flat, dtype=torch.bool)
        for row, (size, key) in enumerate(zip(sizes.tolist(), keys, strict=True)):
            generator = stream(seed, key, tag="random_set")
            sets[row, torch.randperm(flat.shape[1], generator=generator)[:size]] = True
        return _from_sets(sets.view_as(maps), maps)

