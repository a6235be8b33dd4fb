"""Where a box's bound comes loose: per activation, the neurons the zonotope engine calls
unstable against those sampled colors show to be, and the width of its intervals
against the sampled ranges.

For each side, one box of colors (``lo = min(0.45, 1 - side)`` per channel, ``hi = lo +
side``) at the center of the first correctly classified test image is bounded by the
verifier's zonotope engine (:class:`~pixelprior.scoring.cone.bounds.BoundEngine`,
float64). Every ReLU it relaxes is recorded: the neurons whose interval ``center ± Σ
|generators|`` holds 0 strictly inside ("unstable", each a new symbol) and the intervals'
summed widths. The same ReLUs' arguments are then evaluated by the model itself at
``--grid``³ colors of the box (corners included): a neuron whose sampled values take both
signs is unstable for certain (the count is a lower bound of the true one), and the
sampled ranges' summed width is a lower bound of the true ranges'.

So a layer where the engine's unstable neurons far outnumber the sampled ones, or its
widths the sampled widths many times over, is where the relaxation (not the network)
loosens the bound; where the counts agree, no ReLU relaxation can be tight, and only
smaller boxes (or splitting on those neurons) would be.

Then the box is bounded again with **the sampled ranges as every ReLU's interval** (each
engine interval cut to the sampled one: DeepZ's relaxation on the cut interval, the
neurons the samples show stable taken as stable): what perfect intermediate bounds
(back-substitution, LP or MILP per neuron, ...) could at best give a single relaxation
pass. It is **not sound** (samples miss the extremes), a what-if: where even it stays
below 0, no tightening of the intermediate bounds proves the box.

With ``--interval``, each ReLU's interval by plain interval bound propagation (IBP,
the interval screen's kind of bound, float64, rounding ignored) is shown beside: where
it were narrower than the zonotope's, cutting the zonotope's intervals to it (a reduced
product) would tighten the bound soundly.

    python benchmarks/unstable_profile.py [--model squeezenet1_1-cifar10]
        [--sides 0.03 0.0625 0.1] [--grid 9] [--interval]
"""

from __future__ import annotations

import argparse
import itertools
import operator
from typing import Any

import torch
from _setup import bench_inputs
from torch import fx

from pixelprior.scoring.cone import bounds
from pixelprior.scoring.cone.zonotope import interval

_relax = bounds._Call.relax
_run = bounds.BoundEngine._run


def recording(records: list[dict], current: dict):
    """``_Call.relax`` and the step runner, wrapped to record each relaxed argument (and,
    where ``current["oracle"]`` holds the sampled ranges, to relax on them instead)."""
    def relax(self, rule: Any, values: torch.Tensor, error: torch.Tensor,
              parts: dict | None = None) -> Any:
        low, high = (t[0] for t in interval(values.double()))  # one box
        records.append({"node": current["node"], "unstable": int(((low < 0) & (high > 0)).sum()),
                        "width": float((high - low).sum()), "symbols": values.shape[1] - 1})
        if current.get("oracle") is None:
            return _relax(self, rule, values, error, parts)
        sampled_low, sampled_high = laid(self, current, len(records) - 1, low.shape)
        return cut_relaxation(self, values, torch.maximum(low, sampled_low),
                              torch.minimum(high, sampled_high), error)

    def run(self, step: Any, call: Any, env: dict, lower: Any, upper: Any) -> Any:
        current["node"], current["step"] = step.node.name, step
        return _run(self, step, call, env, lower, upper)
    return relax, run


