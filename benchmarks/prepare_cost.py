"""What preparing an image for the bound engine costs, part by part.

``BoundEngine.prepare`` runs the cone engine's clean pass (the activations every box's
window reads around the pixel's cone) and, since the bounds carry their own float64
error neuron by neuron, one whole-image pass of the interval screen's error rules (how
far each clean activation may lie from its real-arithmetic value), stored beside the
activations in the same cache. This times the parts on each model's first correctly
classified test images (best of ``--repeats``, one image at a time, as the verifier
prepares them) and prints the cache's size with and without the errors, beside one
bound call of a box of side 0.05 at the image's center for scale.

    python benchmarks/prepare_cost.py [--models ...] [--images 3] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch
from _setup import BUNDLED_MODELS, bench_inputs

from pixelprior.scoring.cone.bounds import BoundEngine


def best_of(repeats: int, work) -> float:
    """The fastest of ``repeats`` timed calls of ``work`` (seconds)."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return min(times)


def small_box(engine: BoundEngine, cache, image: torch.Tensor, label: torch.Tensor) -> None:
    """One bound call: a box of side 0.05 around the clean color of the image's center
    pixel (whole cubes cost the SqueezeNet minutes: the verifier cuts them unbounded)."""
    height, width = image.shape[-2:]
    where = [torch.tensor([v]) for v in (0, height // 2, width // 2)]
    color = image[0, :, height // 2, width // 2].clamp(0.025, 0.975)[None]
    engine.margins(cache, *where, color - 0.025, color + 0.025, label)


def measure(name: str, count: int, repeats: int) -> dict[str, float]:
    """Median seconds of each part over ``count`` images, and the cache's bytes."""
    model, images, labels, _ = bench_inputs(count, name)
    engine = BoundEngine(model)
    parts: dict[str, list[float]] = {"clean pass": [], "error pass": [], "prepare": [],
                                      "one box": []}
    sizes = []
    with torch.inference_mode():
        for n in range(len(labels)):
            image = images[n:n + 1].double()
            engine.prepare(image)  # the plan and its checks, made once per shape
            parts["clean pass"].append(best_of(repeats, partial(engine.engine.prepare, image)))
            parts["error pass"].append(best_of(
                repeats, partial(engine._screen.clean_errors, image, engine.unit)))
            parts["prepare"].append(best_of(repeats, partial(engine.prepare, image)))
            cache = engine.prepare(image)
            clean = engine.engine.prepare(image)
            sizes.append((sum(t.numel() * t.element_size() for t in clean.tensors.values()),
                          sum(t.numel() * t.element_size()
                              for t in cache.cache.tensors.values())))
            parts["one box"].append(best_of(1, partial(small_box, engine, cache, image,
                                                       labels[n:n + 1])))
    found = {key: statistics.median(values) for key, values in parts.items()}
    found["cache MB"] = statistics.median(s[0] for s in sizes) / 2**20
    found["cache MB with errors"] = statistics.median(s[1] for s in sizes) / 2**20
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=BUNDLED_MODELS)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = {name: measure(name, args.images, args.repeats) for name in args.models}
    print(f"\nmedian over {args.images} images, best of {args.repeats} each "
          f"({torch.get_num_threads()} torch threads)\n")
    print("| model | clean pass ms | error pass ms | prepare ms | error pass / prepare | "
          "cache MB: without errors / with | one box of side 0.05 ms |\n"
          "|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {1e3 * r['clean pass']:.1f} | {1e3 * r['error pass']:.1f} | "
              f"{1e3 * r['prepare']:.1f} | {r['error pass'] / r['prepare']:.0%} | "
              f"{r['cache MB']:.2f} / {r['cache MB with errors']:.2f} | "
              f"{1e3 * r['one box']:.0f} |")


if __name__ == "__main__":
    main()
