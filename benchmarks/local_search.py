"""The local search at the positions the bounds leave open, side by side with the bounds
alone.

Where the verifier's budget runs out, or boxes are stuck below ``MIN_SIDE``, it now
searches the open positions for witnesses (sign-gradient descent of the margin over the
pixel's color, from the cube's corners and the centers of the position's lowest-bound
boxes; each label change confirmed by the model) before calling them unknown. This
measures, in one run:

1. what it adds at the same boxes: exact mode, deterministic, a box budget, with and
   without the search: positions robust / vulnerable / unknown, the positions searched,
   the witnesses found and the seconds (ConvSmall's fooled images, and ResNet8-IBP's
   fragile ones, whose exact ground truth is cut by its budget);
2. the committed exact ground truths' unknown positions
   (``results/cifar10-verified/exact``, ``.../resnet8-ibp/exact``: made without the
   search), searched from the cube's 8 corners alone (their boxes are not kept):
   how many are fooled, and in how long.

    python benchmarks/local_search.py [--boxes 30000] [--ibp-boxes 1500]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _setup import position_counts

from pixelprior import load_cifar10, load_model, to_float
from pixelprior.experiment import load_positions
from pixelprior.experiment.verification import STATUS_CODES
from pixelprior.search.local import LocalSearch, cube_corners
from pixelprior.search.verify import Verifier

RESULTS = Path(__file__).resolve().parent.parent / "results" / "cifar10-verified"


def side_by_side(data, name: str, indices: list[int], boxes: int) -> None:
    """Part 1: each image with and without the search, at the same boxes."""
    model = load_model(name).eval()
    print(f"\n### {name}, exact mode, {boxes:,} boxes an image (deterministic)\n")
    print("| test index | bounds alone: robust / vulnerable / unknown, s | with the search "
          "| searched | found | s |\n|---|---|---|---|---|---|")
    for index in indices:
        image, label = to_float(data.images[[index]]), data.labels[[index]]
        runs = {}
        for search in (False, True):
            verifier = Verifier(model, budget=None, max_boxes=boxes, deterministic=True,
                                search=search)
            began = time.perf_counter()
            (runs[search],) = verifier.verify(image, label, stop_at_first=False)
            runs[search].seconds = time.perf_counter() - began
        without, with_it = runs[False], runs[True]
        assert without.boxes == with_it.boxes  # the search bounds nothing
        print(f"| {index} | {position_counts(without)}, {without.seconds:.1f} | "
              f"{position_counts(with_it)} | {with_it.searched} | "
              f"{with_it.search_witnesses} | {with_it.seconds:.1f} |", flush=True)


def committed_unknowns(data, name: str, folder: Path) -> None:
    """Part 2: a committed exact folder's unknown positions, searched from the corners."""
    model = load_model(name).eval()
    search = LocalSearch(model)
    rows = [json.loads(line) for line in (folder / "verification.jsonl").read_text()
            .splitlines()]
    unknown = fooled = 0
    began = time.perf_counter()
    for row in rows:
        if not row["positions_unknown"]:
            continue
        status = load_positions(folder / row["positions_file"])["status"]
        positions = np.flatnonzero(status.ravel() == STATUS_CODES["unknown"])
        image = to_float(data.images[[row["image_index"]]])
        starts = np.repeat(cube_corners(image.shape[1])[None], positions.size, 0)
        found = search(image, row["label"], positions, starts)
        unknown += positions.size
        fooled += len(found.witnesses)
    seconds = time.perf_counter() - began
    print(f"{name} ({folder.relative_to(RESULTS.parent.parent)}): {unknown} unknown "
          f"positions, {fooled} fooled by the search from the 8 corners, {seconds:.1f} s "
          f"({seconds / max(unknown, 1):.3f} s a position)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=30_000,
                        help="boxes per ConvSmall image in part 1")
    parser.add_argument("--images", type=int, nargs="*", default=[0, 31, 62],
                        help="ConvSmall test indices (fooled, positions near the boundary)")
    parser.add_argument("--ibp-boxes", type=int, default=1_500,
                        help="boxes per ResNet8-IBP image in part 1")
    parser.add_argument("--ibp-images", type=int, nargs="*", default=[25, 64],
                        help="ResNet8-IBP test indices (its fragile images)")
    args = parser.parse_args()
    data = load_cifar10("auto")
    print("## Part 1: the same boxes with and without the search")
    side_by_side(data, "convsmall-cifar10", args.images, args.boxes)
    side_by_side(data, "resnet8-ibp-cifar10", args.ibp_images, args.ibp_boxes)
    print("\n## Part 2: the committed exact ground truths' unknown positions\n")
    committed_unknowns(data, "convsmall-cifar10", RESULTS / "exact")
    committed_unknowns(data, "resnet8-ibp-cifar10", RESULTS / "resnet8-ibp" / "exact")


if __name__ == "__main__":
    main()
