"""The interval screen is sound: its lower bound of every margin over a pixel's color box
never exceeds the exact minimum (a MILP solved by HiGHS) nor any sampled value, on every
network the zonotope tests use; a box of width 0 gives the exact margins; bounds only
tighten on sub-boxes; operations without an interval rule are named; the verifier with
the screen decides as without it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from milp import exact_margins
from test_bounds import (
    ACTIVATIONS,
    Attention,
    Bilinear,
    ConvNeXtBlock,
    Einsums,
    Encoder,
    Exponentials,
    Gated,
    Indexed,
    Maxima,
    Normalised,
    Normed,
    Norms,
    Padded,
    Pieces,
    Plain,
    Pooled,
    Powered,
    Resampled,
    Residual,
    Scaled,
    SequenceFirst,
    Smooth,
    TimmAttention,
    TimmFused,
    Transformer,
    Unfolded,
    randomised,
    scores,
)
from torch import nn

from pixelprior.scoring.cone import OPERATIONS
from pixelprior.scoring.cone.screen import IntervalScreen, IntervalUnsupportedError
from pixelprior.search.verify import BoundUnsupportedError, Verifier

NETS = [Residual, Plain, Scaled, Gated, Bilinear, Indexed, Normalised, Normed,
        ConvNeXtBlock, Attention, Encoder, Pooled, Exponentials, TimmAttention, TimmFused,
        Norms, Pieces, Transformer, Maxima, Padded, Einsums,
        SequenceFirst, Resampled, Powered, Unfolded] + [
    lambda a=a: Smooth(a) for a in ACTIVATIONS]


def screened(model, image, y, x, lo, hi, label, cone=False) -> np.ndarray:
    width = image.shape[-1]
    return IntervalScreen(model, cone=cone).margins(
        image, torch.tensor([y * width + x]), torch.tensor([lo], dtype=torch.float64),
        torch.tensor([hi], dtype=torch.float64), label)[0].numpy()


def box(corner, width):
    lo = [min(c, 1 - width) for c in corner]
    return lo, [v + width for v in lo]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), index=st.integers(0, len(NETS) - 1),
       y=st.integers(0, 7), x=st.integers(0, 7), width=st.floats(0.0, 1.0),
       corner=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3), cone=st.booleans())
def test_bounds_hold_every_sampled_color(seed, index, y, x, width, corner, cone):
    model = randomised(NETS[index](), seed)
    assert_screen_holds(model, seed, y, x, corner, width, cone)


def assert_screen_holds(model: nn.Module, seed: int, y: int, x: int, corner: list[float],
                        width: float, cone: bool, samples: int = 400) -> None:
    """The screen's margins over the box of side ``width`` near ``corner`` at ``(y, x)``
    are below the model's float64 margins at random colors of the box and its corners."""
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    lo, hi = box(corner, width)
    colors = torch.tensor(lo, dtype=torch.float64) + torch.rand(
        samples, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * width
    corners = torch.cartesian_prod(*[torch.tensor([a, b], dtype=torch.float64)
                                     for a, b in zip(lo, hi, strict=True)])
    values = scores(model, image, y, x, torch.cat([colors, corners]))
    label = int(values[0].argmax())
    bounds = screened(model, image, y, x, lo, hi, label, cone)
    margins = (values[:, label:label + 1] - values).min(0).values.numpy()
    others = [j for j in range(values.shape[1]) if j != label]
    assert (bounds[others] <= margins[others] + 1e-9 * (1 + abs(margins).max())).all()
    assert bounds[label] == np.inf


def test_a_transposed_convolutions_magnitudes_bound_its_values():
    """The interval rule's ``|A| x`` of a transposed convolution (groups, stride, output
    padding) bounds ``|A x|``, and the bound rule's gain bounds its largest row sum: on
    the random networks the screen's bounds are too loose for a rule that took ``W`` for
    ``|W|`` to show (it passed them)."""
    from pixelprior.scoring.cone.operators.convolution import TransposedParams

    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
    params = TransposedParams(layer.weight, layer.bias, (2, 2), (1, 1), (1, 1), 2, (1, 1))
    x = torch.randn(5, 4, 6, 6, dtype=torch.float64)
    values = F.conv_transpose2d(x, layer.weight.double(), None, 2, 1, 1, 2)
    rule = OPERATIONS.get("conv_transpose2d").interval(params)
    assert (rule.run_abs(x.abs()) >= values.abs() - 1e-12).all()
    ones = rule.run_abs(torch.ones(1, 4, 6, 6, dtype=torch.float64))
    assert float(ones.max()) <= OPERATIONS.get("conv_transpose2d").bound(params).rounding.gain


@pytest.mark.parametrize("shape", [(5, 6), (5, 6, 7), (5, 6, 3, 4, 2)],
                         ids=["features", "sequence", "volume"])
def test_a_batch_norm_of_any_rank_scales_its_magnitudes_per_channel(shape):
    """BatchNorm1d on ``[N, C]`` and ``[N, C, L]`` and BatchNorm3d: the interval rule's
    ``|scale| x`` and its offset are per channel of axis 1 whatever the rank (they were
    shaped for ``[N, C, H, W]`` alone)."""
    from pixelprior.scoring.cone.operators.normalization import BatchNormParams

    torch.manual_seed(0)
    channels = shape[1]
    params = BatchNormParams(torch.randn(channels), torch.rand(channels) + 0.5,
                             torch.randn(channels), torch.randn(channels), 1e-5)
    rule = OPERATIONS.get("batch_norm").interval(params)
    x = torch.randn(shape, dtype=torch.float64)
    scale = params.scale_shift()[0].double()
    view = (-1, *[1] * (len(shape) - 2))
    values = x * scale.view(view)
    torch.testing.assert_close(rule.run_abs(x.abs()), values.abs())
    offset = rule.offset_for(x)
    assert offset.shape == (channels, *[1] * (len(shape) - 2))
    expected = (params.mean.double().abs() * scale.abs() + params.bias.double().abs())
    torch.testing.assert_close(offset, expected.view(view))


@pytest.mark.parametrize("net", [Maxima, Padded, Einsums, SequenceFirst, Resampled, Powered,
                                 Unfolded])
@pytest.mark.parametrize("cone", [False, True], ids=["whole", "cone"])
def test_the_newer_nets_screens_hold_on_fixed_boxes(net, cone):
    """The networks of the newer operations on the same boxes every time (the sampled
    test above spreads its examples over every network, and may miss one)."""
    for seed in range(3):
        model = randomised(net(), seed)
        for width, corner in ((1.0, [0.0, 0.0, 0.0]), (0.3, [0.2, 0.5, 0.1]),
                              (0.05, [0.6, 0.3, 0.8])):
            assert_screen_holds(model, seed, seed % 8, (3 * seed + 1) % 8, corner, width,
                                cone)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), plain=st.booleans(), y=st.integers(0, 7),
       x=st.integers(0, 7), width=st.sampled_from([0.05, 0.25, 1.0]),
       corner=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3), cone=st.booleans())
