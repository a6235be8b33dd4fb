"""Small CIFAR-10 networks of the kinds L0 verifiers are evaluated on, for the verifier's
complete runs: ``ConvSmall`` (two strided convolutions and two linear layers, as ERAN's
ConvSmall) and ``ResNet8`` (a ResNet with one basic block per stage). Both take images in
[0, 1] and normalise inside, as :class:`~pixelprior.models.SqueezeNetCifar` does."""

from __future__ import annotations

import torch
from torch import nn

from .squeezenet import CIFAR10_MEAN, CIFAR10_STD, Normalized

__all__ = ["ConvSmall", "ResNet8"]


class ConvSmall(Normalized):
    """Conv 16 (4×4, stride 2), conv 32 (4×4, stride 2), linear 100, linear 10; ReLUs.

    Args:
        num_classes: output classes.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self._set_normalization(CIFAR10_MEAN, CIFAR10_STD)
        self.features = nn.Sequential(nn.Conv2d(3, 16, 4, 2, 1), nn.ReLU(),
                                      nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU())
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 8 * 8, 100), nn.ReLU(),
                                        nn.Linear(100, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, K]`` of images ``float [B, 3, 32, 32]`` in [0, 1]."""
        return self.classifier(self.features(self.normalize(x)))


class _Block(nn.Module):
    """A basic block: 3×3 conv, BN, ReLU, 3×3 conv, BN, shortcut addition, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet8(Normalized):
    """Stem 3×3 conv 16, one basic block per stage (16, 32, 64 channels; strides 1, 2,
    2), global average pooling, linear.

    Args:
        num_classes: output classes.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self._set_normalization(CIFAR10_MEAN, CIFAR10_STD)
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU())
        self.layers = nn.Sequential(_Block(16, 16, 1), _Block(16, 32, 2), _Block(32, 64, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, K]`` of images ``float [B, 3, 32, 32]`` in [0, 1]."""
        x = self.layers(self.stem(self.normalize(x)))
        return self.fc(self.pool(x).flatten(1))
