"""Everything issue 13 asks to measure on a GPU, in one run, naming the device.

Sections (each printed as a Markdown table, measured side by side in this process):

1. **ceiling**: raw fp32 forward passes of the fast model copy (images/s) at several
   batch sizes — CIFAR-10 SqueezeNet (bundled) and SqueezeNet 1.1 / 1.0 at 224×224
   (random weights: speed does not depend on weight values);
2. **the attack per engine and chunking**: ``OnePixelAttack`` queries/s with the full pass
   and the incremental engine, at default chunking (from the device memory) and at a
   large explicit ``max_batch``, each as a share of the ceiling;
3. **reproducible mode**: ``batch_invariant=True`` (fixed-shape chunks, the runner's
   mode) against the free mode — the cost of reproducibility (target ≤ 20%);
4. **CUDA graphs and bf16**: queries/s with ``cuda_graphs=True`` (fixed shapes) and
   with ``precision="bf16"``, and how often bf16 changes labels or the ranking of a
   population's fitness (``benchmarks/precision.py`` measures the same on any device);
5. **Table 1**: wall time of ``pixelprior reproduce cifar10 --source full`` (1,000
   attacks, report included) when ``--table1`` is given and ``PIXELPRIOR_DATA`` is set;
6. **peers on the same device**: pixelprior vs torchattacks ``OnePixel`` vs ART
   ``PixelAttack`` on the first correctly classified test images, same budget;
7. **the sound verifier** (issue 26), the same work on the device and on this machine's
   CPU: ConvSmall's first ``--verify-images`` correct images (every one decided),
   ResNet8's most robust position of test image 0 proved to the end, and the SqueezeNet's
   first image no corner color fools for ``--verify-budget`` seconds (the share of its
   threat space proved); verdicts agree unless the tolerances differ (TF32 on CUDA: both
   printed; ``--verify-images 0`` skips the section);
8. **the verifier's convolution kernels**: the kernels (CUDA) or operators (CPU) that
   run while the verifier bounds boxes on the three bundled models, from
   ``torch.profiler``. The float64 bounds (and the float32 proof of the model's own
   error) hold for convolutions computed as sums of products in any order; a Winograd
   or FFT kernel (cuDNN may pick one) rounds otherwise, so any kernel whose name says
   so is flagged. Run with section 7. On the CPU it lists PyTorch's operators
   (float64 convolutions are ``_slow_conv2d_forward``: unfolded and multiplied; float32
   ones ``mkldnn_convolution``, for which PyTorch asks oneDNN for direct convolution).

    python benchmarks/gpu.py [--images 50] [--generations 10] [--table1] [--peers 20]
        [--verify-images 10] [--verify-budget 60]
    python benchmarks/gpu.py --device cpu --quick     # a smoke run of the script itself
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _setup import bench_inputs

from pixelprior import FastAttack, OnePixelAttack, UniformPrior, Verifier
from pixelprior.models import SqueezeNet, inference_model
from pixelprior.scoring import perturb_rows


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def device_line(device: str) -> str:
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        return (f"device: {props.name}, {props.total_memory / 2**30:.0f} GiB, torch "
                f"{torch.__version__}, CUDA {torch.version.cuda}")
    return f"device: CPU ({torch.get_num_threads()} threads), torch {torch.__version__}"


@torch.inference_mode()
def forward_rate(model, image: torch.Tensor, batch: int, device: str,
                 seconds: float = 2.0) -> float:
    """Images/s of one model on ``batch`` perturbed copies of ``image``."""
    fast = inference_model(model, image[:1])
    owner = torch.zeros(batch, dtype=torch.long, device=device)
    genes = torch.rand(batch, 1, 2 + image.shape[1], device=device) * torch.tensor(
        [image.shape[-1] - 1, image.shape[-2] - 1, 1, 1, 1], device=device)
    rows = perturb_rows(image, owner, genes)
    fast(rows)
    sync(device)
    count, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        fast(rows)
        count += 1
    sync(device)
    return batch * count / (time.perf_counter() - began)


def attack_rate(model, images, labels, generations: int, **kwargs) -> tuple[float, object]:
    """(queries/s, output) of an unconstrained attack running ``generations``."""
    attack = OnePixelAttack(model, prior=UniformPrior(), popsize=400, maxiter=generations,
                            seed=0, **kwargs)
    attack(images[:1], labels[:1])  # warm-up: scorer, chunk probe, kernels
    attack.queries = 0
    sync(str(images.device))
    began = time.perf_counter()
    out = attack.run(images, labels)
    sync(str(images.device))
    return sum(r.queries for r in out.results) / (time.perf_counter() - began), out


def section(title: str) -> None:
    print(f"\n## {title}\n", flush=True)


def ceiling(model, image, device, batches, label) -> dict[int, float]:
    rates = {b: forward_rate(model, image, b, device) for b in batches}
    print(f"| {label} | " + " | ".join(f"{rates[b]:,.0f}" for b in batches) + " |")
    return rates


def imagenet_rows(device: str, generations: int, quick: bool) -> None:
    size = 64 if quick else 224
    print(f"SqueezeNet at {size}×{size}, random weights, 4 images, {generations} generations")
    print("| model | engine | default chunking (q/s) | max_batch 4096 (q/s) |\n|---|---|---|---|")
    for version in ("1_1", "1_0"):
        torch.manual_seed(0)
        model = SqueezeNet(version).eval().to(device)
        images = torch.rand(4, 3, size, size, device=device)
        with torch.inference_mode():
            labels = model(images).argmax(1)
        for engine in ("full", "incremental"):
            default, _ = attack_rate(model, images, labels, generations, engine=engine)
            big, _ = attack_rate(model, images, labels, generations, engine=engine,
                                 max_batch=4096)
            print(f"| SqueezeNet {version} | {engine} | {default:,.0f} | {big:,.0f} |")


def precision_agreement(model, images, labels, device: str) -> str:
    """How often bf16 changes a candidate's label or the order of a population's fitness."""
    from precision import agreement

    stats = agreement(model, images, labels, rows_per_image=400)
    return (f"bf16 vs fp32 on {stats['rows']:,} candidates of {stats['images']} images: "
            f"labels differ on {stats['label_changes']:.3%}; largest probability change "
            f"{stats['max_change']:.1e}; Spearman of the population fitness ranking "
            f"{stats['spearman']:.4f}; the best member differs on "
            f"{stats['best_member_changes']} of {stats['images']} images")


def table1(device: str) -> None:
    if not os.environ.get("PIXELPRIOR_DATA"):
        print("Table 1: not measured (set PIXELPRIOR_DATA to the folder holding "
              "cifar-10-batches-py)")
        return
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "pixelprior.cli", "reproduce", "cifar10", "--source",
                   "full", "--device", device, "--out", str(Path(out) / "table1")]
        began = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - began
        if done.returncode:
            print(f"Table 1 failed: {done.stderr.strip().splitlines()[-1:]}")
            return
        print(f"Table 1 (`{' '.join(command[3:])}`, 1,000 attacks, SmoothGrad, report): "
              f"{wall:.1f} s wall on {device}")


def peers(count: int, device: str, maxiter: int) -> None:
    import peers as peer_bench

    model, images, labels, pick = bench_inputs(count)
    model, images, labels = model.to(device), images.to(device), labels.to(device)
    rows = {"pixelprior unconstrained": peer_bench.run_pixelprior(
        model, images, labels, maxiter, UniformPrior()),
            "pixelprior fast (corners, gradient order)": peer_bench.run_fast(
        model, images, labels),
            "pixelprior random search": peer_bench.run_random_search(
        model, images, labels, 10_000)}
    for name, run in (("torchattacks OnePixel", peer_bench.run_torchattacks),
                      ("ART PixelAttack", peer_bench.run_art),
                      ("Sparse-RS", lambda *a: peer_bench.run_sparse_rs(*a[:3], 10_000))):
        try:
            rows[name] = run(model, images, labels, maxiter)
        except ImportError as exc:
            print(f"{name}: not measured ({exc})")
    ours = rows["pixelprior unconstrained"][0]
    print("| method | s/image | success | queries/image | vs pixelprior |\n|---|---|---|---|---|")
    for name, (seconds, success, queries) in rows.items():
        print(f"| {name} | {seconds:.3f} | {success:.0%} | {queries:,.0f} | "
              f"{seconds / ours:.1f}x |")


def timed_verify(model, images, labels, device: str, **kwargs) -> tuple[float, list]:
    """Seconds and answers of :class:`~pixelprior.Verifier` on ``device`` (after an
    untimed one-box run that warms the device up)."""
    options = {k: kwargs.pop(k) for k in ("budget", "max_boxes") if k in kwargs}
    model = model.to(device)
    Verifier(model, budget=None, max_boxes=1).verify(images[:1].to(device),
                                                     labels[:1].to(device))
    verifier = Verifier(model, **options)
    sync(device)
    began = time.perf_counter()
    answers = verifier.verify(images.to(device), labels.to(device), **kwargs)
    sync(device)
    return time.perf_counter() - began, answers


def verifier_rows(device: str, count: int, budget: float, quick: bool) -> None:
    """The verifier's work on ``device`` and on the CPU, side by side (section 7)."""
    convsmall, images, labels, _ = bench_inputs(count, "convsmall-cifar10")
    resnet, r_images, r_labels, _ = bench_inputs(1, "resnet8-cifar10")
    squeeze, s_images, s_labels, _ = bench_inputs(8)
    corners = FastAttack(squeeze, verify="off").run(s_images, s_labels).results
    unfooled = [n for n, r in enumerate(corners) if not r.success][:1]
    order = Verifier(resnet).corner_order(r_images, r_labels)[:, -1:]
    limit = {"max_boxes": 8} if quick else {"budget": None}
    some = " (8 boxes)" if quick else ""
    cases = [(f"ConvSmall, {count} images, every one decided{some}", convsmall, images,
              labels, limit),
             (f"ResNet8, test image 0's most robust position{some}", resnet, r_images,
              r_labels, {**limit, "orders": order, "stop_at_first": False})]
    if unfooled:
        cases.append((f"SqueezeNet, the first image no corner color fools, {budget:g} s",
                      squeeze, s_images[unfooled], s_labels[unfooled],
                      {"max_boxes": 2} if quick else {"budget": budget}))
    print("Verdicts agree unless the tolerances differ (TF32 on CUDA rounds coarser: its "
          "derived tolerance is larger).\n")
    print("| work | CPU s | " + device + " s | CPU / " + device + " | CPU verdicts | "
          + device + " verdicts | proved share (CPU / " + device + ") | tolerance, "
          "largest (CPU / " + device + ") |\n|---|---|---|---|---|---|---|---|")
    for name, model, x, y, kwargs in cases:
        measured = {}
        for where in ("cpu", device):
            measured[where] = timed_verify(copy.deepcopy(model), x, y, where, **dict(kwargs))
        (cpu_s, cpu), (dev_s, dev) = measured["cpu"], measured[device]
        verdicts = [", ".join(a.decided_by for a in answers) for answers in (cpu, dev)]
        if len(y) > 3:
            verdicts = [", ".join(f"{v} {[a.decided_by for a in answers].count(v)}"
                                  for v in ("verified", "fooled", "unknown"))
                        for answers in (cpu, dev)]
        shares = " / ".join(f"{sum(a.verified_volume for a in answers) / len(answers):.5f}"
                            for answers in (cpu, dev))
        tolerances = " / ".join(f"{max(a.tolerance for a in answers):.2e}"
                                for answers in (cpu, dev))
        print(f"| {name} | {cpu_s:.1f} | {dev_s:.1f} | {cpu_s / dev_s:.1f}x | {verdicts[0]} "
              f"| {verdicts[1]} | {shares} | {tolerances} |", flush=True)