def test_bounds_never_exceed_the_exact_minimum(seed, plain, y, x, width, corner, cone):
    model = randomised(Plain() if plain else Residual(), seed)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(seed + 1))
    lo, hi = box(corner, width)
    values = scores(model, image, y, x, torch.tensor([lo], dtype=torch.float64))
    label = int(values[0].argmax())
    exact = exact_margins(model, image, y, x, lo, hi, label)
    bounds = screened(model, image, y, x, lo, hi, label, cone)
    others = [j for j in range(exact.size) if j != label]
    assert (bounds[others] <= exact[others] + 1e-7).all(), (bounds, exact)
    if (bounds[others] > 0).all():  # "verified" implies the exact minimum is positive
        assert (exact[others] > 0).all()


@pytest.mark.parametrize("cone", [False, True], ids=["whole", "cone"])
@pytest.mark.parametrize("net", NETS, ids=range(len(NETS)))
def test_a_box_of_width_zero_gives_the_exact_margins(net, cone):
    model = randomised(net(), 3)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    color = [0.2, 0.9, 0.4]
    values = scores(model, image, 3, 6, torch.tensor([color], dtype=torch.float64))[0]
    label = int(values.argmax())
    bounds = screened(model, image, 3, 6, color, color, label, cone)
    others = [j for j in range(values.numel()) if j != label]
    exact = (values[label] - values[others]).numpy()
    assert (bounds[others] <= exact).all()  # the rounding slack: below, and barely
    jumps = isinstance(getattr(model, "act", None), nn.Softplus)  # its jump at the
    # threshold (~2e-9) counts on both sides; two transformer layers and a final norm of
    # large random weights pass the screen's float64 rounding bounds through three
    # normalisations and two softmaxes (~2e-6; SequenceFirst's two attentions alike)
    slack = 1e-6 if jumps else 1e-5 if net in (Transformer, SequenceFirst) else 1e-9
    np.testing.assert_allclose(bounds[others], exact, atol=slack, rtol=1e-9)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), index=st.integers(0, len(NETS) - 1),
       corner=st.lists(st.floats(0.0, 0.5), min_size=3, max_size=3), cone=st.booleans())
