"""Input checks every attack makes before any work, and the model's eval mode for a call.

One clear line per problem: images that are not float32 ``[B, C, H, W]`` in [0, 1],
labels or targets that are not integer class indices of the model, a targeted attack
whose target is the image's own class.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .._checks import check_int
from ..data import check_images
from ..models import (
    batch_dependence,
    evaluation_mode,  # noqa: F401 - re-exported: search.evaluation_mode
)
from ..models.channels import first_conv_channels

__all__ = ["check_batch_independent", "check_channels", "check_classes", "check_inputs",
           "check_int", "check_labels", "check_model", "check_order", "evaluation_mode"]


def check_model(model: object, what: str) -> nn.Module:
    """Refuse a model that is not an ``nn.Module`` (a plain function, say): attacks put
    it in eval mode, copy and trace it.

    Args:
        model: what was given.
        what: who takes it, for the message (``"OnePixelAttack"``).

    Returns:
        ``model``.

    Raises:
        TypeError: not an ``nn.Module``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"{what} takes an nn.Module (images [B, C, H, W] in [0, 1] → class "
                        f"scores [B, K]), got {type(model).__name__}: wrap a function in an "
                        "nn.Module whose forward calls it")
    return model


def check_batch_independent(model: nn.Module, images: torch.Tensor) -> None:
    """Refuse a model whose scores of an image change with the other images in its batch
    (BatchNorm on batch statistics): the attacks score candidates many to a batch, so
    their verdicts would be of other inputs than the image (the command line refuses
    such a model when it loads it).

    Args:
        model: the model, in eval mode.
        images: float ``[B, C, H, W]`` in [0, 1] (the first two are used).

    Raises:
        ValueError: the scores depend on the batch.
    """
    problem = batch_dependence(model, images)
    if problem is not None:
        raise ValueError(f"the model is not one classifier of each image: {problem}")


def check_channels(model: nn.Module, images: torch.Tensor) -> None:
    """Warn where 1-channel images meet a model whose first convolution takes more and
    gets copies of the one channel (a normalisation inside spreading gray to three
    channels by broadcasting): an attack of other inputs than the model is meant for.
    Only that case: it is the one that runs at all. A model that makes its channels
    itself (coordinates beside the gray, say) is not warned; where the first convolution
    cannot be watched (TorchScript), the warning is given on its count alone. A warning,
    not an error.

    Args:
        model: the model.
        images: float ``[B, C, H, W]``.
    """
    takes = first_conv_channels(model)
    if takes is None or takes <= 1 or images.ndim != 4 or images.shape[1] != 1:
        return
    if _first_conv_gets_other_channels(model, images[:1]):
        return
    warnings.warn(f"the images have {images.shape[1]} channel(s), and the model's first "
                  f"convolution takes {takes}: give images of {takes} channels "
                  "(pixelprior.models.to_model_channels converts RGB to gray) unless the "
                  "model makes its channels itself", RuntimeWarning, stacklevel=3)


