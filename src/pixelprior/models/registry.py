"""The model registry: the single source of model names, their architectures, weights,
input sizes and class names; :func:`load_model` builds any of them."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from .._registry import Registry
from ..data import (
    CIFAR10_CLASSES,
    CorruptDataError,
    cache_dir,
    download_file,
    imagenet_class_names,
    sha256sum,
)
from .small import ConvSmall, ResNet8
from .squeezenet import SqueezeNet, SqueezeNetCifar

WEIGHTS_ENV = "PIXELPRIOR_WEIGHTS"


class WeightsError(RuntimeError):
    """Weights are missing, corrupt, or do not fit the architecture (the base of every
    model loading error: the command line reports it as a runtime failure)."""


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about a named model.

    Attributes:
        name: the registered name.
        build: returns the architecture with random weights.
        num_classes: ``K``.
        input_size: the side of the square images it takes.
        class_names: returns the ``K`` class names.
        bundled: the asset file of bundled weights, or ``None``.
        url: the canonical download URL, or ``None``.
        sha256_prefix: torch.hub style: the first hex digits of the weights' SHA-256.
        notes: free-form facts about the model.
    """

    name: str
    build: Callable[[], nn.Module]
    num_classes: int
    input_size: int
    class_names: Callable[[], tuple[str, ...]]
    bundled: str | None = None  # asset file name of bundled weights
    url: str | None = None  # canonical download URL
    sha256_prefix: str | None = None  # torch.hub style: first hex digits of the SHA-256
    notes: dict = field(default_factory=dict)

    @property
    def filename(self) -> str:
        """The weights' file name (bundled, from the URL, or ``NAME.pt``)."""
        return self.bundled or (self.url.rsplit("/", 1)[-1] if self.url else f"{self.name}.pt")



REGISTRY: Registry[ModelSpec] = Registry("model")
REGISTRY.register("squeezenet1_1-cifar10", ModelSpec(
    "squeezenet1_1-cifar10", SqueezeNetCifar, 10, 32, lambda: CIFAR10_CLASSES,
    bundled="squeezenet1_1-cifar10.pt"),
    help="SqueezeNet 1.1 for 32x32 CIFAR-10 images (bundled weights)")
REGISTRY.register("squeezenet1_0", ModelSpec(
    "squeezenet1_0", lambda: SqueezeNet("1_0"), 1000, 224, imagenet_class_names,
    url="https://download.pytorch.org/models/squeezenet1_0-b66bff10.pth",
    sha256_prefix="b66bff10"), help="torchvision's SqueezeNet 1.0 (ImageNet, 224x224)")
REGISTRY.register("squeezenet1_1", ModelSpec(
    "squeezenet1_1", lambda: SqueezeNet("1_1"), 1000, 224, imagenet_class_names,
    url="https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
    sha256_prefix="b8a52dc0"), help="torchvision's SqueezeNet 1.1 (ImageNet, 224x224)")
REGISTRY.register("convsmall-cifar10", ModelSpec(
    "convsmall-cifar10", ConvSmall, 10, 32, lambda: CIFAR10_CLASSES,
    bundled="convsmall-cifar10.pt"),
    help="ConvSmall (2 conv + 2 linear, ERAN's shape) for CIFAR-10, bundled weights: the "
         "verifier decides every image of it")
REGISTRY.register("resnet8-cifar10", ModelSpec(
    "resnet8-cifar10", ResNet8, 10, 32, lambda: CIFAR10_CLASSES,
    bundled="resnet8-cifar10.pt"),
    help="ResNet8 (one basic block per stage) for CIFAR-10, bundled weights")
REGISTRY.register("resnet8-ibp-cifar10", ModelSpec(
    "resnet8-ibp-cifar10", ResNet8, 10, 32, lambda: CIFAR10_CLASSES,
    bundled="resnet8-ibp-cifar10.pt"),
    help="ResNet8 fine-tuned for the one-pixel threat model (interval bound propagation), "
         "bundled weights: the verifier's bounds are tight on it")
# name -> spec, as earlier releases exposed it
MODELS: dict[str, ModelSpec] = {name: REGISTRY.get(name) for name in REGISTRY}


