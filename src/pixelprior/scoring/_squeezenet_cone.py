"""The cone of one pixel through a SqueezeNet-style network: recompute only what it changes.

A one-pixel change alters only a small cone of activations: after a 3×3 convolution a
3×3 window, after a 2×2 pool half of that, and so on. For a whole population of
candidates (one changed pixel each), :class:`IncrementalForward` caches the clean image's
activations once and, layer by layer, recomputes only a fixed-size window around each
candidate's pixel: the window's receptive field is gathered from the cached (padded) clean
activation, the previous layer's changed window is laid over it, and the layer runs on
that patch without padding. Once the window covers the whole feature map (or a layer it
does not know comes up) the rows continue through the rest of the network as usual.

This is the idea of Krypton (Nakandala et al., SIGMOD 2019) for occlusion explanations,
hand-written because no library offers it for PyTorch. It supports SqueezeNet-style
networks: ``model.normalize`` → ``model.features`` (an ``nn.Sequential`` of ``Conv2d``,
``MaxPool2d``, pointwise layers and :class:`~pixelprior.models.Fire`) → ``model.classifier``;
:func:`incremental_forward` returns ``None`` for anything else, and the attack then uses
the full forward pass. Results equal the full pass to float tolerance (the convolutions
run on other shapes, so the last bits may differ); ``tests/test_incremental.py`` checks
scores and labels against the full pass.

How much it saves depends on how much of the network's work lies at high resolution: for
the 32×32 CIFAR SqueezeNet most of it sits in the 4×4 stage, which one pixel changes
entirely (``benchmarks/engines.py`` prints the measured ratio and the machine's ceiling).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..models import Fire, SqueezeNet, SqueezeNetCifar

POINTWISE = (nn.ReLU, nn.Identity, nn.BatchNorm2d, nn.Dropout, nn.LeakyReLU, nn.GELU,
             nn.SiLU, nn.Sigmoid, nn.Tanh)


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


@dataclass(frozen=True)
class Window:
    """A fixed-size window per row: ``values [N, C, h, w]`` whose top-left corner is at
    ``(top[n], left[n])`` of a ``height × width`` feature map; outside it the map equals
    the clean image's."""

    values: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor
    height: int
    width: int

    @property
    def covers_map(self) -> bool:
        return self.values.shape[-2:] == (self.height, self.width)


