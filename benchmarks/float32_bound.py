"""The proved bound of the model's float32 error against the first-order estimate, per
model, over whole color cubes.

For each model, its first ``--images`` correctly classified CIFAR-10 test images; per
image ``--positions`` random positions, each bounded over its whole color cube by
:meth:`~pixelprior.scoring.cone.screen.IntervalScreen.bounds` with float32's unit (the
largest margin's error per position), beside the verifier's first-order estimate
(:meth:`~pixelprior.search.verify.Verifier.tolerance_of`). Printed per model: the
estimate (median over images), the proved bound (median, smallest and largest over the
positions), their ratio, and the share of positions within
:data:`~pixelprior.search.verify.PROVED_LIMIT` of the estimate (where the verifier takes
the proved bound as the tolerance: float32 proved). No timing: the figures are bounds.

    python benchmarks/float32_bound.py [--models convsmall-cifar10 resnet8-cifar10]
        [--images 2] [--positions 64]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _setup import BUNDLED_MODELS, bench_inputs

from pixelprior.search.verify import PROVED_LIMIT, Verifier, rounding_unit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=BUNDLED_MODELS)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--positions", type=int, default=64)
    args = parser.parse_args()
    print("| model | estimate (median) | proved: median | least | largest | proved / "
          f"estimate (median) | within {PROVED_LIMIT:g}x |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        model, images, labels, _ = bench_inputs(args.images, name)
        verifier = Verifier(model, budget=None)
        estimates, proved, ratios, within = [], [], [], 0
        for n in range(images.shape[0]):
            image, label = images[n:n + 1], int(labels[n])
            estimate = verifier.tolerance_of(image, label)
            area = image.shape[-2] * image.shape[-1]
            positions = torch.randperm(area, generator=torch.Generator().manual_seed(n))[
                :args.positions]
            cube = torch.zeros(len(positions), image.shape[1], dtype=torch.float64)
            error = verifier.screen.bounds(image, positions, cube, cube + 1, label,
                                           rounding_unit(image.device)).error
            largest = error.max(1).values.tolist()
            estimates.append(estimate)
            proved += largest
            ratios += [e / estimate for e in largest]
            within += sum(e <= PROVED_LIMIT * estimate for e in largest)
        print(f"| {name} | {statistics.median(estimates):.4g} | "
              f"{statistics.median(proved):.4g} | {min(proved):.4g} | {max(proved):.4g} | "
              f"{statistics.median(ratios):.3g} | {within / len(proved):.0%} |", flush=True)


if __name__ == "__main__":
    main()
