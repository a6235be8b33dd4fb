"""Any Captum attribution object as a sensitivity method (and so as a prior's map)."""

from __future__ import annotations

import torch
from torch import nn

from .base import SensitivityMethod


class CaptumSensitivity(SensitivityMethod):
    """Any Captum attribution object as a sensitivity method (and so as a prior's map).

    >>> from captum.attr import Occlusion, Saliency
    >>> SusceptibleSetPrior(0.5, sensitivity=CaptumSensitivity(Saliency(model)))
    >>> CaptumSensitivity(Occlusion(model), sliding_window_shapes=(3, 1, 1))

    Attributions of the input (``[B, C, H, W]``) are reduced over channels; a layer's
    (``[B, k, h, w]``, e.g. ``LayerGradCam``) are reduced and upsampled to the image.
    Captum attributes the model's raw output (logits for pixelprior's models): wrap the
    model to attribute probabilities. The method is bound to the attribution's
    ``forward_func``: an attack on another ``nn.Module`` refuses it; a forward function
    that is not a module (a wrapper) cannot be compared and is used as given.

    Args:
        attribution: a Captum attribution object (``attribute`` and ``forward_func``).
        reduction: as for :class:`~pixelprior.maps.SensitivityMethod`.
        normalization: as for :class:`~pixelprior.maps.SensitivityMethod`.
        percentile: as for :class:`~pixelprior.maps.SensitivityMethod`.
        **attribute_kwargs: passed to ``attribution.attribute(images, target=labels,
            ...)``.

    Raises:
        TypeError: ``attribution`` is not a Captum attribution object.
    """

    name = "captum"

    def __init__(self, attribution, reduction: str = "max_abs",
                 normalization: str = "minmax", percentile: float = 99.0,
                 **attribute_kwargs) -> None:
        model = getattr(attribution, "forward_func", None)
        if model is None or not hasattr(attribution, "attribute"):
            raise TypeError(f"{type(attribution).__name__} is not a Captum attribution "
                            "object (no forward_func / attribute)")
        super().__init__(model, reduction=reduction, normalization=normalization,
                         percentile=percentile)
        self.attribution = attribution
        self.attribute_kwargs = attribute_kwargs
        self.name = f"captum:{type(attribution).__name__}"

    def bind(self, model: nn.Module) -> SensitivityMethod:
        """This method on ``model``.

        Args:
            model: the attacked model.

        Returns:
            ``self`` (its attribution carries its own forward function).

        Raises:
            ValueError: the attribution's ``forward_func`` is another ``nn.Module``.
        """
        if isinstance(self.model, nn.Module):
            return super().bind(model)
        return self

    def config(self) -> dict:
        """Returns: the base settings, the attribution's keyword arguments (as text)."""
        return {**super().config(), "score": "model output",
                "attribute_kwargs": {k: repr(v) for k, v in self.attribute_kwargs.items()}}

    def attribute(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Captum's attributions of each image's class (the model's raw output).

        Args:
            images: float ``[B, C, H, W]`` in [0, 1].
            labels: int64 ``[B]``.

        Returns:
            float ``[B, C, H, W]`` (or a layer's ``[B, k, h, w]``).

        Raises:
            ValueError: the attribution is not 4-dimensional with one row per image.
        """
        with torch.enable_grad():
            out = self.attribution.attribute(images, target=labels, **self.attribute_kwargs)
        if isinstance(out, tuple):
            out = out[0]
        if out.ndim != 4 or out.shape[0] != images.shape[0]:
            raise ValueError(f"{self.name} returned attributions of shape {tuple(out.shape)};"
                             " a sensitivity map needs [B, C, H, W]")
        return out
