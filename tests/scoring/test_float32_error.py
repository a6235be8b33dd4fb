"""The screen's proved bound of the model's float32 evaluation error: the float32 model's
margins at sampled colors of a box (and its corners) never differ from the exact ones (a
float64 evaluation) by more than the bound; with a unit of 0 the same checks fail (the
bound is what makes them pass); the cone and whole images agree; the verifier takes it
as its tolerance where it is usable, and a box's own where that proves it."""

from __future__ import annotations

import copy
import dataclasses

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
    randomised,
)
from test_intervals import Strides, boxes_everywhere
from torch import nn

from pixelprior.scoring import perturb_rows
from pixelprior.scoring.cone.rounding import rounding_error
from pixelprior.scoring.cone.screen import IntervalScreen
from pixelprior.search import verify
from pixelprior.search.verify import PROVED_LIMIT, Verifier, _ImageRun

FLOAT32 = 2.0**-24
NETS = [Residual, Plain, Scaled, Strides, Gated, Indexed, Normalised, Exponentials] + [
    lambda a=a: Smooth(a) for a in ACTIVATIONS]
NAMES = ["residual", "plain", "scaled", "strides", "gated", "indexed", "normalised",
         "exponentials"] + [
    type(a).__name__ for a in ACTIVATIONS]