@dataclass(frozen=True)
class _Axis:
    """Geometry of a sliding-window layer along one axis."""

    kernel: int
    stride: int
    padding: int

    def out_size(self, window: int, n_out: int) -> int:
        """Most outputs a window of ``window`` changed inputs can reach."""
        return min((window + self.kernel - 2) // self.stride + 1, n_out)

    def out_origin(self, origin: torch.Tensor, size: int, n_out: int) -> torch.Tensor:
        """First reachable output, shifted so that a window of ``size`` fits the map."""
        first = torch.div(origin + self.padding - self.kernel + 1 + self.stride - 1,
                          self.stride, rounding_mode="floor")
        return first.clamp(0, n_out - size)

    def pads(self, n_in: int, n_out: int) -> tuple[int, int]:
        """Padding (before, after) that keeps every receptive field inside the cache."""
        after = (n_out - 1) * self.stride - self.padding + self.kernel - n_in
        return self.padding, max(0, after)


class _Pointwise:
    """A layer that maps each position on its own (ReLU, BN, 1×1 stride-1 conv, ...)."""

    spatial = False

    def __init__(self, fn) -> None:
        self.fn = fn

    def clean(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def window(self, window: Window, cache) -> Window:
        return Window(self.fn(window.values), window.top, window.left, window.height,
                      window.width)


class _Spatial:
    """A sliding-window layer: ``op`` runs on a patch without padding; the missing
    padding comes from the cached clean input, padded with ``pad_value``."""

    spatial = True

    def __init__(self, clean_fn, patch_fn, kernel, stride, padding, pad_value: float) -> None:
        self.clean_fn, self.patch_fn, self.pad_value = clean_fn, patch_fn, pad_value
        (ky, kx), (sy, sx), (py, px) = _pair(kernel), _pair(stride), _pair(padding)
        self.axes = (_Axis(ky, sy, py), _Axis(kx, sx, px))

    def clean(self, x: torch.Tensor) -> torch.Tensor:
        return self.clean_fn(x)

    def padded(self, x: torch.Tensor, out_shape: tuple[int, int]) -> torch.Tensor:
        """The clean input, padded for every receptive field, as ``[B, H', W', C]``."""
        (top, bottom), (left, right) = (axis.pads(n_in, n_out) for axis, n_in, n_out in
                                        zip(self.axes, x.shape[-2:], out_shape, strict=True))
        padded = F.pad(x, (left, right, top, bottom), value=self.pad_value)
        return padded.permute(0, 2, 3, 1).contiguous()

    def window(self, window: Window, cache) -> Window:
        padded, owner, out_shape = cache
        ay, ax = self.axes
        h = ay.out_size(window.values.shape[-2], out_shape[0])
        w = ax.out_size(window.values.shape[-1], out_shape[1])
        top = ay.out_origin(window.top, h, out_shape[0])
        left = ax.out_origin(window.left, w, out_shape[1])
        rows = top[:, None] * ay.stride - ay.padding + torch.arange(
            (h - 1) * ay.stride + ay.kernel, device=top.device)  # input rows, unpadded
        cols = left[:, None] * ax.stride - ax.padding + torch.arange(
            (w - 1) * ax.stride + ax.kernel, device=top.device)
        patch = self._patch(padded, owner, window, rows, cols)
        return Window(self.patch_fn(patch), top, left, *out_shape)

    def _patch(self, padded, owner, window: Window, rows, cols) -> torch.Tensor:
        """Clean receptive field with the changed window laid over it → ``[N, C, r, c]``
        (channels-last memory, which oneDNN's convolutions prefer)."""
        ay, ax = self.axes
        clean = padded[owner[:, None, None], (rows + ay.padding)[:, :, None],
                       (cols + ax.padding)[:, None, :]]
        h, w = window.values.shape[-2:]
        ry, rx = rows - window.top[:, None], cols - window.left[:, None]
        inside = (((ry >= 0) & (ry < h))[:, :, None] & ((rx >= 0) & (rx < w))[:, None, :])
        row_ids = torch.arange(len(owner), device=owner.device)[:, None, None]
        changed = window.values.permute(0, 2, 3, 1)[row_ids, ry.clamp(0, h - 1)[:, :, None],
                                                    rx.clamp(0, w - 1)[:, None, :]]
        return torch.where(inside[..., None], changed, clean).permute(0, 3, 1, 2)


def _conv_step(conv: nn.Conv2d):
    if conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0):
        return _Pointwise(conv)
    return _Spatial(conv, lambda patch: F.conv2d(patch, conv.weight, conv.bias, conv.stride,
                                                 0, 1, conv.groups),
                    conv.kernel_size, conv.stride, conv.padding, 0.0)


def _pool_step(pool: nn.MaxPool2d):
    stride = pool.stride if pool.stride is not None else pool.kernel_size
    return _Spatial(pool, lambda patch: F.max_pool2d(patch, pool.kernel_size, stride),
                    pool.kernel_size, stride, pool.padding, float("-inf"))


def _fire_steps(fire: Fire) -> list:
    """Squeeze (pointwise), then both expands on one window (the 3×3's)."""

    def squeeze(x):
        return fire.squeeze_activation(fire.squeeze_bn(fire.squeeze(x)))

    def expand_1x1(x):
        return fire.expand1x1_activation(fire.expand1x1_bn(fire.expand1x1(x)))

    def expand(x):
        e3 = fire.expand3x3_activation(fire.expand3x3_bn(fire.expand3x3(x)))
        return torch.cat([expand_1x1(x), e3], 1)

    def expand_patch(patch):
        e3 = F.conv2d(patch, fire.expand3x3.weight, fire.expand3x3.bias)
        e3 = fire.expand3x3_activation(fire.expand3x3_bn(e3))
        return torch.cat([expand_1x1(patch[:, :, 1:-1, 1:-1]), e3], 1)

    return [_Pointwise(squeeze), _Spatial(expand, expand_patch, 3, 1, 1, 0.0)]


def _steps(layer: nn.Module) -> list | None:
    """The incremental steps of one feature layer, or ``None`` if it is not supported."""
    if isinstance(layer, Fire) and layer.expand3x3.kernel_size == (3, 3) and (
            layer.expand3x3.padding == (1, 1) and layer.expand3x3.stride == (1, 1)
            and layer.squeeze.kernel_size == (1, 1) and layer.expand1x1.kernel_size == (1, 1)):
        return _fire_steps(layer)
    if isinstance(layer, nn.Conv2d) and layer.dilation == (1, 1) and (
            layer.padding_mode == "zeros" and not isinstance(layer.padding, str)):
        return [_conv_step(layer)]
    if isinstance(layer, nn.MaxPool2d) and layer.dilation == 1 and not layer.return_indices:
        return [_pool_step(layer)]
    if isinstance(layer, POINTWISE):
        return [_Pointwise(layer)]
    return None


def _unwrap(model: nn.Module) -> nn.Module:
    """The SqueezeNet inside the attack's fast copy (``ChannelsLast``) or the model."""
    inner = getattr(model, "model", None)
    return inner if isinstance(inner, (SqueezeNet, SqueezeNetCifar)) else model


def incremental_forward(model: nn.Module) -> IncrementalForward | None:
    """An :class:`IncrementalForward` for ``model``, or ``None`` when it is not supported."""
    net = _unwrap(model)
    if not isinstance(net, (SqueezeNet, SqueezeNetCifar)) or net.training:
        return None
    return IncrementalForward(net, channels_last=net is not model)


@dataclass
class CleanCache:
    """What one set of clean images contributes to every query: per step its padded
    input (up to the switch to full passes) and the activation at the switch."""

    images: torch.Tensor
    padded: list[torch.Tensor]
    shapes: list[tuple[int, int]]
    switch: int
    at_switch: torch.Tensor
    window_sizes: list[tuple[int, int]]


class IncrementalForward:
    """Scores of one-pixel changes of cached clean images (see the module docstring).

    >>> engine = IncrementalForward(model)
    >>> cache = engine.prepare(images)                     # [B, C, H, W] in [0, 1]
    >>> logits = engine(cache, owner, y, x, colour)        # rows: image, pixel, colour
    """

    def __init__(self, model: SqueezeNet | SqueezeNetCifar, channels_last: bool = False) -> None:
        self.model = model
        self.channels_last = channels_last
        self.steps: list = []
        self.first_unsupported = len(model.features)
        for i, layer in enumerate(model.features):
            steps = _steps(layer)
            if steps is None:
                self.first_unsupported = i
                break
            self.steps.extend((i, step) for step in steps)

    @torch.inference_mode()
    def prepare(self, images: torch.Tensor) -> CleanCache:
        """Run the clean images once, keeping what the windows need."""
        x = self.model.normalize(images)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        h, w = 1, 1
        padded, shapes, sizes = [], [], []
        switch = len(self.steps)
        for n, (_, step) in enumerate(self.steps):
            if (h, w) == tuple(x.shape[-2:]) and n > 0:
                switch = n
                break
            out = step.clean(x)
            if step.spatial:
                ay, ax = step.axes
                shape = tuple(out.shape[-2:])
                padded.append(step.padded(x, shape))
                h, w = ay.out_size(h, shape[0]), ax.out_size(w, shape[1])
            else:
                padded.append(None)
                shape = tuple(out.shape[-2:])
            shapes.append(shape)
            sizes.append((h, w))
            x = out
        return CleanCache(images, padded, shapes, switch, x, sizes)

    @torch.inference_mode()
    def __call__(self, cache: CleanCache, owner: torch.Tensor, y: torch.Tensor,
                 x: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
        """Logits of rows ``n``: image ``owner[n]`` with pixel ``(y[n], x[n])`` set to
        ``colour[n]`` (values in [0, 1]) → ``[N, K]``."""
        value = self.model.normalize(colour.to(cache.images.dtype)[:, :, None, None])
        height, width = cache.images.shape[-2:]
        window = Window(value, y, x, height, width)
        for n in range(cache.switch):
            step = self.steps[n][1]
            window = step.window(window, (cache.padded[n], owner, cache.shapes[n]))
        full = window.values if window.covers_map else self._materialize(window, cache, owner)
        return self._finish(full, cache)

    def _materialize(self, window: Window, cache: CleanCache, owner: torch.Tensor):
        """The full feature map of every row: the clean map with the window written in."""
        full = cache.at_switch[owner].clone()
        h, w = window.values.shape[-2:]
        rows = (window.top[:, None] + torch.arange(h, device=owner.device))[:, :, None]
        cols = (window.left[:, None] + torch.arange(w, device=owner.device))[:, None, :]
        ids = torch.arange(len(owner), device=owner.device)[:, None, None]
        full.permute(0, 2, 3, 1)[ids, rows, cols] = window.values.permute(0, 2, 3, 1)
        return full

    def _finish(self, x: torch.Tensor, cache: CleanCache) -> torch.Tensor:
        """The layers after the switch, as the model runs them."""
        layer_index = self.steps[cache.switch][0] if cache.switch < len(self.steps) else (
            self.first_unsupported)
        if cache.switch < len(self.steps) and self._mid_fire(cache.switch):
            x = self.steps[cache.switch][1].clean(x)  # the expand half of a fire module
            layer_index += 1
        x = self.model.features[layer_index:](x)
        return torch.flatten(self.model.classifier(x), 1)

    def _mid_fire(self, n: int) -> bool:
        """Whether step ``n`` is the second step of a fire module."""
        return n > 0 and self.steps[n][0] == self.steps[n - 1][0]