def test_bounds_only_tighten_on_sub_boxes(seed, index, corner, cone):
    """Intervals are monotone in the box: a half of a box is bounded at least as high
    (up to the rounding slack, ~1e-12 here)."""
    model = randomised(NETS[index](), seed)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    lo, hi = corner, [c + 0.5 for c in corner]
    screen = IntervalScreen(model, cone=cone)
    halves_lo = torch.tensor([lo, [lo[0] + 0.25, *lo[1:]]], dtype=torch.float64)
    halves_hi = torch.tensor([[lo[0] + 0.25, *hi[1:]], hi], dtype=torch.float64)
    position = torch.tensor([2 * 8 + 5])
    label = int(scores(model, image, 2, 5, torch.tensor([lo], dtype=torch.float64))
                .argmax())
    whole = screen.margins(image, position, torch.tensor([lo], dtype=torch.float64),
                           torch.tensor([hi], dtype=torch.float64), label)[0]
    parts = screen.margins(image, position.repeat(2), halves_lo, halves_hi, label)
    finite = torch.isfinite(whole)
    assert (parts[:, finite] >= whole[finite] - 1e-9 * (1 + whole[finite].abs())).all()


@pytest.mark.parametrize("cone", [False, True], ids=["whole", "cone"])
@pytest.mark.parametrize("net", [Residual, Gated, Indexed, Normalised])
def test_many_positions_in_one_call_match_one_at_a_time(cone, net):
    """Boxes are the rows of one call: each box's bounds are its own (a rule that mixed
    the rows, as a gate's copies could, would give another box's)."""
    model = randomised(net(), 2)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    screen = IntervalScreen(model, cone=cone)
    positions = torch.tensor([0, 9, 27, 63])
    lo = torch.rand(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) / 2
    hi = lo + torch.tensor([[0.5], [0.0], [0.25], [0.1]], dtype=torch.float64)
    together = screen.margins(image, positions, lo, hi, 1)
    alone = torch.cat([screen.margins(image, positions[i:i + 1], lo[i:i + 1], hi[i:i + 1], 1)
                       for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=1e-12, atol=1e-12)


class Strides(nn.Module):
    """The sliding windows' geometry on 32×32 images, each layer still on windows of the
    cone: a 5×5 stride-2 conv with padding, grouped convs, a padded average pool (zeros
    counted), a 1×1 conv (a pointwise step), a dilated conv, a padded max pool (its
    padding is -inf) and a functional conv."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 5, stride=2, padding=2)
        self.bn1 = nn.BatchNorm2d(8)
        self.grouped = nn.Conv2d(8, 12, 3, padding=1, groups=4)
        self.average = nn.AvgPool2d(3, 1, 1)
        self.pointwise = nn.Conv2d(12, 12, 1)
        self.dilated = nn.Conv2d(12, 12, 3, padding=2, dilation=2)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.weight = nn.Parameter(torch.randn(12, 12, 3, 3) * 0.2)
        self.fc = nn.Linear(12, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.pointwise(self.average(torch.relu(self.grouped(x))))
        x = self.pool(torch.relu(self.dilated(torch.relu(x))))
        x = torch.nn.functional.conv2d(x, self.weight, None, 1, "same")
        return self.fc(x.mean((2, 3)))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), y=st.integers(0, 31), x=st.integers(0, 31),
       width=st.floats(0.0, 1.0), corner=st.lists(st.floats(0.0, 1.0), min_size=3,
                                                  max_size=3))
def test_the_cone_bounds_hold_on_strided_dilated_grouped_and_padded_layers(seed, y, x,
                                                                           width, corner):
    model = randomised(Strides(), seed)
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    lo, hi = box(corner, width)
    samples = torch.tensor(lo, dtype=torch.float64) + torch.rand(
        200, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * width
    values = scores(model, image, y, x, samples)
    label = int(values[0].argmax())
    bounds = screened(model, image, y, x, lo, hi, label, cone=True)
    margins = (values[:, label:label + 1] - values).min(0).values.numpy()
    others = [j for j in range(values.shape[1]) if j != label]
    assert (bounds[others] <= margins[others] + 1e-9 * (1 + abs(margins).max())).all()


def boxes_everywhere(net, size: int) -> tuple:
    """A randomised ``net``, a random ``size``×``size`` image, and a random box of side
    at most 0.5 at every position: ``(model, image, positions, lo, hi)``."""
    model = randomised(net(), 4)
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(4))
    positions = torch.arange(size * size)
    lo = torch.rand(size * size, 3, generator=torch.Generator().manual_seed(5),
                    dtype=torch.float64)
    return model, image, positions, lo, (lo + 0.5).clamp(max=1.0)


@pytest.mark.parametrize("net, size", [
    (Residual, 8), (Scaled, 8), (lambda: Smooth(nn.GELU()), 8), (Strides, 32)],
    ids=["residual", "scaled", "gelu", "strides"])
def test_the_cone_bounds_as_whole_images_do(net, size):
    """In the pixel's cone the rules see the same values (the clean image's bounds around
    the windows): the bounds agree with whole images' to rounding, and are never looser
    beyond it (the cone's rounding slack is taken over patches, not whole maps)."""
    model, image, positions, lo, hi = boxes_everywhere(net, size)
    cone, whole = IntervalScreen(model, cone=True), IntervalScreen(model, cone=False)
    assert cone.uses_cone(image) and not whole.uses_cone(image)
    inside = cone.margins(image, positions, lo, hi, 2)
    outside = whole.margins(image, positions, lo, hi, 2)
    finite = torch.isfinite(outside)
    size = 1 + outside[finite].abs()
    assert (inside[finite] >= outside[finite] - 1e-12 * size).all()
    torch.testing.assert_close(inside[finite] / size, outside[finite] / size, rtol=0,
                               atol=1e-10)


def test_the_bundled_resnet8_is_screened_in_the_cone():
    from pixelprior.models import load_model

    model = load_model("resnet8-ibp-cifar10").eval()
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    screen = IntervalScreen(model)
    assert screen.uses_cone(image)
    positions = torch.tensor([0, 31, 500, 1023])
    lo, hi = torch.zeros(4, 3), torch.ones(4, 3)
    whole = IntervalScreen(model, cone=False).margins(image, positions, lo, hi, 3)
    inside = screen.margins(image, positions, lo, hi, 3)
    finite = torch.isfinite(whole)
    torch.testing.assert_close(inside[finite], whole[finite], rtol=1e-9, atol=1e-9)


def test_the_clean_bounds_follow_the_image():
    """The cone reads the clean image's bounds, kept for the last image: a new image
    (or the same tensor changed in place) is bounded afresh."""
    model = randomised(Residual(), 6)
    screen = IntervalScreen(model, cone=True)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    positions, lo, hi = torch.tensor([9, 40]), torch.zeros(2, 3), torch.ones(2, 3)
    screen.margins(image, positions, lo, hi, 0)
    image.mul_(0.5)  # in place: the same tensor
    again = screen.margins(image, positions, lo, hi, 0)
    fresh = IntervalScreen(model, cone=True).margins(image, positions, lo, hi, 0)
    torch.testing.assert_close(again, fresh, rtol=0, atol=0)


def test_a_sliding_window_rule_without_a_patch_form_bounds_whole_images(monkeypatch):
    model = randomised(Plain(), 8)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(8))
    screen = IntervalScreen(model)
    for node, rule in list(screen.rules.items()):
        if getattr(rule, "patch_abs", None) is not None:
            monkeypatch.setitem(screen.rules, node, replace(rule, patch_abs=None))
    assert not screen.uses_cone(image)


