"""Where a pixel's cone lies in each feature map.

A windowed value's window has a fixed size per node (a :class:`Box`, the same for every
pixel) and an origin per pixel; a sliding-window layer (:class:`Slide`) maps an input
window to its output window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Box", "Slide", "pair", "union"]


def pair(value: int | tuple[int, ...] | list[int]) -> tuple[int, int]:
    """An int or a pair as a pair (``3`` → ``(3, 3)``)."""
    return (value, value) if isinstance(value, int) else tuple(value)


@dataclass(frozen=True, eq=False)
class Box:
    """Where a windowed value's window lies for every pixel.

    Rows ``top[y] : top[y] + size[0]`` and columns ``left[x] : left[x] + size[1]`` of a map
    of ``map`` (height, width) for the pixel ``(y, x)``.

    Attributes:
        top: long ``[H]``, the window's first row per image row.
        left: long ``[W]``, the window's first column per image column.
        size: the window's (height, width).
        map: the feature map's (height, width).
    """

    top: torch.Tensor
    left: torch.Tensor
    size: tuple[int, int]
    map: tuple[int, int]

    @property
    def covers(self) -> bool:
        """Whether the window is the whole map."""
        return self.size == self.map

    def same(self, other: Box) -> bool:
        """Whether ``other`` places every pixel's window where this box does."""
        return (self.size == other.size and self.map == other.map
                and torch.equal(self.top, other.top) and torch.equal(self.left, other.left))


def _union_axis(tops: list[torch.Tensor], sizes: list[int], n: int) -> tuple[torch.Tensor, int]:
    """The smallest fixed-size span holding every window along one axis (for all pixels)."""
    low = torch.stack(tops).min(0).values
    high = torch.stack([t + s for t, s in zip(tops, sizes, strict=True)]).max(0).values
    size = min(int((high - low).max()), n)
    return low.clamp(max=n - size), size


def union(boxes: list[Box]) -> Box:
    """The union box of windows on one map (the first box when they are all the same).

    Args:
        boxes: boxes on maps of one size.

    Returns:
        A box holding each of them for every pixel.
    """
    first = boxes[0]
    if all(first.same(b) for b in boxes[1:]):
        return first
    top, h = _union_axis([b.top for b in boxes], [b.size[0] for b in boxes], first.map[0])
    left, w = _union_axis([b.left for b in boxes], [b.size[1] for b in boxes], first.map[1])
    return Box(top, left, (h, w), first.map)


@dataclass(frozen=True)
class Slide:
    """A sliding-window layer: its geometry and the layer run on a patch without padding.

    Attributes:
        kernel, stride, padding, dilation: per axis (height, width).
        pad_value: what the padding holds (0, or -inf for max pooling).
        patch: the layer on an unpadded patch ``[N, C, r, c]``.
        floor_only: the layer cannot take ceil-mode overhang (average pooling).
    """

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    pad_value: float
    patch: Callable[[torch.Tensor], torch.Tensor]
    floor_only: bool = False

    def axis(self, i: int, top: torch.Tensor, size: int, n_in: int, n_out: int
             ) -> tuple[torch.Tensor, int, torch.Tensor, int]:
        """The output window along axis ``i`` of an input window (``top [P]``, ``size``).

        Returns:
            ``(top, size, patch rows [P, r] in padded coordinates, padding after)``.
        """
        k, s, p = self.kernel[i], self.stride[i], self.padding[i]
        reach = self.dilation[i] * (k - 1) + 1
        out = min((size + reach - 2) // s + 1, n_out)
        first = torch.div(top + p - reach + s, s, rounding_mode="floor")  # first reached
        out_top = first.clamp(0, n_out - out)
        rows = out_top[:, None] * s + torch.arange((out - 1) * s + reach, device=top.device)
        return out_top, out, rows, max(0, (n_out - 1) * s - p + reach - n_in)

    def fits(self, n_in: int, n_out: int, i: int) -> bool:
        """Whether an output of ``n_out`` along axis ``i`` is what this layer can give."""
        reach = self.dilation[i] * (self.kernel[i] - 1) + 1
        floor = (n_in + 2 * self.padding[i] - reach) // self.stride[i] + 1
        return n_out == floor or not self.floor_only
