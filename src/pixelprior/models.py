"""SqueezeNet models (torchvision-compatible) and the model registry.

Every model here takes ``float`` images in [0, 1] and normalises inside ``forward``, so
attacks search in pixel space. The mean/std live in *non-persistent* buffers: they are
not in the ``state_dict``, whose keys therefore match torchvision's exactly
(``features.0.weight``, ``features.3.squeeze.weight``, ``classifier.1.weight`` ...) and
torchvision's published weights load with ``strict=True``.

torchvision is deliberately not a dependency (it does not import beside every torch
build), so the architectures are re-declared here, layer for layer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from .data import (
    CIFAR10_CLASSES,
    CorruptDataError,
    ImageSet,
    cache_dir,
    download_file,
    sha256sum,
    to_float,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
WEIGHTS_ENV = "PIXELPRIOR_WEIGHTS"


class WeightsError(RuntimeError):
    """Weights are missing, corrupt, or do not fit the architecture."""


class Fire(nn.Module):
    """SqueezeNet's fire module; with ``batch_norm`` a BN follows each convolution."""

    def __init__(self, inplanes: int, squeeze_planes: int, expand1x1_planes: int,
                 expand3x3_planes: int, batch_norm: bool = False) -> None:
        super().__init__()
        self.inplanes = inplanes
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)
        if batch_norm:
            self.squeeze_bn = nn.BatchNorm2d(squeeze_planes)
            self.expand1x1_bn = nn.BatchNorm2d(expand1x1_planes)
            self.expand3x3_bn = nn.BatchNorm2d(expand3x3_planes)
        else:
            self.squeeze_bn = self.expand1x1_bn = self.expand3x3_bn = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze_bn(self.squeeze(x)))
        return torch.cat([
            self.expand1x1_activation(self.expand1x1_bn(self.expand1x1(x))),
            self.expand3x3_activation(self.expand3x3_bn(self.expand3x3(x))),
        ], 1)


class Normalized(nn.Module):
    """Mixin behaviour: hold mean/std as non-persistent buffers and normalise inputs."""

    def _set_normalization(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class SqueezeNet(Normalized):
    """torchvision's SqueezeNet 1.0 / 1.1 for ImageNet (same layers, same keys).

    Input: ``float [B, 3, H, W]`` in [0, 1]; ImageNet normalisation happens inside.
    """

    def __init__(self, version: str = "1_1", num_classes: int = 1000, dropout: float = 0.5,
                 mean: tuple[float, ...] = IMAGENET_MEAN,
                 std: tuple[float, ...] = IMAGENET_STD) -> None:
        super().__init__()
        self.num_classes = num_classes
        self._set_normalization(mean, std)
        pool = dict(kernel_size=3, stride=2, ceil_mode=True)
        if version == "1_0":
            self.features = nn.Sequential(
                nn.Conv2d(3, 96, kernel_size=7, stride=2), nn.ReLU(inplace=True),
                nn.MaxPool2d(**pool),
                Fire(96, 16, 64, 64), Fire(128, 16, 64, 64), Fire(128, 32, 128, 128),
                nn.MaxPool2d(**pool),
                Fire(256, 32, 128, 128), Fire(256, 48, 192, 192), Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256),
                nn.MaxPool2d(**pool),
                Fire(512, 64, 256, 256),
            )
        elif version == "1_1":
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, kernel_size=3, stride=2), nn.ReLU(inplace=True),
                nn.MaxPool2d(**pool),
                Fire(64, 16, 64, 64), Fire(128, 16, 64, 64),
                nn.MaxPool2d(**pool),
                Fire(128, 32, 128, 128), Fire(256, 32, 128, 128),
                nn.MaxPool2d(**pool),
                Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256),
                Fire(512, 64, 256, 256),
            )
        else:
            raise ValueError(f"unsupported SqueezeNet version {version!r}; use '1_0' or '1_1'")
        final_conv = nn.Conv2d(512, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1))
        )
        _init_weights(self, final_conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.normalize(x))
        return torch.flatten(self.classifier(x), 1)


class SqueezeNetCifar(Normalized):
    """SqueezeNet 1.1 adapted to 32×32 CIFAR-10 images.

    Differences from the ImageNet model, each for a reason:
    - first convolution 3×3 with stride 1 and padding 1, then 2×2 max-pools: a 32×32 image
      cannot afford ImageNet's stride-2 stem and three 3×3/2 pools (it would end at 1×1);
    - BatchNorm after every convolution: on 2 CPU cores the plain network was measured at
      38% after 4 epochs, while BN trains to high accuracy in a few dozen epochs;
    - no ReLU on the class scores (torchvision's ReLU there clips logits to >= 0, which
      creates ties between classes and flat gradients, bad for attacks and saliency).
    """

    def __init__(self, num_classes: int = 10, dropout: float = 0.2,
                 mean: tuple[float, ...] = CIFAR10_MEAN,
                 std: tuple[float, ...] = CIFAR10_STD) -> None:
        super().__init__()
        self.num_classes = num_classes
        self._set_normalization(mean, std)
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 32 -> 16
            Fire(64, 16, 64, 64, True), Fire(128, 16, 64, 64, True),
            nn.MaxPool2d(2),  # 16 -> 8
            Fire(128, 32, 128, 128, True), Fire(256, 32, 128, 128, True),
            nn.MaxPool2d(2),  # 8 -> 4
            Fire(256, 48, 192, 192, True), Fire(384, 48, 192, 192, True),
            Fire(384, 64, 256, 256, True), Fire(512, 64, 256, 256, True),
        )
        final_conv = nn.Conv2d(512, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), final_conv, nn.AdaptiveAvgPool2d((1, 1))
        )
        _init_weights(self, final_conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.normalize(x))
        return torch.flatten(self.classifier(x), 1)