def laid(call: Any, current: dict, number: int, shape: torch.Size
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampled range of ReLU ``number`` at the neurons of its argument's window
    (``±inf`` where the window leaves the map: the engine's own interval stays)."""
    full_low, full_high = current["oracle"][number]  # [C, H, W]
    low = torch.full(shape, -torch.inf, dtype=torch.float64)
    high = torch.full(shape, torch.inf, dtype=torch.float64)
    box = getattr(current["step"], "box", None)  # a whole map's step has none
    if box is None or box.covers or len(shape) != 3:
        return full_low.double().reshape(shape), full_high.double().reshape(shape)
    top, left = (int(t[0]) for t in call.origins(box))
    _, h, w = shape
    _, height, width = full_low.shape
    rows = slice(max(0, top), min(height, top + h))
    cols = slice(max(0, left), min(width, left + w))
    inside = (slice(None), slice(rows.start - top, rows.stop - top),
              slice(cols.start - left, cols.stop - left))
    low[inside] = full_low[:, rows, cols].double()
    high[inside] = full_high[:, rows, cols].double()
    return low, high


def cut_relaxation(call: Any, values: torch.Tensor, low: torch.Tensor, high: torch.Tensor,
                   error: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DeepZ's ReLU relaxation of one box's zonotopes on the interval ``[low, high]``
    (float rounding ignored: a what-if)."""
    values = call.grow(values)
    unstable = (low < 0) & (high > 0)
    slope = torch.where(high <= 0, 0.0, 1.0)
    slope = torch.where(unstable, high / (high - low).clamp(min=1e-300), slope)
    shift = torch.where(unstable, -slope * low / 2, 0.0)
    out = values * slope[None, None]
    out[:, 0] += shift
    out = call.add(out, shift[None])
    size = out[:, 0].abs() + out[:, 1:].abs().sum(1)
    return out, torch.zeros_like(error).double(), size


def relu_arguments(model: torch.nn.Module, images: torch.Tensor
                   ) -> tuple[list[tuple[str, torch.Tensor]], torch.Tensor]:
    """Each ReLU's argument (in graph order) for a batch of images, by the model itself,
    and the model's output."""
    traced = fx.symbolic_trace(model)
    found: list[tuple[str, torch.Tensor]] = []

    class Capture(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            is_relu = (n.op == "call_module" and isinstance(self.fetch_attr(n.target),
                                                            torch.nn.ReLU)) or (
                n.op == "call_function" and n.target in (torch.relu, torch.nn.functional.relu))
            if is_relu:
                argument = self.env[n.args[0]]
                found.append((n.name, argument.detach().clone()))
            return super().run_node(n)

    with torch.no_grad():
        logits = Capture(traced).run(images)
    return found, logits


class _Interval(fx.Interpreter):
    """Interval bound propagation over the traced model: each value a ``(low, high)``
    pair; affine layers by center and radius (``|W| r``), the rest monotone; every
    ReLU's argument recorded (graph order)."""

    def __init__(self, module: fx.GraphModule, low: torch.Tensor, high: torch.Tensor
                 ) -> None:
        super().__init__(module)
        self.box, self.found = (low, high), []

    def run_node(self, n: fx.Node) -> Any:
        if n.op in ("placeholder", "output", "get_attr"):
            return self.box if n.op == "placeholder" else super().run_node(n)
        args = self.map_nodes_to_values(n.args, n)
        kwargs = self.map_nodes_to_values(n.kwargs, n)
        target = self.fetch_attr(n.target) if n.op == "call_module" else n.target
        paired = [isinstance(a, tuple) and len(a) == 2 and isinstance(a[0], torch.Tensor)
                  for a in args]
        if isinstance(target, torch.nn.ReLU) or target in (torch.relu,
                                                            torch.nn.functional.relu):
            low, high = args[0]
            self.found.append((low[0], high[0]))
            return low.clamp(min=0), high.clamp(min=0)
        if isinstance(target, (torch.nn.Conv2d, torch.nn.Linear)):
            low, high = args[0]
            center = target((low + high) / 2)
            radius = (high - low) / 2
            radius = (torch.nn.functional.linear(radius, target.weight.abs())
                      if isinstance(target, torch.nn.Linear) else torch.nn.functional.conv2d(
                          radius, target.weight.abs(), None, target.stride, target.padding,
                          target.dilation, target.groups))
            return center - radius, center + radius
        if target is operator.sub and paired[1]:
            low, high = args[0] if paired[0] else (args[0], args[0])
            return low - args[1][1], high - args[1][0]
        if target is torch.cat:
            return (torch.cat([a[0] for a in args[0]], *args[1:], **kwargs),
                    torch.cat([a[1] for a in args[0]], *args[1:], **kwargs))
        if n.op == "call_method" and n.target in ("size", "dim"):
            return getattr(args[0][0], n.target)(*args[1:])
        if target in (operator.mul, operator.truediv) and not bool(
                (torch.as_tensor(args[1]) > 0).all()):
            raise NotImplementedError(f"{n.format_node()}: a factor that is not > 0")
        if isinstance(target, torch.nn.BatchNorm2d):
            raise NotImplementedError("BatchNorm: fold it first")
        # the rest is monotone in each argument: pools, flatten, dropout, sums, ...
        ends = [[a[k] if p else a for a, p in zip(args, paired, strict=True)] for k in (0, 1)]
        if n.op == "call_method":
            return tuple(getattr(e[0], n.target)(*e[1:], **kwargs) for e in ends)
        return tuple(target(*e, **kwargs) for e in ends)


def interval_ranges(model: torch.nn.Module, image: torch.Tensor, y: int, x: int,
                    lo: float, side: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each ReLU's argument interval (graph order) by IBP over the box at ``(y, x)``."""
    from pixelprior.models import fold_batchnorm
    low, high = image.double().clone(), image.double().clone()
    low[:, :, y, x], high[:, :, y, x] = lo, lo + side
    module = fx.symbolic_trace(fold_batchnorm(model).double())
    walker = _Interval(module, low, high)
    with torch.no_grad():
        walker.run(low)
    return walker.found


def sampled(model: torch.nn.Module, image: torch.Tensor, label: int, y: int, x: int,
            lo: float, side: float, grid: int
            ) -> tuple[list[tuple[str, int, float, tuple]], float]:
    """Over ``grid``³ colors of the box at ``(y, x)``, per ReLU: the neurons whose
    sampled arguments take both signs, the sampled ranges' summed width, and the ranges
    (``[C, H, W]`` each); and the lowest margin the model reaches (no bound may exceed
    it: a check of the what-if's arithmetic, not of its soundness)."""
    steps = torch.linspace(lo, lo + side, grid)
    colors = torch.tensor(list(itertools.product(steps, steps, steps)))
    batch = image.repeat(len(colors), 1, 1, 1)
    batch[:, :, y, x] = colors
    arguments, logits = relu_arguments(model, batch)
    out = []
    for name, argument in arguments:
        low, high = argument.amin(0), argument.amax(0)
        out.append((name, int(((low < 0) & (high > 0)).sum()), float((high - low).sum()),
                    (low, high)))
    others = logits.double()
    own = others[:, label].clone()
    others[:, label] = -torch.inf
    return out, float((own - others.amax(1)).min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="squeezenet1_1-cifar10")
    parser.add_argument("--sides", nargs="+", type=float, default=[0.03, 0.0625, 0.1])
    parser.add_argument("--grid", type=int, default=9)
    parser.add_argument("--interval", action="store_true",
                        help="show each ReLU's interval by plain IBP beside")
    parser.add_argument("--max-symbols", type=int, default=30_000,
                        help="the plain pass stops past this many symbols")
    args = parser.parse_args()
    model, images, labels, picked = bench_inputs(1, args.model)
    engine = bounds.BoundEngine(model)
    cache = engine.prepare(images[:1])
    height, width = images.shape[-2:]
    y, x = height // 2, width // 2
    records: list[dict] = []
    current: dict = {}
    bounds._Call.relax, bounds.BoundEngine._run = recording(records, current)
    print(f"{args.model}, test image {int(picked[0])}, pixel ({y}, {x}), "
          f"lo = min(0.45, 1 - side), {args.grid}³ sampled colors\n")
    for side in args.sides:
        lo = min(0.45, 1 - side)
        low = torch.full((1, 3), lo, dtype=torch.float64)
        call = (cache, torch.zeros(1, dtype=torch.long), torch.tensor([y]), torch.tensor([x]),
                low, low + side, labels[:1])
        truth, least = sampled(model, images[:1], int(labels[0]), y, x, lo, side,
                               args.grid)
        current["oracle"] = [t[3] for t in truth]
        records.clear()
        cut = engine.margins(*call)
        current["oracle"] = None
        records.clear()
        try:
            out = engine.margins(*call, max_symbols=args.max_symbols)
            plain = f"{float(out.lower.min()):.4g}, {out.symbols:,} symbols"
        except bounds.TooManySymbols:  # the plain pass would outgrow the memory
            plain = f"not bounded (more than {args.max_symbols:,} symbols)"
        print(f"side {side}: lowest margin bound {plain}; on the sampled ranges (a "
              f"what-if, not sound) {float(cut.lower.min()):.4g}, {cut.symbols:,} "
              f"symbols; the sampled colors' lowest margin {least:.4g}\n")
        ibp = (interval_ranges(model, images[:1], y, x, lo, side) if args.interval
               else None)
        print("| ReLU (engine / model) | unstable: engine | sampled | width: engine | "
              "sampled | ratio |" + (" IBP width | IBP / engine |" if ibp else "")
              + "\n|---|---|---|---|---|---|" + ("---|---|" if ibp else ""))
        if len(truth) != len(records):
            print(f"(the engine relaxed {len(records)} ReLUs, the model ran {len(truth)}: "
                  "matched in order as far as both go)")
        for number, (r, (name, unstable, spread, _)) in enumerate(zip(records, truth,
                                                                        strict=False)):
            ratio = r["width"] / spread if spread > 0 else float("inf")
            extra = ""
            if ibp:
                width = float((ibp[number][1] - ibp[number][0]).sum())
                extra = f" {width:.4g} | {width / r['width']:.3g} |"
            print(f"| {r['node']} / {name} | {r['unstable']:,} | {unstable:,} | "
                  f"{r['width']:.4g} | {spread:.4g} | {ratio:.3g} |{extra}")
        print()


if __name__ == "__main__":
    main()
