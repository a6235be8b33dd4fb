"""A loaded model's labels and accuracy on an image set, and the warning when it puts
nearly every image in one class."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..data import ImageSet, to_float
from ..data.sizes import format_size
from .channels import to_model_channels
from .errors import ModelInputError, ModelLoadError
from .spec import LoadedModel

ONE_CLASS_SHARE = 0.9

__all__ = ["ONE_CLASS_SHARE", "accuracy_on", "check_finite_scores", "one_class_warning",
           "predict_labels"]


def check_finite_scores(scores: torch.Tensor, start: int, total: int, name: str,
                        rows: int | None = None) -> None:
    """Refuse scores with NaN or ±inf: every label and accuracy taken of them would be
    meaningless.

    Args:
        scores: ``float [B, K]`` of images ``start .. start + B - 1``.
        start: the index of the first of them in the image set.
        total: the number of images in the set (for the message).
        name: the model's name.
        rows: the number of images given (``None``: not checked).

    Raises:
        ModelLoadError: not one row per image, or a row with a NaN or an infinite score.
    """
    if rows is not None and (scores.ndim != 2 or scores.shape[0] != rows):
        raise ModelLoadError(
            f"{name} returns scores of shape {list(scores.shape)} for {rows} images "
            f"({start}..{start + rows - 1} of the {total} given), not one row per image "
            "[B, K]; check its input size (--input-size)")
    bad = (~torch.isfinite(scores)).any(1).nonzero().flatten()
    if len(bad):
        raise ModelLoadError(
            f"{name} returns NaN or infinite scores for image {start + int(bad[0])} of the "
            f"{total} given" + (f" ({len(bad)} of the {len(scores)} in its batch)"
                                if len(bad) > 1 else "")
            + ": no label or accuracy can be read from them; check the model's normalisation "
            "(mean/std), its input size and its weights")


@torch.inference_mode()
def predict_labels(loaded: LoadedModel, images: ImageSet, device: str | torch.device = "cpu",
                   batch: int = 256) -> torch.Tensor:
    """The model's label for every image of ``images``.

    Args:
        loaded: the model.
        images: ``uint8 [N, 3, H, W]`` images at the model's size.
        device: where the forwards run.
        batch: images per forward.

    Returns:
        ``int64 [N]`` on the CPU.

    Raises:
        ModelInputError: images of another size than the model takes.
        ModelLoadError: the model returns NaN or infinite scores for an image.
    """
    expected, found = loaded.size_hw, tuple(images.images.shape[-2:])
    if expected is not None and found != expected:
        raise ModelInputError(f"the images are {format_size(found)} but {loaded.name} takes "
                              f"{format_size(expected)}; load them with size={loaded.input_size}")
    out = []
    for start in range(0, len(images), batch):
        chunk = to_float(images.images[start:start + batch]).to(device)
        scores = loaded.model(to_model_channels(chunk, loaded.channels))
        check_finite_scores(scores, start, len(images), loaded.name, len(chunk))
        out.append(scores.argmax(1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def accuracy_on(loaded: LoadedModel, images: ImageSet,
                device: str | torch.device = "cpu") -> float:
    """The share of ``images`` the model classifies correctly.

    Args:
        loaded: the model.
        images: ``uint8 [N, 3, H, W]`` images at the model's size, with labels.
        device: where the forwards run.

    Returns:
        The accuracy in [0, 1] (0.0 for no images).

    Raises:
        ModelInputError: labels beyond the model's classes, or images of another size.
        ModelLoadError: the model returns NaN or infinite scores for an image.
    """
    if len(images) and int(images.labels.max()) >= loaded.num_classes:
        raise ModelInputError(f"labels go up to {int(images.labels.max())} but "
                              f"{loaded.name} has {loaded.num_classes} classes")
    predicted = predict_labels(loaded, images, device)
    return float((predicted == images.labels).float().mean()) if len(images) else 0.0


def one_class_warning(preds: torch.Tensor | Sequence[int],
                      classes: Sequence[str] | int | None = None,
                      share: float = ONE_CLASS_SHARE, min_count: int = 10) -> str | None:
    """A warning when at least ``share`` of ``preds`` are one class (a model fed the
    wrong normalisation, size or channel order often does that).

    Args:
        preds: predicted labels, ``int [N]``.
        classes: class names (to name the class), or their number.
        share: the share that triggers the warning.
        min_count: fewer predictions than this never warn.

    Returns:
        The warning in words, or ``None``.
    """
    values = torch.as_tensor(preds).flatten().long()
    if values.numel() < max(min_count, 1):
        return None
    counts = torch.bincount(values - values.min())
    top = int(counts.argmax())
    label, count = top + int(values.min()), int(counts[top])
    if count < share * values.numel():
        return None
    names = classes if isinstance(classes, Sequence) and not isinstance(classes, str) else None
    named = f"class {label} ({names[label]!r})" if names and 0 <= label < len(names) else (
        f"class {label}")
    return (f"the model puts {count} of {values.numel()} images "
            f"({100 * count / values.numel():.0f}%) in {named}: check its normalisation "
            "(mean/std), input size and class order")
