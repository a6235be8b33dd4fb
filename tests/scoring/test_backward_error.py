"""The backward (signed) bound of the model's float32 error over a box of colors:
``pixelprior.scoring.cone.backward``."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
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
    randomised,
)
from test_float32_error import FLOAT32, margins_both_ways, sample_box
from test_intervals import Strides
from torch import fx, nn

from pixelprior.scoring import perturb_rows
from pixelprior.scoring.cone.backward import BackwardErrorBound, BackwardUnsupportedError
from pixelprior.scoring.cone.intervals import (
    MAXIMUM,
    Activation,
    Coefficient,
    Interval,
    IntervalStep,
    _PoolWindows,
)
from pixelprior.scoring.cone.operators.pooling import PoolParams
from pixelprior.scoring.cone.rounding import rounding_error
from pixelprior.scoring.cone.screen import IntervalScreen


class Ceiled(nn.Module):
    """SqueezeNet's shapes: a max pool with ``ceil_mode`` (windows past the edge), a
    concatenation of two branches, and a flatten written with the traced batch size."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.left, self.right = nn.Conv2d(6, 4, 1), nn.Conv2d(6, 4, 3, padding=1)
        self.fc = nn.Linear(8 * 3 * 3, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.stem(x)))
        x = torch.relu(torch.cat([self.left(x), self.right(x)], 1))
        return self.fc(x.view(x.size(0), -1))


# the activations that are one elementwise function (not the identity, not two clamps)
SINGLE = [a for a in ACTIVATIONS if type(a).__name__ not in ("Identity", "Clamp")]
NETS = [Residual, Plain, Scaled, Strides, Ceiled, Gated, Indexed, Normalised,
        Exponentials] + [lambda a=a: Smooth(a) for a in SINGLE]
NAMES = ["residual", "plain", "scaled", "strides", "ceiled", "gated", "indexed",
         "normalised", "exponentials"] + [
    type(a).__name__ for a in SINGLE]


def boxes(size: int, seed: int, count: int = 6) -> tuple[torch.Tensor, ...]:
    """Random positions and boxes (the first a whole color cube, the second a point)."""
    generator = torch.Generator().manual_seed(seed + 1)
    positions = torch.randint(0, size * size, (count,), generator=generator)
    lo = torch.rand(count, 3, generator=generator, dtype=torch.float64) * 0.7
    hi = (lo + torch.rand(count, 3, generator=generator, dtype=torch.float64) * 0.6).clamp(
        max=1.0)
    lo[0], hi[0] = 0.0, 1.0
    hi[1] = lo[1] = lo[1].float().double()  # a color float32 holds
    return positions, lo, hi


def excess(net: nn.Module, size: int, seed: int, unit: float = FLOAT32, count: int = 6,
           refine: bool = False) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """Over random boxes: the largest ``|m32 - m64|`` beyond the signed bound (> 0: it
    missed), the largest difference seen, the signed bounds and the forward ones
    (``refine``: the signed bound with the activations' doubtful neurons refined)."""
    model = randomised(net, seed)
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        label = int(model.float()(image).argmax())
    positions, lo, hi = boxes(size, seed, count)
    screen = IntervalScreen(model, cone=False)
    signed = BackwardErrorBound(screen, refine=refine).errors(image, positions, lo, hi,
                                                              label, unit)
    forward = screen.bounds(image, positions, lo, hi, label, unit).error
    missed = seen = 0.0
    for b in range(count):
        single, exact = margins_both_ways(copy.deepcopy(model), image, int(positions[b]),
                                          sample_box(lo[b], hi[b], 128, seed + b), label)
        difference = (single - exact).abs()
        slack = 1e-12 * (1 + exact.abs())  # float64's own error, generously
        missed = max(missed, float((difference - signed[b] - slack).max()))
        seen = max(seen, float(difference.max()))
    return missed, seen, signed, forward


