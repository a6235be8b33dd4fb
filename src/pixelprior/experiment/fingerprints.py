"""What a run ran on, as fingerprints: its model and every image it attacked.

TODO(merge): ``pixelprior.models.model_fingerprint`` and
``pixelprior.data.image_fingerprints`` are being written on other branches with exactly
these names and signatures; these are minimal stand-ins, to be replaced by imports of
those when the branches merge (``from ..models import model_fingerprint``, ``from ..data
import image_fingerprints``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

DIGITS = 16  # hex digits kept of a SHA-256


def model_fingerprint(loaded_or_module: Any, spec: str | None = None) -> str:  # TODO(merge)
    """A fingerprint of a model: the file's bytes for a file spec, the state dict
    otherwise (names, dtypes, shapes and values).

    Args:
        loaded_or_module: a :class:`~pixelprior.models.LoadedModel` or an ``nn.Module``.
        spec: the model spec it was loaded from (a file spec is hashed as a file).

    Returns:
        ``"file:HEX"`` or ``"state:HEX"``.
    """
    if spec is not None and Path(str(spec)).expanduser().is_file():
        digest = hashlib.sha256()
        with open(Path(str(spec)).expanduser(), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return f"file:{digest.hexdigest()[:DIGITS]}"
    module = getattr(loaded_or_module, "model", loaded_or_module)
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{list(tensor.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return f"state:{digest.hexdigest()[:DIGITS]}"


def image_fingerprints(images_uint8: torch.Tensor) -> list[str]:  # TODO(merge)
    """A fingerprint of each image: its shape and its pixels.

    Args:
        images_uint8: ``uint8 [N, C, H, W]``.

    Returns:
        ``N`` hex strings, one per image, in order.
    """
    out = []
    for image in images_uint8:
        digest = hashlib.sha256(f"{list(image.shape)};".encode())
        digest.update(image.detach().cpu().contiguous().numpy().tobytes())
        out.append(digest.hexdigest()[:DIGITS])
    return out
