"""Interpolation (``F.interpolate``, ``nn.Upsample``, ``nn.UpsamplingNearest2d``,
``nn.UpsamplingBilinear2d``): nearest, linear, bilinear, trilinear and bicubic, by a
``scale_factor`` or to a ``size``.

Every such interpolation is linear in its input and acts on each spatial axis apart:
``y = A_H x A_Wᵀ`` for a 2-D map, one matrix per axis. The verifier's copies write it as
:func:`resample`, which reads each axis's matrix off the kernel itself — the
interpolation of one-hot inputs, on the values' device — and checks the product of the
matrices against the kernel on a random map before it is used. A nearest neighbour's
matrix is read in the model's dtype: its indices are the ones the model copies (float64
may round an index the other way, a different function); a linear or cubic one's in the
values' dtype (float64: the weights are continuous in the coordinates, and what float32
rounds of them is the float32 estimate's, as of the products and sums). Nearest
whole-number upsampling stays ``repeat_interleave`` (:mod:`..decompose`).

``mode="area"`` (adaptive average pooling) and ``antialias=True`` (bilinear, bicubic)
are linear and separable too, but their windows grow with the scale: the rounding
counts read the most taps and the largest row sum off the matrices of the input's size
(:func:`settled_spec`), so the verifier's copies write them out for one image shape
(``TracedGraph(..., shape=...)``; made without it, they are refused in one line). Not
supported (one line each): an input of other than 3, 4 or 5 axes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..intervals import REARRANGED, SignedAffine
from ..table import (
    COMPUTED_SETTINGS,
    NodeCall,
    register_bound,
    register_interval,
    register_operation,
)
from ..zonotope import Affine, BoundUnsupportedError, Rearrange, Rounding

__all__ = ["INTERPOLATION_NEEDS_SHAPE", "InterpolateSpec", "resample", "settled_spec"]

# the most inputs one output of an axis reads, and their largest absolute row sum, per
# mode (bicubic's Keys kernel with a = -0.75: 1.375 at t = 1/2); checked when the
# matrices are read, so that the rounding counts below hold
_TAPS = {"nearest": 1, "nearest-exact": 1, "linear": 2, "bilinear": 2, "trilinear": 2,
         "bicubic": 4, "area": None}  # (area: read off the matrices of one input size)
_GAIN = {"nearest": 1.0, "nearest-exact": 1.0, "linear": 1.0, "bilinear": 1.0,
         "trilinear": 1.0, "bicubic": 1.5}
_AXES = {"linear": 1, "bilinear": 2, "trilinear": 3, "bicubic": 2}
_NEAREST = ("nearest", "nearest-exact")


@dataclass(frozen=True)
class InterpolateSpec:
    """An interpolation's settings as ``F.interpolate`` takes them.

    Attributes:
        size: the output's spatial size (``None``: from ``scale``).
        scale: the scale factor per spatial axis (``None``: ``size`` given).
        mode: ``F.interpolate``'s mode.
        align_corners: as given (``None`` for the nearest modes).
        recompute: ``recompute_scale_factor``.
        dtype: the dtype whose kernel the matrices are read from (a nearest one's: the
            model's; ``None``: the values' own).
        antialias: ``antialias=True`` (bilinear, bicubic).
        taps, largest: the most inputs one output of an axis reads and the largest
            absolute row sum, read off the matrices of one input size (``area`` and
            ``antialias``: :func:`settled_spec`); ``None``: the mode's own.
    """

    size: tuple[int, ...] | None
    scale: tuple[float, ...] | None
    mode: str
    align_corners: bool | None
    recompute: bool | None
    dtype: torch.dtype | None = None
    antialias: bool = False
    taps: int | None = None
    largest: float | None = None

    @property
    def needs_shape(self) -> bool:
        """Whether its windows grow with the scale (``area``, ``antialias``): its counts
        are read off one input size's matrices."""
        return self.mode == "area" or self.antialias

    @property
    def settled(self) -> bool:
        """Whether its counts are known (the mode's, or read off the matrices)."""
        return not self.needs_shape or self.taps is not None

    @property
    def most_taps(self) -> int:
        """The most inputs one output of an axis reads."""
        return self.taps if self.taps is not None else _TAPS[self.mode] or 0

    @property
    def most_gain(self) -> float:
        """The largest absolute row sum of an axis's matrix."""
        return self.largest if self.largest is not None else _GAIN.get(self.mode, 1.0)

    @property
    def nearest(self) -> bool:
        """Whether each output is one input (a copy)."""
        return self.mode in _NEAREST

    def axes(self, rank: int) -> int:
        """The spatial axes of a value of ``rank`` axes."""
        return rank - 2

    def terms(self, axes: int) -> int:
        """Roundings per output of ``axes`` nested sums of the mode's taps (and two more)."""
        return axes * self.most_taps + 2

    def gain(self, axes: int) -> float:
        """``‖|A|‖_∞`` of the whole map, an upper bound (the product of the axes')."""
        return self.most_gain ** axes * (1 + 2**-20)

    def whole_factors(self) -> tuple[int, ...] | None:
        """The factors of a nearest upsampling by whole numbers given as ``scale_factor``
        (what the verifier's copies write as ``repeat_interleave``), else ``None``."""
        if self.mode != "nearest" or self.size is not None or self.recompute or not all(
                float(f).is_integer() and f >= 1 for f in self.scale or (0.5,)):
            return None
        return tuple(int(f) for f in self.scale)

    def call(self, x: torch.Tensor, axis: int | None = None) -> torch.Tensor:
        """``F.interpolate`` of ``x`` with these settings; along spatial ``axis`` alone
        (their own size and scale 1 on the others, which copy) where one is given."""
        axes = self.axes(x.dim())
        size, scale = _per_axis(self.size, axes), _per_axis(self.scale, axes)
        if axis is not None:
            if size is not None:
                size = tuple(s if k == axis else x.shape[2 + k] for k, s in enumerate(size))
            if scale is not None:
                scale = tuple(s if k == axis else 1.0 for k, s in enumerate(scale))
        return F.interpolate(x, size=size, scale_factor=scale, mode=self.mode,
                             align_corners=self.align_corners,
                             recompute_scale_factor=self.recompute, antialias=self.antialias)


