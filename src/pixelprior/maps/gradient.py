"""The input gradient of the class score (Simonyan et al. 2014)."""

from __future__ import annotations

import torch

from .base import SensitivityMethod


class VanillaGradient(SensitivityMethod):
    """The input gradient of the class score (Simonyan et al. 2014)."""

    name = "gradient"

    def attribute(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self._gradients(images, labels)

