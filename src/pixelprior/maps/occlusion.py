"""The class score's drop when one pixel (all channels) is set to ``baseline``."""

from __future__ import annotations

import torch
from torch import nn

from .base import SensitivityMethod, class_scores


class Occlusion(SensitivityMethod):
    """The class score's drop when one pixel (all channels) is set to ``baseline``.

    attribution[b, :, y, x] = f(x_b) − f(x_b with pixel (y, x) := baseline), the same value
    in every channel (Captum's ``Occlusion`` with ``sliding_window_shapes=(C, 1, 1)``,
    stride 1). One forward per pixel, batched; no gradients. Of all maps it asks the
    attack's own question, at one color. The map ranks pixels by the drop's size with
    the default ``reduction="max_abs"`` (a pixel whose blackening *raises* the score ranks
    as high as one that lowers it by as much), by the drop itself with
    ``reduction="signed"``.

    Args:
        model: the model, or ``None`` to bind later.
        baseline: the value every channel of the occluded pixel takes.
        **options: the options of every method (see
            :class:`~pixelprior.maps.SensitivityMethod`).
    """

    name = "occlusion"
    needs_gradients = False

    def __init__(self, model: nn.Module | None = None, baseline: float = 0.0,
                 **options) -> None:
        super().__init__(model, **options)
        self.baseline = float(baseline)

    def config(self) -> dict:
        """Returns: the base settings plus ``baseline``."""
        return {**super().config(), "baseline": self.baseline}

    @torch.no_grad()
    def attribute(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The score's drop per occluded pixel.

        Args:
            images: float ``[B, C, H, W]`` in [0, 1].
            labels: int64 ``[B]``.

        Returns:
            float ``[B, C, H, W]``, the same value in every channel of a pixel.
        """
        batch, channels, height, width = images.shape
        positions = height * width
        clean = class_scores(self.model(images), labels, self.score)
        drops = torch.empty(batch, positions, device=images.device, dtype=images.dtype)
        rows = torch.arange(positions, device=images.device)
        for b in range(batch):
            for start in range(0, positions, self.batch_size):
                where = rows[start:start + self.batch_size]
                occluded = images[b].expand(len(where), -1, -1, -1).clone()
                occluded.permute(0, 2, 3, 1)[torch.arange(len(where)), where // width,
                                             where % width] = self.baseline
                scores = class_scores(self.model(occluded), labels[b].expand(len(where)),
                                      self.score)
                drops[b, start:start + len(where)] = clean[b] - scores
        return drops.view(batch, 1, height, width).expand(-1, channels, -1, -1)

