"""A local search for one-pixel witnesses where bounds leave a position open.

Projected sign-gradient descent of the model's margin ``z_y - max_{j≠y} z_j`` over one
pixel's color, from several starting colors per position, all positions of a chunk in
one batch. A label change is confirmed by the model itself, one image at a time (as every
witness of :class:`~pixelprior.search.Verifier`), so a witness found is real; finding
none proves nothing.

The verifier runs it on the positions its budget leaves open, starting also from the
colors where its bounds are lowest. From the cube's 8 corners alone it fools 4 of the 219
and 16 of the 196 positions the bounds had left unknown in the exact ground truths of
ConvSmall and the interval-trained ResNet8, in ~0.01 and ~0.09 s a position
(``benchmarks/local_search.py``, part 2). Hand-written: a one-pixel attack over a
continuous color at given positions with given starts is not what torchattacks' or ART's
attacks offer (they search positions and colors together, by evolution).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..scoring import perturb_rows

__all__ = ["LocalSearch", "LocalSearchResult", "confirm_witness", "cube_corners"]

STEPS = 10  # gradient steps from each start
FIRST_STEP = 0.1  # the first step's length per channel (of the color range [0, 1])
STEP_DECAY = 0.8  # each step is this much shorter than the one before
# starting colors per forward and backward pass, as input values (rows × C × H × W):
# 256 CIFAR-10 images on the CPU, 4,096 on CUDA; 5 and 83 ImageNet ones
VALUES = {"cpu": 256 * 3 * 32 * 32, "cuda": 4096 * 3 * 32 * 32}


@dataclass
class LocalSearchResult:
    """What a local search found.

    Args:
        witnesses: ``{position: color}`` of the label changes the model confirmed.
        searched: positions whose search ran to its end (or to a witness).
        queries: model evaluations (a forward and backward pass counts as one per row,
            each confirmation as one).
    """

    witnesses: dict[int, list[float]] = field(default_factory=dict)
    searched: int = 0
    queries: int = 0


def cube_corners(channels: int) -> np.ndarray:
    """The corners of the color cube ``[0, 1]^C``.

    Args:
        channels: ``C``.

    Returns:
        float64 ``[2^C, C]``.
    """
    return np.array(np.meshgrid(*[[0.0, 1.0]] * channels, indexing="ij")
                    ).reshape(channels, -1).T.copy()


def confirm_witness(model: nn.Module, image: torch.Tensor, label: int,
                    genes: torch.Tensor) -> bool:
    """Whether the model, on the image alone with one pixel changed, leaves ``label``
    (scores that are not all finite confirm nothing: a NaN would win the argmax).

    Args:
        model: the model.
        image: float ``[1, C, H, W]``.
        label: its label.
        genes: ``[1, 2 + C]`` (x, y, color) as :func:`~pixelprior.scoring.perturb_rows`
            reads them.

    Returns:
        ``True`` where the label changes.
    """
    owner = torch.zeros(1, dtype=torch.long, device=image.device)
    with torch.inference_mode():
        scores = model(perturb_rows(image, owner, genes[:, None]))
    return bool(torch.isfinite(scores).all()) and int(scores.argmax(1)) != label


class LocalSearch:
    """Sign-gradient descent of the margin over one pixel's color at given positions.

    >>> search = LocalSearch(model)
    >>> search(image, label, positions, starts).witnesses   # {position: color}

    Args:
        model: any differentiable ``nn.Module``: images in [0, 1] → class scores.
        steps: gradient steps from each start.
        rows: starting colors per pass (default: as many images as :data:`VALUES`
            input values, on the image's device).
    """

    def __init__(self, model: nn.Module, steps: int = STEPS, rows: int | None = None) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps!r}")
        self.model, self.steps, self.rows = model, steps, rows

    def __call__(self, image: torch.Tensor, label: int, positions: np.ndarray,
                 starts: np.ndarray, deadline: float | None = None,
                 stop_at_first: bool = False) -> LocalSearchResult:
        """Search each position from its starting colors.

        Args:
            image: float ``[1, C, H, W]`` in [0, 1].
            label: its label.
            positions: flat positions ``y · W + x`` ``[K]``, searched in this order.
            starts: starting colors ``[K, S, C]`` in [0, 1].
            deadline: a ``time.perf_counter()`` after which no step starts (``None``:
                none); a chunk of positions cut by it is not counted as searched.
            stop_at_first: stop at the first witness.

        Returns:
            The witnesses, the positions searched and the queries spent.
        """
        result = LocalSearchResult()
        if not positions.size or image.shape[0] != 1:
            return result
        values = VALUES.get(image.device.type, VALUES["cpu"])
        per_pass = self.rows or max(1, values // image[0].numel())
        chunk = max(1, per_pass // starts.shape[1])
        # traced for gradients even where the caller runs in inference mode (its tensors,
        # the image included, are copied into normal ones)
        with torch.inference_mode(False):
            image = image.detach().clone()
            for first in range(0, positions.size, chunk):
                if deadline is not None and time.perf_counter() > deadline:
                    break
                where = positions[first:first + chunk]
                if self._search_chunk(image, label, where, starts[first:first + chunk],
                                      result, deadline):
                    result.searched += where.size
                if stop_at_first and result.witnesses:
                    break
        return result

    def _search_chunk(self, image: torch.Tensor, label: int, where: np.ndarray,
                      starts: np.ndarray, result: LocalSearchResult,
                      deadline: float | None) -> bool:
        """The steps of one chunk of positions, every start of each in one batch.

        Returns:
            Whether it ran to its end (its last step, or a witness at every position),
            not cut by the ``deadline``.
        """
        count, width = starts.shape[1], image.shape[-1]
        position = torch.as_tensor(np.repeat(where, count), device=image.device)
        xy = torch.stack([position % width, position // width], 1).to(image.dtype)
        color = torch.as_tensor(starts.reshape(-1, starts.shape[2]), dtype=image.dtype,
                                device=image.device)
        owner = torch.zeros(len(position), dtype=torch.long, device=image.device)
        step = FIRST_STEP
        for taken in range(self.steps + 1):
            margin, gradient = self._margins(image, label, owner, xy, color,
                                             gradient=taken < self.steps)
            result.queries += len(position)
            self._confirm(image, label, margin, position, xy, color, result)
            if gradient is None or len(result.witnesses) and bool(
                    np.isin(where, list(result.witnesses)).all()):
                return True
            if deadline is not None and time.perf_counter() > deadline:
                return False
            moved = (color - step * gradient.sign()).clamp(0, 1)
            color = torch.where(torch.isnan(moved), color, moved)  # a NaN gradient: stay
            step *= STEP_DECAY
        return True

    def _margins(self, image: torch.Tensor, label: int, owner: torch.Tensor,
                 xy: torch.Tensor, color: torch.Tensor, gradient: bool
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The margins of the rows and (with ``gradient``) their gradients in the color."""
        with torch.enable_grad():
            color = color.detach().requires_grad_(gradient)
            scores = self.model(perturb_rows(image, owner, torch.cat([xy, color], 1)[:, None]))
            own = scores[:, label]
            others = scores.detach().clone()
            others[:, label] = -torch.inf
            rival = scores.gather(1, others.argmax(1, keepdim=True))[:, 0]
            margin = own - rival
            if not gradient:
                return margin.detach(), None
            if not margin.requires_grad:  # a model that detaches its input: no slope,
                return margin.detach(), torch.zeros_like(color)  # its starts are scored
            try:
                (grad,) = torch.autograd.grad(margin.sum(), color, allow_unused=True)
            except torch.OutOfMemoryError:
                raise
            except RuntimeError as exc:  # an operation without a backward: no slope
                warnings.warn(f"the local search scores its starting colors only: no "
                              f"gradient through the model ({exc})", stacklevel=2)
                grad = None
        return margin.detach(), torch.zeros_like(color) if grad is None else grad

    def _confirm(self, image: torch.Tensor, label: int, margin: torch.Tensor,
                 position: torch.Tensor, xy: torch.Tensor, color: torch.Tensor,
                 result: LocalSearchResult) -> None:
        """Confirm each new position's first row below 0 with the model itself."""
        tried = set(result.witnesses)
        for row in (margin < 0).nonzero().flatten().tolist():
            p = int(position[row])
            if p in tried:
                continue
            tried.add(p)
            genes = torch.cat([xy[row], color[row].detach()])[None]
            result.queries += 1
            if confirm_witness(self.model, image, label, genes):
                result.witnesses[p] = color[row].detach().tolist()
