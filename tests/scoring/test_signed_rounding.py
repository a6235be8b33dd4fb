"""The bound engine's float error carried with signs (``scoring/cone/signed.py``): on a
network deep enough that the forward bound (each error passed on by ``|W|``) is vacuous,
the signed one is small and still encloses the exact margins; each part of its pull
(a relaxation's slopes, a linear step's transpose, a step it cannot pull) is a bound."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bound_errors import margins_at
from torch import nn

from pixelprior.scoring.cone import bounds as bounds_module
from pixelprior.scoring.cone import signed
from pixelprior.scoring.cone.bounds import BoundEngine
from pixelprior.scoring.cone.signed import LinearStep, SlopeStep, Tape, _Coefficient
from pixelprior.scoring.cone.zonotope import (
    Exponential,
    Lipschitz,
    PiecewiseLinear,
    Power,
    Reciprocal,
    Square,
    SquareRoot,
    SShaped,
)


class Stack(nn.Module):
    """A ResNet-like stack: a stem, ``blocks`` residual blocks of two 3×3 convolutions
    with BatchNorm and ReLU, a global average and a linear head (He-scaled weights):
    deep enough that the forward bound of float32's error is vacuous."""

    def __init__(self, blocks: int = 3, width: int = 8, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1)
                                   for _ in range(2 * blocks))
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(2 * blocks))
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        for i in range(0, len(self.convs), 2):
            y = F.relu(self.bns[i](self.convs[i](x)))
            x = F.relu(self.bns[i + 1](self.convs[i + 1](y)) + x)
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


def he(model: nn.Module, seed: int) -> nn.Module:
    from helpers import randomised
    return randomised(model, seed, he=True)


