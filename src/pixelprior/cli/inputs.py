"""What commands read and write: option values parsed (numbers, seeds, modes, class
names), a user's image file fitted to the model (size and channels, each change said),
labels by index or name, PNGs written."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..data import (
    DataError,
    ImageFile,
    ImageSet,
    Resize,
    SizeMismatchError,
    fit_image,
    load_dataset,
    read_image_file,
)
from ._app import console
from .errors import UsageProblem, fail


# --------------------------------------------------------------------------- values
def parse_floats(value: str | None, name: str) -> list[float] | None:
    """``0.5,0.5,0.5`` -> floats.

    Args:
        value: the option's text, or ``None`` (not given).
        name: the option, for the error (``--mean``).

    Returns:
        The numbers, or ``None``.

    Raises:
        UsageProblem: a part is not a number.
    """
    if value is None:
        return None
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        fail(f"{name} takes comma-separated numbers (0.485,0.456,0.406), got {value!r}")


def parse_seeds(value: str | None) -> list[int] | None:
    """``5`` -> seeds 0..4; ``0,2,4`` -> those seeds; ``0,`` -> seed 0 alone.

    Args:
        value: the ``--seeds`` text, or ``None`` (not given).

    Returns:
        The seeds, or ``None``.

    Raises:
        UsageProblem: not a count or a list, a count of 0 or less, a list of no seed.
    """
    if value is None:
        return None
    try:
        seeds = [int(v) for v in value.split(",") if v.strip()] if "," in value else None
        count = int(value) if seeds is None else len(seeds)
    except ValueError:
        fail(f"--seeds takes a count (5) or a list (0,2,4), got {value!r}")
    if seeds is not None:
        if not seeds:
            fail(f"--seeds {value!r} names no seed; give a count (5) or a list (0,2,4)")
        return seeds
    if count == 0:
        fail("--seeds 0: a count of 0 seeds; for seed 0 alone write --seeds 0, (a list of "
             "one seed)")
    if count < 0:
        fail(f"--seeds takes a count (5) or a list (0,2,4) of seeds >= 0, got {value!r}")
    return list(range(count))


def parse_modes(value: str | None) -> list[str] | None:
    """``a,b`` -> modes a and b (spaces and empty items dropped); an option given but
    naming no mode is an error, never the default modes.

    Args:
        value: the ``--modes`` text, or ``None`` (not given).

    Returns:
        The modes, or ``None``.

    Raises:
        UsageProblem: the text names no mode.
    """
    if value is None:
        return None
    modes = [m.strip() for m in value.split(",") if m.strip()]
    if not modes:
        from ..experiment import modes_help

        fail(f"--modes {value!r} names no mode; give one or more, comma-separated: "
             f"{modes_help()}")
    return modes


def check_classes(classes: str | None) -> None:
    """``--classes`` names classes the data layer accepts (read now, before any work).

    Args:
        classes: a names file, a JSON list or ``a,b,c``; ``None`` when not given.

    Raises:
        UsageProblem: a file that is not there or does not parse, an empty name, a name
            given twice (the data layer's words, one line).
    """
    if classes is None:
        return
    from ..data import parse_classes

    try:
        parse_classes(classes)
    except DataError as exc:  # the option the user gave: a usage error
        raise UsageProblem(f"--classes {exc}") from None


def label_of(value: str | None, names: tuple[str, ...], what: str) -> int | None:
    """A class given by index or name.

    Args:
        value: ``3`` or ``cat``; ``None`` when not given.
        names: the model's class names.
        what: the class's role, for the error (``target``).

    Returns:
        The class index, or ``None``.

    Raises:
        UsageProblem: an unknown name or an index out of range.
    """
    if value is None:
        return None
    if value.isascii() and value.isdigit():
        index = int(value)
        if value in names and names.index(value) != index:  # --classes 3,0,1,2 --target 1
            fail(f"{what} {value!r} is both class {index} (by index) and the class named "
                 f"{value!r} (class {names.index(value)}); name the classes so that a "
                 "number names its own index")
    elif value in names:
        index = names.index(value)
    else:
        shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
        fail(f"unknown {what} class {value!r}; use an index 0..{len(names) - 1} or a name "
             f"({shown})")
    if not 0 <= index < len(names):
        fail(f"{what} class {index} out of range 0..{len(names) - 1}")
    return index


# --------------------------------------------------------------------------- images
def load_image(path: Path, size: int | tuple[int, int] | None, resize: bool,
               coordinates: bool = False, channels: int = 3
               ) -> tuple[torch.Tensor, Resize | None, ImageFile]:
    """A user's image file fitted to the model, saying what was done to it.

    Args:
        path: the image file.
        size: the model's input side, ``(height, width)``, or ``None`` (any size).
        resize: resize an image of another size (else refuse it).
        coordinates: the command gives pixel coordinates (said in the resize note).
        channels: the channels the model takes (1: 8-bit luminance, as PIL's ``"L"``,
            said once).

    Returns:
        The image as float ``[1, channels, H, W]`` in [0, 1], the resize done (``None``:
        none), and the file as read (8-bit, ``[H, W, channels]``).

    Raises:
        UsageProblem: the file is missing or unreadable, of another size with
            ``resize=False``, or the model takes channels no image file is read with.
    """
    try:
        image = read_image_file(path, channels)
    except (DataError, ValueError) as exc:  # the file the user named: a usage error
        raise UsageProblem(str(exc)) from None
    for note in image.notes:
        console.print(f"note: {path.name}: {note}")
    side = f"{size}×{size}" if isinstance(size, int) else (
        f"{size[1]}×{size[0]}" if size else "")
    try:
        tensor, fitted = fit_image(image, size, resize)
    except SizeMismatchError:
        fail(f"the image is {image.size[0]}×{image.size[1]} and the model takes {side}; "
             f"drop --no-resize to resize it, or give an image of {side}")
    if fitted is not None:
        where = ("pixel coordinates are given in both frames (the model's pixel and the box "
                 "of file pixels it covers)" if coordinates else
                 f"what is written is of the {side} image")
        console.print(f"note: {path.name} resized from {fitted.original[0]}×"
                      f"{fitted.original[1]} to the model's {side} (bilinear); {where}")
    return tensor, fitted, image


def load_cifar10_images(source: str, data: Path | None, channels: int) -> ImageSet:
    """CIFAR-10's test images in the model's channels, each conversion said.

    Args:
        source: ``full`` (the exact test set) or ``sample`` (the bundled first 100).
        data: the folder holding cifar-10-batches-py (``None``: the default).
        channels: the channels the model takes (1: 8-bit luminance, as PIL's ``"L"``).

    Returns:
        The images, ``uint8 [N, channels, 32, 32]``.
    """
    notes: list[str] = []
    dataset = load_dataset("cifar10", data, source, notes=notes, channels=channels)
    for note in notes:
        console.print(f"note: the CIFAR-10 images: {note}")
    return dataset


def write_image(tensor: torch.Tensor, path: Path) -> None:
    """Write an image as an 8-bit PNG, whole or not at all.

    Args:
        tensor: float ``[3, H, W]`` (RGB) or ``[1, H, W]`` (grayscale) in [0, 1].
        path: the PNG's path.
    """
    import numpy as np
    from PIL import Image

    from .._io import atomic_write

    array = (tensor.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    array = array[..., 0] if array.shape[-1] == 1 else array
    with atomic_write(path) as f:
        Image.fromarray(np.ascontiguousarray(array)).save(f, format="PNG")


def predict_label(net: torch.nn.Module, image: torch.Tensor, device: str) -> int:
    """The class the model gives one image.

    Args:
        net: the model.
        image: float ``[1, C, H, W]`` in [0, 1].
        device: where the model runs.

    Returns:
        The class index.
    """
    import torch

    with torch.inference_mode():
        return int(net(image.to(device)).argmax())


def check_same_image(record: Path, image_file: Path, what: str) -> None:
    """Refuse an output folder whose ``record`` (a JSON of an earlier output) names
    another image than ``image_file``: its files would be replaced. The same image's
    earlier output is replaced.

    Args:
        record: the earlier output's JSON (``image_path``, else ``image``: the path as
            given, resolved from here).
        image_file: the image now.
        what: the earlier output in words (``"the result"``, ``"the gradient map"``).

    Raises:
        UsageProblem: another image's, or an unreadable record.
    """
    if not record.is_file():
        return
    try:
        row = json.loads(record.read_text())
        recorded = row.get("image_path") or row.get("image")
    except (ValueError, UnicodeDecodeError, AttributeError):
        recorded = None
    if not isinstance(recorded, str) or Path(recorded).resolve() != image_file.resolve():
        fail(f"{record.parent} holds {what} of another image named {image_file.stem} "
             f"({recorded or 'unreadable'}), which this one would replace; choose another "
             "--out")
