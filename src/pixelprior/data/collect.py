"""What the loaders of a user's images share: labels checked against the classes, one
note per kind of conversion, the :class:`ImageSet` built, and a picture held twice
counted once (or refused when its two copies disagree on the class)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch

from .base import CorruptDataError, ImageSet
from .classes import ClassNamesError, check_class_names, class_indices, shorten_list
from .fitting import set_channels
from .identity import image_fingerprints, same_picture_groups

# Without class names, integer labels number the classes 0..max; past this many, a label
# is far more likely a mistake (a huge or garbage value) than a class, and numbering them
# would take the memory of the label itself (10**9 labels: a MemoryError). ImageNet-21k,
# the largest common label set, has 21,843 classes.
MAX_NUMBERED_CLASSES = 100_000
INTEGER = re.compile(r"[+-]?\d+")
# a class folder or name that is a model's class index: ASCII digits only (one rule for
# the loaders' note and experiment.fit_classes: "²" and "-1" are names, not indices)
CLASS_INDEX = re.compile(r"[0-9]+")
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")

__all__ = [
    "CLASS_INDEX", "INTEGER", "MAX_NUMBERED_CLASSES", "NoteTally", "check_labels",
    "count_once", "few", "labels_from_names", "labels_from_text", "make_image_set",
    "numbered_classes", "with_channels",
]


class NoteTally:
    """Per-file conversion notes, aggregated: one line per kind of note."""

    def __init__(self) -> None:
        self.kinds: dict[str, list] = {}

    def add(self, notes: list[str], where: str) -> None:
        """Count the notes of one file.

        Args:
            notes: what was done to the file.
            where: its name (the first one of a kind is shown as the example).
        """
        for note in notes:
            key = re.sub(r"\d+", "N", note)
            entry = self.kinds.setdefault(key, [note, where, 0])
            entry[2] += 1

    def notes(self) -> list[str]:
        """One line per kind of note.

        Returns:
            e.g. ``["palette image: expanded to RGB (4 images, e.g. x/0.png)"]``.
        """
        out = []
        for note, where, count in self.kinds.values():
            noun = "image" if count == 1 else "images"
            out.append(f"{note} ({count} {noun}, e.g. {where})")
        return out


def few(names: Sequence[str], limit: int = 3) -> str:
    """The first ``limit`` names and how many more.

    Args:
        names: any names.
        limit: how many to show.

    Returns:
        e.g. ``"a, b, c and 4 more"``.
    """
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def make_image_set(images: list[np.ndarray] | np.ndarray, labels: Sequence[int] | np.ndarray,
                   names: tuple[str, ...], source: str, ids: tuple[str, ...] | None,
                   indices: np.ndarray | None = None) -> ImageSet:
    """An :class:`ImageSet` from arrays.

    Args:
        images: ``uint8 [C, H, W]`` arrays, or one ``uint8 [N, C, H, W]`` array.
        labels: ``[N]`` class indices.
        names: the class names.
        source: where the images came from.
        ids: per-image names, or ``None``.
        indices: ``int [N]`` indices, or ``None`` (the positions 0..N-1).

    Returns:
        The set.
    """
    stack = np.stack(images) if isinstance(images, list) else images
    labels = np.asarray(labels, dtype=np.int64)
    index = np.arange(len(labels)) if indices is None else np.asarray(indices, np.int64)
    return ImageSet(torch.from_numpy(np.ascontiguousarray(stack, dtype=np.uint8)),
                    torch.from_numpy(labels.copy()), names, source,
                    torch.from_numpy(index.copy()), ids)


# ----------------------------------------------------------------------------- labels
def check_labels(labels: Sequence[int] | np.ndarray, names: tuple[str, ...],
                 where: Sequence[str], source: str) -> None:
    """Every label names one of the classes.

    Args:
        labels: ``[N]`` integers.
        names: the class names.
        where: one description per label (``"row 3"``, ``"line 4 (a.png)"``).
        source: the file, for the message.

    Raises:
        ClassNamesError: the first label outside ``0..len(names) - 1``, named.
    """
    values = np.asarray(labels)
    bad = np.flatnonzero((values < 0) | (values >= len(names)))
    if bad.size:
        first = int(bad[0])
        raise ClassNamesError(f"{source}: label {int(values[first])} of {where[first]} is not "
                              f"among the {len(names)} classes (0..{len(names) - 1})")


def numbered_classes(labels: np.ndarray, where: Sequence[str], source: str
                     ) -> tuple[tuple[str, ...], list[str]]:
    """Class names ``"0" .. "max"`` for integer labels given without names.

    Args:
        labels: ``[N]`` integers (at least one).
        where: one description per label, for the message.
        source: the file, for the message.

    Returns:
        The names and the note saying they were made up.

    Raises:
        ClassNamesError: a negative label, or one that would number more than
            :data:`MAX_NUMBERED_CLASSES` classes.
    """
    values = np.asarray(labels)
    top = int(values.argmax())
    if int(values[top]) >= MAX_NUMBERED_CLASSES:
        raise ClassNamesError(
            f"{source}: label {int(values[top])} of {where[top]} would number "
            f"{int(values[top]) + 1:,} classes; labels count classes from 0, so give the "
            "class names (class_names in an .npz, or --classes) if the model has that many")
    names = tuple(str(i) for i in range(int(values[top]) + 1))
    check_labels(values, names, where, source)
    return names, [f"no class names in the data: its labels (0..{len(names) - 1} seen) are "
                   "read as class indices"]


def labels_from_names(values: list[str], names: tuple[str, ...] | None,
                      where: list[str], source: str
                      ) -> tuple[tuple[str, ...], np.ndarray, list[str]]:
    """Labels written as class names, as indices.

    Args:
        values: the labels as written.
        names: the class names (``None``: the sorted distinct labels, with a note).
        where: one description per label, for the message.
        source: the file, for the message.

    Returns:
        The class names, ``int64 [N]`` labels and the notes.

    Raises:
        ClassNamesError: a label not among the names (or naming two classes), or labels
            that differ only in case, spaces or Unicode form when the names come from them.
    """
    notes = []
    if names is None:
        names = check_class_names(sorted(set(values)), f"{source}: the label names")
        notes.append(f"{len(names)} classes from the label names (sorted): "
                     f"{shorten_list(names)}")
    places = [f"{source}: label {value!r} of {place}" for value, place in zip(
        values, where, strict=True)]
    return names, np.asarray(class_indices(names, values, places), dtype=np.int64), notes


def labels_from_text(values: list[str], names: tuple[str, ...] | None,
                     where: list[str], source: str
                     ) -> tuple[tuple[str, ...], np.ndarray, list[str]]:
    """Labels written as text (a CSV's, an .npz's strings): all class indices (integers)
    or all class names, read one way for every row.

    Integers are indices (``"10"`` is class 10, never the name sorted after ``"1"``).
    Where the given class names are integers too, other than ``"0".."K-1"`` in order,
    a label ``"3"`` could be either, and is refused. Labels of both kinds, or numbers
    that are not integers (``"3.0"``), are refused.

    Args:
        values: the labels as written.
        names: the class names given (``None``: none).
        where: one description per label, for the message.
        source: the file, for the message.

    Returns:
        The class names, ``int64 [N]`` labels and the notes.

    Raises:
        ClassNamesError: labels that can be read two ways, of both kinds, or not
            integers where they are numbers; labels outside the classes.
    """
    integer = [bool(INTEGER.fullmatch(v.strip())) for v in values]
    if any(integer) and not all(integer):
        first, other = integer.index(True), integer.index(False)
        raise ClassNamesError(
            f"{source}: labels must be all class indices or all class names, but "
            f"{where[first]} has {values[first]!r} and {where[other]} has "
            f"{values[other]!r}")
    if not any(integer):
        odd = next((i for i, v in enumerate(values) if NUMBER.fullmatch(v.strip())), None)
        if odd is not None:
            raise ClassNamesError(
                f"{source}: label {values[odd]!r} of {where[odd]} is a number but not an "
                "integer; write class indices as integers (0, 1, ...) or class names")
        return labels_from_names(values, names, where, source)
    numbered = tuple(str(i) for i in range(len(names))) if names is not None else None
    if names is not None and names != numbered and any(INTEGER.fullmatch(n)
                                                       for n in names):
        raise ClassNamesError(
            f"{source}: the labels are integers and some class names are too "
            f"({shorten_list(names)}), so {values[0]!r} of {where[0]} could be an index or "
            "a name; name the classes with words (e.g. class_3)")
    labels = np.asarray([int(v) for v in values], dtype=np.int64)
    if names is None:
        names, notes = numbered_classes(labels, where, source)
        return names, labels, notes
    check_labels(labels, names, where, source)
    return names, labels, []


# ----------------------------------------------------------------------------- sets
def count_once(found: ImageSet, source: str) -> tuple[ImageSet, list[str]]:
    """``found`` with every picture once: later copies of identical pixels left out.

    Two rows with identical pixels are one picture to a model: counted twice, they would
    weigh twice in every success rate. The first copy (its index and id) is kept.

    Args:
        found: the images as loaded.
        source: where they came from, for the messages.

    Returns:
        The set (``found`` itself when every picture is held once) and the note saying
        how many copies were left out.

    Raises:
        CorruptDataError: two copies of one picture with different labels.
    """
    groups = same_picture_groups(image_fingerprints(found.images))
    if not groups:
        return found, []
    name = _namer(found)
    for group in groups:
        labels = {int(found.labels[row]) for row in group}
        if len(labels) > 1:
            shown = " and ".join(f"{name(row)} ({found.class_names[int(found.labels[row])]})"
                                 for row in group[:3])
            raise CorruptDataError(f"{source}: {shown} hold the same picture (identical "
                                   "pixels) with different classes; a picture has one class: "
                                   "remove or relabel the copies")
    dropped = sorted(row for group in groups for row in group[1:])
    left_out = set(dropped)
    keep = [row for row in range(len(found)) if row not in left_out]
    example = groups[0]
    noun = "copy" if len(dropped) == 1 else "copies"
    note = (f"{len(dropped)} {noun} of pictures held more than once (identical pixels) left "
            f"out, each picture counted once: {few([name(row) for row in dropped])} (e.g. "
            f"{name(example[1])} is {name(example[0])})")
    return found.subset(keep), [note]


def _namer(found: ImageSet):
    if found.ids is not None:
        return lambda row: found.ids[row]
    return lambda row: f"row {row}"


def with_channels(found: ImageSet, channels: int) -> tuple[ImageSet, list[str]]:
    """``found`` with ``channels`` channels (3 → 1 luminance, 1 → 3), and the note.

    Args:
        found: a set.
        channels: the model's input channels.

    Returns:
        The set (``found`` itself when it has ``channels``) and the notes.

    Raises:
        CorruptDataError: a conversion other than 3 → 1 or 1 → 3.
    """
    if found.images.shape[1] == channels:
        return found, []
    try:
        images, notes = set_channels(found.images.numpy(), channels)
    except CorruptDataError as exc:
        raise CorruptDataError(f"{found.source}: {exc}") from None
    return ImageSet(torch.from_numpy(images), found.labels, found.class_names, found.source,
                    found.indices, found.ids), notes