def width_zero_bounds(model: nn.Module, seed: int, dtype: torch.dtype = torch.float32,
                      signed_on: bool = True, monkeypatch=None, every: bool = True):
    """Bounds of a ``dtype`` engine on width-0 boxes at random positions and colors, the
    exact (float64) margins and the non-label mask. ``every``: the signed bound of every
    margin, refined all the way (not only where the forward one takes more than
    ``SIGNED_SHARE`` of a margin, and until that share); ``signed_on=False``: none."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 3, 8, 8, generator=generator)
    owner = torch.randint(0, 2, (4,), generator=generator)
    y = torch.randint(0, 8, (4,), generator=generator)
    x = torch.randint(0, 8, (4,), generator=generator)
    color = torch.rand(4, 3, generator=generator).double()
    exact = margins_at(model, image, owner, y, x, color)
    labels = exact.argmax(1)
    margins = exact.gather(1, labels[:, None]) - exact
    others = ~F.one_hot(labels, exact.shape[1]).bool()
    engine = BoundEngine(model.to(dtype), dtype)
    with pytest.MonkeyPatch.context() as patch:
        if not signed_on:
            patch.setattr(bounds_module, "SIGNED_FROM", math.inf)
        elif every:  # (the signed bound of every margin, refined all the way)
            patch.setattr(bounds_module, "SIGNED_SHARE", 0.0)
        bounds = engine.margins(engine.prepare(image), owner, y, x, color.to(dtype),
                                color.to(dtype), labels)
    return bounds, margins, others, engine


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000))
def test_the_signed_bound_encloses_float32s_error_and_is_far_below_the_forward_one(seed):
    """A float32 engine (rounding 2^29 times float64's) on a 7-layer stack: the bounds
    still enclose the exact margins, and the error taken off is a fraction of the forward
    bound's (12-30 times below it on the seeds measured)."""
    model = he(Stack(), seed)
    with pytest.MonkeyPatch.context() as patch:
        forward, *_ = width_zero_bounds(model, seed, signed_on=False, monkeypatch=patch)
    bounds, margins, others, engine = width_zero_bounds(model, seed)
    assert engine.signed_fallbacks == []
    lower, upper = bounds.lower.double()[others], bounds.upper.double()[others]
    assert (lower <= margins[others]).all() and (upper >= margins[others]).all()
    signed_rounding = bounds.rounding.double()[others]
    assert (signed_rounding <= forward.rounding.double()[others]).all()
    assert float(signed_rounding.max()) * 4 < float(forward.rounding[others].max())


def test_a_margin_the_forward_bound_loses_is_proved_with_signs():
    """Seed 1: a margin of 0.12 under a forward float32 error of 0.34 (not proved) and a
    signed one of ~0.01 (proved)."""
    model = he(Stack(), 1)
    with pytest.MonkeyPatch.context() as patch:
        forward, *_ = width_zero_bounds(model, 1, signed_on=False, monkeypatch=patch)
    bounds, margins, others, _ = width_zero_bounds(model, 1)
    assert not bool((forward.lower[others] > 0).all())
    assert bool((bounds.lower[others] > 0).all())
    assert (bounds.lower.double()[others] <= margins[others]).all()


def test_a_deep_float64_stack_takes_off_a_small_fraction_of_the_forward_error():
    """In float64 a 19-layer stack: the signed error is 50 times or more below the
    forward one, and the bounds hold."""
    model = he(Stack(blocks=9), 0)
    with pytest.MonkeyPatch.context() as patch:
        forward, *_ = width_zero_bounds(model, 0, torch.float64, False, patch)
    bounds, margins, others, engine = width_zero_bounds(model, 0, torch.float64)
    assert engine.signed_fallbacks == []
    assert float(bounds.rounding[others].max()) * 50 < float(forward.rounding[others].max())
    assert (bounds.lower[others] <= margins[others]).all()


def test_without_refinement_the_bound_holds_and_is_looser(monkeypatch):
    """The refinement (each doubtful neuron's own pull) only tightens: without it the
    bound still encloses the margins, and on a 9-layer stack in float32 it is looser."""
    model = he(Stack(blocks=4), 0)
    bounds, margins, others, _ = width_zero_bounds(model, 0)
    monkeypatch.setattr(signed, "REFINE_CUTS", ())
    plain, *_ = width_zero_bounds(model, 0)
    assert (plain.lower.double()[others] <= margins[others]).all()
    assert float(plain.rounding[others].max()) > float(bounds.rounding[others].max())


def refuse_a_pull(monkeypatch, name: str) -> None:
    """Make the taped linear step of node ``name`` one autograd cannot transpose."""
    original = Tape.add

    def failing(self, step):
        if isinstance(step, LinearStep) and step.node.name == name:
            def refuse(xs):
                raise RuntimeError("no transpose")
            step.run = refuse
        return original(self, step)

    monkeypatch.setattr(Tape, "add", failing)


def test_a_step_the_pull_cannot_pass_enters_with_its_forward_error(monkeypatch):
    """Where autograd cannot transpose a step, its output's forward error enters as it
    is: the bound stays one (never below the pulled one), and the reason is kept."""
    model = he(Stack(), 7)
    bounds, margins, others, _ = width_zero_bounds(model, 7)
    refuse_a_pull(monkeypatch, "convs_4")
    cut, _, _, engine = width_zero_bounds(model, 7)
    assert any("no transpose" in line for line in engine.signed_fallbacks)
    assert (cut.lower.double()[others] <= margins[others]).all()
    assert (cut.rounding[others] >= bounds.rounding[others]).all()


def test_a_slope_interval_splits_every_coefficient_it_may_give():
    """``c · s`` for ``c`` in ``ĉ ± r`` and ``s`` in [0, 1] (a ReLU in doubt) or [1, 1]
    (one on): ``ĉ m + (c - ĉ) s`` lies in the coefficient passed on, and the rest,
    ``ĉ (s - m)``, within the spread that multiplies the input's error."""
    node = object()
    least = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    most = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    step = SlopeStep(node, node, least, most, torch.zeros(1, 2, dtype=torch.float64),
                     torch.zeros(1, 2, dtype=torch.float64))
    center = torch.tensor([[-3.0, 2.0]], dtype=torch.float64)
    radius = torch.tensor([[0.5, 0.25]], dtype=torch.float64)
    passed, spread = signed._through_slopes(_Coefficient(center, radius), step,
                                            torch.zeros(1, dtype=torch.long))
    middle = (least + most) / 2
    for c_share in (-1.0, 0.0, 1.0):
        for s_share in (0.0, 0.5, 1.0):
            c = center + c_share * radius
            slope = least + s_share * (most - least)
            kept = center * middle + (c - center) * slope
            assert (kept >= passed.center - passed.radius).all()
            assert (kept <= passed.center + passed.radius).all()
            assert ((center * (slope - middle)).abs() <= spread).all()
    assert float(spread[0, 1]) < 1e-12  # a sure slope spreads nothing
    assert float(passed.radius[0, 1]) < 0.26


def test_a_linear_step_pulls_the_transpose_and_the_absolute_transpose():
    """A convolution's pull: the center through ``W^T``, the radius through ``|W|^T``
    (widened only by the float64 sums' roundings)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False).double()
    node = object()
    step = LinearStep(node, [node], [torch.zeros(1, 2, 4, 4, dtype=torch.float64)],
                      lambda xs: conv(xs[0]),
                      lambda v: F.conv2d(v[node], conv.weight.abs(), padding=1),
                      torch.zeros(1, 3, 4, 4, dtype=torch.float64),
                      torch.zeros(1, 3, 4, 4, dtype=torch.float64))
    center = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    radius = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    (out,) = signed._through_linear(_Coefficient(center, radius), step)
    expected = F.conv_transpose2d(center, conv.weight, padding=1)
    assert torch.allclose(out.center, expected, atol=1e-12)
    absolute = F.conv_transpose2d(radius, conv.weight.abs(), padding=1)
    assert (out.radius >= absolute).all()
    assert (out.radius <= absolute * (1 + 1e-12) + 1e-12).all()


RULES = {
    "relu": (PiecewiseLinear(torch.relu, (0.0,)), -3, 3),
    "hardtanh": (PiecewiseLinear(lambda t: t.clamp(-1, 1), (-1.0, 1.0)), -3, 3),
    "hardsigmoid": (PiecewiseLinear(F.hardsigmoid, (-3.0, 3.0)), -5, 5),
    "leaky": (PiecewiseLinear(lambda t: F.leaky_relu(t, -0.5), (0.0,), 1.0), -3, 3),
    "sigmoid": (SShaped(torch.sigmoid, lambda t: torch.sigmoid(t) * (1 - torch.sigmoid(t))),
                -6, 6),
    "tanh": (SShaped(torch.tanh, lambda t: 1 - torch.tanh(t) ** 2), -3, 3),
    "silu": (Lipschitz(F.silu, 1.1), -6, 6),
    "square": (Square(), -3, 3),
    "sqrt": (SquareRoot(), 0.01, 4),
    "reciprocal": (Reciprocal(), 0.1, 3),
    "exp": (Exponential(), -4, 3),
    "cube": (Power(3.0), -2, 2),
}


@pytest.mark.parametrize("name", list(RULES))
@settings(max_examples=40, deadline=None)
@given(ends=st.lists(st.floats(0, 1), min_size=2, max_size=2),
       points=st.lists(st.floats(0, 1), min_size=2, max_size=2))
def test_every_difference_quotient_lies_within_the_slopes(name, ends, points):
    """Between any two points of a range, ``(f(a) - f(b)) / (a - b)`` lies in
    :meth:`~.zonotope.Relaxation.slopes` of it (what moves an error)."""
    rule, low, high = RULES[name]
    lower, upper = (low + (high - low) * t for t in sorted(ends))
    a, b = (lower + (upper - lower) * t for t in points)
    if abs(a - b) < 1e-3:
        return
    t = torch.tensor([[a, b]], dtype=torch.float64)
    values = rule.f(t)
    quotient = float((values[0, 0] - values[0, 1]) / (a - b))
    least, most = rule.slopes(torch.tensor([[lower]], dtype=torch.float64),
                              torch.tensor([[upper]], dtype=torch.float64))
    slack = 1e-9 * (1 + abs(quotient))  # (the quotient's own float64 roundings)
    assert float(least) - slack <= quotient <= float(most) + slack


class Node:
    """A stand-in for an ``fx.Node`` on a hand-made tape (hashable, named)."""

    def __init__(self, name: str) -> None:
        self.name = name


def test_a_hand_made_tape_sums_each_part_once():
    """``x → W1 → ReLU (one neuron in doubt, one on) → W2 → logits``, ``x`` an entry:
    the bound is ``Σ max|λ| · bound`` over the head's own rounding, the ReLU's, its
    doubtful slope's share of its input's error, the first layer's rounding and the
    entry's error, with ``λ`` pulled by hand (to the float64 sums)."""
    x, hidden, relu, logits = Node("x"), Node("w1"), Node("relu"), Node("w2")
    d = torch.float64
    w1 = torch.tensor([[1.0, -2.0, 0.5], [0.25, 1.0, -1.0]], dtype=d)
    w2 = torch.tensor([[2.0, -1.0], [-0.5, 3.0]], dtype=d)
    entry = torch.tensor([[1e-3, 2e-3, 4e-3]], dtype=d)
    own1, own2 = torch.tensor([[1e-4, 3e-4]], dtype=d), torch.tensor([[5e-5, 7e-5]], dtype=d)
    relu_own = torch.tensor([[2e-6, 1e-6]], dtype=d)
    least, most = torch.tensor([[0.0, 1.0]], dtype=d), torch.tensor([[1.0, 1.0]], dtype=d)
    incoming = torch.tensor([[3e-3, 5e-3]], dtype=d)  # (below |W1| entry + own1)
    tape = Tape()
    tape.add(LinearStep(hidden, [x], [torch.zeros(1, 3, dtype=d)], lambda xs: xs[0] @ w1.T,
                        lambda v: v[x] @ w1.abs().T, own1, torch.full((1, 2), 1.0, dtype=d),
                        {x: entry}))
    tape.add(SlopeStep(relu, hidden, least, most, relu_own, torch.full((1, 2), 1.0, dtype=d),
                       incoming=incoming))
    tape.add(LinearStep(logits, [relu], [torch.zeros(1, 2, dtype=d)], lambda xs: xs[0] @ w2.T,
                        lambda v: v[relu] @ w2.abs().T, own2,
                        torch.full((1, 2), 1.0, dtype=d)))
    found = tape.margin_errors(logits, torch.tensor([0]), 2)
    c = torch.tensor([1.0, -1.0], dtype=d)
    at_relu = w2.T @ c  # the coefficient of the ReLU's output
    middle, half = (least + most)[0] / 2, (most - least)[0] / 2
    at_hidden = at_relu * middle  # passed on; |at_relu| half multiplies the input's error
    expected = (c.abs() @ own2[0] + at_relu.abs() @ relu_own[0]
                + (at_relu.abs() * half) @ incoming[0] + at_hidden.abs() @ own1[0]
                + (w1.T @ at_hidden).abs() @ entry[0])
    assert found[0, 0] == 0
    assert float(expected) <= float(found[0, 1]) <= float(expected) * (1 + 2.0**-19)


def orthogonal_stack(layers: int, relu: bool) -> nn.Module:
    """``layers`` orthogonal linear layers of width 64 on 3×8×8 images (ReLUs between,
    gain √2, where ``relu``): values of a few units, absolute row sums of ~8-11."""
    torch.manual_seed(0)
    made: list[nn.Module] = [nn.Flatten(), nn.Linear(3 * 8 * 8, 64)]
    for _ in range(layers):
        layer = nn.Linear(64, 64)
        nn.init.orthogonal_(layer.weight, gain=2 ** 0.5 if relu else 1.0)
        nn.init.zeros_(layer.bias)
        made += [nn.ReLU(), layer] if relu else [layer]
    return nn.Sequential(*made, nn.Linear(64, 4)).eval()


@pytest.mark.parametrize("relu", [False, True])
def test_a_stack_of_linear_layers_is_proved_with_signs_at_a_point(relu, monkeypatch):
    """Through 24 orthogonal layers the forward bound grows by the absolute row sums
    (past the margins); the signed one, each layer's rounding taken at the magnitudes it
    stored (not the carried size bounds, which grow by ``|A|`` too), stays far below:
    the width-0 box is proved, and its bounds hold."""
    model = orthogonal_stack(24, relu)
    bounds, margins, others, engine = width_zero_bounds(model, 2, torch.float64, every=False)
    forward, *_ = width_zero_bounds(model, 2, torch.float64, False, monkeypatch)
    assert engine.signed_fallbacks == []
    assert not bool((forward.lower[others] > 0).all())
    assert float(bounds.rounding[others].max()) < 1e-4
    assert bool((bounds.lower[others] > 0).all())
    assert (bounds.lower[others] <= margins[others]).all()


@pytest.mark.parametrize("name, lower, upper", [
    ("sigmoid", 20.0, 20.5), ("sigmoid", 40.0, 41.0), ("sigmoid", 50.216, 50.22),
    ("sigmoid", -45.0, -44.0), ("tanh", 20.0, 21.0), ("tanh", 10.0, 10.5),
    ("tanh", -19.5, -19.0)])
def test_the_slopes_of_an_s_shaped_tail_hold_its_exact_quotients(name, lower, upper):
    """Far in the tails ``σ(1 - σ)`` and ``1 - tanh²`` cancel (past 37 and 19 they are
    0 in float64): the slopes still hold the exact difference quotients (50 digits; a
    review found 4·10^-18 above a largest slope of 8·10^-323)."""
    import mpmath

    from pixelprior.scoring.cone.table import OPERATIONS

    mpmath.mp.dps = 50
    exact = {"sigmoid": lambda t: 1 / (1 + mpmath.exp(-t)), "tanh": mpmath.tanh}[name]
    rule = OPERATIONS.get(name).bound(None)
    least, most = (float(v) for v in rule.slopes(torch.tensor([lower], dtype=torch.float64),
                                                  torch.tensor([upper], dtype=torch.float64)))
    for a, b in ((lower, upper), (lower, lower + 1e-9), (upper - 1e-9, upper)):
        quotient = (exact(mpmath.mpf(a)) - exact(mpmath.mpf(b))) / (mpmath.mpf(a) - b)
        assert least <= quotient <= most


def test_a_per_channel_prelu_keeps_a_float32_engine_in_float32():
    """PReLU's slopes (float64 in its rule) no longer turn a float32 engine's values into
    float64 (the next convolution refused them: a review); its bounds enclose the exact
    margins."""

    class Leaky(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.convs = nn.ModuleList(nn.Conv2d(3 if i == 0 else 4, 4, 3, padding=1)
                                       for i in range(6))
            self.prelu = nn.PReLU(4)
            self.head = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for conv in self.convs:
                x = self.prelu(conv(x))
            return self.head(x.mean((2, 3)))

    bounds, margins, others, _ = width_zero_bounds(he(Leaky(), 0), 0)
    assert (bounds.lower.double()[others] <= margins[others]).all()
    assert (bounds.upper.double()[others] >= margins[others]).all()


def test_the_fallbacks_listed_are_the_last_calls(monkeypatch):
    """``signed_fallbacks`` lists the last ``margins`` call's: empty after a call that
    computed no signed bound."""
    model = he(Stack(), 7)
    refuse_a_pull(monkeypatch, "convs_4")
    _, _, _, engine = width_zero_bounds(model, 7)
    assert engine.signed_fallbacks
    monkeypatch.setattr(bounds_module, "SIGNED_FROM", math.inf)
    image = torch.rand(1, 3, 8, 8)
    color = torch.full((1, 3), 0.5)
    engine.margins(engine.prepare(image), torch.tensor([0]), torch.tensor([3]),
                   torch.tensor([3]), color, color, torch.tensor([0]))
    assert engine.signed_fallbacks == []


def test_an_identity_passes_the_pulls_that_bound_doubt_in_place():
    """``nn.Identity`` and eval-mode dropout between layers (slopes exactly 1) keep the
    input's error for the pulls that bound a slope's doubt where it stands: the bound
    is what it is without them (a review: such a pull through them was infinite, and
    the refinement did nothing upstream of them)."""

    class Passing(nn.Module):
        def __init__(self, keep: bool) -> None:
            super().__init__()
            self.stack = orthogonal_stack(24, True)
            self.keep = keep
            self.identity, self.dropout = nn.Identity(), nn.Dropout(0.5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            layers = list(self.stack)
            x = layers[1](layers[0](x))
            for i, layer in enumerate(layers[2:-1]):
                x = layer(x)
                if self.keep and i % 6 == 5:
                    x = self.dropout(self.identity(x))
            return layers[-1](x)

    plain, margins, others, _ = width_zero_bounds(Passing(False).eval(), 2, torch.float64)
    monkey = pytest.MonkeyPatch()
    calls: list[bool] = []
    original = Tape._pulled

    def counted(self, last, start, box, cut_below=None, inject=True):
        found = original(self, last, start, box, cut_below, inject)
        calls.append(bool(torch.isfinite(found).all()))
        return found

    monkey.setattr(Tape, "_pulled", counted)
    try:
        kept, *_ = width_zero_bounds(Passing(True).eval(), 2, torch.float64)
    finally:
        monkey.undo()
    assert calls and all(calls)
    assert (kept.lower[others] <= margins[others]).all()
    assert float(kept.rounding[others].max()) <= 2 * float(plain.rounding[others].max())


@pytest.mark.parametrize("name, lower, upper, exact", [
    ("sigmoid", 17.0, 18.0, lambda m, t: 1 / (1 + m.exp(-t))),
    ("sigmoid", 8.0, 8.001, lambda m, t: 1 / (1 + m.exp(-t))),
    ("tanh", 5.0, 5.001, lambda m, t: m.tanh(t)),
    ("hardsigmoid", -1.0, 1.0, lambda m, t: t / 6 + m.mpf(1) / 2)])
def test_slopes_of_float32_ranges_are_taken_in_float64(name, lower, upper, exact):
    """Ranges given in float32 get the float64 slopes (the pads are float64's: in float32
    they vanished, and sigmoid's slopes on [17, 18] were [0, 9e-16] about quotients of
    1.5·10^-8 to 4·10^-8 — a review)."""
    import mpmath

    from pixelprior.scoring.cone.table import OPERATIONS

    mpmath.mp.dps = 50
    rule = OPERATIONS.get(name).bound(None)
    least, most = (float(v) for v in rule.slopes(torch.tensor([lower]),
                                                  torch.tensor([upper])))
    low, high = mpmath.mpf(float(torch.tensor(lower))), mpmath.mpf(float(torch.tensor(upper)))
    for a, b in ((low, high), (low, low + mpmath.mpf("1e-12")),
                 (high - mpmath.mpf("1e-12"), high)):
        quotient = (exact(mpmath, a) - exact(mpmath, b)) / (a - b)
        assert least <= quotient <= most


def test_the_signed_bound_is_taken_where_the_forward_one_takes_a_share_of_a_margin():
    """By default the signed bound is computed only where the forward one takes more than
    ``SIGNED_SHARE`` of a margin that could be proved (below, it leaves the margin as
    good): on a 4-block stack in float64 (forward ~10^-12 of margins of 1) it is not."""
    model = he(Stack(blocks=4), 0)
    pulled: list[int] = []
    original = Tape.margin_errors

    def counted(self, *args, **kwargs):
        pulled.append(1)
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Tape, "margin_errors", counted)
        width_zero_bounds(model, 0, torch.float64, every=False)
        assert not pulled
        width_zero_bounds(model, 0, torch.float32, every=False)  # forward: ~10^2
        assert pulled
