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
        layer: any module of ``model`` whose output is ``[B, K, h, w]``, or its name
            (``"features.12"``, as ``model.named_modules()`` gives it; a wrapped model's
            layer by its own name too: one module whose name ends so); default the last
            module of its ``features`` Sequential (SqueezeNet and most torchvision-style
            CNNs; also a wrapped model's, such as ``--mean``/``--std``'s wrapper), else
            the last module to output a map of more than one position, found on the
            first images (a ResNet's last block, not a convolution of its skip branch).
        **options: the options of every method (see
            :class:`~pixelprior.maps.SensitivityMethod`).

    Raises:
        ValueError: no ``layer`` given and the model has no convolution; a layer that is
            not one of the model's modules, or a name none (or several) of them has.
    """

    name = "gradcam"

    def __init__(self, model: nn.Module | None = None,
                 layer: nn.Module | str | None = None, **options) -> None:
        if not (layer is None or isinstance(layer, (nn.Module, str))) or layer == "":
            raise ValueError("GradCAM's layer is one of the model's modules or its name "
                             f"(such as 'features.12'), got {layer!r}")
        super().__init__(model, **options)
        self.layer_name = layer if isinstance(layer, str) else None
        self.layer = None if isinstance(layer, str) else layer
        if model is not None:
            self._bound()

    def _bound(self) -> None:
        """The layer on the bound model: by default the last module of its ``features``
        Sequential (else found on the first images); a given layer must be one of the
        model's modules."""
        if self.layer_name is not None:
            self.layer = _named_layer(self.model, self.layer_name)
        elif self.layer is None:
            self.layer = _features_layer(self.model)
            if self.layer is None and not any(isinstance(m, nn.Conv2d)
                                              for m in self.model.modules()):
                raise ValueError(NO_LAYER)
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
        if self.layer is None:
            self.layer = _last_spatial_module(self.model, images[:1].detach())
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
                    activations = self._map_of(captured)
                    (grad,) = torch.autograd.grad(scores.sum(), activations)
                weights = grad.mean(dim=(2, 3), keepdim=True)
                maps.append(F.relu((weights * activations).sum(1, keepdim=True)).detach())
        finally:
            handle.remove()
        return torch.cat(maps)

    def _map_of(self, captured: list) -> torch.Tensor:
        """The layer's output on this call, where it is a map ``[B, K, h, w]`` (a review:
        a linear layer named as the layer raised a raw IndexError)."""
        named = repr(self.layer_name) if self.layer_name else type(self.layer).__name__
        if not captured:
            raise ValueError(f"the GradCAM layer {named} is not run by the model's forward "
                             "(a module held but not called); give one its forward calls")
        out = captured[-1]
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the GradCAM layer {named} outputs {shape}, not a map [B, K, "
                             "h, w]: give a convolutional layer or stage")
        return out

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


NO_LAYER = ("Grad-CAM needs a convolutional layer, and this model has none: pass "
            "GradCAM(model, layer=...) in Python, or leave gradcam out (evaluate-maps "
            "--methods gradient occlusion random, or another map)")


def _named_layer(model: nn.Module, name: str) -> nn.Module:
    """The module of ``model`` named ``name``, or the one module whose name ends with
    ``"." + name`` (a wrapped model's layer by its own name)."""
    named = dict(model.named_modules(remove_duplicate=False))  # (an alias by its name)
    if name in named:
        return named[name]
    ending = list({id(module): module for full, module in named.items()
                   if full.endswith("." + name)}.values())
    if len(ending) == 1:
        return ending[0]
    spatial = [full for full, module in named.items()
               if isinstance(module, nn.Conv2d | nn.Sequential) and full]
    hint = (f"several modules' names end with {name!r}; give the full name"
            if ending else "its convolutions and stages include "
            + ", ".join(spatial[-6:]) if spatial else "it has no convolution")
    raise ValueError(f"the GradCAM layer {name!r} is no module of the model ({hint})")


def _features_layer(model: nn.Module) -> nn.Module | None:
    """The last module of the model's ``features`` Sequential, or of a wrapped model's
    (one level down), else ``None``."""
    for name, module in model.named_modules():
        if (name == "features" or (name.count(".") == 1 and name.endswith(".features"))) \
                and isinstance(module, nn.Sequential) and len(module):
            return module[-1]
    return None


def _last_spatial_module(model: nn.Module, image: torch.Tensor) -> nn.Module:
    """The module whose forward ends last, on ``image``, with a map ``[B, K, h, w]`` of
    more than one position: the output of the last convolutional stage (a container's,
    where the stage is one), before a global pool."""
    last: list[nn.Module] = []

    def seen(module: nn.Module, _inputs, output) -> None:
        if isinstance(output, torch.Tensor) and output.ndim == 4 and \
                output.shape[-2] * output.shape[-1] > 1:
            last.append(module)

    hooks = [m.register_forward_hook(seen) for m in model.modules() if m is not model]
    try:
        with torch.no_grad():
            model(image)
    finally:
        for hook in hooks:
            hook.remove()
    if not last:
        raise ValueError(NO_LAYER)
    return last[-1]
