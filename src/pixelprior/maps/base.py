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

import copy
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_int
from ..data import check_images
from ..models import GradientsUnavailableError, evaluation_mode, output_kind
from ..models.inference import IN_PLACE_GRADIENT, NO_GRADIENT

REDUCTIONS = ("max_abs", "mean_abs", "sum", "signed")
SCORES = ("logit", "probability", "log_probability")
NORMALIZATIONS = ("minmax", "percentile")
# the settings every method takes (the rest are a method's own: see the registry)
SHARED_OPTIONS = ("score", "reduction", "normalization", "percentile", "batch_size")


def class_scores(logits: torch.Tensor, labels: torch.Tensor, score: str) -> torch.Tensor:
    """The score of class ``labels[i]`` for row ``i``.

    A model that already returns probabilities (every row in [0, 1], summing to 1) is never
    soft-maxed again: ``probability`` takes its output as it is, ``log_probability`` and
    ``logit`` its logarithm (for such a model the logits are known only up to a constant
    per row, which the log-probability is).

    Args:
        logits: float ``[B, K]``, the model's output (logits or probabilities).
        labels: int64 ``[B]``.
        score: ``"logit"``, ``"probability"`` or ``"log_probability"``.

    Returns:
        float ``[B]``.

    Raises:
        ValueError: an unknown score, labels outside ``0..K-1``.
    """
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; use one of {SCORES}")
    classes = logits.shape[1]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ValueError(f"labels must lie in 0..{classes - 1} (the model has {classes} "
                         f"classes); got {int(labels.min())}..{int(labels.max())}")
    if output_kind(logits) == "probabilities":
        chosen = logits if score == "probability" else logits.clamp_min(1e-38).log()
        return chosen.gather(1, labels.view(-1, 1)).squeeze(1)
    if score == "probability":
        logits = logits.softmax(1)
    elif score == "log_probability":
        logits = logits.log_softmax(1)
    elif score != "logit":
        raise ValueError(f"unknown score {score!r}; use one of {SCORES}")
    return logits.gather(1, labels.view(-1, 1)).squeeze(1)


def reduce_channels(attributions: torch.Tensor, reduction: str = "max_abs") -> torch.Tensor:
    """Reduce attributions over channels to one value per pixel.

    Args:
        attributions: float ``[B, C, H, W]``.
        reduction: ``"max_abs"`` (max |a|, default), ``"mean_abs"`` (mean |a|),
            ``"sum"`` (|sum a|) or ``"signed"`` (sum a, its sign kept: for a map whose
            sign says a direction, e.g. occlusion's drop of the class score, where a
            pixel whose blackening raises the score then ranks low, not high).

    Returns:
        float ``[B, H, W]``.

    Raises:
        ValueError: an unknown reduction.
    """
    if reduction == "max_abs":
        return attributions.abs().amax(1)
    if reduction == "mean_abs":
        return attributions.abs().mean(1)
    if reduction == "sum":
        return attributions.sum(1).abs()
    if reduction == "signed":
        return attributions.sum(1)
    raise ValueError(f"unknown reduction {reduction!r}; use one of {REDUCTIONS}")


