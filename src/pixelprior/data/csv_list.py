"""A CSV list of image files: ``path,label`` rows, paths relative to the CSV.

A first row that is a header is skipped with a note: one that names its columns
(``path,label``, ``file,class`` ...; they then pick the columns) and lists no file (so
``0.png,y`` is data), or one whose label is not a label and whose path is no file
(``img,cls``). A file listed twice (under any
spelling, or through a link) is refused, naming the lines; identical pixels in two
different files are one picture, counted once with a note.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from .base import CorruptDataError, DataNotFoundError, ImageSet
from .classes import Classes, parse_classes
from .collect import INTEGER, NoteTally, count_once, few, labels_from_text, make_image_set
from .fitting import Fitter, check_channels
from .folders import IMAGE_SUFFIXES
from .images import FILE_CHANNELS, read_image_file
from .sizes import Size

PATH_COLUMNS = ("path", "file", "filename", "filepath", "image", "image_path")
LABEL_COLUMNS = ("label", "labels", "class", "class_name", "target", "y")

Row = tuple[int, str, str]  # (line number, path as written, label as written)

__all__ = ["LABEL_COLUMNS", "PATH_COLUMNS", "load_csv"]


def load_csv(path: str | Path, size: Size | None = None, classes: Classes | None = None,
             channels: int = 3) -> tuple[ImageSet, list[str]]:
    """A CSV of ``path,label`` rows (a header row is optional, and skipped with a note).

    Paths are relative to the CSV's folder (or absolute); labels are class indices or
    class names (all of one kind). A header is recognised by its column names (``path``
    / ``file`` / ``image`` ..., ``label`` / ``class`` / ``target`` ...), which then pick
    the columns, or by a label that is not a label beside a path that is no file;
    without one the first two columns are used.

    Args:
        path: the CSV file.
        size: the model's input ``(height, width)``: other sizes are resized (bilinear);
            ``None``: every image must have the same size.
        classes: the class names (see :func:`~pixelprior.data.parse_classes`). Default:
            numbered (integer labels) or the sorted label names.
        channels: the model's input channels: 3 (RGB) or 1 (8-bit luminance, PIL's
            ``"L"``, said in a note).

    Returns:
        The images ``uint8 [N, channels, H, W]`` (ids: the paths as the CSV gives them;
        indices: the data rows' positions, from 0) and the notes.

    Raises:
        DataNotFoundError: no such CSV, or a listed image that does not exist.
        CorruptDataError: a malformed row, no rows, a file listed twice, an unreadable
            image, a label not among the classes, or mixed sizes without ``size``.
        ValueError: ``channels`` is not 1 or 3.
    """
    path = Path(path).expanduser()
    check_channels(channels, FILE_CHANNELS)
    given = parse_classes(classes)
    rows, notes = _csv_rows(path, given)
    if not rows:
        raise CorruptDataError(f"{path}: no rows")
    names, labels, more = _csv_labels(path, rows, given)
    files = _listed_files(path, rows)
    fitter, tally = Fitter(size), NoteTally()
    images = []
    for (_, file, _), target in zip(rows, files, strict=True):
        image = read_image_file(target, channels)
        tally.add(image.notes, file)
        images.append(np.ascontiguousarray(fitter(image.pixels, file).transpose(2, 0, 1)))
    found = make_image_set(images, labels, names, str(path), tuple(r[1] for r in rows))
    found, twice = count_once(found, str(path))
    return found, notes + more + tally.notes() + fitter.notes() + twice


def _csv_rows(path: Path, given: tuple[str, ...] | None) -> tuple[list[Row], list[str]]:
    """Every data row, and the note on a header skipped. A header names its columns (of
    two columns, naming one is enough), or is a first row that is no image."""
    if not path.is_file():
        raise DataNotFoundError(f"CSV file {path} does not exist")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            table = [(n, [c.strip() for c in row]) for n, row in enumerate(csv.reader(f), 1)
                     if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CorruptDataError(f"{path}: not a readable CSV file ({exc})") from None
    columns, notes = (0, 1), []
    named = bool(table) and _names_columns(table[0][1]) and not _lists_a_file(
        path.parent, table[0][1])
    if table and (named or _not_data(path.parent, table, given)):
        line, header = table.pop(0)
        if named:
            columns = _header_columns(path, header)
        notes.append(f"line {line} ({','.join(header)}) read as a header, not an image: "
                     f"skipped; paths from column {columns[0] + 1}, labels from column "
                     f"{columns[1] + 1}")
    out = []
    for line, row in table:
        if len(row) <= max(columns) or not row[columns[0]] or not row[columns[1]]:
            raise CorruptDataError(f"{path}, line {line}: expected path,label; got "
                                   f"{','.join(row)!r}")
        out.append((line, row[columns[0]], row[columns[1]]))
    return out, notes


def _names_columns(row: list[str]) -> bool:
    lowered = [c.lower() for c in row]
    return any(c in PATH_COLUMNS for c in lowered) or any(c in LABEL_COLUMNS for c in lowered)


def _lists_a_file(folder: Path, row: list[str]) -> bool:
    """Whether a row names an image file (a cell with an image suffix, or an existing
    file): then it is data, even where its label is a column's name (``0.png,y`` of
    classes y, n); ``path,label.id`` stays a header."""
    return any(Path(c).suffix.lower() in IMAGE_SUFFIXES
               or (folder / c).expanduser().is_file() for c in row if c)


def _not_data(folder: Path, table: list[tuple[int, list[str]]],
              given: tuple[str, ...] | None) -> bool:
    """The first row is no image: its path is no file and has no file suffix (``img``),
    and its label is no label (not an integer, not one of the given class names)."""
    row = table[0][1]
    if len(row) < 2 or not row[0] or not row[1]:
        return False
    file, label = row[0], row[1]
    if Path(file).suffix or (folder / file).expanduser().is_file() or INTEGER.fullmatch(label):
        return False
    return given is None or label not in given


def _header_columns(path: Path, row: list[str]) -> tuple[int, int]:
    lowered = [c.lower() for c in row]
    found = [next((i for i, c in enumerate(lowered) if c in names), None)
             for names in (PATH_COLUMNS, LABEL_COLUMNS)]
    if len(row) == 2 and found.count(None) == 1:  # two columns, one named: the other
        known = found[0] if found[0] is not None else found[1]
        found = [known, 1 - known] if found[0] is not None else [1 - known, known]
    if None in found:
        raise CorruptDataError(f"{path}: the header {','.join(row)!r} needs a path column "
                               f"({'/'.join(PATH_COLUMNS)}) and a label column "
                               f"({'/'.join(LABEL_COLUMNS)})")
    return found[0], found[1]


def _csv_labels(path: Path, rows: list[Row], given: tuple[str, ...] | None
                ) -> tuple[tuple[str, ...], np.ndarray, list[str]]:
    values = [label for _, _, label in rows]
    where = [f"line {line} ({file})" for line, file, _ in rows]
    return labels_from_text(values, given, where, str(path))


def _listed_files(path: Path, rows: list[Row]) -> list[Path]:
    """Each row's file; a missing one, or one listed twice (under any spelling, or
    through a link), refused, naming the lines."""
    files, lines_of = [], {}
    for line, file, _ in rows:
        target = (path.parent / file).expanduser()
        if not target.is_file():
            raise DataNotFoundError(f"{path}, line {line}: image file {file} does not exist "
                                    f"(paths are relative to {path.parent})")
        stat = os.stat(target)
        lines_of.setdefault((stat.st_dev, stat.st_ino), []).append((line, file))
        files.append(target)
    twice = [listed for listed in lines_of.values() if len(listed) > 1]
    if twice:
        lines = [str(line) for line, _ in twice[0]]
        spellings = list(dict.fromkeys(file for _, file in twice[0]))
        more = (f" ({len(twice) - 1} more file(s) are listed more than once)"
                if len(twice) > 1 else "")
        raise CorruptDataError(f"{path}: lines {few(lines, 10)} list the same image file "
                               f"({', '.join(spellings)}), {len(lines)} times{more}; list "
                               "each image once")
    return files
