"""Sensitivity maps: which pixels does the true-class score react to?

One class per method, in the style of Captum's attribution API:

- :class:`VanillaGradient` — the input gradient of the class score;
- :class:`SmoothGrad` — the gradient averaged over ``n`` noisy copies (Smilkov et al. 2017),
  the method of the paper;
- :class:`IntegratedGradients` — path integral from a baseline (Sundararajan et al. 2017);
- :class:`GradCAM` — class-weighted activations of a convolutional layer (Selvaraju et al.);
- :class:`Occlusion` — the score's drop when one pixel (all channels) is set to a baseline:
  the natural map for a one-pixel attack (Zeiler & Fergus; Captum's ``Occlusion`` with a
  1×1 window);
- :class:`CaptumSensitivity` — any Captum attribution object (``Saliency``,
  ``Occlusion``, ``ShapleyValueSampling``, ``LayerGradCam`` ...) as a sensitivity method.

``method.attribute(images, labels)`` returns raw attributions (``[B, C, H, W]``, or
``[B, 1, h, w]`` for Grad-CAM); calling ``method(images, labels)`` returns the per-pixel
sensitivity map ``[B, H, W]``: reduced over channels, upsampled to the image when coarser,
and normalised to [0, 1] per image (min–max, or by a percentile with clipping).

The choices that change the map (and so the susceptible set S) are explicit: the class
score (logit, probability, log-probability), the channel reduction, for SmoothGrad whether
|·| is taken before or after averaging, the normalisation, ``n`` and σ.

These are hand-written rather than wrapping Captum so that the core library needs no
Captum install and so that noise samples of many images are batched into one backward
pass; tests check agreement with Captum's ``NoiseTunnel(Saliency)``,
``IntegratedGradients`` and ``LayerGradCam`` on the same inputs and noise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import image_digest

REDUCTIONS = ("max_abs", "mean_abs", "sum")
SCORES = ("logit", "probability", "log_probability")
NORMALIZATIONS = ("minmax", "percentile")


def class_scores(logits: torch.Tensor, labels: torch.Tensor, score: str) -> torch.Tensor:
    """The score of class ``labels[i]`` for row ``i``: logit, probability or log-probability."""
    if score == "probability":
        logits = logits.softmax(1)
    elif score == "log_probability":
        logits = logits.log_softmax(1)
    elif score != "logit":
        raise ValueError(f"unknown score {score!r}; use one of {SCORES}")
    return logits.gather(1, labels.view(-1, 1)).squeeze(1)


def reduce_channels(attributions: torch.Tensor, reduction: str = "max_abs") -> torch.Tensor:
    """``[B, C, H, W]`` to ``[B, H, W]``: max |a| (default), mean |a| or |sum a| over C."""
    if reduction == "max_abs":
        return attributions.abs().amax(1)
    if reduction == "mean_abs":
        return attributions.abs().mean(1)
    if reduction == "sum":
        return attributions.sum(1).abs()
    raise ValueError(f"unknown reduction {reduction!r}; use one of {REDUCTIONS}")


def normalize_maps(maps: torch.Tensor, method: str = "minmax",
                   percentile: float = 99.0) -> torch.Tensor:
    """Normalise each ``[H, W]`` map of ``[B, H, W]`` to [0, 1].

    ``minmax``: (s − min) / (max − min). ``percentile``: s / (its ``percentile``-th
    percentile), clipped to 1 (Smilkov et al.'s visualisation: a few extreme pixels do not
    compress the rest). A constant map (no signal) becomes all zeros, so no pixel passes any
    threshold τ > 0 and the susceptible-set prior falls back to the whole image (and
    records it).
    """
    flat = maps.flatten(1)
    tiny = torch.finfo(flat.dtype).tiny
    if method == "percentile":
        top = torch.quantile(flat.double(), percentile / 100.0, dim=1, keepdim=True).to(
            flat.dtype)
        constant = (flat.amax(1, keepdim=True) - flat.amin(1, keepdim=True)) <= 0
        scaled = (flat / top.clamp_min(tiny)).clamp(0, 1)
        out = torch.where(constant | (top <= 0), torch.zeros_like(flat), scaled)
        return out.view_as(maps)
    if method != "minmax":
        raise ValueError(f"unknown normalization {method!r}; use one of {NORMALIZATIONS}")
    low = flat.amin(1, keepdim=True)
    span = flat.amax(1, keepdim=True) - low
    out = torch.where(span > 0, (flat - low) / span.clamp_min(tiny), 0.0)
    return out.view_as(maps)


def check_images(images: torch.Tensor, labels: torch.Tensor) -> None:
    """Validate an attack/attribution batch: float [B, C, H, W] in [0, 1], int labels [B]."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise TypeError(f"images must be a float tensor in [0, 1], got "
                        f"{getattr(images, 'dtype', type(images))}; convert uint8 with "
                        "pixelprior.data.to_float")
    if images.ndim != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"images must lie in [0, 1] (the models normalise inside); got "
                         f"values in [{low:.4g}, {high:.4g}]")
    if not isinstance(labels, torch.Tensor) or labels.dtype not in (
            torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"labels must be an integer tensor, got "
                        f"{getattr(labels, 'dtype', type(labels))}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape [{images.shape[0]}], got {tuple(labels.shape)}")