def _init_weights(model: nn.Module, final_conv: nn.Conv2d) -> None:
    """torchvision's initialisation: Kaiming-uniform convs, N(0, 0.01) final conv."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            if m is final_conv:
                nn.init.normal_(m.weight, mean=0.0, std=0.01)
            else:
                nn.init.kaiming_uniform_(m.weight)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)


@torch.inference_mode()
def predict(model: torch.nn.Module, dataset: ImageSet, device: str,
            batch: int = 256) -> torch.Tensor:
    """The model's labels for every image of ``dataset``."""
    out = []
    for start in range(0, len(dataset), batch):
        images = to_float(dataset.images[start:start + batch]).to(device)
        out.append(model(images).argmax(1).cpu())
    return torch.cat(out)


# --------------------------------------------------------------------------- registry
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


def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names in torchvision's order (bundled)."""
    text = (resources.files("pixelprior") / "assets" / "imagenet_classes.txt").read_text()
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != 1000:
        raise CorruptDataError(f"bundled imagenet_classes.txt has {len(names)} names, not 1000")
    return names


MODELS: dict[str, ModelSpec] = {
    "squeezenet1_1-cifar10": ModelSpec(
        "squeezenet1_1-cifar10", SqueezeNetCifar, 10, 32, lambda: CIFAR10_CLASSES,
        bundled="squeezenet1_1-cifar10.pt"),
    "squeezenet1_0": ModelSpec(
        "squeezenet1_0", lambda: SqueezeNet("1_0"), 1000, 224, imagenet_class_names,
        url="https://download.pytorch.org/models/squeezenet1_0-b66bff10.pth",
        sha256_prefix="b66bff10"),
    "squeezenet1_1": ModelSpec(
        "squeezenet1_1", lambda: SqueezeNet("1_1"), 1000, 224, imagenet_class_names,
        url="https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
        sha256_prefix="b8a52dc0"),
}


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


# --------------------------------------------------------------------------- inference
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every eval-mode BatchNorm folded into the conv before it.

    Folds the patterns whose order is known: ``Conv2d`` directly followed by
    ``BatchNorm2d`` inside an ``nn.Sequential``, and :class:`Fire`'s conv/BN pairs. Other
    BatchNorms are left alone (still correct, just not faster).
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if isinstance(module, Fire):
            for conv, bn in (("squeeze", "squeeze_bn"), ("expand1x1", "expand1x1_bn"),
                             ("expand3x3", "expand3x3_bn")):
                if isinstance(getattr(module, bn), nn.BatchNorm2d):
                    setattr(module, conv, fuse_conv_bn_eval(getattr(module, conv),
                                                            getattr(module, bn)))
                    setattr(module, bn, nn.Identity())
        elif isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if isinstance(module[i], nn.Conv2d) and isinstance(module[i + 1],
                                                                   nn.BatchNorm2d):
                    module[i] = fuse_conv_bn_eval(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()
    return model


class ChannelsLast(nn.Module):
    """Run a (channels-last converted) model on channels-last inputs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))


def scores_agree(reference: torch.Tensor, candidate: torch.Tensor,
                 atol: float = 1e-3) -> bool:
    """Whether ``candidate`` can stand in for ``reference`` class scores: same shape,
    within ``atol`` (and 1e-3 relative), same labels. The one test every faster query
    path (folded copy, incremental engine, ONNX Runtime) passes before it is used."""
    return (candidate.shape == reference.shape
            and torch.allclose(candidate, reference, atol=atol, rtol=1e-3)
            and bool((candidate.argmax(1) == reference.argmax(1)).all()))


def inference_model(model: nn.Module, example: torch.Tensor, atol: float = 1e-3) -> nn.Module:
    """A faster copy of ``model`` for black-box queries: BatchNorm folded, channels-last.

    About 2.6× the plain model's images/s on 2 CPU cores for the CIFAR-10 SqueezeNet
    (``python benchmarks/inference_variants.py``).
    The copy is checked against the original on ``example`` (scores within ``atol``, the
    same labels); if it disagrees, or cannot be built, the original is returned.
    """
    try:
        fast = ChannelsLast(fold_batchnorm(model)).eval()
        with torch.inference_mode():
            reference, candidate = model(example), fast(example)
        if scores_agree(reference, candidate, atol):
            return fast
    except Exception:  # an exotic model: keep the original, correctness first
        pass
    return model
