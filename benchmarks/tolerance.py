"""Does the verifier's tolerance cover the model's own float32 error where it is used?

A box is verified when its margin bound (for the model in real arithmetic) exceeds the
tolerance: ``SAFETY`` (2) times a first-order bound of the float32 rounding error,
computed once per image at the clean image (:meth:`pixelprior.Verifier.tolerance_of`).
It is applied to every color at every position, so this measures the float32 error
there: for each model, its first ``--images`` correctly classified test images and
``--samples`` one-pixel changes of each (random positions; half the colors uniform in
the cube, half its corners), the largest ``|m_32 - m_64|`` over the margins
``m = z_y - z_j``, with the model in float32 (as the verifier's witnesses are scored) and
a float64 copy of it (whose own error is ~10⁹ times smaller: the reference for "real
arithmetic"). Printed per model: the tolerance (median over the images), the largest
measured error, and its ratio to the tolerance (must stay below 1; below 0.5 means the
first-order bound alone covered it).

    python benchmarks/tolerance.py [--models convsmall-cifar10 resnet8-cifar10
        squeezenet1_1-cifar10] [--images 5] [--samples 4096]
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch
from _setup import BUNDLED_MODELS, bench_inputs

from pixelprior import Verifier


def changed(image: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` copies of ``image [C, H, W]`` with one random pixel set to a random color
    (the first half uniform in the cube, the second half corners)."""
    channels, height, width = image.shape
    where = torch.randint(0, height * width, (count,), generator=generator)
    colors = torch.rand(count, channels, generator=generator)
    colors[count // 2:] = colors[count // 2:].round()
    out = image.expand(count, -1, -1, -1).clone()
    out[torch.arange(count), :, where // width, where % width] = colors
    return out


def margins(model, images: torch.Tensor, label: int) -> torch.Tensor:
    """``[B, K - 1]`` margins ``z_label - z_j`` (``j != label``), in float64."""
    with torch.no_grad():
        scores = model(images).double()
    others = [j for j in range(scores.shape[1]) if j != label]
    return scores[:, label, None] - scores[:, others]


def measure(name: str, images: int, samples: int, batch: int = 512) -> dict:
    model, xs, labels, _ = bench_inputs(images, name)
    double = copy.deepcopy(model).double().eval()
    verifier = Verifier(model)
    generator = torch.Generator().manual_seed(0)
    tolerances, errors = [], []
    for image, label in zip(xs, labels.tolist(), strict=True):
        tolerance = verifier.tolerance_of(image[None], label)
        worst = 0.0
        for start in range(0, samples, batch):
            chunk = changed(image, min(batch, samples - start), generator)
            single = margins(model, chunk, label)
            exact = margins(double, chunk.double(), label)
            worst = max(worst, float((single - exact).abs().max()))
        tolerances.append(tolerance)
        errors.append(worst)
    ratios = [e / t for e, t in zip(errors, tolerances, strict=True)]
    return {"tolerance": statistics.median(tolerances), "largest error": max(errors),
            "median error": statistics.median(errors), "largest ratio": max(ratios)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=BUNDLED_MODELS)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--samples", type=int, default=4096)
    args = parser.parse_args()
    rows = [(name, measure(name, args.images, args.samples)) for name in args.models]
    print(f"\n{args.images} images × {args.samples} one-pixel changes per model")
    print("| model | tolerance (median) | measured float32 error: largest | median over "
          "images | largest error / its image's tolerance |\n|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['tolerance']:.3g} | {r['largest error']:.3g} | "
              f"{r['median error']:.3g} | {r['largest ratio']:.2g} |")


if __name__ == "__main__":
    main()
