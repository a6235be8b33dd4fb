"""A user's own images: an ImageFolder tree, an ``.npz`` of arrays, a CSV of files.

Every loader returns an :class:`~pixelprior.data.base.ImageSet` (``uint8 [N, 3, H, W]``,
``int64`` labels) and a list of notes: what was done to the data on the way, in words
(conversions, resizing, class names made up), one line each and never one per file.
Nothing is changed silently; anything that cannot be read or does not fit is a
:class:`~pixelprior.data.base.DataError` naming the file, row or label.

Sizes are ``(height, width)`` (an ``int`` means a square); notes print image sizes the
way image viewers do, width × height.
"""

from __future__ import annotations

import csv
import json
import re
import zipfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .base import CorruptDataError, DataNotFoundError, ImageSet
from .images import read_image_file
from .sizes import Size, as_height_width, format_size

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
PATH_COLUMNS = ("path", "file", "filename", "filepath", "image", "image_path")
LABEL_COLUMNS = ("label", "labels", "class", "class_name", "target", "y")
SOURCE_KINDS = ("folder", "npz", "csv")

Classes = Sequence[str] | str | Path

__all__ = [
    "IMAGE_SUFFIXES", "SOURCE_KINDS", "ClassNamesError", "load_csv", "load_folder",
    "load_image_source", "load_npz", "parse_classes",
]


class ClassNamesError(CorruptDataError):
    """Labels or class folders that do not fit the class names."""


# ----------------------------------------------------------------------------- classes
def parse_classes(classes: Classes | None) -> tuple[str, ...] | None:
    """Class names from a list, a file or a comma-separated string.

    A file holds one name per line (blank lines skipped), or JSON: a list of names, or
    an object ``{"0": name, ...}`` whose values may be lists (the last item is the
    name, as in ImageNet's ``{"0": ["n01440764", "tench"]}``).

    Args:
        classes: names, a path to a names file, ``"cat,dog"``, or ``None``.

    Returns:
        The names as a tuple, or ``None`` when ``classes`` is ``None``.

    Raises:
        DataNotFoundError: a path that does not exist.
        ClassNamesError: an unreadable file, an empty list, or a name given twice.
    """
    if classes is None:
        return None
    if isinstance(classes, (str, Path)):
        names = _classes_from_text(classes)
    else:
        names = tuple(str(name) for name in classes)
    return _checked_names(names, str(classes) if isinstance(classes, (str, Path))
                          else "classes")


def _classes_from_text(spec: str | Path) -> tuple[str, ...]:
    path = Path(spec).expanduser()
    if path.is_file():
        return _read_names_file(path)
    if isinstance(spec, str) and "," in spec:
        return tuple(name.strip() for name in spec.split(",") if name.strip())
    raise DataNotFoundError(f"class names file {path} does not exist (give a file with one "
                            "name per line, a JSON list, or names separated by commas)")


def _read_names_file(path: Path) -> tuple[str, ...]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ClassNamesError(f"cannot read class names file {path}: {exc}") from None
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
        return _names_from_json(path, text)
    return tuple(line.strip() for line in text.splitlines() if line.strip())


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


def _checked_names(names: tuple[str, ...], where: str) -> tuple[str, ...]:
    if not names:
        raise ClassNamesError(f"{where}: no class names")
    twice = [name for name, count in Counter(names).items() if count > 1]
    if twice:
        raise ClassNamesError(f"{where}: class name {twice[0]!r} appears more than once")
    return names


def _numbered(count: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(count))


# ----------------------------------------------------------------------------- pixels


