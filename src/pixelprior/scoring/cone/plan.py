"""The plan of one image size: per node a step that runs it on windows of a pixel's cone
or on full tensors, what the clean pass must keep, and the work saved.

Window sizes and origins depend only on the graph and the image size, never on the rows
of a call, so a row's scores do not depend on the other rows of its batch's shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import fx

from .geometry import Box, Slide, union
from .graph import Resolved, TracedGraph, describe
from .runtime import Gather, Query, Window, clean_key, gather
from .table import WindowRule

__all__ = ["MIN_FULL_MACS", "MIN_SAVING", "Plan", "Planner"]

# Below this many multiply-accumulates per image a full pass of a chunk costs about what
# the cone's per-call index work does (an estimate, not a measurement): not worth it.
MIN_FULL_MACS = 2_000_000
# The cone must leave at least this share of the network's multiply-accumulates undone.
MIN_SAVING = 0.25

STATIC, WINDOW, FULL = "static", "window", "full"


# ------------------------------------------------------------------ steps
class InputStep:
    """The changed pixel: a 1×1 window of the color."""

    def __init__(self, node: fx.Node, box: Box) -> None:
        self.node, self.box = node, box

    def run(self, q: Query, env: dict) -> Any:
        return q.window(q.color[:, :, None, None], self.box)


class PointwiseStep:
    """The node's own op on window values (expanded to one box where they differ)."""

    def __init__(self, node: fx.Node, resolved: Resolved, call: Any, box: Box,
                 expand: dict[fx.Node, Gather]) -> None:
        self.node, self.resolved, self.call, self.box = node, resolved, call, box
        self.expand = expand

    def arguments(self, q: Query, env: dict) -> tuple[tuple, dict]:
        """The node's arguments with windows as value tensors on this step's box."""
        def value(n: fx.Node):
            v = env[n]
            if not isinstance(v, Window):
                return v
            return self.expand[n](q, v) if n in self.expand else v.values

        return fx.node.map_arg(self.node.args, value), fx.node.map_arg(self.node.kwargs, value)

    def run(self, q: Query, env: dict) -> Any:
        args, kwargs = self.arguments(q, env)
        return q.window(self.call(*args, **kwargs), self.box)


class SpatialStep:
    """A sliding-window layer on the window's receptive field."""

    def __init__(self, node: fx.Node, resolved: Resolved, source: fx.Node, gather: Gather,
                 slide: Slide, box: Box) -> None:
        self.node, self.resolved, self.source = node, resolved, source
        self.gather, self.slide, self.box = gather, slide, box

    def run(self, q: Query, env: dict) -> Any:
        return q.window(self.slide.patch(self.gather(q, env[self.source])), self.box)


class FullStep:
    """The node as the model runs it, on full tensors (windowed inputs materialised)."""

    def __init__(self, node: fx.Node, resolved: Resolved, call: Any) -> None:
        self.node, self.resolved, self.call = node, resolved, call

    def arguments(self, q: Query, env: dict) -> tuple[tuple, dict]:
        """The node's arguments with windows materialised."""
        def value(n: fx.Node):
            return q.full(n, env[n])

        return fx.node.map_arg(self.node.args, value), fx.node.map_arg(self.node.kwargs, value)

    def run(self, q: Query, env: dict) -> Any:
        args, kwargs = self.arguments(q, env)
        return self.call(*args, **kwargs)


class ShapeStep(FullStep):
    """``size``/``shape``/``dim`` of a window: from the map's shape, nothing materialised."""

    def __init__(self, node: fx.Node, resolved: Resolved, call: Any, shapes: dict) -> None:
        super().__init__(node, resolved, call)
        self.shapes = shapes

    def run(self, q: Query, env: dict) -> Any:
        def value(n: fx.Node):
            v = env[n]
            if isinstance(v, Window) or (not isinstance(v, torch.Tensor)
                                         and n in self.shapes):
                # a window, or an engine's own form of a whole value (the bounds'
                # zonotope of a max pool's output): its shape as the model's, per row
                return torch.empty((q.owner.shape[0], *self.shapes[n][1:]), device="meta")
            return v

        return self.call(*fx.node.map_arg(self.node.args, value),
                         **fx.node.map_arg(self.node.kwargs, value))


class OutputStep(FullStep):
    """The graph's output."""

    def __init__(self, node: fx.Node) -> None:
        super().__init__(node, Resolved(None, None, None), lambda result: result)


def _broadcasts_per_channel(value: Any) -> bool:
    """A constant that acts on every position alike: not a tensor, or one broadcasting as
    ``[1, C, 1, 1]``."""
    if not isinstance(value, torch.Tensor):
        return True
    shape = value.shape
    return (len(shape) <= 4 and all(s == 1 for s in shape[-2:])
            and (len(shape) < 4 or shape[0] == 1))


