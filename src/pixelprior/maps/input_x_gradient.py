"""Input × gradient (Shrikumar et al. 2016): the gradient weighted by the pixel values."""

from __future__ import annotations

import torch

from .base import SensitivityMethod


class InputXGradient(SensitivityMethod):
    """The input times the input gradient of the class score (Captum's
    ``InputXGradient``): first-order attribution of the score to each pixel.

    Args:
        model: the model, or ``None`` to bind later.
        **options: the options of every method (see
            :class:`~pixelprior.maps.SensitivityMethod`).
    """

    name = "input_x_gradient"

    def attribute(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Each image times its class score's gradient.

        Args:
            images: float ``[B, C, H, W]`` in [0, 1].
            labels: int64 ``[B]``.

        Returns:
            float ``[B, C, H, W]``.
        """
        return images * self._gradients(images, labels)
