"""Helpers shared by the test files (one copy each), imported by ``tests/conftest.py``:
``from helpers import invoke, clean_error`` in a test file (``tests/`` is on pytest's path:
``pythonpath`` in pyproject.toml).

- the command line: :func:`invoke`, :func:`clean_error`;
- images and weights: :func:`dark_images`, :func:`randomised`;
- small CNNs of other architectures: :class:`MobileNetish`, :class:`VGGish`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# ------------------------------------------------------------------ the command line
def invoke(*args: object):
    """Run ``pixelprior ARGS`` in this process.

    Args:
        *args: the command line's words (paths and numbers are turned into text).

    Returns:
        typer's ``Result`` (``exit_code``, ``output``, ``exception``).
    """
    from typer.testing import CliRunner

    from pixelprior.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def clean_error(result, code: int, phrase: str) -> str:
    """Assert a command ended with exit ``code``, one ``error:`` line holding ``phrase``,
    and no traceback.

    Args:
        result: what :func:`invoke` returned.
        code: the exit code expected.
        phrase: text the error line must hold.

    Returns:
        The error line.
    """
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and phrase in errors[0], result.output
    return errors[0]


# ------------------------------------------------------------------ images and weights
def dark_images(count: int = 3, size: int = 8, seed: int = 0) -> torch.Tensor:
    """Random dark images (values in [0, 0.3]): far from the bright pixel that flips
    :class:`~conftest.BrightPixelModel`.

    Args:
        count: images.
        size: side of each image.
        seed: the random images' seed.

    Returns:
        float ``[count, 3, size, size]`` in [0, 0.3].
    """
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 3, size, size, generator=generator) * 0.3


def randomised(model: nn.Module, seed: int = 0, he: bool = False) -> nn.Module:
    """Random weights and BatchNorm statistics, so that every layer matters; eval mode.

    Args:
        model: the model, changed in place.
        seed: the seed of the values.
        he: He-like scales (weights ``N(0, 2 / fan_in)``, biases and running means
            ``N(0, 0.01)``, BatchNorm scales and running variances ``U(0.5, 1.5)``) that
            keep activations at their scale through deep nets; else every float tensor
            ``N(0, 0.04)`` but running variances ``U(0.5, 1.5)``.

    Returns:
        ``model``.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif not he:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.2)
            elif name.endswith(("running_mean", "bias")):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
            elif name.endswith("weight") and tensor.ndim == 1:  # BatchNorm scale
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif tensor.ndim > 1:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator)
                             * (2.0 / fan_in) ** 0.5)
    return model.eval()


# ------------------------------------------------------------------ small CNNs
class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: channel scales from the pooled map (hard sigmoid)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // 4, 1)
        self.expand = nn.Conv2d(channels // 4, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = F.hardsigmoid(self.expand(F.relu(self.reduce(x.mean((2, 3), keepdim=True)))))
        return x * scale


class InvertedResidual(nn.Module):
    """MobileNet block: 1×1 expand, depthwise 3×3, (SE), 1×1 project, residual add."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, act: type,
                 se: bool = False) -> None:
        super().__init__()
        hidden = cin * expand
        layers = [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), act(),
                  nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
                  nn.BatchNorm2d(hidden), act()]
        if se:
            layers.append(SqueezeExcite(hidden))
        layers += [nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class MobileNetish(nn.Module):
    """A small MobileNetV2/V3: hardswish stem, inverted residuals (depthwise and pointwise
    convolutions, ReLU6 and hardswish, optional squeeze-excite), pooled linear head.

    Args:
        se: squeeze-and-excitation in the last two blocks.
        classes: outputs.
    """

    def __init__(self, se: bool = False, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.Hardswish())
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, 1, 3, nn.ReLU6),
            InvertedResidual(16, 24, 2, 4, nn.ReLU6),
            InvertedResidual(24, 24, 1, 3, nn.Hardswish),
            InvertedResidual(24, 40, 2, 4, nn.Hardswish, se=se),
            InvertedResidual(40, 40, 1, 3, nn.Hardswish, se=se))
        self.head = nn.Conv2d(40, 96, 1)
        self.fc = nn.Linear(96, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.hardswish(self.head(self.blocks(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class VGGish(nn.Module):
    """BatchNorm after ReLU, max pools, a dense head with a ReLU on its logits (as some
    published nets have).

    Args:
        size: the input's ``(height, width)`` (the dense head's width follows it).
        classes: outputs.
    """

    def __init__(self, size: tuple[int, int] = (32, 32), classes: int = 10) -> None:
        super().__init__()

        def unit(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(cout)]

        self.features = nn.Sequential(*unit(3, 16), *unit(16, 16), nn.MaxPool2d(2),
                                      *unit(16, 32), nn.MaxPool2d(2), *unit(32, 32),
                                      nn.MaxPool2d(2, 2))
        flat = 32 * (size[0] // 8) * (size[1] // 8)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(flat, 64), nn.ReLU(),
                                        nn.Dropout(0.5), nn.Linear(64, classes), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def without_unread_maps(values: dict) -> dict:
    """``values`` without a map sample count or differential-evolution settings that no
    mode reads (the command line refuses a config file that sets one: it would change the
    run's hash and nothing else)."""
    from pixelprior.experiment.modes import SEARCH_FIELDS, map_fields_read, parse_mode

    method = values.get("sensitivity", "smoothgrad")
    if not any("n_samples" in map_fields_read(mode, method) for mode in values["modes"]):
        values = {key: value for key, value in values.items() if key != "n_samples"}
    if not any(parse_mode(mode)[0] == "de" for mode in values["modes"]):  # nor DE's own
        values = {key: value for key, value in values.items()
                  if key not in SEARCH_FIELDS["de"]}
    return values


def assert_fooled_after(model: nn.Module, image: torch.Tensor, change) -> None:
    """A reused verifier follows a change of ``model``: verified as made (label 0),
    fooled once ``change()`` ran, by a witness the model itself puts in class 1."""
    from pixelprior import Verifier

    verifier = Verifier(model.eval(), budget=None, max_boxes=2000)
    assert verifier.verify(image, torch.tensor([0]))[0].verified
    change()
    (answer,) = verifier.verify(image, torch.tensor([0]))
    assert answer.fooled and not answer.verified
    x, y, color = answer.witness
    changed = image.clone()
    changed[0, :, y, x] = torch.tensor(color)
    with torch.no_grad():
        assert int(model(changed).argmax(1)) == 1