def test_every_operation_with_a_bound_rule_has_an_interval_rule():
    """Of the package's operations (other tests register their own); ``shape`` has no
    bound rule: the zonotope engine runs it as a step of its own."""
    for name in OPERATIONS.names():
        operation = OPERATIONS.get(name)
        if not operation.window.__module__.startswith("pixelprior."):
            continue
        has_bound = operation.bound is not None or name == "shape"
        assert has_bound == (operation.interval is not None), name


@pytest.mark.parametrize("cone", [False, True], ids=["whole", "cone"])
@pytest.mark.parametrize("net", [Gated, Bilinear])
def test_products_of_two_varying_values_are_screened_soundly_on_fixed_boxes(net, cone):
    """The four products of the factors' ends: every box encloses the sampled margins
    (the hypothesis test above spreads its examples over every network)."""
    for seed in range(4):
        model = randomised(net(), seed)
        for width, corner in ((1.0, [0.0] * 3), (0.3, [0.2, 0.5, 0.1]), (0.05, [0.6, 0.3, 0.8])):
            assert_screen_holds(model, seed, seed % 8, (3 * seed) % 8, corner, width, cone, 300)


class Picked(nn.Module):
    """A margin that is one product of two affine functions of the colors at pixel (2, 3)
    (the class-0 score picks it, class 1 is 0): a bound must hold the product's least
    value, a corner-to-corner ``l_x u_y`` where the factors change sign."""

    def __init__(self) -> None:
        super().__init__()
        self.left, self.right = nn.Conv2d(3, 1, 1), nn.Conv2d(3, 1, 1)
        self.fc = nn.Linear(16, 2)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.zero_()
            self.fc.weight[0, 2 * 4 + 3] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc((self.left(x) * self.right(x)).flatten(1))