@pytest.mark.parametrize("net", NETS, ids=NAMES)
def test_the_float32_model_stays_within_the_signed_bound(net):
    """Every network the rules know: the float32 model's margins lie within the signed
    bound at every sampled color, float32 does differ, and the bound is 0 at the label
    and never wider than the forward bound by more than the unstable neurons allow (on a
    point, at most it)."""
    size = 32 if net is Strides else 8
    missed, seen, signed, forward = excess(net(), size, 3)
    assert missed <= 0
    assert seen > 0  # float32 rounds here: the check can fail
    assert torch.isfinite(signed).all() and (signed >= 0).all()
    assert (signed.min(1).values == 0).all()  # the label's own margin
    assert (signed[1] <= forward[1] * (1 + 1e-9)).all()  # a point: signs only help


def every_neuron_doubtful(monkeypatch) -> None:
    """Make the refinement bound every neuron an activation reads (on small random nets
    at float32's unit few are doubtful, and the refinement would not run)."""
    monkeypatch.setattr(BackwardErrorBound, "_doubtful",
                        lambda self, node, value: torch.ones_like(value.lower,
                                                                  dtype=torch.bool))


def refined_errors(monkeypatch, model, image, positions, lo, hi, label, unit=FLOAT32,
                   **options) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Each refined node's errors after the refinement (by node name; each checked to be
    at most the forward error), and the margins' bound."""
    refined: dict[str, torch.Tensor] = {}
    original = BackwardErrorBound._refine

    def kept(self, records, owner, node, out):
        before = out.error.clone()
        original(self, records, owner, node, out)
        assert (out.error <= before).all()  # the smaller of the two bounds
        refined[node.name] = out.error.clone()

    monkeypatch.setattr(BackwardErrorBound, "_refine", kept)
    bound = BackwardErrorBound(IntervalScreen(model, cone=False), refine=True, **options)
    margins = bound.errors(image, positions, lo, hi, label, unit)
    monkeypatch.setattr(BackwardErrorBound, "_refine", original)
    return refined, margins


class _Values(fx.Interpreter):
    """Every node's value of one run of a traced graph, by name."""

    def __init__(self, module: fx.GraphModule) -> None:
        super().__init__(module)
        self.values: dict[str, torch.Tensor] = {}

    def run_node(self, n: fx.Node):
        value = super().run_node(n)
        self.values[n.name] = value
        return value


def node_values(module: fx.GraphModule, images: torch.Tensor) -> dict[str, torch.Tensor]:
    interpreter = _Values(module)
    with torch.no_grad():
        interpreter.run(images)
    return interpreter.values


@pytest.mark.parametrize("net", [n for n in NETS if n is not Strides],
                         ids=[name for name in NAMES if name != "strides"])
