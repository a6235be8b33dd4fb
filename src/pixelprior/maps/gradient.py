"""The input gradient of the class score (Simonyan et al. 2014)."""

from __future__ import annotations

import torch

from .base import SensitivityMethod


class VanillaGradient(SensitivityMethod):
    """The input gradient of the class score (Simonyan et al. 2014).

    Args:
        model: the model, or ``None`` to bind later.
        **options: the options of every method (see
            :class:`~pixelprior.maps.SensitivityMethod`).
    """

    name = "gradient"

    def attribute(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The gradient of each image's class score.

        Args:
            images: float ``[B, C, H, W]`` in [0, 1].
            labels: int64 ``[B]``.

        Returns:
            float ``[B, C, H, W]``.
        """
        return self._gradients(images, labels)

