"""ImageFolder trees: classes, sizes, links, hidden files, copies; dispatch and registry."""

from __future__ import annotations

import os

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
    imagenet_class_names,
    load_dataset,
    load_folder,
    load_image_source,
)

COUNT = 30  # the images of the `sample` fixture (tests/data/conftest.py)


# ----------------------------------------------------------------------------- classes
def test_folder_reads_exact_pixels_with_folder_classes(folder, sample, in_file_order):
    found, notes = load_folder(folder)
    assert len(found) == COUNT and found.source == str(folder)
    assert found.class_names == tuple(sorted({CIFAR10_CLASSES[int(v)] for v in sample.labels}))
    assert found.ids[0].count("/") == 1 and found.ids == tuple(sorted(found.ids))
    assert torch.equal(found.indices, torch.arange(COUNT))
    images, labels = in_file_order(found, sample)
    assert torch.equal(found.images, images)
    assert [found.class_names[v] for v in found.labels] == [CIFAR10_CLASSES[v] for v in labels]
    assert notes == [f"{len(found.class_names)} classes from the folder names (sorted): "
                     "airplane, automobile, bird, cat, deer, dog, frog, horse, ... (10 in all)"]


def test_folder_with_the_models_classes_keeps_their_order(folder, sample, tmp_path,
                                                          in_file_order):
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


def test_class_folders_that_differ_only_in_case_are_refused(tmp_path, sample, write_png):
    write_png(tmp_path / "r" / "Cat" / "a.png", sample.images[0])
    write_png(tmp_path / "r" / "cat" / "b.png", sample.images[1])
    with pytest.raises(ClassNamesError) as caught:
        load_folder(tmp_path / "r")
    assert str(caught.value) == (
        f"{tmp_path / 'r'}: the class folders: class names 'Cat' (class 0), 'cat' (class 1) "
        "differ only in case, spaces or Unicode form; give every class its own name")


def test_the_registered_imagenet_names_are_accepted_but_an_ambiguous_folder_is_not(
        tmp_path, sample, write_png):
    """A registered ImageNet model's names ("crane" twice, as torchvision has them) load a
    folder of other classes; a folder named "crane" cannot say which crane it is."""
    names = imagenet_class_names()
    write_png(tmp_path / "r" / "tench" / "a.png", sample.images[0])
    found, _ = load_folder(tmp_path / "r", classes=names)
    assert found.labels.tolist() == [0] and found.class_names == names
    write_png(tmp_path / "r" / "crane" / "b.png", sample.images[1])
    with pytest.raises(ClassNamesError) as caught:
        load_folder(tmp_path / "r", classes=names)
    assert str(caught.value) == (f"{tmp_path / 'r'}: class folder 'crane' names 2 classes "
                                 "(134, 517); give class names that name each class once "
                                 "(--classes)")


def test_folder_empty_class_folders_are_named(folder):
    (folder / "zebra").mkdir()
    (folder / "yak").mkdir()
    (folder / "yak" / "notes.txt").write_text("no images here")
    with pytest.raises(CorruptDataError, match="without image files.*yak, zebra"):
        load_folder(folder)


