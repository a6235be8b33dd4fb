"""Grad-CAM on a convolutional ``layer``, upsampled bilinearly to the input size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import SensitivityMethod, class_scores


class GradCAM(SensitivityMethod):
    """Grad-CAM on a convolutional ``layer``, upsampled bilinearly to the input size.

    ``layer`` defaults to the last module of ``model.features`` (SqueezeNet and most
    torchvision-style CNNs); pass any module whose output is ``[B, K, h, w]``.
    ``attribute`` returns ``[B, 1, H, W]`` = ReLU(Σₖ mean(∂y/∂Aₖ) Aₖ), upsampled.
    """

    name = "gradcam"

    def __init__(self, model: nn.Module, layer: nn.Module | None = None, **kwargs) -> None:
        super().__init__(model, **kwargs)
        if layer is None:
            features = getattr(model, "features", None)
            if not isinstance(features, nn.Sequential):
                raise ValueError("GradCAM needs `layer=` for models without a .features "
                                 "Sequential")
            layer = features[-1]
        self.layer = layer

    def layer_attribute(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Grad-CAM at the layer's resolution, ``[B, 1, h, w]`` (before upsampling)."""
        captured: list[torch.Tensor] = []
        handle = self.layer.register_forward_hook(lambda m, i, o: captured.append(o))
        try:
            maps = []
            for start in range(0, images.shape[0], self.batch_size):
                captured.clear()
                chunk = images[start:start + self.batch_size].detach()
                with torch.enable_grad():
                    scores = class_scores(self.model(chunk),
                                          labels[start:start + self.batch_size], self.score)
                    activations = captured[-1]
                    (grad,) = torch.autograd.grad(scores.sum(), activations)
                weights = grad.mean(dim=(2, 3), keepdim=True)
                maps.append(F.relu((weights * activations).sum(1, keepdim=True)).detach())
        finally:
            handle.remove()
        return torch.cat(maps)

    def attribute(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cam = self.layer_attribute(images, labels)
        return F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)

