"""The bound engine's float64 error with signs against the forward bound, side by side.

The bound engine proves the float error of its own float64 arithmetic, per neuron,
passing each error on by ``|A|`` (the forward bound). On deep networks that grows with
the layers' absolute row sums: on akamaster's 20-layer CIFAR ResNet it exceeds most
margins, and no box is proved. The signed bound (:mod:`pixelprior.scoring.cone.signed`)
carries the errors of the steps on whole maps back from each margin with signs, where
the forward one is not negligible. This measures, in one run, with and without it
(``BoundEngine(..., signed=False)``; the product has no switch for it):

1. the error at the margins and the seconds of one box, at the center of a test image,
   over boxes of half-width 0, 0.01 and 0.03 around its color (the signed bound itself,
   refined all the way: the engine computes it only where the forward one takes more
   than ``SIGNED_SHARE`` of a margin that could be proved, and stops refining below it):
   akamaster's ResNet-20 (its code here, random weights: He-initialised, BatchNorm's
   statistics measured on test images 20 onwards), a stack of 16 linear layers with
   ReLUs (random orthogonal weights) and the bundled models;
2. what it decides: each model verified on a few test images (``PART_TWO``) with the
   same budget, with and without (verdict, verified volume, positions proved, boxes,
   seconds).

    python benchmarks/signed_rounding.py [--images 2] [--budget 30] [--indices 3 5]
        [--errors-only]
        [--models mlp16 resnet20 convsmall-cifar10 resnet8-cifar10 squeezenet1_1-cifar10]
"""

from __future__ import annotations

import argparse
import functools
import time

import torch
import torch.nn.functional as F
from _setup import bench_inputs
from torch import nn

import pixelprior.scoring.cone.bounds as bounds_module
import pixelprior.search.verify as verify_module
from pixelprior import Verifier, load_cifar10, load_model, to_float
from pixelprior.scoring.cone.bounds import BoundEngine


