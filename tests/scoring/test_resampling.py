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
