"""The verifier's interval screen: sound bounds of the margins over the whole color cube
of many positions at once, by interval bound propagation (:mod:`.intervals`).

For each position the image enters as two images, the pixel set to the box's lowest
colors in one and its highest in the other; every operation applies the interval rule
registered for it in the operation table. Whole images run, as plain batched tensors: no
cone, no symbols, so hundreds of positions cost one batched forward of a few passes
(about 8 ms a position for ResNet8 on 2 CPU cores, in float64). The bounds are loose
where the network was not trained for them, and there they prove nothing: the verifier
bounds what is left with zonotopes, so the screen can only save time (or cost its pass).

The last linear layer is folded into the margins before its bounds are taken (``(W_y -
W_j) h + b_y - b_j`` over the interval of ``h``: the usual IBP specification; far
tighter than ``lower_y - upper_j``).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .graph import TracedGraph, describe
from .intervals import UNIT, Interval, IntervalStep, IntervalUnsupportedError, SignedAffine

__all__ = ["IntervalScreen", "IntervalUnsupportedError"]


class IntervalScreen:
    """Sound lower bounds of the margins ``z_label - z_j`` over boxes of colors of one
    pixel, by interval bound propagation on whole images.

    >>> screen = IntervalScreen(model)
    >>> screen.margins(image, positions, lo, hi, label)   # [P, K]; > 0 proves the box

    Args:
        model: the network (images in [0, 1] → class scores), in eval mode.

    Raises:
        IntervalUnsupportedError: ``torch.fx`` cannot trace the model, or an operation
            that depends on the image has no interval rule (named).
    """

    def __init__(self, model: nn.Module) -> None:
        if model.training:
            raise IntervalUnsupportedError("the model is in training mode; call model.eval()")
        copied = copy.deepcopy(model).to(torch.float64).eval()
        try:
            self.graph = TracedGraph(copied, fold=False, float_as=torch.float64)
        except Exception as exc:  # noqa: BLE001 - tracing fails in many ways
            first = (str(exc).strip().splitlines() or [""])[0]
            raise IntervalUnsupportedError(f"torch.fx cannot trace the model "
                                           f"({type(exc).__name__}: {first})") from None
        self.rules: dict[fx.Node, Any] = {}
        self.params: dict[fx.Node, Any] = {}
        for node in self.graph.nodes:
            if node.op.startswith("call") and node not in self.graph.statics:
                self.rules[node] = self._rule(node)
        self.output = next(n for n in self.graph.nodes if n.op == "output")
        self.head = self._head()

    def _rule(self, node: fx.Node) -> Any:
        resolved = self.graph.resolve(node)
        name = describe(node, self.graph.modules)
        operation = resolved.operation
        if operation is None or operation.interval is None:
            raise IntervalUnsupportedError(f"the interval screen has no rule for {name}")
        if isinstance(resolved.params, str):
            raise IntervalUnsupportedError(f"the interval screen has no rule for {name} "
                                           f"({resolved.params})")
        rule = operation.interval(resolved.params)
        if isinstance(rule, str):
            raise IntervalUnsupportedError(f"the interval screen has no rule for {name} "
                                           f"({rule})")
        check = getattr(rule, "check", None)
        if check is not None:  # a rule that depends on which arguments vary
            varying = {n for n in self.graph.nodes if n not in self.graph.statics}
            check(node, varying)
        self.params[node] = resolved.params
        return rule

    def _head(self) -> tuple[fx.Node, torch.Tensor, torch.Tensor] | None:
        """The last linear layer, when the output is it: ``(node, weight, bias)``."""
        result = self.output.args[0]
        if not isinstance(result, fx.Node) or result not in self.rules:
            return None
        resolved = self.graph.resolve(result)
        if resolved.operation is None or resolved.operation.name != "linear":
            return None
        weight = resolved.params.weight.detach().to(torch.float64)
        bias = resolved.params.bias
        bias = (torch.zeros(weight.shape[0], dtype=torch.float64) if bias is None
                else bias.detach().to(torch.float64))
        return result, weight, bias

    # ------------------------------------------------------------------ bounds
    @torch.inference_mode()
    def margins(self, image: torch.Tensor, positions: torch.Tensor, lo: torch.Tensor,
                hi: torch.Tensor, label: int) -> torch.Tensor:
        """Lower bounds of the margins over each box.

        Args:
            image: float ``[1, C, H, W]`` in [0, 1].
            positions: long ``[P]``, flat ``y · W + x``.
            lo, hi: ``[P, C]``, each box's colors.
            label: the class the margins are taken from.

        Returns:
            float64 ``[P, K]`` (``+inf`` at the label); each entry at most the minimum of
            that margin over the box, for the network in real arithmetic.
        """
        width = image.shape[-1]
        device = image.device
        count = positions.shape[0]
        lower = image.to(torch.float64).expand(count, -1, -1, -1).clone()
        upper = lower.clone()
        rows = torch.arange(count, device=device)
        y, x = (positions // width).to(device), (positions % width).to(device)
        lower[rows, :, y, x] = lo.to(device=device, dtype=torch.float64)
        upper[rows, :, y, x] = hi.to(device=device, dtype=torch.float64)
        value = self._run(Interval(lower, upper))
        if self.head is not None:
            bounds = self._folded(value, label)
        else:
            bounds = _difference(value, label)
        bounds[:, label] = torch.inf
        return bounds

    def _run(self, images: Interval) -> Interval:
        """The bounds of the node the output returns (its input, with a head)."""
        env: dict[fx.Node, Any] = dict(self.graph.statics)
        env[self.graph.input] = images
        stop = self.head[0] if self.head is not None else None
        last_use = self.graph.last_use
        for i, node in enumerate(self.graph.nodes):
            if node in env or node.op in ("placeholder", "get_attr"):
                continue
            if node is stop:
                return env[node.args[0]] if node.args else env[node.kwargs["input"]]
            if node.op == "output":
                return env[node.args[0]]
            env[node] = self._apply(node, env)
            for n in node.all_input_nodes:
                if last_use.get(n) == i and n not in self.graph.statics:
                    del env[n]
        raise AssertionError("the graph has no output")  # pragma: no cover

    def _apply(self, node: fx.Node, env: dict[fx.Node, Any]) -> Any:
        intervals: list[Interval] = []
        argument_of: list[int | str] = []

        def collect(argument: int | str):
            def seen(n: fx.Node) -> Any:
                value = env[n]
                if isinstance(value, Interval):
                    intervals.append(value)
                    argument_of.append(argument)
                return value
            return seen

        for position, arg in enumerate(node.args):
            fx.node.map_arg(arg, collect(position))
        for key, arg in node.kwargs.items():
            fx.node.map_arg(arg, collect(key))

        def call(pick) -> Any:
            counter = iter(range(len(intervals)))

            def value(n: fx.Node) -> Any:
                found = env[n]
                return pick(next(counter), found) if isinstance(found, Interval) else found

            return self.graph.call(node, value)

        def argument(position: int, keyword: str) -> Any:
            given = (node.args[position] if len(node.args) > position
                     else node.kwargs.get(keyword))
            return fx.node.map_arg(given, env.__getitem__)

        return self.rules[node].apply(IntervalStep(call, intervals, argument_of,
                                                   self.params[node], argument))

    def _folded(self, value: Interval, label: int) -> torch.Tensor:
        """Margins through the folded last layer: ``(W_y - W_j) h + b_y - b_j``."""
        _, weight, bias = self.head
        weight, bias = weight.to(value.lower.device), bias.to(value.lower.device)
        rows, offsets = weight[label] - weight, bias[label] - bias
        flat = Interval(value.lower.flatten(1), value.upper.flatten(1))
        middle = (flat.lower + flat.upper) / 2
        radius = (flat.upper - flat.lower) / 2
        rule = SignedAffine(lambda t: F.linear(t, rows.abs()), offsets.abs(),
                            weight.shape[1] + 4)  # the rows' own rounding: a few more
        return rule.bounds(F.linear(middle, rows, offsets), middle, radius).lower


def _difference(value: Interval, label: int) -> torch.Tensor:
    """``lower_label - upper_j``, rounded down."""
    lower = value.lower[:, label:label + 1] - value.upper
    return torch.nextafter(lower - 2 * UNIT * lower.abs(),
                           torch.tensor(-torch.inf, dtype=lower.dtype, device=lower.device))

