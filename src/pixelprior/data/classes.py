"""Class names: the bundled lists, a user's names (``--classes``) and their checks.

A user's names are checked where they enter (:func:`parse_classes`): no empty name, no
name given twice, and no two names that differ only in case, spaces or Unicode form
(``cat`` and ``Cat``, ``ice cream`` and ``icecream``, ``café`` composed and decomposed);
labels and names are compared in Unicode's composed form (NFC): a label written as a name
must find exactly one class. The bundled ImageNet list (torchvision's order) is the one
exception: it names two different classes ``crane`` (the bird and the machine) and holds
``Cardigan`` (the dog) beside ``cardigan`` (the sweater); it is accepted as it is, and a
label or class folder written as one of those names is refused as ambiguous (:func:`class_index`).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .base import CorruptDataError, DataNotFoundError

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

Classes = Sequence[str] | str | Path  # names, a names file, or "a,b,c"

__all__ = [
    "CIFAR10_CLASSES", "ClassNamesError", "Classes", "check_class_names", "class_index",
    "imagenet_class_names", "parse_classes",
]


class ClassNamesError(CorruptDataError):
    """Labels, class folders or class names that do not fit the class names."""


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names in torchvision's order (bundled).

    Returns:
        1000 names (``crane`` twice, as torchvision's list has it).

    Raises:
        CorruptDataError: the bundled file does not hold 1000 names.
    """
    text = (resources.files("pixelprior") / "assets" / "imagenet_classes.txt").read_text()
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != 1000:
        raise CorruptDataError(f"bundled imagenet_classes.txt has {len(names)} names, not 1000")
    return names


# ----------------------------------------------------------------------------- parsing
def parse_classes(classes: Classes | None) -> tuple[str, ...] | None:
    """Class names from a list, a file or a comma-separated string, checked.

    A file holds one name per line (blank lines at its end are ignored; a blank line
    before a name is refused, as it would shift every later class), or JSON: a list of
    names, or an object ``{"0": name, ...}`` whose values may be lists (the last item is
    the name, as in ImageNet's ``{"0": ["n01440764", "tench"]}``).

    Args:
        classes: names, a path to a names file, ``"cat,dog"``, or ``None``.

    Returns:
        The names as a tuple, or ``None`` when ``classes`` is ``None``.

    Raises:
        DataNotFoundError: a path that does not exist.
        ClassNamesError: an unreadable file, no names, an empty name, a name given twice,
            or names that differ only in case, spaces or Unicode form (the message names them).
    """
    if classes is None:
        return None
    if isinstance(classes, (str, Path)):
        names, where = _classes_from_text(classes), str(classes)
    else:
        names, where = tuple(str(name) for name in classes), "classes"
    if names == imagenet_class_names():
        return names  # the bundled list, accepted as it is (see the module docstring)
    return check_class_names(names, where)


def _classes_from_text(spec: str | Path) -> tuple[str, ...]:
    path = Path(spec).expanduser()
    if path.is_file():
        return _read_names_file(path)
    if isinstance(spec, str) and "," in spec:
        return tuple(name.strip() for name in spec.split(","))
    if path.is_dir():
        raise DataNotFoundError(f"class names file {path} is a folder (give a file with one "
                                "name per line, a JSON list, or names separated by commas)")
    raise DataNotFoundError(f"class names file {path} does not exist (give a file with one "
                            "name per line, a JSON list, or names separated by commas)")


def _read_names_file(path: Path) -> tuple[str, ...]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ClassNamesError(f"cannot read class names file {path}: {exc}") from None
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
        return _names_from_json(path, text)
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    blank = [number for number, line in enumerate(lines, 1) if not line]
    if blank:
        raise ClassNamesError(f"{path}: line {blank[0]} is empty; write one class name per "
                              "line, in the model's order, with no blank lines between")
    return tuple(lines)


def _names_from_json(path: Path, text: str) -> tuple[str, ...]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClassNamesError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(value, dict):
        try:
            items = sorted(value.items(), key=lambda item: int(item[0]))
        except ValueError:
            raise ClassNamesError(f"{path}: a JSON object of class names needs integer "
                                  "keys (\"0\", \"1\", ...)") from None
        if [int(key) for key, _ in items] != list(range(len(items))):
            raise ClassNamesError(f"{path}: the keys must be 0..{len(items) - 1}")
        value = [v[-1] if isinstance(v, list) and v else v for _, v in items]
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise ClassNamesError(f"{path}: JSON class names must be a list of strings")
    return tuple(str(v) for v in value)