def test_each_refined_neuron_holds_its_float32_error(net, monkeypatch):
    """Every neuron an activation reads refined by its own backward bound: at every
    sampled color of every box, the float32 value of each such neuron is within its
    refined error of the real one (float64), the errors are at most the forward ones,
    and float32 does differ somewhere (the check can fail). (Not the 32×32 strided net:
    a row per neuron of every layer there takes minutes.)"""
    every_neuron_doubtful(monkeypatch)
    model = randomised(net(), 3)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        label = int(model.float()(image).argmax())
    positions, lo, hi = boxes(8, 3, 4)
    refined, _ = refined_errors(monkeypatch, model, image, positions, lo, hi, label)
    assert refined
    exact = IntervalScreen(model, cone=False).graph.graph_module  # the float64 copy
    single = copy.deepcopy(exact).float()
    differs = False
    for b in range(len(positions)):
        colors = sample_box(lo[b], hi[b], 24, b)
        width = image.shape[-1]
        where = [float(positions[b] % width), float(positions[b] // width)]
        genes = torch.cat([torch.tensor([where]).expand(len(colors), 2), colors],
                          1)[:, None].double()
        rows = perturb_rows(image.double(), torch.zeros(len(colors), dtype=torch.long), genes)
        v32, v64 = node_values(single, rows.float()), node_values(exact, rows)
        for name, error in refined.items():
            difference = (v32[name].double() - v64[name]).abs()
            slack = 1e-12 * (1 + v64[name].abs())  # float64's own error, generously
            assert (difference <= error[b] + slack).all(), name
            differs |= bool((difference > 0).any())
    assert differs


def test_refined_errors_are_each_boxs_own(monkeypatch):
    """The refinement's rows hold every box of each neuron (``k · boxes + b``): bounding
    boxes together, in pulls of a few neurons or of many, gives each box the errors it
    gets alone."""
    every_neuron_doubtful(monkeypatch)
    model = randomised(Residual(), 5)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        label = int(model(image).argmax())
    positions, lo, hi = boxes(8, 5, 3)
    together, margins = refined_errors(monkeypatch, model, image, positions, lo, hi, label)
    few, few_margins = refined_errors(monkeypatch, model, image, positions, lo, hi, label,
                                      refine_rows=6)  # two neurons a pull
    for b in range(len(positions)):
        alone, alone_margins = refined_errors(monkeypatch, model, image, positions[b:b + 1],
                                              lo[b:b + 1], hi[b:b + 1], label)
        for name, error in alone.items():
            torch.testing.assert_close(together[name][b], error[0], rtol=1e-9, atol=0)
            torch.testing.assert_close(few[name][b], error[0], rtol=1e-9, atol=0)
        torch.testing.assert_close(margins[b], alone_margins[0], rtol=1e-9, atol=0)
    torch.testing.assert_close(few_margins, margins, rtol=1e-9, atol=0)


@pytest.mark.parametrize("rows", [0, -3, 2.5, True])
def test_refine_rows_must_be_a_positive_integer(rows):
    with pytest.raises(ValueError, match="refine_rows must be a positive integer"):
        BackwardErrorBound(IntervalScreen(randomised(Plain(), 1)), refine=True,
                           refine_rows=rows)


def test_the_refinement_settles_doubtful_relus_under_a_coarse_unit(monkeypatch):
    """With a coarse unit (errors large beside some neurons' values) the forward error
    leaves ReLUs doubtful: the refinement lowers errors of those neurons only (of a
    neuron doubtful in any box) and the margins' bound falls."""
    model = randomised(Residual(width=6), 7)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        label = int(model(image).argmax())
    positions, lo, hi = boxes(8, 7, 4)
    unit = 2.0**-10
    plain = BackwardErrorBound(IntervalScreen(model, cone=False)).errors(
        image, positions, lo, hi, label, unit)
    lowered: list[int] = []
    original = BackwardErrorBound._refine

    def counted(self, records, owner, node, out):
        before = out.error.clone()
        doubtful = self._doubtful(node, out).flatten(1).any(0)
        original(self, records, owner, node, out)
        changed = (out.error < before).flatten(1).any(0)
        assert not (changed & ~doubtful).any()
        lowered.append(int(changed.sum()))

    monkeypatch.setattr(BackwardErrorBound, "_refine", counted)
    refined = BackwardErrorBound(IntervalScreen(model, cone=False), refine=True).errors(
        image, positions, lo, hi, label, unit)
    assert sum(lowered) > 0
    assert (refined <= plain * (1 + 1e-9)).all() and (refined < plain).any()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), net=st.sampled_from([Residual, Plain, Scaled, Ceiled]))
