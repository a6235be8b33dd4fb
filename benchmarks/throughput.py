"""Attack throughput against the bare model's limit, and scaling with batch and population.

Prints, measured side by side in one run on the bundled CIFAR-10 SqueezeNet:

1. forward passes per second of the bare model at batch = population (the physical limit
   of a design whose cost is model queries);
2. model queries per second of the attack (unconstrained, so every image runs long), and
   the share of wall time spent outside the model's forward (DE arithmetic, copies, Python);
3. seconds per image against the number of images attacked together and the population.

    python benchmarks/throughput.py [--images 10] [--maxiter 10] [--threads 0]
"""

from __future__ import annotations

import argparse
import time

import torch
from _setup import bench_inputs

from pixelprior import OnePixelAttack, UniformPrior
from pixelprior.models import inference_model


class TimedModel(torch.nn.Module):
    """Wraps a model and accumulates the wall time spent in its forward."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.seconds = 0.0
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        began = time.perf_counter()
        out = self.model(x)
        self.seconds += time.perf_counter() - began
        self.images += x.shape[0]
        return out


@torch.inference_mode()
def model_rate(model: torch.nn.Module, batch: int, repeats: int = 5) -> float:
    """Forward passes (images) per second at ``batch``."""
    x = torch.rand(batch, 3, 32, 32)
    model(x)
    began = time.perf_counter()
    for _ in range(repeats):
        model(x)
    return batch * repeats / (time.perf_counter() - began)


def attack_rate(model, images, labels, popsize, maxiter, invariant=False):
    """(queries per second, share of time outside the model, seconds per image).

    The attack normally queries its own fast copy of the model; here the fast copy is made
    up front and wrapped in the timer (``optimize=False``), so the timer sees every query.
    """
    timed = TimedModel(inference_model(model, images[:8]))
    attack = OnePixelAttack(timed, prior=UniformPrior(), popsize=popsize, maxiter=maxiter,
                            seed=0, batch_invariant=invariant, optimize=False)
    began = time.perf_counter()
    out = attack(images, labels)
    wall = time.perf_counter() - began
    queries = sum(r.queries for r in out.results)
    return queries / wall, 1 - timed.seconds / wall, wall / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--maxiter", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, images, labels, pick = bench_inputs(args.images)
    print(f"attack: unconstrained, popsize 400, maxiter {args.maxiter}, {len(pick)} images\n")

    fast = inference_model(model, images[:8])
    plain = model_rate(model, 400)
    bare = model_rate(fast, 128)
    rate, outside, _ = attack_rate(model, images, labels, 400, args.maxiter)
    rate_inv, outside_inv, _ = attack_rate(model, images, labels, 400, args.maxiter, True)
    print("| measure | value |\n|---|---|")
    print(f"| plain model, batch 400 (images/s) | {plain:.0f} |")
    print(f"| bare fast copy (BN folded, channels-last), batch 128 (images/s) | {bare:.0f} |")
    print(f"| attack, batched (queries/s) | {rate:.0f} ({rate / bare:.2f}x of bare) |")
    print(f"| attack, batched: time outside the model | {outside:.1%} |")
    print(f"| attack, batch-invariant (queries/s) | {rate_inv:.0f} ({rate_inv / bare:.2f}x) |")
    print(f"| attack, batch-invariant: time outside the model | {outside_inv:.1%} |")

    print("\nscaling: seconds per image vs images attacked together (popsize 400)")
    print("| images together | s/image | queries/s |\n|---|---|---|")
    for count in (1, min(10, len(pick)), len(pick)):
        rate_n, _, per_image = attack_rate(model, images[:count], labels[:count], 400,
                                           args.maxiter)
        print(f"| {count} | {per_image:.3f} | {rate_n:.0f} |")
    print("\nscaling: population size (all images together)")
    print("| popsize | s/image | queries/s | bare fast copy images/s at that batch |")
    print("|---|---|---|---|")
    for popsize in (100, 400, 1600):
        rate_p, _, per_image = attack_rate(model, images, labels, popsize, args.maxiter)
        print(f"| {popsize} | {per_image:.3f} | {rate_p:.0f} | {model_rate(fast, popsize):.0f} |")


if __name__ == "__main__":
    main()
