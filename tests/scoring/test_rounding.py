"""The model's own float32 rounding, as the verifier's tolerance counts it: functional and
module forms count alike, constants count nothing, and the first-order bound covers the
float32-vs-float64 differences measured on small networks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_bounds import ACTIVATIONS
from torch import nn

from pixelprior.scoring.cone.rounding import rounding_counted, rounding_error
from pixelprior.scoring.cone.table import OPERATIONS


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
    """The same network written with functional calls."""

    def forward(self, x):
        h = F.conv2d(x, self.conv.weight, self.conv.bias, padding=1)
        h = F.batch_norm(h, self.bn.running_mean, self.bn.running_var, self.bn.weight,
                         self.bn.bias, False, 0.1, self.bn.eps)
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


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda a: type(a).__name__)
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



class Standardised(Modules):
    """Weight standardisation computed in ``forward`` (BiT's StdConv): float32 rounds the
    standardised weights, a float64 evaluation does not."""

    def forward(self, x):
        w = self.conv.weight
        mean = w.mean((1, 2, 3), keepdim=True)
        w = (w - mean) / torch.sqrt(w.var((1, 2, 3), keepdim=True, unbiased=False) + 1e-5)
        h = F.conv2d(x, w, self.conv.bias, padding=1)
        return self.fc(self.pool(self.act(self.bn(h))).flatten(1))


def test_values_computed_from_parameters_count_their_rounding():
    standardised = randomised(Standardised(), 0)
    precomputed = randomised(Modules(), 0)
    with torch.no_grad():  # the same standardised weights, stored as a parameter
        w = standardised.conv.weight
        mean = w.mean((1, 2, 3), keepdim=True)
        precomputed.conv.weight.copy_((w - mean) / torch.sqrt(
            w.var((1, 2, 3), keepdim=True, unbiased=False) + 1e-5))
        for name in ("bias",):
            getattr(precomputed.conv, name).copy_(getattr(standardised.conv, name))
        precomputed.fc.load_state_dict(standardised.fc.state_dict())
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    labels = standardised(images).argmax(1)
    assert (rounding_error(standardised, images, labels)
            > 1.001 * rounding_error(precomputed, images, labels)).all()


class SignedPool(nn.Module):
    """A global average of a signed map (no ReLU before it, as the CIFAR SqueezeNet's
    classifier): the sum's rounding is relative to the mean of |x|, not to |mean|."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


def test_a_mean_of_signed_values_counts_the_magnitudes_it_sums():
    """conv → mean: each margin's bound is the conv's terms plus the mean's, exactly as
    derived by hand (the mean's relative to mean |h|, well above |mean h| here)."""
    torch.manual_seed(0)
    model = SignedPool().eval()
    with torch.no_grad():
        model.conv.weight.sub_(model.conv.weight.mean((1, 2, 3), keepdim=True))
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    label = int(model(image).argmax(1))
    gamma = lambda n: n * 2.0**-24 / (1 - n * 2.0**-24)  # noqa: E731
    with torch.no_grad():
        h = model.conv(image)[0]
        terms = F.conv2d(image, model.conv.weight.abs(), None, padding=1)[0]
        terms = terms + model.conv.bias.abs()[:, None, None]
    per_score = gamma(28) * terms.mean((1, 2)) + gamma(65) * h.abs().mean((1, 2))
    expected = max(float(per_score[label] + per_score[j]) for j in range(4) if j != label)
    assert (h.mean((1, 2)).abs() < 0.9 * h.abs().mean((1, 2))).all()  # signed maps
    bound = float(rounding_error(model, image, torch.tensor([label]))[0])
    assert bound == pytest.approx(expected, rel=1e-5)


def test_tf32_products_summed_in_float32_give_a_finite_error_at_any_fan_in():
    """CUDA runs convolutions in TF32 by default: each product's inputs cut to 10
    mantissa bits, the sum in float32. A plain γ_n(2^-11) is infinite past 2,047 terms
    (a 3×3 convolution of 256 channels has 2,304), which made every tolerance NaN."""
    from pixelprior.scoring.cone.zonotope import FLOAT32, TF32, gamma
    from pixelprior.search.verify import rounding_unit

    for n in (1, 9, 2_304, 100_000):
        tf32 = gamma(n, TF32)
        assert gamma(n, 2.0**-23) < tf32 < 2.1 * 2.0**-10 + gamma(n, 2.0**-23) * 1.01
    assert gamma(3_000, 2.0**-11) == float("inf")  # float16's unit, the same value: plain
    assert rounding_unit("cpu") == FLOAT32
    if torch.backends.cudnn.allow_tf32:  # PyTorch's default
        assert rounding_unit("cuda") == TF32
    torch.manual_seed(0)
    wide = nn.Sequential(nn.Conv2d(3, 300, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(300, 4, 3, padding=1), nn.Flatten(),
                         nn.Linear(4 * 16, 3)).eval()  # fan-in 2,700
    image = torch.rand(1, 3, 4, 4)
    label = torch.tensor([int(wide(image).argmax())])
    assert torch.isfinite(rounding_error(wide, image, label, TF32)).all()
    assert (rounding_error(wide, image, label, TF32)
            > rounding_error(wide, image, label, FLOAT32)).all()


class PickedLogit(nn.Module):
    """A logit picked out of a feature map (a ``[B]`` value) beside a constant one."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 4.0 * self.conv(x)[:, 0, 3, 3]
        return torch.stack([torch.full_like(score, 1.6), score], 1)


def test_values_of_one_number_per_image_are_counted_per_margin():
    """A ``[B]`` value (one logit picked out) crashed the estimate (flatten(1) of a 1-D
    tensor), and with it fast's near-tie band: it is summed per row as any other."""
    torch.manual_seed(0)
    model = PickedLogit().eval()
    image = torch.rand(2, 3, 8, 8)
    error = rounding_error(model, image, torch.tensor([0, 1]))
    assert error.shape == (2,) and bool((error > 0).all()) and bool(error.isfinite().all())


class Cancelling(nn.Module):
    """``(r + 10⁶) − 10⁶ − r + 0.01``: 0.01 in real arithmetic, ``r`` rounded to 1/16 in
    float32; ``detach`` (or ``.data``) on the first part."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.big = nn.Linear(12, 1)
        self.small = nn.Linear(12, 1)
        with torch.no_grad():
            self.big.weight.zero_()
            self.big.weight[0, 0] = 1.0
            self.big.bias.fill_(1e6)
            self.small.weight.zero_()
            self.small.weight[0, 0] = -1.0
            self.small.bias.fill_(0.01)

    def forward(self, x):
        flat = x.flatten(1)
        rounded = self.big(flat) - 1e6
        rounded = {"detach": rounded.detach(), "data": rounded.data,
                   "torch.detach": torch.detach(rounded), "none": rounded}[self.how]
        score = rounded + self.small(flat)
        return torch.cat([score, 0 * score], 1)


@pytest.mark.parametrize("how", ["detach", "data", "torch.detach"])
def test_a_detached_value_counts_its_rounding(how):
    """An audit: the estimate weights each rounding by the margin's gradient, which a
    detach zeroes, so the rounding before it was not counted (8e-7 where 0.06 flips the
    label); detaching changes no value, so it is run as the value itself."""
    image = torch.full((1, 3, 2, 2), 0.5)
    labels = torch.tensor([0])
    detached = float(rounding_error(Cancelling(how).eval(), image, labels)[0])
    assert detached == float(rounding_error(Cancelling("none").eval(), image, labels)[0])
    assert detached > 0.03  # the rounding of 10⁶ + r in float32: 1/32


def test_detached_scores_are_estimated_not_a_runtime_error():
    """An audit: scores detached at the end (``.detach() * 3``) raised autograd's
    "element 0 of tensors does not require grad" from the tolerance."""
    class Detached(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scores = nn.Linear(12, 2)

        def forward(self, x):
            return self.scores(x.flatten(1)).detach() * 3

    bound = rounding_error(Detached().eval(), torch.rand(1, 3, 2, 2), torch.tensor([0]))
    assert 0 < float(bound[0]) < 1e-4


def test_scores_without_a_gradient_have_no_estimate_said_in_one_line():
    """A hard-threshold head: no gradient to weight the roundings by. A review: it was
    an infinite estimate, which made the fast attack re-score every position."""
    from pixelprior.scoring.cone.rounding import NoGradientError

    class Threshold(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scores = nn.Linear(12, 2)

        def forward(self, x):
            return (self.scores(x.flatten(1)) > 0).float()

    with pytest.raises(NoGradientError, match="give the verifier a tolerance"):
        rounding_error(Threshold().eval(), torch.rand(1, 3, 2, 2), torch.tensor([0]))


def test_every_bounded_operation_has_its_rounding_counted():
    """A contributor's audit: a new activation missing from the estimate's tables was
    counted as one rounding (softsign takes about 3), and nothing said so."""
    for name in OPERATIONS.names():
        operation = OPERATIONS.get(name)
        if operation.bound is not None and operation.window.__module__.startswith("pixelprior."):
            assert rounding_counted(name), (
                f"{name}: add its float32 roundings per output to a table of "
                "pixelprior/scoring/cone/rounding.py (EXACT, SMOOTH or ROUNDINGS)")


def test_a_comparisons_mask_is_no_magnitude():
    """``torch.where(h > 0, h, 0.1 * h)``: the estimate took ``|x|`` of the comparison's
    boolean mask and raised (a review; the verifier refuses ``gt``, so only the estimate's
    own callers met it)."""
    class Where(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4, 3)

        def forward(self, x):
            h = self.conv(x)
            return self.fc(torch.where(h > 0, h, 0.1 * h).mean((2, 3)))

    torch.manual_seed(0)
    model = Where().eval()
    images = torch.rand(2, 3, 8, 8)
    estimate = rounding_error(model, images, model(images).argmax(1))
    assert torch.isfinite(estimate).all() and (estimate > 0).all()
