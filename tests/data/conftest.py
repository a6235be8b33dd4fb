"""Shared helpers of the data tests: the bundled sample as files in every layout."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixelprior.data import CIFAR10_CLASSES, load_cifar10_sample

COUNT = 30


def write_png_file(path: Path, pixels_chw: torch.Tensor | np.ndarray,
                   mode: str | None = None) -> None:
    """``uint8 [C, H, W]`` pixels as a PNG (converted to PIL ``mode`` when given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(pixels_chw).transpose(1, 2, 0)
    if array.shape[2] == 1:
        array = array[..., 0]
    image = Image.fromarray(np.ascontiguousarray(array))
    (image.convert(mode) if mode else image).save(path)


def huge_png(width: int, height: int) -> bytes:
    """A valid bilevel PNG of ``width`` × ``height`` zeros: a few kB on disk, however many
    pixels it declares (for the decompression-bomb guard)."""
    row = b"\x00" + bytes((width + 7) // 8)
    data = zlib.compress(row * height, 9)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
            + chunk(b"IEND", b""))


@pytest.fixture(scope="session")
def sample():
    """The first 30 bundled CIFAR-10 test images (all different)."""
    return load_cifar10_sample().subset(list(range(COUNT)))


@pytest.fixture
def huge_png_bytes():
    """:func:`huge_png`."""
    return huge_png


@pytest.fixture
def write_png():
    """:func:`write_png_file`."""
    return write_png_file


@pytest.fixture
def folder(tmp_path, sample):
    """The sample as an ImageFolder of PNGs: root/<class>/<index>.png."""
    root = tmp_path / "images"
    for i in range(COUNT):
        write_png_file(root / CIFAR10_CLASSES[int(sample.labels[i])] / f"{i:03d}.png",
                       sample.images[i])
    return root


@pytest.fixture
def in_file_order():
    """The sample's rows in the order of a loaded set's ids (``<class>/<index>.png``)."""
    def order(found, sample):
        rows = [int(name.split("/")[-1][:3]) for name in found.ids]
        return sample.images[rows], sample.labels[rows]
    return order
