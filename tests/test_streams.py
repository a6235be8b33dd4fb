"""Image keys and random streams: what a key depends on, and the streams of earlier
releases reproduced bit for bit."""

from __future__ import annotations

import hashlib

import torch

from pixelprior._streams import image_digest, image_key, pixel_key, pixel_keys, stream


def images(count=3, seed=0):
    return torch.rand(count, 3, 4, 4, generator=torch.Generator().manual_seed(seed))


def earlier_stream(text: str) -> torch.Generator:
    """The derivation of earlier releases, written out independently."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def test_image_key_depends_on_the_pixels_and_the_label_not_on_the_batch():
    batch = images(3)
    alone = images(1)[0]  # the same pixels as batch[0], from another tensor
    assert torch.equal(alone, batch[0])
    assert image_key(batch[0], 2) == image_key(alone, 2) == image_key(batch[0].clone(), 2)
    assert image_key(batch[0], 2) == image_key(torch.cat([batch[:1], batch[:1]])[1], 2)
    assert image_key(batch[0], 2) != image_key(batch[0], 3)
    changed = batch[0].clone()
    changed[1, 2, 3] += 1e-3
    assert image_key(changed, 2) != image_key(batch[0], 2)
    assert image_key(batch[0], 2) != image_key(batch[1], 2)


def test_image_key_is_a_non_negative_63_bit_integer():
    keys = [image_key(image, label) for image in images(5) for label in range(4)]
    assert all(isinstance(k, int) and 0 <= k < 2 ** 63 for k in keys)
    assert len(set(keys)) == len(keys)


def test_image_key_reads_the_bytes_of_a_non_contiguous_view_as_a_copy():
    base = images(1)[0]
    view = base.transpose(1, 2)  # not contiguous
    assert image_key(view, 0) == image_key(view.contiguous(), 0)


def test_pixel_key_ignores_the_label_and_matches_float_copies():
    image = images(1)[0]
    assert pixel_key(image) == pixel_key(image.clone())
    assert pixel_key(image.double()) == pixel_key(image)  # a float64 copy matches
    uint8 = (image * 255).round().to(torch.uint8)
    assert pixel_key(uint8) == pixel_key(uint8.float())
    assert pixel_key(image) != pixel_key(images(1, seed=1)[0])
    assert len(pixel_key(image)) == 16 and int(pixel_key(image), 16) >= 0
    assert pixel_key(image) == f"{image_digest(image, 0):016x}"
    assert pixel_key(image) == f"{image_key(image, 0):016x}"  # label 0: the same hash


def test_pixel_keys_are_the_keys_of_each_image():
    batch = images(3)
    assert pixel_keys(batch) == [pixel_key(batch[i]) for i in range(3)]


def test_stream_is_reproducible_and_differs_by_seed_key_and_tag():
    draw = lambda *args: torch.rand(5, generator=stream(*args))  # noqa: E731
    assert torch.equal(draw(0, 7), draw(0, 7))
    assert torch.equal(draw(0, 7, "random_set"), draw(0, 7, "random_set"))
    different = [draw(1, 7), draw(0, 8), draw(0, 7, "random_set"), draw(0, 7, "other")]
    for other in different:
        assert not torch.equal(draw(0, 7), other)
    assert not torch.equal(draw(0, 7, "random_set"), draw(0, 7, "other"))


def test_stream_is_a_fresh_cpu_generator_each_call():
    first = stream(3, 11)
    torch.rand(10, generator=first)  # advancing one leaves the next call untouched
    assert torch.equal(torch.rand(3, generator=stream(3, 11)),
                       torch.rand(3, generator=earlier_stream("3:11")))
    assert first.device.type == "cpu"


def test_stream_equals_the_earlier_derivation_for_seed_0_key_12345():
    expected = torch.rand(3, generator=earlier_stream("0:12345"))
    assert torch.equal(torch.rand(3, generator=stream(0, 12345)), expected)
    digest = hashlib.blake2b(b"0:12345", digest_size=8).digest()
    assert stream(0, 12345).initial_seed() == int.from_bytes(digest, "little") >> 1


def test_tagged_stream_equals_the_earlier_random_set_derivation():
    expected = torch.rand(3, generator=earlier_stream("random_set:0:12345"))
    assert torch.equal(torch.rand(3, generator=stream(0, 12345, tag="random_set")), expected)
    for seed, key in ((4, 2 ** 62 + 5), (0, 0)):
        assert torch.equal(torch.randperm(16, generator=stream(seed, key, "random_set")),
                           torch.randperm(16, generator=earlier_stream(
                               f"random_set:{seed}:{key}")))
