"""The rows of ``results.jsonl``: their schema and the one type checker of the package.

The schema is derived, not written out: the fields of
:class:`~pixelprior.search.AttackResult` (as :meth:`~pixelprior.search.AttackResult.to_row`
writes them), the steps record of every search (each search class declares
``step_fields``, name → kind), and the fields the runner adds (:data:`RUNNER_FIELDS`).
:func:`fits` / :func:`describe` check values against type annotations; the config
(:mod:`pixelprior.experiment.config`) uses the same two functions.

A row is checked in two steps (:func:`row_problem`): every known field by type (unknown
fields, e.g. of a search this version does not know, are left alone), then by value —
counts non-negative, probabilities and colors in [0, 1], colors with the image's
channels, pixels inside the image and labels among the model's classes
(:class:`RowLimits`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import read_rows
from ..search import SEARCHES, AttackResult
from ..search.fast import DECISIONS

RESULTS = "results.jsonl"
ROW_KEY = ("seed", "mode", "image_index")
# what the runner adds to each result's row (pixelprior.experiment.worker)
RUNNER_FIELDS: dict[str, Any] = {
    "mode": str, "image_index": int, "config_hash": str, "group_seconds": float,
    "group_size": int, "finished": float, "device": str, "engine": str,
    "chunk_rows": int | None, "version": str,
    # what the row was made of, as the runner checked them (rows since the thirtieth
    # session): a row outliving its folder's records still names its model and image
    "model_fingerprint": str, "image_fingerprint": str,
}
# the fields every reader uses; the others may be missing in rows of older versions
REQUIRED = ("seed", "mode", "image_index", "success", "true_label", "adversarial_label",
            "pixels", "queries", "seconds", "support_size", "config_hash")
NON_NEGATIVE = ("seed", "image_index", "queries", "seconds", "support_size", "generations",
                "positions_scanned", "true_label", "adversarial_label", "original_label",
                "target")
LABELS = ("true_label", "adversarial_label", "original_label", "target")
PROBABILITIES = ("true_probability", "target_probability")
TOLERANCE = 1e-6  # float32 rounding of a probability or a color
KINDS = {"int": int, "number": float, "bool": bool, "str": str}  # step_fields' kinds


# --------------------------------------------------------------------------- types
def kind_type(kind: str) -> Any:
    """The annotation of a steps kind.

    Args:
        kind: ``"int"``, ``"number"``, ``"bool"`` or ``"str"``, with a ``?`` suffix when
            null is allowed.

    Returns:
        The type (``int | None`` for ``"int?"``).

    Raises:
        ValueError: an unknown kind.
    """
    base = KINDS.get(kind.rstrip("?"))
    if base is None:
        raise ValueError(f"unknown step field kind {kind!r}; use one of {sorted(KINDS)} "
                         "(with ? for nullable)")
    return base | None if kind.endswith("?") else base


def fits(value: Any, expected: Any) -> bool:
    """Whether ``value`` (read from JSON or TOML) fits the annotation ``expected``.

    Integers are never booleans; numbers are finite and may be written as integers;
    lists may be tuples; a dataclass is an object with each of its fields fitting.

    Args:
        value: the value.
        expected: a type annotation (``int``, ``float | None``, ``list[float]``, a
            dataclass, ...).

    Returns:
        Whether it fits.
    """
    return type_problem("value", value, expected) is None


def describe(expected: Any) -> str:
    """An annotation in words, for messages.

    Args:
        expected: a type annotation.

    Returns:
        E.g. ``"an integer or null"``, ``"a list of a number"``, ``"{x, y, old, new}"``.
    """
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(arm) for arm in typing.get_args(expected))
    if expected is type(None):
        return "null"
    if origin is list:
        return f"a list of {describe(typing.get_args(expected)[0])}"
    if dataclasses.is_dataclass(expected):
        return "{" + ", ".join(f.name for f in dataclasses.fields(expected)) + "}"
    return {bool: "true or false", int: "an integer", float: "a finite number",
            str: "a string", dict: "a table of names and values"}.get(expected, str(expected))


def type_problem(name: str, value: Any, expected: Any) -> str | None:
    """Why ``value`` does not fit ``expected``, naming the part that does not
    (``pixels[0].x``).

    Args:
        name: the value's name in the message.
        value: the value.
        expected: a type annotation.

    Returns:
        One phrase, or ``None`` when it fits.
    """
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        arms = typing.get_args(expected)
        if any(type_problem(name, value, arm) is None for arm in arms):
            return None
        return f"{name} must be {describe(expected)}, got {shown(value)}"
    if origin is list:
        return _list_problem(name, value, typing.get_args(expected)[0])
    if dataclasses.is_dataclass(expected):
        return _object_problem(name, value, expected)
    if _plain_fits(value, expected):
        return None
    return f"{name} must be {describe(expected)}, got {shown(value)}"


def _plain_fits(value: Any, expected: Any) -> bool:
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
    if expected is str:
        return isinstance(value, str)
    if expected is Any:
        return True
    return isinstance(value, expected)


def _list_problem(name: str, value: Any, item: Any) -> str | None:
    if not isinstance(value, (list, tuple)):
        return f"{name} must be a list of {describe(item)}, got {shown(value)}"
    for n, element in enumerate(value):
        problem = type_problem(f"{name}[{n}]", element, item)
        if problem:
            return problem
    return None


def _object_problem(name: str, value: Any, cls: type) -> str | None:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(value, dict) or not set(names) <= set(value):
        listed = ", ".join(names[:-1]) + f" and {names[-1]}"
        return f"{name} must be an object with {listed}, got {shown(value)}"
    for field_name in names:
        problem = type_problem(f"{name}.{field_name}", value[field_name], hints[field_name])
        if problem:
            return problem
    return None


def shown(value: Any) -> str:
    """A value for a message: JSON, cut at 40 characters.

    Args:
        value: the value.

    Returns:
        Its text.
    """
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --------------------------------------------------------------------------- schema
def result_fields() -> dict[str, Any]:
    """The row fields of an :class:`~pixelprior.search.AttackResult`, as
    :meth:`~pixelprior.search.AttackResult.to_row` writes them: its dataclass fields
    (without ``index``, which the runner replaces by ``image_index``, and the
    ``adversarial`` tensor), ``generations`` (always written, null for searches without
    generations) and the first pixel's ``x`` and ``y``.

    Returns:
        Field name → annotation.
    """
    hints = typing.get_type_hints(AttackResult)
    out = {f.name: hints[f.name] for f in dataclasses.fields(AttackResult)
           if f.name not in ("index", "steps", "adversarial")}
    out.update(generations=int | None, x=int, y=int)
    return out


def step_fields() -> dict[str, Any]:
    """The fields of every search's steps record (``step_fields`` of each class in
    :data:`~pixelprior.search.SEARCHES`). A name two searches share takes either kind.

    Returns:
        Field name → annotation.
    """
    out: dict[str, Any] = {}
    for name in SEARCHES:
        for field_name, kind in getattr(SEARCHES.get(name), "step_fields", {}).items():
            annotation = kind_type(kind)
            out[field_name] = annotation if field_name not in out or (
                out[field_name] == annotation) else out[field_name] | annotation
    return out


def row_fields() -> dict[str, Any]:
    """Every known field of a row: the result's, the searches' steps and the runner's.

    Returns:
        Field name → annotation.
    """
    fields = {**step_fields(), **result_fields(), **RUNNER_FIELDS}
    fields["generations"] = int | None  # to_row writes it for every search
    return fields


@dataclass(frozen=True)
class RowLimits:
    """What a run's values must lie within (``None``: not known, not checked).

    Args:
        height: the attacked images' height in pixels.
        width: their width.
        channels: their channels (the length of a color).
        classes: the model's number of classes.
    """

    height: int | None = None
    width: int | None = None
    channels: int | None = None
    classes: int | None = None


def row_problem(row: dict, limits: RowLimits | None = None,
                fields: dict[str, Any] | None = None) -> str | None:
    """What is wrong with one ``results.jsonl`` row, by type then by value.

    Args:
        row: the row.
        limits: the image size, channels and classes of the run (default: unknown).
        fields: the schema (default: :func:`row_fields`; pass it when checking many rows).

    Returns:
        One phrase, or ``None`` when nothing is wrong.
    """
    fields = fields if fields is not None else row_fields()
    for name in REQUIRED:
        if name not in row:
            return f"the field {name!r} is missing"
    for name, expected in fields.items():
        if name in row:
            problem = type_problem(name, row[name], expected)
            if problem:
                return problem
    return _value_problem(row, limits or RowLimits())


def _value_problem(row: dict, limits: RowLimits) -> str | None:
    for name in NON_NEGATIVE:
        if row.get(name) is not None and row[name] < 0:
            return f"{name} must be >= 0, got {shown(row[name])}"
    for name in PROBABILITIES:
        value = row.get(name)
        if value is not None and not -TOLERANCE <= value <= 1 + TOLERANCE:
            return f"{name} must lie in [0, 1] (a probability), got {shown(value)}"
    for name in LABELS:
        value = row.get(name)
        if value is not None and limits.classes is not None and value >= limits.classes:
            return (f"{name} {value} is not a class of the model (classes 0.."
                    f"{limits.classes - 1})")
    problem = _pixels_problem(row["pixels"], limits) or _position_problem(
        "x, y", row.get("x"), row.get("y"), limits) or _verdict_problem(row)
    if problem:
        return problem
    if row["success"] and row.get("clean_correct", True) and not row["pixels"]:
        return "a success that changed no pixel (pixels is empty)"
    return _consistency_problem(row)


def _consistency_problem(row: dict) -> str | None:
    """A row that contradicts itself (a hand edit, a damaged file): a success whose label
    did not change (or is not the target), a position other than its first pixel's."""
    if row["success"] and row.get("clean_correct", True):
        target = row.get("target")
        if target is None and row["adversarial_label"] == row["true_label"]:
            return (f"a success whose adversarial_label is its true_label "
                    f"({row['true_label']})")
        if target is not None and row["adversarial_label"] != target:
            return (f"a targeted success whose adversarial_label ({row['adversarial_label']}) "
                    f"is not its target ({target})")
    first = row["pixels"][0] if row["pixels"] else None
    if first is not None and row.get("x") is not None and (
            (row["x"], row.get("y")) != (first.get("x"), first.get("y"))):
        return (f"x, y ({row['x']}, {row.get('y')}) are not its first pixel's "
                f"({first.get('x')}, {first.get('y')})")
    return None