def _per_axis(value: tuple | None, axes: int) -> tuple | None:
    """A size or scale given once (``size=224``) repeated for each of ``axes``."""
    if value is None or len(value) != 1:
        return value
    return value * axes


def _as_tuple(value: object) -> tuple | None:
    if value is None:
        return None
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _interpolate_params(call: NodeCall) -> InterpolateSpec | str:
    """The interpolation's :class:`InterpolateSpec`, or why the verifier does not write
    it out."""
    if call.module is not None:
        m = call.module
        size, scale, mode = m.size, m.scale_factor, m.mode
        align, recompute = m.align_corners, m.recompute_scale_factor
        antialias = False
    else:
        size, scale = call.arg(1, "size"), call.arg(2, "scale_factor")
        mode, align = call.arg(3, "mode", "nearest"), call.arg(4, "align_corners")
        recompute, antialias = call.arg(5, "recompute_scale_factor"), call.arg(6, "antialias",
                                                                                False)
    if mode not in _TAPS:
        return (f"interpolation with mode={mode!r} (the verifier writes out nearest, "
                "nearest-exact, linear, bilinear, trilinear, bicubic and area)")
    if antialias and mode not in ("bilinear", "bicubic"):
        return f"interpolation with antialias=True and mode={mode!r} (PyTorch has neither)"
    size, scale = _as_tuple(size), _as_tuple(scale)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in size or ()) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in scale or ()):
        return COMPUTED_SETTINGS
    if (size is None) == (scale is None):
        return "interpolation with both or neither of size and scale_factor"
    return InterpolateSpec(size, tuple(float(f) for f in scale) if scale else None, mode,
                           align, recompute, antialias=bool(antialias))


def _runs_whole(params: object) -> str:
    return params if isinstance(params, str) else "it interpolates the whole map"


register_operation("interpolate", written_out=True, window=_runs_whole,
                   params=_interpolate_params, functions=(F.interpolate,),
                   modules=(nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d),
                   help="interpolation of a map: nearest, (bi/tri)linear, bicubic (the "
                   "verifier: repeat_interleave, or resample)")


# ------------------------------------------------------------------ the verifier's form
# per (settings, input's spatial size, device): the axes' matrices [out, in], float64
_MATRICES: dict[tuple, tuple[torch.Tensor, ...]] = {}
_CACHED = 64