# ----------------------------------------------------------------------------- checks
def check_class_names(names: Sequence[str], where: str) -> tuple[str, ...]:
    """``names`` if every class has its own name; else one line saying which do not.

    Args:
        names: the class names, in the model's order.
        where: where they come from (a file, ``classes``), for the message.

    Returns:
        The names as a tuple.

    Raises:
        ClassNamesError: no names, an empty (or blank) name, a name given twice, or names
            equal once case and spaces are ignored.
    """
    names = tuple(names)
    if not names:
        raise ClassNamesError(f"{where}: no class names")
    empty = [i for i, name in enumerate(names) if not name.strip()]
    if empty:
        raise ClassNamesError(f"{where}: class {empty[0]} has an empty name; every class "
                              "needs a name")
    clashes = _clashing_names(names)
    if clashes:
        more = f" ({len(clashes) - 1} more such name(s))" if len(clashes) > 1 else ""
        raise ClassNamesError(f"{where}: {_clash_text(names, clashes[0])}{more}; give every "
                              "class its own name")
    return names


def _clash_text(names: tuple[str, ...], group: list[int]) -> str:
    if len({names[i] for i in group}) == 1:
        return (f"class name {names[group[0]]!r} appears more than once (classes "
                f"{', '.join(map(str, group))})")
    shown = ", ".join(f"{names[i]!r} (class {i})" for i in group)
    return f"class names {shown} differ only in case, spaces or Unicode form"


def _name_key(name: str) -> str:
    return "".join(_nfc(name).split()).casefold()


def _nfc(name: str) -> str:
    """``name`` in Unicode's composed form: ``café`` typed (one code point for é) and
    ``café`` as macOS writes file names (e and a combining accent) are one name."""
    return unicodedata.normalize("NFC", name)


def _clashing_names(names: tuple[str, ...]) -> list[list[int]]:
    """Groups of class indices whose names are equal ignoring case and spaces."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(_name_key(name), []).append(i)
    return [group for group in groups.values() if len(group) > 1]


def class_index(names: Sequence[str], name: str, where: str) -> int:
    """The class ``name`` (exactly as written) stands for.

    Args:
        names: the class names.
        name: a label or class folder written as a name.
        where: what wrote it (``"images.csv: label 'cat' of line 3"``), for the message.

    Returns:
        Its index in ``names``.

    Raises:
        ClassNamesError: ``name`` is not among the names, or names two classes.
    """
    found = [i for i, known in enumerate(names) if _nfc(known) == _nfc(name)]
    if not found:
        raise ClassNamesError(f"{where} is not among the {len(names)} classes "
                              f"({shorten_list(names)})")
    if len(found) > 1:
        raise ClassNamesError(f"{where} names {len(found)} classes "
                              f"({', '.join(map(str, found))}); give class names that name "
                              "each class once (--classes)")
    return found[0]


def class_indices(names: Sequence[str], values: Sequence[str], where: Sequence[str]
                  ) -> list[int]:
    """:func:`class_index` of every value (``where[i]`` says what wrote ``values[i]``).

    Args:
        names: the class names.
        values: labels written as names.
        where: one description per value, for the message.

    Returns:
        The class indices.

    Raises:
        ClassNamesError: a value not among the names, or one naming two classes.
    """
    lookup: dict[str, int] = {}
    for i, name in enumerate(map(_nfc, names)):
        lookup[name] = -1 if name in lookup else i
    out = []
    for value, place in zip(values, where, strict=True):
        index = lookup.get(_nfc(value))
        out.append(index if index is not None and index >= 0 else
                   class_index(names, value, place))  # raises, saying why
    return out


def shorten_list(names: Sequence[str], limit: int = 8) -> str:
    """The first ``limit`` names, comma-separated, and how many there are in all.

    Args:
        names: any names.
        limit: how many to show.

    Returns:
        e.g. ``"a, b, c"`` or ``"a, b, ... (1000 in all)"``.
    """
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
