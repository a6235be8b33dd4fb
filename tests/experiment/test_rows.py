"""The row schema is derived (AttackResult's fields, the searches' step fields, the
runner's fields), one type checker serves rows and config, and rows are checked by value
against the run's image size, channels and classes."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from pixelprior.experiment import config as config_module
from pixelprior.experiment import rows as rows_module
from pixelprior.experiment.rows import (
    RUNNER_FIELDS,
    RowLimits,
    describe,
    fits,
    kind_type,
    result_fields,
    row_fields,
    row_problem,
    step_fields,
)
from pixelprior.search import SEARCHES, AttackResult, PixelChange

LIMITS = RowLimits(height=4, width=6, channels=3, classes=5)


def good_row(**changes) -> dict:
    result = AttackResult(index=0, success=True, true_label=1, original_label=1,
                          adversarial_label=2, target=None, true_probability=0.25,
                          target_probability=None,
                          pixels=[PixelChange(5, 3, [0.1, 0.2, 0.3], [1.0, 0.0, 1.0])],
                          queries=40, seconds=0.5, prior="uniform", fell_back=False,
                          support_size=24, seed=0, steps={"generations": 2})
    row = result.to_row()
    row.pop("index")
    row.update(mode="unconstrained", image_index=7, config_hash="abc", device="cpu")
    row.update(changes)
    return row


def test_the_schema_is_derived_from_the_result_and_the_runner():
    fields = row_fields()
    result = {f.name for f in dataclasses.fields(AttackResult)} - {
        "index", "steps", "adversarial"}
    assert result <= set(fields) and set(RUNNER_FIELDS) <= set(fields)
    assert {"generations", "x", "y"} <= set(result_fields())
    assert fields["true_probability"] is float and fields["target"] == int | None


def test_every_search_step_is_in_the_schema_with_its_kind():
    schema = step_fields()
    for name in SEARCHES:
        for field_name, kind in SEARCHES.get(name).step_fields.items():
            assert schema[field_name] == kind_type(kind) or kind_type(kind) in typing.get_args(
                schema[field_name]), (name, field_name)
    assert schema["decided_by"] == str | None and schema["corner_certified"] is bool


def test_a_search_declaring_step_fields_gets_them_checked(monkeypatch):
    monkeypatch.setattr(SEARCHES.get("fast"), "step_fields", {
        "positions_scanned": "int", "refine_queries": "int", "corner_certified": "bool",
        "decided_by": "str?", "wobble": "number"}, raising=False)
    assert step_fields()["wobble"] is float
    assert row_problem(good_row(wobble="fast"), LIMITS) == (
        'wobble must be a finite number, got "fast"')
    assert row_problem(good_row(wobble=0.5), LIMITS) is None


def test_a_step_field_two_searches_share_takes_either_kind(monkeypatch):
    monkeypatch.setattr(SEARCHES.get("scan"), "step_fields", {"shared": "int"}, raising=False)
    monkeypatch.setattr(SEARCHES.get("fast"), "step_fields", {"shared": "str"}, raising=False)
    assert fits(3, step_fields()["shared"]) and fits("x", step_fields()["shared"])


def test_unknown_fields_are_left_alone():
    assert row_problem(good_row(a_field_of_a_future_search=[1, "two"]), LIMITS) is None


def test_kinds_of_step_fields():
    assert kind_type("int") is int and kind_type("str?") == str | None
    assert kind_type("number") is float and kind_type("bool?") == bool | None
    with pytest.raises(ValueError, match="unknown step field kind 'float'"):
        kind_type("float")


def test_one_type_checker_for_rows_and_config():
    assert config_module.fits is rows_module.fits
    assert config_module.describe is rows_module.describe
    assert not fits(True, int) and fits(3, float) and not fits(float("nan"), float)
    assert fits([0.5, 1], list[float]) and not fits([0.5, "x"], list[float])
    assert describe(int | None) == "an integer or null"
    assert describe(PixelChange) == "{x, y, old, new}"


@pytest.mark.parametrize("changes, phrase", [
    ({"pixels": [{"x": 5, "y": 3, "old": [0.1, 0.2, 0.3], "new": [7.0, -2.0, 0.5]}]},
     "pixels[0].new must be a color of 3 values in [0, 1], got [7.0, -2.0, 0.5]"),
    ({"pixels": [{"x": 5, "y": 3, "old": [0.1], "new": [1.0, 0.0, 1.0]}]},
     "pixels[0].old must be a color of 3 values in [0, 1]"),
    ({"true_probability": 7.5}, "true_probability must lie in [0, 1] (a probability)"),
    ({"target_probability": -0.5}, "target_probability must lie in [0, 1]"),
    ({"pixels": [{"x": 6, "y": 0, "old": [0, 0, 0], "new": [1, 1, 1]}]},
     "pixels[0] at (6, 0) lies outside the 6×4 image (x 0..5, y 0..3)"),
    ({"x": 2, "y": 4}, "x, y at (2, 4) lies outside the 6×4 image"),
    ({"true_label": 5}, "true_label 5 is not a class of the model (classes 0..4)"),
    ({"target": 9}, "target 9 is not a class of the model"),
    ({"original_label": -1}, "original_label must be >= 0"),
    ({"pixels": [{"x": 1, "y": 1, "old": [0, 0, 0]}]},
     "pixels[0] must be an object with x, y, old and new"),
    # rows that contradict themselves (an audit: a hand edit was reported as a success)
    ({"adversarial_label": 1}, "a success whose adversarial_label is its true_label (1)"),
    ({"target": 3}, "a targeted success whose adversarial_label (2) is not its target (3)"),
    ({"x": 0}, "x, y (0, 3) are not its first pixel's (5, 3)"),
])
def test_impossible_values_are_named(changes, phrase):
    assert row_problem(good_row(**changes), LIMITS).startswith(phrase)


def test_limits_not_known_are_not_checked():
    row = good_row(true_label=99, pixels=[{"x": 99, "y": 99, "old": [0.5], "new": [0.5]}],
                   x=99, y=99)
    assert row_problem(row, RowLimits()) is None
    assert row_problem(row, LIMITS) is not None


def test_a_good_row_passes():
    assert row_problem(good_row(), LIMITS) is None
