"""Forward throughput of the CIFAR-10 SqueezeNet under each inference variant.

Measures images/s of the bundled model: plain, BatchNorm folded, folded + channels-last
(what `OnePixelAttack` queries), at several batch sizes, in one run. Labels of the fast
copy are checked against the plain model.

    python benchmarks/inference_variants.py
"""

from __future__ import annotations

import time

import torch
from _setup import bench_inputs

from pixelprior.models import ChannelsLast, fold_batchnorm


@torch.inference_mode()
def rate(model: torch.nn.Module, batch: int, seconds: float = 1.5) -> float:
    """Images per second at ``batch`` (warm-up, then repeated for about ``seconds``)."""
    x = torch.rand(batch, 3, 32, 32)
    model(x)
    count, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        model(x)
        count += batch
    return count / (time.perf_counter() - began)


def main() -> None:
    model, images, _, _ = bench_inputs(100)
    folded = fold_batchnorm(model)
    fast = ChannelsLast(fold_batchnorm(model)).eval()
    with torch.inference_mode():
        same = bool((fast(images).argmax(1) == model(images).argmax(1)).all())
        diff = float((fast(images) - model(images)).abs().max())
    print(f"fast copy vs plain on {len(images)} images: same labels {same}, "
          f"max |logit difference| {diff:.2e}\n")
    batches = (64, 128, 256, 400)
    print("| variant | " + " | ".join(f"batch {b}" for b in batches) + " |")
    print("|---|" + "---|" * len(batches))
    for name, variant in (("plain", model), ("BatchNorm folded", folded),
                          ("folded + channels-last", fast)):
        print(f"| {name} | " + " | ".join(f"{rate(variant, b):.0f}" for b in batches) + " |")


if __name__ == "__main__":
    main()