class _Shortcut(nn.Module):
    """akamaster's option-A shortcut: every other pixel, the new channels zero."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.planes = planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.planes // 4
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad), "constant", 0)


class _Block(nn.Module):
    def __init__(self, inputs: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = (_Shortcut(planes) if stride != 1 or inputs != planes
                         else nn.Sequential())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class AkamasterResNet(nn.Module):
    """akamaster's CIFAR ResNet (``pytorch_resnet_cifar10``): ``6n + 2`` layers, the last
    pooling's size read from the map (``F.avg_pool2d(out, out.size()[3])``)."""

    def __init__(self, blocks: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, inputs = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for first in range(blocks):
                layers.append(_Block(inputs, planes, stride if first == 0 else 1))
                inputs = planes
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(64, 10)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        out = F.avg_pool2d(out, out.size()[3])
        return self.linear(out.view(out.size(0), -1))


def relu_stack(layers: int) -> nn.Module:
    """``layers`` orthogonal linear layers of width 256 (gain √2, ReLUs between) on the
    flattened image: values of a few units, the absolute weights' row sums ~13."""
    torch.manual_seed(0)
    made: list[nn.Module] = [nn.Flatten(), nn.Linear(3 * 32 * 32, 256)]
    for _ in range(layers):
        layer = nn.Linear(256, 256)
        nn.init.orthogonal_(layer.weight, gain=2**0.5)
        nn.init.zeros_(layer.bias)
        made += [nn.ReLU(), layer]
    return nn.Sequential(*made, nn.Linear(256, 10)).eval()


def model_named(name: str, images: torch.Tensor) -> nn.Module:
    """A bundled model; ``mlpN``: :func:`relu_stack` of ``N`` layers; ``resnetN``:
    akamaster's ResNet with random weights (seed 0) and BatchNorm's statistics measured
    on ``images`` (as training would leave them: each layer's values normalised, not
    growing with depth as with the identity)."""
    if name.startswith("mlp") and name[3:].isdigit():
        return relu_stack(int(name[3:]))
    if not (name.startswith("resnet") and name[6:].isdigit()):
        return load_model(name).eval()
    torch.manual_seed(0)
    model = AkamasterResNet((int(name[6:]) - 2) // 6)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # a cumulative average over the batches
    with torch.no_grad():
        model.train()
        for batch in images.split(50):
            model(batch)
    return model.eval()


def errors_at_a_pixel(name: str, model: nn.Module, image: torch.Tensor) -> None:
    """Part 1: the margins' error and the seconds of one box, both ways."""
    share = bounds_module.SIGNED_SHARE
    shape = tuple(image.shape[1:])
    with torch.no_grad():
        label = model(image).argmax(1)
    engines = {signed: BoundEngine(model, shape=shape, signed=signed)
               for signed in (False, True)}
    caches = {signed: engine.prepare(image) for signed, engine in engines.items()}
    y = x = shape[1] // 2
    color = image[0, :, y, x].double()[None]
    for half in (0.0, 0.01, 0.03):
        lo, hi = (color - half).clamp(0, 1), (color + half).clamp(0, 1)
        row = []
        for signed, engine in engines.items():
            # (the signed bound itself, refined all the way: the engine computes it only
            # where the forward one takes more than SIGNED_SHARE of a margin)
            bounds_module.SIGNED_SHARE = 0.0 if signed else share
            began = time.perf_counter()
            bounds = engine.margins(caches[signed], torch.zeros(1, dtype=torch.long),
                                    torch.tensor([y]), torch.tensor([x]), lo, hi, label)
            seconds = time.perf_counter() - began
            bounds_module.SIGNED_SHARE = share
            others = torch.isfinite(bounds.computed)
            row.append((float(bounds.rounding[others].max()), seconds,
                        float(bounds.lower[others].min())))
        (forward, t0, low0), (signed_error, t1, low1) = row
        computed = float(bounds.computed[others].min())
        print(f"| {name} | {half} | {computed:.4g} | {forward:.3g} | {signed_error:.3g} | "
              f"{forward / signed_error:.3g} | {t0:.2f} | {t1:.2f} | "
              f"{'yes' if low0 > 0 else 'no'} / {'yes' if low1 > 0 else 'no'} |",
              flush=True)


def verified_both_ways(name: str, model: nn.Module, images: torch.Tensor,
                       labels: torch.Tensor, budget: float, indices: list[int]) -> None:
    """Part 2: each image verified with the same budget, with and without."""
    for index, test_index in enumerate(indices):
        row = []
        for signed in (False, True):
            made = functools.partial(BoundEngine, signed=signed)
            original = verify_module.BoundEngine
            verify_module.BoundEngine = made
            try:
                result = Verifier(model, budget=budget).verify(images[[index]],
                                                               labels[[index]])[0]
            finally:
                verify_module.BoundEngine = original
            robust = sum(status == "robust" for status in result.positions.status)
            row.append(f"{result.decided_by} {result.verified_volume:.4f} ({robust}) "
                       f"{result.boxes:,} {result.seconds:.1f}")
        print(f"| {name} | {test_index} | {row[0]} | {row[1]} |", flush=True)


# part 2's test images: ConvSmall's it verifies, the SqueezeNet's corner-certified ones
# (Table 1's robust images), each judged against the model's own label (the random
# networks' labels are theirs)
PART_TWO = {"convsmall-cifar10": [4, 5], "squeezenet1_1-cifar10": [3, 5], "mlp16": [0, 1],
            "resnet20": [0], "resnet8-cifar10": [0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("--errors-only", action="store_true", help="part 1 alone")
    parser.add_argument("--indices", type=int, nargs="+", default=None,
                        help="the test images of part 2 (default: each model's in "
                             "PART_TWO, else its first --images correctly classified)")
    parser.add_argument("--models", nargs="+",
                        default=["mlp16", "resnet20", "convsmall-cifar10",
                                 "resnet8-cifar10", "squeezenet1_1-cifar10"])
    args = parser.parse_args()
    bench_inputs(1, "convsmall-cifar10")  # (the machine line)
    data = load_cifar10("auto")
    print("\n## The margins' float64 error at the center pixel of test image 0\n")
    print("| model | half-width | least margin | forward | signed | ratio | seconds "
          "forward | seconds signed | proved (forward / signed) |")
    print("|---|---|---|---|---|---|---|---|---|")
    models = {name: model_named(name, to_float(data.images[20:])) for name in args.models}
    image = to_float(data.images[[0]])
    for name, model in models.items():
        errors_at_a_pixel(name, model, image)
    if args.errors_only:
        return
    print(f"\n## Verified with a budget of {args.budget:g} s per image (decided_by, "
          "verified volume (positions proved), boxes, seconds)\n")
    print("| model | test index | forward alone | with the signed bound |\n|---|---|---|---|")
    for name, model in models.items():
        with torch.no_grad():
            predicted = model(to_float(data.images[:20])).argmax(1)
        pick = torch.nonzero(predicted == torch.as_tensor(data.labels[:20])).flatten()
        pick = pick[:args.images] if len(pick) else torch.arange(args.images)
        chosen = args.indices if args.indices is not None else PART_TWO.get(name)
        if chosen is not None:
            pick = torch.tensor(chosen)
            with torch.no_grad():
                predicted = torch.zeros(int(pick.max()) + 1, dtype=torch.long)
                predicted[pick] = model(to_float(data.images[pick])).argmax(1)
        verified_both_ways(name, model, to_float(data.images[pick]),
                           predicted[pick], args.budget, pick.tolist())


if __name__ == "__main__":
    main()
