"""The bound engine's own float error, carried per neuron (``scoring/cone/bounds.py``): the
clean images' errors around the windows bound what float32 really makes at every node; a
flat piece of an activation (a ReLU off) stops the error; on deep networks the bounds
stay sound and the error small where a worst case over the layers' row sums is vacuous;
on the bundled 26-layer SqueezeNet the error is small enough for boxes to be proved."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bounds import (
    ACTIVATIONS,
    Exponentials,
    Gated,
    Indexed,
    Normalised,
    Plain,
    Residual,
    Scaled,
    Smooth,
    box_margins,
    randomised,
    sampled_margins,
)
from torch import fx, nn

from pixelprior.scoring import perturb_rows
from pixelprior.scoring.cone import intervals
from pixelprior.scoring.cone.bounds import BoundEngine
from pixelprior.scoring.cone.screen import IntervalScreen
from pixelprior.scoring.cone.zonotope import (
    Exponential,
    InverseSquareRoot,
    Logarithm,
    PiecewiseLinear,
    Power,
    Reciprocal,
    Square,
    SquareRoot,
)

FLOAT32 = 2.0**-24


class Deep(nn.Module):
    """Eight 3×3 convolutions with BatchNorm and ReLU, residual additions, a max pool, a
    concatenation and a global average: deep enough that the product of the layers'
    absolute row sums makes a worst-case error bound vacuous in float32."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(6))
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(6))
        self.pool = nn.MaxPool2d(2)
        self.last = nn.Conv2d(2 * width, width, 3, padding=1)
        self.fc = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            y = torch.relu(bn(conv(x)))
            x = y + x if i % 2 else y
            if i == 2:
                x = self.pool(x)
        x = torch.cat([x, torch.relu(-x + 0.1)], 1)
        x = torch.relu(self.last(x))
        return self.fc(x.mean((2, 3)))


def node_values(model: nn.Module, image: torch.Tensor, dtype: torch.dtype
                ) -> dict[str, torch.Tensor]:
    """Every node's value (by name) of the model run in ``dtype``."""
    traced = fx.symbolic_trace(copy.deepcopy(model).to(dtype))
    values: dict[str, torch.Tensor] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, node):
            result = super().run_node(node)
            if isinstance(result, torch.Tensor) and result.is_floating_point():
                values[node.name] = result.detach().double()
            return result

    with torch.no_grad():
        Recorder(traced).run(image.to(dtype))
    return values


@pytest.mark.parametrize("net", [Residual, Plain, Scaled, Deep, Gated, Indexed, Normalised,
                                 Exponentials]
                         + [lambda a=a: Smooth(a) for a in ACTIVATIONS],
                         ids=["residual", "plain", "scaled", "deep", "gated", "indexed",
                              "normalised", "exponentials"]
                         + [type(a).__name__ for a in ACTIVATIONS])
def test_the_clean_errors_bound_what_float32_makes_at_every_node(net):
    model = randomised(net(), 3)
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    errors = IntervalScreen(model, cone=False).clean_errors(images, FLOAT32)
    single = node_values(model, images, torch.float32)
    exact = node_values(model, images, torch.float64)
    checked, met = 0, 0.0
    for name, error in errors.items():
        if name not in single:
            continue
        difference = (single[name] - exact[name]).abs()
        assert (difference <= error).all(), name
        checked += 1
        met = max(met, float(difference.max()))
    assert checked >= 4 and met > 0  # float32 is off somewhere: the bound is what holds
    if not any(isinstance(m, nn.Softplus) for m in model.modules()):  # (it jumps)
        none = IntervalScreen(model, cone=False).clean_errors(images, 0.0)
        assert all(float(e.max()) == 0 for e in none.values())


def test_clean_errors_take_a_unit_roundoff():
    with pytest.raises(ValueError, match="unit roundoff"):
        IntervalScreen(randomised(Plain(), 0), cone=False).clean_errors(
            torch.rand(1, 3, 8, 8), 0.5)