def normalize_maps(maps: torch.Tensor, method: str = "minmax",
                   percentile: float = 99.0) -> torch.Tensor:
    """Normalise each image's map to [0, 1].

    A constant map (no signal) becomes all zeros, so no pixel passes any threshold τ > 0
    and the susceptible-set prior falls back to the whole image (and records it).

    Args:
        maps: float ``[B, H, W]``.
        method: ``"minmax"``: (s − min) / (max − min); ``"percentile"``: s / (its
            ``percentile``-th percentile), clipped to 1 (Smilkov et al.'s visualisation:
            a few extreme pixels do not compress the rest).
        percentile: the percentile of ``"percentile"``, in (0, 100].

    Returns:
        float ``[B, H, W]`` in [0, 1].

    Raises:
        ValueError: an unknown method.

    With ``"percentile"``, a map whose percentile is not positive (a sparse map: fewer
    positive pixels than the top ``100 − percentile`` %) is divided by its largest value
    instead, so its few positive pixels keep their signal.
    """
    flat = maps.flatten(1)
    tiny = torch.finfo(flat.dtype).tiny
    if method == "percentile":
        top = torch.quantile(flat.double(), percentile / 100.0, dim=1, keepdim=True).to(
            flat.dtype)
        largest = flat.amax(1, keepdim=True)
        constant = (largest - flat.amin(1, keepdim=True)) <= 0
        top = torch.where(top > 0, top, largest)  # a sparse map: by its largest value
        scaled = (flat / top.clamp_min(tiny)).clamp(0, 1)
        out = torch.where(constant | (top <= 0), torch.zeros_like(flat), scaled)
        return out.view_as(maps)
    if method != "minmax":
        raise ValueError(f"unknown normalization {method!r}; use one of {NORMALIZATIONS}")
    low = flat.amin(1, keepdim=True)
    span = flat.amax(1, keepdim=True) - low
    out = torch.where(span > 0, (flat - low) / span.clamp_min(tiny), 0.0)
    return out.view_as(maps)


def _check_finite(attributions: torch.Tensor, method: str) -> None:
    """Refuse NaN or infinite attributions (a normalised map would hide them: all zeros,
    read as "no signal", or values outside [0, 1])."""
    bad = ~torch.isfinite(attributions.flatten(1)).all(1)
    if bool(bad.any()):
        rows = bad.nonzero().flatten().tolist()
        raise ValueError(f"the {method} map has NaN or infinite attributions on "
                         f"{len(rows)} image(s) (first: image {rows[0]}): the model's scores "
                         "or gradients overflow or divide by zero near these images (a "
                         "noisy copy outside [0, 1] included); make the model finite there, "
                         "or use another map")


