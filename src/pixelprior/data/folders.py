"""An ImageFolder tree: ``root/<class>/**/*.png|jpg|jpeg|bmp|webp``.

Symbolic links to folders and files are followed (as torchvision's ``ImageFolder``
does); a broken link, a link back to a folder that holds it (a loop), and hidden files
and folders (names starting with ``.``: ``.DS_Store``, ``cat/.thumbnails/``) are skipped,
each kind said in one note naming the first few. A file reached twice (through a link)
is read once; a picture held twice (identical pixels under two names) is counted once,
with a note; either one in two class folders is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .base import CorruptDataError, DataNotFoundError, ImageSet
from .classes import Classes, check_class_names, class_indices, parse_classes, shorten_list
from .collect import NoteTally, count_once, few, make_image_set
from .fitting import Fitter, check_channels
from .images import FILE_CHANNELS, read_image_file
from .sizes import Size

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

__all__ = ["IMAGE_SUFFIXES", "load_folder"]


def load_folder(root: str | Path, size: Size | None = None, classes: Classes | None = None,
                channels: int = 3) -> tuple[ImageSet, list[str]]:
    """An ImageFolder tree, ``root/<class>/**/*.png|jpg|jpeg|bmp|webp``.

    Args:
        root: the folder holding one sub-folder per class.
        size: the model's input ``(height, width)`` (or a side): images of other sizes
            are resized to it (bilinear); ``None``: every image must have the same size.
        classes: the class names (see :func:`~pixelprior.data.parse_classes`), in the
            model's order; every folder name must be one of them. Default: the sorted
            folder names.
        channels: the model's input channels: 3 (RGB) or 1 (8-bit luminance, PIL's
            ``"L"``, said in a note).

    Returns:
        The images ``uint8 [N, channels, H, W]`` (ids: file paths relative to ``root``;
        indices: positions in the sorted list of distinct files) and the notes.

    Raises:
        DataNotFoundError: ``root`` is not a folder.
        CorruptDataError: no class folders, empty ones, an unreadable file, an unknown
            class folder, a picture in two class folders, or mixed sizes without
            ``size``.
        ValueError: ``channels`` is not 1 or 3.
    """
    root = Path(root).expanduser()
    check_channels(channels, FILE_CHANNELS)
    if not root.is_dir():
        raise DataNotFoundError(f"image folder {root} does not exist")
    given = parse_classes(classes)
    tree = _list_tree(root)
    if not tree.folders:
        raise CorruptDataError(f"{root}: no class folders (an ImageFolder holds "
                               "root/<class>/<image files>)")
    names, labels_of, notes = _folder_classes(root, tree.folders, given)
    empty = [folder.name for folder in tree.folders if not tree.files[folder.name]]
    if empty:
        raise CorruptDataError(f"{root}: class folder(s) without image files "
                               f"({', '.join(IMAGE_SUFFIXES)}): {', '.join(empty)}")
    files = _distinct_files(root, tree)
    images, labels, ids = [], [], []
    fitter, tally = Fitter(size), NoteTally()
    for folder_name, path in files:
        name = path.relative_to(root).as_posix()
        image = read_image_file(path, channels)
        tally.add(image.notes, name)
        images.append(np.ascontiguousarray(fitter(image.pixels, name).transpose(2, 0, 1)))
        labels.append(labels_of[folder_name])
        ids.append(name)
    found, twice = count_once(make_image_set(images, labels, names, str(root), tuple(ids)),
                              str(root))
    return found, notes + tree.notes(root) + tally.notes() + fitter.notes() + twice


@dataclass
class _Tree:
    """What a walk of an ImageFolder found."""

    folders: list[Path] = field(default_factory=list)  # class folders, sorted
    files: dict[str, list[Path]] = field(default_factory=dict)  # class -> image files
    loose: int = 0  # image files directly in root
    other: int = 0  # files in the class folders that are not images
    hidden: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    loops: list[str] = field(default_factory=list)
    again: list[tuple[str, str]] = field(default_factory=list)  # (file, the file it is)

    def notes(self, root: Path) -> list[str]:
        """One note per kind of thing skipped.

        Args:
            root: the ImageFolder, for the note on loose files.

        Returns:
            The notes (empty when nothing was skipped).
        """
        out = []
        if self.loose:
            out.append(f"{self.loose} image file(s) directly in {root} ignored (not in a "
                       "class folder)")
        if self.other:
            out.append(f"{self.other} file(s) in the class folders ignored (not "
                       f"{'/'.join(s[1:] for s in IMAGE_SUFFIXES)})")
        if self.hidden:
            out.append(f"{len(self.hidden)} hidden file(s) or folder(s) skipped (names "
                       f"starting with '.'): {few(self.hidden)}")
        if self.broken:
            out.append(f"{len(self.broken)} broken symbolic link(s) skipped (they point to "
                       f"nothing): {few(self.broken)}; repair or remove them")
        if self.loops:
            out.append(f"{len(self.loops)} symbolic link(s) back to a folder that holds them "
                       f"not followed (a loop): {few(self.loops)}")
        if self.again:
            first, same = self.again[0]
            out.append(f"{len(self.again)} image file(s) reached a second time through a "
                       f"link read once: {few([a for a, _ in self.again])} (e.g. {first} is "
                       f"{same})")
        return out


def _list_tree(root: Path) -> _Tree:
    tree = _Tree()
    for entry in _entries(root):
        kind = _kind(entry, root, tree)
        if kind == "dir":
            tree.folders.append(Path(entry.path))
        elif kind == "file" and Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
            tree.loose += 1
    for folder in tree.folders:
        tree.files[folder.name] = sorted(_walk(folder, root, tree, {_identity(folder)}))
    return tree


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as found:
            return sorted(found, key=lambda entry: entry.name)
    except OSError as exc:
        raise CorruptDataError(f"cannot list folder {folder}: {exc.strerror or exc}") from None


def _kind(entry: os.DirEntry, root: Path, tree: _Tree) -> str | None:
    """``"dir"``, ``"file"``, or ``None`` for what is skipped (and noted in ``tree``)."""
    name = Path(entry.path).relative_to(root).as_posix()
    if entry.name.startswith("."):
        tree.hidden.append(name)
        return None
    if entry.is_symlink() and not os.path.exists(entry.path):
        tree.broken.append(name)
        return None
    if entry.is_dir():  # follows links, as torchvision's ImageFolder does
        return "dir"
    return "file" if entry.is_file() else "other"


def _walk(folder: Path, root: Path, tree: _Tree, above: set[tuple[int, int]]) -> list[Path]:
    """Image files under ``folder``, links followed.

    Hand-written rather than ``os.walk(followlinks=True)`` (torchvision's walk): that one
    never ends on a link to a folder above it, and passes over broken links silently.
    """
    images = []
    for entry in _entries(folder):
        kind = _kind(entry, root, tree)
        path = Path(entry.path)
        if kind == "dir":
            identity = _identity(path)
            if identity in above:
                tree.loops.append(path.relative_to(root).as_posix())
                continue
            images += _walk(path, root, tree, above | {identity})
        elif kind == "file" and path.suffix.lower() in IMAGE_SUFFIXES:
            images.append(path)
        elif kind is not None:
            tree.other += 1
    return images


def _identity(path: Path) -> tuple[int, int]:
    """The file or folder a path reaches (links followed): its device and inode."""
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def _distinct_files(root: Path, tree: _Tree) -> list[tuple[str, Path]]:
    """``(class, file)`` of every distinct file; a file reached again is noted in
    ``tree.again``, and refused when it is reached from two class folders."""
    seen: dict[tuple[int, int], tuple[str, Path]] = {}
    out = []
    for folder in tree.folders:
        for path in tree.files[folder.name]:
            identity = _identity(path)
            if identity not in seen:
                seen[identity] = (folder.name, path)
                out.append((folder.name, path))
                continue
            first_class, first = seen[identity]
            shown = (path.relative_to(root).as_posix(), first.relative_to(root).as_posix())
            if first_class != folder.name:
                raise CorruptDataError(f"{root}: {shown[0]} and {shown[1]} are the same file "
                                       "(through a link) in two class folders; a picture "
                                       "has one class: remove one")
            tree.again.append(shown)
    return out


def _folder_classes(root: Path, folders: list[Path], given: tuple[str, ...] | None
                    ) -> tuple[tuple[str, ...], dict[str, int], list[str]]:
    """The class names, each folder's label, and the note when the names are made up."""
    found = [folder.name for folder in folders]
    if given is None:
        names = check_class_names(found, f"{root}: the class folders")
        return names, {name: i for i, name in enumerate(names)}, [
            f"{len(names)} {'class' if len(names) == 1 else 'classes'} from the folder "
            f"names (sorted): {shorten_list(names)}"]
    places = [f"{root}: class folder {name!r}" for name in found]
    return given, dict(zip(found, class_indices(given, found, places), strict=True)), []