def _resize(pixels: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """``uint8 [H, W, 3]`` resized bilinearly (antialiased, as :func:`fit_image`)."""
    from PIL import Image

    image = Image.fromarray(pixels).resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


class _Fitter:
    """Brings ``[H, W, 3]`` arrays to one size and remembers what it resized."""

    def __init__(self, size: Size | None) -> None:
        self.target = as_height_width(size)
        self.first: tuple[str, tuple[int, int]] | None = None
        self.resized: Counter = Counter()

    def __call__(self, pixels: np.ndarray, where: str) -> np.ndarray:
        shape = (int(pixels.shape[0]), int(pixels.shape[1]))
        if self.target is None:
            if self.first is None:
                self.first = (where, shape)
            elif shape != self.first[1]:
                raise CorruptDataError(
                    f"images of different sizes: {self.first[0]} is "
                    f"{format_size(self.first[1])} and {where} is {format_size(shape)}; give the "
                    "model's input size to resize them")
            return pixels
        if shape == self.target:
            return pixels
        self.resized[shape] += 1
        return _resize(pixels, self.target)

    def notes(self) -> list[str]:
        """One note on the resizing done, if any."""
        if not self.resized:
            return []
        count = sum(self.resized.values())
        common = self.resized.most_common(1)[0][0]
        others = " (and others)" if len(self.resized) > 1 else ""
        noun = "image" if count == 1 else "images"
        return [f"{count} {noun} resized from {format_size(common)}{others} to "
                f"{format_size(self.target)} (bilinear)"]


class _NoteTally:
    """Per-file conversion notes, aggregated: one line per kind of note."""

    def __init__(self) -> None:
        self.kinds: dict[str, list] = {}

    def add(self, notes: list[str], where: str) -> None:
        for note in notes:
            key = re.sub(r"\d+", "N", note)
            entry = self.kinds.setdefault(key, [note, where, 0])
            entry[2] += 1

    def notes(self) -> list[str]:
        out = []
        for note, where, count in self.kinds.values():
            noun = "image" if count == 1 else "images"
            out.append(f"{note} ({count} {noun}, e.g. {where})")
        return out


def _read_file(path: Path, name: str, fitter: _Fitter, tally: _NoteTally) -> np.ndarray:
    """One image file as ``uint8 [3, H, W]`` at the fitter's size."""
    image = read_image_file(path)
    tally.add(image.notes, name)
    return np.ascontiguousarray(fitter(image.pixels, name).transpose(2, 0, 1))


def _image_set(images: list[np.ndarray] | np.ndarray, labels: list[int] | np.ndarray,
               names: tuple[str, ...], source: str, ids: tuple[str, ...] | None,
               indices: np.ndarray | None = None) -> ImageSet:
    stack = np.stack(images) if isinstance(images, list) else images
    labels = np.asarray(labels, dtype=np.int64)
    index = np.arange(len(labels)) if indices is None else np.asarray(indices, np.int64)
    return ImageSet(torch.from_numpy(np.ascontiguousarray(stack, dtype=np.uint8)),
                    torch.from_numpy(labels.copy()), names, source,
                    torch.from_numpy(index.copy()), ids)


def _check_labels(labels: Sequence[int], names: tuple[str, ...], where: Sequence[str],
                  source: str) -> None:
    for label, place in zip(labels, where, strict=True):
        if not 0 <= int(label) < len(names):
            raise ClassNamesError(f"{source}: label {int(label)} of {place} is not among the "
                                  f"{len(names)} classes (0..{len(names) - 1})")


# ----------------------------------------------------------------------------- folders
def load_folder(root: str | Path, size: Size | None = None,
                classes: Classes | None = None) -> tuple[ImageSet, list[str]]:
    """An ImageFolder tree, ``root/<class>/**/*.png|jpg|jpeg|bmp|webp``.

    Args:
        root: the folder holding one sub-folder per class.
        size: the model's input ``(height, width)`` (or a side): images of other sizes
            are resized to it (bilinear); ``None``: every image must have the same size.
        classes: the class names (see :func:`parse_classes`), in the model's order;
            every folder name must be one of them. Default: the sorted folder names.

    Returns:
        The images (ids: file paths relative to ``root``) and the notes.

    Raises:
        DataNotFoundError: ``root`` is not a folder.
        CorruptDataError: no class folders, empty ones, an unreadable file, an unknown
            class folder, or mixed sizes without ``size``.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(f"image folder {root} does not exist")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise CorruptDataError(f"{root}: no class folders (an ImageFolder holds "
                               "root/<class>/<image files>)")
    names, notes = _folder_classes(root, folders, parse_classes(classes))
    files = {folder: _image_files(folder) for folder in folders}
    empty = [folder.name for folder, found in files.items() if not found[0]]
    if empty:
        raise CorruptDataError(f"{root}: class folder(s) without image files "
                               f"({', '.join(IMAGE_SUFFIXES)}): {', '.join(empty)}")
    images, labels, ids = [], [], []
    fitter, tally = _Fitter(size), _NoteTally()
    for folder in folders:
        for path in files[folder][0]:
            name = path.relative_to(root).as_posix()
            images.append(_read_file(path, name, fitter, tally))
            labels.append(names.index(folder.name))
            ids.append(name)
    skipped = sum(found[1] for found in files.values())
    notes += _loose_files_note(root, skipped)
    return (_image_set(images, labels, names, str(root), tuple(ids)),
            notes + tally.notes() + fitter.notes())


def _folder_classes(root: Path, folders: list[Path], given: tuple[str, ...] | None
                    ) -> tuple[tuple[str, ...], list[str]]:
    found = tuple(folder.name for folder in folders)
    if given is None:
        return found, [f"{len(found)} classes from the folder names (sorted): "
                       f"{_shorten_list(found)}"]
    unknown = [name for name in found if name not in given]
    if unknown:
        raise ClassNamesError(f"{root}: class folder {unknown[0]!r} is not among the "
                              f"{len(given)} class names ({_shorten_list(given)})")
    return given, []


def _image_files(folder: Path) -> tuple[list[Path], int]:
    """Image files under ``folder`` (sorted) and how many other files it holds."""
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
    images = sorted(p for p in files if p.suffix.lower() in IMAGE_SUFFIXES)
    return images, len(files) - len(images)


def _loose_files_note(root: Path, skipped: int) -> list[str]:
    loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    out = []
    if loose:
        out.append(f"{len(loose)} image file(s) directly in {root} ignored (not in a class "
                   "folder)")
    if skipped:
        out.append(f"{skipped} file(s) in the class folders ignored (not "
                   f"{'/'.join(s[1:] for s in IMAGE_SUFFIXES)})")
    return out


def _shorten_list(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


# ----------------------------------------------------------------------------- npz
def load_npz(path: str | Path, size: Size | None = None,
             classes: Classes | None = None) -> tuple[ImageSet, list[str]]:
    """Arrays ``images`` and ``labels`` (optional ``class_names``, ``indices``, ``ids``).

    ``images``: ``uint8`` ``[N, H, W, 3]`` or ``[N, 3, H, W]`` (one channel, or
    ``[N, H, W]``, is repeated to three with a note); other integer types within 0..255
    and floats within [0, 1] are converted with a note; anything else is refused.
    ``labels``: integers, or class names (strings).

    Args:
        path: the ``.npz`` file.
        size: the model's input ``(height, width)``: other sizes are resized (bilinear).
        classes: the class names; when the file holds ``class_names`` too, they must
            agree.

    Returns:
        The images and the notes.

    Raises:
        DataNotFoundError: no such file.
        CorruptDataError: unreadable, missing keys, or images/labels that do not fit.
    """
    path = Path(path).expanduser()
    arrays = _read_npz(path)
    images, notes = _npz_images(path, arrays["images"])
    names, labels, more = _npz_labels(path, arrays, parse_classes(classes), len(images))
    fitter = _Fitter(size)
    if fitter.target is not None and images.shape[2:] != fitter.target:
        images = np.stack([fitter(image.transpose(1, 2, 0), f"row {i}").transpose(2, 0, 1)
                           for i, image in enumerate(images)])
    for key in ("ids", "indices"):
        if key in arrays and arrays[key].shape != (len(labels),):
            raise CorruptDataError(f"{path}: {len(labels)} images but {key} of shape "
                                   f"{arrays[key].shape}")
    ids = tuple(str(v) for v in arrays["ids"]) if "ids" in arrays else None
    indices = arrays.get("indices")
    return (_image_set(images, labels, names, str(path), ids, indices),
            notes + more + fitter.notes())


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataNotFoundError(f"image file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise CorruptDataError(f"{path}: not a readable .npz file (not a zip archive of "
                               "arrays; save it with numpy.savez)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.keys())
            arrays = {key: npz[key] for key in keys
                      if key in ("images", "labels", "class_names", "indices", "ids")}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise CorruptDataError(f"{path}: holds Python objects (pickled arrays); save "
                                   "class_names as a string array (np.array(names))") from None
        raise CorruptDataError(f"{path}: not a readable .npz file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise CorruptDataError(f"{path}: not a readable .npz file ({exc})") from None
    missing = [key for key in ("images", "labels") if key not in arrays]
    if missing:
        raise CorruptDataError(f"{path}: needs arrays 'images' and 'labels'; found "
                               f"{', '.join(repr(k) for k in keys) or 'none'}")
    return arrays


def _npz_images(path: Path, images: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """``images`` as ``uint8 [N, 3, H, W]`` and what was done to them."""
    notes: list[str] = []
    if images.ndim == 3:
        images, notes = images[:, None], ["images [N, H, W] read as one channel"]
    if images.ndim != 4:
        raise CorruptDataError(f"{path}: images must be [N, H, W, C] or [N, C, H, W], got "
                               f"shape {images.shape}")
    images, layout = _to_nchw(path, images)
    notes += layout
    images, converted = _to_uint8(path, images)
    notes += converted
    if images.shape[1] == 1:
        images = np.repeat(images, 3, axis=1)
        notes.append("one-channel (grayscale) images repeated to three channels (RGB)")
    return np.ascontiguousarray(images), notes


def _to_nchw(path: Path, images: np.ndarray) -> tuple[np.ndarray, list[str]]:
    first, last = images.shape[1] in (1, 3), images.shape[3] in (1, 3)
    if first and last:
        return images, [f"images of shape {images.shape} read as [N, C, H, W]"]
    if first:
        return images, []
    if last:
        return images.transpose(0, 3, 1, 2), []
    raise CorruptDataError(f"{path}: images must have 1 or 3 channels ([N, H, W, 3] or "
                           f"[N, 3, H, W]), got shape {images.shape}")


def _to_uint8(path: Path, images: np.ndarray) -> tuple[np.ndarray, list[str]]:
    if images.dtype == np.uint8:
        return images, []
    if images.size == 0:
        raise CorruptDataError(f"{path}: no images")
    low, high = images.min(), images.max()
    if np.issubdtype(images.dtype, np.floating):
        if not np.isfinite(images).all() or low < 0 or high > 1:
            raise CorruptDataError(f"{path}: float images must lie in [0, 1], got values in "
                                   f"[{low:.4g}, {high:.4g}]; save uint8 (0..255) or floats "
                                   "in [0, 1]")
        return (np.floor(images.astype(np.float64) * 255 + 0.5).astype(np.uint8),
                [f"{images.dtype} images in [0, 1] converted to 8 bits (round(v * 255))"])
    if np.issubdtype(images.dtype, np.integer) and low >= 0 and high <= 255:
        return images.astype(np.uint8), [f"{images.dtype} images (values 0..255) read as "
                                         "uint8"]
    raise CorruptDataError(f"{path}: images must be uint8 (or floats in [0, 1]), got "
                           f"{images.dtype} with values {low}..{high}")


def _npz_labels(path: Path, arrays: dict, given: tuple[str, ...] | None, count: int
                ) -> tuple[tuple[str, ...], np.ndarray, list[str]]:
    labels = arrays["labels"]
    if labels.ndim != 1 or labels.shape[0] != count:
        raise CorruptDataError(f"{path}: {count} images but labels of shape {labels.shape}")
    stored = (tuple(str(n) for n in arrays["class_names"]) if "class_names" in arrays
              else None)
    if given is not None and stored is not None and given != stored:
        raise ClassNamesError(f"{path}: its class_names ({_shorten_list(stored)}) differ "
                              f"from the given classes ({_shorten_list(given)})")
    names = given or stored
    rows = [f"row {i}" for i in range(count)]
    if labels.dtype.kind in "US":
        return _named_labels([str(v) for v in labels], names, rows, str(path))
    if labels.dtype.kind not in "iu":
        raise CorruptDataError(f"{path}: labels must be integers (or class names), got "
                               f"{labels.dtype}")
    notes = []
    if names is None:
        names = _numbered(int(labels.max()) + 1 if count else 0)
        notes.append(f"no class names: classes numbered 0..{len(names) - 1}")
    _check_labels(labels.tolist(), names, rows, str(path))
    return names, labels.astype(np.int64), notes


def _named_labels(values: list[str], names: tuple[str, ...] | None, where: list[str],
                  source: str) -> tuple[tuple[str, ...], np.ndarray, list[str]]:
    notes = []
    if names is None:
        names = tuple(sorted(set(values)))
        notes.append(f"{len(names)} classes from the label names (sorted): "
                     f"{_shorten_list(names)}")
    index = {name: i for i, name in enumerate(names)}
    for value, place in zip(values, where, strict=True):
        if value not in index:
            raise ClassNamesError(f"{source}: label {value!r} of {place} is not among the "
                                  f"{len(names)} classes ({_shorten_list(names)})")
    return names, np.asarray([index[v] for v in values], dtype=np.int64), notes


# ----------------------------------------------------------------------------- csv
def load_csv(path: str | Path, size: Size | None = None,
             classes: Classes | None = None) -> tuple[ImageSet, list[str]]:
    """A CSV of ``path,label`` rows (a header row is optional).

    Paths are relative to the CSV's folder (or absolute); labels are class indices or
    class names (all of one kind). A header is recognised by its column names (``path``
    / ``file`` / ``image`` ..., ``label`` / ``class`` / ``target`` ...), which then pick
    the columns; without one the first two columns are used.

    Args:
        path: the CSV file.
        size: the model's input ``(height, width)``: other sizes are resized (bilinear);
            ``None``: every image must have the same size.
        classes: the class names (see :func:`parse_classes`). Default: numbered
            (integer labels) or the sorted label names.

    Returns:
        The images (ids: the paths as the CSV gives them) and the notes.

    Raises:
        DataNotFoundError: no such CSV, or a listed image that does not exist.
        CorruptDataError: a malformed row, an unreadable image, a label not among the
            classes, or mixed sizes without ``size``.
    """
    path = Path(path).expanduser()
    rows = _csv_rows(path)
    names, labels, notes = _csv_labels(path, rows, parse_classes(classes))
    fitter, tally = _Fitter(size), _NoteTally()
    images = []
    for line, file, _ in rows:
        target = (path.parent / file).expanduser()
        if not target.is_file():
            raise DataNotFoundError(f"{path}, line {line}: image file {file} does not exist "
                                    f"(paths are relative to {path.parent})")
        images.append(_read_file(target, file, fitter, tally))
    if not images:
        raise CorruptDataError(f"{path}: no rows")
    return (_image_set(images, labels, names, str(path), tuple(r[1] for r in rows)),
            notes + tally.notes() + fitter.notes())


def _csv_rows(path: Path) -> list[tuple[int, str, str]]:
    """``(line number, path, label)`` of every data row."""
    if not path.is_file():
        raise DataNotFoundError(f"CSV file {path} does not exist")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            table = [(n, [c.strip() for c in row]) for n, row in enumerate(csv.reader(f), 1)
                     if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CorruptDataError(f"{path}: not a readable CSV file ({exc})") from None
    columns = (0, 1)
    if table and _is_header(table[0][1]):
        columns = _header_columns(path, table[0][1])
        table = table[1:]
    out = []
    for line, row in table:
        if len(row) <= max(columns) or not row[columns[0]] or not row[columns[1]]:
            raise CorruptDataError(f"{path}, line {line}: expected path,label; got "
                                   f"{','.join(row)!r}")
        out.append((line, row[columns[0]], row[columns[1]]))
    return out


def _is_header(row: list[str]) -> bool:
    lowered = [c.lower() for c in row]
    return any(c in PATH_COLUMNS for c in lowered) or any(c in LABEL_COLUMNS for c in lowered)


def _header_columns(path: Path, row: list[str]) -> tuple[int, int]:
    lowered = [c.lower() for c in row]
    found = [next((i for i, c in enumerate(lowered) if c in names), None)
             for names in (PATH_COLUMNS, LABEL_COLUMNS)]
    if None in found:
        raise CorruptDataError(f"{path}: the header {','.join(row)!r} needs a path column "
                               f"({'/'.join(PATH_COLUMNS)}) and a label column "
                               f"({'/'.join(LABEL_COLUMNS)})")
    return found[0], found[1]


def _csv_labels(path: Path, rows: list[tuple[int, str, str]], given: tuple[str, ...] | None
                ) -> tuple[tuple[str, ...], np.ndarray, list[str]]:
    values = [label for _, _, label in rows]
    where = [f"line {line} ({file})" for line, file, _ in rows]
    if values and all(re.fullmatch(r"[+-]?\d+", v) for v in values) and not (
            given is not None and set(values) <= set(given)):
        labels = [int(v) for v in values]
        notes = []
        names = given
        if names is None:
            names = _numbered(max(labels) + 1)
            notes.append(f"no class names: classes numbered 0..{len(names) - 1}")
        _check_labels(labels, names, where, str(path))
        return names, np.asarray(labels, dtype=np.int64), notes
    return _named_labels(values, given, where, str(path))


# ----------------------------------------------------------------------------- dispatch
def load_image_source(spec: str | Path, size: Size | None = None,
                      classes: Classes | None = None) -> tuple[ImageSet, list[str]]:
    """A user's images, whatever holds them: a folder (ImageFolder), ``.npz`` or ``.csv``.

    Args:
        spec: the path.
        size: the model's input ``(height, width)`` (or a side); ``None``: as stored.
        classes: the class names in the model's order (see :func:`parse_classes`).

    Returns:
        The images and the notes (print them: they say what was done to the data).

    Raises:
        DataNotFoundError: nothing at ``spec``.
        CorruptDataError: a file of another kind, or one that does not load.
    """
    kind = _kind_of(Path(spec).expanduser())
    return {"folder": load_folder, "npz": load_npz, "csv": load_csv}[kind](spec, size, classes)


def _kind_of(path: Path) -> str:
    if path.is_dir():
        return "folder"
    if path.suffix.lower() in (".npz", ".csv"):
        return path.suffix.lower()[1:]
    if not path.exists():
        raise DataNotFoundError(f"no file or folder {path}")
    raise CorruptDataError(f"{path}: not an image folder, .npz or .csv file")
