"""Does the fast mode agree with the exhaustive 27-colour scans, image for image?

For Table 1's 100 images and the 100 held-out images (the committed scans in
``results/cifar10-susceptibility/{table1,heldout}``), the fast mode (the 8 corners of the
colour cube in the order of the input gradient, to the first success or a certificate)
attacks every image; the script checks that every image the 27-colour scan fools is
fooled, and that no image the scan calls robust is fooled, and measures what the
refine stage (a differential evolution off the corners, ``--refine-queries`` per image,
started at the 10 lowest-margin positions) adds on the images the corners certify.

    PIXELPRIOR_DATA=../shared/data python results/cifar10-fast/agreement.py \
        [--orders gradient occlusion random] [--refine-queries 4000]

Writes ``agreement.md`` and ``agreement.json`` beside this file.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pixelprior import FastAttack, SusceptibilityMaps, load_model
from pixelprior.priors import UniformPrior, WeightedPrior
from pixelprior.report.mapeval import scan_images

HERE = Path(__file__).parent
SCANS = HERE.parent / "cifar10-susceptibility"


def order_prior(order: str):
    return UniformPrior() if order == "random" else WeightedPrior(sensitivity=order)


def run(model, images, labels, order: str, refine: str, refine_queries: int, group: int = 10):
    results, began = [], time.perf_counter()
    for start in range(0, len(images), group):
        attack = FastAttack(model, order_prior(order), refine=refine,
                            refine_budget=refine_queries, seed=0, batch_invariant=True)
        results += attack.run(images[start:start + group], labels[start:start + group]).results
    return results, time.perf_counter() - began


def compare(name: str, model, order: str, refine: str, refine_queries: int,
            limit: int | None = None) -> dict:
    scan = SusceptibilityMaps.load(SCANS / name)
    images, labels = scan_images(scan)
    if limit:
        rows = list(range(min(limit, len(labels))))
        scan = _subset(scan, rows)
        images, labels = images[rows], labels[rows]
    fooled_by_scan = scan.vulnerable.reshape(len(labels), -1).any(1).tolist()
    results, seconds = run(model, images, labels, order, refine, refine_queries)
    fooled = [r.success for r in results]
    certified = [bool(r.steps["corner_certified"]) for r in results]
    return {
        "scan": name, "order": order, "refine": refine, "images": len(results),
        "seconds": seconds, "queries": sum(r.queries for r in results),
        "scan_fooled": sum(fooled_by_scan), "fast_fooled": sum(fooled),
        "fast_certified": sum(c and not f for c, f in zip(certified, fooled, strict=True)),
        "by_refine": sum(r.steps["decided_by"] == "refine" for r in results),
        "scan_fooled_fast_not": [int(i) for i, s, f in zip(scan.image_indices, fooled_by_scan,
                                                             fooled, strict=True)
                                 if s and not f],
        "fast_fooled_scan_robust": [int(i) for i, s, f in zip(scan.image_indices,
                                                                fooled_by_scan, fooled,
                                                                strict=True) if f and not s],
        "median_queries_to_first": float(torch.tensor(
            [float(r.queries) for r in results if r.success]).median()) if any(fooled)
        else None,
    }


def _subset(scan: SusceptibilityMaps, rows: list[int]) -> SusceptibilityMaps:
    import dataclasses

    return dataclasses.replace(scan, **{
        name: getattr(scan, name)[rows] for name in (
            "image_keys", "image_indices", "labels", "min_true_probability", "min_margin",
            "vulnerable", "best_colour")})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", nargs="+", default=["gradient", "occlusion", "random"])
    parser.add_argument("--refine-queries", type=int, default=4000)
    parser.add_argument("--scans", nargs="+", default=["table1", "heldout"])
    parser.add_argument("--limit", type=int, default=None, help="first N images (smoke)")
    args = parser.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())
    model = load_model("squeezenet1_1-cifar10")
    rows = []
    for name in args.scans:
        for order in args.orders:
            rows.append(compare(name, model, order, "none", args.refine_queries, args.limit))
            print(json.dumps(rows[-1]))
        if args.refine_queries:
            rows.append(compare(name, model, args.orders[0], "de", args.refine_queries,
                                args.limit))
            print(json.dumps(rows[-1]))
    if args.limit:
        return  # a smoke run writes nothing
    (HERE / "agreement.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["# The fast mode against the exhaustive 27-colour scans", "",
             f"Command: `python results/cifar10-fast/agreement.py --orders "
             f"{' '.join(args.orders)} --refine-queries {args.refine_queries}`.", "",
             "| scan | order | refine | images | scan fools | fast fools | fast certifies | "
             "fooled by refine | scan fools, fast not | fast fools, scan not | queries/image "
             "| median queries to first | s/image |", "|---" * 13 + "|"]
    for r in rows:
        lines.append(
            f"| {r['scan']} | {r['order']} | {r['refine']} | {r['images']} | "
            f"{r['scan_fooled']} | {r['fast_fooled']} | {r['fast_certified']} | "
            f"{r['by_refine']} | {r['scan_fooled_fast_not'] or 'none'} | "
            f"{r['fast_fooled_scan_robust'] or 'none'} | {r['queries'] / r['images']:.0f} | "
            f"{r['median_queries_to_first']} | {r['seconds'] / r['images']:.2f} |")
    (HERE / "agreement.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
