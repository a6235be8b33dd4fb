"""Two routes to tighter zonotope bounds on ResNet8, measured against splitting the box.

Run on the most robust position of one test image (the last of the corner order: all of
its boxes are proved in the end, so bounds decide its time), on the first boxes of two
sizes the verifier works at there (levels 6 and 7, sides 1/4 · 1/4 · 1/4 and
1/4 · 1/4 · 1/8):

* ``slopes``: optimised ReLU slopes (the zonotope analogue of alpha-CROWN). DeepZ's
  relaxation of an unstable ReLU takes the chord slope ``u / (u - l)``; any slope in
  [0, 1] is sound with its own offset and radius (the same rule computes them). The
  slopes of every unstable neuron are optimised by Adam on the sum of the margins' lower
  bounds (``--steps`` steps, autograd through the bound engine), against bounding the
  box's two halves instead: bound reached and seconds of each.
* ``reduction``: symbol order reduction before the last block's second convolution (the
  call's costliest: 2/3 of its convolution time). Keeping the ``k`` largest error symbols
  and carrying the others as a per-neuron remainder through ``|W|`` costs the margin
  about ``Σ_n s_n r_n`` (``r_n`` the dropped generators' absolute sum at neuron ``n``,
  ``s_n`` its absolute path weight to the worst margin through conv, BatchNorm, the
  average pool and the head): printed beside the box's bound, which is the slack it
  would have to fit in.

    python benchmarks/verify_routes.py [--image 0] [--boxes 4] [--steps 20]
        [--routes slopes reduction]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import time

import torch
from _setup import bench_inputs

from pixelprior import Verifier
from pixelprior.models.small import ResNet8
from pixelprior.scoring.cone import bounds as bounds_module
from pixelprior.scoring.cone.zonotope import PiecewiseLinear

SIDES = ((0.25, 0.25, 0.25), (0.25, 0.25, 0.125))
KEPT = (32, 64, 128, 256)
LAST_BLOCK_RELU = "relu_4"  # the ReLU between the last block's convolutions (fx name)


@contextlib.contextmanager
def optimisable_slopes(slopes: list[torch.Tensor] | None):
    """Bound calls inside use (and on their first call, create) one logit per neuron of
    each ReLU, in call order: its sigmoid is an unstable neuron's slope. Autograd on."""
    chord_rule = PiecewiseLinear.coefficients
    logits_call = bounds_module.BoundEngine._logits
    calls = {"count": itertools.count()}

    def logits(*args, **kwargs):
        calls["count"] = itertools.count()  # the ReLUs of each bound call, in order
        return logits_call.__wrapped__(*args, **kwargs)

    def coefficients(self, lower, upper):
        chord, offset, radius = chord_rule(self, lower, upper)
        if slopes is None:
            return chord, offset, radius
        unstable = (lower < 0) & (upper > 0)
        i = next(calls["count"])  # every call counts: which neurons are unstable may change
        if i == len(slopes):
            slopes.append(torch.logit(chord.detach().clamp(1e-4, 1 - 1e-4)).requires_grad_())
        slope = torch.where(unstable, torch.sigmoid(slopes[i]), chord)
        # relu(x) - slope x on [l, u] is extreme at l, 0 and u
        rests = torch.stack([torch.relu(v) - slope * v
                             for v in (lower, torch.zeros_like(lower), upper)])
        low, high = rests.amin(0), rests.amax(0)
        return (slope, torch.where(unstable, (low + high) / 2, offset),
                torch.where(unstable, (high - low) / 2, radius))

    PiecewiseLinear.coefficients = coefficients
    bounds_module.BoundEngine._logits = logits
    try:
        yield
    finally:
        PiecewiseLinear.coefficients = chord_rule
        bounds_module.BoundEngine._logits = logits_call


def tiles(sides: tuple[float, ...], count: int) -> tuple[torch.Tensor, torch.Tensor]:
    grid = [torch.arange(0, 1, side, dtype=torch.float64) for side in sides]
    lo = torch.tensor(list(itertools.product(*grid)), dtype=torch.float64)[:count]
    return lo, lo + torch.tensor(sides, dtype=torch.float64)


class Boxes:
    """Bound calls on boxes of one position of one image."""

    def __init__(self, model, image, label, position: int) -> None:
        self.engine = bounds_module.BoundEngine(model)
        self.cache = self.engine.prepare(image)
        self.label, self.width = label, image.shape[-1]
        self.position = position

    def margins(self, lo: torch.Tensor, hi: torch.Tensor):
        n = lo.shape[0]
        y, x = divmod(self.position, self.width)
        return self.engine.margins(self.cache, torch.zeros(n, dtype=torch.long),
                                   torch.full((n,), y), torch.full((n,), x), lo, hi,
                                   self.label.expand(n))


def timed(f):
    began = time.perf_counter()
    out = f()
    return out, time.perf_counter() - began


