"""Image keys and random streams: the one place where both are derived.

Two keys exist, for two jobs, and each is derived here only:

- :func:`image_key` (an ``int``, pixels *and* label) seeds an image's random stream, so
  an attack's randomness depends on the image itself, never on its batch or position;
- :func:`pixel_key` (a hex ``str``, pixels only) matches images to saved scans
  (``maps.npz``), whatever label a later run gives them.

:func:`stream` turns a seed, a key and an optional tag into a ``torch.Generator``. Every
derivation is unchanged from earlier releases, so committed results keep their streams.
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["image_digest", "image_key", "pixel_key", "pixel_keys", "stream"]


def image_digest(image: torch.Tensor, salt: int) -> int:
    """A stable 63-bit integer from an image's bytes and an integer ``salt``.

    Args:
        image: any tensor (its bytes on the CPU are hashed).
        salt: an integer mixed into the hash (a seed, a label).

    Returns:
        A non-negative integer below ``2**63``.
    """
    digest = hashlib.blake2b(image.detach().cpu().contiguous().numpy().tobytes(),
                             digest_size=8, key=str(int(salt)).encode())
    return int.from_bytes(digest.digest(), "little") >> 1


def image_key(image: torch.Tensor, label: int) -> int:
    """The key of an image's random stream: its pixels and its label."""
    return image_digest(image, label)


def pixel_key(image: torch.Tensor) -> str:
    """The hex key that matches a float image to a saved scan (pixels only)."""
    return f"{image_digest(image.float(), 0):016x}"


def pixel_keys(images: torch.Tensor) -> list[str]:
    """:func:`pixel_key` of every image of a batch ``[B, C, H, W]``."""
    return [pixel_key(images[i]) for i in range(images.shape[0])]


def stream(seed: int, key: int, tag: str | None = None) -> torch.Generator:
    """The random stream of one image for one seed (and one purpose, ``tag``).

    Args:
        seed: the attack's (or experiment's) seed.
        key: the image's :func:`image_key`.
        tag: a name that separates streams of different purposes (``None``: the attack's
            own stream; ``"random_set"``: the random-set prior's draw).

    Returns:
        A CPU ``torch.Generator``; the same arguments always give the same stream.
    """
    text = f"{seed}:{key}" if tag is None else f"{tag}:{seed}:{key}"
    mixed = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(mixed, "little") >> 1)