def test_a_flat_piece_stops_the_error_and_a_kink_does_not():
    relu = PiecewiseLinear(torch.relu, (0.0,))
    # one box, 2 rows (center, one generator), 3 neurons: off, on, unstable
    values = torch.tensor([[[-1.0, 1.0, 0.0], [0.1, 0.1, 0.5]]], dtype=torch.float64)
    small = torch.full((1, 3), 0.5, dtype=torch.float64)
    _, moved, _ = relu.apply_rounded(values, small, 2.0**-53)
    assert moved[0, 0] == 0  # off over every value within 0.5 of [-1.1, -0.9]
    assert moved[0, 1] >= 0.5 and moved[0, 2] >= 0.5  # passed on, ReLU's Lipschitz 1
    large = torch.full((1, 3), 2.0, dtype=torch.float64)
    _, moved, _ = relu.apply_rounded(values, large, 2.0**-53)
    assert moved[0, 0] >= 2  # the exact values may reach past 0: no stop
    six = PiecewiseLinear(lambda t: torch.clamp(t, 0.0, 6.0), (0.0, 6.0))
    high = torch.tensor([[[7.0], [0.1]]], dtype=torch.float64)
    out, moved, _ = six.apply_rounded(high, torch.full((1, 1), 0.5, dtype=torch.float64),
                                      2.0**-53)
    assert moved[0, 0] == 0 and out[0, 0, 0] == 6 and out[0, 1, 0] == 0  # exactly 6


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), lower=st.floats(-3, 3), width=st.floats(0, 2),
       error=st.floats(0, 1))
def test_the_relaxed_values_stay_within_the_error_bound(seed, lower, width, error):
    """Any exact value within ``error`` of the computed zonotope has its ReLU within the
    returned bound of the relaxed zonotope's range (0 where the ReLU is stopped)."""
    relu = PiecewiseLinear(torch.relu, (0.0,))
    center = lower + width / 2
    values = torch.tensor([[[center], [width / 2]]], dtype=torch.float64)
    out, moved, _ = relu.apply_rounded(values, torch.full((1, 1), error, dtype=torch.float64),
                                       2.0**-53)
    generator = torch.Generator().manual_seed(seed)
    exact = lower + width * torch.rand(64, generator=generator, dtype=torch.float64) + error * (
        2 * torch.rand(64, generator=generator, dtype=torch.float64) - 1)
    low = out[0, 0, 0] - out[0, 1:, 0].abs().sum()
    high = out[0, 0, 0] + out[0, 1:, 0].abs().sum()
    assert (torch.relu(exact) >= low - moved[0, 0] - 1e-12).all()
    assert (torch.relu(exact) <= high + moved[0, 0] + 1e-12).all()


def margins_at(model: nn.Module, image: torch.Tensor, owner, y, x, color) -> torch.Tensor:
    """The exact scores (float64) with each row's pixel set to its color."""
    genes = torch.cat([torch.stack([x, y], 1).double(), color], 1)[:, None]
    with torch.no_grad():
        return copy.deepcopy(model).double()(perturb_rows(image.double(), owner, genes))


def test_a_deep_network_keeps_sound_bounds_and_a_small_error_in_float32():
    """A float32 engine (rounding 2^29 times float64's) on width-0 boxes: its bounds
    enclose the exact margins though as computed they miss them, and the error it takes
    off is well below the worst case over the layers' absolute row sums."""
    model = _he(Deep(), 1)
    image = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    owner = torch.tensor([0, 0, 1, 1, 1])
    y, x = torch.tensor([0, 4, 7, 2, 5]), torch.tensor([3, 7, 0, 2, 5])
    color = torch.rand(5, 3, generator=torch.Generator().manual_seed(3)).double()
    exact = margins_at(model, image, owner, y, x, color)
    labels = exact.argmax(1)
    margins = exact.gather(1, labels[:, None]) - exact
    others = ~F.one_hot(labels, exact.shape[1]).bool()
    engine = BoundEngine(model.float(), torch.float32)
    bounds = engine.margins(engine.prepare(image), owner, y, x, color.float(), color.float(),
                            labels)
    assert (bounds.lower.double()[others] <= margins[others]).all()
    assert (bounds.upper.double()[others] >= margins[others]).all()
    assert (bounds.computed.double() - margins)[others].abs().max() > 0
    worst = 1.0
    for conv in [model.stem, *model.convs, model.last]:  # each layer's largest row sum
        worst *= float(conv.weight.detach().abs().sum((1, 2, 3)).max())
    assert float(bounds.rounding[others].max()) < worst * FLOAT32 / 4


