"""SmoothGrad: the class-score gradient averaged over noisy copies of the image."""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_int
from .._streams import image_digest
from .base import SensitivityMethod


class SmoothGrad(SensitivityMethod):
    """SmoothGrad: the class-score gradient averaged over noisy copies of the image.

    ``noise_level`` is σ as a fraction of the input range, following Smilkov et al., who
    found 10–20% works best: the nominal range [0, 1], so σ = ``noise_level`` for every
    image (Smilkov et al.'s reference code takes each image's own max − min, which is
    smaller on a low-contrast image; Captum's ``NoiseTunnel`` takes σ as given). The
    noisy copies are not clipped to [0, 1] (as in the original method and in Captum).
    Noise is seeded by ``seed`` and each image's pixels, so maps are reproducible and do
    not depend on the batch; ``noise`` may be passed to :meth:`attribute` for tests.

    Args:
        model: the model, or ``None`` to bind later (see
            :class:`~pixelprior.maps.SensitivityMethod`).
        n_samples: noisy copies per image (>= 1).
        noise_level: σ of the Gaussian noise (>= 0).
        seed: the noise's seed.
        absolute: ``"after"`` (default): raw gradients are averaged (the original
            formulation) and the channel reduction takes absolute values afterwards, so
            gradients of opposite sign cancel; ``"before"``: the mean of |gradient|
            (Captum's ``NoiseTunnel(Saliency())`` default), so they add.
        **options: the options of every method (``score``, ``reduction``, ...: see
            :class:`~pixelprior.maps.SensitivityMethod`).

    Raises:
        ValueError: ``n_samples < 1``, ``noise_level < 0``, an unknown ``absolute``.
    """

    name = "smoothgrad"

    def __init__(self, model: nn.Module | None = None, n_samples: int = 50,
                 noise_level: float = 0.15, *, seed: int = 0, absolute: str = "after",
                 **options) -> None:
        super().__init__(model, **options)
        check_int("n_samples", n_samples, 1)
        if not noise_level >= 0:
            raise ValueError("noise_level must be >= 0")
        if absolute not in ("after", "before"):
            raise ValueError(f"absolute must be 'after' or 'before', got {absolute!r}")
        self.n_samples = n_samples
        self.noise_level = noise_level
        self.seed = seed
        self.absolute = absolute

    def config(self) -> dict:
        """Returns: the base settings plus ``n_samples``, ``noise_level``, ``seed``,
        ``absolute``."""
        return {**super().config(), "n_samples": self.n_samples,
                "noise_level": self.noise_level, "seed": self.seed, "absolute": self.absolute}

    def sample_noise(self, images: torch.Tensor) -> torch.Tensor:
        """The noise of each image, drawn on the CPU (same values on every device).

        Each image has its own stream, seeded by ``seed`` and a hash of the image, so an
        image's map does not depend on the other images of the batch.

        Args:
            images: float ``[B, C, H, W]``.

        Returns:
            ``[n_samples, B, C, H, W]`` of the images' dtype, on their device.
        """
        noise = torch.empty((self.n_samples, *images.shape))
        for i in range(images.shape[0]):
            generator = torch.Generator().manual_seed(image_digest(images[i], self.seed))
            noise[:, i] = torch.randn((self.n_samples, *images.shape[1:]), generator=generator)
        return (noise * self.noise_level).to(images.device, images.dtype)

    def attribute(self, images: torch.Tensor, labels: torch.Tensor,
                  noise: torch.Tensor | None = None) -> torch.Tensor:
        """The mean gradient over noisy copies (of |gradient| with ``absolute="before"``).

        Args:
            images: float ``[B, C, H, W]`` in [0, 1].
            labels: int64 ``[B]``.
            noise: ``[n, B, C, H, W]`` (default: :meth:`sample_noise`).

        Returns:
            float ``[B, C, H, W]``.
        """
        if noise is None:
            noise = self.sample_noise(images)
        n = noise.shape[0]
        noisy = (images.unsqueeze(0) + noise).reshape(-1, *images.shape[1:])
        grads = self._gradients(noisy, labels.repeat(n)).view(n, *images.shape)
        return (grads.abs() if self.absolute == "before" else grads).mean(0)