# ------------------------------------------------------------------ the plan
@dataclass
class Plan:
    """The steps for one image size.

    Attributes:
        steps: per node its step and the nodes no later step needs (freed after it).
        needs: what the clean pass keeps: node → cache key → (padding, fill).
        first_unsupported: the first operation that could not run on windows, in words.
        cone_macs, full_macs: multiply-accumulates per row of the cone and the full pass.
        boxes: the window box of every windowed node.
        shapes: every node's clean value shape for one image (``None``: not a tensor).
    """

    steps: list[tuple[fx.Node, Any, list[fx.Node]]]
    needs: dict[fx.Node, dict[str, tuple[tuple[int, int, int, int] | None, float]]]
    first_unsupported: str | None
    cone_macs: int
    full_macs: int
    boxes: dict[fx.Node, Box]
    shapes: dict[fx.Node, torch.Size | None]

    @property
    def problem(self) -> str | None:
        """Why the cone does not pay for this image size (``None`` when it does)."""
        if not self.full_macs:
            return "no convolution or linear layer found in the graph"
        saving = 1 - self.cone_macs / self.full_macs
        if saving < MIN_SAVING:
            if self.first_unsupported:
                return (f"the first operation it cannot run on windows, "
                        f"{self.first_unsupported}, comes before it saves work "
                        f"({saving:.0%} saved)")
            return f"the window covers the feature maps too early ({saving:.0%} saved)"
        if self.full_macs < MIN_FULL_MACS:
            return (f"the network is too small to gain ({self.full_macs / 1e6:.2f} MMAC "
                    "per image)")
        return None