@pytest.mark.parametrize("cone", [False, True], ids=["whole", "cone"])
def test_a_product_of_two_varying_values_holds_its_extremes(cone):
    from test_bounds import box_margins

    from pixelprior.scoring.cone.bounds import BoundEngine

    image = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    for seed in range(8):
        torch.manual_seed(seed)
        model = Picked().eval()
        colors = torch.rand(4000, 3, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(seed))
        colors = torch.cat([colors, torch.cartesian_prod(*[torch.tensor([0.0, 1.0])] * 3)
                            .double()])
        h = scores(model, image, 2, 3, colors)[:, 0]
        # label 0: the margin z_0 - z_1 is h, its bound at most h's least value; label 1:
        # the margin is -h, its bound at most minus h's largest
        for label, least in ((0, float(h.min())), (1, float(-h.max()))):
            other = 1 - label
            screen = screened(model, image, 2, 3, [0.0] * 3, [1.0] * 3, label, cone)
            assert screen[other] <= least + 1e-9
            zonotope = box_margins(BoundEngine(model), image, 2, 3, [0.0] * 3, [1.0] * 3,
                                   label)
            assert float(zonotope.lower[0, other]) <= least + 1e-9


class Cumulative(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.conv(x).cumsum(-1).mean((2, 3)))


class Floored(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.div(self.conv(x), 0.3, rounding_mode="floor").mean((2, 3)))


@pytest.mark.parametrize("model, message", [
    (Cumulative().eval(), r"no rule for Tensor.cumsum\(\)"),
    (Floored().eval(), "rounding_mode='floor'"),
    (Plain().train(), "training mode")])
def test_operations_without_an_interval_rule_are_named(model, message):
    with pytest.raises(IntervalUnsupportedError, match=message):
        IntervalScreen(model)


def test_the_verifier_screens_where_it_can_and_says_why_not_elsewhere():
    assert Verifier(Plain().eval()).screen is not None
    assert Verifier(Plain().eval(), screen=False).screen_skipped == "screen=False"


def quiet_net() -> nn.Module:
    """A small CNN whose single pixels barely matter: intervals prove every position."""
    model = randomised(Plain(classes=3, size=8), 7)
    with torch.no_grad():
        model.conv1.weight.mul_(1e-3)
        model.fc2.bias.copy_(torch.tensor([3.0, 0.0, 0.0]))
    return model


def test_the_screen_proves_whole_positions_and_the_verdicts_agree():
    model = quiet_net()
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    label = torch.tensor([int(model(image).argmax(1))])
    (with_screen,) = Verifier(model, budget=None, deterministic=True).verify(image, label)
    (without,) = Verifier(model, budget=None, deterministic=True, screen=False).verify(
        image, label)
    assert with_screen.decided_by == without.decided_by == "verified"
    assert with_screen.screened == 64 and with_screen.boxes == 64  # one box per position
    assert without.screened == 0
    assert with_screen.positions.verified_volume.min() == 1.0


@pytest.mark.parametrize("shift, exact, chunks", [
    (-1e9, False, "tries"), (None, False, "all"), (-1e9, True, "all")])
