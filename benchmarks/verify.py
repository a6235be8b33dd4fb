"""The sound verifier against the samplers, side by side on the same images.

For each model, its first ``--images`` correctly classified CIFAR-10 test images (the
official test batch under ``PIXELPRIOR_DATA``, else the bundled first 100):

* ``fast``: :class:`~pixelprior.FastAttack` without its verify stage: fooled, or
  certified on the 8 corner colors (a sample of the color cube, not a proof);
* ``scan-27``: the exhaustive scan on the 27-color grid (every position × 27 colors):
  the ground truth on that grid, still a sample;
* ``verifier``: :class:`~pixelprior.Verifier` with ``--budget`` seconds per image:
  verified (a proof over every color of every pixel, floating point included), fooled
  (a witness the model confirms), or unknown.

Printed per model: the verdicts, seconds per image (median and largest), the share of the
threat space proved on the images left unknown, how many corner-certified images the
verifier fools (what a corner certificate misses), and the soundness check: an image the
verifier calls verified that a sampler fools is a bug (counted, must be 0). Ratios are
of seconds per image, measured in this one run.

    python benchmarks/verify.py [--models convsmall-cifar10 resnet8-cifar10]
        [--images 50] [--budget 120] [--squeezenet 10] [--squeezenet-budget 600]

``--compare-screen`` and ``--compare-float32`` verify every image again without the
interval screen, or without its proof of the float32 error, and print the two side by side.

``--squeezenet N`` adds the bundled SqueezeNet on N images that ``fast`` certifies on the
corners (the verifier cannot decide SqueezeNet's images in minutes: its boxes need
thousands of symbols; this measures how far it gets).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from pixelprior import FastAttack, Verifier, load_cifar10, load_model, to_float
from pixelprior.experiment import correctly_classified
from pixelprior.scoring import perturb_rows
from pixelprior.search import SusceptibilityScan


def first_correct(model, count: int):
    data = load_cifar10("auto")
    pick = correctly_classified(model, data, count)
    return to_float(data.images[pick]), data.labels[pick], pick.tolist(), data.source


def sampled(model, images, labels) -> dict:
    """The fast attack and the 27-color scan, per image: fooled? and seconds."""
    fast = FastAttack(model, verify="off", batch_invariant=True)
    scan = SusceptibilityScan(model, 3, batch_invariant=True)
    out = {"fast_fooled": [], "fast_certified": [], "fast_s": [], "scan_fooled": [],
           "scan_s": []}
    for n in range(len(labels)):
        image, label = images[n:n + 1], labels[n:n + 1]
        began = time.perf_counter()
        result = fast.run(image, label).results[0]
        out["fast_s"].append(time.perf_counter() - began)
        out["fast_fooled"].append(bool(result.success))
        out["fast_certified"].append(bool(result.to_row().get("corner_certified")))
        began = time.perf_counter()
        maps = scan(image, label)
        out["scan_s"].append(time.perf_counter() - began)
        out["scan_fooled"].append(bool(maps.vulnerable.any()))
    return out


def verified(model, images, labels, budget: float, screen: bool | None = None,
             prove_float32: bool = True) -> list:
    verifier = Verifier(model, budget=budget, screen=screen, prove_float32=prove_float32)
    answers = []
    for n in range(len(labels)):
        answer = verifier.verify(images[n:n + 1], labels[n:n + 1])[0]
        if answer.fooled:  # the benchmark re-checks every witness with the model
            x, y, color = answer.witness
            genes = torch.tensor([[x, y, *color]], dtype=images.dtype)[None]
            with torch.inference_mode():
                score = model(perturb_rows(images[n:n + 1], torch.zeros(1, dtype=torch.long),
                                           genes))
            assert int(score.argmax(1)) != int(labels[n]), "a witness that does not fool"
        answers.append(answer)
        robust = answer.positions.status.count("robust")
        witness = ""
        if answer.fooled:
            x, y, color = answer.witness
            witness = f", witness ({x}, {y}) color {tuple(round(float(c), 4) for c in color)}"
        print(f"  image {n}: {answer.decided_by} in {answer.seconds:.1f} s "
              f"({answer.boxes} boxes, {answer.screened} positions proved by the interval "
              f"screen, proved share {answer.verified_volume:.5f}, "
              f"{robust} positions proved{witness})", flush=True)
    return answers


def report(name: str, source: str, indices, samples: dict, answers: list, budget: float
           ) -> None:
    count = len(answers)
    verdict = [a.decided_by for a in answers]
    seconds = [a.seconds for a in answers]
    unknown = [a.verified_volume for a in answers if a.decided_by == "unknown"]
    proved = [a.positions.status.count("robust") for a in answers if a.decided_by == "unknown"]
    wrong = sum(a.verified and (f or s) for a, f, s in
                zip(answers, samples["fast_fooled"], samples["scan_fooled"], strict=True))
    missed = sum(a.fooled and c for a, c in
                 zip(answers, samples["fast_certified"], strict=True))
    fast_s, scan_s = statistics.mean(samples["fast_s"]), statistics.mean(samples["scan_s"])
    verify_s = statistics.mean(seconds)
    print(f"\n### {name}: {count} images ({source}, indices {indices[0]}..{indices[-1]}), "
          f"verifier budget {budget:g} s/image\n")
    print("| method | fooled | certified / verified | undecided | s/image (mean) "
          "| s/image vs fast |")
    print("|---|---|---|---|---|---|")
    fast_cert = sum(samples["fast_certified"][n] and not samples["fast_fooled"][n]
                    for n in range(count))
    print(f"| fast (8 corner colors) | {sum(samples['fast_fooled'])} | {fast_cert} on the "
          f"corners | {count - sum(samples['fast_fooled']) - fast_cert} | {fast_s:.2f} | 1.0x |")
    print(f"| scan-27 (27-color grid) | {sum(samples['scan_fooled'])} | "
          f"{count - sum(samples['scan_fooled'])} on the grid | 0 | {scan_s:.2f} | "
          f"{scan_s / fast_s:.1f}x |")
    print(f"| verifier (every color) | {verdict.count('fooled')} | "
          f"{verdict.count('verified')} proved | {verdict.count('unknown')} | {verify_s:.2f} "
          f"| {verify_s / fast_s:.1f}x |")
    print(f"\nverifier seconds per image: median {statistics.median(seconds):.1f}, "
          f"largest {max(seconds):.1f}; boxes per image: median "
          f"{statistics.median(a.boxes for a in answers):,.0f}; positions proved by the "
          f"interval screen: median {statistics.median(a.screened for a in answers):,.0f}")
    if unknown:
        print(f"unknown images: share of the threat space proved, median "
              f"{statistics.median(unknown):.5f}, largest {max(unknown):.5f}, lowest "
              f"{min(unknown):.5f}; positions proved robust, median "
              f"{statistics.median(proved):g}, largest {max(proved)}")
    verified = [a for a in answers if a.verified]
    if verified:
        full = sum(a.verified_in_float32 for a in verified)
        print(f"verified images with the float32 evaluation proved at every position: "
              f"{full} of {len(verified)}; tolerance (first-order estimate) median "
              f"{statistics.median(a.tolerance for a in verified):.4g}, largest used "
              f"(proved) median {statistics.median(a.tolerance_max for a in verified):.4g}")
    print(f"corner-certified images the verifier fools: {missed} "
          f"(a corner certificate is a sample, not a proof)")
    print(f"soundness check: images verified that a sampler fools: {wrong} (must be 0)")
    assert wrong == 0, "the verifier proved an image a sampler fools"


def compare_screen(screened: list, plain: list, what: str = "the screen") -> None:
    """Verdicts and seconds with and without the interval screen (or ``what``), image by
    image."""
    same = sum(a.decided_by == b.decided_by for a, b in zip(screened, plain, strict=True))
    with_s = [a.seconds for a in screened]
    without_s = [b.seconds for b in plain]
    print(f"\nsame verdict with and without {what}: {same} of {len(plain)}")
    print(f"verifier seconds per image, with / without {what}: median "
          f"{statistics.median(with_s):.1f} / {statistics.median(without_s):.1f}, total "
          f"{sum(with_s):.0f} / {sum(without_s):.0f} "
          f"({sum(without_s) / max(sum(with_s), 1e-9):.1f}x)")


def squeezenet(count: int, budget: float) -> None:
    model = load_model("squeezenet1_1-cifar10")
    images, labels, indices, source = first_correct(model, 4 * count)
    fast = FastAttack(model, verify="off", batch_invariant=True)
    rows = fast.run(images, labels).results
    pick = [n for n, r in enumerate(rows) if not r.success][:count]
    print(f"\n## squeezenet1_1-cifar10: {len(pick)} corner-certified images "
          f"(indices {[indices[n] for n in pick]}), budget {budget:g} s/image")
    answers = verified(model, images[pick], labels[pick], budget)
    samples = sampled(model, images[pick], labels[pick])
    report("squeezenet1_1-cifar10", source, [indices[n] for n in pick], samples, answers,
           budget)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*",
                        default=["convsmall-cifar10", "resnet8-cifar10"])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--budget", type=float, default=120.0)
    parser.add_argument("--squeezenet", type=int, default=0)
    parser.add_argument("--squeezenet-budget", type=float, default=600.0)
    parser.add_argument("--compare-screen", action="store_true",
                        help="also verify every image without the interval screen, and "
                             "print the times side by side")
    parser.add_argument("--compare-float32", action="store_true",
                        help="also verify every image without proving the float32 error "
                             "(the first-order estimate alone), side by side")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    for name in args.models:
        began = time.perf_counter()
        model = load_model(name).eval()
        images, labels, indices, source = first_correct(model, args.images)
        print(f"\n## {name}", flush=True)
        answers = verified(model, images, labels, args.budget)
        samples = sampled(model, images, labels)
        report(name, source, indices, samples, answers, args.budget)
        if args.compare_screen:
            print("\nwithout the interval screen:", flush=True)
            plain = verified(model, images, labels, args.budget, screen=False)
            compare_screen(answers, plain)
        if args.compare_float32:
            print("\nwithout the float32 proof (the first-order estimate alone):",
                  flush=True)
            plain = verified(model, images, labels, args.budget, prove_float32=False)
            compare_screen(answers, plain, "the float32 proof")
        print(f"({time.perf_counter() - began:.0f} s for {name})", flush=True)
    if args.squeezenet:
        squeezenet(args.squeezenet, args.squeezenet_budget)


if __name__ == "__main__":
    main()
