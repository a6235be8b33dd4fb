"""Attack throughput against the bare model's limit, and scaling with batch and population.

Prints, measured side by side in one run on the bundled CIFAR-10 SqueezeNet:

1. the physical limit of this design: candidates scored per second by the bare engine,
   outside any attack: a full forward pass of the fast model copy (BatchNorm folded,
   channels-last) on perturbed images, the incremental engine, and full passes by ONNX
   Runtime when it is installed, at the rows per call the attack uses with each;
2. model queries per second of the attack with each engine (unconstrained, so every
   image runs long), as a share of that limit, and the share of the attack's wall time
   spent outside scoring (DE arithmetic, sampling, copies, Python);
3. seconds per image against the number of images attacked together and the population.

    python benchmarks/throughput.py [--images 10] [--maxiter 10] [--scaling 1 10 100]
"""

from __future__ import annotations

import argparse
import time

import torch
from _setup import bench_inputs
from engines import random_rows

from pixelprior import OnePixelAttack, UniformPrior
from pixelprior.models import inference_model
from pixelprior.scoring import incremental_forward, perturb_rows

ROWS = {"full": 128, "incremental": 128, "onnxruntime": 256}  # the attack's CPU chunks


@torch.inference_mode()
def bare_rates(model: torch.nn.Module, image: torch.Tensor,
               repeats: int = 20) -> dict[str, float]:
    """Candidates per second of each bare engine on random candidates of ``image``, at
    the rows per call the attack uses with it (:data:`ROWS`)."""
    fast = inference_model(model, image)
    engine = incremental_forward(fast)
    cache = engine.prepare(image)
    calls = {"full": lambda owner, y, x, colour, genes: fast(perturb_rows(image, owner, genes)),
             "incremental": lambda owner, y, x, colour, genes: engine(cache, owner, y, x,
                                                                        colour)}
    try:
        from pixelprior.scoring import OnnxRuntimeModel

        runtime = OnnxRuntimeModel(model, image)
        calls["onnxruntime"] = lambda owner, y, x, colour, genes: runtime(
            perturb_rows(image, owner, genes))
    except ImportError as exc:
        print(f"onnxruntime: not measured ({exc})")
    out = {}
    for name, call in calls.items():
        rows = random_rows(image, ROWS[name])  # owner, y, x, colour, genes
        call(*rows)
        began = time.perf_counter()
        for _ in range(repeats):
            call(*rows)
        out[name] = ROWS[name] * repeats / (time.perf_counter() - began)
    return out


def attack_rate(model, images, labels, popsize, maxiter, engine="auto", invariant=False):
    """(queries per second, share of wall time outside scoring, seconds per image)."""
    attack = OnePixelAttack(model, prior=UniformPrior(), popsize=popsize, maxiter=maxiter,
                            seed=0, batch_invariant=invariant, engine=engine)
    began = time.perf_counter()
    out = attack.run(images, labels)
    wall = time.perf_counter() - began
    queries = sum(r.queries for r in out.results)
    return queries / wall, 1 - attack.query_seconds / wall, wall / len(images)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--maxiter", type=int, default=10)
    parser.add_argument("--scaling", type=int, nargs="*", default=[1, 10, 100],
                        help="numbers of images attacked together")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, all_images, all_labels, pick = bench_inputs(max([args.images, *args.scaling]))
    images, labels = all_images[:args.images], all_labels[:args.images]
    print(f"attack: unconstrained, popsize 400, maxiter {args.maxiter}, {len(images)} "
          "images\n")

    bare = bare_rates(model, images[:1])
    print("| engine | bare, rows per call as in the attack (queries/s) | "
          "attack, batched (queries/s) | "
          "share of bare | time outside scoring | attack, batch-invariant (queries/s) | "
          "time outside scoring |")
    print("|---|---|---|---|---|---|---|")
    for engine in bare:
        rate, outside, _ = attack_rate(model, images, labels, 400, args.maxiter, engine)
        rate_inv, outside_inv, _ = attack_rate(model, images, labels, 400, args.maxiter,
                                               engine, invariant=True)
        print(f"| {engine} | {bare[engine]:.0f} | {rate:.0f} | {rate / bare[engine]:.2f} | "
              f"{outside:.1%} | {rate_inv:.0f} | {outside_inv:.1%} |")
    for engine in bare.keys() - {"full"}:
        print(f"{engine} / full, bare: {bare[engine] / bare['full']:.2f}x")

    print("\nscaling: seconds per image vs images attacked together (popsize 400, default "
          "engine)")
    print("| images together | s/image | queries/s |\n|---|---|---|")
    for count in sorted({min(n, len(pick)) for n in args.scaling}):
        rate_n, _, per_image = attack_rate(model, all_images[:count], all_labels[:count],
                                           400, args.maxiter)
        print(f"| {count} | {per_image:.3f} | {rate_n:.0f} |")
    print("\nscaling: population size (all images together, default engine)")
    print("| popsize | s/image | queries/s |\n|---|---|---|")
    for popsize in (100, 400, 1600):
        rate_p, _, per_image = attack_rate(model, images, labels, popsize, args.maxiter)
        print(f"| {popsize} | {per_image:.3f} | {rate_p:.0f} |")


if __name__ == "__main__":
    main()
