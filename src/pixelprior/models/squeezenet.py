"""SqueezeNet models, layer for layer as torchvision declares them.

Every model here takes ``float`` images in [0, 1] and normalises inside ``forward``, so
attacks search in pixel space. The mean/std live in *non-persistent* buffers: they are
not in the ``state_dict``, whose keys therefore match torchvision's exactly
(``features.0.weight``, ``features.3.squeeze.weight``, ``classifier.1.weight`` ...) and
torchvision's published weights load with ``strict=True``.

torchvision is deliberately not a dependency (it does not import beside every torch
build), so the architectures are re-declared here, layer for layer.
"""

from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class Fire(nn.Module):
    """SqueezeNet's fire module: a 1×1 squeeze, then 1×1 and 3×3 expands concatenated.

    Args:
        inplanes: input channels.
        squeeze_planes: channels of the squeeze convolution.
        expand1x1_planes: channels of the 1×1 expand.
        expand3x3_planes: channels of the 3×3 expand.
        batch_norm: a BatchNorm after each convolution (the CIFAR model).
    """

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
        """The fire module's output.

        Args:
            x: ``float [B, inplanes, H, W]``.

        Returns:
            ``float [B, expand1x1_planes + expand3x3_planes, H, W]``.
        """
        x = self.squeeze_activation(self.squeeze_bn(self.squeeze(x)))
        return torch.cat([
            self.expand1x1_activation(self.expand1x1_bn(self.expand1x1(x))),
            self.expand3x3_activation(self.expand3x3_bn(self.expand3x3(x))),
        ], 1)


class Normalized(nn.Module):
    """Mixin behaviour: hold mean/std as non-persistent buffers and normalise inputs."""

    def _set_normalization(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        """Hold ``mean`` and ``std`` (per channel) as non-persistent buffers."""
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images.

        Args:
            x: ``float [B, C, H, W]`` in [0, 1].

        Returns:
            ``(x - mean) / std``, of ``x``'s shape.
        """
        return (x - self.mean) / self.std


class SqueezeNet(Normalized):
    """torchvision's SqueezeNet 1.0 / 1.1 for ImageNet (same layers, same keys).

    Input: ``float [B, 3, H, W]`` in [0, 1]; ImageNet normalisation happens inside.

    Args:
        version: ``"1_0"`` or ``"1_1"``.
        num_classes: outputs of the final convolution.
        dropout: before the final convolution (training only).
        mean: per-channel mean the inputs are normalised with.
        std: per-channel standard deviation.

    Raises:
        ValueError: another version.
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
        """Class scores.

        Args:
            x: ``float [B, 3, H, W]`` in [0, 1].

        Returns:
            Logits ``float [B, num_classes]``.
        """
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

    Args:
        num_classes: outputs of the final convolution.
        dropout: before the final convolution (training only).
        mean: per-channel mean the inputs are normalised with.
        std: per-channel standard deviation.
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
        """Class scores.

        Args:
            x: ``float [B, 3, H, W]`` in [0, 1].

        Returns:
            Logits ``float [B, num_classes]``.
        """
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

