"""A box of colors bounded by samples and a bound of the gradient: a grid of colors the
model evaluates, plus how far the function can move between grid points.

For a box ``B`` of one pixel's colors, every activation ``x_n`` (and every margin) is a
Lipschitz function of the three colors. If ``|∂x_n/∂c_d| ≤ L_{n,d}`` everywhere in ``B``,
and every color of ``B`` lies within ``h_d`` of a grid point along each axis ``d``, then

    min over B of x_n  ≥  min over the grid of x_n  −  Σ_d L_{n,d} h_d

(the mean value theorem along the segment to the nearest grid point; for a ReLU network
the function is piecewise linear, so along any segment its derivative is almost
everywhere that of one of the linear pieces it crosses). The grid costs ``m³`` forward
passes; the slack shrinks with ``h = side / (2 (m - 1))``.

The gradient bound ``L`` is the new part. The derivatives of every activation with
respect to the pixel's three colors are carried forward (forward mode) as a zonotope per
color axis: exact through the affine operations, and at each ReLU whose argument can take
both signs over ``B`` (decided by the same grid-and-gradient bound, layer by layer) the
unknown derivative ``D ∈ [0, 1]`` times the incoming derivative ``t`` is enclosed as
``t / 2 ± |t| / 2`` (a new symbol per neuron and axis); a 2×2 max pool whose winner is
not certain takes the first candidate's derivative plus ``D_i (t_i - t_0)`` for every
other candidate that can win (the convex hull of theirs). Unlike a zonotope of the
values, whose relaxation errors widen the intervals that decide which ReLUs are
unstable, which then widen the next errors (the collapse measured by
``unstable_profile.py``), here the intervals come from the samples and only their slack
depends on the relaxation, and the slack is divided by the grid's density.

A prototype to measure tightness, beside the verifier's zonotope bound of the same box:
float64 rounding is not yet proved (the grid's values are the float64 model's, the
derivative zonotopes ignore their own rounding), so its bounds are not yet a proof.
Operations: convolutions, eval BatchNorm, ReLU, max pools (kernel = stride, no padding),
average pools, additions, concatenations, flatten, linear, constant shifts and scales.

    python benchmarks/lipschitz_grid.py [--model squeezenet1_1-cifar10]
        [--sides 0.0625 0.125 0.25 0.5 1] [--grid 9]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import operator
import time
from typing import Any

import torch
import torch.nn.functional as F
from _setup import bench_inputs
from torch import fx, nn

from pixelprior.scoring.cone import bounds


class GridRange(fx.Interpreter):
    """Every node's smallest and largest value over a batch (one pass; ranges are taken
    as each node runs, before a later in-place ReLU can overwrite it)."""

    def __init__(self, module: fx.GraphModule) -> None:
        super().__init__(module)
        self.ranges: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if isinstance(out, torch.Tensor) and out.is_floating_point() and out.dim() >= 2:
            low, high = out.amin(0), out.amax(0)
            if n.name in self.ranges:  # another chunk of the grid
                low = torch.minimum(low, self.ranges[n.name][0])
                high = torch.maximum(high, self.ranges[n.name][1])
            self.ranges[n.name] = (low.clone(), high.clone())
        return out


class TooManySymbols(Exception):
    """The derivative zonotopes outgrew ``--max-symbols``."""


class Tangents:
    """Derivatives w.r.t. the pixel's colors: rows ``[R, *shape]``, row ``r`` belongs to
    color axis ``axis[r]``; rows 0-2 are the exact parts, the rest one symbol each in
    ``[-1, 1]`` (symbols are global: a value holds the first ``R`` of them)."""

    def __init__(self, limit: int) -> None:
        self.axis: list[int] = [0, 1, 2]
        self.limit = limit

    def pad(self, t: torch.Tensor) -> torch.Tensor:
        missing = len(self.axis) - t.shape[0]
        if missing == 0:
            return t
        return torch.cat([t, t.new_zeros((missing, *t.shape[1:]))])

    def size(self, t: torch.Tensor) -> torch.Tensor:
        """``[3, *shape]``: per axis, the largest derivative the zonotope allows."""
        axis = torch.tensor(self.axis[:t.shape[0]])
        return torch.stack([t[axis == d].abs().sum(0) for d in range(3)])

    def fresh(self, radius: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        """New symbol rows: one per (axis, neuron) of ``where`` with a nonzero radius
        (``radius`` ``[3, *shape]``)."""
        rows = []
        flat_where = where.reshape(-1)
        if len(self.axis) + 3 * int(flat_where.sum()) > self.limit:
            raise TooManySymbols
        for d in range(3):
            r = radius[d].reshape(-1)
            index = torch.nonzero(flat_where & (r > 0)).flatten()
            block = r.new_zeros((len(index), r.numel()))
            block[torch.arange(len(index)), index] = r[index]
            rows.append(block.reshape(len(index), *radius.shape[1:]))
            self.axis.extend([d] * len(index))
        return torch.cat(rows)


class LipschitzGrid:
    """The grid-and-gradient bound of one box (see the module docstring)."""

    def __init__(self, model: nn.Module, max_symbols: int = 20_000) -> None:
        self.max_symbols = max_symbols
        self.model = fx.symbolic_trace(copy.deepcopy(model).double().eval())
        self.modules = dict(self.model.named_modules())

    def bound(self, image: torch.Tensor, label: int, y: int, x: int, lo: torch.Tensor,
              hi: torch.Tensor, grid: int, chunk: int = 256) -> dict[str, Any]:
        steps = [torch.linspace(float(a), float(b), grid, dtype=torch.float64)
                 for a, b in zip(lo, hi, strict=True)]
        colors = torch.tensor(list(itertools.product(*steps)), dtype=torch.float64)
        self.h = (hi - lo).double() / (2 * (grid - 1))
        ranges = GridRange(self.model)
        with torch.no_grad():
            for start in range(0, len(colors), chunk):
                batch = image.double().repeat(min(chunk, len(colors) - start), 1, 1, 1)
                batch[:, :, y, x] = colors[start:start + chunk]
                ranges.run(batch)
        self.ranges = ranges.ranges
        self.log: list[dict] = []
        self.tangents = Tangents(self.max_symbols)
        with torch.no_grad():
            out = self._forward(image.shape[1:], y, x)
        return self._margins(out, label)

    # ------------------------------------------------------------------ value bounds
    def interval(self, node: fx.Node, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = self.ranges[node.name]
        slack = (self.tangents.size(t) * self.h.view(3, *[1] * (t.dim() - 1))).sum(0)
        return low - slack, high + slack

    # ------------------------------------------------------------------ the pass
    def _forward(self, shape: torch.Size, y: int, x: int) -> torch.Tensor:
        env: dict[str, Any] = {}
        for node in self.model.graph.nodes:
            if node.op == "placeholder":
                t = torch.zeros((3, *shape), dtype=torch.float64)
                for d in range(3):
                    t[d, d, y, x] = 1.0
                env[node.name] = t
            elif node.op == "get_attr":
                env[node.name] = ("const", getattr_path(self.model, node.target))
            elif node.op == "output":
                return env[node.args[0].name]
            else:
                env[node.name] = self._node(node, env)
        raise RuntimeError("no output")

    def _node(self, node: fx.Node, env: dict) -> Any:
        args = list(fx.node.map_arg(node.args, lambda a: env[a.name]))
        if node.op == "call_module":
            module = self.modules[node.target]
            return self._module(node, module, args[0])
        target = node.target
        if target in (torch.relu, F.relu) or target == "relu":
            return self._relu(node.args[0], args[0])
        if target in (operator.add, torch.add, operator.sub, torch.sub, operator.mul,
                      torch.mul, operator.truediv, torch.div):
            return self._arithmetic(target, args)
        if target in (torch.flatten, "flatten"):
            start = args[1] if len(args) > 1 else node.kwargs.get("start_dim", 0)
            assert start == 1, "flatten from dim 1 only"
            return args[0].reshape(args[0].shape[0], -1)
        if target is torch.cat:
            tensors = [self.tangents.pad(t) for t in args[0]]
            dim = args[1] if len(args) > 1 else node.kwargs.get("dim", 0)
            assert dim == 1
            return torch.cat(tensors, 1)
        raise NotImplementedError(f"{node.op} {target}")

    def _arithmetic(self, target: Any, args: list) -> torch.Tensor:
        a, b = args
        a_const = not isinstance(a, torch.Tensor)
        b_const = not isinstance(b, torch.Tensor)
        if not a_const and not b_const:  # two varying values: a residual sum
            assert target in (operator.add, torch.add)
            return self.tangents.pad(a) + self.tangents.pad(b)
        t, c = (b, a) if a_const else (a, b)
        c = c[1] if isinstance(c, tuple) else c
        if target in (operator.add, torch.add):
            return t
        if target in (operator.sub, torch.sub):
            return -t if a_const else t
        if target in (operator.mul, torch.mul):
            return t * c
        assert not a_const, "a constant divided by a varying value"
        return t / c

    def _module(self, node: fx.Node, module: nn.Module, t: torch.Tensor) -> torch.Tensor:
        if isinstance(module, nn.Conv2d):
            return F.conv2d(t, module.weight, None, module.stride, module.padding,
                            module.dilation, module.groups)
        if isinstance(module, nn.BatchNorm2d):
            scale = module.weight / torch.sqrt(module.running_var + module.eps)
            return t * scale.view(1, -1, 1, 1)
        if isinstance(module, nn.ReLU):
            return self._relu(node.args[0], t)
        if isinstance(module, nn.MaxPool2d):
            return self._max_pool(node.args[0], module, t)
        if isinstance(module, nn.AdaptiveAvgPool2d):
            assert tuple(_pair(module.output_size)) == (1, 1)
            return t.mean((2, 3), keepdim=True)
        if isinstance(module, (nn.Dropout, nn.Identity)):
            return t
        if isinstance(module, nn.Flatten):
            return t.reshape(t.shape[0], -1)
        if isinstance(module, nn.Linear):
            return t @ module.weight.T
        raise NotImplementedError(type(module).__name__)

    def _relu(self, argument: fx.Node, t: torch.Tensor) -> torch.Tensor:
        t = self.tangents.pad(t)
        low, high = self.interval(argument, t)
        sampled_low, sampled_high = self.ranges[argument.name]
        unstable = (low < 0) & (high > 0)
        self.log.append({"node": argument.name, "unstable": int(unstable.sum()),
                         "sampled": int(((sampled_low < 0) & (sampled_high > 0)).sum()),
                         "width": float((high - low).clamp(min=0).sum()),
                         "sampled_width": float((sampled_high - sampled_low).sum()),
                         "symbols": len(self.tangents.axis) - 3})
        size = self.tangents.size(t)
        out = torch.where(high <= 0, 0.0, torch.where(unstable, 0.5, 1.0))[None] * t
        return torch.cat([out, self.tangents.fresh(size / 2, unstable)])

    def _max_pool(self, argument: fx.Node, module: nn.MaxPool2d, t: torch.Tensor
                  ) -> torch.Tensor:
        k, s, p = _pair(module.kernel_size), _pair(module.stride), _pair(module.padding)
        assert k == s and p == (0, 0) and not module.ceil_mode and _pair(module.dilation) == (1, 1)
        t = self.tangents.pad(t)
        low, high = self.interval(argument, t)  # the candidates' values
        r, c, height, width = t.shape
        ho, wo = height // k[0], width // k[1]

        def windows(v: torch.Tensor) -> torch.Tensor:  # [..., C, Ho, Wo, k*k]
            v = v[..., :ho * k[0], :wo * k[1]]
            v = v.reshape(*v.shape[:-2], ho, k[0], wo, k[1])
            return v.movedim(-3, -2).reshape(*v.shape[:-4], ho, wo, k[0] * k[1])
        lows, highs, rows = windows(low), windows(high), windows(t)
        first = lows.argmax(-1, keepdim=True)  # the candidate of the largest lower bound
        can_win = highs >= lows.amax(-1, keepdim=True)
        base = rows.gather(-1, first[None].expand(r, *first.shape)).squeeze(-1)
        others = can_win & (torch.arange(k[0] * k[1]) != first)
        out = base.clone()
        fresh = []
        for i in range(k[0] * k[1]):
            where = others[..., i]
            if not where.any():
                continue
            difference = rows[..., i] - base
            out = out + torch.where(where, difference / 2, 0.0)
            fresh.append((self.tangents.size(difference) / 2, where))
        news = [self.tangents.fresh(radius, where) for radius, where in fresh]
        self.log.append({"node": f"{argument.name} (max pool)",
                         "unstable": int((can_win.sum(-1) > 1).sum()), "sampled": -1,
                         "width": 0.0, "sampled_width": 0.0,
                         "symbols": len(self.tangents.axis) - 3})
        return torch.cat([out, *news]) if news else out

    # ------------------------------------------------------------------ the margins
    def _margins(self, t: torch.Tensor, label: int) -> dict[str, Any]:
        t = self.tangents.pad(t)
        differences = t[:, label:label + 1] - t  # [R, K]: the margin to each class
        size = self.tangents.size(differences)  # [3, K]
        slack = (size * self.h.view(3, 1)).sum(0)
        slack[label] = 0
        return {"slack": slack, "lipschitz": size, "log": self.log,
                "symbols": len(self.tangents.axis) - 3}


def getattr_path(module: nn.Module, path: str) -> Any:
    for part in path.split("."):
        module = getattr(module, part)
    return module


def _pair(v: Any) -> tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def grid_margins(model: nn.Module, image: torch.Tensor, label: int, y: int, x: int,
                 lo: torch.Tensor, hi: torch.Tensor, grid: int) -> torch.Tensor:
    """The lowest margin to each class over the grid (float64 model)."""
    steps = [torch.linspace(float(a), float(b), grid, dtype=torch.float64)
             for a, b in zip(lo, hi, strict=True)]
    colors = torch.tensor(list(itertools.product(*steps)), dtype=torch.float64)
    least = None
    with torch.no_grad():
        for start in range(0, len(colors), 256):
            batch = image.double().repeat(min(256, len(colors) - start), 1, 1, 1)
            batch[:, :, y, x] = colors[start:start + 256]
            logits = model(batch)
            margins = (logits[:, label:label + 1] - logits).amin(0)
            least = margins if least is None else torch.minimum(least, margins)
    return least


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="squeezenet1_1-cifar10")
    parser.add_argument("--sides", nargs="+", type=float, default=[0.0625, 0.125, 0.25,
                                                                    0.5, 1.0])
    parser.add_argument("--grids", nargs="+", type=int, default=[9])
    parser.add_argument("--zonotope", action="store_true",
                        help="also the verifier's zonotope bound of each box")
    parser.add_argument("--layers", action="store_true", help="per-ReLU table")
    parser.add_argument("--max-symbols", type=int, default=20_000,
                        help="stop a box past this many derivative symbols")
    args = parser.parse_args()
    model, images, labels, picked = bench_inputs(1, args.model)
    model64 = copy.deepcopy(model).double().eval()  # a float64 copy for the grids
    method = LipschitzGrid(model, args.max_symbols)
    height, width = images.shape[-2:]
    y, x = height // 2, width // 2
    label = int(labels[0])
    engine = bounds.BoundEngine(load_again(args.model)) if args.zonotope else None
    cache = engine.prepare(images[:1]) if engine else None
    print(f"{args.model}, test image {int(picked[0])}, pixel ({y}, {x}), "
          f"lo = min(0.45, 1 - side)\n")
    print("| side | grid | grid's lowest margin | slack (of the lowest bound's class) | "
          "bound | symbols | s | zonotope (symbols) |"
          "\n|---|---|---|---|---|---|---|---|")
    for side in args.sides:
        lo = torch.full((3,), min(0.45, 1 - side), dtype=torch.float64)
        hi = lo + side
        zonotope = ""
        if engine is not None:
            low = lo[None]
            try:
                out = engine.margins(cache, torch.zeros(1, dtype=torch.long),
                                     torch.tensor([y]), torch.tensor([x]), low, hi[None],
                                     labels[:1], max_symbols=30_000)
                zonotope = f"{float(out.lower.min()):.4g} ({out.symbols:,})"
            except bounds.TooManySymbols:
                zonotope = "> 30,000 symbols"
        for grid in args.grids:
            began = time.perf_counter()
            try:
                result = method.bound(images[0:1], label, y, x, lo, hi, grid)
            except TooManySymbols:
                print(f"| {side:g} | {grid}³ | | | more than {args.max_symbols:,} "
                      f"symbols | | | {zonotope} |")
                continue
            least = grid_margins(model64, images[0:1], label, y, x, lo, hi, grid)
            seconds = time.perf_counter() - began
            bound = least - result["slack"]
            bound[label] = least[label] = torch.inf
            worst = int(bound.argmin())  # the class of the lowest bound
            print(f"| {side:g} | {grid}³ | {float(least.min()):.4g} | "
                  f"{float(result['slack'][worst]):.4g} | **{float(bound[worst]):.4g}** | "
                  f"{result['symbols']:,} | {seconds:.1f} | {zonotope} |")
            if args.layers:
                print("\n| activation | unstable | sampled | width | sampled width | "
                      "symbols before |\n|---|---|---|---|---|---|")
                for r in result["log"]:
                    print(f"| {r['node']} | {r['unstable']:,} | {r['sampled']:,} | "
                          f"{r['width']:.4g} | {r['sampled_width']:.4g} | "
                          f"{r['symbols']:,} |")
                print()


def load_again(name: str) -> nn.Module:
    from pixelprior import load_model
    return load_model(name).eval()


if __name__ == "__main__":
    main()