def _verdict_problem(row: dict) -> str | None:
    """A fast row's stage and verified share outside what they may be."""
    decided = row.get("decided_by")
    if decided is not None and decided not in DECISIONS:
        return f"decided_by {shown(decided)} is none of {', '.join(DECISIONS)}"
    volume = row.get("verified_volume")
    if volume is not None and not 0 <= volume <= 1 + TOLERANCE:
        return f"verified_volume must lie in [0, 1] (a share), got {shown(volume)}"
    return None


def _pixels_problem(pixels: list[dict], limits: RowLimits) -> str | None:
    for n, pixel in enumerate(pixels):
        for axis in ("x", "y"):
            if pixel[axis] < 0:
                return f"pixels[{n}].{axis} must be an integer >= 0, got {pixel[axis]}"
        problem = _position_problem(f"pixels[{n}]", pixel["x"], pixel["y"], limits)
        if problem:
            return problem
        for name in ("old", "new"):
            if not _is_color(pixel[name], limits.channels):
                channels = f"{limits.channels} " if limits.channels is not None else ""
                return (f"pixels[{n}].{name} must be a color of {channels}values in [0, 1], "
                        f"got {shown(pixel[name])}")
    return None


def _is_color(values: list[float], channels: int | None) -> bool:
    if not values or (channels is not None and len(values) != channels):
        return False
    return all(-TOLERANCE <= v <= 1 + TOLERANCE for v in values)


