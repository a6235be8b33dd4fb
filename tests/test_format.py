"""The one number formatter: missing values, infinities, intervals, digits, NumPy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pixelprior._format import number


@pytest.mark.parametrize("value", [None, float("nan"), math.nan, np.nan, np.float64("nan")])
def test_missing_and_nan_are_a_dash(value):
    assert number(value) == "–"


def test_infinities_have_their_own_signs():
    assert number(float("inf")) == "∞"
    assert number(float("-inf")) == "−∞"
    assert number(np.inf) == "∞" and number(-np.inf) == "−∞"


@pytest.mark.parametrize(("value", "digits", "text"), [
    (1.23456, 2, "1.23"), (1.23456, 0, "1"), (1.23456, 4, "1.2346"), (2, 2, "2.00"),
    (0.0, 1, "0.0"), (-3.14159, 3, "-3.142"), (1234567.891, 1, "1234567.9"),
])
def test_digits_are_the_decimals_shown(value, digits, text):
    assert number(value, digits) == text


def test_default_is_two_decimals():
    assert number(0.5) == "0.50"


def test_a_mean_and_half_width_pair_is_shown_with_plus_minus():
    assert number((1.5, 0.25)) == "1.50 ± 0.25"
    assert number([1.5, 0.3], 1) == "1.5 ± 0.3"  # a list is a pair too
    assert number((10, 2), 0) == "10 ± 2"


def test_a_pair_without_a_half_width_shows_the_mean_only():
    assert number((1.5, None)) == "1.50"
    assert number((1.5, float("nan"))) == "1.50"


def test_a_pair_without_a_mean_is_a_dash():
    assert number((None, 0.5)) == "–"
    assert number((float("nan"), 0.5)) == "–"


def test_a_pair_with_an_infinite_mean():
    assert number((float("inf"), 1.0)) == "∞ ± 1.00"


@pytest.mark.parametrize("value", [np.float64(1.23456), np.float32(1.23456), np.int64(1),
                                   np.array(1.23456)[()]])
def test_numpy_numbers_format_like_python_floats(value):
    assert number(value) == f"{float(value):.2f}"


def test_numpy_infinities():
    assert number(np.float32("inf")) == "∞" and number(np.float32("-inf")) == "−∞"


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_numpy_small_float_nan_is_a_dash(dtype):
    assert number(dtype("nan")) == "–"
    assert number((dtype("nan"), 0.1)) == "–"


def test_pandas_missing_value_is_a_dash():
    pd = pytest.importorskip("pandas")
    assert number(pd.NA) == "–"