def margins_both_ways(model: nn.Module, image: torch.Tensor, position: int,
                      colors: torch.Tensor, label: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The margins ``z_label - z_j`` at each color of pixel ``position``: the float32
    model's, and the exact ones (float64, ~10^-16 of the values off)."""
    width = image.shape[-1]
    genes = torch.cat([torch.tensor([[float(position % width), float(position // width)]])
                       .expand(len(colors), 2), colors], 1)[:, None].double()
    owner = torch.zeros(len(colors), dtype=torch.long)
    rows = perturb_rows(image.double(), owner, genes)
    with torch.no_grad():
        single = model.float()(rows.float()).double()
        exact = copy.deepcopy(model).double()(rows)
    return single[:, label:label + 1] - single, exact[:, label:label + 1] - exact


def sample_box(lo: torch.Tensor, hi: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """``count`` float32 colors of the box ``[lo, hi]`` and its 8 corners (float64)."""
    generator = torch.Generator().manual_seed(seed)
    inside = lo + (hi - lo) * torch.rand(count, 3, generator=generator, dtype=torch.float64)
    corners = torch.cartesian_prod(*[torch.stack([lo[c], hi[c]]) for c in range(3)])
    return torch.cat([inside, corners]).float().double()  # colors the model can be given


def worst_excess(model: nn.Module, size: int, seed: int, unit: float, cone: bool | None,
                 boxes: int = 6) -> tuple[float, float, float]:
    """Over ``boxes`` random boxes: the largest ``|m32 - m64| - (bound + slack)`` (> 0: the
    bound missed), the largest difference seen, and the largest bound relative to
    ``1 + |m|`` (the largest exact margin met)."""
    model = randomised(model, seed)
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    generator = torch.Generator().manual_seed(seed + 1)
    positions = torch.randint(0, size * size, (boxes,), generator=generator)
    lo = torch.rand(boxes, 3, generator=generator, dtype=torch.float64) * 0.7
    hi = (lo + torch.rand(boxes, 3, generator=generator, dtype=torch.float64) * 0.6).clamp(
        max=1.0)
    hi[0], lo[0] = 1.0, 0.0  # one whole color cube
    with torch.no_grad():
        label = int(model.float()(image).argmax())
    screen = IntervalScreen(model, cone=cone)
    bounds = screen.bounds(image, positions, lo, hi, label, unit)
    excess = seen = largest = scale = 0.0
    for b in range(boxes):
        single, exact = margins_both_ways(model, image, int(positions[b]),
                                          sample_box(lo[b], hi[b], 256, seed + b), label)
        difference = (single - exact).abs()
        slack = 1e-12 * (1 + exact.abs())  # float64's own error, generously
        excess = max(excess, float((difference - bounds.error[b] - slack).max()))
        seen = max(seen, float(difference.max()))
        largest = max(largest, float(bounds.error[b].max()))
        scale = max(scale, float(exact.abs().max()))
    return excess, seen, largest / (1 + scale)


@pytest.mark.parametrize("net", NETS, ids=NAMES)
def test_the_float32_model_stays_within_the_proved_error(net):
    """Every network the rules know (conv, BatchNorm, pooling, residual additions,
    concatenations, normalisations, products, quotients, every activation): the float32
    model's margins are within the bound at every sampled color; the float32 model does
    differ from the exact margins; and the bound is not vacuous."""
    size = 32 if net is Strides else 8
    excess, seen, largest = worst_excess(net(), size, 3, FLOAT32, None)
    assert excess <= 0
    assert seen > 0  # float32 rounds here: the check can fail
    # not vacuous: float32's differences are ~1e-7 of the margins; the bound ~1e-4 (the
    # Strides net's, six random layers of intervals over a whole color cube, ~3e-2; a
    # softplus switching to x at a low threshold: its jump, 0.009, where a range holds it;
    # the gated nets' products of two whole-cube intervals, 1e-3 to 2e-2; two
    # normalisations, each a division by a whole-cube interval's root, 0.11; exponentials
    # and a product of matrices of whole-cube intervals, 3e-3)
    jumps = any(isinstance(m, nn.Softplus) and m.threshold < 20 for m in net().modules())
    assert largest < (0.2 if net is Normalised else 0.1 if net in (Strides, Gated, Indexed,
                                                                  Exponentials)
                      else 1e-2 if jumps else 1e-3)


@pytest.mark.parametrize("net", [Residual, Plain, Strides], ids=["residual", "plain",
                                                                 "strides"])
def test_without_the_rounding_terms_the_check_fails(net):
    """A unit of 0 leaves only the errors already in the inputs (none): the bound is 0,
    and the float32 model's differences exceed it. The proved bound is what passes."""
    size = 32 if net is Strides else 8
    excess, seen, largest = worst_excess(net(), size, 3, 0.0, None)
    assert largest == 0.0 and seen > 0 and excess > 0


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), net=st.sampled_from([Residual, Plain, Scaled]))
def test_the_proved_error_holds_on_random_networks(seed, net):
    excess, _, _ = worst_excess(net(), 8, seed, FLOAT32, None, boxes=4)
    assert excess <= 0


@pytest.mark.parametrize("net, size", [(Residual, 8), (Scaled, 8), (Strides, 32)],
                         ids=["residual", "scaled", "strides"])
def test_the_cone_and_whole_images_prove_the_same_error(net, size):
    model, image, positions, lo, hi = boxes_everywhere(net, size)
    cone, whole = IntervalScreen(model, cone=True), IntervalScreen(model, cone=False)
    inside = cone.bounds(image, positions, lo, hi, 1, FLOAT32)
    outside = whole.bounds(image, positions, lo, hi, 1, FLOAT32)
    torch.testing.assert_close(inside.error, outside.error, rtol=1e-9, atol=1e-15)
    assert torch.equal(inside.lower, cone.margins(image, positions, lo, hi, 1))  # the same
    assert (inside.error[:, 1] == 0).all() and (inside.error >= 0).all()  # bounds as before


def test_a_relu_that_is_off_passes_no_error():
    """A ReLU off over the whole box (and its error) stops the error: the layers after it
    add only their own rounding."""
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4, 2))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.fill_(-10.0)  # at most 3 - 10 < 0: always off
    model.eval()
    image = torch.rand(1, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    screen = IntervalScreen(model, cone=False)
    cube = torch.zeros(1, 3, dtype=torch.float64)
    error = screen.bounds(image, torch.tensor([0]), cube, cube + 1, 0, FLOAT32).error
    bias = model[3].bias.detach().double().abs()
    # the linear layer's own rounding of its bias alone: γ_9 (|b_0| + |b_1|) and a bit
    assert error[0, 1] <= 2 * 9 * FLOAT32 * float(bias.sum())


def test_a_unit_that_is_not_a_unit_roundoff_is_refused():
    screen = IntervalScreen(randomised(Plain(), 0))
    image = torch.rand(1, 3, 8, 8)
    cube = torch.zeros(1, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="unit roundoff"):
        screen.bounds(image, torch.tensor([0]), cube, cube + 1, 0, 0.5)


def test_the_verifier_takes_the_proved_error_as_its_tolerance():
    """Where the proved bound is usable it is the position's tolerance (float32 proved),
    below the first-order estimate too (the proof covers the float32 model by itself),
    never below a set tolerance; elsewhere the estimate; without the screen none is."""
    model = randomised(Plain(), 7)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(8))
    label = torch.tensor([int(model(image).argmax(1))])
    verifier = Verifier(model, budget=None, deterministic=True)
    estimate = verifier.tolerance_of(image, int(label))
    (result,) = verifier.verify(image, label, stop_at_first=False)
    cube = torch.zeros(64, 3, dtype=torch.float64)
    proved = verifier.screen.bounds(image, torch.arange(64), cube, cube + 1, int(label),
                                    FLOAT32).error.max(1).values
    usable = proved <= PROVED_LIMIT * estimate
    # a position a corner color fools is decided before the screen (it proves nothing there)
    screened = torch.tensor([s != "vulnerable" or b > 0 for s, b in zip(
        result.positions.status, result.positions.boxes.tolist(), strict=True)])
    assert result.float32_proved == int((usable & screened).sum()) > 0
    assert result.tolerance == estimate
    kept = usable & screened
    largest = float(proved[kept].max()) if kept.all() else max(
        estimate, float(proved[kept].max()))
    assert result.tolerance_max == pytest.approx(largest)
    set_to = 2 * float(proved.max())  # above every proved bound: it is every tolerance
    (fixed,) = Verifier(model, budget=None, deterministic=True, tolerance=set_to).verify(
        image, label, stop_at_first=False)
    assert fixed.tolerance == fixed.tolerance_max == set_to
    for off_setting in ({"screen": False}, {"prove_float32": False}):
        (off,) = Verifier(model, budget=None, deterministic=True, **off_setting).verify(
            image, label, stop_at_first=False)
        assert off.float32_proved == 0 and off.tolerance_max == estimate


def box_tolerances(verifier: Verifier, image: torch.Tensor, label: int, estimate: float,
                   unit: float | None, tolerances: np.ndarray, proved: np.ndarray,
                   lo: np.ndarray, hi: np.ndarray, position: np.ndarray,
                   worst: np.ndarray, lower: np.ndarray | None = None,
                   floor: float = 0.0) -> np.ndarray:
    """``Verifier._box_tolerances`` of boxes in a run with these tolerances, proofs, unit
    and floor (0: the derived tolerance; the run's caches are not used by it)."""
    run = _ImageRun(image=image, label=label, width=image.shape[-1], tolerance=estimate,
                    tolerances=tolerances, cache=None, scorer=None, state=None, began=0.0,
                    unit=unit, floor=floor)
    run.float32_proved = proved
    return verifier._box_tolerances(run, lo, hi, position, worst, lower)


def convsmall_case() -> tuple[nn.Module, torch.Tensor, int, Verifier, float]:
    """ConvSmall on a random image: the model, the image, its label, a verifier and the
    image's estimated tolerance."""
    from pixelprior.models import load_model

    model = load_model("convsmall-cifar10").eval()
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        label = int(model(image).argmax())
    verifier = Verifier(model, budget=None)
    return model, image, label, verifier, verifier.tolerance_of(image, label)


def test_only_the_margins_near_the_boundary_count_and_large_boxes_are_split():
    """With each margin's bound, a box's tolerance takes the float32 error of the margins
    bounded at or below its position's tolerance only (the others exceed the error over
    the whole cube already), and only theirs are bounded backwards; a box larger than
    ``SIGNED_SIDE`` takes the intervals' bound alone (it is split instead)."""
    model, image, label, verifier, estimate = convsmall_case()
    position = np.array([8 * 32 + 20, 16 * 32 + 16])
    lo = np.full((2, 3), 0.4)
    hi = lo + np.array([[0.05], [0.2]])  # the second box is larger than SIGNED_SIDE
    boxes = (image, torch.as_tensor(position), torch.as_tensor(lo), torch.as_tensor(hi),
             label, FLOAT32)
    interval = verifier.screen.bounds(*boxes).error.numpy()
    signed = verifier.signed.errors(*boxes).numpy()
    near = (label + 1) % 10  # the one margin near the boundary
    tolerances = np.full(1024, 10 * estimate)
    worst = np.full(2, 1.0001 * estimate)  # in the band, below every error bound
    lower = np.full((2, 10), 20 * estimate)
    lower[:, near], lower[:, label] = worst, np.inf
    calls = []
    errors = verifier.signed.errors
    verifier.signed.errors = lambda *a: calls.append(a[-1]) or errors(*a)
    needed = box_tolerances(verifier, image, label, estimate, FLOAT32, tolerances,
                            np.ones(1024, dtype=bool), lo, hi, position, worst, lower)
    # (the same bound, of one margin here and of all of them there: the float64 sums
    # may take another kernel's order, ~1 ulp apart on AVX-512)
    assert needed[0] == pytest.approx(signed[0, near], rel=1e-12)
    assert needed[0] < interval[0].max()
    assert needed[1] == interval[1, near]  # the intervals' alone
    assert len(calls) == 1 and calls[0].sum() == 1 and calls[0][0, near]  # one margin
    everything = box_tolerances(verifier, image, label, estimate, FLOAT32, tolerances,
                                np.ones(1024, dtype=bool), lo, hi, position, worst)
    assert everything[0] == pytest.approx(signed[0].max(), rel=1e-12)
    assert everything[0] >= needed[0] * (1 - 1e-12)


@pytest.mark.parametrize("set_tolerance", [False, True])
def test_a_box_near_the_boundary_takes_the_float32_bound_of_its_own_colors(
        monkeypatch, set_tolerance):
    """A box of a float32-proved position whose bound lies between the floor (0 with the
    derived tolerance, else the set one) and the position's tolerance (the whole cube's
    proved error) is judged against the error proved over its own colors: at least the
    floor, below the cube's, and above the float32 model's error at every sampled color of
    the box. Boxes outside that band, and positions not float32 proved, keep the
    position's tolerance."""
    model, image, label, verifier, estimate = convsmall_case()
    floor = estimate if set_tolerance else 0.0
    position = np.array([0, 8 * 32 + 20, 16 * 32 + 16, 31 * 32 + 5, 5 * 32 + 7,
                         20 * 32 + 9])
    cube = torch.zeros(len(position), 3, dtype=torch.float64)
    whole = verifier.screen.bounds(image, torch.as_tensor(position), cube, cube + 1, label,
                                   FLOAT32).error.max(1).values.numpy()
    assert (whole > estimate).all()  # the band exists (the check can fail)
    tolerances = np.zeros(1024)
    tolerances[position] = whole
    proved = np.zeros(1024, dtype=bool)
    proved[position] = True
    proved[position[4]] = False  # that box's position is not float32 proved
    lo = np.random.default_rng(0).uniform(0, 0.95, (len(position), 3))
    hi = lo + 0.05
    boxes = (image, torch.as_tensor(position), torch.as_tensor(lo), torch.as_tensor(hi),
             label, FLOAT32)
    own = verifier.screen.bounds(*boxes).error.max(1).values
    signed = verifier.signed.errors(*boxes).max(1).values
    worst = np.array([(estimate + t) / 2 for t in whole])
    worst[1] = floor  # not above the floor: no recheck
    worst[3] = whole[3] * 1.01  # above the position's tolerance: proved as it is
    assert signed[5] < estimate  # below the estimate, above the box's proved error:
    worst[5] = (float(signed[5]) + estimate) / 2  # proved only without a set tolerance
    before = tolerances.copy()
    needed = box_tolerances(verifier, image, label, estimate, FLOAT32, tolerances, proved,
                            lo, hi, position, worst, floor=floor)
    assert np.array_equal(tolerances, before)  # the positions' tolerances stay
    kept = [1, 3, 4, 5] if set_tolerance else [1, 3, 4]
    assert (needed[kept] == whole[kept]).all()
    if not set_tolerance:
        assert needed[5] == signed[5] < worst[5] < estimate
    for b in (0, 2):
        assert floor <= needed[b] < whole[b] and needed[b] > 0
        # the intervals' error first; where the bound is still below it, the signed one
        first = max(floor, float(own[b]))
        expected = first if worst[b] > first else min(first, max(floor, float(signed[b])))
        assert needed[b] == pytest.approx(expected, rel=1e-12)
        single, exact = margins_both_ways(copy.deepcopy(model), image, int(position[b]),
                                          sample_box(torch.as_tensor(lo[b]),
                                                     torch.as_tensor(hi[b]), 128, b), label)
        assert ((single - exact).abs() <= needed[b]).all()
    # in chunks of one box the same; without a unit no recheck
    monkeypatch.setitem(verify.SCREEN_CHUNK, "cpu", 1)
    assert np.array_equal(box_tolerances(verifier, image, label, estimate, FLOAT32,
                                         tolerances, proved, lo, hi, position, worst,
                                         floor=floor),
                          needed)
    assert np.array_equal(box_tolerances(verifier, image, label, estimate, None, tolerances,
                                         proved, lo, hi, position, worst, floor=floor),
                          tolerances[position])


def skip_case() -> tuple:
    """ConvSmall's case with three boxes of side 0.05 near the boundary, call recorders
    on both error bounds, and a run whose positions are all float32 proved."""
    model, image, label, verifier, estimate = convsmall_case()
    position = np.array([8 * 32 + 20, 16 * 32 + 16, 5 * 32 + 7])
    lo = np.full((3, 3), 0.3)
    hi = lo + 0.05
    seen: dict[str, list] = {"intervals": [], "signed": []}
    bounds, errors = verifier.screen.bounds, verifier.signed.errors
    verifier.screen.bounds = lambda *a: seen["intervals"].append(a[1].tolist()) or bounds(*a)
    verifier.signed.errors = lambda *a: seen["signed"].append(a[1].tolist()) or errors(*a)
    run = _ImageRun(image=image, label=label, width=32, tolerance=estimate,
                    tolerances=np.full(1024, 10 * estimate), cache=None, scorer=None,
                    state=None, began=0.0, unit=FLOAT32, floor=0.0)
    run.float32_proved = np.ones(1024, dtype=bool)
    return verifier, run, position, lo, hi, seen, (bounds, errors), estimate


def test_a_box_far_below_every_error_proved_is_not_bounded_again():
    """Once a bound has proved the float32 error over a box of the image, a box as small
    or larger whose margin bound is below ``ERROR_SKIP`` of the least such error is not
    bounded by it (unlikely to prove), keeps its position's tolerance and is split; the
    others are, and the least errors follow what they prove."""
    verifier, run, position, lo, hi, seen, (bounds, errors), estimate = skip_case()
    level = int(verify._Levels.of(lo[:1], hi[:1])[0])
    least = 0.5 * estimate
    run.least_error["intervals"][level] = 4 * least
    run.least_error["signed"][level] = least
    # skipped by both / by the intervals only (the signed bound's) / by neither (the
    # intervals' proves it: the signed bound is not asked)
    worst = np.array([0.5 * least, 2 * least, 5 * least])
    needed = verifier._box_tolerances(run, lo, hi, position, worst)
    assert seen["intervals"] == [[int(position[2])]]
    assert seen["signed"] == [[int(position[1])]]
    assert needed[0] == 10 * estimate and (needed[1:] < worst[1:]).all()
    boxes = (run.image, torch.as_tensor(position), torch.as_tensor(lo), torch.as_tensor(hi),
             run.label, FLOAT32)
    # (bounded here in one batch of all three: equal up to the batch's float bits)
    assert run.least_error["intervals"][level] == pytest.approx(
        float(bounds(*boxes).error[2].max()), rel=1e-12)
    assert run.least_error["signed"][level] == pytest.approx(
        min(least, float(errors(*boxes)[1].max())), rel=1e-12)
    others = np.delete(np.arange(verify.LEVELS), level)
    assert np.isinf(run.least_error["intervals"][others]).all()


@pytest.mark.parametrize(("offset", "skipped"), [(1, True), (-1, False)])
def test_only_errors_proved_over_boxes_as_small_or_smaller_skip(offset, skipped):
    """A least error known only at a deeper level (smaller boxes) skips a box; one known
    only at a shallower level (larger boxes, whose errors are larger) does not."""
    verifier, run, position, lo, hi, seen, _, estimate = skip_case()
    level = int(verify._Levels.of(lo[:1], hi[:1])[0])
    run.least_error["intervals"][level + offset] = 100 * estimate
    run.least_error["signed"][level + offset] = 100 * estimate
    verifier._box_tolerances(run, lo[:1], hi[:1], position[:1], np.array([estimate]))
    assert (seen["intervals"] == []) == skipped and (seen["signed"] == []) == skipped


def test_the_screen_makes_the_proved_cube_error_the_positions_tolerance():
    """With the derived tolerance a float32-proved position's tolerance is the error
    proved over its cube, below the image's tolerance too; with a set tolerance never
    below it; a position whose error exceeds PROVED_LIMIT times it keeps it."""
    model, image, label, verifier, estimate = convsmall_case()
    positions = np.array([0, 8 * 32 + 20, 16 * 32 + 16])
    cube = torch.zeros(3, 3, dtype=torch.float64)
    error = verifier.screen.bounds(image, torch.as_tensor(positions), cube, cube + 1,
                                   label, FLOAT32).error.max(1).values.numpy()
    high = 1e3 * float(error.max())  # an image tolerance above every proved error
    for floor, expected in ((0.0, error), (error[1], np.maximum(error[1], error))):
        run = _ImageRun(image=image, label=label, width=32, tolerance=high,
                        tolerances=np.full(1024, high), cache=None, scorer=None,
                        state=None, began=0.0, floor=floor)
        verifier._screening(run)(positions)
        assert np.array_equal(run.tolerances[positions], expected)
        assert run.float32_proved[positions].all() and run.unit == FLOAT32
    low = float(error.min()) / (2 * PROVED_LIMIT)  # every proved error past the limit
    run = _ImageRun(image=image, label=label, width=32, tolerance=low,
                    tolerances=np.full(1024, low), cache=None, scorer=None, state=None,
                    began=0.0)
    verifier._screening(run)(positions)
    assert (run.tolerances[positions] == low).all() and not run.float32_proved.any()
    assert run.floor == low  # a run's floor defaults to its tolerance


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_box_whose_own_float32_error_is_unknown_keeps_its_positions_tolerance(
        monkeypatch, value):
    model = randomised(Plain(), 7)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(8))
    label = int(model(image).argmax(1))
    verifier = Verifier(model, budget=None)
    real = verifier.screen.bounds

    def broken(*args, **kwargs):
        bounds = real(*args, **kwargs)
        return dataclasses.replace(bounds, error=torch.full_like(bounds.error, value))

    monkeypatch.setattr(verifier.screen, "bounds", broken)
    signed = verifier.signed.errors
    monkeypatch.setattr(verifier.signed, "errors",
                        lambda *a, **k: torch.full_like(signed(*a, **k), value))
    tolerances = np.full(64, 0.5)
    position = np.array([3, 9])
    lo = np.zeros((2, 3))
    needed = box_tolerances(verifier, image, label, 0.1, FLOAT32, tolerances,
                            np.ones(64, dtype=bool), lo, lo + 0.01, position,
                            np.array([0.3, 0.4]))
    assert (needed == 0.5).all()


def test_positions_near_the_boundary_are_proved_instead_of_split_to_the_end(monkeypatch):
    """ConvSmall's bundled image 0: three positions whose lowest bounds stay between the
    estimate and the whole cube's float32 bound. With each box's own float32 bound they
    are proved robust in a few hundred boxes; with the cube's they are still unknown after
    a thousand (and after 27,000-48,000: split toward the smallest side, never proved)."""
    from pixelprior.data import load_cifar10_sample, to_float
    from pixelprior.models import load_model

    model = load_model("convsmall-cifar10").eval()
    sample = load_cifar10_sample()
    image, label = to_float(sample.images[:1]), sample.labels[:1]
    order = torch.tensor([[43, 131, 157]])

    def decide() -> list[str]:
        verifier = Verifier(model, budget=None, max_boxes=1000, deterministic=True)
        (result,) = verifier.verify(image, label, orders=order, stop_at_first=False)
        assert result.float32_proved == 3
        return [result.positions.status[p] for p in order[0].tolist()]

    assert decide() == ["robust"] * 3
    monkeypatch.setattr(Verifier, "_box_tolerances",
                        lambda self, run, lo, hi, position, worst, lower=None:
                        run.tolerances[position])
    assert decide() == ["unknown"] * 3


@pytest.mark.parametrize("name", ["convsmall-cifar10", "resnet8-ibp-cifar10"])
def test_the_bundled_networks_stay_within_the_proved_error(name):
    """The two networks the verifier decides completely: their float32 margins over whole
    color cubes stay within the bound, which is a few thousandths of a logit to a few
    hundredths (the same order as the first-order estimate)."""
    from pixelprior.models import load_model

    model = load_model(name).eval()
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        label = int(model(image).argmax())
    positions = torch.tensor([0, 8 * 32 + 20, 16 * 32 + 16, 31 * 32 + 5])
    cube = torch.zeros(4, 3, dtype=torch.float64)
    error = IntervalScreen(model).bounds(image, positions, cube, cube + 1, label,
                                         FLOAT32).error
    assert error.max() < 0.1
    for b in range(4):
        single, exact = margins_both_ways(copy.deepcopy(model), image, int(positions[b]),
                                          sample_box(cube[b], cube[b] + 1, 128, b), label)
        assert ((single - exact).abs() <= error[b] + 1e-12 * (1 + exact.abs())).all()


class Cancels(nn.Module):
    """A constant float32 cannot hold, cancelled against the image and magnified: the
    float32 model's margin is off by ~1e-5 where every operation rounds almost nothing."""

    def __init__(self, form: str) -> None:
        super().__init__()
        self.form = form
        self.act = nn.Hardtanh(-0.5, 0.7)
        self.fc = nn.Linear(12, 2)
        self.register_buffer("level", torch.tensor(0.7))  # float32's 0.7, in both models
        self.register_buffer("scale", torch.tensor(0.5))
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.weight[1] = 1.0
            self.fc.bias.copy_(torch.tensor([1e-6, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.form == "number":  # x - 0.1: float32 subtracts fl32(0.1)
            y = (x - 0.1) * 1000.0
        elif self.form == "quotient":  # x / 0.3 - x / fl32(0.3)... as written in code
            y = (x / 0.3 - x * 3.3333333) * 1000.0
        elif self.form == "clamp":  # clamped at 0.7 over the box: float32's level is not
            y = (self.act(x + 5.0) - self.level) * 1000.0
        else:  # a constant computed inside the model: float32 rounds it its own way
            y = x * self.scale.exp()
        return self.fc(y.flatten(1))


@pytest.mark.parametrize("form", ["number", "quotient", "clamp"])
def test_constants_float32_holds_otherwise_count(form):
    """Numbers in the model's code (a difference, a quotient, a clamp's limit) are not
    what float32 holds: the bound counts the gap, and covers the float32 model where the
    gap is all the error there is (at the constant's float32 value, and over a cube)."""
    model = Cancels(form).eval()
    value = float(torch.tensor(0.1))  # the image at fl32(0.1): x - 0.1 is float32's 0
    image = torch.full((1, 3, 2, 2), value)
    screen = IntervalScreen(model, cone=False)
    for lo, hi in ((torch.full((1, 3), value, dtype=torch.float64),) * 2,
                   (torch.zeros(1, 3, dtype=torch.float64), torch.ones(1, 3,
                                                                  dtype=torch.float64))):
        error = screen.bounds(image, torch.tensor([0]), lo, hi, 0, FLOAT32).error[0, 1]
        colors = sample_box(lo[0], hi[0], 64, 0)
        single, exact = margins_both_ways(copy.deepcopy(model), image, 0, colors, 0)
        difference = (single - exact)[:, 1].abs()
        assert difference.max() > 1e-7  # the gap shows (the check can fail)
        assert (difference <= error).all()


class Shrunk(nn.Module):
    """Softshrink at 0.3 (float32's threshold is fl32(0.3)) of values just past it,
    magnified."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 2)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.weight[1] = 1000.0
            self.fc.bias.copy_(torch.tensor([1e-6, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.softshrink(x, 0.3).flatten(1))


class Subtracted(Shrunk):
    """``torch.sub(x, other=0.1)`` or ``torch.sub(x, 0.1, alpha=3)``, magnified (a
    review: a number by keyword and a factor ``alpha`` were not counted)."""

    def __init__(self, alpha: float | None) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = (torch.sub(x, other=0.1) if self.alpha is None
                   else torch.sub(x, 0.1, alpha=self.alpha))
        return self.fc(shifted.flatten(1))


@pytest.mark.parametrize("model", [Cancels("number"), Cancels("clamp"), Shrunk(),
                                   Subtracted(None), Subtracted(3.0)],
                         ids=["number", "clamp", "softshrink", "keyword", "alpha"])
def test_the_estimate_counts_numbers_float32_cannot_hold(model):
    """Where no float32 error is proved the first-order estimate is the tolerance: it
    counts what a number written in the model's code moves the result by (``x - 0.1``, a
    clamp's limit, softshrink's threshold), which is all the error there is here (a
    review: 8e-13 estimated against 1.4e-4)."""
    model = model.eval()
    if isinstance(model, Subtracted):  # where x - α·0.1 is float32's 0
        value = float(torch.tensor(0.1 * (model.alpha or 1)))
    elif isinstance(model, Shrunk):  # just past softshrink's threshold
        value = 0.3000001
    else:
        value = float(torch.tensor(0.1))
    image = torch.full((1, 3, 2, 2), value)
    single, exact = margins_both_ways(copy.deepcopy(model), image, 0,
                                      image[0, :, 0, 0][None].double(), 0)
    estimate = rounding_error(model, image, torch.tensor([0]))[0]
    difference = (single - exact)[0, 1].abs()
    assert difference > 1e-6  # the gap shows (the check can fail)
    assert difference <= estimate


def test_a_constant_computed_inside_the_model_proves_no_float32_bound():
    model = Cancels("computed").eval()
    image = torch.rand(1, 3, 2, 2)
    cube = torch.zeros(1, 3, dtype=torch.float64)
    bounds = IntervalScreen(model, cone=False).bounds(image, torch.tensor([0]), cube,
                                                      cube + 1, 0, FLOAT32)
    assert torch.isinf(bounds.error[0, 1]) and torch.isfinite(bounds.lower[0, 1])


def test_an_uneven_adaptive_pool_counts_its_largest_window():
    """AdaptiveAvgPool2d(3) on a 5×5 map averages up to 3×3 values (windows of
    ceil(5/3) + 1): 9 sums and the division, not 25 // 9 + 1 = 3."""
    from pixelprior.scoring.cone.intervals import _window_terms

    assert _window_terms(torch.Size([1, 4, 5, 5]), torch.Size([1, 4, 3, 3])) == 10
    assert _window_terms(torch.Size([1, 4, 6, 6]), torch.Size([1, 4, 3, 3])) == 5
    assert _window_terms(torch.Size([1, 4, 6, 6]), torch.Size([1, 4])) == 37  # a mean
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.AdaptiveAvgPool2d(3), nn.Flatten(),
                          nn.Linear(18, 2)).eval()
    excess, _, _ = worst_excess(model, 5, 0, FLOAT32, False)
    assert excess <= 0
