"""CSV lists of image files: headers, labels, files listed twice, copies, errors."""

from __future__ import annotations

import os

import pytest
import torch

from pixelprior.data import (
    CIFAR10_CLASSES,
    ClassNamesError,
    CorruptDataError,
    DataError,
    DataNotFoundError,
    load_csv,
    load_folder,
)

COUNT = 30  # the images of the `sample` fixture (tests/data/conftest.py)


def refusal(path, **kwargs) -> str:
    """The one-line message ``load_csv(path)`` refuses with."""
    with pytest.raises(DataError) as caught:
        load_csv(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.fixture
def first_cat(folder):
    """A cat image of the folder, as a CSV beside it names it."""
    return f"images/cat/{sorted((folder / 'cat').iterdir())[0].name}"


def test_csv_with_and_without_header(folder, sample, tmp_path):
    found, _ = load_folder(folder, classes=CIFAR10_CLASSES)
    rows = [(f"images/{name}", name.split("/")[0]) for name in found.ids]
    (tmp_path / "named.csv").write_text("path,label\n" + "".join(f"{p},{c}\n" for p, c in rows))
    (tmp_path / "indexed.csv").write_text("".join(
        f"{p},{CIFAR10_CLASSES.index(c)}\n" for p, c in rows) + "\n")
    named, notes = load_csv(tmp_path / "named.csv", classes=CIFAR10_CLASSES)
    assert torch.equal(named.images, found.images) and torch.equal(named.labels, found.labels)
    assert named.ids[0] == rows[0][0] and torch.equal(named.indices, torch.arange(COUNT))
    assert notes == ["line 1 (path,label) read as a header, not an image: skipped; paths from "
                     "column 1, labels from column 2"]
    indexed, notes = load_csv(tmp_path / "indexed.csv", classes=CIFAR10_CLASSES)
    assert torch.equal(indexed.labels, found.labels) and notes == []
    numbered, notes = load_csv(tmp_path / "indexed.csv")
    assert notes == ["no class names in the data: its labels (0..9 seen) are read as class indices"]
    assert torch.equal(numbered.labels, found.labels)
    sorted_names, notes = load_csv(tmp_path / "named.csv")
    assert sorted_names.class_names == tuple(sorted({c for _, c in rows}))


def test_csv_header_picks_columns(first_cat, tmp_path):
    (tmp_path / "cols.csv").write_text(f"id,class,file\n7,cat,{first_cat}\n")
    found, notes = load_csv(tmp_path / "cols.csv", classes=CIFAR10_CLASSES)
    assert found.labels.tolist() == [3] and found.ids == (first_cat,)
    assert notes == ["line 1 (id,class,file) read as a header, not an image: skipped; paths "
                     "from column 3, labels from column 2"]


@pytest.mark.parametrize("header,labels,classes", [
    ("img,cls", "integers", None), ("img,cls", "names", None),
    ("filename,class_id", "integers", CIFAR10_CLASSES), ("Image,Label", "names", None),
    ("picture,kind", "names", CIFAR10_CLASSES)])
def test_a_header_row_of_any_names_is_skipped_with_a_note(folder, tmp_path, header, labels,
                                                          classes):
    found, _ = load_folder(folder, classes=CIFAR10_CLASSES)
    rows = "".join(f"images/{name},"
                   f"{found.labels[i].item() if labels == 'integers' else name.split('/')[0]}\n"
                   for i, name in enumerate(found.ids))
    (tmp_path / "list.csv").write_text(f"{header}\n{rows}")
    listed, notes = load_csv(tmp_path / "list.csv", classes=classes)
    assert len(listed) == COUNT and torch.equal(listed.images, found.images)
    assert notes[0] == (f"line 1 ({header}) read as a header, not an image: skipped; paths "
                        "from column 1, labels from column 2")


def test_a_first_row_that_may_be_an_image_is_not_taken_for_a_header(first_cat, tmp_path):
    (tmp_path / "missing.csv").write_text(f"images/cat/gone.png,cat\n{first_cat},cat\n")
    assert refusal(tmp_path / "missing.csv") == (
        f"{tmp_path / 'missing.csv'}, line 1: image file images/cat/gone.png does not exist "
        f"(paths are relative to {tmp_path})")


def test_a_first_row_whose_label_is_a_columns_name_is_still_data(folder, tmp_path):
    """``0.png,y`` with classes y and n: "y" names a label column, so the row was
    dropped as a header, and the run attacked one image fewer (an audit's case)."""
    files = sorted(folder.glob("*/*.png"))[:3]
    (tmp_path / "yn.csv").write_text("".join(
        f"images/{p.parent.name}/{p.name},{'yny'[i]}\n" for i, p in enumerate(files)))
    listed, notes = load_csv(tmp_path / "yn.csv", classes=("y", "n"))
    assert len(listed) == 3 and listed.labels.tolist() == [0, 1, 0] and notes == []
    (tmp_path / "dotted.csv").write_text("path,label.id\n" + "".join(
        f"images/{p.parent.name}/{p.name},{'yny'[i]}\n" for i, p in enumerate(files)))
    listed, notes = load_csv(tmp_path / "dotted.csv", classes=("y", "n"))
    assert len(listed) == 3 and notes[0].startswith("line 1 (path,label.id) read as a header")


def test_a_file_listed_twice_is_refused_naming_the_lines(folder, first_cat, tmp_path):
    (tmp_path / "three.csv").write_text(f"{first_cat},cat\n{first_cat},cat\n"
                                        f"./{first_cat},cat\n")
    assert refusal(tmp_path / "three.csv") == (
        f"{tmp_path / 'three.csv'}: lines 1, 2, 3 list the same image file ({first_cat}, "
        f"./{first_cat}), 3 times; list each image once")
    os.symlink(tmp_path / first_cat, tmp_path / "link.png")
    other = f"images/dog/{sorted((folder / 'dog').iterdir())[0].name}"
    (tmp_path / "linked.csv").write_text(f"path,label\n{first_cat},cat\n{other},dog\n"
                                         f"link.png,cat\n{other},dog\n")
    assert refusal(tmp_path / "linked.csv") == (
        f"{tmp_path / 'linked.csv'}: lines 2, 4 list the same image file ({first_cat}, "
        "link.png), 2 times (1 more file(s) are listed more than once); list each image once")


def test_identical_pixels_in_two_files_count_once(folder, first_cat, tmp_path):
    copy = tmp_path / "copy.png"
    copy.write_bytes((tmp_path / first_cat).read_bytes())
    (tmp_path / "copies.csv").write_text(f"{first_cat},cat\ncopy.png,cat\n")
    found, notes = load_csv(tmp_path / "copies.csv")
    assert found.ids == (first_cat,)
    assert notes[-1] == ("1 copy of pictures held more than once (identical pixels) left out, "
                         f"each picture counted once: copy.png (e.g. copy.png is {first_cat})")
    (tmp_path / "clash.csv").write_text(f"{first_cat},cat\ncopy.png,dog\n")
    assert refusal(tmp_path / "clash.csv") == (
        f"{tmp_path / 'clash.csv'}: {first_cat} (cat) and copy.png (dog) hold the same picture "
        "(identical pixels) with different classes; a picture has one class: remove or "
        "relabel the copies")


def test_csv_errors(first_cat, tmp_path):
    good = first_cat
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
    (tmp_path / "header.csv").write_text("path,colour,size\n")
    with pytest.raises(CorruptDataError, match="needs a path column"):
        load_csv(tmp_path / "header.csv")
    (tmp_path / "only-header.csv").write_text("img,cls\n")
    assert refusal(tmp_path / "only-header.csv") == f"{tmp_path / 'only-header.csv'}: no rows"
    (tmp_path / "huge.csv").write_text(f"{good},1000000000\n")
    assert refusal(tmp_path / "huge.csv") == (
        f"{tmp_path / 'huge.csv'}: label 1000000000 of line 1 ({good}) would number "
        "1,000,000,001 classes; labels count classes from 0, so give the class names "
        "(class_names in an .npz, or --classes) if the model has that many")
