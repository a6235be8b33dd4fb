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
