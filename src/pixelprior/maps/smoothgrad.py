"""SmoothGrad: the class-score gradient averaged over noisy copies of the image."""

from __future__ import annotations

import torch
from torch import nn

from .._streams import image_digest
from .base import SensitivityMethod


class SmoothGrad(SensitivityMethod):
    """SmoothGrad: the class-score gradient averaged over noisy copies of the image.

    ``noise_level`` is σ as a fraction of the input range (the inputs lie in [0, 1], so
    σ = ``noise_level``), following Smilkov et al., who found 10–20% works best. The
    noisy copies are not clipped to [0, 1] (as in the original method and in Captum).
    ``absolute="after"`` (default): raw gradients are averaged (the original formulation)
    and the channel reduction takes absolute values afterwards, so gradients of opposite
    sign cancel; ``"before"``: the mean of |gradient| (Captum's ``NoiseTunnel(Saliency())``
    default), so they add. Noise is seeded by ``seed`` and each image's pixels, so maps
    are reproducible; ``noise`` may be passed explicitly for tests.
    """

    name = "smoothgrad"

    def __init__(self, model: nn.Module, n_samples: int = 50, noise_level: float = 0.15,
                 *, seed: int = 0, absolute: str = "after", **kwargs) -> None:
        super().__init__(model, **kwargs)
        if n_samples < 1:
            raise ValueError("n_samples must be >= 1")
        if not noise_level >= 0:
            raise ValueError("noise_level must be >= 0")
        if absolute not in ("after", "before"):
            raise ValueError(f"absolute must be 'after' or 'before', got {absolute!r}")
        self.n_samples = n_samples
        self.noise_level = noise_level
        self.seed = seed
        self.absolute = absolute

    def config(self) -> dict:
        return {**super().config(), "n_samples": self.n_samples,
                "noise_level": self.noise_level, "seed": self.seed, "absolute": self.absolute}

    def sample_noise(self, images: torch.Tensor) -> torch.Tensor:
        """Noise ``[n, B, C, H, W]`` drawn on the CPU (same values on every device).

        Each image has its own stream, seeded by ``seed`` and a hash of the image, so an
        image's map does not depend on the other images of the batch.
        """
        noise = torch.empty((self.n_samples, *images.shape))
        for i in range(images.shape[0]):
            generator = torch.Generator().manual_seed(image_digest(images[i], self.seed))
            noise[:, i] = torch.randn((self.n_samples, *images.shape[1:]), generator=generator)
        return (noise * self.noise_level).to(images.device, images.dtype)

    def attribute(self, images: torch.Tensor, labels: torch.Tensor,
                  noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = self.sample_noise(images)
        n = noise.shape[0]
        noisy = (images.unsqueeze(0) + noise).reshape(-1, *images.shape[1:])
        grads = self._gradients(noisy, labels.repeat(n)).view(n, *images.shape)
        return (grads.abs() if self.absolute == "before" else grads).mean(0)

