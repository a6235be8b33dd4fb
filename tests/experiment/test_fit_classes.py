"""One rule for the labels every command trusts (:func:`fit_classes`): the model's classes
by name, by number, or a refusal; never a label read against another class order."""

from __future__ import annotations

import pytest
import torch

from pixelprior.data import ImageSet
from pixelprior.experiment import ConfigError, fit_classes

CIFAR = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "truck")


def image_set(labels: list[int], names: tuple[str, ...]) -> ImageSet:
    return ImageSet(torch.zeros(len(labels), 3, 2, 2, dtype=torch.uint8),
                    torch.tensor(labels), names, "test")


def test_the_same_names_in_order_are_kept():
    data = image_set([3, 8], CIFAR)
    assert fit_classes(data, CIFAR) == (data, [])


def test_a_model_with_the_names_in_another_order_gets_labels_by_name():
    reversed_names = CIFAR[::-1]
    fitted, notes = fit_classes(image_set([3, 8, 0], CIFAR), reversed_names)
    assert [reversed_names[i] for i in fitted.labels] == ["cat", "ship", "airplane"]
    assert fitted.class_names == reversed_names and "mapped" in notes[0]


def test_a_data_class_the_model_lacks_is_refused():
    with pytest.raises(ConfigError, match=r"the data's classes ship are not among"):
        fit_classes(image_set([0, 1], ("cat", "ship")), ("cat", "dog"))


def test_numbered_labels_need_only_fit_below_the_models_count():
    """Integer labels without names (0..8 of a 10-class model: no truck in the file) were
    refused as 9 classes against 10."""
    fitted, notes = fit_classes(image_set([0, 8], tuple(str(i) for i in range(9))), CIFAR)
    assert fitted.labels.tolist() == [0, 8] and fitted.class_names == CIFAR and not notes
    with pytest.raises(ConfigError, match=r"the data has label 10, but the model has "
                                          r"classes 0\.\.9"):
        fit_classes(image_set([10], tuple(str(i) for i in range(11))), CIFAR)


def test_a_model_without_names_takes_the_datas_names_of_its_count_only():
    numbered = tuple(str(i) for i in range(10))
    data = image_set([1], CIFAR)
    assert fit_classes(data, numbered) == (data, [])
    with pytest.raises(ConfigError, match=r"the model has 10 classes but the data names 2 "
                                          r"\(airplane, ship\)"):
        fit_classes(image_set([0, 1], ("airplane", "ship")), numbered)


def test_a_name_held_twice_is_not_mapped_by_name():
    """ImageNet's names hold 'crane' twice (the bird, the machine): label 517 was mapped
    to 134 under the model's other spelling of the names."""
    data_names = ("crane", "dog", "crane")
    with pytest.raises(ConfigError, match="'crane' is held twice"):
        fit_classes(image_set([2], data_names), ("cat", "crane", "dog", "crane x"))


def test_names_spelled_otherwise_in_the_same_order_are_read_by_position():
    """The PyTorch tutorial's plane, car, ...: refused as classes the model lacks."""
    tutorial = ("plane", "car", *CIFAR[2:])
    fitted, notes = fit_classes(image_set([0, 1, 9], CIFAR), tutorial)
    assert fitted.labels.tolist() == [0, 1, 9] and fitted.class_names == tutorial
    assert notes == ["the data's classes read by position as the model's: airplane as "
                     "plane, automobile as car"]


def test_class_folders_named_by_integers_are_those_classes_of_a_nameless_model():
    """Folders 0..10 sort as 0, 1, 10, 2, ...: folder 10 was class 2."""
    sorted_as_text = tuple(sorted(str(i) for i in range(11)))
    data = image_set([sorted_as_text.index("10"), sorted_as_text.index("2")],
                     sorted_as_text)
    fitted, notes = fit_classes(data, tuple(str(i) for i in range(11)))
    assert fitted.labels.tolist() == [10, 2] and "integers read as those" in notes[0]
    with pytest.raises(ConfigError, match="the data has label 10, but the model has "
                                          r"classes 0\.\.9"):
        fit_classes(data, tuple(str(i) for i in range(10)))


def test_two_folders_naming_one_class_index_are_refused():
    """"1" and "01" are both class 1: one class's images would carry two labels."""
    data = image_set([0, 1, 2], ("0", "01", "1"))
    with pytest.raises(ConfigError, match="the classes 01, 1 name one class index"):
        fit_classes(data, tuple(str(i) for i in range(3)))


@pytest.mark.parametrize("names", [("²", "³"), ("-1", "0")])
def test_names_that_are_not_ascii_indices_number_the_classes_in_order(names):
    """One rule with the loaders' note (data.collect.CLASS_INDEX): superscripts and signs
    are names, numbered in order, never read as indices."""
    fitted, notes = fit_classes(image_set([0, 1], names), ("0", "1"))
    assert fitted.labels.tolist() == [0, 1] and notes == []
