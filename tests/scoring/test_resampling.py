"""Interpolation as the verifier's copies write it (:func:`resample`): one weight matrix
per spatial axis, read off the kernel, equal to ``F.interpolate``; a nearest neighbour's
indices are the model's dtype's; matrices that would break the rounding counts, or
whose product is not the kernel, are refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bounds import box_margins
from torch import nn

from pixelprior.scoring.cone.bounds import BoundEngine, BoundUnsupportedError
from pixelprior.scoring.cone.operators import resampling
from pixelprior.scoring.cone.operators.resampling import InterpolateSpec, resample


def spec_of(mode: str, size=None, scale=None, align=None, dtype=None) -> InterpolateSpec:
    return InterpolateSpec(size, scale, mode, align, None, dtype)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mode=st.sampled_from(["nearest", "nearest-exact", "bilinear", "bicubic"]),
       height=st.integers(1, 9), width=st.integers(1, 9), sized=st.booleans(),
       out=st.tuples(st.integers(1, 20), st.integers(1, 20)),
       scale=st.tuples(st.floats(0.3, 3.5), st.floats(0.3, 3.5)), align=st.booleans(),
       seed=st.integers(0, 1000))
def test_resample_is_the_kernel_on_any_map(mode, height, width, sized, out, scale, align,
                                           seed):
    """Every mode, size and scale (down and up, align_corners either way): the matrices'
    product equals ``F.interpolate`` in float64, and ``|A| x`` bounds ``|A x|``."""
    align = align if mode in ("bilinear", "bicubic") else None
    spec = spec_of(mode, size=out if sized else None, scale=None if sized else scale,
                   align=align)
    x = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64)
    try:
        expected = spec.call(x)
    except RuntimeError:
        return  # a size the kernel refuses (an output of 0 rows)
    got = resample(x, spec)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert (resample(x.abs(), spec, absolute=True) >= got.abs() - 1e-12).all()


@pytest.mark.parametrize("mode, rank, size", [("linear", 3, (11,)), ("nearest", 3, (5,)),
                                              ("trilinear", 5, (3, 4, 7))])
def test_one_and_three_spatial_axes(mode, rank, size):
    x = torch.randn((2, 3, 2, 5, 4)[:rank], dtype=torch.float64)
    spec = spec_of(mode, size=size, align=False if mode != "nearest" else None)
    torch.testing.assert_close(resample(x, spec), spec.call(x), rtol=1e-12, atol=1e-12)


def test_a_nearest_neighbour_is_the_model_dtypes():
    """From 8 to 164 rows, float32 and float64 pick another row for outputs 41 and 82:
    the copy reads its indices off the model's (float32) kernel, so its float64 scores
    are the float32 model's, not those of the model in float64 (a different
    function)."""
    class Stretched(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3, padding=1)
            self.fc = nn.Linear(2 * 164 * 8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.interpolate(self.conv(x), size=(164, 8))
            return self.fc(h.flatten(1))

    torch.manual_seed(0)
    model = Stretched().eval()
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    color = [0.2, 0.7, 0.4]
    bounds = box_margins(BoundEngine(model), image, 3, 3, color, color, 0)
    patched = image.clone()
    patched[0, :, 3, 3] = torch.tensor(color)
    with torch.no_grad():
        own = model(patched).double()[0]
        doubled = model.double()(patched.double())[0]
    own_margins, double_margins = own[0] - own, doubled[0] - doubled
    assert (bounds.lower[0, 1:] - own_margins[1:]).abs().max() < 1e-5
    assert (bounds.lower[0, 1:] - double_margins[1:]).abs().max() > 1e-3


def test_matrices_that_are_not_the_kernel_are_refused(monkeypatch):
    original = resampling._axis_matrix
    monkeypatch.setattr(resampling, "_axis_matrix", lambda *args: original(*args).flip(0))
    with pytest.raises(BoundUnsupportedError, match="cannot write as one weight matrix"):
        resample(torch.rand(1, 2, 5, 5, dtype=torch.float64),
                 spec_of("bilinear", scale=(1.7, 1.7), align=False))


def test_more_taps_than_the_rounding_counts_are_refused(monkeypatch):
    monkeypatch.setitem(resampling._TAPS, "bilinear", 1)
    with pytest.raises(BoundUnsupportedError, match="read 2 inputs"):
        resample(torch.rand(1, 2, 4, 4, dtype=torch.float64),
                 spec_of("bilinear", scale=(1.5, 1.5), align=False))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mode=st.sampled_from(["area", "bilinear-aa", "bicubic-aa"]),
       height=st.integers(1, 12), width=st.integers(1, 12), sized=st.booleans(),
       out=st.tuples(st.integers(1, 14), st.integers(1, 14)),
       scale=st.tuples(st.floats(0.2, 2.5), st.floats(0.2, 2.5)), align=st.booleans(),
       seed=st.integers(0, 1000))
def test_windows_that_grow_with_the_scale_are_the_kernel_once_settled(
        mode, height, width, sized, out, scale, align, seed):
    """``mode="area"`` and ``antialias=True`` (bilinear, bicubic), down and up: without an
    input size their counts are unknown and the rules refuse them; settled for the
    input's size (:func:`settled_spec`), the matrices' product is ``F.interpolate`` in
    float64, their taps and row sums within the counts, and ``|A| x`` bounds ``|A x|``.
    (PyTorch's antialiased kernel weighs a one-wide axis otherwise than a column of a
    wider map: the matrices are read with the other axes at their own sizes; where an
    axis of the input or the output is one wide, the check against the kernel may refuse
    it.)"""
    kind = mode.removesuffix("-aa")
    align = align if kind != "area" else None
    spec = InterpolateSpec(out if sized else None, None if sized else scale, kind, align, None,
                           antialias=mode.endswith("-aa"))
    assert not spec.settled and isinstance(resampling._bound(spec), str)
    x = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64)
    try:
        expected = spec.call(x)
    except RuntimeError:
        return  # a size the kernel refuses
    settled = resampling.settled_spec(spec, (height, width), x.device, torch.float64)
    assert settled.settled and not isinstance(resampling._bound(settled), str)
    try:
        got = resample(x, settled)
    except BoundUnsupportedError:  # the antialiased kernel on a map one wide or high (in
        assert spec.antialias and 1 in (height, width, *expected.shape[2:])  # or out)
        return  # weighs it otherwise than any matrix per axis: refused by the check
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert (resample(x.abs(), settled, absolute=True) >= got.abs() - 1e-12).all()


class Downsampled(nn.Module):
    """A map reduced by area averaging and by antialiased bilinear and bicubic
    interpolation (a model that resizes its input to the size it was made for)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * (16 + 9 + 25), 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv(x))
        parts = [F.interpolate(h, scale_factor=0.5, mode="area"),
                 F.interpolate(h, size=3, mode="bilinear", antialias=True),
                 F.interpolate(h, size=(5, 5), mode="bicubic", antialias=True)]
        return self.fc(torch.cat([p.flatten(1) for p in parts], 1))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), y=st.integers(0, 7), x=st.integers(0, 7),
       width=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
       corner=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3))
