"""Wrappers that change what a model takes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResizeInside(nn.Module):
    """Wrap a model so it takes the published 299×299 images and resizes inside.

    The attack then searches over the 299×299 pixels (a pixel of the published image),
    and the resize to the model's ``size`` is part of the differentiable model.
    """

    def __init__(self, model: nn.Module, size: int = 224) -> None:
        super().__init__()
        self.model = model
        self.size = size
        self.class_names = getattr(model, "class_names", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                          antialias=True)
        return self.model(x)

