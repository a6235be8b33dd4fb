"""Would back-substitution (CROWN / DeepPoly) prove ResNet8's large color boxes? A
measurement of the route, not the product's engine.

For the bundled ResNet8 (``resnet8-cifar10``), its first correctly classified CIFAR-10 test
image and ``--positions`` positions, one box of colors per side around the pixel's color
(side 1: the whole cube), the lowest margin lower bound of:

* ``zonotope``: the product's bound engine (:class:`~pixelprior.scoring.cone.bounds.
  BoundEngine`, DeepZ);
* ``crown``: back-substitution written here for this network alone: every pre-activation
  neuron of the pixel's cone bounded by back-substituting it to the pixel's colors
  (linear bounds through every earlier layer), ReLUs relaxed by the triangle's upper line
  and CROWN's adaptive lower line (slope 1 where ``u > -l``, else 0), then the margins
  likewise. Neurons outside the cone keep the clean image's value (the cone is found by
  a NaN at the pixel: a superset).

Both are lower bounds in float64 arithmetic (the CROWN prototype without outward rounding,
so sound up to float64 rounding, far below the figures compared); the tighter one proves
boxes with fewer splits. The CROWN
here is a full-image prototype (seconds to minutes a box); its time says nothing about a
windowed implementation.

    python benchmarks/crown_resnet8.py [--positions 2] [--sides 1 0.5 0.25 0.1]
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch
import torch.nn.functional as F

from pixelprior import load_cifar10, load_model, to_float
from pixelprior.experiment import correctly_classified
from pixelprior.scoring.cone.bounds import BoundEngine

DTYPE = torch.float64


def graph_of(model) -> list[tuple[str, str, list[str], object]]:
    """ResNet8 as ``(name, kind, inputs, affine function)`` nodes in order; kinds
    ``input``, ``affine`` (of its inputs), ``relu``."""
    m = model.double()

    def conv_bn(conv, bn):
        def run(t):
            return F.batch_norm(conv(t), bn.running_mean, bn.running_var, bn.weight,
                                bn.bias, False, 0.0, bn.eps)
        return run

    nodes = [("x", "input", [], None),
             ("norm", "affine", ["x"], lambda t: (t - m.mean) / m.std),
             ("stem", "affine", ["norm"], conv_bn(m.stem[0], m.stem[1])),
             ("stem_relu", "relu", ["stem"], None)]
    source = "stem_relu"
    for i, block in enumerate(m.layers):
        first, second = conv_bn(block.conv1, block.bn1), conv_bn(block.conv2, block.bn2)
        shortcut = (conv_bn(block.shortcut[0], block.shortcut[1])
                    if isinstance(block.shortcut, torch.nn.Sequential) else (lambda t: t))
        nodes += [(f"b{i}c1", "affine", [source], first),
                  (f"b{i}r1", "relu", [f"b{i}c1"], None),
                  (f"b{i}c2", "affine", [f"b{i}r1", source],
                   lambda t, s, second=second, shortcut=shortcut: second(t) + shortcut(s)),
                  (f"b{i}r2", "relu", [f"b{i}c2"], None)]
        source = f"b{i}r2"
    nodes.append(("out", "affine", [source], lambda t: m.fc(t.mean((2, 3)))))
    return nodes


class Crown:
    """Back-substitution bounds of one box of colors at one pixel."""

    def __init__(self, nodes, image: torch.Tensor, y: int, x: int, lo: torch.Tensor,
                 hi: torch.Tensor) -> None:
        self.nodes = nodes
        self.kind = {name: (kind, inputs, fn) for name, kind, inputs, fn in nodes}
        self.y, self.x, self.lo, self.hi = y, x, lo.to(DTYPE), hi.to(DTYPE)
        self.fixed = image.to(DTYPE).clone()
        self.fixed[0, :, y, x] = 0  # the input is fixed + the pixel's color
        clean, self.shapes = self._forward(image.to(DTYPE))
        poisoned = image.to(DTYPE).clone()
        poisoned[0, :, y, x] = math.nan
        cone, _ = self._forward(poisoned)
        self.clean = {name: t[0] for name, t in clean.items()}
        self.cone = {name: t[0].isnan().flatten().nonzero().flatten()
                     for name, t in cone.items()}
        self.bias = {}
        for name, kind, inputs, fn in nodes:
            if kind == "affine":
                with torch.no_grad():
                    zeros = [torch.zeros(1, *self.shapes[i], dtype=DTYPE) for i in inputs]
                    self.bias[name] = fn(*zeros)[0]
        self.lower: dict[str, torch.Tensor] = {}
        self.upper: dict[str, torch.Tensor] = {}

    def _forward(self, image):
        values, shapes = {}, {}
        with torch.no_grad():
            for name, kind, inputs, fn in self.nodes:
                if kind == "input":
                    values[name] = image
                elif kind == "relu":
                    values[name] = torch.relu(values[inputs[0]])
                else:
                    values[name] = fn(*[values[i] for i in inputs])
                shapes[name] = values[name].shape[1:]
        return values, shapes

    def lowest(self, start: str, weights: torch.Tensor) -> torch.Tensor:
        """A lower bound of ``<weights[r], node start>`` over the box, per row ``r``."""
        pending = {start: weights}
        const = torch.zeros(weights.shape[0], dtype=DTYPE)
        names = [name for name, *_ in self.nodes]
        for name in reversed(names[:names.index(start) + 1]):
            if name not in pending:
                continue
            coefficients = pending.pop(name)
            kind, inputs, fn = self.kind[name]
            if kind == "input":
                pixel = coefficients[:, :, self.y, self.x]
                const += (coefficients * self.fixed).flatten(1).sum(1)
                const += (pixel.clamp(min=0) * self.lo + pixel.clamp(max=0) * self.hi).sum(1)
                continue
            if kind == "affine":
                const += (coefficients * self.bias[name]).flatten(1).sum(1)
                grads = _transpose(fn, coefficients, [self.shapes[i] for i in inputs])
            else:
                source = inputs[0]
                low, high = self.lower[source], self.upper[source]
                unstable = (low < 0) & (high > 0)
                active = (low >= 0).to(DTYPE)
                up_slope = torch.where(unstable, high / (high - low).clamp(min=1e-300), active)
                up_offset = torch.where(unstable, -low * up_slope, torch.zeros_like(low))
                low_slope = torch.where(unstable, (high > -low).to(DTYPE), active)
                positive, negative = coefficients.clamp(min=0), coefficients.clamp(max=0)
                const += (negative * up_offset).flatten(1).sum(1)
                grads = [positive * low_slope + negative * up_slope]
            for i, grad in zip(inputs, grads, strict=True):
                pending[i] = pending[i] + grad if i in pending else grad
        return const

    def bound_all(self, chunk: int = 512) -> int:
        """Bounds of every ReLU's input (its cone neurons back-substituted); returns the
        unstable neurons."""
        unstable = 0
        for _name, kind, inputs, _fn in self.nodes:
            if kind != "relu":
                continue
            source = inputs[0]
            shape, ids = self.shapes[source], self.cone[source]
            size = math.prod(shape)
            low = self.clean[source].flatten().clone()
            high = low.clone()
            for s in range(0, ids.numel(), chunk):
                part = ids[s:s + chunk]
                rows = torch.arange(part.numel())
                weights = torch.zeros(2 * part.numel(), size, dtype=DTYPE)
                weights[rows, part] = 1.0
                weights[rows + part.numel(), part] = -1.0
                bound = self.lowest(source, weights.view(-1, *shape))
                low[part], high[part] = bound[:part.numel()], -bound[part.numel():]
            self.lower[source], self.upper[source] = low.view(shape), high.view(shape)
            unstable += int(((low < 0) & (high > 0)).sum())
        return unstable

    def margins(self, label: int, classes: int) -> torch.Tensor:
        others = [j for j in range(classes) if j != label]
        weights = torch.zeros(len(others), classes, dtype=DTYPE)
        weights[:, label] = 1.0
        weights[torch.arange(len(others)), others] = -1.0
        return self.lowest("out", weights)


def _transpose(fn, coefficients, shapes):
    """``coefficients`` through the transpose of the linear part of ``fn``."""
    inputs = [torch.zeros(coefficients.shape[0], *s, dtype=DTYPE, requires_grad=True)
              for s in shapes]
    with torch.enable_grad():
        return torch.autograd.grad(fn(*inputs), inputs, coefficients)


def sampled_min(model, image: torch.Tensor, label: int, y: int, x: int, lo: torch.Tensor,
                hi: torch.Tensor) -> float:
    """The lowest margin over 5³ colors of the box (float64 model): what every sound
    lower bound must stay below."""
    steps = torch.linspace(0, 1, 5, dtype=DTYPE)
    colors = lo + (hi - lo) * torch.cartesian_prod(steps, steps, steps)
    batch = image.to(DTYPE).repeat(len(colors), 1, 1, 1)
    batch[:, :, y, x] = colors
    with torch.no_grad():
        scores = model.double()(batch)
    own = scores[:, label].clone()
    scores[:, label] = -math.inf
    return float((own - scores.max(1).values).min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--positions", type=int, default=2)
    parser.add_argument("--sides", type=float, nargs="+", default=[1.0, 0.5, 0.25, 0.1])
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    model = load_model("resnet8-cifar10").eval()
    data = load_cifar10("auto")
    pick = correctly_classified(model, data, 1)
    image, label = to_float(data.images[pick]), data.labels[pick]
    engine = BoundEngine(model)
    cache = engine.prepare(image)
    nodes = graph_of(load_model("resnet8-cifar10").eval())
    positions = [(16, 16), (3, 5), (28, 20)][:args.positions]
    print(f"\nresnet8-cifar10, test index {int(pick[0])}\n")
    print("| position | side | zonotope bound | crown bound | sampled min (5³ colors) | "
          "unstable ReLUs (crown) | zonotope s | crown s |")
    print("|---|---|---|---|---|---|---|---|")
    for y, x in positions:
        color = image[0, :, y, x].double()
        for side in args.sides:
            lo, hi = (color - side / 2).clamp(0, 1), (color + side / 2).clamp(0, 1)
            if side >= 1:
                lo, hi = torch.zeros(3, dtype=DTYPE), torch.ones(3, dtype=DTYPE)
            began = time.perf_counter()
            zonotope = engine.margins(cache, torch.zeros(1, dtype=torch.long),
                                      torch.tensor([y]), torch.tensor([x]), lo[None],
                                      hi[None], label.long())
            zonotope_s = time.perf_counter() - began
            began = time.perf_counter()
            crown = Crown(nodes, image, y, x, lo, hi)
            unstable = crown.bound_all()
            low = crown.margins(int(label), 10)
            crown_s = time.perf_counter() - began
            sampled = sampled_min(model, image, int(label), y, x, lo, hi)
            assert float(low.min()) <= sampled + 1e-6, "a CROWN bound above a sampled margin"
            assert float(zonotope.worst[0]) <= sampled + 1e-6, "a zonotope bound above one"
            print(f"| ({y}, {x}) | {side:g} | {float(zonotope.worst[0]):.3f} | "
                  f"{float(low.min()):.3f} | {sampled:.3f} | {unstable:,} | {zonotope_s:.2f} | "
                  f"{crown_s:.1f} |", flush=True)


if __name__ == "__main__":
    main()
