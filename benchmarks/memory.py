"""Peak memory of one ImageNet SqueezeNet forward at 224×224 on the CPU, per batch size.

Tells what `max_batch` fits: the attack holds at most `max_batch` perturbed images and
their activations at a time. Each batch size runs in a fresh process so the peak (max RSS)
belongs to that batch alone. Random weights: memory does not depend on their values.

    python benchmarks/memory.py [--batches 16 64]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys


def measure(batch: int, version: str) -> float:
    """Extra peak memory (MiB) of one forward of ``batch`` images, in this process."""
    import torch

    from pixelprior.models import SqueezeNet, inference_model

    torch.set_num_threads(1)
    model = SqueezeNet(version).eval()
    fast = inference_model(model, torch.rand(2, 3, 224, 224))
    images = torch.rand(batch, 3, 224, 224)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.inference_mode():
        fast(images)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="*", default=[16, 64])
    parser.add_argument("--version", default="1_1")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(f"{measure(args.child, args.version):.1f}")
        return
    print(f"| SqueezeNet {args.version}, 224x224, batch | peak extra MiB | MiB per image |")
    print("|---|---|---|")
    for batch in args.batches:
        out = subprocess.run([sys.executable, __file__, "--child", str(batch), "--version",
                              args.version], capture_output=True, text=True, check=True)
        mib = float(out.stdout.strip())
        print(f"| {batch} | {mib:.0f} | {mib / batch:.1f} |")


if __name__ == "__main__":
    main()
