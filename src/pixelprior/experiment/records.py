"""The records of a run folder: ``config.json`` (the config, its hash, a hash per field,
the model's fingerprint, the class names the run read) and ``selection.json`` (the
images: dataset indices, positions, a fingerprint per image, their shape and the model's
number of classes), written by the runner and read back checked by every reader; and
whether the model, its class names and the images are still those the records name
(:func:`inputs_problem`)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._io import CorruptResultsError
from ..models import code_changed, same_model
from .config import ConfigError, ExperimentConfig
from .rows import shown

# Fingerprints as development builds of this version recorded them, before the model's
# and the images' came from pixelprior.models / pixelprior.data (64 hex digits): 16 hex
# digits, the model's prefixed "file:" or "state:". They cannot be compared with today's,
# so such a folder is read as one that does not record them (said, not checked).
EARLIER_MODEL_FINGERPRINT = re.compile(r"(file|state):[0-9a-f]{16}")
EARLIER_IMAGE_FINGERPRINT = re.compile(r"[0-9a-f]{16}")


def earlier_model_fingerprint(value: object) -> bool:
    """Whether a recorded model fingerprint has the earlier form (not comparable).

    Args:
        value: the recorded value.

    Returns:
        ``True`` for ``"file:"`` or ``"state:"`` and 16 hex digits.
    """
    return isinstance(value, str) and EARLIER_MODEL_FINGERPRINT.fullmatch(value) is not None


def _without_earlier_fingerprints(value: dict, key: str, earlier: re.Pattern) -> None:
    """Drop ``value[key]`` when it holds fingerprints of the earlier form."""
    recorded = value.get(key)
    items = recorded if isinstance(recorded, list) else [recorded]
    if items and all(isinstance(item, str) and earlier.fullmatch(item) for item in items):
        del value[key]


def read_record(directory: Path | str) -> dict | None:
    """``config.json`` of a run folder, checked.

    Args:
        directory: the run folder.

    Returns:
        ``{"hash": str, "config": {...}, "experiment": ExperimentConfig, ...}`` (with
        ``field_hashes`` and ``model_fingerprint`` where recorded; a fingerprint of the
        earlier form is left out, as not recorded), or ``None`` when the folder has no
        ``config.json``.

    Raises:
        CorruptResultsError: not JSON, not a run's record, a config that does not build,
            or fields that no longer give the recorded hash (an edit, named).
    """
    path = Path(directory) / "config.json"
    if not path.is_file():
        return None
    value = _read_json(path, "it records the configuration of the run in this folder")
    if not isinstance(value, dict) or not isinstance(value.get("config"), dict):
        raise CorruptResultsError(f"{path}: not a run's config.json (an object with "
                                  "\"hash\" and \"config\"); restore it, or move the folder's "
                                  "files aside")
    if not isinstance(value.get("hash"), str) or not value["hash"]:
        raise CorruptResultsError(f"{path}: \"hash\" must be the config's hash (a string), "
                                  f"got {shown(value.get('hash'))}; restore the file")
    try:
        value["experiment"] = ExperimentConfig.from_dict(value["config"])
    except ConfigError as exc:
        raise CorruptResultsError(f"{path}: {exc}; restore the file (it records what ran)"
                                  ) from None
    _check_own_hash(path, value)
    _without_earlier_fingerprints(value, "model_fingerprint", EARLIER_MODEL_FINGERPRINT)
    names = value.get("class_names")
    if names is not None and not (isinstance(names, list) and names
                                  and all(isinstance(n, str) for n in names)):
        raise CorruptResultsError(f"{path}: \"class_names\" must be a list of the model's "
                                  f"class names, got {shown(names)}; restore the file")
    return value


def _check_own_hash(path: Path, record: dict) -> None:
    """The recorded config gives the recorded hash (or the hash earlier releases wrote
    for it); otherwise a field was edited after the run, and it is named."""
    config: ExperimentConfig = record["experiment"]
    if record["hash"] in (config.digest(), config.digest(prior_versions=False)):
        return
    recorded = record.get("field_hashes")
    changed = _changed_fields(config, recorded) if isinstance(recorded, dict) else []
    what = (f"the config field{'s' if len(changed) > 1 else ''} "
            f"{', '.join(f'`{name}`' for name in changed)} {'were' if len(changed) > 1 else 'was'}"
            if changed else "a field of the config was")
    raise CorruptResultsError(f"{path}: {what} changed after the run (its fields no longer "
                              f"give the recorded hash {record['hash']}); restore the file "
                              "(it records what ran)")


def config_changes(old: ExperimentConfig, new: ExperimentConfig, most: int = 4) -> str:
    """The fields that change results and differ between two configs, in words
    (``images 2 → 3, modes [...] → [...]``), at most ``most`` of them named.

    Args:
        old: the recorded config.
        new: the config asked for now.
        most: fields named before "and N more".

    Returns:
        The differences, or ``""`` when none differs (another version's hash).
    """
    before, after = old.result_fields(), new.result_fields()
    names = [n for n in sorted(set(before) | set(after)) if before.get(n) != after.get(n)]
    # a field one config's modes do not read is left out of its result fields: say its
    # value as set (e.g. the default strategy), not None
    said = [f"{n} {before.get(n, getattr(old, n, None))!r} → "
            f"{after.get(n, getattr(new, n, None))!r}" for n in names[:most]]
    if len(names) > most:
        said.append(f"and {len(names) - most} more")
    return ", ".join(said)


def _changed_fields(config: ExperimentConfig, recorded: dict) -> list[str]:
    now = config.field_hashes()
    return sorted(name for name in set(now) | set(recorded) if now.get(name) != recorded.get(name))


def config_record(config: ExperimentConfig, model_fingerprint: str | None,
                  class_names: Sequence[str] | None = None) -> dict:
    """What ``config.json`` records.

    Args:
        config: the run's config.
        model_fingerprint: the model's fingerprint (``None``: not known).
        class_names: the names of the model's classes as the run read them (from
            ``--classes``, the model or the data; ``None``: not known).

    Returns:
        ``{"hash", "config", "field_hashes", "model_fingerprint", "class_names"}``.
    """
    record = {"hash": config.digest(), "config": config.to_dict(),
              "field_hashes": config.field_hashes()}
    if model_fingerprint is not None:
        record["model_fingerprint"] = model_fingerprint
    if class_names is not None:
        record["class_names"] = list(class_names)
    return record


def recorded_class_names(record: dict | None) -> tuple[str, ...] | None:
    """The class names a run's ``config.json`` records (runs since the thirty-first
    session; a names file read again may be another file, by a relative path).

    Args:
        record: the folder's ``config.json`` as read (``None``: none).

    Returns:
        The names, or ``None`` where not recorded.
    """
    names = (record or {}).get("class_names")
    return tuple(names) if names is not None else None


def read_selection(directory: Path | str) -> dict | None:
    """``selection.json`` of a run folder, checked.

    Args:
        directory: the run folder.

    Returns:
        The selection (``indices`` and ``positions``: lists of distinct non-negative
        integers of one length; ``fingerprints``, ``labels``, ``image_shape``,
        ``num_classes`` where
        recorded, fingerprints of the earlier form left out), or ``None`` when there is
        none.

    Raises:
        CorruptResultsError: not JSON, the wrong types, lists of unequal length, or an
            index given to two images.
    """
    path = Path(directory) / "selection.json"
    if not path.is_file():
        return None
    value = _read_json(path, "it records the images of the run; delete it to have them "
                             "chosen again (the choice is deterministic)")
    if not isinstance(value, dict):
        raise CorruptResultsError(f"{path}: not a selection (an object with \"indices\" and "
                                  "\"positions\"); delete it to have the images chosen again")
    for name in ("indices", "positions"):
        items = value.get(name)
        if not (isinstance(items, list) and all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in items)):
            raise CorruptResultsError(f"{path}: {name} must be a list of integers >= 0, got "
                                      f"{shown(items)}; delete the file to have the images "
                                      "chosen again")
    _check_one_index_per_image(path, value)
    _check_recorded_lists(path, value)
    _without_earlier_fingerprints(value, "fingerprints", EARLIER_IMAGE_FINGERPRINT)
    return value


def _check_one_index_per_image(path: Path, selection: dict) -> None:
    """Rows are keyed by the image's index: an index given to two images would mix their
    rows, and choosing the images again gives the same repeat (the data repeats it)."""
    if len(selection["indices"]) != len(selection["positions"]):
        raise CorruptResultsError(f"{path}: indices and positions differ in length; delete "
                                  "the file to have the images chosen again")
    if len(set(selection["positions"])) != len(selection["positions"]):
        raise CorruptResultsError(f"{path}: positions repeat an image; delete the file to "
                                  "have the images chosen again")
    seen: set[int] = set()
    repeated = next((i for i in selection["indices"] if i in seen or seen.add(i)), None)
    if repeated is not None:
        raise CorruptResultsError(
            f"{path}: index {repeated} is given to more than one image, so their rows "
            "cannot be told apart (the data repeats the index: an .npz `indices` array, or "
            "a CSV listing a file twice). Give each image its own index in the data, then "
            f"run again with --force to start afresh; these rows cannot be reported")


def _check_recorded_lists(path: Path, selection: dict) -> None:
    prints = selection.get("fingerprints")
    if prints is not None and not (isinstance(prints, list) and len(prints) == len(
            selection["indices"]) and all(isinstance(p, str) for p in prints)):
        raise CorruptResultsError(f"{path}: fingerprints must be a list of strings, one per "
                                  "image; restore the file")
    labels = selection.get("labels")
    if labels is not None and not (isinstance(labels, list) and len(labels) == len(
            selection["indices"]) and all(isinstance(n, int) and not isinstance(n, bool)
                                          and n >= 0 for n in labels)):
        raise CorruptResultsError(f"{path}: labels must be a list of integers >= 0, one per "
                                  "image; restore the file")
    shape = selection.get("image_shape")
    if shape is not None and not (isinstance(shape, list) and len(shape) == 3 and all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
        raise CorruptResultsError(f"{path}: image_shape must be [channels, height, width], "
                                  f"got {shown(shape)}; restore the file")
    classes = selection.get("num_classes")
    if classes is not None and not (isinstance(classes, int) and classes > 0):
        raise CorruptResultsError(f"{path}: num_classes must be a positive integer, got "
                                  f"{shown(classes)}; restore the file")


def _read_json(path: Path, why: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptResultsError(f"{path}: not valid JSON ({exc}); {why}") from None


# --------------------------------------------------------------------------- inputs
def unrecorded(record: dict, selection: dict | None) -> list[str]:
    """What a run folder made by an earlier version does not record (so is not checked).

    Args:
        record: ``config.json`` (:func:`read_record`).
        selection: ``selection.json`` (:func:`read_selection`; ``None``: not asked).

    Returns:
        E.g. ``["the model's fingerprint", "the images' fingerprints"]``.
    """
    missing = []
    if "model_fingerprint" not in record:
        missing.append("the model's fingerprint")
    if selection is not None and "fingerprints" not in selection:
        missing.append("the images' fingerprints")
    if selection is not None and "labels" not in selection:
        missing.append("the images' labels")
    return missing


def model_in_words(config: ExperimentConfig) -> str:
    """The model of a run as a person finds it: the file, or the weights file, or the
    registered name.

    Args:
        config: the run's config.

    Returns:
        E.g. ``"the model file net.pt"``.
    """
    if Path(config.model).expanduser().is_file():
        return f"the model file {config.model}"
    if config.weights:
        return f"the weights file {config.weights} (of {config.model})"
    return f"the model {config.model} (its weights)"


def inputs_problem(config: ExperimentConfig, record: dict, selection: dict,
                   model_fingerprint: str | None, image_fingerprints: list[str] | None,
                   labels: list[int] | None = None,
                   class_names: Sequence[str] | None = None) -> str | None:
    """What changed since the run recorded its model and images (``None``: nothing, or
    nothing recorded to compare with): :func:`model_problem`, then the class names,
    then :func:`images_problem`.

    Args:
        config: the run's config.
        record: its ``config.json``.
        selection: its ``selection.json``.
        model_fingerprint: the model's fingerprint now (``None``: not checked).
        image_fingerprints: the selected images' fingerprints now, in the selection's
            order (``None``: not checked).
        labels: their labels now, in the same order (``None``: not checked).
        class_names: the model's class names as read now (``None``: not checked).

    Returns:
        One phrase naming what changed (the model file, a class name, image N of the
        selection).
    """
    return (model_problem(config, record, model_fingerprint)
            or class_names_problem(config, record, class_names)
            or images_problem(config, selection, image_fingerprints, labels))


def class_names_problem(config: ExperimentConfig, record: dict,
                        class_names: Sequence[str] | None) -> str | None:
    """Whether the class names read now are those the run recorded (a ``--classes``
    file given by a relative path, read from another folder, may be another file).

    Args:
        config: the run's config.
        record: its ``config.json``.
        class_names: the names read now (``None``: not checked).

    Returns:
        One phrase naming the first class whose name changed, or ``None``.
    """
    was = recorded_class_names(record)
    if class_names is None or was is None or tuple(class_names) == was:
        return None
    source = (f"the class names from --classes {config.classes}" if config.classes
              else f"the class names of the model {config.model} and its data")
    if len(was) != len(class_names):
        return f"{source} are {len(class_names)} now, where the run read {len(was)}"
    index = next(i for i, (a, b) in enumerate(zip(was, class_names, strict=True)) if a != b)
    return (f"{source} call class {index} {class_names[index]!r} now, where the run read "
            f"{was[index]!r}")


def model_problem(config: ExperimentConfig, record: dict, fingerprint: str | None
                  ) -> str | None:
    """Whether the model is still the one the run recorded.

    Args:
        config: the run's config.
        record: its ``config.json``.
        fingerprint: the model's fingerprint now (``None``: not checked).

    Returns:
        One phrase naming the model file (or weights) that changed, or ``None``.
    """
    was = record.get("model_fingerprint")
    if fingerprint is None or was is None or same_model(was, fingerprint):
        return None
    what = model_in_words(config)
    if code_changed(was, fingerprint):
        what = f"the code of {config.model.rsplit(':', 1)[0]} (the model's factory)"
    return f"{what} changed since the run used it (fingerprint {was}, now {fingerprint})"


def images_problem(config: ExperimentConfig, selection: dict,
                   fingerprints: list[str] | None, labels: list[int] | None = None
                   ) -> str | None:
    """Whether the selected images, and their labels, are still those the run attacked.

    Args:
        config: the run's config.
        selection: its ``selection.json``.
        fingerprints: the selected images' fingerprints now (``None``: not checked).
        labels: their labels now (``None``: not checked).

    Returns:
        One phrase naming the first image that changed (image N of the selection), or
        ``None``.
    """
    before = selection.get("fingerprints")
    if fingerprints is None or before is None:
        return None
    return (_pixels_problem(config, selection, before, fingerprints)
            or _labels_problem(config, selection, labels))


def _pixels_problem(config: ExperimentConfig, selection: dict, before: list[str],
                    fingerprints: list[str]) -> str | None:
    found = _first_changed(before, fingerprints)
    if found is None:
        return None
    first, more = found
    return (f"image {first + 1} of the selection (index {selection['indices'][first]}) "
            f"changed since the run attacked it{more}: the data "
            f"({config.data or config.dataset}) holds other pixels there now")


def _labels_problem(config: ExperimentConfig, selection: dict, labels: list[int] | None
                    ) -> str | None:
    """The first selected image whose label is not the one the run attacked it as."""
    before = selection.get("labels")
    found = None if labels is None or before is None else _first_changed(before, labels)
    if found is None:
        return None
    first, more = found
    return (f"image {first + 1} of the selection (index {selection['indices'][first]}) "
            f"has label {labels[first]} in the data ({config.data or config.dataset}) "
            f"now; the run attacked it as label {before[first]}{more}")


def _first_changed(before: list, now: list) -> tuple[int, str] | None:
    """The first place two lists differ, and ``" (and N more)"`` for the others."""
    changed = [n for n, (old, new) in enumerate(zip(before, now, strict=True)) if old != new]
    if not changed:
        return None
    return changed[0], f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""


def selection_problem(config: ExperimentConfig, selection: dict) -> str | None:
    """Whether a selection is not the one ``config`` chooses: another number of images,
    rule or seed (possible where ``config.json`` was lost and the selection kept).

    Args:
        config: the run's config now.
        selection: the folder's ``selection.json``.

    Returns:
        One phrase naming the first difference, or ``None``.
    """
    count = len(selection["positions"])
    if count != config.images:
        return (f"selection.json holds {count} images, not the {config.images} the config "
                "asks for")
    for key, field in (("rule", "selection"), ("seed", "selection_seed")):
        if key in selection and selection[key] != getattr(config, field):
            return (f"selection.json was chosen with {field} = {selection[key]!r}, not "
                    f"{getattr(config, field)!r}")
    return None


def positions_problem(selection: dict, dataset_size: int) -> str | None:
    """Whether the selection's positions still lie in the data (it may have shrunk).

    Args:
        selection: the run's selection.
        dataset_size: how many images the data holds now.

    Returns:
        One phrase, or ``None``.
    """
    outside = [n for n, p in enumerate(selection["positions"]) if p >= dataset_size]
    if not outside:
        return None
    return (f"image {outside[0] + 1} of the selection (position "
            f"{selection['positions'][outside[0]]}) is not in the data any more (it holds "
            f"{dataset_size} images)")