def _he(model: nn.Module, seed: int) -> nn.Module:
    """He-scaled random weights (the activations keep their scale through the layers)."""
    from helpers import randomised as scaled
    return scaled(model, seed, he=True)


def test_the_bundled_squeezenet_bounds_carry_a_small_error():
    """The 26-layer SqueezeNet: per neuron, with the ReLUs that are off stopping it, the
    float64 error of its bounds over a box of side 0.02 is ~10^-2 of the logits or less (the
    worst case over its layers' row sums was ~10^9: no box could be proved)."""
    from pixelprior.models import load_model
    model = load_model("squeezenet1_1-cifar10").eval()
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    engine = BoundEngine(model)
    y, x = torch.tensor([16, 0, 31]), torch.tensor([16, 5, 31])
    lo = torch.tensor([[0.3, 0.3, 0.3], [0.5, 0.1, 0.2], [0.0, 0.0, 0.0]])
    bounds = engine.margins(engine.prepare(image), torch.zeros(3, dtype=torch.long), y, x, lo,
                            lo + 0.02, torch.zeros(3, dtype=torch.long))
    with torch.no_grad():
        logits = model(image)
    rounding = bounds.rounding[:, 1:]
    assert float(rounding.max()) < 0.1 * (1 + float(logits.abs().max()))
    assert float(rounding.min()) > 0


def float32_enclosure(model: nn.Module, seed: int, engine_patch=None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A float32 engine's margin bounds on width-0 boxes at random positions and colors,
    with the exact margins: ``(lower, upper, exact)`` over the non-label margins, and the
    rounding it took off."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 3, 8, 8, generator=generator)
    owner = torch.randint(0, 2, (6,), generator=generator)
    y, x = torch.randint(0, 8, (6,), generator=generator), torch.randint(0, 8, (6,),
                                                                          generator=generator)
    color = torch.rand(6, 3, generator=generator).double()
    exact = margins_at(model, image, owner, y, x, color)
    labels = exact.argmax(1)
    margins = exact.gather(1, labels[:, None]) - exact
    others = ~F.one_hot(labels, exact.shape[1]).bool()
    engine = BoundEngine(model.float(), torch.float32)
    if engine_patch is not None:
        engine_patch(engine)
    bounds = engine.margins(engine.prepare(image), owner, y, x, color.float(), color.float(),
                            labels)
    return (bounds.lower.double()[others], bounds.upper.double()[others], margins[others],
            bounds.rounding.double()[others])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), net=st.sampled_from([Residual, Scaled, Deep]))
def test_float32_bounds_enclose_the_exact_margins_on_random_networks(seed, net):
    model = randomised(net(), seed) if net is not Deep else _he(Deep(), seed)
    lower, upper, exact, _ = float32_enclosure(model, seed)
    assert (lower <= exact).all() and (upper >= exact).all()


def test_an_operation_without_an_interval_rule_passes_its_row_sums():
    """Without the interval rule's ``|A|`` an operation passes its largest absolute row
    sum times the largest error to every neuron: still sound, far looser."""
    model = randomised(Residual(), 4)
    lower, upper, exact, rounding = float32_enclosure(model, 9)
    without = float32_enclosure(model, 9, lambda engine: setattr(
        engine, "_interval_rule", lambda step: None))
    assert (without[0] <= exact).all() and (without[1] >= exact).all()
    assert (lower <= exact).all() and (upper >= exact).all()
    assert float(without[3].max()) > float(rounding.max())


