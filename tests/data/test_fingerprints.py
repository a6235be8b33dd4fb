"""Image fingerprints: the identity of every image a run records and checks on resume."""

from __future__ import annotations

import hashlib

import pytest
import torch

from pixelprior.data import image_fingerprints


def test_a_fingerprint_is_the_sha256_of_shape_and_pixel_bytes():
    image = torch.tensor([[[1, 2, 3], [4, 5, 6]]], dtype=torch.uint8)  # [1, 2, 3]
    expected = hashlib.sha256(b"1x2x3\n" + bytes([1, 2, 3, 4, 5, 6])).hexdigest()
    assert image_fingerprints(image[None]) == [expected]


def test_fingerprints_do_not_depend_on_batch_layout_or_device(sample):
    prints = image_fingerprints(sample.images)
    assert len(prints) == 30 and len(set(prints)) == 30
    assert all(len(p) == 64 and int(p, 16) >= 0 for p in prints)
    assert image_fingerprints(sample.images[[7, 3]]) == [prints[7], prints[3]]
    channels_last = sample.images.contiguous(memory_format=torch.channels_last)
    assert image_fingerprints(channels_last) == prints
    assert image_fingerprints(sample.images.flip(0)) == prints[::-1]


def test_the_shape_is_part_of_the_fingerprint(sample):
    image = sample.images[:1]
    same_bytes = image.reshape(1, 3, 16, 64)
    assert image_fingerprints(image) != image_fingerprints(same_bytes)
    changed = image.clone()
    changed[0, 2, 31, 31] ^= 1
    assert image_fingerprints(image) != image_fingerprints(changed)


def test_only_uint8_batches_are_fingerprinted(sample):
    with pytest.raises(TypeError, match="uint8 tensor"):
        image_fingerprints(sample.images.float())
    with pytest.raises(TypeError, match="uint8 tensor"):
        image_fingerprints(sample.images.numpy())
    with pytest.raises(ValueError, match=r"\[N, C, H, W\], got shape \(3, 32, 32\)"):
        image_fingerprints(sample.images[0])
