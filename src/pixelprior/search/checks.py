"""Input checks every attack makes before any work, and the model's eval mode for a call.

One clear line per problem: images that are not float32 ``[B, C, H, W]`` in [0, 1],
labels or targets that are not integer class indices of the model, a targeted attack
whose target is the image's own class.
"""

from __future__ import annotations

import torch

from .._checks import check_int
from ..data import check_images
from ..models import evaluation_mode  # noqa: F401 - re-exported: search.evaluation_mode

__all__ = ["check_classes", "check_inputs", "check_int", "check_labels", "evaluation_mode"]


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


