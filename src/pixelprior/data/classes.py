"""Class names of the bundled datasets and models."""

from __future__ import annotations

from importlib import resources

from .base import CorruptDataError

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip



def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names in torchvision's order (bundled)."""
    text = (resources.files("pixelprior") / "assets" / "imagenet_classes.txt").read_text()
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != 1000:
        raise CorruptDataError(f"bundled imagenet_classes.txt has {len(names)} names, not 1000")
    return names