def test_the_refined_bound_holds_on_random_networks(seed, net):
    """Every neuron refined (the refinement runs on each net): the margins' bound still
    holds at every sampled color and is nowhere above the plain one."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        every_neuron_doubtful(monkeypatch)
        ran = []
        original = BackwardErrorBound._refine
        monkeypatch.setattr(BackwardErrorBound, "_refine",
                            lambda self, *args: (ran.append(1), original(self, *args)))
        missed, _, refined, _ = excess(net(), 8, seed, count=4, refine=True)
    _, _, plain, _ = excess(net(), 8, seed, count=4)
    assert ran and missed <= 0
    assert (refined <= plain * (1 + 1e-9)).all()


@pytest.mark.parametrize("net", [Residual, Plain, Ceiled], ids=["residual", "plain",
                                                                "ceiled"])
def test_without_the_rounding_terms_the_signed_check_fails(net):
    """A unit of 0: nothing rounds, the bound is 0, and the float32 model's differences
    exceed it. The roundings are what make the bound hold."""
    missed, seen, signed, _ = excess(net(), 8, 3, unit=0.0)
    assert (signed == 0).all() and seen > 0 and missed > 0


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), net=st.sampled_from([Residual, Plain, Scaled, Ceiled]))
def test_the_signed_bound_holds_on_random_networks(seed, net):
    missed, _, _, _ = excess(net(), 8, seed, count=4)
    assert missed <= 0


def test_at_a_color_the_signed_bound_is_the_first_order_estimate():
    """At a single color, with every ReLU sure, the backward pass follows the gradient:
    the proved bound is the first-order estimate's sum (``rounding_error``), up to the
    float32 magnitudes it adds; the forward bound is a few times it."""
    from pixelprior.models import load_model

    model = load_model("convsmall-cifar10").eval()
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        label = int(model(image).argmax())
    estimate = float(rounding_error(model, image, torch.tensor([label]), FLOAT32)[0])
    screen = IntervalScreen(model)
    positions = torch.tensor([0, 16 * 32 + 16, 31 * 32 + 31])
    color = image[0, :, [0, 16, 31], [0, 16, 31]].T.double()  # the clean image itself
    signed = BackwardErrorBound(screen).errors(image, positions, color, color, label,
                                               FLOAT32).max(1).values
    forward = screen.bounds(image, positions, color, color, label, FLOAT32).error.max(1)
    assert ((signed / estimate - 1).abs() < 0.1).all()
    assert (forward.values > 2 * signed).all()


def test_a_smaller_box_has_a_smaller_bound():
    """A box inside another: its bounds and slopes lie inside the other's, so its bound
    is at most the other's (up to the float64 arithmetic of both)."""
    model = randomised(Residual(), 11)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        label = int(model(image).argmax())
    signed = BackwardErrorBound(IntervalScreen(model))
    positions = torch.tensor([9, 9, 9, 9])
    lo = torch.tensor([[0.0] * 3, [0.2] * 3, [0.3] * 3, [0.35] * 3], dtype=torch.float64)
    hi = torch.tensor([[1.0] * 3, [0.8] * 3, [0.5] * 3, [0.35] * 3], dtype=torch.float64)
    bound = signed.errors(image, positions, lo, hi, label, FLOAT32)
    assert (bound[1:] <= bound[:-1] * (1 + 1e-9)).all()


def test_only_the_margins_asked_for_are_bounded():
    model = randomised(Plain(), 5)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        label = int(model(image).argmax())
    signed = BackwardErrorBound(IntervalScreen(model))
    positions, lo, hi = boxes(8, 5, 3)
    every = signed.errors(image, positions, lo, hi, label, FLOAT32)
    wanted = torch.zeros_like(every, dtype=torch.bool)
    other = (label + 1) % every.shape[1]
    wanted[:, other] = True
    some = signed.errors(image, positions, lo, hi, label, FLOAT32, wanted)
    torch.testing.assert_close(some[:, other], every[:, other], rtol=1e-12, atol=0)
    others = [j for j in range(every.shape[1]) if j not in (label, other)]
    assert torch.isinf(some[:, others]).all() and (some[:, label] == 0).all()


@settings(max_examples=40, deadline=None)
@given(kernel=st.integers(1, 3), stride=st.integers(1, 3), padding=st.integers(0, 1),
       dilation=st.integers(1, 2), ceil=st.booleans(), size=st.integers(5, 9),
       seed=st.integers(0, 1000))