def test_a_screen_far_from_proving_is_dropped_after_its_tries(monkeypatch, shift, exact,
                                                             chunks):
    """Bounds far below the tolerance (hundreds of times the margin: a network not
    trained for intervals) drop the screen after SCREEN_TRIES chunks; bounds that miss
    narrowly (an interval-trained network's hardest positions) keep it on; deciding every
    position keeps it on (its first positions are the vulnerable ones: hopeless bounds
    there are the truth, not the screen's looseness)."""
    from pixelprior.search import verify as verify_module

    monkeypatch.setattr(verify_module, "SCREEN_CHUNK", {"cpu": 8})
    model = quiet_net()
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(11))
    label = torch.tensor([int(model(image).argmax(1))])
    verifier = Verifier(model, budget=None, deterministic=True)
    calls = []
    bounded = verifier.screen.bounds

    def counted(image, positions, lo, hi, label, unit=None):
        calls.append(len(positions))
        bounds = bounded(image, positions, lo, hi, label, unit)
        if shift is not None:  # looser: still sound, never proves
            return replace(bounds, lower=bounds.lower + shift)
        narrow = torch.minimum(bounds.lower, torch.full_like(bounds.lower, -1e-3))
        return replace(bounds, lower=narrow)  # a narrow miss

    monkeypatch.setattr(verifier.screen, "bounds", counted)
    (result,) = verifier.verify(image, label, stop_at_first=not exact)
    expected = verify_module.SCREEN_TRIES if chunks == "tries" else 64 // 8
    assert calls == [8] * expected
    assert result.decided_by == "verified" and result.screened == 0  # the zonotopes did


def test_screen_true_refuses_a_model_without_interval_rules():
    with pytest.raises(BoundUnsupportedError, match="interval"):
        Verifier(Cumulative().eval(), screen=True)


def test_the_screen_keeps_to_the_box_budget():
    """Each position the screen bounds is one box; it never bounds past max_boxes."""
    model = quiet_net()
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    label = torch.tensor([int(model(image).argmax(1))])
    for budget in (1, 5, 30, 63):
        (result,) = Verifier(model, budget=None, max_boxes=budget).verify(image, label)
        assert result.boxes == budget and result.decided_by == "unknown"
        assert result.screened == budget


class RootOfReciprocal(nn.Module):
    """``1 / (red - 0.5)`` through a ReLU, then eight square roots: unbounded wherever the
    pixel's red reaches 0.5, yet the roots bring any finite stand-in for ``inf`` down to
    a small number (a review: ``nan_to_num`` made the infinite end 1.8e308, the screen
    proved a margin of 37.9, and the verifier said "verified" of an image one pixel
    fools)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 1, 1), nn.Linear(3, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 1.0
            self.conv.bias.fill_(-0.5)
            self.head.weight.zero_()
            self.head.bias.fill_(100.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.relu(torch.reciprocal(self.conv(x))) + 1
        for _ in range(8):
            g = torch.sqrt(torch.relu(g))
        return torch.cat([self.head(x.mean((2, 3))), 50 * g.mean((2, 3))], 1)


def test_an_unbounded_range_is_never_made_finite():
    """A range that holds the pole of ``1 / x`` stays infinite through every later
    operation: the screen's bound is ``-inf``, and the verifier does not say
    "verified" of an image whose label one pixel of red 0.5 flips."""
    model = RootOfReciprocal().eval()
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.4 + 0.55
    changed = image.clone()
    changed[0, :, 3, 3] = torch.tensor([0.5, 0.2, 0.2])
    with torch.no_grad():
        assert int(model(image).argmax()) == 0 and int(model(changed).argmax()) == 1
    cube = torch.zeros(1, 3, dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64)
    bounds = IntervalScreen(model).bounds(image, torch.tensor([27]), *cube, 0)
    assert torch.isneginf(bounds.lower[0, 1])
    (result,) = Verifier(model, budget=20.0, screen=True).verify(image, torch.tensor([0]))
    assert result.decided_by != "verified"


class RowTransposed(nn.Module):
    """``transpose(-4, 2)`` of a 4-D map: the batch axis swapped with the rows, a
    convolution per image row, and back (a review: with as many boxes as rows the
    screen's rows kept their count, mixed the boxes, and bounded margins above their
    sampled minimum, 210.9 against 125.7)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.rowconv = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x)).transpose(-4, 2)
        return self.fc(torch.relu(self.rowconv(h)).transpose(-4, 2).flatten(1))


def test_a_transpose_of_the_batch_axis_by_a_negative_dim_is_refused_by_the_screen():
    model = randomised(RowTransposed(), 0)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    positions = torch.arange(8) * 8 + 3  # as many boxes as the image has rows
    lo = torch.full((8, 3), 0.2, dtype=torch.float64)
    with pytest.raises(IntervalUnsupportedError, match="moves the batch axis"):
        IntervalScreen(model, cone=False).margins(image, positions, lo, lo + 0.3, 0)