def _axis_matrix(spec: InterpolateSpec, sizes: tuple[int, ...], axis: int, dtype: torch.dtype,
                 device: torch.device) -> torch.Tensor:
    """The matrix ``[out, in]`` of spatial ``axis``: the kernel run on one-hot inputs
    along it (a batch of them, every other spatial axis of size 1; of its own size for an
    antialiased one, constant along it: PyTorch's antialiased kernel weighs an axis of
    one input otherwise than a column of a wider map, and the first column is read)."""
    n = sizes[axis]
    shape = [n, 1] + [n if k == axis else 1 for k in range(len(sizes))]
    one_hot = torch.eye(n, dtype=dtype, device=device).view(shape)
    if spec.antialias:
        one_hot = one_hot.expand(n, 1, *[n if k == axis else s for k, s in enumerate(sizes)])
    with torch.no_grad():
        out = spec.call(one_hot.contiguous(), axis)
    if spec.antialias:  # (the other axes copied: their first index)
        out = out[(slice(None), slice(None), *[slice(None) if k == axis else 0
                                               for k in range(len(sizes))])]
    return out.reshape(n, -1).T.double()


def _checked(spec: InterpolateSpec, sizes: tuple[int, ...], matrices: tuple[torch.Tensor, ...],
             dtype: torch.dtype, device: torch.device) -> None:
    """Refuse matrices that break the rounding counts (more taps or a larger row sum than
    the mode's) or whose product is not the kernel (checked on a random map)."""
    for matrix in matrices:
        taps = int((matrix != 0).sum(1).max()) if matrix.numel() else 0
        gain = float(matrix.abs().sum(1).max()) if matrix.numel() else 0.0
        if not spec.settled or taps > spec.most_taps or gain > spec.most_gain * (1 + 2**-20):
            raise BoundUnsupportedError(
                f"interpolation with mode={spec.mode!r} whose weights read {taps} inputs "
                f"(largest row sum {gain:.4g}) per output along an axis, more than the "
                "verifier counts")
    generator = torch.Generator().manual_seed(0)
    probe = torch.rand((1, 2, *sizes), generator=generator, dtype=torch.float64)
    probe = probe.to(dtype).to(device)
    with torch.no_grad():
        expected = spec.call(probe).double()
    got = _apply(probe.double(), matrices, False)
    scale = float(probe.abs().max()) * spec.gain(len(sizes))
    apart = float((got - expected).abs().max()) if got.shape == expected.shape and (
        got.numel()) else 0.0  # (an output of no rows: nothing to compare)
    if got.shape != expected.shape or apart > 1e-5 * scale:
        raise BoundUnsupportedError(
            f"interpolation with mode={spec.mode!r} that the verifier cannot write as one "
            "weight matrix per axis (its product differs from the kernel's output)")


def settled_spec(spec: InterpolateSpec, sizes: tuple[int, ...], device: torch.device,
                 fallback: torch.dtype) -> InterpolateSpec:
    """``spec`` with the counts of an input of spatial ``sizes`` where its windows grow
    with the scale (``area``, ``antialias``): the most taps and the largest absolute row
    sum of its matrices (the kernel's, on one-hot inputs); ``spec`` itself otherwise.

    Args:
        spec: the interpolation.
        sizes: the input's spatial sizes.
        device: where the kernel is read.
        fallback: the dtype whose kernel is read where ``spec.dtype`` is ``None``.
    """
    if not spec.needs_shape:
        return spec
    taps, largest = _counts(spec, tuple(sizes), torch.device(device), spec.dtype or fallback)
    return dataclasses.replace(spec, taps=taps, largest=largest)


@functools.lru_cache(maxsize=_CACHED)
def _counts(spec: InterpolateSpec, sizes: tuple[int, ...], device: torch.device,
            dtype: torch.dtype) -> tuple[int, float]:
    """The most taps and the largest absolute row sum of the matrices of an input of
    spatial ``sizes`` (cached: the float32 estimate asks again at every image)."""
    matrices = [_axis_matrix(spec, sizes, k, dtype, device) for k in range(len(sizes))]
    taps = max((int((m != 0).sum(1).max()) for m in matrices if m.numel()), default=1)
    largest = max((float(m.abs().sum(1).max()) for m in matrices if m.numel()), default=1.0)
    return taps, largest