class SensitivityMethod(ABC):
    """Base class of sensitivity methods: attributions of a model's class score, and the
    per-pixel map made of them.

    A method is bound to a model. It may be built without one (``SmoothGrad()``): a
    prior given to an attack then binds it to the attack's model (:meth:`bind`), and a
    method bound to another model than the attack's is refused, so a map is never
    computed on the wrong model.

    Args:
        model: the model whose class scores are attributed (any ``nn.Module`` mapping
            float images ``[B, C, H, W]`` to scores ``[B, K]``), or ``None`` to bind later.
        score: the class score attributed: ``"logit"``, ``"probability"`` or
            ``"log_probability"``.
        reduction: how channels are reduced to a pixel: ``"max_abs"``, ``"mean_abs"``,
            ``"sum"`` (|sum|), ``"signed"`` (sum; see :func:`reduce_channels`).
        normalization: ``"minmax"`` or ``"percentile"`` (see :func:`normalize_maps`).
        percentile: the percentile of ``"percentile"`` normalization, in (0, 100].
        batch_size: rows per forward/backward pass.

    Raises:
        ValueError: an unknown score, reduction or normalization, a percentile outside
            (0, 100].
    """

    name = "sensitivity"
    needs_gradients = True  # False: the method only queries the model (occlusion)

    def __init__(self, model: nn.Module | None = None, *, score: str = "logit",
                 reduction: str = "max_abs", normalization: str = "minmax",
                 percentile: float = 99.0, batch_size: int = 512) -> None:
        if score not in SCORES:
            raise ValueError(f"unknown score {score!r}; use one of {SCORES}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; use one of {REDUCTIONS}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {normalization!r}; use one of "
                             f"{NORMALIZATIONS}")
        check_int("batch_size", batch_size, 1)
        if not 0.0 < percentile <= 100.0:
            raise ValueError(f"percentile must lie in (0, 100], got {percentile}")
        self.model = model
        self.score = score
        self.reduction = reduction
        self.normalization = normalization
        self.percentile = percentile
        self.batch_size = batch_size

    def bind(self, model: nn.Module) -> SensitivityMethod:
        """This method on ``model``.

        Args:
            model: the model the maps must be computed on (an attack's).

        Returns:
            ``self`` when it is bound to ``model`` already; a copy bound to ``model`` when
            it was built without a model.

        Raises:
            ValueError: the method is bound to another model.
        """
        if self.model is model:
            return self
        if self.model is not None:
            raise ValueError(f"the {type(self).__name__} map was built on another model "
                             f"({type(self.model).__name__}) than the one attacked "
                             f"({type(model).__name__}); build it without a model, "
                             f"{type(self).__name__}(), or on the attacked model")
        bound = copy.copy(self)
        bound.model = model
        bound._bound()
        return bound

    def _bound(self) -> None:  # noqa: B027  (a hook: most methods need nothing here)
        """Finish binding a copy to ``self.model`` (a method with model-dependent
        defaults resolves them here)."""

    @abstractmethod
    def attribute(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Raw attributions of each image's class score.

        Args:
            images: float ``[B, C, H, W]`` in [0, 1].
            labels: int64 ``[B]``, the class attributed.

        Returns:
            float ``[B, C, H, W]`` (or ``[B, 1, h, w]`` for a layer's map).
        """

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The per-pixel sensitivity map of each image.

        Args:
            images: float ``[B, C, H, W]`` in [0, 1].
            labels: integer ``[B]``, the class whose score is attributed.

        Returns:
            float32 ``[B, H, W]`` in [0, 1]: attributions reduced over channels, upsampled
            to the image when coarser, normalised per image.

        Raises:
            ValueError: no model is bound, or bad images or labels.
            TypeError: images that are not float, labels that are not integers.
            RuntimeError: called under ``torch.inference_mode()`` (maps need gradients).
        """
        if self.model is None:
            raise ValueError(f"{type(self).__name__} was built without a model: bind it with "
                             ".bind(model), or give it to a prior of an attack (which binds "
                             "it to the attacked model)")
        check_images(images, labels)
        if torch.is_inference_mode_enabled():
            raise RuntimeError("sensitivity maps need gradients: call them outside "
                               "torch.inference_mode()")
        # tensors made under inference_mode cannot take part in autograd: plain copies
        images = images.clone() if images.is_inference() else images
        labels = labels.clone() if labels.is_inference() else labels
        with evaluation_mode(self.model):  # as attacks do: BatchNorm's running statistics
            # untouched, and an image's map independent of the batch it is computed in
            attributions = self.attribute(images, labels.to(torch.long)).detach()
        _check_finite(attributions, self.name)
        maps = reduce_channels(attributions.float(), self.reduction)
        if maps.shape[-2:] != images.shape[-2:]:  # a layer's coarser map: to image size
            maps = F.interpolate(maps[:, None], size=images.shape[-2:], mode="bilinear",
                                 align_corners=False)[:, 0]
        return normalize_maps(maps, self.normalization, self.percentile).detach()

    def config(self) -> dict:
        """Parameters that identify this method's output (for experiment records).

        Returns:
            A JSON-ready dict: the method's name and the settings that change its maps.
        """
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
                grad = _input_gradient(scores, chunk) if scores.requires_grad else None
                if grad is None:  # detached from the input (x.detach(), no_grad, numpy)
                    raise GradientsUnavailableError(
                        f"{self.name}: the model's {NO_GRADIENT}: use the occlusion map, or "
                        "a mode that needs no map (unconstrained, random_search:uniform)",
                        NO_GRADIENT)
            out[start:start + self.batch_size] = grad
        return out


def _input_gradient(scores: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor | None:
    """The gradient of the summed ``scores`` with respect to ``inputs``; ``None`` where
    they do not depend on them. A backward pass autograd refuses (a value it needs was
    overwritten in place: ``ReLU(inplace=True)`` then ``y += h``) is named in words."""
    try:
        return torch.autograd.grad(scores.sum(), inputs, allow_unused=True)[0]
    except RuntimeError as exc:
        if "inplace operation" not in str(exc):
            raise
        raise GradientsUnavailableError(
            f"the model's {IN_PLACE_GRADIENT} (make it out of place, e.g. "
            "ReLU(inplace=False)); or use the occlusion map, or a mode that needs no map "
            "(unconstrained, random_search:uniform)", IN_PLACE_GRADIENT) from None