def model_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``.

    Args:
        name: a registered name.

    Returns:
        Its :class:`ModelSpec`.

    Raises:
        KeyError: an unknown name (the message lists the known ones).
    """
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None


def bundled_weights_path(spec: ModelSpec) -> Path:
    """Path of a model's bundled weights inside the installed package.

    Args:
        spec: a model with bundled weights.

    Returns:
        The asset's path (it may be missing from a broken installation).
    """
    return Path(str(resources.files("pixelprior") / "assets" / spec.bundled))


def weight_candidates(spec: ModelSpec) -> list[Path]:
    """Where weights may already be: ``$PIXELPRIOR_WEIGHTS``, our cache, torch hub's cache.

    Args:
        spec: the model.

    Returns:
        The candidate paths, in the order they are tried.
    """
    out = []
    if os.environ.get(WEIGHTS_ENV):
        out.append(Path(os.environ[WEIGHTS_ENV]).expanduser() / spec.filename)
    out.append(cache_dir() / "weights" / spec.filename)
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    out.append(torch_home.expanduser() / "hub" / "checkpoints" / spec.filename)
    return out


def resolve_weights(spec: ModelSpec, weights: str | Path | None = None,
                    download: bool = True) -> Path:
    """Find the weights file for ``spec``: explicit path, bundled, caches, download.

    Args:
        spec: the model.
        weights: an explicit file (used as it is).
        download: fetch the canonical weights when no copy is found.

    Returns:
        The weights file.

    Raises:
        WeightsError: not found, not downloadable, or a download of another hash.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist")
        return path
    if spec.bundled:
        path = bundled_weights_path(spec)
        if not path.is_file():
            raise WeightsError(f"bundled weights {path} are missing from the installation; "
                               f"train them with `pixelprior train cifar10`")
        return path
    for path in weight_candidates(spec):
        if path.is_file():
            return path
    if download and spec.url:
        dest = cache_dir() / "weights" / spec.filename
        try:
            return download_file(spec.url, dest, sha256=spec.sha256_prefix)
        except CorruptDataError as exc:
            raise WeightsError(f"{spec.name}: {exc}") from exc
        except OSError as exc:
            raise WeightsError(
                f"could not download {spec.url} ({exc}). Download it by hand and put it at "
                f"{dest} (or set ${WEIGHTS_ENV} to its folder, or give the file: --weights PATH, "
                f"weights=PATH in the Python API).") from exc
    raise WeightsError(f"no weights for {spec.name}: looked at "
                       f"{', '.join(map(str, weight_candidates(spec)))}; get {spec.url}")


CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model")  # where checkpoints keep weights
WRAPPER_PREFIXES = ("module.", "model.")  # DataParallel's, and a wrapper's attribute (Lightning)
_PREFIX_SOURCES = {"module.": "saved from a DataParallel wrapper",
                   "model.": "saved from a wrapper module, e.g. a LightningModule's self.model"}


def _is_state_dict(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(key, str) and isinstance(v, torch.Tensor)
                                           for key, v in value.items())


def _shown(keys: Iterable[str], limit: int = 4) -> str:
    keys = list(keys)
    return ", ".join(map(repr, keys[:limit])) + (" ..." if len(keys) > limit else "")


def _checkpoint_entry(value: object, notes: list[str]) -> dict | None:
    """The state dict inside a training checkpoint (``{"state_dict": ...}`` and alike)."""
    if _is_state_dict(value):
        return value  # type: ignore[return-value]
    if not isinstance(value, dict):
        return None
    for key in CHECKPOINT_KEYS:
        if _is_state_dict(value.get(key)) and value[key]:
            others = [str(k) for k in value if k != key]
            notes.append(f"a checkpoint: the weights are its {key!r} entry"
                         + (f" (also there: {_shown(others)})" if others else ""))
            return value[key]
    return None


def _strip_prefixes(state: dict, expected: Collection[str] | None, notes: list[str]) -> dict:
    """``state`` without the wrapper prefixes every key shares (``module.``, ``model.``,
    one after the other); with ``expected`` keys, only as far as makes the most match."""
    stages, removed = [state], []
    while prefix := next((p for p in WRAPPER_PREFIXES
                          if stages[-1] and all(k.startswith(p) for k in stages[-1])), None):
        stages.append({key[len(prefix):]: value for key, value in stages[-1].items()})
        removed.append(prefix)
    best = len(stages) - 1
    if expected is not None:
        overlaps = [len(set(stage) & set(expected)) for stage in stages]
        best = overlaps.index(max(overlaps))  # the least stripping among the best
    notes.extend(f"{prefix!r} prefix removed from every key ({_PREFIX_SOURCES[prefix]})"
                 for prefix in removed[:best])
    return stages[best]