@pytest.mark.parametrize("rule, center", [
    (PiecewiseLinear(torch.nn.functional.hardsigmoid, (-3.0, 3.0)), 1e-17),
    (PiecewiseLinear(lambda t: torch.nn.functional.leaky_relu(t, 0.01), (0.0,)), -1e-310),
])
def test_a_sloped_piece_that_rounding_makes_look_flat_does_not_stop_the_error(rule, center):
    """Hardsigmoid's ``x / 6 + 1/2`` at 10^-17 rounds to 1/2 at both ends of the range,
    leaky ReLU at a subnormal to the same value: the pieces are not flat, so the error
    is passed on (the ends tested are the piece's own, a unit or more apart)."""
    values = torch.tensor([[[center], [0.0]]], dtype=torch.float64)
    _, moved, _ = rule.apply_rounded(values, torch.full((1, 1), 1e-16, dtype=torch.float64),
                                     2.0**-53)
    assert moved[0, 0] > 0


class ComputedConstant(nn.Module):
    """A factor computed in ``forward`` from the model's own tensors: ``((a + b) - b) ·
    2^60`` is 1 in real arithmetic and 0 in float64."""

    def __init__(self, real: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)
        self.register_buffer("a", torch.tensor(2.0**-60))
        self.register_buffer("b", torch.tensor(1.0))
        self.real = real

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.b if self.real else ((self.a + self.b) - self.b) * 2**60
        return self.fc(torch.relu(self.conv(x)).flatten(1)) * 0.5 + self.fc.bias * k


def assert_a_computed_constant_proves_nothing(network: type[nn.Module]) -> None:
    """``network()`` computes its constant as 0 in float64, ``network(real=True)`` as
    the real network's 1: its bounds enclose the real margins, and are no proof."""
    model = randomised(network(), 2)
    real = network(real=True)
    real.load_state_dict(model.state_dict())
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    owner, y, x = torch.zeros(2, dtype=torch.long), torch.tensor([2, 5]), torch.tensor([3, 6])
    color = torch.rand(2, 3, generator=torch.Generator().manual_seed(2)).double()
    exact = margins_at(real.eval(), image, owner, y, x, color)
    labels = exact.argmax(1)
    engine = BoundEngine(model.eval())
    bounds = engine.margins(engine.prepare(image), owner, y, x, color, color, labels)
    margins = exact.gather(1, labels[:, None]) - exact
    others = ~F.one_hot(labels, 3).bool()
    assert (bounds.lower[others] <= margins[others]).all()
    assert torch.isinf(bounds.lower[others]).all()


def test_a_constant_computed_in_forward_proves_nothing():
    """The copy computes the factor as 0, the network in real arithmetic as 1: bounds
    that trusted the copy's value would prove boxes the real network does not hold."""
    assert_a_computed_constant_proves_nothing(ComputedConstant)


class FoldedConstant(ComputedConstant):
    """The same factor applied to a value that changes with the pixel: ``torch.fx``
    runs the buffers' arithmetic as it traces and keeps ``1 - k / 2`` as a constant
    attribute of the trace (a review: held as the model's own, it proved margins twice
    the real ones)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.b if self.real else ((self.a + self.b) - self.b) * 2**60
        return self.fc(torch.relu(self.conv(x)).flatten(1)) * (1 - 0.5 * k)[None, None]


def test_a_constant_folded_by_the_trace_proves_nothing():
    assert_a_computed_constant_proves_nothing(FoldedConstant)


def test_a_literal_tensor_in_forward_is_the_models_own_constant():
    """A tensor written in ``forward`` (``torch.tensor([...])``, as a normalisation
    inside a model writes its mean) is a constant of the model, not one computed from
    its parameters: bounded, and the bounds hold the sampled margins."""
    class Literal(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4, 3)

        def forward(self, x):
            x = (x - torch.tensor([0.49, 0.48, 0.45])[:, None, None]) * torch.tensor(4.0)
            return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

    model = randomised(Literal(), 0)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    label = int(model(image).argmax())
    engine = BoundEngine(model)
    lo, hi = [0.2, 0.3, 0.4], [0.3, 0.4, 0.5]
    bounds = box_margins(engine, image, 3, 3, lo, hi, label)
    sampled = sampled_margins(model, image, 3, 3, lo, hi, label, count=300)
    others = [k for k in range(3) if k != label]
    assert torch.isfinite(bounds.lower[0, others]).all()
    assert (bounds.lower[0, others] <= sampled[:, others].min(0).values + 1e-9).all()


class KeywordDivisor(nn.Module):
    """A quotient whose divisor is given by keyword, after another keyword."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.div(self.conv(x), rounding_mode=None, other=3.0).flatten(1))


