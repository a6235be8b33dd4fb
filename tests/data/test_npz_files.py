""".npz image sets: layouts, conversions, labels, class names, indices, copies, channels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pixelprior.data import (
    CIFAR10_CLASSES,
    ClassNamesError,
    CorruptDataError,
    DataError,
    DataNotFoundError,
    load_npz,
)

COUNT = 30  # the images of the `sample` fixture (tests/data/conftest.py)


def distinct(count: int, shape=(3, 2, 2)) -> np.ndarray:
    """``count`` different uint8 images."""
    return (np.arange(count)[:, None, None, None] + np.zeros((1, *shape), np.int64)).astype(
        np.uint8)


def refusal(path, **kwargs) -> str:
    """The one-line message ``load_npz(path)`` refuses with."""
    with pytest.raises(DataError) as caught:
        load_npz(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_npz_nhwc_and_nchw(tmp_path, sample):
    images, labels = sample.images.numpy(), sample.labels.numpy()
    np.savez(tmp_path / "nchw.npz", images=images, labels=labels,
             class_names=np.array(CIFAR10_CLASSES))
    np.savez(tmp_path / "nhwc.npz", images=images.transpose(0, 2, 3, 1), labels=labels)
    first, notes = load_npz(tmp_path / "nchw.npz")
    assert torch.equal(first.images, sample.images) and torch.equal(first.labels, sample.labels)
    assert first.class_names == CIFAR10_CLASSES and notes == []
    second, notes = load_npz(tmp_path / "nhwc.npz", classes=CIFAR10_CLASSES)
    assert torch.equal(second.images, sample.images) and second.class_names == CIFAR10_CLASSES
    third, notes = load_npz(tmp_path / "nhwc.npz")
    assert third.class_names == tuple(str(i) for i in range(10))
    assert notes == ["no class names in the data: its labels (0..9 seen) are read as class indices"]
    resized, notes = load_npz(tmp_path / "nchw.npz", size=16)
    assert resized.images.shape == (COUNT, 3, 16, 16)
    assert f"{COUNT} images resized from 32×32 to 16×16 (bilinear)" in notes


def test_npz_grayscale_and_float(tmp_path):
    gray = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1)
    np.savez(tmp_path / "gray.npz", images=gray, labels=np.array([0, 1]))
    found, notes = load_npz(tmp_path / "gray.npz")
    assert found.images.shape == (2, 3, 4, 4) and torch.equal(found.images[:, 0],
                                                              found.images[:, 2])
    assert "one-channel (grayscale) images repeated to three channels (RGB)" in notes
    np.savez(tmp_path / "float.npz", images=gray.astype(np.float32) / 255,
             labels=np.array([0, 1]))
    converted, notes = load_npz(tmp_path / "float.npz")
    assert torch.equal(converted.images, found.images)
    assert any("float32 images in [0, 1] converted" in n for n in notes)
    np.savez(tmp_path / "scaled.npz", images=gray.astype(np.float32), labels=np.array([0, 1]))
    with pytest.raises(CorruptDataError, match=r"float images must lie in \[0, 1\]"):
        load_npz(tmp_path / "scaled.npz")


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "keys.npz", x=np.zeros((1, 3, 2, 2), np.uint8), y=np.zeros(1))
    with pytest.raises(CorruptDataError, match="needs arrays 'images' and 'labels'; found 'x', "
                                               "'y'"):
        load_npz(tmp_path / "keys.npz")
    np.savez(tmp_path / "rgba.npz", images=np.zeros((1, 2, 2, 4), np.uint8), labels=[0])
    with pytest.raises(CorruptDataError, match="1 or 3 channels"):
        load_npz(tmp_path / "rgba.npz")
    np.savez(tmp_path / "range.npz", images=distinct(3), labels=np.array([0, 1, 7]),
             class_names=np.array(["a", "b"]))
    with pytest.raises(ClassNamesError, match="label 7 of row 2 is not among the 2 classes"):
        load_npz(tmp_path / "range.npz")
    with pytest.raises(ClassNamesError, match="differ from the given classes"):
        load_npz(tmp_path / "range.npz", classes=["b", "a"])
    np.savez(tmp_path / "floatlabels.npz", images=np.zeros((1, 3, 2, 2), np.uint8),
             labels=np.array([0.5]))
    with pytest.raises(CorruptDataError, match="labels must be integers"):
        load_npz(tmp_path / "floatlabels.npz")
    with pytest.raises(DataNotFoundError):
        load_npz(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(CorruptDataError, match="not a readable .npz"):
        load_npz(tmp_path / "junk.npz")


def test_npz_string_labels(tmp_path):
    np.savez(tmp_path / "named.npz", images=distinct(3), labels=np.array(["dog", "cat", "dog"]))
    found, notes = load_npz(tmp_path / "named.npz")
    assert found.class_names == ("cat", "dog") and found.labels.tolist() == [1, 0, 1]
    given, _ = load_npz(tmp_path / "named.npz", classes=["dog", "cat", "eel"])
    assert given.labels.tolist() == [0, 1, 0]
    with pytest.raises(ClassNamesError, match="label 'dog' of row 0"):
        load_npz(tmp_path / "named.npz", classes=["cat", "eel"])


# ----------------------------------------------------------------------------- issue 25
def test_labels_and_class_names_stored_as_bytes_are_decoded(tmp_path):
    np.savez(tmp_path / "bytes.npz", images=distinct(3), labels=np.array([b"dog", b"cat",
                                                                          b"caf\xc3\xa9"]))
    found, notes = load_npz(tmp_path / "bytes.npz")
    assert found.class_names == ("caf\u00e9", "cat", "dog") and found.labels.tolist() == [2, 1, 0]
    np.savez(tmp_path / "names.npz", images=distinct(2), labels=np.array([1, 0]),
             class_names=np.array([b"cat", b"dog"]))
    found, notes = load_npz(tmp_path / "names.npz")
    assert found.class_names == ("cat", "dog") and notes == []
    np.savez(tmp_path / "latin1.npz", images=distinct(2), labels=np.array([b"ok", b"caf\xe9"]))
    assert refusal(tmp_path / "latin1.npz") == (
        f"{tmp_path / 'latin1.npz'}: labels are bytes, and row 1 (b'caf\\xe9') is not UTF-8 "
        "text; save them as strings")


def test_repeated_or_negative_indices_are_refused(tmp_path):
    np.savez(tmp_path / "twice.npz", images=distinct(4), labels=np.zeros(4, np.int64),
             indices=np.array([7, 5, 9, 5]))
    assert refusal(tmp_path / "twice.npz") == (
        f"{tmp_path / 'twice.npz'}: index 5 is given to 2 rows (1, 3); each image needs its "
        "own index (a run writes its rows under it): give each its own, or leave `indices` "
        "out to number the images in order")
    np.savez(tmp_path / "negative.npz", images=distinct(3), labels=np.zeros(3, np.int64),
             indices=np.array([0, -1, 2]))
    assert refusal(tmp_path / "negative.npz") == (
        f"{tmp_path / 'negative.npz'}: index -1 of row 1 is negative; indices name each image "
        "by a number >= 0")
    np.savez(tmp_path / "good.npz", images=distinct(3), labels=np.zeros(3, np.int64),
             indices=np.array([40, 3, 17]))
    assert load_npz(tmp_path / "good.npz")[0].indices.tolist() == [40, 3, 17]


def test_no_images_is_refused(tmp_path):
    np.savez(tmp_path / "empty.npz", images=np.zeros((0, 32, 32, 3), np.uint8),
             labels=np.zeros(0, np.int64))
    assert refusal(tmp_path / "empty.npz") == (
        f"{tmp_path / 'empty.npz'}: holds 0 images (images of shape (0, 32, 32, 3)); an image "
        "set needs at least one")


def test_a_huge_label_is_one_line_not_a_memory_error(tmp_path):
    np.savez(tmp_path / "huge.npz", images=distinct(2), labels=np.array([3, 10**9]))
    assert refusal(tmp_path / "huge.npz") == (
        f"{tmp_path / 'huge.npz'}: label 1000000000 of row 1 would number 1,000,000,001 "
        "classes; labels count classes from 0, so give the class names (class_names in an "
        ".npz, or --classes) if the model has that many")
    assert refusal(tmp_path / "huge.npz", classes=CIFAR10_CLASSES) == (
        f"{tmp_path / 'huge.npz'}: label 1000000000 of row 1 is not among the 10 classes "
        "(0..9)")
    np.savez(tmp_path / "negative.npz", images=distinct(2), labels=np.array([3, -2]))
    assert refusal(tmp_path / "negative.npz") == (
        f"{tmp_path / 'negative.npz'}: label -2 of row 1 is not among the 4 classes (0..3)")


def test_stored_class_names_are_checked(tmp_path):
    np.savez(tmp_path / "case.npz", images=distinct(2), labels=np.array([0, 1]),
             class_names=np.array(["Cat", "cat "]))
    assert refusal(tmp_path / "case.npz") == (
        f"{tmp_path / 'case.npz'}: class_names: class names 'Cat' (class 0), 'cat ' (class 1) "
        "differ only in case, spaces or Unicode form; give every class its own name")


def test_identical_rows_count_once(tmp_path):
    images = distinct(4)
    images[3] = images[1]
    np.savez(tmp_path / "copies.npz", images=images, labels=np.array([0, 1, 0, 1]),
             indices=np.array([10, 11, 12, 13]))
    found, notes = load_npz(tmp_path / "copies.npz")
    assert len(found) == 3 and found.indices.tolist() == [10, 11, 12]
    assert notes[-1] == ("1 copy of pictures held more than once (identical pixels) left out, "
                         "each picture counted once: row 3 (e.g. row 3 is row 1)")
    np.savez(tmp_path / "clash.npz", images=images, labels=np.array([0, 1, 0, 0]))
    assert refusal(tmp_path / "clash.npz") == (
        f"{tmp_path / 'clash.npz'}: row 1 (1) and row 3 (0) hold the same picture (identical "
        "pixels) with different classes; a picture has one class: remove or relabel the copies")


# ----------------------------------------------------------------------------- channels
def test_channels_one_gives_pil_luminance_with_a_note(tmp_path, sample):
    np.savez(tmp_path / "rgb.npz", images=sample.images.numpy(), labels=sample.labels.numpy())
    found, notes = load_npz(tmp_path / "rgb.npz", channels=1)
    assert found.images.shape == (COUNT, 1, 32, 32)
    expected = np.stack([np.asarray(Image.fromarray(image.permute(1, 2, 0).numpy()).convert("L"))
                         for image in sample.images])
    assert np.array_equal(found.images[:, 0].numpy(), expected)
    assert notes == ['3-channel images converted to 8-bit luminance (PIL "L") for a 1-channel '
                     "model", "no class names in the data: its labels (0..9 seen) are read "
                     "as class indices"]
    gray = found.images.numpy()
    np.savez(tmp_path / "gray.npz", images=gray, labels=found.labels.numpy())
    again, notes = load_npz(tmp_path / "gray.npz", channels=1)
    assert torch.equal(again.images, found.images) and not any("channel" in n for n in notes)
    rgb, notes = load_npz(tmp_path / "gray.npz")
    assert rgb.images.shape == (COUNT, 3, 32, 32) and torch.equal(rgb.images[:, 1],
                                                                  found.images[:, 0])
    assert "one-channel (grayscale) images repeated to three channels (RGB)" in notes


def test_other_channel_counts_pass_through_or_are_refused(tmp_path):
    four = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 5), dtype=np.uint8)
    np.savez(tmp_path / "four.npz", images=four, labels=np.array([0, 1]))
    found, notes = load_npz(tmp_path / "four.npz", channels=4)
    assert np.array_equal(found.images.numpy(), four)
    resized, _ = load_npz(tmp_path / "four.npz", channels=4, size=3)
    assert resized.images.shape == (2, 4, 3, 3)
    assert refusal(tmp_path / "four.npz") == (
        f"{tmp_path / 'four.npz'}: images must have 1 or 3 channels ([N, H, W, 3] or "
        "[N, 3, H, W]), got shape (2, 4, 5, 5)")
    np.savez(tmp_path / "three.npz", images=distinct(2), labels=np.array([0, 1]))
    assert refusal(tmp_path / "three.npz", channels=4) == (
        f"{tmp_path / 'three.npz'}: images of 3 channel(s) cannot be given to a model "
        "taking 4: only 3 → 1 (luminance) and 1 → 3 are converted")
    with pytest.raises(ValueError, match="channels must be a positive integer"):
        load_npz(tmp_path / "three.npz", channels=0)
