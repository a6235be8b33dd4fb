"""The model registry: the single source of model names, their architectures, weights,
input sizes and class names; :func:`load_model` builds any of them."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
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
from .squeezenet import SqueezeNet, SqueezeNetCifar

WEIGHTS_ENV = "PIXELPRIOR_WEIGHTS"


class WeightsError(RuntimeError):
    """Weights are missing, corrupt, or do not fit the architecture."""


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about a named model."""

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
# name -> spec, as earlier releases exposed it
MODELS: dict[str, ModelSpec] = {name: REGISTRY.get(name) for name in REGISTRY}


def model_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``, with a helpful error for unknown names."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None


def bundled_weights_path(spec: ModelSpec) -> Path:
    """Path of a model's bundled weights inside the installed package."""
    return Path(str(resources.files("pixelprior") / "assets" / spec.bundled))


def weight_candidates(spec: ModelSpec) -> list[Path]:
    """Where weights may already be: ``$PIXELPRIOR_WEIGHTS``, our cache, torch hub's cache."""
    out = []
    if os.environ.get(WEIGHTS_ENV):
        out.append(Path(os.environ[WEIGHTS_ENV]).expanduser() / spec.filename)
    out.append(cache_dir() / "weights" / spec.filename)
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    out.append(torch_home.expanduser() / "hub" / "checkpoints" / spec.filename)
    return out


def resolve_weights(spec: ModelSpec, weights: str | Path | None = None,
                    download: bool = True) -> Path:
    """Find the weights file for ``spec``: explicit path, bundled, caches, download."""
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
                f"{dest} (or set ${WEIGHTS_ENV} to its folder, or pass weights=PATH).") from exc
    raise WeightsError(f"no weights for {spec.name}: looked at "
                       f"{', '.join(map(str, weight_candidates(spec)))}; get {spec.url}")


def read_state_dict(path: Path, expected_sha256_prefix: str | None = None) -> dict:
    """Load a ``state_dict`` file safely (``weights_only``), with clear errors.

    Accepts a bare state dict or a checkpoint dict holding one under ``"model"``.
    """
    if expected_sha256_prefix and not sha256sum(path).startswith(expected_sha256_prefix):
        raise WeightsError(f"{path}: SHA-256 does not start with {expected_sha256_prefix}; "
                           "the file is corrupt or not the published weights")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({exc})") from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: does not hold a state_dict of tensors")
    return state


def load_model(name: str = "squeezenet1_1-cifar10", weights: str | Path | None = None,
               device: str | torch.device = "cpu", download: bool = True,
               pretrained: bool = True) -> nn.Module:
    """Build a registered model, load its weights strictly, return it in eval mode.

    ``weights``: an explicit file; otherwise bundled weights (CIFAR-10) or the cache /
    canonical URL (ImageNet, checked against the published hash). ``pretrained=False``
    returns the randomly initialised architecture.
    """
    spec = model_spec(name)
    model = spec.build()
    if pretrained:
        path = resolve_weights(spec, weights, download=download)
        check = spec.sha256_prefix if (weights is None and path.name == spec.filename) else None
        state = read_state_dict(path, check)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise WeightsError(f"{path}: weights do not fit {name}: {exc}") from exc
    model.pixelprior_name = name  # type: ignore[attr-defined]
    model.class_names = spec.class_names()  # type: ignore[attr-defined]
    return model.eval().to(device)


def model_card(name: str) -> dict:
    """The JSON model card shipped beside bundled weights (empty when none)."""
    spec = model_spec(name)
    if not spec.bundled:
        return {}
    card = bundled_weights_path(spec).with_suffix(".json")
    return json.loads(card.read_text()) if card.is_file() else {}

