"""A user's own images: ImageFolder trees, .npz arrays, CSV lists, and their errors."""

from __future__ import annotations

import json

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
    dataset_for,
    load_cifar10_sample,
    load_csv,
    load_dataset,
    load_folder,
    load_image_source,
    load_npz,
    parse_classes,
)

COUNT = 30


@pytest.fixture(scope="module")
def sample():
    """The first 30 bundled CIFAR-10 test images."""
    return load_cifar10_sample().subset(list(range(COUNT)))


def write_png(path, pixels_chw: torch.Tensor | np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(pixels_chw).transpose(1, 2, 0)
    image = Image.fromarray(np.ascontiguousarray(array))
    (image.convert(mode) if mode else image).save(path)


@pytest.fixture
def folder(tmp_path, sample):
    """The sample as an ImageFolder of PNGs: root/<class>/<index>.png."""
    root = tmp_path / "images"
    for i in range(COUNT):
        write_png(root / CIFAR10_CLASSES[int(sample.labels[i])] / f"{i:03d}.png",
                  sample.images[i])
    return root


def in_file_order(found, sample):
    """The sample's rows in the order of ``found``'s ids (``<class>/<index>.png``)."""
    order = [int(name.split("/")[1][:3]) for name in found.ids]
    return sample.images[order], sample.labels[order]


# ----------------------------------------------------------------------------- folders
def test_folder_reads_exact_pixels_with_folder_classes(folder, sample):
    found, notes = load_folder(folder)
    assert len(found) == COUNT and found.source == str(folder)
    assert found.class_names == tuple(sorted({CIFAR10_CLASSES[int(v)] for v in sample.labels}))
    assert found.ids[0].count("/") == 1 and found.ids == tuple(sorted(found.ids))
    assert torch.equal(found.indices, torch.arange(COUNT))
    images, labels = in_file_order(found, sample)
    assert torch.equal(found.images, images)
    assert [found.class_names[v] for v in found.labels] == [CIFAR10_CLASSES[v] for v in labels]
    assert any("classes from the folder names" in n for n in notes)


def test_folder_with_the_models_classes_keeps_their_order(folder, sample, tmp_path):
    found, notes = load_folder(folder, classes=CIFAR10_CLASSES)
    images, labels = in_file_order(found, sample)
    assert found.class_names == CIFAR10_CLASSES and torch.equal(found.labels, labels)
    (tmp_path / "names.txt").write_text("\n".join(CIFAR10_CLASSES))
    again, _ = load_folder(folder, classes=tmp_path / "names.txt")
    assert torch.equal(again.labels, found.labels)


def test_folder_unknown_class_folder_is_named(folder):
    with pytest.raises(ClassNamesError, match="class folder 'airplane' is not among"):
        load_folder(folder, classes=["cat", "dog", "frog", "ship", "truck", "bird",
                                     "automobile", "deer", "horse"])


def test_folder_empty_class_folders_are_named(folder):
    (folder / "zebra").mkdir()
    (folder / "yak").mkdir()
    (folder / "yak" / "notes.txt").write_text("no images here")
    with pytest.raises(CorruptDataError, match="without image files.*yak, zebra"):
        load_folder(folder)


def test_folder_without_class_folders(tmp_path):
    write_png(tmp_path / "flat" / "a.png", np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(CorruptDataError, match="no class folders"):
        load_folder(tmp_path / "flat")
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_folder(tmp_path / "missing")


def test_folder_unreadable_file_is_named(folder):
    (folder / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(CorruptDataError, match="broken.png"):
        load_folder(folder)


def test_folder_mixed_sizes(tmp_path):
    root = tmp_path / "mixed"
    rng = np.random.default_rng(0)
    write_png(root / "a" / "big.png", rng.integers(0, 256, (3, 375, 500), dtype=np.uint8))
    write_png(root / "a" / "big2.png", rng.integers(0, 256, (3, 375, 500), dtype=np.uint8))
    write_png(root / "b" / "small.png", rng.integers(0, 256, (3, 32, 32), dtype=np.uint8))
    write_png(root / "b" / "odd.png", rng.integers(0, 256, (3, 20, 10), dtype=np.uint8))
    with pytest.raises(CorruptDataError, match="a/big.png is 500×375 and a/big2.png|"
                       "different sizes: a/big.png is 500×375 and b/odd.png is 10×20"):
        load_folder(root)
    found, notes = load_folder(root, size=32)
    assert found.images.shape == (4, 3, 32, 32)
    assert "3 images resized from 500×375 (and others) to 32×32 (bilinear)" in notes
    small = np.array(Image.open(root / "b" / "small.png")).transpose(2, 0, 1)
    assert torch.equal(found.images[found.ids.index("b/small.png")], torch.from_numpy(small))
    wide, _ = load_folder(root, size=(16, 24))
    assert wide.images.shape == (4, 3, 16, 24)


def test_folder_conversion_notes_are_aggregated(tmp_path, sample):
    root = tmp_path / "palette"
    for i in range(4):
        write_png(root / "x" / f"{i}.png", sample.images[i], mode="P")
    write_png(root / "y" / "rgb.png", sample.images[5])
    (root / "y" / "Thumbs.db").write_bytes(b"junk")
    found, notes = load_folder(root)
    palette = [n for n in notes if "palette" in n]
    assert palette == ["palette image: expanded to RGB (4 images, e.g. x/0.png)"]
    assert any("1 file(s) in the class folders ignored" in n for n in notes)
    assert len(found) == 5


# ----------------------------------------------------------------------------- npz
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
    assert third.class_names == tuple(str(i) for i in range(10)) and any(
        "numbered" in n for n in notes)
    resized, notes = load_npz(tmp_path / "nchw.npz", size=16)
    assert resized.images.shape == (COUNT, 3, 16, 16)
    assert f"{COUNT} images resized from 32×32 to 16×16 (bilinear)" in notes


def test_npz_grayscale_and_float(tmp_path):
    gray = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1)
    np.savez(tmp_path / "gray.npz", images=gray, labels=np.array([0, 1]))
    found, notes = load_npz(tmp_path / "gray.npz")
    assert found.images.shape == (2, 3, 4, 4) and torch.equal(found.images[:, 0],
                                                              found.images[:, 2])
    assert any("repeated to three channels" in n for n in notes)
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
    np.savez(tmp_path / "range.npz", images=np.zeros((3, 3, 2, 2), np.uint8),
             labels=np.array([0, 1, 7]), class_names=np.array(["a", "b"]))
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
    np.savez(tmp_path / "named.npz", images=np.zeros((3, 3, 2, 2), np.uint8),
             labels=np.array(["dog", "cat", "dog"]))
    found, notes = load_npz(tmp_path / "named.npz")
    assert found.class_names == ("cat", "dog") and found.labels.tolist() == [1, 0, 1]
    given, _ = load_npz(tmp_path / "named.npz", classes=["dog", "cat", "eel"])
    assert given.labels.tolist() == [0, 1, 0]
    with pytest.raises(ClassNamesError, match="label 'dog' of row 0"):
        load_npz(tmp_path / "named.npz", classes=["cat", "eel"])


# ----------------------------------------------------------------------------- csv
def test_csv_with_and_without_header(folder, sample, tmp_path):
    found, _ = load_folder(folder, classes=CIFAR10_CLASSES)
    rows = [(f"images/{name}", name.split("/")[0]) for name in found.ids]
    (tmp_path / "named.csv").write_text("path,label\n" + "".join(f"{p},{c}\n" for p, c in rows))
    (tmp_path / "indexed.csv").write_text("".join(
        f"{p},{CIFAR10_CLASSES.index(c)}\n" for p, c in rows) + "\n")
    named, notes = load_csv(tmp_path / "named.csv", classes=CIFAR10_CLASSES)
    assert torch.equal(named.images, found.images) and torch.equal(named.labels, found.labels)
    assert named.ids[0] == rows[0][0] and torch.equal(named.indices, torch.arange(COUNT))
    indexed, notes = load_csv(tmp_path / "indexed.csv", classes=CIFAR10_CLASSES)
    assert torch.equal(indexed.labels, found.labels)
    numbered, notes = load_csv(tmp_path / "indexed.csv")
    assert any("numbered" in n for n in notes) and torch.equal(numbered.labels, found.labels)
    sorted_names, notes = load_csv(tmp_path / "named.csv")
    assert sorted_names.class_names == tuple(sorted({c for _, c in rows}))


def test_csv_header_picks_columns(folder, tmp_path):
    name = next((folder / "cat").iterdir()).name
    (tmp_path / "cols.csv").write_text(f"id,class,file\n7,cat,images/cat/{name}\n")
    found, _ = load_csv(tmp_path / "cols.csv", classes=CIFAR10_CLASSES)
    assert found.labels.tolist() == [3] and found.ids == (f"images/cat/{name}",)


def test_csv_errors(folder, tmp_path):
    name = next((folder / "cat").iterdir()).name
    good = f"images/cat/{name}"
    (tmp_path / "label.csv").write_text(f"path,label\n{good},cat\n{good},zebra\n")
    with pytest.raises(ClassNamesError, match="label 'zebra' of line 3"):
        load_csv(tmp_path / "label.csv", classes=CIFAR10_CLASSES)
    (tmp_path / "index.csv").write_text(f"{good},3\n{good},12\n")
    with pytest.raises(ClassNamesError, match="label 12 of line 2"):
        load_csv(tmp_path / "index.csv", classes=CIFAR10_CLASSES)
    (tmp_path / "missing.csv").write_text(f"{good},3\nimages/cat/gone.png,3\n")
    with pytest.raises(DataNotFoundError, match="line 2: image file images/cat/gone.png"):
        load_csv(tmp_path / "missing.csv")
    (tmp_path / "short.csv").write_text(f"{good}\n")
    with pytest.raises(CorruptDataError, match="line 1: expected path,label"):
        load_csv(tmp_path / "short.csv")
    (tmp_path / "header.csv").write_text("path,colour\n")
    with pytest.raises(CorruptDataError, match="needs a path column"):
        load_csv(tmp_path / "header.csv")


# ----------------------------------------------------------------------------- dispatch
def test_load_image_source_dispatches(folder, tmp_path, sample):
    np.savez(tmp_path / "s.npz", images=sample.images.numpy(), labels=sample.labels.numpy())
    name = next((folder / "cat").iterdir()).name
    (tmp_path / "s.csv").write_text(f"images/cat/{name},3\n")
    assert len(load_image_source(folder)[0]) == COUNT
    assert len(load_image_source(str(tmp_path / "s.npz"))[0]) == COUNT
    assert len(load_image_source(tmp_path / "s.csv", size=16)[0]) == 1
    with pytest.raises(DataNotFoundError):
        load_image_source(tmp_path / "nothing")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(CorruptDataError, match="not an image folder, .npz or .csv"):
        load_image_source(tmp_path / "x.txt")


def test_dataset_for_and_the_registry(folder, tmp_path, sample):
    assert dataset_for("cifar10") == ("cifar10", None)
    assert dataset_for("nips17:/data/dev") == ("nips17", "/data/dev")
    assert dataset_for(folder) == ("folder", str(folder))
    assert dataset_for("a/b.npz") == ("npz", "a/b.npz")
    assert dataset_for("list.CSV") == ("csv", "list.CSV")
    with pytest.raises(DataNotFoundError, match="not a dataset name"):
        dataset_for(tmp_path / "nothing")
    notes: list[str] = []
    found = load_dataset("folder", str(folder), size=32, classes=CIFAR10_CLASSES, notes=notes)
    assert len(found) == COUNT and found.class_names == CIFAR10_CLASSES and notes == []
    load_dataset("folder", str(folder), notes=notes)
    assert any("folder names" in n for n in notes)
    np.savez(tmp_path / "s.npz", images=sample.images.numpy(), labels=sample.labels.numpy())
    assert len(load_dataset(*dataset_for(tmp_path / "s.npz"))) == COUNT
    assert len(load_dataset("cifar10", source="sample")) == 100
    with pytest.raises(ValueError, match="own class names"):
        load_dataset("cifar10", source="sample", classes=["a"])
    with pytest.raises(DataError, match="needs data"):
        load_dataset("csv")


def test_parse_classes(tmp_path):
    assert parse_classes(None) is None
    assert parse_classes(["a", "b"]) == ("a", "b") == parse_classes("a, b")
    (tmp_path / "c.json").write_text(json.dumps({"1": ["n2", "b"], "0": ["n1", "a"]}))
    assert parse_classes(tmp_path / "c.json") == ("a", "b")
    (tmp_path / "twice.txt").write_text("a\nb\na\n")
    with pytest.raises(ClassNamesError, match="'a' appears more than once"):
        parse_classes(tmp_path / "twice.txt")
    with pytest.raises(DataNotFoundError, match="does not exist"):
        parse_classes(str(tmp_path / "none.txt"))
    (tmp_path / "bad.json").write_text("[1, {}]")
    with pytest.raises(ClassNamesError, match="list of strings"):
        parse_classes(tmp_path / "bad.json")
