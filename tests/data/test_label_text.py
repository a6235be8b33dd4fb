"""Labels written as text (a CSV's, an .npz's strings) are read one way for every row:
indices or names, never one row one way and another row the other."""

from __future__ import annotations

import numpy as np
import pytest

from pixelprior.data import load_npz
from pixelprior.data.classes import ClassNamesError
from pixelprior.data.collect import labels_from_text


def read(values, names=None):
    return labels_from_text(values, names, [f"row {i}" for i in range(len(values))], "f")


def test_integer_text_is_an_index_not_a_name_sorted_as_text():
    """'10' was class 2 of the names sorted as text (0, 1, 10, 2, ...) in an .npz."""
    names, labels, _ = read([str(i) for i in range(11)])
    assert labels.tolist() == list(range(11)) and names == tuple(str(i) for i in range(11))


def test_an_npz_of_digit_string_labels_reads_them_as_indices(tmp_path):
    images = np.zeros((11, 4, 4, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(11)  # distinct pictures
    np.savez(tmp_path / "d.npz", images=images, labels=np.array([str(i) for i in range(11)]))
    found, _ = load_npz(tmp_path / "d.npz")
    assert found.labels.tolist() == list(range(11))


def test_numbers_as_class_names_are_refused_as_ambiguous():
    """With classes named '1'..'10', a label '3' was class '4' when another row held 0,
    and class '3' when none did."""
    with pytest.raises(ClassNamesError, match="could be an index or a name"):
        read(["3", "1"], tuple(str(i) for i in range(1, 11)))
    names = tuple(str(i) for i in range(10))  # 0..9 in order: both readings agree
    assert read(["3", "0"], names)[1].tolist() == [3, 0]


@pytest.mark.parametrize(("values", "message"), [
    (["3", "cat"], r"all class indices or all class names, but row 0 has '3' and row 1 "
                   r"has 'cat'"),
    (["3.0", "1.0"], r"label '3.0' of row 0 is a number but not an integer"),
])
def test_labels_of_both_kinds_or_not_integers_are_refused(values, message):
    with pytest.raises(ClassNamesError, match=message):
        read(values)


def test_names_stay_names():
    names, labels, notes = read(["dog", "cat", "dog"])
    assert names == ("cat", "dog") and labels.tolist() == [1, 0, 1] and notes
    assert read(["dog"], ("cat", "dog"))[1].tolist() == [1]