def test_a_divisor_given_by_keyword_is_the_one_divided_by():
    model = randomised(KeywordDivisor(), 3)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    engine = BoundEngine(model)
    lo, hi = torch.zeros(1, 3), torch.full((1, 3), 0.2)
    owner, y, x = torch.zeros(1, dtype=torch.long), torch.tensor([3]), torch.tensor([4])
    bounds = engine.margins(engine.prepare(image), owner, y, x, lo, hi, torch.tensor([0]))
    colors = torch.rand(64, 3, generator=torch.Generator().manual_seed(5)).double() * 0.2
    exact = margins_at(model, image, owner.expand(64), y.expand(64), x.expand(64), colors)
    margins = exact[:, :1] - exact
    assert (bounds.lower[0, 1:] <= margins[:, 1:].min(0).values).all()
    assert float(bounds.rounding[0, 1:].max()) < 1e-10  # divided by 3, not by None


class StandardisedWeight(nn.Module):
    """A convolution whose weight is computed in ``forward`` (scaled by ``((a + b) - b) ·
    2^60``: 1 in real arithmetic, 0 in float64): a sliding-window layer, not a sum."""

    def __init__(self, real: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 8 * 8, 3)
        self.register_buffer("a", torch.tensor(2.0**-60))
        self.register_buffer("b", torch.tensor(1.0))
        self.real = real

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.b if self.real else ((self.a + self.b) - self.b) * 2**60
        weight = self.conv.weight * (1 + k)
        return self.fc(torch.relu(F.conv2d(x, weight, self.conv.bias, padding=1)).flatten(1))


def test_a_weight_computed_in_forward_proves_nothing_either():
    assert_a_computed_constant_proves_nothing(StandardisedWeight)


def test_an_onnx_graph_in_a_wrapper_is_refused_saying_what_to_give_instead(tmp_path):
    """ONNX Runtime runs the graph: nothing to trace. The line said only that torch.fx
    could not trace it."""
    pytest.importorskip("onnxruntime")
    from pixelprior.models import Normalize, OnnxModel
    from pixelprior.scoring.cone.bounds import BoundEngine
    from pixelprior.scoring.cone.zonotope import BoundUnsupportedError

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, torch.rand(1, 3, 8, 8), str(path), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "b"}})
    wrapped = Normalize(OnnxModel(path), (0.5, 0.5, 0.5), (0.2, 0.2, 0.2)).eval()
    with pytest.raises(BoundUnsupportedError, match="^an ONNX graph cannot be bounded.*"
                       "file.py:factory"):  # what to do first, the tracer's line after
        BoundEngine(wrapped)


CURVED_DOMAINS = {  # rule, the least and the largest value of its ranges
    "square": (Square(), -3.0, 3.0), "sqrt": (SquareRoot(), 0.0, 4.0),
    "rsqrt": (InverseSquareRoot(), 1e-3, 4.0), "reciprocal": (Reciprocal(), -4.0, 4.0),
    "exp": (Exponential(), -8.0, 6.0), "log": (Logarithm(), 0.0, 8.0),
    "pow-0.75": (Power(-0.75), 1e-3, 4.0), "pow0.3": (Power(0.3), 0.0, 4.0),
    "pow1.5": (Power(1.5), 0.0, 4.0), "pow3": (Power(3), -2.0, 2.0),
    "pow4": (Power(4), -2.0, 2.0), "pow-2": (Power(-2), 1e-2, 3.0)}
