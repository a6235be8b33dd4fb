"""One rule for the labels every command trusts: a dataset's labels as indices of the
model's classes (:func:`fit_classes`), by name, by position or by number, with a note
where they were read another way than as given, or a refusal."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import torch

from ..data import ImageSet
from ..data.collect import CLASS_INDEX
from .config import ConfigError

__all__ = ["fit_classes"]

ADVICE = "give the model's class names in order with --classes"


def _numbered(count: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(count))


def _shown(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


def fit_classes(dataset: ImageSet, model_names: tuple[str, ...] | list[str]
                ) -> tuple[ImageSet, list[str]]:
    """The images with labels that index the model's classes, or a refusal.

    - the same names in the same order: as they are;
    - labels without names (numbered ``0..max``): each must be below the model's count;
    - a model without names (numbered): class folders named by integers are those
      classes (``"10"`` is class 10, not the third folder in text order); other names,
      in their order, number the model's classes, so their count must be the model's;
    - both named, most names shared and every shared one at the same index (``plane``
      for ``airplane``): read by position, the renamed classes noted;
    - both named, in another order (a model whose classes are CIFAR-10's reversed):
      each label mapped to the model's class of the same name, with a note; a data class
      the model lacks, or a name either side holds twice, is refused.

    Args:
        dataset: the images and labels as loaded.
        model_names: the model's class names (``"0"``.. where it has none).

    Returns:
        The images (relabelled where mapped) and the notes.

    Raises:
        ConfigError: labels the model's classes cannot hold.
    """
    names, wanted = tuple(dataset.class_names), tuple(model_names)
    if names == wanted or len(dataset) == 0:
        return dataset, []
    if names == _numbered(len(names)):
        _check_top(dataset, len(wanted))
        return replace(dataset, class_names=wanted), []
    if wanted == _numbered(len(wanted)):
        return _to_numbered(dataset, names, wanted)
    shared = set(names) & set(wanted)
    if (len(names) == len(wanted) and 2 * len(shared) > len(names)
            and all(names.index(n) == wanted.index(n) for n in shared)):
        renamed = [f"{a} as {b}" for a, b in zip(names, wanted, strict=True) if a != b]
        return replace(dataset, class_names=wanted), [
            f"the data's classes read by position as the model's: {_shown(renamed)}"]
    return _by_name(dataset, names, wanted)


def _check_top(dataset: ImageSet, count: int) -> None:
    top = int(dataset.labels.max())
    if top >= count:
        raise ConfigError(f"the data has label {top}, but the model has classes "
                          f"0..{count - 1}; {ADVICE}")


def _to_numbered(dataset: ImageSet, names: tuple[str, ...], wanted: tuple[str, ...]
                 ) -> tuple[ImageSet, list[str]]:
    """Data names against a model without names."""
    if all(CLASS_INDEX.fullmatch(name) for name in names):  # folders 0, 1, 10, 2, ...
        indices = [int(name) for name in names]
        counts = Counter(indices)
        twice = [name for name in names if counts[int(name)] > 1]
        if twice:  # "1" and "01": one class's images under two labels, unsaid
            raise ConfigError(f"the classes {_shown(twice)} name one class index; {ADVICE}, "
                              "or merge those folders")
        mapping = torch.tensor(indices)
        relabelled = replace(dataset, labels=mapping[dataset.labels], class_names=wanted)
        _check_top(relabelled, len(wanted))
        notes = [] if names == _numbered(len(names)) else [
            "classes named by integers read as those class indices"]
        return relabelled, notes
    if len(names) != len(wanted):
        raise ConfigError(f"the model has {len(wanted)} classes but the data names "
                          f"{len(names)} ({_shown(names)}); {ADVICE}")
    return dataset, []


def _by_name(dataset: ImageSet, names: tuple[str, ...], wanted: tuple[str, ...]
             ) -> tuple[ImageSet, list[str]]:
    """Each label mapped to the model's class of the same name."""
    used = [names[i] for i in sorted(set(dataset.labels.tolist()))]
    lacking = [name for name in used if name not in wanted]
    if lacking:
        raise ConfigError(f"the data's classes {_shown(lacking)} are not among the model's "
                          f"({_shown(wanted)}); {ADVICE} (the data's: {_shown(names)})")
    in_model, in_data = Counter(wanted), Counter(names)
    twice = [name for name in used if in_model[name] > 1 or in_data[name] > 1]
    if twice:
        raise ConfigError(f"the class name {twice[0]!r} is held twice, so labels cannot be "
                          f"mapped by name; {ADVICE}, in the data's order")
    mapping = torch.tensor([wanted.index(name) if name in used else -1 for name in names])
    relabelled = replace(dataset, labels=mapping[dataset.labels], class_names=wanted)
    return relabelled, [f"labels mapped to the model's classes by name (the data's order: "
                        f"{_shown(names)}; the model's: {_shown(wanted)})"]
