"""The model's float32 error over a box of colors, proved with signs: a backward bound.

The forward error bound (:mod:`.intervals`' ``error`` rules, the screen's ``unit``)
passes each neuron's error on by ``|A|``: it holds, but it adds the paths from a rounding
to a margin in absolute value, and on a normally trained network they cancel. On the
normally trained ResNet8 it is ~530 times the first-order estimate
(:func:`~.rounding.rounding_error`) even at a single color, so it proves nothing there.

Here the same roundings are carried with their signs. Each operation evaluated in float32
gives ``δ_out = J δ_in + ρ``: the errors of its varying arguments passed on by its local
slopes ``J`` (exact for an affine map; ``s ∈ [min f', max f']`` for an activation between
the real value and the float32 one; a weight in [0, 1] for each element that can be a
window's maximum), and ``|ρ|`` at most the operation's own rounding
(:meth:`~.intervals.IntervalRule.rounding`: ``γ_n (|A| (|x| + e) + |b|)`` for a
convolution, with ``|x| + e`` the magnitudes the float32 model can meet). Unrolled,

``m(float32) - m(real) = Σ_l λ_l · ρ_l``, ``λ_l = ∂ m / ∂ h_l`` along the slopes taken,

and ``|λ_l · ρ_l| <= Σ_i max |λ_l,i| · |ρ_l,i|``. The coefficients ``λ_l`` are enclosed
backwards from the margin, as a center and a radius per neuron (:class:`~.intervals.
Coefficient`; each operation's :meth:`~.intervals.IntervalRule.pull`): a stable ReLU
passes its coefficient on exactly, so paths keep their signs wherever the slopes are sure.
Which slopes are sure is decided with the forward bounds ``[l - e, u + e]`` of the real
value and its float32 error (with ``refine``, ``e`` of each doubtful neuron bounded by its
own backward pass first: :class:`BackwardErrorBound`). At a single color with every
ReLU sure this is exactly the first-order estimate's sum ``Σ |∂m/∂h_l| ρ_l`` (with each
operation's proved ``ρ``, which counts the float32 magnitudes and a few more roundings
than the estimate's: measured 1.0-1.05 times it), now a proof; over a box the unstable
neurons' coefficients widen to include 0.

The float64 arithmetic of the bound is covered too: every pulled coefficient's radius
grows by ``4 γ_N`` of its center's and its own magnitude (``N`` the output elements: any
order of the sums), the activations' products are rounded outward, and the final sum of
nonnegative terms is widened by ``2^-20`` as the forward bounds are.

It runs on whole images (one per box), keeps every node's bounds for the backward pass,
and pulls every margin at once (one block of rows per margin; a reshape pulls its
coefficients back by their order, whatever batch the model's traced sizes hold): about a
forward pass of intervals plus two linear backward passes per margin. Hand-written:
auto_LiRPA's backward (CROWN) bounds the margins, not the float32 evaluation of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import fx

from .graph import check_shape, describe
from .intervals import (
    UNIT,
    Activation,
    BackwardUnsupportedError,
    Coefficient,
    Interval,
    IntervalRule,
    IntervalStep,
    Shape,
    tiled,
    unbounded_as_infinite,
)
from .screen import GROWN, IntervalScreen, _no_nan, _source

__all__ = ["BackwardErrorBound", "BackwardUnsupportedError"]


@dataclass
class _Record:
    """One operation of the forward pass: its rule, its step, its bounds, its rounding."""

    node: fx.Node
    rule: Any
    step: IntervalStep
    out: Interval
    rounding: torch.Tensor


class BackwardErrorBound:
    """Bounds of ``|m(float32) - m(real)|`` of each margin ``z_label - z_j`` over boxes of
    one pixel's colors (the module docstring), on an :class:`~.screen.IntervalScreen`'s
    graph and rules.

    >>> signed = BackwardErrorBound(IntervalScreen(model))
    >>> signed.errors(image, positions, lo, hi, label, unit)   # [P, K]

    Args:
        screen: the interval screen whose graph and rules are bounded.
        refine: before each activation, bound the float32 error of every neuron whose
            slope the forward error leaves in doubt (the real value on one side of a
            kink, within the error of it) by its own backward pass (a row per neuron,
            pulled back through every operation before it), and go on with the smaller
            of the two: fewer doubtful slopes in the layers after it and in the margins'
            pass. On the normally trained ResNet8 at a single color it brings the margin
            bound from ~270 to ~4 times the first-order estimate, at ~1,700 rows (1,420
            of them before the last activation) and ~40 s a box on 2 CPU cores; over
            a box of side 0.01 or more it stays above ~400 times (the neurons whose
            real value crosses a kink there take both slopes, whatever the float32
            error), so the verifier does not use it
            (``benchmarks/refined_error.py``, ``benchmarks/RESULTS.md``).
        refine_rows: rows per pull of the refinement, at least one neuron's (a row per
            box): its memory is rows × the largest value, in float64.

    Raises:
        BackwardUnsupportedError: an operation on the path has no backward rule (named);
            the forward bound (the screen's) still holds there.
    """

    def __init__(self, screen: IntervalScreen, refine: bool = False,
                 refine_rows: int = 512) -> None:
        if isinstance(refine_rows, bool) or not isinstance(refine_rows, int) or refine_rows < 1:
            raise ValueError(f"refine_rows must be a positive integer, got {refine_rows!r}")
        self.screen = screen
        self.refine = refine
        self.refine_rows = refine_rows
        self._feeds_activation = {node for node in screen.rules
                                  if any(isinstance(screen.rules.get(user), Activation)
                                         for user in node.users)}
        for node, rule in screen.rules.items():
            if isinstance(rule, Shape):
                continue  # a constant: no error
            if not isinstance(rule, IntervalRule) or type(rule).pull is IntervalRule.pull:
                raise BackwardUnsupportedError(f"the backward float32 bound has no rule "
                                               f"for {describe(node, screen.graph.modules)}")

    @torch.no_grad()
    def errors(self, image: torch.Tensor, positions: torch.Tensor, lo: torch.Tensor,
               hi: torch.Tensor, label: int, unit: float,
               margins: torch.Tensor | None = None) -> torch.Tensor:
        """Per box and margin, a bound of the model's float32 evaluation error of the
        margin anywhere in the box.

        Args:
            image: float ``[1, C, H, W]`` in [0, 1].
            positions: long ``[P]``, flat ``y · W + x``.
            lo, hi: ``[P, C]``, each box's colors.
            label: the class the margins are taken from.
            unit: the model's unit roundoff (``2^-24`` for float32).
            margins: bool ``[P, K]``, the margins wanted (default: all); the others are
                ``inf``.

        Returns:
            float64 ``[P, K]`` (0 at the label).

        Raises:
            BackwardUnsupportedError: an image of another shape than the one the screen
                was made for (:attr:`~.screen.IntervalScreen.shape`).
        """
        if not 0 <= unit < 2.0**-8:
            raise ValueError(f"unit must be a unit roundoff in [0, 2^-8), got {unit!r}")
        check_shape(self.screen.shape, image, BackwardUnsupportedError)
        lo = lo.to(device=image.device, dtype=torch.float64)
        hi = hi.to(device=image.device, dtype=torch.float64)
        records, owner, last = self._forward(image, positions.to(image.device), lo, hi,
                                             unit)
        classes = self._classes(last)
        wanted = (torch.ones(positions.shape[0], classes, dtype=torch.bool)
                  if margins is None else margins.cpu().bool())
        result = torch.full((positions.shape[0], classes), torch.inf, dtype=torch.float64)
        result[:, label] = 0.0
        others = [j for j in range(classes) if j != label and wanted[:, j].any()]
        if others:
            start, head = self._margins(last, label, others, unit)
            total = head + self._pulled(records, owner, last, start)
            result[:, others] = _no_nan(total * GROWN).view(len(others), -1).T.cpu()
        result[~wanted] = torch.inf  # (a margin another box wanted is computed for all)
        result[:, label] = 0.0
        return result

    # ------------------------------------------------------------------ forward
    def _forward(self, image: torch.Tensor, positions: torch.Tensor, lo: torch.Tensor,
                 hi: torch.Tensor, unit: float
                 ) -> tuple[list[_Record], dict[int, fx.Node], tuple[fx.Node, Interval]]:
        """Every operation's bounds, errors and rounding on the boxes' whole images; the
        owner of each value (by identity), and the value the head reads (or the
        output)."""
        screen = self.screen
        screen._unit = unit
        try:
            images = screen._whole_images(image, positions, lo, hi)
            # constants made in inference mode cannot enter autograd (the pulls): copies
            env: dict[fx.Node, Any] = {
                node: value.clone() if isinstance(value, torch.Tensor)
                and value.is_inference() else value
                for node, value in screen.graph.statics.items()}
            env[screen.graph.input] = images
            owner = {id(images): screen.graph.input}
            records: list[_Record] = []
            stop = screen.head[0] if screen.head is not None else None
            for node in screen.graph.nodes:
                if node in env or node.op in ("placeholder", "get_attr"):
                    continue
                if node is stop or node.op == "output":
                    source = _source(node)
                    return records, owner, (source, env[source])
                rule = screen.rules[node]
                step = screen._step(node, env)
                out = unbounded_as_infinite(rule.apply(step))
                if isinstance(out, Interval) and step.intervals:
                    out.error = screen.proved(node, rule.error(step, out, unit), unit, out)
                    rounding = screen.proved(node, rule.rounding(step, out, unit), unit, out)
                    records.append(_Record(node, rule, step, out, rounding))
                    owner[id(out)] = node
                    if self.refine and node in self._feeds_activation:
                        self._refine(records, owner, node, out)
                env[node] = out
        finally:
            screen._unit = None
        raise AssertionError("the graph has no output")  # pragma: no cover

    def _refine(self, records: list[_Record], owner: dict[int, fx.Node], node: fx.Node,
                out: Interval) -> None:
        """Tighten the float32 error of the neurons of ``node`` (an activation's argument)
        whose activation the forward error leaves able to switch though the real value
        is on one side: each by its own backward bound (identity rows pulled back
        through the operations so far), kept where it is below the forward one."""
        lower, error = out.lower, out.error
        doubtful = _rows(self._doubtful(node, out))
        wanted = doubtful.any(0).nonzero().squeeze(1)
        if not len(wanted):
            return
        boxes, size = doubtful.shape
        refined = _rows(error).clone()
        for chunk in wanted.split(max(1, self.refine_rows // boxes)):
            rows = len(chunk) * boxes
            center = torch.zeros(rows, size, dtype=torch.float64, device=lower.device)
            center[torch.arange(rows, device=lower.device),
                   chunk.repeat_interleave(boxes)] = 1.0
            center = center.view(rows, *lower.shape[1:])
            start = Coefficient(center, torch.zeros_like(center))
            total = _no_nan(self._pulled(records, owner, (node, out), start) * GROWN)
            refined[:, chunk] = torch.minimum(refined[:, chunk],
                                              total.view(len(chunk), boxes).T)
        out.error = refined.view_as(error)

    def _doubtful(self, node: fx.Node, value: Interval) -> torch.Tensor:
        """The neurons of ``value`` (``node``'s) where an activation that reads it can have
        other slopes with the float32 error than over the real values alone (ReLU: the
        real value on one side of 0, within the error of it)."""
        real = Interval(value.lower, value.upper, torch.zeros_like(value.error))
        doubtful = torch.zeros_like(value.lower, dtype=torch.bool)
        for user in node.users:
            rule = self.screen.rules.get(user)
            if isinstance(rule, Activation):
                (least, most), (real_least, real_most) = rule.slopes(value), rule.slopes(real)
                doubtful |= (least != real_least) | (most != real_most)
        return doubtful

    def _classes(self, last: tuple[fx.Node, Interval]) -> int:
        if self.screen.head is not None:
            return self.screen.head[1].shape[0]
        return last[1].lower.flatten(1).shape[1]

    # ------------------------------------------------------------------ backward
    def _margins(self, last: tuple[fx.Node, Interval], label: int, others: list[int],
                 unit: float) -> tuple[Coefficient, torch.Tensor]:
        """The coefficients of the margins ``z_label - z_j`` (``j`` in ``others``, one
        block of rows each) on the value the head reads, and what the head itself rounds
        (``ρ_label + ρ_j`` of the scores; the model compares them without rounding)."""
        _, value = last
        boxes, device = value.lower.shape[0], value.lower.device
        wanted = torch.tensor(others, device=device)
        shape = (len(others) * boxes, *value.lower.shape[1:])
        if self.screen.head is None:
            rows = torch.zeros(len(others), value.lower[0].numel(), dtype=torch.float64,
                               device=device)
            rows[:, label] = 1.0
            rows[torch.arange(len(others), device=device), wanted] = -1.0
            center = rows.repeat_interleave(boxes, 0).view(shape)
            return (Coefficient(center, torch.zeros_like(center)),
                    torch.zeros(shape[0], dtype=torch.float64, device=device))
        node, weight, _ = self.screen.head
        weight = weight.to(device)
        center = (weight[label] - weight[wanted]).repeat_interleave(boxes, 0).view(shape)
        radius = 2 * UNIT * center.abs()
        flat = Interval(value.lower.flatten(1), value.upper.flatten(1),
                        value.error.flatten(1))
        scores = self.screen.proved(node, self.screen.rules[node].rounding_of(flat, unit),
                                    unit)
        head = (scores[:, label:label + 1] + scores[:, wanted]).T.reshape(-1)
        return Coefficient(center, radius), head

    def _pulled(self, records: list[_Record], owner: dict[int, fx.Node],
                last: tuple[fx.Node, Interval], start: Coefficient) -> torch.Tensor:
        """``Σ_l Σ_i max |λ_l,i| ρ_l,i`` per box, the coefficients pulled back from
        ``start`` on the last value."""
        pending: dict[fx.Node, Coefficient] = {last[0]: start}
        total = torch.zeros(start.center.shape[0], dtype=torch.float64,
                            device=start.center.device)
        for record in reversed(records):
            coefficient = pending.pop(record.node, None)
            if coefficient is None:
                continue
            rows = coefficient.center.shape[0]
            total += _rows(coefficient.magnitude() * tiled(record.rounding, rows)).sum(1)
            pulled = record.rule.pull(record.step, record.out, coefficient)
            for value, part in zip(record.step.intervals, pulled, strict=True):
                source = owner[id(value)]
                if source is self.screen.graph.input:
                    continue  # the image is exact
                pending[source] = _added(pending.get(source), part)
        return total


def _rows(value: torch.Tensor) -> torch.Tensor:
    """A value's rows as ``[rows, elements]``, a value of the batch axis alone (``[B]``,
    a gate's mean) included."""
    return value.reshape(value.shape[0], -1)


def _added(kept: Coefficient | None, part: Coefficient) -> Coefficient:
    """The coefficient of a value used twice (a residual's): the sum, its center's
    rounding in the radius."""
    if kept is None:
        return part
    center = kept.center + part.center
    return Coefficient(center, kept.radius + part.radius + 2 * UNIT * center.abs())