def test_folder_without_class_folders(tmp_path, write_png):
    write_png(tmp_path / "flat" / "a.png", np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(CorruptDataError, match="no class folders"):
        load_folder(tmp_path / "flat")
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_folder(tmp_path / "missing")


def test_folder_unreadable_file_is_named(folder):
    (folder / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(CorruptDataError, match="broken.png"):
        load_folder(folder)


# ----------------------------------------------------------------------------- sizes
def test_folder_mixed_sizes(tmp_path, write_png):
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


def test_folder_conversion_notes_are_aggregated(tmp_path, sample, write_png):
    root = tmp_path / "palette"
    for i in range(4):
        write_png(root / "x" / f"{i}.png", sample.images[i], mode="P")
    write_png(root / "y" / "rgb.png", sample.images[5])
    (root / "y" / "Thumbs.db").write_bytes(b"junk")
    found, notes = load_folder(root)
    palette = [n for n in notes if "palette" in n]
    assert palette == ["palette image: expanded to RGB (4 images, e.g. x/0.png)"]
    assert "1 file(s) in the class folders ignored (not png/jpg/jpeg/bmp/webp)" in notes
    assert len(found) == 5


# ----------------------------------------------------------------------------- links
def test_a_symlinked_subfolder_and_file_are_followed(tmp_path, sample, write_png):
    elsewhere = tmp_path / "elsewhere"
    write_png(elsewhere / "x.png", sample.images[0])
    write_png(elsewhere / "y.png", sample.images[1])
    write_png(tmp_path / "more.png", sample.images[2])
    root = tmp_path / "r"
    write_png(root / "cat" / "own.png", sample.images[3])
    os.symlink(elsewhere, root / "cat" / "linked")
    os.symlink(tmp_path / "more.png", root / "cat" / "more.png")
    found, notes = load_folder(root)
    assert found.ids == ("cat/linked/x.png", "cat/linked/y.png", "cat/more.png", "cat/own.png")
    assert torch.equal(found.images, sample.images[[0, 1, 2, 3]])
    assert notes == ["1 class from the folder names (sorted): cat"]


def test_broken_links_are_named_in_one_note(tmp_path, sample, write_png):
    root = tmp_path / "r"
    write_png(root / "cat" / "a.png", sample.images[0])
    for name in ("gone1.png", "gone2.png", "gone3.png", "gone4.png"):
        os.symlink(tmp_path / "nowhere" / name, root / "cat" / name)
    os.symlink(tmp_path / "nowhere", root / "dog")
    found, notes = load_folder(root)
    assert len(found) == 1 and found.class_names == ("cat",)
    assert ("5 broken symbolic link(s) skipped (they point to nothing): dog, cat/gone1.png, "
            "cat/gone2.png and 2 more; repair or remove them") in notes


def test_a_link_back_up_the_tree_is_not_followed(tmp_path, sample, write_png):
    root = tmp_path / "r"
    write_png(root / "cat" / "a.png", sample.images[0])
    os.symlink(root / "cat", root / "cat" / "again")
    found, notes = load_folder(root)
    assert found.ids == ("cat/a.png",)
    assert ("1 symbolic link(s) back to a folder that holds them not followed (a loop): "
            "cat/again") in notes


def test_one_file_reached_twice_is_read_once(tmp_path, sample, write_png):
    root = tmp_path / "r"
    write_png(root / "cat" / "a.png", sample.images[0])
    write_png(root / "cat" / "b.png", sample.images[1])
    os.symlink(root / "cat" / "a.png", root / "cat" / "c.png")
    os.symlink(root / "cat", root / "cat-too")  # a second class folder onto the same files
    with pytest.raises(CorruptDataError) as caught:
        load_folder(root)
    assert str(caught.value) == (f"{root}: cat-too/a.png and cat/a.png are the same file "
                                 "(through a link) in two class folders; a picture has one "
                                 "class: remove one")
    os.unlink(root / "cat-too")
    found, notes = load_folder(root)
    assert found.ids == ("cat/a.png", "cat/b.png") and len(found) == 2
    assert ("1 image file(s) reached a second time through a link read once: cat/c.png "
            "(e.g. cat/c.png is cat/a.png)") in notes


def test_hidden_files_and_folders_are_skipped_with_a_note(tmp_path, sample, write_png):
    root = tmp_path / "r"
    write_png(root / "cat" / "a.png", sample.images[0])
    write_png(root / "cat" / ".thumbnails" / "a.png", sample.images[1])
    write_png(root / "cat" / "._a.png", sample.images[2])
    (root / ".DS_Store").write_bytes(b"\0")
    write_png(root / ".ipynb_checkpoints" / "x.png", sample.images[3])
    found, notes = load_folder(root)
    assert found.ids == ("cat/a.png",) and found.class_names == ("cat",)
    assert ("4 hidden file(s) or folder(s) skipped (names starting with '.'): .DS_Store, "
            ".ipynb_checkpoints, cat/._a.png and 1 more") in notes


# ----------------------------------------------------------------------------- copies
def test_identical_pixels_under_two_names_count_once(tmp_path, sample, write_png):
    root = tmp_path / "r"
    write_png(root / "cat" / "a.png", sample.images[0])
    write_png(root / "cat" / "b.png", sample.images[1])
    write_png(root / "cat" / "copy-of-a.png", sample.images[0])
    write_png(root / "cat" / "sub" / "a-again.png", sample.images[0])
    found, notes = load_folder(root)
    assert found.ids == ("cat/a.png", "cat/b.png") and len(found) == 2
    assert found.indices.tolist() == [0, 1]  # positions in the sorted list of files
    assert ("2 copies of pictures held more than once (identical pixels) left out, each "
            "picture counted once: cat/copy-of-a.png, cat/sub/a-again.png (e.g. "
            "cat/copy-of-a.png is cat/a.png)") in notes


def test_identical_pixels_in_two_classes_are_refused(tmp_path, sample, write_png):
    root = tmp_path / "r"
    write_png(root / "cat" / "a.png", sample.images[0])
    write_png(root / "dog" / "a.png", sample.images[0])
    with pytest.raises(CorruptDataError) as caught:
        load_folder(root)
    assert str(caught.value) == (f"{root}: cat/a.png (cat) and dog/a.png (dog) hold the same "
                                 "picture (identical pixels) with different classes; a "
                                 "picture has one class: remove or relabel the copies")


@pytest.mark.parametrize(("folders", "as_indices"), [(("0", "1"), True), (("²", "³"), False),
                                                    (("-1", "0"), False)])
def test_the_numbering_note_reads_indices_as_fit_classes_does(tmp_path, sample, write_png,
                                                              folders,
                                                              as_indices):
    """Folders read as class indices only where experiment.fit_classes reads them so
    (ASCII digits: data.collect.CLASS_INDEX); the note never says otherwise."""
    for i, name in enumerate(folders):
        write_png(tmp_path / name / "a.png", sample.images[i])
    notes = load_image_source(tmp_path)[1]
    assert any("read as those class indices" in note for note in notes) == as_indices


# ----------------------------------------------------------------------------- dispatch
def test_load_image_source_dispatches(folder, tmp_path, sample):
    np.savez(tmp_path / "s.npz", images=sample.images.numpy(), labels=sample.labels.numpy())
    name = next((folder / "cat").iterdir()).name
    (tmp_path / "s.csv").write_text(f"images/cat/{name},3\n")
    images, notes = load_image_source(folder)
    assert len(images) == COUNT  # numbered by folder name without classes=, and said so
    assert any("labels number the folders in name order" in note for note in notes)
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
