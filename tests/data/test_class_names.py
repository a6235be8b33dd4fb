"""Class names given by a user (--classes, files, batches.meta): read and checked."""

from __future__ import annotations

import json
import pickle

import pytest

from pixelprior.data import (
    CIFAR10_CLASSES,
    ClassNamesError,
    CorruptDataError,
    DataNotFoundError,
    check_class_names,
    imagenet_class_names,
    parse_classes,
    read_class_names,
)


def refusal(classes) -> str:
    """The one-line message ``parse_classes(classes)`` refuses with."""
    with pytest.raises(ClassNamesError) as caught:
        parse_classes(classes)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_parse_classes(tmp_path):
    assert parse_classes(None) is None
    assert parse_classes(["a", "b"]) == ("a", "b") == parse_classes("a, b")
    (tmp_path / "c.json").write_text(json.dumps({"1": ["n2", "b"], "0": ["n1", "a"]}))
    assert parse_classes(tmp_path / "c.json") == ("a", "b")
    (tmp_path / "twice.txt").write_text("a\nb\na\n")
    assert refusal(tmp_path / "twice.txt") == (
        f"{tmp_path / 'twice.txt'}: class name 'a' appears more than once (classes 0, 2); "
        "give every class its own name")
    with pytest.raises(DataNotFoundError, match="does not exist"):
        parse_classes(str(tmp_path / "none.txt"))
    (tmp_path / "bad.json").write_text("[1, {}]")
    with pytest.raises(ClassNamesError, match="list of strings"):
        parse_classes(tmp_path / "bad.json")


def test_an_empty_name_is_refused_wherever_it_comes_from(tmp_path):
    assert refusal("cat,,dog") == ("cat,,dog: class 1 has an empty name; every class needs a "
                                   "name")
    assert refusal(["cat", " "]) == ("classes: class 1 has an empty name; every class needs a "
                                     "name")
    (tmp_path / "e.json").write_text('["cat", "", "dog"]')
    assert refusal(tmp_path / "e.json") == (f"{tmp_path / 'e.json'}: class 1 has an empty name; "
                                            "every class needs a name")
    (tmp_path / "gap.txt").write_text("cat\ndog\n\nfrog\n")
    assert refusal(tmp_path / "gap.txt") == (
        f"{tmp_path / 'gap.txt'}: line 3 is empty; write one class name per line, in the "
        "model's order, with no blank lines between")
    (tmp_path / "end.txt").write_text("cat\ndog\n\n\n")
    assert parse_classes(tmp_path / "end.txt") == ("cat", "dog")


def test_names_that_differ_only_in_case_or_spaces_are_refused():
    assert refusal(["cat", "dog", "Cat"]) == (
        "classes: class names 'cat' (class 0), 'Cat' (class 2) differ only in case, spaces "
        "or Unicode form; give every class its own name")
    assert refusal("ice cream,icecream,tea") == (
        "ice cream,icecream,tea: class names 'ice cream' (class 0), 'icecream' (class 1) differ "
        "only in case, spaces or Unicode form; give every class its own name")
    assert refusal(["a", "A", "b", "B "]) == (
        "classes: class names 'a' (class 0), 'A' (class 1) differ only in case, spaces or "
        "Unicode form (1 more such name(s)); give every class its own name")
    assert parse_classes(["cat", "cats", "dog"]) == ("cat", "cats", "dog")


def test_the_bundled_imagenet_names_are_accepted_as_they_are():
    names = imagenet_class_names()
    assert names.count("crane") == 2 and parse_classes(names) == names
    with pytest.raises(ClassNamesError, match="'crane' appears more than once"):
        check_class_names(names, "imagenet")
    assert parse_classes(list(CIFAR10_CLASSES)) == CIFAR10_CLASSES


def test_batches_meta_names_are_checked(tmp_path):
    names = [n.encode() for n in CIFAR10_CLASSES]
    with open(tmp_path / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names}, f)
    assert read_class_names(tmp_path) == CIFAR10_CLASSES
    with open(tmp_path / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [*names[:9], b"Airplane"]}, f)
    with pytest.raises(CorruptDataError) as caught:
        read_class_names(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'batches.meta'}: class names 'airplane' (class 0), 'Airplane' (class 9) "
        "differ only in case, spaces or Unicode form; give every class its own name")


def test_batches_meta_of_other_than_ten_names_or_str_keys(tmp_path):
    """Nine names against labels 0..9 was an IndexError deep in a run (an internal
    error); str keys were 'unreadable (b'label_names')'."""
    with open(tmp_path / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in CIFAR10_CLASSES[:9]]}, f)
    with pytest.raises(CorruptDataError, match="names 9 classes, and CIFAR-10's labels are"):
        read_class_names(tmp_path)
    with open(tmp_path / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(CIFAR10_CLASSES)}, f)
    assert read_class_names(tmp_path) == CIFAR10_CLASSES


def test_a_folder_given_as_class_names_is_named_a_folder(tmp_path):
    """It was said not to exist (a CLI audit)."""
    from pixelprior.data import DataNotFoundError, parse_classes

    folder = tmp_path / "names.txt"
    folder.mkdir()
    with pytest.raises(DataNotFoundError, match="names.txt is a folder"):
        parse_classes(str(folder))
