"""A user's own images, whatever holds them: an ImageFolder tree, an ``.npz`` of arrays, a
CSV list of files.

Every loader returns an :class:`~pixelprior.data.base.ImageSet` (``uint8
[N, channels, H, W]``, ``int64`` labels) and a list of notes: what was done to the data
on the way, in words (conversions, resizing, class names made up, files skipped, copies
counted once), one line each and never one per file. Nothing is changed silently;
anything that cannot be read or does not fit is a
:class:`~pixelprior.data.base.DataError` naming the file, row or label.

``channels`` is the model's input channels (``LoadedModel.channels``): 3 gives RGB, 1
gives PIL's 8-bit luminance (``"L"``), each conversion said in a note.

Sizes are ``(height, width)`` (an ``int`` means a square); notes print image sizes the
way image viewers do, width × height.
"""

from __future__ import annotations

from pathlib import Path

from .base import CorruptDataError, DataSpecError, ImageSet
from .classes import Classes
from .collect import CLASS_INDEX
from .csv_list import load_csv
from .folders import load_folder
from .npz import load_npz
from .sizes import Size

SOURCE_KINDS = ("folder", "npz", "csv")

__all__ = ["SOURCE_KINDS", "load_image_source"]


def load_image_source(spec: str | Path, size: Size | None = None,
                      classes: Classes | None = None, channels: int = 3
                      ) -> tuple[ImageSet, list[str]]:
    """A user's images, whatever holds them: a folder (ImageFolder), ``.npz`` or ``.csv``.

    Args:
        spec: the path.
        size: the model's input ``(height, width)`` (or a side); ``None``: as stored.
        classes: the class names in the model's order (see
            :func:`~pixelprior.data.parse_classes`).
        channels: the model's input channels (3: RGB; 1: 8-bit luminance).

    Returns:
        The images and the notes (print them: they say what was done to the data).

    Raises:
        DataSpecError: nothing at ``spec`` (a DataNotFoundError).
        CorruptDataError: a file of another kind, or one that does not load.
        ValueError: a ``channels`` the source cannot give.
    """
    kind = _kind_of(Path(spec).expanduser())
    loader = {"folder": load_folder, "npz": load_npz, "csv": load_csv}[kind]
    images, notes = loader(spec, size, classes, channels)
    if classes is None and kind == "folder":
        notes = [*notes, _numbering_note(images.class_names)]
    return images, notes


def _numbering_note(names: tuple[str, ...]) -> str:
    """How the labels of class folders are numbered without class names given."""
    if all(CLASS_INDEX.fullmatch(name) for name in names):  # a model's classes by index
        return ("labels number the folders in name order (0, 1, ...); folders named by "
                "integers are read as those class indices where the images meet a model "
                "(the commands; experiment.fit_classes in the Python API)")
    return ("labels number the folders in name order (0, 1, ...), not a model's classes: "
            "give the class names (--classes, or classes= in the Python API, e.g. a loaded "
            "model's class_names) to number them as the model does")


def _kind_of(path: Path) -> str:
    if path.is_dir():
        return "folder"
    if path.suffix.lower() in (".npz", ".csv"):
        return path.suffix.lower()[1:]
    if not path.exists():
        raise DataSpecError(f"no file or folder {path}")
    raise CorruptDataError(f"{path}: not an image folder, .npz or .csv file")
