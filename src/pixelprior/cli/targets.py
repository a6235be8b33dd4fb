"""The images a command on a target works on (``susceptibility`` and ``verify``):
dataset images, an image file, or a data spec."""

from __future__ import annotations

from pathlib import Path

import torch

from ..data import load_image_source
from ..experiment import correctly_classified, data_classes, fit_classes
from ..models.wrappers import RANGE_ADVICE
from ._app import console
from .errors import fail
from .inputs import load_cifar10_images, load_image, predict_label
from .options import OpenedModel


# --------------------------------------------------------------------------- options of a target
def target_count(target: str, images: int | None, first_index: int, source: str,
                 data: Path | None, default: int) -> int:
    """The images to pick from ``target``, refusing the options its kind does not read:
    ``--source`` and ``--data`` choose CIFAR-10's images, ``--images`` and
    ``--first-index`` a data set's (an image file is one image).

    Args:
        target: ``cifar10``, an image file, or a data spec.
        images: ``--images`` (``None``: not given).
        first_index: ``--first-index``.
        source: ``--source``.
        data: ``--data``.
        default: the command's count when ``--images`` is not given.

    Returns:
        The count (1 for an image file).
    """
    one_file = is_image_file(target)
    if target != "cifar10":
        read = [flag for flag, given in (("--source", source != "full"),
                                         ("--data", data is not None)) if given]
        if one_file:
            read += [flag for flag, given in (("--images", images is not None),
                                              ("--first-index", first_index != 0)) if given]
        if read:
            fail(f"{', '.join(read)} choose{'s' * (len(read) == 1)} images of "
                 f"{'cifar10' if '--images' not in read else 'a data set'}; {target} is "
                 f"{'one image file' if one_file else 'a data spec'}: drop "
                 f"{'it' if len(read) == 1 else 'them'}")
    if one_file:
        return 1
    return default if images is None else images


def recorded_classes(model: str, target: str, classes: str | None):
    """The class names a folder records for its target: for a data spec, those its
    labels were numbered by (so that a resume under another numbering is refused);
    else ``--classes`` as given."""
    if target == "cifar10" or is_image_file(target):
        return classes
    names = data_classes(model, classes)
    return list(names) if isinstance(names, tuple) else names


def is_image_file(target: str) -> bool:
    """Whether ``target`` is one image file (not an .npz or a CSV of images)."""
    return Path(target).is_file() and Path(target).suffix.lower() not in (".npz", ".csv")


# --------------------------------------------------------------------------- images of a target
def target_images(opened: OpenedModel, target: str, source: str, data: Path | None,
                  count: int, first_index: int, classes: str | None, device: str,
                  no_resize: bool) -> tuple:
    """The images a command on ``target`` works on, as ``susceptibility`` and ``verify``
    read it: ``cifar10`` (the first ``count`` correctly classified test images from
    ``first_index``), an image file (labelled as the model classifies it), or a data spec.

    Args:
        opened: the model.
        target: ``cifar10``, an image file, or a data spec (folder, .npz, CSV).
        source: CIFAR-10's images: full or sample.
        data: the folder holding cifar-10-batches-py.
        count: images to pick.
        first_index: the first dataset index.
        classes: the model's class names (``--classes``), for a data spec.
        device: where the model runs.
        no_resize: refuse images of another size than the model's input.

    Returns:
        ``(images, labels, indices, shown, names)``: the images (uint8 or float
        ``[N, C, H, W]``), long labels, dataset indices (``[-1]`` for a file), the images
        to draw (``None``: ``images``) and the file's name (``None`` unless a file).
    """
    is_file = is_image_file(target)
    if data is not None and (target != "cifar10" or source == "sample"):
        what = "drop it" if target == "cifar10" else f"the images are {target} alone"
        fail(f"--data {data} is the folder of CIFAR-10's test set, read for cifar10 "
             f"--source full only: {what}")
    if target == "cifar10":
        batch, labels, indices, shown = _scan_images(opened, source, data, count,
                                                     first_index, device)
        return batch, labels, indices, shown, None
    if is_file:
        batch, _, _ = load_image(Path(target), opened.input_size, not no_resize,
                                 channels=opened.channels)
        labels = torch.tensor([predict_label(opened.net, batch, device)])
        return batch, labels, [-1], None, [Path(target).name]
    batch, labels, indices, shown = _spec_images(opened, target, count, first_index,
                                                 classes, device, no_resize)
    return batch, labels, indices, shown, None


def _spec_images(opened: OpenedModel, spec: str, count: int, first_index: int,
                 classes: str | None, device: str, no_resize: bool = False):
    """The first ``count`` correctly classified images (from ``first_index``) of a data
    spec (an image folder, an .npz, a CSV), in the model's channels (``no_resize``: as
    stored, refused where that is not the model's size)."""
    dataset, notes = load_image_source(spec, size=None if no_resize else opened.input_size,
                                       classes=data_classes(opened.name, classes),
                                       channels=opened.channels)
    wanted = opened.input_size
    wanted = (wanted, wanted) if isinstance(wanted, int) else wanted
    stored = tuple(dataset.images.shape[-2:])
    if no_resize and wanted is not None and tuple(wanted) != stored:
        fail(f"{spec}'s images are {stored[1]}×{stored[0]} and the model takes "
             f"{wanted[1]}×{wanted[0]}: drop --no-resize to resize them (bilinear)")
    dataset, mapped = fit_classes(dataset, opened.net.class_names)
    for note in notes + mapped:
        console.print(f"note: {note}")
    subset = dataset.subset((dataset.official_indices >= first_index).nonzero().flatten())
    pick = correctly_classified(opened.net, subset, count, device)
    if len(pick) == 0:
        fail(f"the model classifies none of the images of {spec} from {first_index} on "
             f"correctly: nothing to scan; {RANGE_ADVICE}")
    if len(pick) < count:
        console.print(f"note: {len(pick)} correctly classified images in {spec} (asked for "
                      f"{count}); scanning those")
    return (subset.images[pick], subset.labels[pick], subset.official_indices[pick].tolist(),
            subset.images[pick])


def _scan_images(opened: OpenedModel, source: str, data, count: int, first_index: int,
                 device: str):
    dataset = fitted_cifar10(opened, source, data)
    subset = dataset.subset((dataset.official_indices >= first_index).nonzero().flatten())
    pick = correctly_classified(opened.net, subset, count, device)
    if len(pick) < count:
        fail(f"only {len(pick)} correctly classified images from index {first_index} in "
             f"{subset.source}; lower --images or --first-index")
    return (subset.images[pick], subset.labels[pick], subset.official_indices[pick].tolist(),
            subset.images[pick])


def fitted_cifar10(opened: OpenedModel, source: str, data: Path | None):
    """CIFAR-10's exact test images for the model: its size (else refused: resizing
    would change the exact pixels; ``eval data cifar10`` and ``run`` resize with a note)
    and its classes (labels mapped by name where its names are CIFAR-10's in another
    order, :func:`~pixelprior.experiment.fit_classes`)."""
    dataset = load_cifar10_images(source, data, opened.channels)
    size = opened.input_size
    wanted = (size, size) if isinstance(size, int) else size
    if wanted is not None and tuple(wanted) != tuple(dataset.images.shape[-2:]):
        fail(f"the model takes {wanted[1]}×{wanted[0]} images and CIFAR-10's are 32×32; "
             "resize them with `pixelprior eval data cifar10` or `pixelprior run`, or "
             "give a CIFAR-10 model")
    dataset, mapped = fit_classes(dataset, opened.net.class_names)
    for note in mapped:
        console.print(f"note: {note}")
    return dataset
