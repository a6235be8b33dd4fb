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
from typing import Any

import torch
from torch import nn

from ..maps import SensitivityMethod, check_method_options, make_sensitivity


@dataclass
class PositionDistribution:
    """Per-image distributions over pixel positions (row-major ``y * W + x``).

    Args:
        probabilities: float64 ``[B, H*W]``, rows summing to 1.
        height: ``H``.
        width: ``W``.
        fell_back: bool ``[B]``: the prior's set was empty, so the whole image was used.
        support_size: int64 ``[B]``: positions with non-zero probability.
        sensitivity: float ``[B, H, W]`` in [0, 1], the map, when one was computed.
        susceptible: bool ``[B, H, W]``, the start set, when the prior is set-based.
    """

    probabilities: torch.Tensor
    height: int
    width: int
    fell_back: torch.Tensor
    support_size: torch.Tensor
    sensitivity: torch.Tensor | None = None
    susceptible: torch.Tensor | None = None

    @staticmethod
    def cat(parts: list[PositionDistribution]) -> PositionDistribution:
        """Concatenate per-image distributions.

        Args:
            parts: distributions of images of one size (at least one).

        Returns:
            One distribution of every image, in order.
        """
        first = parts[0]
        optional = lambda name: (None if getattr(first, name) is None  # noqa: E731
                                 else torch.cat([getattr(p, name) for p in parts]))
        return PositionDistribution(
            torch.cat([p.probabilities for p in parts]), first.height, first.width,
            torch.cat([p.fell_back for p in parts]), torch.cat([p.support_size for p in parts]),
            optional("sensitivity"), optional("susceptible"))

    def sample(self, row: int, count: int, generator: torch.Generator) -> torch.Tensor:
        """Draw positions of one image (with replacement).

        Args:
            row: the image's row.
            count: positions to draw.
            generator: the image's random stream.

        Returns:
            int64 ``[count, 2]``, each ``(x, y)``.
        """
        flat = torch.multinomial(self.probabilities[row].cpu().double(), count,
                                 replacement=True, generator=generator)
        return torch.stack([flat % self.width, flat // self.width], dim=1)


def _from_sets(sets: torch.Tensor, sensitivity: torch.Tensor | None = None
               ) -> PositionDistribution:
    """Uniform distributions over boolean sets ``[B, H, W]``; empty sets fall back to
    the whole image (and record it)."""
    batch, height, width = sets.shape
    flat = sets.reshape(batch, -1)
    empty = ~flat.any(1)
    flat = flat | empty[:, None]
    weights = flat.double()
    return PositionDistribution(weights / weights.sum(1, keepdim=True), height, width, empty,
                                flat.sum(1), sensitivity, sets)


class Prior(ABC):
    """Base class of position priors.

    A prior that needs a sensitivity map takes the method by name (built on the attacked
    model when the map is needed) or as an instance; an instance built without a model
    is bound to the attacked model, one bound to another model is refused.

    Args:
        sensitivity: a method name of :data:`~pixelprior.maps.METHODS`, or a
            :class:`~pixelprior.maps.SensitivityMethod`.
        **sensitivity_kwargs: options of the method named (only with a name).

    Raises:
        ValueError: an unknown method name.
        TypeError: ``sensitivity`` of another type, an option the named method does not
            take, or options given with a method instance (set them on the instance).
    """

    name = "prior"
    needs_sensitivity = True

    def __init__(self, sensitivity: SensitivityMethod | str = "smoothgrad",
                 **sensitivity_kwargs: Any) -> None:
        owner = f"{type(self).__name__}()"
        if isinstance(sensitivity, SensitivityMethod):
            if sensitivity_kwargs:
                raise TypeError(f"{owner} got options {sorted(sensitivity_kwargs)} with a "
                                f"{type(sensitivity).__name__} instance; set them on the "
                                "instance")
        elif isinstance(sensitivity, str):
            check_method_options(sensitivity, sensitivity_kwargs, owner)
        else:
            raise TypeError(f"sensitivity must be a method name or a SensitivityMethod, got "
                            f"{type(sensitivity).__name__}")
        self.sensitivity = sensitivity
        self.sensitivity_kwargs = sensitivity_kwargs

    def sensitivity_method(self, model: nn.Module) -> SensitivityMethod:
        """The sensitivity method on ``model``.

        Args:
            model: the attacked model.

        Returns:
            The method built from its name on ``model``, or the instance bound to
            ``model``.

        Raises:
            ValueError: the instance is bound to another model.
        """
        if isinstance(self.sensitivity, SensitivityMethod):
            return self.sensitivity.bind(model)
        return make_sensitivity(self.sensitivity, model, **self.sensitivity_kwargs)

    def check_model(self, model: nn.Module) -> None:
        """Refuse, before any work, a map bound to another model than ``model``.

        Args:
            model: the model an attack will attack.

        Raises:
            ValueError: the prior's sensitivity method is bound to another model.
        """
        method = getattr(self, "sensitivity", None)  # a subclass may keep no method
        if self.needs_sensitivity and isinstance(method, SensitivityMethod):
            method.bind(model)

    def distribution(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                     *, seed: int = 0, keys: list[int] | None = None) -> PositionDistribution:
        """The position distribution of each image (computes its map when needed).

        Args:
            model: the attacked model (the map's model).
            images: float ``[B, C, H, W]`` in [0, 1].
            labels: int64 ``[B]``.
            seed: the attack's seed: priors with randomness of their own draw it per image
                and seed.
            keys: one random-stream key per image (default: a hash of its pixels).

        Returns:
            The distribution of the ``B`` images.
        """
        maps = None
        if self.needs_sensitivity:
            maps = self.sensitivity_method(model)(images, labels)
        return self.from_sensitivity(maps, images.shape[-2], images.shape[-1], seed=seed,
                                     keys=keys)

    @abstractmethod
    def from_sensitivity(self, maps: torch.Tensor | None, height: int, width: int, *,
                         seed: int = 0, keys: list[int] | None = None
                         ) -> PositionDistribution:
        """The distribution given the images' maps.

        Args:
            maps: float ``[B, H, W]`` in [0, 1] (``None`` when the prior needs none).
            height: ``H``.
            width: ``W``.
            seed: as in :meth:`distribution`.
            keys: as in :meth:`distribution`.

        Returns:
            The distribution of the ``B`` images.
        """

    def config(self) -> dict:
        """Parameters that identify this prior (for experiment records).

        Returns:
            A JSON-ready dict: the prior's name and its map's settings.
        """
        out: dict = {"prior": self.name}
        if self.needs_sensitivity:
            method = self.sensitivity
            out["sensitivity"] = (method.config() if isinstance(method, SensitivityMethod)
                                  else {"method": method, **self.sensitivity_kwargs})
        return out


def check_tau(tau: float) -> float:
    """Check τ, the threshold of the susceptible set.

    Args:
        tau: must lie strictly between 0 and 1 (the maps are normalised to [0, 1]).

    Returns:
        τ as a float.

    Raises:
        TypeError: τ given as text or a bool (a number is meant).
        ValueError: τ outside (0, 1).
    """
    if isinstance(tau, (str, bytes, bool)):
        raise TypeError(f"tau must be a number in (0, 1), got {type(tau).__name__} {tau!r}")
    tau = float(tau)
    if not 0.0 < tau < 1.0:
        raise ValueError(f"tau must lie in (0, 1), got {tau}")
    return tau