def _first_conv_gets_other_channels(model: nn.Module, image: torch.Tensor) -> bool:
    """Whether the first ``nn.Conv2d`` the model runs on ``image`` receives channels that
    are not all affine copies of one (``False`` where none runs or it cannot be watched)."""
    seen: list[torch.Tensor] = []
    hooks = [m.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad(), evaluation_mode(model):
            model(image)
    except Exception:  # noqa: BLE001 - a model failing here fails in the attack, said there
        return False
    finally:
        for hook in hooks:
            hook.remove()
    if not seen or seen[0].ndim != 4 or seen[0].shape[1] <= 1:
        return False
    channels = seen[0][0].flatten(1).double().cpu()  # [C, H·W]
    centered = channels - channels.mean(1, keepdim=True)
    first = centered[0]
    if not first.any():  # a flat first channel: the others copy it where they are flat
        return bool(centered.abs().max() > 1e-5)
    # each channel's least-squares fit a · c₀ + b (a closed form: no solver to fail)
    slopes = centered @ first / first.dot(first)
    residual = (centered - slopes[:, None] * first).abs().max()
    return bool(residual > 1e-5 * (1 + channels.abs().max()))


def check_order(order: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """Refuse a scan order that is not, per image, every position once.

    Args:
        order: integer ``[B, H · W]``.
        shape: the images' shape ``[B, C, H, W]``.

    Returns:
        ``order``.

    Raises:
        TypeError: not an integer tensor.
        ValueError: another shape, or a row that is not a permutation of ``0..H·W-1``.
    """
    batch, positions = shape[0], shape[-2] * shape[-1]
    if not isinstance(order, torch.Tensor) or order.is_floating_point() or (
            order.dtype == torch.bool):
        raise TypeError(f"order must be an integer tensor, got "
                        f"{getattr(order, 'dtype', type(order).__name__)}")
    if tuple(order.shape) != (batch, positions):
        raise ValueError(f"order must have shape [{batch}, {positions}] (every position of "
                         f"each image once), got {list(order.shape)}")
    expected = torch.arange(positions, device=order.device)
    if batch and not torch.equal(order.sort(1).values, expected.expand(batch, -1)):
        raise ValueError(f"each row of order must hold every position 0..{positions - 1} "
                         "once (a position left out would be reported as not vulnerable)")
    return order


def check_labels(values: torch.Tensor, name: str = "labels") -> torch.Tensor:
    """Class indices as an ``int64`` tensor, refusing floats and bools (which would be
    truncated or cast silently).

    Args:
        values: integer ``[B]``.
        name: what the values are, for the message (``labels``, ``targets``).

    Returns:
        int64 ``[B]``.

    Raises:
        TypeError: ``values`` is not an integer tensor.
    """
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"{name} must be an integer tensor, got {type(values).__name__}")
    if values.dtype == torch.bool or values.is_floating_point() or values.is_complex():
        raise TypeError(f"{name} must be an integer tensor (class indices), got "
                        f"{values.dtype}")
    return values.to(torch.long)


def check_inputs(images: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None,
                 targeted: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate an attack's inputs before any work.

    An empty batch (``[0, C, H, W]`` with labels ``[0]``) passes: the attack returns an
    empty output for it.

    Args:
        images: float32 ``[B, C, H, W]`` in [0, 1].
        labels: the true classes, integer ``[B]``.
        targets: the target classes, integer ``[B]``, or ``None``.
        targeted: whether the attack is targeted (and so needs ``targets``).

    Returns:
        ``(labels, targets)`` as int64 on the images' device (``targets`` may be None).

    Raises:
        TypeError: images that are not a float32 tensor (float64 included: convert with
            ``images.float()``), labels or targets that are not integer tensors.
        ValueError: images of the wrong shape or outside [0, 1]; labels or targets of the
            wrong shape; targets missing for a targeted attack or given to an untargeted
            one; a target equal to the image's true class.
    """
    if (isinstance(images, torch.Tensor) and images.is_floating_point()
            and images.dtype != torch.float32):
        raise TypeError(f"images must be float32, got {images.dtype}; convert them with "
                        "images.float()")
    if isinstance(images, torch.Tensor) and images.ndim == 4 and images.shape[0] == 0:
        if not isinstance(labels, torch.Tensor) or labels.shape != (0,):
            raise ValueError(f"labels must have shape [0] for an empty batch, got "
                             f"{tuple(getattr(labels, 'shape', ()))}")
    else:
        check_images(images, labels)
    labels = check_labels(labels).to(images.device)
    if targeted and targets is None:
        raise ValueError("a targeted attack needs `targets`")
    if not targeted and targets is not None:
        raise ValueError("targets given to an untargeted attack; use targeted=True")
    if targets is None:
        return labels, None
    targets = check_labels(targets, "targets").to(images.device)
    if targets.shape != labels.shape:
        raise ValueError(f"targets must have shape [{labels.shape[0]}], got "
                         f"{tuple(targets.shape)}")
    same = (targets == labels).nonzero().flatten().tolist()
    if same:
        raise ValueError(f"the target is the true class of image(s) {same[:10]}: a targeted "
                         "attack needs a target other than the image's own class")
    return labels, targets


def check_classes(probs: torch.Tensor, labels: torch.Tensor,
                  targets: torch.Tensor | None) -> torch.Tensor:
    """Refuse labels or targets outside the model's classes.

    Args:
        probs: the model's probabilities of the clean images, float ``[B, K]``.
        labels: int64 ``[B]``.
        targets: int64 ``[B]`` or ``None``.

    Returns:
        ``probs``, unchanged.

    Raises:
        ValueError: a label or target outside ``0..K-1``.
    """
    classes = probs.shape[1]
    for name, values in (("labels", labels), ("targets", targets)):
        if values is not None and (values.min() < 0 or values.max() >= classes):
            raise ValueError(f"{name} must lie in 0..{classes - 1} (the model has "
                             f"{classes} classes); got {values.min()}..{values.max()}")
    return probs