class Planner:
    """Builds the :class:`Plan` of one image size from the clean value shapes.

    Args:
        graph: the traced model.
        shapes: each node's clean value shape (``None`` for non-tensors).
        image_map: the image's (height, width).
        device: where the plan's index tables live.
    """

    def __init__(self, graph: TracedGraph, shapes: dict, image_map: tuple[int, int],
                 device: torch.device) -> None:
        self.graph, self.shapes = graph, shapes
        self.kinds: dict[fx.Node, str] = dict.fromkeys(graph.statics, STATIC)
        self.boxes: dict[fx.Node, Box] = {}
        self.steps: list[tuple[fx.Node, Any]] = []
        self.needs: dict = {}
        self.first_unsupported: str | None = None
        self.cone_macs = self.full_macs = 0
        height, width = image_map
        self.input_box = Box(torch.arange(height, device=device),
                             torch.arange(width, device=device), (1, 1), image_map)

    def plan(self) -> Plan:
        """The plan (every node of the graph as a step)."""
        for node in self.graph.nodes:
            if node not in self.graph.statics:
                self._add(node)
        return Plan(self._with_frees(), self.needs, self.first_unsupported, self.cone_macs,
                    self.full_macs, self.boxes, self.shapes)

    def _with_frees(self) -> list[tuple[fx.Node, Any, list[fx.Node]]]:
        """Each step with the values no later step needs (freed as the query goes)."""
        index = {node: i for i, (node, _) in enumerate(self.steps)}
        last: dict[fx.Node, int] = {}
        for node, _ in self.steps:
            for n in node.all_input_nodes:
                if n in index:
                    last[n] = index[node]
        frees: list[list[fx.Node]] = [[] for _ in self.steps]
        for n, i in last.items():
            frees[i].append(n)
        return [(node, step, frees[i]) for i, (node, step) in enumerate(self.steps)]

    def _add(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            self._set(node, InputStep(node, self.input_box), self.input_box)
            return
        if node.op == "output":
            self._full(node, OutputStep(node))
            return
        inputs = node.all_input_nodes
        windows = [n for n in inputs if self.kinds[n] == WINDOW]
        resolved = self.graph.resolve(node)
        rule = resolved.rule if windows else None
        call = self.graph.callable(node)
        of_shape = isinstance(resolved.rule, WindowRule) and resolved.rule.kind == "shape"
        if of_shape and node.args and isinstance(node.args[0], fx.Node) and (
                node.args[0] in windows or self.kinds[node.args[0]] == FULL):
            # a window's, or a whole value's (which an engine may hold in its own form:
            # the bounds' zonotope after a max pool): from the shape, nothing materialised
            self._full(node, ShapeStep(node, resolved, call, self.shapes), materialises=False)
            return
        if not windows or any(self.kinds[n] == FULL for n in inputs):
            self._full(node, FullStep(node, resolved, call))
            return
        outcome = (self._windowed(node, resolved, rule, windows)
                   if isinstance(rule, WindowRule) else rule or "not an operation it knows")
        if isinstance(outcome, str):
            if self.first_unsupported is None:
                self.first_unsupported = f"{describe(node, self.graph.modules)} ({outcome})"
            self._full(node, FullStep(node, resolved, call))

    def _full(self, node: fx.Node, step: Any, materialises: bool = True) -> None:
        """A node run on full tensors: its windowed inputs are materialised."""
        for n in node.all_input_nodes:
            if self.kinds[n] == WINDOW and materialises:
                self._need(n, clean_key(n), None, 0.0)
        self.kinds[node] = FULL
        self.steps.append((node, step))
        macs = self._macs(node, None)
        self.cone_macs += macs
        self.full_macs += macs

    def _set(self, node: fx.Node, step: Any, box: Box) -> None:
        """A node run on windows; a window covering its map is a full tensor from here."""
        self.kinds[node] = FULL if box.covers else WINDOW
        self.boxes[node] = box
        self.steps.append((node, step))
        self.cone_macs += self._macs(node, box.size[0] * box.size[1])
        self.full_macs += self._macs(node, None)

    def _need(self, node: fx.Node, key: str, pads, fill: float) -> None:
        self.needs.setdefault(node, {})[key] = (pads, fill)

    def _windowed(self, node: fx.Node, resolved: Resolved, rule: WindowRule,
                  windows: list[fx.Node]) -> str | None:
        """Add ``node`` as a window step, or say why it cannot be one."""
        if rule.kind == "spatial":
            return self._spatial(node, resolved, rule.slide, windows)
        shape, maps = self.shapes.get(node), {self.boxes[n].map for n in windows}
        if not (isinstance(shape, torch.Size) and len(shape) == 4 and len(maps) == 1
                and tuple(shape[-2:]) in maps):
            return "the output is not a map of the input's size"
        if rule.kind == "pointwise" and (len(windows) > 1 or node.args[0] is not windows[0]):
            return "several windowed inputs"
        if rule.kind == "cat" and any(not isinstance(n, fx.Node) or self.kinds[n] != WINDOW
                                      for n in node.args[0]):
            return "concatenation with values that are not windowed"
        if not rule.channel and not all(_broadcasts_per_channel(self.graph.statics[n])
                                        for n in node.all_input_nodes
                                        if self.kinds[n] == STATIC):
            return "a constant that varies over positions"
        box = union([self.boxes[n] for n in windows])
        expand = {}
        for n in windows:
            if not self.boxes[n].same(box):
                expand[n] = self._expand(n, box)
        step = PointwiseStep(node, resolved, self.graph.callable(node), box, expand)
        self._set(node, step, box)
        return None

    def _expand(self, node: fx.Node, box: Box) -> Gather:
        """Lay ``node``'s window over its clean value within ``box``."""
        key = clean_key(node)
        self._need(node, key, None, 0.0)
        rows = box.top[:, None] + torch.arange(box.size[0], device=box.top.device)
        cols = box.left[:, None] + torch.arange(box.size[1], device=box.top.device)
        return gather(key, rows, cols, (0, 0), self.boxes[node], box.map)

    def _spatial(self, node: fx.Node, resolved: Resolved, slide: Slide,
                 windows: list[fx.Node]) -> str | None:
        source = node.args[0]
        if len(windows) > 1 or source is not windows[0]:
            return "a computed weight"
        shape, inner = self.shapes[node], self.boxes[source]
        in_map, out_map = inner.map, tuple(shape[-2:])
        if not all(slide.fits(in_map[i], out_map[i], i) for i in (0, 1)):
            return "ceil_mode changes the output size"
        top, h, rows, bottom = slide.axis(0, inner.top, inner.size[0], in_map[0], out_map[0])
        left, w, cols, right = slide.axis(1, inner.left, inner.size[1], in_map[1], out_map[1])
        pads = (slide.padding[1], right, slide.padding[0], bottom)
        key = f"padded:{source.name}:{pads}:{slide.pad_value}"
        self._need(source, key, pads, slide.pad_value)
        source_map = (in_map[0] + slide.padding[0] + bottom, in_map[1] + slide.padding[1] + right)
        patch = gather(key, rows, cols, slide.padding, inner, source_map)
        box = Box(top, left, (h, w), out_map)
        self._set(node, SpatialStep(node, resolved, source, patch, slide, box), box)
        return None

    def _macs(self, node: fx.Node, positions: int | None) -> int:
        """Multiply-accumulates per row of a convolution or linear layer on ``positions``
        output positions (``None``: the whole output)."""
        weight, conv = self.graph.weight(node)
        shape = self.shapes.get(node)
        if weight is None or not isinstance(shape, torch.Size):
            return 0
        if conv:
            return weight.numel() * (positions or shape[-2] * shape[-1])
        return weight.numel() * int(torch.Size(shape[1:-1]).numel())
