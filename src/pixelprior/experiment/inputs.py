"""What an experiment attacks: its model, its images, and which of them."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from .._streams import pixel_keys
from ..data import (
    DATASETS,
    ImageSet,
    SusceptibilityMaps,
    image_fingerprints,
    parse_classes,
    to_float,
)
from ..data import load_dataset as load_named_dataset
from ..data.nips17 import PUBLISHED_SIZE
from ..models import (
    MODELS,
    LoadedModel,
    ResizeInside,
    as_registered,
    load_model,
    load_model_spec,
    model_spec,
    one_class_warning,
    predict,
    predict_labels,
)
from ..models.wrappers import RANGE_ADVICE
from .classes import fit_classes
from .config import ConfigError, ExperimentConfig


class SelectionError(ValueError):
    """Fewer images qualify than the configuration asks for.

    Args:
        message: what is wrong and what to do.
        qualifying: how many images qualify (``None``: another problem of the selection).
    """

    def __init__(self, message: str, qualifying: int | None = None) -> None:
        super().__init__(message)
        self.qualifying = qualifying


def load_model_of(config: ExperimentConfig, device: str | None = None) -> LoadedModel:
    """The configured model and what is known about it.

    Args:
        config: the run's config (``model``: a registered name or a spec — TorchScript,
            ONNX, ``module:callable``, a pickled module with ``allow_pickle``).
        device: where to load it (default: the config's device).

    Returns:
        The :class:`~pixelprior.models.LoadedModel`.
    """
    return load_model_spec(config.model, weights=config.weights, classes=config.classes,
                           mean=config.mean, std=config.std, input_size=config.input_size,
                           allow_pickle=config.allow_pickle,
                           device=device or config.resolved_device())


def input_size(config: ExperimentConfig, loaded: Callable[[], LoadedModel] | None = None
               ) -> int | tuple[int, int] | None:
    """The size the images are attacked at.

    Args:
        config: the run's config.
        loaded: gives the model where it must be loaded (default: loads it on the CPU).

    Returns:
        The published 299 for NIPS-17 resized inside, else the model's input (a side, or
        ``(height, width)``), or ``None``: the images' own size.
    """
    if config.resize_inside:
        return PUBLISHED_SIZE
    if config.model in MODELS:
        return model_spec(config.model).input_size
    if config.input_size is not None:  # a side, or [height, width] as config.json holds it
        size = config.input_size
        return tuple(size) if isinstance(size, list) else size
    return (loaded or _on_cpu(config))().input_size


def input_channels(config: ExperimentConfig, loaded: Callable[[], LoadedModel] | None = None
                   ) -> int:
    """The channels the images are attacked in: the model's (registered models: 3).

    Args:
        config: the run's config.
        loaded: gives the model where it must be loaded (default: loads it on the CPU).

    Returns:
        3 (RGB) or 1 (8-bit luminance, as PIL's ``"L"``).
    """
    if config.model in MODELS or as_registered(config.model, config.classes, config.mean,
                                               config.std, config.input_size):
        return 3
    return (loaded or _on_cpu(config))().channels


def _on_cpu(config: ExperimentConfig) -> Callable[[], LoadedModel]:
    """The configured model, loaded on the CPU on the first call only."""
    return functools.cache(lambda: load_model_of(config, "cpu"))


def data_classes(model: str, classes: str | None) -> str | tuple[str, ...] | None:
    """The class names that turn a user's data (a folder's class names, a CSV's or an
    .npz's named labels) into the model's labels: the names given (``--classes``), else
    a registered model's own, else ``None`` (the sorted names are numbered in order).
    Every command that reads a data spec numbers its classes by this one rule.

    Args:
        model: the model spec.
        classes: the class names given, or ``None``.

    Returns:
        What :func:`~pixelprior.data.load_image_source` takes as ``classes``.
    """
    if classes is not None:
        return classes
    return model_spec(model).class_names() if model in MODELS else None


def load_dataset(config: ExperimentConfig, notes: list[str] | None = None,
                 loaded: LoadedModel | None = None) -> ImageSet:
    """The evaluation images of the configured dataset, at the model's input size and in
    its channels (RGB converted to luminance for a 1-channel model, with a note).

    Args:
        config: the run's config.
        notes: filled with what loading did to the images (resizes, conversions).
        loaded: the model, where the caller has loaded it (default: loaded on the CPU
            where its size, channels or class names are needed, once).

    Returns:
        The images (``uint8 [N, C, H, W]``) and their labels.

    Raises:
        ConfigError: an unknown dataset, or labels the model's classes cannot hold
            (:func:`~pixelprior.experiment.fit_classes`).
    """
    if config.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {config.dataset!r}; use one of "
                          f"{', '.join(DATASETS)}")
    model = (lambda: loaded) if loaded is not None else _on_cpu(config)
    classes = data_classes(config.model, config.classes)
    dataset = load_named_dataset(
        config.dataset, config.data, config.source, input_size(config, model),
        classes=classes if config.dataset in ("folder", "npz", "csv") else None,
        notes=notes, channels=input_channels(config, model))
    # the labels as the model's classes, in every process that loads them (the runner's
    # workers, the report): the names given or registered, else the model's own
    names = parse_classes(classes) if classes is not None else model().class_names
    dataset, mapped = fit_classes(dataset, names)
    if notes is not None:
        notes += mapped
    return dataset


def describe_inputs(config: ExperimentConfig, device: str = "cpu") -> list[str]:
    """What a run will attack, said before the work: the model (what was loaded and
    assumed), the images (what loading did to them) and the model's accuracy on them.

    Args:
        config: the run's config.
        device: where the model runs.

    Returns:
        The lines to print (``note:`` and ``warning:`` lines among them).

    Raises:
        ConfigError: the model's classes and the data's do not fit.
    """
    loaded = load_model_of(config, device)
    size = loaded.size_hw
    lines = [f"model {config.model}: {loaded.kind}, {loaded.num_classes} classes, input "
             f"{f'{size[1]}×{size[0]}' if size else 'the images’ size'}, {loaded.channels} "
             f"channel(s), returns {loaded.output}"]
    lines += [f"note: {note}" for note in loaded.notes]
    notes: list[str] = []
    dataset = load_dataset(config, notes, loaded)  # its labels fitted to the model's classes
    lines += [f"note: {note}" for note in notes]
    predicted = predict_labels(loaded, dataset, device)
    accuracy = float((predicted == dataset.labels).float().mean())
    lines.append(f"accuracy of the model on the {len(dataset)} images given: {accuracy:.1%}"
                 f" ({dataset.source})")
    if warning := one_class_warning(predicted, loaded.class_names):
        lines.append(f"warning: {warning}")
    if len(dataset) >= 20 and accuracy <= 0.5 / max(2, loaded.num_classes):
        lines.append(f"warning: the model gets at most half as many images right as "
                     f"chance would; {RANGE_ADVICE}")
    return lines


def build_model(config: ExperimentConfig, device: str | None = None) -> torch.nn.Module:
    """The configured model as runs attack it.

    Args:
        config: the run's config.
        device: where to load it (default: the config's device).

    Returns:
        The model (images in [0, 1] → scores), wrapped to resize inside when
        ``resize_inside``; registered models load as they always did, any other spec
        through :func:`load_model_of`.
    """
    device = device or config.resolved_device()
    if as_registered(config.model, config.classes, config.mean, config.std,
                     config.input_size):
        model = load_model(config.model, config.weights, device=device)
    else:
        model = load_model_of(config, device).model
    if config.resize_inside:
        model = ResizeInside(model, model_spec(config.model).input_size).eval()
    return model


def correctly_classified(model: torch.nn.Module, dataset: ImageSet, count: int | None = None,
                         device: str = "cpu") -> torch.Tensor:
    """The images a model gets right.

    Args:
        model: the model.
        dataset: the images.
        count: how many at most (default: all).
        device: where the model runs.

    Returns:
        int64 ``[n]``: positions in ``dataset`` of the first ``count`` such images.
    """
    if len(dataset) == 0:  # (a first index past the last image)
        return torch.zeros(0, dtype=torch.long)
    correct = (predict(model, dataset, device) == dataset.labels).nonzero().flatten()
    return correct[:count] if count is not None else correct


def select_images(config: ExperimentConfig, model: torch.nn.Module, dataset: ImageSet,
                  device: str = "cpu") -> dict:
    """Choose the images to attack. Fewer qualifying images than ``config.images`` is an
    error, never a smaller run.

    Args:
        config: the run's config (``images``, ``selection``, ``selection_seed``,
            ``oracle``).
        model: the model (images it gets wrong are left out by the ``*_correct`` rules).
        dataset: the images.
        device: where the model runs.

    Returns:
        The selection record (``selection.json``): the rule, the chosen ``positions`` in
        ``dataset`` and their ``indices``, and what the run attacks
        (:func:`selection_inputs`).

    Raises:
        SelectionError: too few images qualify, or the data gives one index to two images.
    """
    check_one_index_per_image(dataset)
    predicted = predict(model, dataset, device)
    correct = (predicted == dataset.labels).nonzero().flatten()
    chosen = _choose(config, dataset, correct)
    if len(chosen) < config.images:
        hint = (" (the bundled sample holds 100 test images; set PIXELPRIOR_DATA or --data "
                "to the full test set)" if dataset.source == "bundled sample" else "")
        counts = f"{len(dataset)} images, {len(correct)} classified correctly"
        if not len(chosen):
            raise SelectionError(
                f"no image qualifies for selection {config.selection!r} in {dataset.source} "
                f"({counts}): nothing to attack; check the model's classes and normalisation"
                " (see `pixelprior eval`), or choose another --selection", 0)
        raise SelectionError(
            f"only {len(chosen)} images qualify for selection {config.selection!r} in "
            f"{dataset.source} ({counts}), but images = {config.images}; lower --images"
            f"{hint}", len(chosen))
    official = dataset.official_indices
    selection = {
        "rule": config.selection, "seed": config.selection_seed, "source": dataset.source,
        "dataset_size": len(dataset),
        "clean_accuracy": float((predicted == dataset.labels).float().mean()),
        "positions": chosen.tolist(), "indices": official[chosen].tolist(),
        "ids": [dataset.ids[i] for i in chosen.tolist()] if dataset.ids else None}
    return {**selection, **selection_inputs(selection["positions"], model, dataset, device)}


def _choose(config: ExperimentConfig, dataset: ImageSet, correct: torch.Tensor
            ) -> torch.Tensor:
    """Positions in ``dataset`` chosen by the config's rule (perhaps fewer than asked)."""
    if config.selection == "first":
        return torch.arange(min(config.images, len(dataset)))
    if config.selection == "first_correct":
        return correct[:config.images]
    if config.selection in ("random", "random_correct"):
        pool = correct if config.selection == "random_correct" else torch.arange(len(dataset))
        generator = torch.Generator().manual_seed(config.selection_seed)
        return pool[torch.randperm(len(pool), generator=generator)[:config.images]]
    if config.selection in ("vulnerable", "robust"):
        return scanned_positions(config.oracle, dataset,
                                 config.selection == "vulnerable")[:config.images]
    raise ConfigError(f"unknown selection {config.selection!r}")


def selection_inputs(positions: list[int], model: torch.nn.Module, dataset: ImageSet,
                     device: str = "cpu") -> dict:
    """What a selection records of the images and the model, so that rows can be
    checked and a resume or a report can tell that the inputs are unchanged.

    Args:
        positions: the chosen positions in ``dataset``.
        model: the model.
        dataset: the images.
        device: where the model runs.

    Returns:
        ``fingerprints`` (one per chosen image), ``labels`` (their true labels),
        ``image_shape`` (``[C, H, W]``) and ``num_classes`` (the model's output width).
    """
    with torch.inference_mode():
        probe = to_float(dataset.images[:1]).to(device)
        num_classes = int(model(probe).shape[1])
    return {"fingerprints": image_fingerprints(dataset.images[positions]),
            "labels": dataset.labels[positions].tolist(),
            "image_shape": list(dataset.images.shape[1:]), "num_classes": num_classes}


def check_one_index_per_image(dataset: ImageSet) -> None:
    """Rows and figures find an image by its index: refuse data that gives one index to
    more than one image, before anything is chosen or written. (The data files' loaders
    refuse such an ``.npz`` as they read it; this catches an image set built otherwise.)

    Args:
        dataset: the images.

    Raises:
        SelectionError: an index is repeated (the first is named, with its rows).
    """
    indices = dataset.official_indices
    unique, counts = torch.unique(indices, return_counts=True)
    if bool((counts == 1).all()):
        return
    repeated = int(unique[counts > 1][0])
    rows = (indices == repeated).nonzero().flatten().tolist()
    raise SelectionError(
        f"{dataset.source} gives index {repeated} to {len(rows)} images (rows "
        f"{', '.join(map(str, rows[:5]))}); rows of results are keyed by the index, so "
        "their attacks could not be told apart. Give each image its own index (the set's "
        "`indices`), or leave `indices` out to number the images in order")


def scanned_positions(scan_path: str, dataset: ImageSet, vulnerable: bool = True
                      ) -> torch.Tensor:
    """The images a susceptibility scan found a one-pixel adversarial for (or none for),
    matched by their pixels, so a scan of other images is an error, never a silent pick.

    Args:
        scan_path: the scan's folder (or its ``maps.npz``).
        dataset: the images.
        vulnerable: the images with an adversarial (else those without).

    Returns:
        int64 ``[n]``: their positions in ``dataset``, in the scan's order.

    Raises:
        SelectionError: some of those images are not in ``dataset``.
    """
    scan = SusceptibilityMaps.load(scan_path)
    fooled = scan.vulnerable.reshape(len(scan.labels), -1).any(1)
    rows = (fooled if vulnerable else ~fooled).nonzero()[0]
    keys = [key for start in range(0, len(dataset), 1000)
            for key in pixel_keys(to_float(dataset.images[start:start + 1000]))]
    where = {key: position for position, key in enumerate(keys)}
    missing = [int(scan.image_indices[r]) for r in rows if scan.image_keys[r] not in where]
    if missing:
        raise SelectionError(
            f"{len(missing)} {'vulnerable' if vulnerable else 'robust'} images of the scan "
            f"{scan.source} are not in {dataset.source} (e.g. index "
            f"{missing[0]}); scan this dataset's images")
    return torch.tensor([where[scan.image_keys[r]] for r in rows], dtype=torch.long)