def slopes_row(boxes: Boxes, lo, hi, steps: int) -> str:
    with torch.no_grad():
        deepz, one = timed(lambda: boxes.margins(lo, hi).worst.item())
        axis = int((hi - lo).argmax())
        middle = (lo[0, axis] + hi[0, axis]) / 2
        lo2, hi2 = lo.repeat(2, 1), hi.repeat(2, 1)
        hi2[0, axis] = lo2[1, axis] = middle
        halves, split_s = timed(lambda: boxes.margins(lo2, hi2).worst.min().item())
    slopes: list[torch.Tensor] = []
    began = time.perf_counter()
    # the engine's interval rules, cached per node by the calls above, hold tensors made
    # in inference mode: the slopes' calls run with autograd, so they make their own
    boxes.engine._interval_rules.clear()
    with optimisable_slopes(slopes):
        bound = boxes.margins(lo, hi)
        optimiser = torch.optim.Adam(slopes, lr=0.05)
        best = bound.worst.item()
        for _ in range(steps):
            loss = -bound.lower.clamp(max=1.0).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            bound = boxes.margins(lo, hi)
            best = max(best, bound.worst.item())
    boxes.engine._interval_rules.clear()  # (made with autograd: not for later calls)
    optimised_s = time.perf_counter() - began
    return (f"| {deepz:.3f} ({one:.2f} s) | {best:.3f} ({optimised_s:.1f} s) | "
            f"{halves:.3f} ({split_s:.2f} s) | {optimised_s / split_s:.0f}× |")


def path_weights(model: ResNet8, label: int) -> torch.Tensor:
    """Per channel at the last block's inner ReLU: the absolute weight of its paths to the
    worst margin (conv2's taps, BatchNorm's scale, the pool's 1/64, the head's largest
    ``|w_y - w_j|``)."""
    block = model.layers[2]
    bn = block.bn2
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double().abs()
    head = model.fc.weight.detach().double()
    spread = (head[label][None] - head).abs().amax(0)
    kernel = block.conv2.weight.detach().double().abs().sum((2, 3))  # [out, in]
    return (kernel * (scale * spread / 64)[:, None]).sum(0)


def reduction_row(boxes: Boxes, model: ResNet8, lo, hi) -> str:
    captured = {}
    run = bounds_module.BoundEngine._run

    def capture(self, step, call, env, lower, upper):
        out = run(self, step, call, env, lower, upper)
        if step.node.name == LAST_BLOCK_RELU:
            captured["values"] = out.values
        return out

    bounds_module.BoundEngine._run = capture
    try:
        with torch.no_grad():
            worst = boxes.margins(lo, hi).worst.item()
    finally:
        bounds_module.BoundEngine._run = run
    values = captured["values"][0]  # [R, C, h, w]
    errors = values[1 + lo.shape[1]:]  # the relaxations' symbols (colors kept)
    order = errors.abs().flatten(1).sum(1).argsort(descending=True)
    weights = path_weights(model, int(boxes.label[0]))[:, None, None]
    costs = [float((weights * errors[order[k:]].abs().sum(0)).sum()) for k in KEPT]
    cells = " | ".join(f"{c:.3f}" for c in costs)
    return f"| {worst:.3f} | {values.shape[0] - 1} | {cells} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=int, default=0,
                        help="which correctly classified test image (0: the first)")
    parser.add_argument("--boxes", type=int, default=4, help="boxes per size")
    parser.add_argument("--steps", type=int, default=20, help="Adam steps on the slopes")
    parser.add_argument("--routes", nargs="+", choices=("slopes", "reduction"),
                        default=["slopes", "reduction"])
    args = parser.parse_args()
    model, images, labels, pick = bench_inputs(args.image + 1, "resnet8-cifar10")
    image, label = images[-1:], labels[-1:]
    position = int(Verifier(model).corner_order(image, label)[0, -1])
    print(f"resnet8-cifar10, test index {int(pick[-1])}, its most robust position {position}")
    boxes = Boxes(model, image, label, position)
    for route in args.routes:
        if route == "slopes":
            print(f"\n| box sides | lo | DeepZ bound | optimised slopes ({args.steps} steps) | "
                  "the two halves instead (worst) | optimised / halves seconds |\n"
                  "|---|---|---|---|---|---|")
        else:
            print("\n| box sides | lo | bound | symbols | "
                  + " | ".join(f"cost, {k} kept" for k in KEPT) + " |\n|---|---|---|---|"
                  + "---|" * len(KEPT))
        for sides in SIDES:
            lo, hi = tiles(sides, args.boxes)
            for n in range(lo.shape[0]):
                box = (lo[n:n + 1], hi[n:n + 1])
                row = (slopes_row(boxes, *box, args.steps) if route == "slopes"
                       else reduction_row(boxes, model, *box))
                print(f"| {sides} | {lo[n].tolist()} {row}", flush=True)


if __name__ == "__main__":
    main()