def test_max_pool_windows_are_the_models(kernel, stride, padding, dilation, ceil, size,
                                         seed):
    """The pull's windows are max pooling's (any geometry, ``ceil_mode`` too), and where
    every window's largest element is sure the pull is the gradient of max pooling."""
    assume(2 * padding <= kernel)  # (torch refuses more)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64)
    params = PoolParams((kernel,) * 2, (stride,) * 2, (padding,) * 2, (dilation,) * 2, ceil)
    try:
        pooled = F.max_pool2d(x, kernel, stride, padding, dilation, ceil)
    except RuntimeError:
        assume(False)  # an output size torch refuses
    windows = _PoolWindows(params, x.shape)
    assert windows.pool(x).reshape(pooled.shape).equal(pooled)
    cotangent = torch.randn(pooled.shape, generator=torch.Generator().manual_seed(seed + 1),
                            dtype=torch.float64)
    step = IntervalStep(lambda pick, constants=True: None,
                        [Interval(x, x.clone(), torch.zeros_like(x))], [0], params,
                        lambda position, keyword: None)
    pulled = MAXIMUM.pull(step, Interval(pooled, pooled), Coefficient(
        cotangent, torch.zeros_like(cotangent)))[0]
    leaf = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(F.max_pool2d(leaf, kernel, stride, padding, dilation,
                                                   ceil), leaf, cotangent)
    torch.testing.assert_close(pulled.center, gradient, rtol=1e-12, atol=1e-12)
    assert (pulled.radius <= 1e-12 * (1 + gradient.abs())).all()


@pytest.mark.parametrize("activation", SINGLE, ids=[type(a).__name__ for a in SINGLE])
def test_an_activations_slopes_hold_every_chord(activation):
    """Between any two points of ``[l - e, u + e]`` the chord slope of ``f`` lies in the
    rule's slopes (exact 0 where ``f`` is flat, the piece's slope on one piece)."""
    model = nn.Sequential(nn.Conv2d(3, 2, 1), activation, nn.Flatten(), nn.Linear(8, 2))
    rules = IntervalScreen(model.eval()).rules.values()
    rule = next(r for r in rules if isinstance(r, Activation))
    generator = torch.Generator().manual_seed(0)
    lower = torch.randn(400, generator=generator, dtype=torch.float64) * 3
    upper = lower + torch.rand(400, generator=generator, dtype=torch.float64) ** 3 * 2
    error = torch.rand(400, generator=generator, dtype=torch.float64) * 1e-3
    least, most = rule.slopes(Interval(lower, upper, error))
    a = lower - error + (upper - lower + 2 * error) * torch.rand(400, generator=generator,
                                                                 dtype=torch.float64)
    b = lower - error + (upper - lower + 2 * error) * torch.rand(400, generator=generator,
                                                                 dtype=torch.float64)
    keep = (a - b).abs() > 1e-6
    chord = (activation(a) - activation(b)) / (a - b)
    slack = 1e-9 * (1 + chord.abs())
    assert ((chord >= least - slack) | ~keep).all()
    assert ((chord <= most + slack) | ~keep).all()


def test_a_rule_without_a_backward_form_is_named():
    """An operation whose interval rule has no pull: the backward bound refuses the
    model by name."""
    from pixelprior.scoring.cone import intervals
    from pixelprior.search.verify import Verifier

    model = randomised(Plain(), 1)
    screen = IntervalScreen(model)
    node = next(n for n, rule in screen.rules.items() if isinstance(rule, Activation))
    screen.rules[node] = intervals.IntervalRule()
    with pytest.raises(BackwardUnsupportedError, match="no rule for"):
        BackwardErrorBound(screen)
    assert Verifier(model, budget=None).signed is not None


def test_the_verifier_keeps_the_interval_proof_without_a_backward_bound(monkeypatch):
    from pixelprior.search import verify

    def refused(screen):
        raise BackwardUnsupportedError("no rule for x")

    monkeypatch.setattr(verify, "BackwardErrorBound", refused)
    model = randomised(Plain(), 2)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        label = int(model(image).argmax())
    verifier = verify.Verifier(model, budget=None, max_boxes=200)
    assert verifier.signed is None and verifier.screen is not None
    result = verifier.verify(image, torch.tensor([label]))[0]
    assert result.float32_proved > 0


