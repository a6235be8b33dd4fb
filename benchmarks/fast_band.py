"""``fast``'s rounding band against the re-check without it, side by side.

The corner certificate re-scores with the model itself every position whose scanned
margin lies within a band: 10^-3 in probability (and, where the scorer agrees, 10^-2 in
logits), and since the twenty-eighth session also twice the model's first-order float32
rounding estimate (times ``BAND_SPREAD``) plus twice the scorer's measured gap
(``FastAttack._rounding_band``, estimated once per image size at a noise image). Printed,
per model: the band, the estimate at the noise image against the images' own, the
positions re-scored and the certificates with and without the band on the same images,
and the seconds of each (the faster of ``--repeats`` runs, alternating), with their ratio.

    python benchmarks/fast_band.py [--images 10] [--repeats 2] [--models ...]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from pixelprior.data import load_cifar10_sample, to_float
from pixelprior.models import load_model
from pixelprior.scoring.cone.rounding import rounding_error
from pixelprior.search import FastAttack
from pixelprior.search.fast import BAND_CLASSES, BAND_SPREAD


def run(model, images, labels, band: bool) -> tuple[float, list]:
    """One fast attack of ``images``: seconds and its results (the band on or off)."""
    attack = FastAttack(model, verify="off", batch_invariant=True)
    if not band:
        attack._rounding_band = lambda images, scorer: 0.0
    began = time.perf_counter()
    out = attack.run(images, labels)
    return time.perf_counter() - began, out.results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--models", nargs="+",
                        default=["squeezenet1_1-cifar10", "resnet8-cifar10"])
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}")
    sample = load_cifar10_sample()
    for name in args.models:
        model = load_model(name).eval()
        with torch.no_grad():
            images = to_float(sample.images)
            correct = (model(images).argmax(1) == sample.labels).nonzero().flatten()
        pick = correct[:args.images]
        images, labels = images[pick], sample.labels[pick]
        timings = {True: [], False: []}
        results = {}
        for _ in range(args.repeats):
            for band in (False, True):
                seconds, results[band] = run(model, images, labels, band)
                timings[band].append(seconds)
        attack = FastAttack(model, verify="off")
        estimate = attack._rounding_band(images[:1], attack.scorer(images[:1]))
        noise = torch.rand(images[:1].shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            noise_label = model(noise).argmax(1)
        at_noise = float(rounding_error(model, noise, noise_label, others=BAND_CLASSES)[0])
        own = rounding_error(model, images, labels)  # every margin of each image
        queries = {band: sum(r.queries for r in results[band]) for band in results}
        certified = {band: sum(bool(r.steps["corner_certified"]) for r in results[band])
                     for band in results}
        fast_on, fast_off = min(timings[True]), min(timings[False])
        print(f"\n## {name}: {len(pick)} correctly classified sample images")
        print(f"band (twice the rounding estimate x {BAND_SPREAD:g} + twice the scorer's "
              f"gap): {estimate:.4g} logits; the estimate at the noise image {at_noise:.4g}, "
              f"the images' own: median {float(own.median()):.4g}, largest "
              f"{float(own.max()):.4g} ({float(own.max()) / at_noise:.2f}x the noise image's)")
        print("| re-check | queries | certified | seconds (best of "
              f"{args.repeats}) |\n|---|---|---|---|")
        print(f"| without the band | {queries[False]:,} | {certified[False]} | {fast_off:.2f} |")
        print(f"| with the band | {queries[True]:,} | {certified[True]} | {fast_on:.2f} |")
        print(f"with / without: {fast_on / fast_off:.2f}x the time, "
              f"{queries[True] - queries[False]:,} more queries; the same verdicts: "
              f"{[r.success for r in results[True]] == [r.success for r in results[False]]}")


if __name__ == "__main__":
    main()
