"""Forward throughput of the CIFAR-10 SqueezeNet under each inference variant.

Measures images/s of the bundled model in one run, at several batch sizes: plain,
BatchNorm folded, folded + channels-last (the attack's full-pass copy), and the candidates
issue 7 asked to measure: ``torch.compile`` (inductor), ONNX Runtime (when installed:
``pip install onnxruntime onnx``) and bfloat16. Each variant's agreement with the plain
model on the correctly classified bundled images is printed beside it (same labels,
largest probability difference): a variant that changes probabilities changes the
attack's fitness values and so its trajectories.

    python benchmarks/inference_variants.py [--seconds 1.5] [--skip compile onnx]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from _setup import bench_inputs

from pixelprior.models import ChannelsLast, fold_batchnorm

Forward = Callable[[torch.Tensor], torch.Tensor]


@torch.inference_mode()
def rate(model: Forward, batch: int, seconds: float) -> float:
    """Images per second at ``batch`` (warm-up, then repeated for about ``seconds``)."""
    x = torch.rand(batch, 3, 32, 32)
    model(x)
    count, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        model(x)
        count += batch
    return count / (time.perf_counter() - began)


def compiled(model: torch.nn.Module) -> Forward:
    return torch.compile(fold_batchnorm(model).eval(), dynamic=False)


def onnx_runtime(model: torch.nn.Module) -> Forward:
    """The attack's ONNX Runtime engine (:mod:`pixelprior.scoring.onnx_runtime`): the folded model
    exported to ONNX, run on PyTorch's thread count, full graph optimisation."""
    from pixelprior.scoring import OnnxRuntimeModel

    return OnnxRuntimeModel(model, torch.rand(2, 3, 32, 32))


def bfloat16(model: torch.nn.Module) -> Forward:
    fast = ChannelsLast(fold_batchnorm(model).to(torch.bfloat16)).eval()
    return lambda x: fast(x.to(torch.bfloat16)).float()


@torch.inference_mode()
def agreement(variant: Forward, model: torch.nn.Module, images: torch.Tensor) -> str:
    reference, got = model(images).softmax(1), variant(images).float().softmax(1)
    same = bool((reference.argmax(1) == got.argmax(1)).all())
    return f"{'same' if same else 'DIFFERENT'} labels, max |Δp| {(reference - got).abs().max():.1e}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--skip", nargs="*", default=[], help="compile, onnx and/or bf16")
    args = parser.parse_args(argv)
    model, images, _, _ = bench_inputs(100)
    variants: dict[str, Forward] = {
        "plain": model,
        "BatchNorm folded": fold_batchnorm(model),
        "folded + channels-last": ChannelsLast(fold_batchnorm(model)).eval(),
    }
    builders = {"compile": ("torch.compile (inductor), folded", compiled),
                "onnx": ("ONNX Runtime, folded", onnx_runtime),
                "bf16": ("bfloat16, folded + channels-last", bfloat16)}
    for key, (name, build) in builders.items():
        if key in args.skip:
            continue
        try:
            variants[name] = build(model)
        except Exception as exc:  # a missing optional package or backend
            print(f"{name}: not measured ({type(exc).__name__}: {exc})")
    batches = (64, 128, 256, 400)
    print(f"\nimages/s; agreement with the plain model on {len(images)} correctly "
          "classified images\n")
    print("| variant | " + " | ".join(f"batch {b}" for b in batches) + " | agreement |")
    print("|---|" + "---|" * (len(batches) + 1))
    for name, variant in variants.items():
        rates = " | ".join(f"{rate(variant, b, args.seconds):.0f}" for b in batches)
        print(f"| {name} | {rates} | {agreement(variant, model, images)} |")


if __name__ == "__main__":
    main()