def _position_problem(name: str, x: int | None, y: int | None, limits: RowLimits
                      ) -> str | None:
    if x is None or y is None or limits.width is None or limits.height is None:
        return None
    if 0 <= x < limits.width and 0 <= y < limits.height:
        return None
    return (f"{name} at ({x}, {y}) lies outside the {limits.width}×{limits.height} image "
            f"(x 0..{limits.width - 1}, y 0..{limits.height - 1})")


def read_results(path: Path | str, repair: bool = False) -> list[dict]:
    """Rows of a ``results.jsonl``, not yet checked against a run
    (:func:`~pixelprior.experiment.rundir.read_run` does that).

    Args:
        path: the file.
        repair: complete or drop an unfinished last line on disk too.

    Returns:
        The rows, in file order.

    Raises:
        CorruptResultsError: a damaged line other than the last, or two rows for one
            (seed, mode, image).
    """
    return read_rows(path, repair=repair, key=ROW_KEY)


def fallback_notes(rows: list[dict]) -> list[str]:
    """One line per mode whose prior fell back to the whole image on some rows (the
    map's set was empty, or the map constant: a model without input gradients), so that
    the mode's results are not read as the prior's.

    Args:
        rows: result rows (``fell_back`` and ``mode`` each).

    Returns:
        E.g. ``"note: constrained started from the whole image on 3 of 10 rows ..."``.
    """
    counts: dict[str, list[int]] = {}
    for row in rows:
        fell, total = counts.setdefault(row["mode"], [0, 0])
        counts[row["mode"]] = [fell + bool(row.get("fell_back")), total + 1]
    return [f"note: {mode} started from the whole image on {fell} of {total} rows: its "
            "map gave no set to start from (an empty susceptible set, or a constant map: "
            "a model without input gradients), so on those rows it ran as unconstrained "
            "(their rows say fell_back)"
            for mode, (fell, total) in counts.items() if fell]
