"""How much does bf16 change what the attack sees? A measured statement, any device.

For the first correctly classified test images, ``--rows`` random one-pixel candidates
each (the first population of an attack) are scored in fp32 and with bf16 autocast by the
same engine. Printed: the share of candidates whose label changes, the largest change of
a probability, the mean Spearman correlation of each image's population ranked by fitness
(the true class's probability, what DE compares), how often the fittest member differs,
and, over whole attacks, how often success or the generation of success differ.

    python benchmarks/precision.py [--images 20] [--rows 400] [--device cpu] [--attacks 10]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _setup import bench_inputs

from pixelprior import OnePixelAttack
from pixelprior.scoring import make_scorer


def agreement(model, images, labels, rows_per_image: int = 400, seed: int = 0,
              engine: str = "auto") -> dict:
    """fp32 vs bf16 on the same random candidates (see the module docstring)."""
    from scipy.stats import spearmanr

    generator = torch.Generator().manual_seed(seed)
    count, (height, width) = images.shape[0], images.shape[-2:]
    owner = torch.arange(count).repeat_interleave(rows_per_image)
    xy = torch.rand(len(owner), 2, generator=generator) * torch.tensor([width - 1, height - 1])
    genes = torch.cat([xy.round(), torch.rand(len(owner), images.shape[1],
                                              generator=generator)], 1)[:, None]
    owner, genes = owner.to(images.device), genes.to(images.device)
    probs = {}
    for precision in ("fp32", "bf16"):
        scorer = make_scorer(model, images, engine, precision=precision)
        state = scorer.prepare(images)
        probs[precision] = scorer.probabilities(state, images, owner, genes, 512).cpu()
    exact, low = probs["fp32"], probs["bf16"]
    true = labels.cpu()[owner.cpu()]
    fitness = {k: v.gather(1, true[:, None]).view(count, rows_per_image)
               for k, v in probs.items()}
    rho = [spearmanr(fitness["fp32"][i], fitness["bf16"][i]).statistic for i in range(count)]
    return {"images": count, "rows": len(owner),
            "label_changes": float((exact.argmax(1) != low.argmax(1)).float().mean()),
            "max_change": float((exact - low).abs().max()),
            "spearman": float(np.mean(rho)),
            "best_member_changes": int((fitness["fp32"].argmin(1)
                                        != fitness["bf16"].argmin(1)).sum())}


def attack_agreement(model, images, labels, maxiter: int = 100) -> dict:
    """Whole attacks in fp32 and bf16: success and the generation of success."""
    runs = {p: OnePixelAttack(model, popsize=400, maxiter=maxiter, seed=0,
                              precision=p).run(images, labels).results for p in ("fp32", "bf16")}
    pairs = list(zip(runs["fp32"], runs["bf16"], strict=True))
    return {"attacks": len(pairs),
            "success_differs": sum(a.success != b.success for a, b in pairs),
            "generations_differ": sum(a.generations != b.generations for a, b in pairs),
            "success_fp32": sum(a.success for a, _ in pairs),
            "success_bf16": sum(b.success for _, b in pairs)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--attacks", type=int, default=10, help="whole attacks (0: skip)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    model, images, labels, pick = bench_inputs(args.images)
    model, images, labels = model.to(args.device), images.to(args.device), labels.to(
        args.device)
    for engine in ("full", "incremental"):
        stats = agreement(model, images, labels, args.rows, engine=engine)
        print(f"{engine}: bf16 vs fp32 on {stats['rows']:,} candidates of {stats['images']} "
              f"images: labels differ on {stats['label_changes']:.3%}; largest probability "
              f"change {stats['max_change']:.1e}; Spearman of the fitness ranking "
              f"{stats['spearman']:.4f}; fittest member differs on "
              f"{stats['best_member_changes']} of {stats['images']} images")
    if args.attacks:
        n = min(args.attacks, len(images))
        stats = attack_agreement(model, images[:n], labels[:n])
        print(f"whole attacks (default engine, popsize 400, 100 generations) on {n} images: "
              f"success fp32 {stats['success_fp32']}, bf16 {stats['success_bf16']}; success "
              f"differs on {stats['success_differs']}, the generation of success or the "
              f"budget on {stats['generations_differ']}")


if __name__ == "__main__":
    main()