class SensitivityMethod(ABC):
    """Base class: a gradient-based sensitivity method bound to a model."""

    name = "sensitivity"

    def __init__(self, model: nn.Module, *, score: str = "logit",
                 reduction: str = "max_abs", normalization: str = "minmax",
                 percentile: float = 99.0, batch_size: int = 512) -> None:
        if score not in SCORES:
            raise ValueError(f"unknown score {score!r}; use one of {SCORES}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; use one of {REDUCTIONS}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {normalization!r}; use one of "
                             f"{NORMALIZATIONS}")
        if not 0.0 < percentile <= 100.0:
            raise ValueError(f"percentile must lie in (0, 100], got {percentile}")
        self.model = model
        self.score = score
        self.reduction = reduction
        self.normalization = normalization
        self.percentile = percentile
        self.batch_size = batch_size

    @abstractmethod
    def attribute(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Raw attributions, ``[B, C, H, W]``."""

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-pixel sensitivity ``[B, H, W]`` in [0, 1]."""
        check_images(images, labels)
        if torch.is_inference_mode_enabled():
            raise RuntimeError("sensitivity maps need gradients: call them outside "
                               "torch.inference_mode()")
        # tensors made under inference_mode cannot take part in autograd: plain copies
        images = images.clone() if images.is_inference() else images
        labels = labels.clone() if labels.is_inference() else labels
        attributions = self.attribute(images, labels.to(torch.long)).detach()
        maps = reduce_channels(attributions.float(), self.reduction)
        if maps.shape[-2:] != images.shape[-2:]:  # a layer's coarser map: to image size
            maps = F.interpolate(maps[:, None], size=images.shape[-2:], mode="bilinear",
                                 align_corners=False)[:, 0]
        return normalize_maps(maps, self.normalization, self.percentile).detach()

    def config(self) -> dict:
        """Parameters that identify this method's output (for experiment records)."""
        out = {"method": self.name, "score": self.score, "reduction": self.reduction,
               "normalization": self.normalization}
        if self.normalization == "percentile":
            out["percentile"] = self.percentile
        return out

    def _gradients(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Gradient of each row's class score w.r.t. that row, in chunks of ``batch_size``.

        Rows are independent in an eval-mode model, so the gradient of the summed scores is
        each row's own gradient: one backward pass serves the whole chunk.
        """
        out = torch.empty_like(inputs)
        for start in range(0, inputs.shape[0], self.batch_size):
            chunk = inputs[start:start + self.batch_size].detach().requires_grad_(True)
            with torch.enable_grad():
                scores = class_scores(self.model(chunk), labels[start:start + self.batch_size],
                                      self.score)
                (grad,) = torch.autograd.grad(scores.sum(), chunk)
            out[start:start + self.batch_size] = grad
        return out


class VanillaGradient(SensitivityMethod):
    """The input gradient of the class score (Simonyan et al. 2014)."""

    name = "gradient"

    def attribute(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self._gradients(images, labels)


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


class IntegratedGradients(SensitivityMethod):
    """Integrated Gradients with Gauss–Legendre quadrature (Captum's default method).

    attribution = (x − x₀) · Σᵢ wᵢ ∇f(x₀ + αᵢ (x − x₀)); the baseline x₀ is black (0) by
    default, or any tensor broadcastable to the images.
    """

    name = "integrated_gradients"

    def __init__(self, model: nn.Module, steps: int = 50,
                 baseline: float | torch.Tensor = 0.0, **kwargs) -> None:
        super().__init__(model, **kwargs)
        if steps < 1:
            raise ValueError("steps must be >= 1")
        self.steps = steps
        self.baseline = baseline

    def config(self) -> dict:
        baseline = self.baseline if isinstance(self.baseline, float) else "tensor"
        return {**super().config(), "steps": self.steps, "baseline": baseline}

    def attribute(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
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


class Occlusion(SensitivityMethod):
    """The class score's drop when one pixel (all channels) is set to ``baseline``.

    attribution[b, :, y, x] = f(x_b) − f(x_b with pixel (y, x) := baseline), the same value
    in every channel (Captum's ``Occlusion`` with ``sliding_window_shapes=(C, 1, 1)``,
    stride 1). One forward per pixel, batched; no gradients. Of all maps it asks the
    attack's own question, at one colour.
    """

    name = "occlusion"

    def __init__(self, model: nn.Module, baseline: float = 0.0, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.baseline = float(baseline)

    def config(self) -> dict:
        return {**super().config(), "baseline": self.baseline}

    @torch.no_grad()
    def attribute(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
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


class CaptumSensitivity(SensitivityMethod):
    """Any Captum attribution object as a sensitivity method (and so as a prior's map).

    >>> from captum.attr import Occlusion, Saliency
    >>> SusceptibleSetPrior(0.5, sensitivity=CaptumSensitivity(Saliency(model)))
    >>> CaptumSensitivity(Occlusion(model), sliding_window_shapes=(3, 1, 1))

    ``attribute_kwargs`` go to ``attribution.attribute(images, target=labels, ...)``.
    Attributions of the input (``[B, C, H, W]``) are reduced over channels; a layer's
    (``[B, k, h, w]``, e.g. ``LayerGradCam``) are reduced and upsampled to the image. Captum
    attributes the model's raw output (logits for pixelprior's models): wrap the model to
    attribute probabilities.
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

    def config(self) -> dict:
        return {**super().config(), "score": "model output",
                "attribute_kwargs": {k: repr(v) for k, v in self.attribute_kwargs.items()}}

    def attribute(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            out = self.attribution.attribute(images, target=labels, **self.attribute_kwargs)
        if isinstance(out, tuple):
            out = out[0]
        if out.ndim != 4 or out.shape[0] != images.shape[0]:
            raise ValueError(f"{self.name} returned attributions of shape {tuple(out.shape)};"
                             " a sensitivity map needs [B, C, H, W]")
        return out


METHODS: dict[str, type[SensitivityMethod]] = {
    cls.name: cls for cls in (VanillaGradient, SmoothGrad, IntegratedGradients, GradCAM,
                              Occlusion)
}
# the options each method takes beyond the shared ones (score, reduction, normalization)
METHOD_OPTIONS = {"smoothgrad": ("n_samples", "noise_level", "absolute", "seed"),
                  "integrated_gradients": ("steps", "baseline"), "occlusion": ("baseline",),
                  "gradcam": ("layer",), "gradient": ()}


def make_sensitivity(name: str, model: nn.Module, **kwargs) -> SensitivityMethod:
    """Build a sensitivity method by name (``smoothgrad``, ``gradient``, ...). Options a
    method does not take (e.g. ``n_samples`` for ``gradient``) are dropped, so one set of
    settings serves every method."""
    try:
        cls = METHODS[name]
    except KeyError:
        raise ValueError(f"unknown sensitivity method {name!r}; use one of "
                         f"{sorted(METHODS)}") from None
    shared = ("score", "reduction", "normalization", "percentile", "batch_size")
    own = METHOD_OPTIONS.get(name, ())
    return cls(model, **{k: v for k, v in kwargs.items() if k in shared or k in own})