# where each power is defined (the others: everywhere in their ranges)
_DEFINED = {"sqrt": lambda t: t >= 0, "rsqrt": lambda t: t > 0,
            "reciprocal": lambda t: t != 0, "log": lambda t: t > 0,
            "pow-0.75": lambda t: t > 0, "pow0.3": lambda t: t >= 0,
            "pow1.5": lambda t: t >= 0, "pow-2": lambda t: t > 0}


@pytest.mark.parametrize("name", list(CURVED_DOMAINS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ends=st.lists(st.floats(0, 1), min_size=2, max_size=2), error=st.floats(0, 0.05),
       seed=st.integers(0, 10_000))
def test_a_curved_relaxation_holds_f_of_every_exact_value(name, ends, error, seed):
    """``x²``, ``√x``, ``1 / √x``, ``1 / x``, ``eˣ`` and ``log x`` on any range in their
    domain (``1 / x`` on either side of 0): ``f`` of every value within ``error`` of the
    range lies in the relaxed zonotope's range widened by the returned error; where those
    values leave the domain the error is ``inf``."""
    rule, least, most = CURVED_DOMAINS[name]
    lower, upper = sorted(least + (most - least) * e for e in ends)
    center, radius = (lower + upper) / 2, (upper - lower) / 2
    values = torch.tensor([[[center], [radius]]], dtype=torch.float64)
    out, moved, _ = rule.apply_rounded(values, torch.full((1, 1), error, dtype=torch.float64),
                                       2.0**-53)
    generator = torch.Generator().manual_seed(seed)
    exact = torch.cat([torch.tensor([lower - error, upper + error], dtype=torch.float64),
                       lower - error + (upper - lower + 2 * error) * torch.rand(
                           256, generator=generator, dtype=torch.float64)])
    defined = _DEFINED.get(name, lambda t: torch.ones_like(t, dtype=torch.bool))(exact)
    if not bool(defined.all()) or (name == "reciprocal"
                                   and lower - error <= 0 <= upper + error):
        assert moved[0, 0] == math.inf  # no bound where f is undefined or unbounded
        return
    # each exact value lies within `error` of a computed one, x_c = center + radius ε
    # (the nearest in the range): f of it lies within `moved` of the relaxed zonotope at
    # the same ε, whose new symbol (row 2) may take any value
    computed = exact.clamp(lower, upper)
    symbol = (computed - center) / radius if radius > 0 else torch.zeros_like(exact)
    at = out[0, 0, 0] + out[0, 1, 0] * symbol
    spread = out[0, 2:, 0].abs().sum() + moved[0, 0]
    values_of_f = rule.f(exact)
    assert (values_of_f >= at - spread).all(), (lower, upper, error)
    assert (values_of_f <= at + spread).all(), (lower, upper, error)


@settings(max_examples=60, deadline=None)
@given(ends=st.lists(st.floats(-3, 3), min_size=2, max_size=2))
def test_a_square_is_never_bounded_below_zero(ends):
    """The square's relaxation keeps its lower line at or above 0 over the range: a
    variance (a mean of squares) is bounded below by 0, so the ``ε`` a normalisation adds
    keeps its square root and the division by it defined (the least-area slope, the
    chord's, does not: ``x²`` on [1, 5] bounded below by -3)."""
    lower, upper = sorted(ends)
    values = torch.tensor([[[(lower + upper) / 2], [(upper - lower) / 2]]],
                          dtype=torch.float64)
    out = Square().apply(values)
    assert float(out[0, 0, 0] - out[0, 1:, 0].abs().sum()) >= -1e-12 * (1 + upper**2
                                                                        + lower**2)


@settings(max_examples=60, deadline=None)
@given(lower=st.floats(-30, 30), width=st.floats(0, 10))
def test_an_exponential_is_bounded_away_from_zero(lower, width):
    """The exponential's slope is kept where its lower line stays above 0 on the range:
    a sum of exponentials (a softmax's divisor) is bounded away from 0, so its
    reciprocal is defined (the chord's lower line dips below 0 on ranges wider than
    about 2.5: ``eˣ`` on [0, 4] bounded below by -3.0). (On much wider ranges the bound,
    ``e^l / 2``, is below float64's resolution of ``e^u``.)"""
    upper = lower + width
    values = torch.tensor([[[(lower + upper) / 2], [(upper - lower) / 2]]],
                          dtype=torch.float64)
    out = Exponential().apply(values)
    assert float(out[0, 0, 0] - out[0, 1:, 0].abs().sum()) > 0


def test_a_curved_relaxation_claims_no_bound_where_its_products_overflow():
    """Beyond ``LARGEST`` the chord's products may overflow float64: the error is
    ``inf`` there, never a finite bound of placeholder coefficients (a review: ``x²`` at
    1.2e154 was bounded by ±6.1e293)."""
    for rule in (Square(), Reciprocal(), SquareRoot(), InverseSquareRoot(), Exponential(),
                 Logarithm(), Power(3), Power(-0.75), Power(1.5), Power(4)):
        values = torch.tensor([[[1.2e154], [1e152]]], dtype=torch.float64)
        _, moved, _ = rule.apply_rounded(values, torch.zeros(1, 1, dtype=torch.float64),
                                         2.0**-53)
        assert moved[0, 0] == math.inf, type(rule).__name__


def test_a_constant_computed_in_forward_is_no_exact_constant_of_the_clean_errors():
    """``(s * 0.1)[:, None, None]``, computed in forward from a parameter, rounds its
    own way in float32 and in the float64 copy: the clean errors past it are ``inf``
    even with exact constants (a review: 0, once copies of constants were held)."""
    class Computed(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
            self.s = nn.Parameter(torch.ones(4))
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            h = self.conv(x) * (self.s * 0.1)[:, None, None]
            return self.fc(torch.relu(self.conv2(torch.relu(h))).mean((2, 3)))

    model = randomised(Computed(), 1)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    errors = IntervalScreen(model, cone=False).clean_errors(image, 2.0**-53)
    assert torch.isinf(errors["mul_1"]).all()  # (mul: s * 0.1, a constant)


@pytest.mark.parametrize("dtype, unit", [(torch.float32, FLOAT32), (torch.float64, 2.0**-53)])
def test_a_stored_size_bounds_the_stored_values_magnitude(dtype, unit):
    """The size an affine node carries is its input's sizes propagated, or where smaller
    the stored zonotopes' own ``|center| + Σ |generators|`` rounded up: never below that
    sum in exact arithmetic (one large generator and 20,000 that each round away beside
    it, and random ones), never above the carried size. (Without it two post-norm
    transformer layers carried an error of 5·10³ at a box of width 0.)"""
    import fractions

    from pixelprior.scoring.cone.bounds import _stored_size

    generator = torch.Generator().manual_seed(0)
    tiny = torch.full((1, 20_000, 2), 0.4 * unit, dtype=dtype)
    spread = torch.randn(1, 20_000, 2, generator=generator, dtype=dtype) * 10.0 ** torch.randint(
        -8, 8, (1, 20_000, 2), generator=generator).to(dtype)
    for values in (torch.cat([torch.ones(1, 1, 2, dtype=dtype), tiny], 1), spread):
        carried = torch.full((1, 2), math.inf, dtype=torch.float64)
        size = _stored_size(values, carried, unit)
        for j in range(2):
            exact = sum(fractions.Fraction(float(v)) for v in values[0, :, j].abs())
            assert fractions.Fraction(float(size[0, j])) >= exact
        assert torch.equal(_stored_size(values, torch.zeros(1, 2, dtype=torch.float64),
                                        unit), torch.zeros(1, 2, dtype=torch.float64))
    nan = torch.full((1, 3, 2), math.nan, dtype=dtype)
    assert torch.equal(_stored_size(nan, torch.ones(1, 2, dtype=torch.float64), unit),
                       torch.ones(1, 2, dtype=torch.float64))


def test_stacked_transformer_layers_keep_a_small_error_at_a_point():
    """Two post-norm transformer layers (three LayerNorms, two softmaxes): at a box of
    width 0 the margins' bounds are the model's to 1e-5, below them (the carried sizes
    had grown geometrically through the normalisations' products: -7,750 for a margin
    of 0.24)."""
    from test_bounds import Transformer

    torch.manual_seed(0)
    model = Transformer().eval()
    model.encoder.layers[1] = copy.deepcopy(model.encoder.layers[0])
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    color = [0.2, 0.3, 0.1]
    exact = sampled_margins(model, image, 3, 4, color, color, 0)[0]
    bounds = box_margins(BoundEngine(model), image, 3, 4, color, color, 0)
    assert (bounds.lower[0, 1:] <= exact[1:]).all()
    torch.testing.assert_close(bounds.lower[0, 1:], exact[1:], atol=1e-5, rtol=0)


@pytest.mark.parametrize("rule, lower, upper, error", [
    (Power(-3), 3.18e82, 2.64e84, 2.6e72),  # its slope underflows to 0
    (Power(1.5), 2.8e-220, 2.9e-220, 0.0),  # its values underflow to 0
    (Power(31), 4.3e-12, 4.4e-12, 0.0), (Power(10), 1.7e-153, 1.8e-153, 1e-160),
    (Square(), 1e-170, 2e-170, 0.0), (Exponential(), -760.0, -750.0, 1e-3)])
def test_values_and_slopes_that_underflow_are_still_bounded(rule, lower, upper, error):
    """A review (mpmath at 200 bits): ``x ** 1.5`` at 2.8e-220 was bounded by exactly
    ``[0, 0]``, and ``x ** -3`` near 1e83 moved an incoming error by a slope that
    underflowed to 0; the zonotope and the interval rule now hold ``f`` of every exact
    value, a few of float64's least subnormals wide."""
    import mpmath

    mpmath.mp.prec = 200
    center, radius = (lower + upper) / 2, (upper - lower) / 2
    values = torch.tensor([[[center], [radius]]], dtype=torch.float64)
    out, moved, _ = rule.apply_rounded(values, torch.full((1, 1), error, dtype=torch.float64),
                                       2.0**-53)
    spread = sum(abs(mpmath.mpf(float(v))) for v in out[0, 2:, 0]) + mpmath.mpf(float(moved))
    interval = intervals.Activation(rule).apply(type("Step", (), {"intervals": [
        intervals.Interval(torch.tensor([lower], dtype=torch.float64),
                           torch.tensor([upper], dtype=torch.float64))], "memo": {}})())
    exponent = getattr(rule, "exponent", 2.0)
    f = mpmath.exp if isinstance(rule, Exponential) else (lambda t: t ** mpmath.mpf(exponent))
    for t in np.linspace(0, 1, 33):
        x = mpmath.mpf(lower - error) + (mpmath.mpf(upper + error) - mpmath.mpf(lower - error)
                                          ) * mpmath.mpf(float(t))
        nearest = min(max(float(x), lower), upper)
        symbol = (nearest - center) / radius if radius > 0 else 0.0
        at = mpmath.mpf(float(out[0, 0, 0])) + mpmath.mpf(float(out[0, 1, 0])) * symbol
        assert at - spread <= f(x) <= at + spread, (float(x), float(f(x)))
        if lower <= float(x) <= upper:
            assert float(interval.lower[0]) <= f(x) <= float(interval.upper[0])


def test_an_odd_power_across_zero_is_bounded_not_refused():
    """``x ** 3`` on ``[-1, 1]`` (a hand-written GELU's cube): the chord's slope 1 and
    the rests of each side, ``x³ - x`` within ±2/(3√3), not the unbounded error a range
    outside the domain has (the first version's)."""
    values = torch.tensor([[[0.0], [1.0]]], dtype=torch.float64)
    out, moved, _ = Power(3).apply_rounded(values, torch.zeros(1, 1, dtype=torch.float64),
                                           2.0**-53)
    assert math.isfinite(float(moved[0, 0])) and float(moved[0, 0]) < 1e-12
    torch.testing.assert_close(out[0, 1, 0], torch.tensor(1.0, dtype=torch.float64))
    assert abs(float(out[0, 2:, 0].abs().sum()) - 2 / (3 * math.sqrt(3))) < 1e-9