class Headless(nn.Module):
    """Scores without a last linear layer: a 1×1 conv's channels averaged over the map."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.scores = nn.Conv2d(6, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(torch.relu(self.conv(x))).mean((2, 3))


class RankOneGate(nn.Module):
    """A gate through a value of the batch axis alone (``[B]``: the mean of the
    excitation), laid out by indexing: the backward pass flattened it as a map (a
    review: ``IndexError``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.excite = nn.Linear(4, 4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        g = torch.sigmoid(self.excite(h.mean((2, 3)))).mean(1)[:, None, None, None]
        return self.fc((h * g).mean((2, 3)))


def test_a_gate_of_the_batch_axis_alone_is_bounded():
    missed, seen, signed, forward = excess(RankOneGate(), 8, 4)
    assert missed <= 0 and seen > 0 and torch.isfinite(signed).all()


def test_scores_without_a_linear_head_are_bounded():
    missed, seen, signed, forward = excess(Headless(), 8, 4)
    assert missed <= 0 and seen > 0 and torch.isfinite(signed).all()
    assert (signed[1] <= forward[1] * (1 + 1e-9)).all()


class ComputedWeight(nn.Module):
    """A functional conv of a weight the model standardises in forward: float32 computes
    that weight its own way."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3, 3, 3))
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight / self.weight.abs().amax()
        return self.fc(torch.relu(F.conv2d(x, weight)).flatten(1))


def test_a_weight_computed_in_the_model_proves_no_float32_error():
    """Both bounds are unbounded there: the rule's weights are the float64 copy's."""
    model = ComputedWeight().eval()
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    screen = IntervalScreen(model, cone=False)
    cube = torch.zeros(1, 3, dtype=torch.float64)
    forward = screen.bounds(image, torch.tensor([9]), cube, cube + 1, 0, FLOAT32)
    signed = BackwardErrorBound(screen).errors(image, torch.tensor([9]), cube, cube + 1, 0,
                                               FLOAT32)
    assert torch.isinf(forward.error[0, 1:]).all() and torch.isinf(signed[0, 1:]).all()
    assert torch.isfinite(forward.lower[0, 1:]).all()  # the real network is bounded still


class Broadcast(nn.Module):
    """A varying factor broadcast against a constant of more channels: the backward rule
    of a product refuses it when it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.scale = nn.Parameter(torch.rand(1, 4, 1, 1) + 0.5)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.relu(self.conv(x)).mean(1, keepdim=True)
        return self.fc((mean * self.scale).flatten(1))


def test_the_verifier_falls_back_to_the_intervals_when_a_pull_is_refused():
    """A refusal at run time: the verifier says so once, keeps the intervals' bound for
    the box, and stops asking the backward bound."""
    import numpy as np
    from test_float32_error import box_tolerances

    from pixelprior.search.verify import Verifier

    model = randomised(Broadcast(), 6)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        label = int(model(image).argmax())
    verifier = Verifier(model, budget=None)
    assert verifier.signed is not None  # made: the refusal comes with the shapes
    position, lo = np.array([9]), np.full((1, 3), 0.5)
    interval = verifier.screen.bounds(image, torch.as_tensor(position), torch.as_tensor(lo),
                                      torch.as_tensor(lo + 0.01), label,
                                      FLOAT32).error.max()
    estimate = float(interval) / 4
    worst = np.array([estimate * 1.0001])
    with pytest.warns(UserWarning, match="backward float32 error bound is off"):
        needed = box_tolerances(verifier, image, label, estimate, FLOAT32,
                                np.full(64, 10 * float(interval)), np.ones(64, dtype=bool),
                                lo, lo + 0.01, position, worst)
    assert needed[0] == float(interval)
    assert verifier.signed is None and "broadcast" in verifier.signed_skipped
