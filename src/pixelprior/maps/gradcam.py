"""Grad-CAM on a convolutional ``layer``, upsampled bilinearly to the input size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import SensitivityMethod, class_scores


class GradCAM(SensitivityMethod):
    """Grad-CAM on a convolutional ``layer``, upsampled bilinearly to the input size.

    :meth:`attribute` returns ``[B, 1, H, W]`` = ReLU(Σₖ mean(∂y/∂Aₖ) Aₖ), upsampled.

    Args:
        model: the model, or ``None`` to bind later (the default layer is then found
            when the method is bound).
        layer: any module of ``model`` whose output is ``[B, K, h, w]``; default the last
            module of a ``features`` Sequential (SqueezeNet and most torchvision-style
            CNNs; also inside a wrapper such as ``--mean``/``--std``'s), else the model's
            last ``nn.Conv2d``.
        **options: the options of every method (see
            :class:`~pixelprior.maps.SensitivityMethod`).

    Raises:
        ValueError: no ``layer`` given and the model has no convolution.
    """

    name = "gradcam"

    def __init__(self, model: nn.Module | None = None, layer: nn.Module | None = None,
                 **options) -> None:
        super().__init__(model, **options)
        self.layer = layer
        if model is not None:
            self._bound()

    def _bound(self) -> None:
        """The layer on the bound model: by default the last module of its ``features``
        Sequential, else its last convolution; a given layer must be one of the model's
        modules."""
        if self.layer is None:
            self.layer = _default_layer(self.model)
        elif not any(module is self.layer for module in self.model.modules()):
            raise ValueError(f"the GradCAM layer ({type(self.layer).__name__}) is not a "
                             "module of the model; pass one of the model's own layers")

    def layer_attribute(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Grad-CAM at the layer's resolution (before upsampling).

        Args:
            images: float ``[B, C, H, W]`` in [0, 1].
            labels: int64 ``[B]``.

        Returns:
            float ``[B, 1, h, w]``, non-negative.
        """
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
        """Grad-CAM upsampled to the images.

        Args:
            images: float ``[B, C, H, W]`` in [0, 1].
            labels: int64 ``[B]``.

        Returns:
            float ``[B, 1, H, W]``.
        """
        cam = self.layer_attribute(images, labels)
        return F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)



def _default_layer(model: nn.Module) -> nn.Module:
    """The last module of the first ``features`` Sequential (the model's own, or a
    wrapped model's), else the last ``nn.Conv2d``; a model without either is refused."""
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] == "features" and isinstance(module, nn.Sequential) \
                and len(module):
            return module[-1]
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convolutions:
        raise ValueError("Grad-CAM needs a convolutional layer, and this model has none: "
                         "pass GradCAM(model, layer=...) in Python, or leave gradcam out "
                         "(evaluate-maps --methods gradient occlusion random, or another "
                         "map)")
    return convolutions[-1]
