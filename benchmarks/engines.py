"""Query engines against the machine's ceiling: full passes vs incremental inference.

For each model (the bundled CIFAR-10 SqueezeNet at 32×32, and torchvision's SqueezeNet
1.0 / 1.1 at 224×224 with random weights, whose speed does not depend on weight values),
prints, measured side by side in one run:

- floating-point work per one-pixel query (``torch.utils.flop_counter``) of a full pass and
  of the incremental engine (:func:`pixelprior.scoring.incremental_forward`);
- queries per second of both engines on the same rows, and their agreement (labels, the
  largest score difference);
- the ceiling: the machine's fp32 matrix-multiply rate (measured here, in the same run)
  divided by the work per query, and how close each engine gets to it.

The ceiling says what no fp32 engine can beat on this machine, whatever its overheads: it
is the bound behind the gap to issue 7's 20× target (see ``benchmarks/RESULTS.md``).

    python benchmarks/engines.py [--rows 128] [--seconds 3] [--skip-imagenet]
"""

from __future__ import annotations

import argparse
import time

import torch
from _setup import bench_inputs
from torch.utils.flop_counter import FlopCounterMode

from pixelprior.models import SqueezeNet, inference_model
from pixelprior.scoring import incremental_forward, perturb_rows


def matmul_gflops(size: int = 2048, seconds: float = 2.0) -> float:
    """fp32 GFLOP/s of a large matrix product: what this CPU's cores can do at best."""
    a, b = torch.rand(size, size), torch.rand(size, size)
    a @ b
    count, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        a @ b
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - began) / 1e9


def random_rows(image: torch.Tensor, rows: int, seed: int = 0):
    """``rows`` one-pixel candidates on ``image``: owner, y, x, colour, genes."""
    generator = torch.Generator().manual_seed(seed)
    height, width = image.shape[-2:]
    y = torch.randint(0, height, (rows,), generator=generator)
    x = torch.randint(0, width, (rows,), generator=generator)
    colour = torch.rand(rows, image.shape[1], generator=generator)
    genes = torch.cat([x[:, None].float(), y[:, None].float(), colour], 1)[:, None, :]
    return torch.zeros(rows, dtype=torch.long), y, x, colour, genes


def rate(fn, rows: int, seconds: float) -> float:
    """Rows per second of ``fn`` (warm-up, then repeated for about ``seconds``)."""
    fn()
    count, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        fn()
        count += rows
    return count / (time.perf_counter() - began)


def gflop_per_query(fn, rows: int) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / rows / 1e9


@torch.inference_mode()
def compare(name: str, model: torch.nn.Module, image: torch.Tensor, rows: int,
            seconds: float, peak: float) -> None:
    fast = inference_model(model, image)
    engine = incremental_forward(fast)
    cache = engine.prepare(image)
    owner, y, x, colour, genes = random_rows(image, rows)

    def full():
        return fast(perturb_rows(image, owner, genes))

    def incremental():
        return engine(cache, owner, y, x, colour)

    expected, got = full(), incremental()
    same = bool((expected.argmax(1) == got.argmax(1)).all())
    diff = float((expected - got).abs().max())
    print(f"\n{name}: {rows} rows per call; incremental vs full: same labels {same}, "
          f"largest |score difference| {diff:.1e}")
    print("| engine | GFLOP/query | queries/s | ceiling queries/s | share of ceiling |")
    print("|---|---|---|---|---|")
    results = {}
    for label, fn in (("full pass (BN folded, channels-last)", full),
                      ("incremental", incremental)):
        work = gflop_per_query(fn, rows)
        measured = rate(fn, rows, seconds)
        results[label] = measured
        print(f"| {label} | {work:.4f} | {measured:.0f} | {peak / work:.0f} | "
              f"{measured * work / peak:.0%} |")
    full_rate, inc_rate = results.values()
    print(f"incremental / full: {inc_rate / full_rate:.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=128, help="rows per call (CIFAR)")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--skip-imagenet", action="store_true")
    args = parser.parse_args(argv)
    model, images, _, _ = bench_inputs(1)
    peak = matmul_gflops()
    print(f"fp32 matrix multiply (2048²): {peak:.0f} GFLOP/s")
    compare("CIFAR-10 SqueezeNet (bundled), 32×32", model, images[:1], args.rows,
            args.seconds, peak)
    if not args.skip_imagenet:
        torch.manual_seed(0)
        image = torch.rand(1, 3, 224, 224)
        for version in ("1_1", "1_0"):
            compare(f"SqueezeNet {version} (random weights), 224×224",
                    SqueezeNet(version).eval(), image, 32, args.seconds, peak)


if __name__ == "__main__":
    main()
