"""How near the decision boundary the positions an exact run left unknown are: the lowest
margin sampled colors reach there.

At each unknown position of an ``--exact`` folder the model is scored at a 17³ grid of
colors, then at 12 rounds of a 9³ grid zooming in on the lowest margin found (half the
width each round, starting at ±1/16). A label change found this way is a witness the
verifier missed within its budget; a lowest margin below the float32 error proved at
that position (~0.007-0.009 on ConvSmall near the boundary) marks a position no proof at
float32 can decide. A sample, not a proof: the true minimum may be lower.

    PIXELPRIOR_DATA=../shared/data python results/cifar10-verified/unknown_margins.py \\
        results/cifar10-verified/exact --model convsmall-cifar10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from pixelprior import load_cifar10, load_model, to_float
from pixelprior.experiment import load_positions

UNKNOWN = 2  # load_positions' status code


def margins(model: torch.nn.Module, image: torch.Tensor, label: int, y: int, x: int,
            colors: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """The margin ``z_label - max_j z_j`` with pixel ``(y, x)`` set to each color."""
    out = []
    for start in range(0, len(colors), chunk):
        part = colors[start:start + chunk]
        images = image.repeat(len(part), 1, 1, 1)
        images[:, :, y, x] = part
        scores = model(images)
        own = scores[:, label].clone()
        scores[:, label] = -torch.inf
        out.append(own - scores.max(1).values)
    return torch.cat(out)


def lowest_margin(model: torch.nn.Module, image: torch.Tensor, label: int, y: int,
                  x: int) -> float:
    """The lowest margin of the grid, then of the zooming grids (stops below 0)."""
    axis = torch.linspace(0, 1, 17)
    grid = torch.cartesian_prod(axis, axis, axis)
    found = margins(model, image, label, y, x, grid)
    best, lowest = grid[found.argmin()], float(found.min())
    width = 1 / 16
    for _ in range(12):
        if lowest < 0:
            break
        steps = (best + torch.linspace(-width, width, 9)[:, None]).clamp(0, 1)
        grid = torch.cartesian_prod(steps[:, 0], steps[:, 1], steps[:, 2])
        found = margins(model, image, label, y, x, grid)
        if float(found.min()) < lowest:
            best, lowest = grid[found.argmin()], float(found.min())
        width /= 2
    return lowest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a verify --exact folder")
    parser.add_argument("--model", default="convsmall-cifar10")
    args = parser.parse_args()
    if not (args.folder / "verification.jsonl").is_file():
        parser.error(f"{args.folder} has no verification.jsonl: give a folder of "
                     "'pixelprior verify ... --exact --out FOLDER'")
    torch.set_grad_enabled(False)
    data = load_cifar10("auto")
    model = load_model(args.model).eval()
    rows = [json.loads(line) for line in
            (args.folder / "verification.jsonl").read_text().splitlines()]
    began, lowest = time.perf_counter(), []
    for row in rows:
        if not row["positions_unknown"]:
            continue
        status = load_positions(args.folder / row["positions_file"])["status"]
        image = to_float(data.images[[row["image_index"]]])
        for y, x in zip(*np.nonzero(status == UNKNOWN), strict=True):
            lowest.append(lowest_margin(model, image, row["label"], int(y), int(x)))
    if not lowest:
        print("no unknown position")
        return
    found = np.array(lowest)
    print(f"{len(found)} unknown positions, {time.perf_counter() - began:.0f} s: "
          f"{int((found < 0).sum())} fooled by a sampled color; lowest margin sampled, "
          f"quantiles 0 / 10 / 50 / 90 / 100%: "
          f"{' / '.join(f'{q:.4f}' for q in np.quantile(found, [0, .1, .5, .9, 1]))}; "
          f"{int((found > 0.05).sum())} above 0.05")


if __name__ == "__main__":
    main()