def axis_matrices(spec: InterpolateSpec, sizes: tuple[int, ...], device: torch.device,
                  fallback: torch.dtype) -> tuple[torch.Tensor, ...]:
    """The matrices ``[out, in]`` (float64, exact copies of the kernel's weights) of each
    spatial axis of an input of spatial ``sizes`` (cached; checked by :func:`_checked`).

    Args:
        spec: the interpolation.
        sizes: the input's spatial sizes.
        device: where the values are (the kernel read is that device's).
        fallback: the dtype whose kernel is read where ``spec.dtype`` is ``None``.
    """
    dtype = spec.dtype or fallback
    key = (spec, sizes, str(device), dtype)
    if key not in _MATRICES:
        matrices = tuple(_axis_matrix(spec, sizes, k, dtype, device) for k in range(len(sizes)))
        _checked(spec, sizes, matrices, dtype, device)
        if len(_MATRICES) >= _CACHED:
            _MATRICES.pop(next(iter(_MATRICES)))
        _MATRICES[key] = matrices
    return _MATRICES[key]


def _apply(x: torch.Tensor, matrices: tuple[torch.Tensor, ...], nearest: bool) -> torch.Tensor:
    """Each spatial axis of ``x`` mapped by its matrix (by its rows' one index where
    ``nearest``: a copy, exact)."""
    for k, matrix in enumerate(matrices):
        axis = 2 + k
        if nearest:
            x = x.index_select(axis, matrix.argmax(1).to(x.device))
        else:
            moved = torch.movedim(x, axis, -1)
            x = torch.movedim(moved @ matrix.T.to(dtype=x.dtype, device=x.device), -1, axis)
    return x


def resample(x: torch.Tensor, spec: InterpolateSpec, absolute: bool = False) -> torch.Tensor:
    """``F.interpolate(x, ...)`` of ``spec`` as the verifier's copies write it: each axis
    by the weights the model's kernel uses (:func:`axis_matrices`), in ``x``'s dtype.

    Args:
        x: ``[N, C, *spatial]`` (1 to 3 spatial axes).
        spec: the interpolation (its ``dtype``: the model's).
        absolute: map by the weights' absolute values (``|A| x``: the bounds' magnitudes).
    """
    if not 3 <= x.dim() <= 5 or (spec.mode in _AXES and x.dim() - 2 != _AXES[spec.mode]):
        raise BoundUnsupportedError(f"interpolation with mode={spec.mode!r} of a value of "
                                    f"shape {tuple(x.shape)}")
    matrices = axis_matrices(spec, tuple(x.shape[2:]), x.device, x.dtype)
    if absolute and not spec.nearest:
        matrices = tuple(m.abs() for m in matrices)
    return _apply(x, matrices, spec.nearest)


def _resample_params(call: NodeCall) -> InterpolateSpec:
    return call.arg(1, "spec")


register_operation("resample", window=_runs_whole, functions=(resample,),
                   params=_resample_params,
                   help="an interpolation as the verifier's copies write it (one weight "
                   "matrix per spatial axis, read off the model's kernel)")


def _bound(spec: InterpolateSpec) -> Affine | Rearrange | str:
    """A copy for the nearest modes; else linear with the mode's taps and gain (for the
    largest rank, 3 spatial axes: the counts only grow with the axes)."""
    if not spec.settled:
        return INTERPOLATION_NEEDS_SHAPE
    if spec.nearest:
        return Rearrange()
    return Affine(Rounding(spec.gain(3), spec.terms(3)))


def _interval(spec: InterpolateSpec) -> SignedAffine | object:
    """Exact for the nearest modes; else ``A m ± |A| r`` with the mode's roundings."""
    if not spec.settled:
        return INTERPOLATION_NEEDS_SHAPE
    if spec.nearest:
        return REARRANGED
    return SignedAffine(lambda x: resample(x, spec, absolute=True), 0.0, spec.terms(3))


register_bound("resample")(_bound)
register_interval("resample")(_interval)

# an interpolation the verifier's copy did not write out: one whose windows grow with the
# scale, in a copy made without the images' shape
INTERPOLATION_NEEDS_SHAPE = (
    "interpolation with mode='area' or antialias=True is written out for one image shape "
    "(its windows grow with the scale): make the engine for it, BoundEngine(model, "
    "shape=(C, H, W)) (pixelprior.Verifier does so itself)")
register_bound("interpolate")(lambda spec: INTERPOLATION_NEEDS_SHAPE)
register_interval("interpolate")(lambda spec: INTERPOLATION_NEEDS_SHAPE)


def interpolate_terms(spec: InterpolateSpec, rank: int) -> int:
    """Roundings per output of the model's kernel for a value of ``rank`` axes (the first-
    order estimate's count)."""
    return spec.terms(max(1, rank - 2)) + math.ceil(math.log2(max(2, spec.most_taps)))