def test_area_and_antialiased_interpolations_are_bounded_soundly(seed, y, x, width, corner):
    """Made for the images' shape, the bound engine and the interval screen hold every
    sampled color of a box (and its corners), and a box of width 0 is the model's
    scores; made without it, the plan says what to do."""
    from pixelprior.scoring.cone.screen import IntervalScreen

    torch.manual_seed(seed % 3)
    model = Downsampled().eval()
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    lo = torch.tensor([[min(c, 1 - width) for c in corner]], dtype=torch.float64)
    hi = lo + width
    grid = torch.cartesian_prod(*[torch.tensor([0.0, 1.0], dtype=torch.float64)] * 3)
    colors = torch.cat([lo + torch.rand(200, 3, generator=torch.Generator().manual_seed(seed),
                                        dtype=torch.float64) * width, lo + grid * width])
    patched = image.double().repeat(len(colors), 1, 1, 1)
    patched[:, :, y, x] = colors
    with torch.no_grad():
        values = Downsampled().eval().double().requires_grad_(False)
        values.load_state_dict(model.state_dict())
        values = values(patched)
    label = int(values[0].argmax())
    margins = values[:, label:label + 1] - values
    others = [j for j in range(3) if j != label]
    slack = 1e-9 * (1 + float(values.abs().max()))
    engine = BoundEngine(model, shape=(3, 8, 8))
    bounds = engine.margins(engine.prepare(image), torch.tensor([0]), torch.tensor([y]),
                            torch.tensor([x]), lo, hi, torch.tensor([label]))
    assert (bounds.lower[0, others] <= margins[:, others].min(0).values + slack).all()
    assert (bounds.upper[0, others] >= margins[:, others].max(0).values - slack).all()
    if width == 0.0:
        assert (bounds.upper[0, others] - bounds.lower[0, others]).max() < 1e-9
    lower = IntervalScreen(model, shape=(3, 8, 8)).margins(
        image, torch.tensor([y * 8 + x]), lo, hi, label)
    assert (lower[0, others] <= margins[:, others].min(0).values + slack).all()
    with pytest.raises(BoundUnsupportedError, match="mode='area' or antialias=True is "
                       "written out for one image shape"):
        BoundEngine(model).plan(image)
