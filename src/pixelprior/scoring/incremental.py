"""One-pixel candidates scored from cached clean activations: only the cone of the
changed pixel is recomputed (:mod:`pixelprior.scoring._squeezenet_cone` for SqueezeNet-style
networks, :mod:`pixelprior.scoring.cone` for other ``torch.fx``-traceable ones)."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from .base import Scorer, decode_pixels
from .full import FullPassScorer


class IncrementalScorer(Scorer):
    """One-pixel candidates scored from cached clean activations
    (:class:`~pixelprior.scoring._squeezenet_cone.IncrementalForward` or
    :class:`~pixelprior.scoring.cone.FxIncrementalForward`); whole images by full passes
    of the same fast copy. ``note``: what :func:`make_scorer` has to say about the choice."""

    name = "incremental"
    max_pixels = 1
    note: str | None = None

    def __init__(self, model: nn.Module, engine, full: FullPassScorer,
                 precision: str = "fp32") -> None:
        super().__init__(model, precision)
        self.engine = engine
        self.full = full

    def prepare(self, images: torch.Tensor, per_image: bool = False):
        with self._autocast(images.device):
            if not per_image or images.shape[0] == 1:
                return self.engine.prepare(images)
            # the clean activations' last bits depend on the batch size: one image a call
            parts = [self.engine.prepare(images[i:i + 1]) for i in range(images.shape[0])]
            concat = getattr(self.engine, "concat", None)  # an engine's own cache type
            return concat(parts) if concat is not None else _concat_caches(parts)

    def logits(self, state, owner: torch.Tensor, genes: torch.Tensor) -> torch.Tensor:
        images = state.images
        x, y, colour = decode_pixels(genes[:, 0], images.shape[-2], images.shape[-1])
        with self._autocast(images.device):
            return self.engine(state, owner, y, x, colour)

    def image_logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.full.image_logits(images)


def _concat_caches(parts: list):
    """One :class:`~pixelprior.scoring._squeezenet_cone.CleanCache` of several images'
    caches."""
    first = parts[0]
    return replace(first, images=torch.cat([p.images for p in parts]),
                   padded=[None if t is None else torch.cat([p.padded[n] for p in parts])
                           for n, t in enumerate(first.padded)],
                   at_switch=torch.cat([p.at_switch for p in parts]))

