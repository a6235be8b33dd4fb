"""The model's own float32 rounding, as the verifier's tolerance counts it: functional and
module forms count alike, constants count nothing, and the first-order bound covers the
float32-vs-float64 differences measured on small networks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pixelprior.scoring.cone.rounding import rounding_error


class Modules(nn.Module):
    def __init__(self, activation: nn.Module | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 5)
        self.act = activation or nn.ReLU()

    def forward(self, x):
        return self.fc(self.pool(self.act(self.bn(self.conv(x)))).flatten(1))


class Functions(Modules):
    """The same network written with functional calls (and a constant computed inside)."""

    def forward(self, x):
        scale = self.bn.weight * 1.0  # a constant: no rounding of the image's values
        h = F.conv2d(x, self.conv.weight, self.conv.bias, padding=1)
        h = F.batch_norm(h, self.bn.running_mean, self.bn.running_var, scale, self.bn.bias,
                         False, 0.1, self.bn.eps)
        h = F.avg_pool2d(self.act(h), 2)
        return F.linear(h.flatten(1), self.fc.weight, self.fc.bias)


def randomised(model: nn.Module, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.weight.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("seed", range(3))
def test_functional_calls_count_as_their_modules(seed):
    modules = randomised(Modules(), seed)
    functions = Functions()
    functions.load_state_dict(modules.state_dict())
    functions.eval()
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    labels = modules(images).argmax(1)
    by_modules = rounding_error(modules, images, labels)
    assert (by_modules > 0).all()
    torch.testing.assert_close(rounding_error(functions, images, labels), by_modules,
                               rtol=1e-5, atol=0)


@pytest.mark.parametrize("activation", [nn.ReLU(), nn.Sigmoid(), nn.Tanh(), nn.GELU(),
                                        nn.SiLU(), nn.Softplus()],
                         ids=lambda a: type(a).__name__)
def test_the_bound_covers_the_measured_float32_error(activation):
    model = randomised(Modules(activation), 0)
    images = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = model(images).argmax(1)
    bound = rounding_error(model, images, labels)
    with torch.no_grad():
        single = model(images).double()
        double = Modules(activation).double()
        double.load_state_dict(model.state_dict())
        exact = double.eval()(images.double())
    rows = torch.arange(len(labels))
    measured = ((single[rows, labels, None] - single) - (exact[rows, labels, None] - exact))
    assert (measured.abs().max(1).values <= bound).all()

