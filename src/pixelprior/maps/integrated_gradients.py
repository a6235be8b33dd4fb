"""Integrated Gradients with Gauss–Legendre quadrature (Captum's default method)."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from torch import nn

from .base import SensitivityMethod


class IntegratedGradients(SensitivityMethod):
    """Integrated Gradients with Gauss–Legendre quadrature (Captum's default method).

    attribution = (x − x₀) · Σᵢ wᵢ ∇f(x₀ + αᵢ (x − x₀)).

    Args:
        model: the model, or ``None`` to bind later.
        steps: quadrature nodes (>= 1).
        baseline: x₀, black (0) by default, or any tensor broadcastable to the images.
        **options: the options of every method (see
            :class:`~pixelprior.maps.SensitivityMethod`).

    Raises:
        ValueError: ``steps < 1``.
    """

    name = "integrated_gradients"

    def __init__(self, model: nn.Module | None = None, steps: int = 50,
                 baseline: float | torch.Tensor = 0.0, **options) -> None:
        super().__init__(model, **options)
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        self.steps = steps
        self.baseline = baseline

    def config(self) -> dict:
        """Returns: the base settings plus ``steps`` and ``baseline``."""
        baseline = self.baseline if isinstance(self.baseline, float) else "tensor"
        return {**super().config(), "steps": self.steps, "baseline": baseline}

    def attribute(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The path integral of gradients from the baseline to each image.

        Args:
            images: float ``[B, C, H, W]`` in [0, 1].
            labels: int64 ``[B]``.

        Returns:
            float ``[B, C, H, W]``.
        """
        nodes, weights = np.polynomial.legendre.leggauss(self.steps)
        alphas = torch.tensor((nodes + 1) / 2, dtype=images.dtype, device=images.device)
        weights = torch.tensor(weights / 2, dtype=images.dtype, device=images.device)
        baseline = torch.as_tensor(self.baseline, dtype=images.dtype,
                                   device=images.device).expand_as(images)
        delta = images - baseline
        path = baseline.unsqueeze(0) + alphas.view(-1, 1, 1, 1, 1) * delta.unsqueeze(0)
        grads = self._gradients(path.reshape(-1, *images.shape[1:]), labels.repeat(self.steps))
        grads = grads.view(self.steps, *images.shape)
        return delta * (weights.view(-1, 1, 1, 1, 1) * grads).sum(0)

