"""The torch.fx cone against full passes on general CNNs (random weights).

For a ResNet-20-style and a MobileNet-style CIFAR model (32×32) and an ImageNet
ResNet-18-style model (224×224, built here: torchvision is not imported), prints, measured
side by side in one run on the same one-pixel candidates:

- queries/s of full passes (:class:`~pixelprior.scoring.FullPassScorer` with its default
  optimisation: BatchNorm folded, channels-last) and of the incremental engine that
  ``make_scorer(engine="auto")`` picks (:mod:`pixelprior.scoring.cone`), and their ratio;
- the ceiling: multiply-accumulates of a full pass over those of the cone per row (conv
  and linear layers, counted from their shapes), what the cone could gain at best;
- their agreement (labels, the largest score difference relative to the score scale).

    python benchmarks/fx_engine.py [--rows 128] [--seconds 3] [--skip-imagenet]
    python benchmarks/fx_engine.py --quick        # a smoke test: tiny, not a measurement
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from pixelprior.scoring import FullPassScorer, FxIncrementalForward, make_scorer


# ------------------------------------------------------------------ models
def conv_bn(cin: int, cout: int, kernel: int, stride: int) -> nn.Sequential:
    """Conv + BatchNorm in a Sequential: the pattern the full pass's default optimisation
    folds (``fold_batchnorm``), so both engines run folded convolutions."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.first = conv_bn(cin, cout, 3, stride)
        self.second = conv_bn(cout, cout, 3, 1)
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else conv_bn(cin, cout, 1, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.first(x))
        return F.relu(self.second(out) + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet with basic blocks: CIFAR (3×3 stem, 16-32-64) or ImageNet (7×7/2 stem, max
    pool, 64-128-256-512)."""

    def __init__(self, widths: tuple[int, ...], blocks: int, imagenet: bool,
                 classes: int) -> None:
        super().__init__()
        first = widths[0]
        stem = ([nn.Conv2d(3, first, 7, 2, 3, bias=False), nn.BatchNorm2d(first), nn.ReLU(),
                 nn.MaxPool2d(3, 2, 1)] if imagenet else
                [nn.Conv2d(3, first, 3, 1, 1, bias=False), nn.BatchNorm2d(first), nn.ReLU()])
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.stem = nn.Sequential(*stem)
        layers, cin = [], first
        for i, cout in enumerate(widths):
            for j in range(blocks):
                layers.append(BasicBlock(cin, cout, 2 if i > 0 and j == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem((x - self.mean) / self.std))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.body = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetCifar(nn.Module):
    """MobileNetV2-style for 32×32: stride-1 stem, inverted residuals down to 4×4."""

    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))  # expand, channels, repeats, stride

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32),
                                   nn.ReLU6()]
        cin = 32
        for expand, cout, repeats, stride in self.SETTINGS:
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers += [nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(1280, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights (He-scaled) and BatchNorm statistics, in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point() or name.endswith(("mean", "std")) and (
                    tensor.ndim == 4):
                continue
            if name.endswith("running_var") or tensor.ndim == 1 and name.endswith("weight"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif tensor.ndim == 1:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator)
                             * (2.0 / tensor[0].numel()) ** 0.5)
    return model.eval()


def models(skip_imagenet: bool) -> list[tuple[str, Callable[[], nn.Module], int]]:
    out = [("ResNet-20-style CIFAR", lambda: ResNet((16, 32, 64), 3, False, 10), 32),
           ("MobileNetV2-style CIFAR", MobileNetCifar, 32)]
    if not skip_imagenet:
        out.append(("ResNet-18-style ImageNet",
                    lambda: ResNet((64, 128, 256, 512), 2, True, 1000), 224))
    return out


# ------------------------------------------------------------------ measuring
def random_genes(image: torch.Tensor, rows: int, seed: int = 0):
    """``rows`` one-pixel candidates on ``image`` → ``owner, genes [N, 1, 2 + C]``."""
    generator = torch.Generator().manual_seed(seed)
    height, width = image.shape[-2:]
    xy = torch.rand(rows, 2, generator=generator) * torch.tensor([width - 1, height - 1])
    colour = torch.rand(rows, image.shape[1], generator=generator)
    genes = torch.cat([xy.round(), colour], 1)[:, None].to(image.device)
    return torch.zeros(rows, dtype=torch.long, device=image.device), genes


def side_by_side(calls: dict[str, Callable[[], torch.Tensor]], rows: int, seconds: float,
                 device: torch.device) -> dict[str, float]:
    """Rows per second of each call, measured in alternating rounds (warm-up first)."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    spent, done = dict.fromkeys(calls, 0.0), dict.fromkeys(calls, 0)
    for fn in calls.values():
        fn()
    sync()
    while min(spent.values()) < seconds / 2 or not all(done.values()):
        for label, fn in calls.items():
            began = time.perf_counter()
            fn()
            sync()
            spent[label] += time.perf_counter() - began
            done[label] += rows
    return {label: done[label] / spent[label] for label in calls}


@torch.inference_mode()
def compare(name: str, model: nn.Module, size: int, rows: int, seconds: float,
            device: torch.device) -> str:
    """One table row for ``model`` on ``size × size`` images."""
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    image, model = image.to(device), model.to(device)
    full = FullPassScorer(model, image)
    scorer = make_scorer(model, image, "auto")
    engine = getattr(scorer, "engine", None)
    if not isinstance(engine, FxIncrementalForward):
        return f"| {name} | {size}² | – | – | – | – | – | fx cone not used: {scorer.note} |"
    owner, genes = random_genes(image, rows)
    full_state, state = full.prepare(image), scorer.prepare(image)
    calls = {"full": lambda: full.logits(full_state, owner, genes),
             "cone": lambda: scorer.logits(state, owner, genes)}
    expected, got = calls["full"](), calls["cone"]()
    same = bool((expected.argmax(1) == got.argmax(1)).all())
    diff = float((expected - got).abs().max() / expected.abs().max())
    rates = side_by_side(calls, rows, seconds, device)
    cone_macs, full_macs = engine.macs(image)
    return (f"| {name} | {size}² | {full_macs / 1e6:.0f} | {rates['full']:.0f} | "
            f"{rates['cone']:.0f} | {rates['cone'] / rates['full']:.2f}× | "
            f"{full_macs / cone_macs:.2f}× | {same}, {diff:.0e} |")


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"machine: {torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return (f"machine: {platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=128, help="rows per call (CIFAR)")
    parser.add_argument("--imagenet-rows", type=int, default=32, help="rows per call (224²)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per engine")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-imagenet", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 8 rows, a fraction of a second (not a measurement)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.imagenet_rows, args.seconds = 8, 4, 0.05
    device = torch.device(args.device)
    print(machine(device))
    print("\n| model | input | full MMAC/query | full queries/s | cone queries/s | cone / full "
          "| ceiling (MAC ratio) | same labels, max rel. diff |")
    print("|---|---|---|---|---|---|---|---|")
    for i, (name, make, size) in enumerate(models(args.skip_imagenet)):
        rows = args.imagenet_rows if size > 64 else args.rows
        print(compare(name, randomised(make(), seed=i), size, rows, args.seconds, device),
              flush=True)
    if args.quick:
        print("\n(--quick: a smoke test, not a measurement)")


if __name__ == "__main__":
    main()