SUSPECT_KERNELS = ("fft", "winograd", "cgemm")  # cgemm: the complex products of FFT convolutions


def convolution_kernels(device: str, seconds: float) -> None:
    """The kernels that run while the verifier bounds boxes of each bundled model's first
    correct image for ``seconds`` on ``device`` (section 8), flagging any that is not a
    sum of products."""
    from torch.profiler import ProfilerActivity, profile

    activity = ProfilerActivity.CUDA if device.startswith("cuda") else ProfilerActivity.CPU
    names: dict[str, int] = {}
    for name in ("convsmall-cifar10", "resnet8-cifar10", "squeezenet1_1-cifar10"):
        model, images, labels, _ = bench_inputs(1, name)
        model = model.to(device)
        Verifier(model, budget=None, max_boxes=1).verify(images.to(device), labels.to(device))
        with profile(activities=[activity]) as prof:
            Verifier(model, budget=seconds).verify(images.to(device), labels.to(device))
            sync(device)
        for event in prof.key_averages():
            if activity == ProfilerActivity.CPU and not event.key.startswith("aten::"):
                continue
            names[event.key] = names.get(event.key, 0) + event.count
    wanted = ("conv", "gemm", "fft", "winograd", "mm", "cutlass", "xmma", "sm80", "sm90")
    rows = sorted((k, v) for k, v in names.items() if any(w in k.lower() for w in wanted))
    print("| kernel | calls | flagged |\n|---|---|---|")
    for key, count in rows:
        flag = "**yes**" if any(w in key.lower() for w in SUSPECT_KERNELS) else ""
        print(f"| `{key[:100]}` | {count:,} | {flag} |")
    flagged = [k for k in names if any(w in k.lower() for w in SUSPECT_KERNELS)]
    print(f"\nWinograd/FFT kernels: {len(flagged)}" + (
        " (the bounds' rounding assumption does not hold for these calls)" if flagged
        else " (every convolution ran as a sum of products)"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--table1", action="store_true")
    parser.add_argument("--peers", type=int, default=20, help="images for the peers (0: skip)")
    parser.add_argument("--verify-images", type=int, default=10,
                        help="ConvSmall images for the verifier section (0: skip it)")
    parser.add_argument("--verify-budget", type=float, default=60.0,
                        help="seconds on the SqueezeNet image in the verifier section")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    args = parser.parse_args(argv)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: nothing measured (run on a GPU, or --device cpu --quick)")
        return
    if args.quick:
        args.images, args.generations, args.peers = 4, 2, 0
        args.verify_images = min(args.verify_images, 2)
    print(device_line(device))
    model, images, labels, _ = bench_inputs(args.images)
    model, images, labels = model.to(device), images.to(device), labels.to(device)
    batches = (64, 400) if args.quick else (400, 4000, 16000)

    section("1. ceiling: fp32 forward passes of the fast copy, images/s")
    print("| model | " + " | ".join(f"batch {b}" for b in batches) + " |\n|---|"
          + "---|" * len(batches))
    peak = max(ceiling(model, images[:1], device, batches, "CIFAR-10 SqueezeNet").values())

    section(f"2. the attack, {len(images)} images × {args.generations} generations, "
            "popsize 400")
    print("| engine | chunking | queries/s | share of the best forward rate |\n|---|---|---|---|")
    results = {}
    for engine in ("full", "incremental"):
        for label, kwargs in (("default", {}), ("max_batch 16000", {"max_batch": 16000})):
            rate, out = attack_rate(model, images, labels, args.generations, engine=engine,
                                    **kwargs)
            results[(engine, label)] = (rate, out)
            print(f"| {engine} | {label} | {rate:,.0f} | {rate / peak:.0%} |")

    section("3. reproducible mode (fixed-shape chunks) vs free mode, default chunking")
    print("| engine | free (q/s) | reproducible (q/s) | cost | same outcomes |\n"
          "|---|---|---|---|---|")
    for engine in ("full", "incremental"):
        free, out_free = results[(engine, "default")]
        fixed, out_fixed = attack_rate(model, images, labels, args.generations, engine=engine,
                                       batch_invariant=True)
        same = [r.success for r in out_free.results] == [r.success for r in out_fixed.results]
        print(f"| {engine} | {free:,.0f} | {fixed:,.0f} | {1 - fixed / free:.0%} | {same} |")

    section("4. CUDA graphs and bf16")
    print("| variant | queries/s |\n|---|---|")
    for label, kwargs in (("full, fixed shapes, CUDA graphs", {"engine": "full",
                                                               "batch_invariant": True,
                                                               "cuda_graphs": True}),
                          ("incremental, bf16", {"engine": "incremental",
                                                 "precision": "bf16"}),
                          ("full, bf16", {"engine": "full", "precision": "bf16"})):
        rate, _ = attack_rate(model, images, labels, args.generations, **kwargs)
        print(f"| {label} | {rate:,.0f} |")
    print("\n" + precision_agreement(model, images, labels, device))

    section("ImageNet SqueezeNets, default settings")
    imagenet_rows(device, args.generations, args.quick)

    if args.table1:
        section("5. Table 1 wall time")
        table1(device)
    if args.peers:
        section(f"6. peers on {device}, {args.peers} images, population 400, 100 generations")
        peers(args.peers, device, 100)
    if args.verify_images:
        section(f"7. the sound verifier on {device} and on the CPU "
                f"({torch.get_num_threads()} threads)")
        verifier_rows(device, args.verify_images, args.verify_budget, args.quick)
        section(f"8. the verifier's convolution kernels on {device}")
        convolution_kernels(device, 2.0 if args.quick else 20.0)


if __name__ == "__main__":
    main()
