"""The values a query of the cone engine carries: windows of changed rows over a cache of
clean activations, and the patches sliding-window layers gather from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import fx

from .geometry import Box

__all__ = ["OUTSIDE", "FxCache", "Gather", "Query", "Window", "clean_key", "gather"]

OUTSIDE = -(2**40)  # a target index that marks "not in the patch" (any sum stays < 0)


@dataclass(frozen=True)
class Window:
    """The changed window of every row: ``values [N, C, h, w]`` at rows ``top[n]`` and
    columns ``left[n]`` of ``box.map``; elsewhere the map is the clean image's."""

    values: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor
    box: Box


@dataclass
class FxCache:
    """What one set of clean images contributes to every query.

    Attributes:
        images: float ``[B, C, H, W]``, the clean images.
        tensors: per cache key a tensor ``[B, ...]`` (clean activations channels-last,
            padded where a layer needs it).
        plan: the :class:`~pixelprior.scoring.cone.plan.Plan` of these images' size.
    """

    images: torch.Tensor
    tensors: dict[str, torch.Tensor]
    plan: Any


def clean_key(node: fx.Node) -> str:
    """The cache key of a node's clean activation."""
    return f"clean:{node.name}"


class Query:
    """One call's rows and what it computes once (window origins, materialised maps).

    Args:
        cache: the clean images' cache.
        owner, y, x: long ``[N]``: each row's image and pixel.
        color: ``[N, C]``, each row's pixel color.
    """

    def __init__(self, cache: FxCache, owner: torch.Tensor, y: torch.Tensor,
                 x: torch.Tensor, color: torch.Tensor) -> None:
        self.cache, self.owner, self.y, self.x, self.color = cache, owner, y, x, color
        self.ids = torch.arange(owner.shape[0], device=owner.device)
        self._origins: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._full: dict[fx.Node, torch.Tensor] = {}

    def window(self, values: torch.Tensor, box: Box) -> Window | torch.Tensor:
        """A window of ``box`` (the values themselves once it covers the map)."""
        if box.covers:
            return values
        if id(box) not in self._origins:
            self._origins[id(box)] = box.top[self.y], box.left[self.x]
        return Window(values, *self._origins[id(box)], box)

    def full(self, node: fx.Node, value: Any) -> Any:
        """``value`` as a full tensor (a window materialised once per call)."""
        if not isinstance(value, Window):
            return value
        if node not in self._full:
            self._full[node] = self._materialise(node, value)
        return self._full[node]

    def _materialise(self, node: fx.Node, window: Window) -> torch.Tensor:
        """The clean map of every row with its window written in → ``[N, C, H, W]``."""
        source = self.cache.tensors[clean_key(node)]
        _, height, width, channels = source.shape
        full = source.index_select(0, self.owner)
        h, w = window.values.shape[-2:]
        rows = window.top[:, None] + torch.arange(h, device=self.ids.device)
        cols = window.left[:, None] + torch.arange(w, device=self.ids.device)
        flat = (self.ids[:, None, None] * height + rows[:, :, None]) * width + cols[:, None, :]
        values = window.values.permute(0, 2, 3, 1).reshape(-1, channels).to(full.dtype)
        full.view(-1, channels).index_copy_(0, flat.reshape(-1), values)
        return full.permute(0, 3, 1, 2)


# ------------------------------------------------------------------ patches
def _targets(window_rows: torch.Tensor, patch_rows: torch.Tensor, scale: int) -> torch.Tensor:
    """Per image row: where each window row lies in the patch (times ``scale``), or
    :data:`OUTSIDE`; both are ``[P, n]`` in the same coordinates, the patch consecutive."""
    target = window_rows - patch_rows[:, :1]
    inside = (target >= 0) & (target < patch_rows.shape[1])
    return torch.where(inside, target * scale, OUTSIDE)


@dataclass(frozen=True)
class Gather:
    """A patch of a cached clean tensor with a window laid over it.

    The source (``cache.tensors[key]``) is ``[B, H', W', C]``; the patch comes out as
    ``[N, C, r, c]`` in channels-last memory (what oneDNN's convolutions like). Tables are
    per image row / column: ``rows [H, r]`` (source row × source width) and ``cols [W, c]``
    of the patch; ``row_targets [H, h]`` (patch row × ``c``) and ``col_targets [W, w]`` of
    the window, :data:`OUTSIDE` where it leaves the patch.
    """

    key: str
    plane: int  # source height × width
    rows: torch.Tensor
    cols: torch.Tensor
    row_targets: torch.Tensor
    col_targets: torch.Tensor

    def __call__(self, q: Query, window: Window) -> torch.Tensor:
        """The patch of every row of ``q`` with ``window`` laid over it."""
        source = q.cache.tensors[self.key]
        channels = source.shape[-1]
        n, r, c = q.owner.shape[0], self.rows.shape[1], self.cols.shape[1]
        flat = ((q.owner * self.plane)[:, None, None] + self.rows[q.y][:, :, None]
                + self.cols[q.x][:, None, :])
        patch = source.new_empty(n * r * c + 1, channels)  # the last row takes strays
        torch.index_select(source.reshape(-1, channels), 0, flat.reshape(-1), out=patch[:-1])
        target = ((q.ids * (r * c))[:, None, None] + self.row_targets[q.y][:, :, None]
                  + self.col_targets[q.x][:, None, :])
        target = torch.where(target >= 0, target, n * r * c)
        values = window.values.permute(0, 2, 3, 1).reshape(-1, channels)
        patch.index_copy_(0, target.reshape(-1), values.to(patch.dtype))
        return patch[:-1].view(n, r, c, channels).permute(0, 3, 1, 2)


def gather(key: str, rows: torch.Tensor, cols: torch.Tensor, offsets: tuple[int, int],
           inner: Box, source: tuple[int, int]) -> Gather:
    """The :class:`Gather` of a patch over the window ``inner``.

    Args:
        key: the cache key of the source tensor.
        rows, cols: long ``[H, r]`` / ``[W, c]``, the patch in the source's coordinates
            (the map's shifted by ``offsets``).
        offsets: the source's padding before the map (rows, columns).
        inner: the window laid over the patch.
        source: the source's (height, width).

    Returns:
        The gather tables.
    """
    device = rows.device
    window_rows = inner.top[:, None] + offsets[0] + torch.arange(inner.size[0], device=device)
    window_cols = inner.left[:, None] + offsets[1] + torch.arange(inner.size[1], device=device)
    return Gather(key, source[0] * source[1], rows * source[1], cols,
                  _targets(window_rows, rows, cols.shape[1]), _targets(window_cols, cols, 1))