def unwrap_state_dict(value: object, expected_keys: Collection[str] | None = None,
                      notes: list[str] | None = None) -> dict | None:
    """The state dict inside what ``torch.load`` returned, unwrapped from the common
    wrappers: a checkpoint's ``"state_dict"`` (PyTorch Lightning), ``"model_state_dict"``
    or ``"model"`` entry, and a ``module.`` (DataParallel) or ``model.`` prefix on every
    key.

    Args:
        value: what ``torch.load`` returned.
        expected_keys: the model's own ``state_dict`` keys: a prefix is removed only when
            that makes more keys match (``None``: removed whenever every key has it).
        notes: receives one line per wrapper removed.

    Returns:
        ``{name: tensor}``, or ``None`` when ``value`` holds no state dict.
    """
    notes = notes if notes is not None else []
    state = _checkpoint_entry(value, notes)
    return None if state is None else _strip_prefixes(state, expected_keys, notes)


def _what_it_holds(value: object) -> str:
    if isinstance(value, dict):
        return f"a dict of {len(value)} entries ({_shown(str(k) for k in value)})"
    return f"a {type(value).__name__}"


def read_state_dict(path: Path, expected_sha256_prefix: str | None = None,
                    expected_keys: Collection[str] | None = None,
                    notes: list[str] | None = None) -> dict:
    """Load a ``state_dict`` file safely (``weights_only``), with clear errors.

    Accepts a bare state dict or a training checkpoint holding one (see
    :func:`unwrap_state_dict`: ``"state_dict"``, ``"model_state_dict"``, ``"model"``;
    ``module.`` / ``model.`` prefixes).

    Args:
        path: the weights file.
        expected_sha256_prefix: the published hash's first hex digits, checked first.
        expected_keys: the model's own keys (decides whether a prefix is removed).
        notes: receives one line per wrapper removed.

    Returns:
        ``{name: tensor}`` on the CPU.

    Raises:
        WeightsError: another hash, an unreadable file, or no state dict inside.
    """
    if expected_sha256_prefix and not sha256sum(path).startswith(expected_sha256_prefix):
        raise WeightsError(f"{path}: SHA-256 does not start with {expected_sha256_prefix}; "
                           "the file is corrupt or not the published weights")
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({exc})") from exc
    state = unwrap_state_dict(value, expected_keys, notes)
    if state is None:
        raise WeightsError(
            f"{path}: does not hold a state_dict of tensors: it holds {_what_it_holds(value)}"
            f", and no {' / '.join(map(repr, CHECKPOINT_KEYS))} entry holds one; pass a "
            "file saved with torch.save(model.state_dict(), path)")
    return state


def load_model(name: str = "squeezenet1_1-cifar10", weights: str | Path | None = None,
               device: str | torch.device = "cpu", download: bool = True,
               pretrained: bool = True, notes: list[str] | None = None) -> nn.Module:
    """Build a registered model, load its weights strictly, return it in eval mode.

    Args:
        name: a registered name (see :data:`REGISTRY`).
        weights: an explicit weights file (a state dict, or a checkpoint holding one);
            otherwise bundled weights (CIFAR-10) or the cache / canonical URL (ImageNet,
            checked against the published hash).
        device: where the model runs.
        download: fetch canonical weights that are not found locally.
        pretrained: ``False`` returns the randomly initialised architecture.
        notes: receives what was unwrapped from ``weights`` (a checkpoint, a prefix);
            without it, a ``UserWarning`` says so.

    Returns:
        The model (``float [B, 3, H, W]`` in [0, 1] to logits ``[B, K]``), eval mode,
        with ``pixelprior_name`` and ``class_names`` attributes.

    Raises:
        KeyError: an unknown name.
        WeightsError: weights not found, corrupt, or not for this model.
    """
    spec = model_spec(name)
    model = spec.build()
    if pretrained:
        path = resolve_weights(spec, weights, download=download)
        check = spec.sha256_prefix if (weights is None and path.name == spec.filename) else None
        said: list[str] = []
        state = read_state_dict(path, check, model.state_dict().keys(), said)
        if notes is not None:
            notes.extend(said)
        elif said:  # never silent: no list to say it in, so a warning
            warnings.warn(f"weights {path.name}: {'; '.join(said)}", UserWarning,
                          stacklevel=2)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise WeightsError(f"{path}: weights do not fit {name}: {exc}") from exc
    model.pixelprior_name = name  # type: ignore[attr-defined]
    model.class_names = spec.class_names()  # type: ignore[attr-defined]
    return model.eval().to(device)


def model_card(name: str) -> dict:
    """The JSON model card shipped beside bundled weights.

    Args:
        name: a registered name.

    Returns:
        The card (empty when there is none).

    Raises:
        KeyError: an unknown name.
    """
    spec = model_spec(name)
    if not spec.bundled:
        return {}
    card = bundled_weights_path(spec).with_suffix(".json")
    return json.loads(card.read_text()) if card.is_file() else {}

