"""Input × gradient (Shrikumar et al. 2016): the gradient weighted by the pixel values."""

from __future__ import annotations

import torch

from .base import SensitivityMethod


class InputXGradient(SensitivityMethod):
    """The input times the input gradient of the class score (Captum's
    ``InputXGradient``): first-order attribution of the score to each pixel."""

    name = "input_x_gradient"

    def attribute(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return images * self._gradients(images, labels)
