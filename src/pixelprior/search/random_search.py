"""The L0 random search of Sparse-RS (Croce et al., AAAI 2022) for ``k`` pixels.

Each image holds ``k`` changed pixels, each set to a corner of the colour cube. Every
iteration proposes one candidate per image: a share of its pixels (Sparse-RS's ``p``
schedule of ``p_init``, at least one) moves to positions not yet changed, with fresh
corner colours (for a single moved pixel, a colour other than the clean pixel's); the
candidate replaces the current one when its margin loss (true-class logit minus the
best other, from log-probabilities, which differ from logits by a constant per row) is
lower, or when it fools the model. An image stops at its first success or at its query
budget (the first evaluation included, as Sparse-RS counts).

Positions come from the attack's prior (uniform by default, as in Sparse-RS; a
susceptible-set prior gives a constrained random search); every random number of an
image comes from its own stream, so results do not depend on the batch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..priors import PositionDistribution, Prior
from ._options import keyword_options
from .base import Attack, SearchOutcome

__all__ = ["RandomSearchAttack", "p_schedule"]

CPU_ROWS = 16  # rows per scoring call on the CPU (one candidate per image per step)
# ... and of the reproducible (fixed-shape) calls on CUDA, where the engines' fixed chunk
# (up to 4,096 rows, padded) would score thousands of rows for a step's few candidates
CUDA_FIXED_ROWS = 256
# Sparse-RS's L0 schedule: (last iteration of the band, divisor of p_init)
_SCHEDULE = ((0, 1), (50, 2), (200, 4), (500, 5), (1000, 6), (2000, 8), (4000, 10),
             (6000, 12), (8000, 15))


def p_schedule(iteration: int, p_init: float, budget: int) -> float:
    """Sparse-RS's share of pixels resampled at an iteration.

    Args:
        iteration: the iteration (0 is the first evaluation).
        p_init: the initial share.
        budget: the query budget; the schedule is rescaled from 10,000 queries to it, as
            Sparse-RS's ``resc_schedule=True`` does.

    Returns:
        The share, ``p_init`` divided by the schedule's divisor at ``iteration``.
    """
    it = int(iteration / budget * 10000)
    for last, divisor in _SCHEDULE:
        if it <= last:
            return p_init / divisor
    return p_init / 20


class RandomSearchAttack(Attack):
    """Sparse-RS's L0 random search (margin loss, greedy acceptance, corner colors).

    >>> RandomSearchAttack(model, budget=10_000)(images, labels)

    Args:
        model: the model (see :class:`~pixelprior.search.Attack`).
        prior: where pixel positions are drawn from (uniform by default, as in
            Sparse-RS; a susceptible-set prior gives a constrained random search).
        budget: the most model queries per image (10,000 as in Sparse-RS's examples;
            0.2's ``queries=``). :attr:`queries` counts what was spent.
        p_init: the initial share of pixels resampled per iteration, in (0, 1] (0.8).
        **shared: the options of every attack (``pixel_count`` is Sparse-RS's ``k``;
            see :class:`~pixelprior.search.Attack`).

    Raises:
        TypeError: an unknown option.
        ValueError: ``budget`` not an integer >= 1, ``p_init`` outside (0, 1].
    """

    name = "random_search"
    argument = "prior"  # what follows "random_search:" in a mode name
    default_argument = "uniform"
    step_fields = {"iterations": "int"}

    @keyword_options(renamed={"queries": "budget", "pixels": "pixel_count"})
    def __init__(self, model: nn.Module, prior: Prior | str | None = None, *, budget: int = 10_000,
                 p_init: float = 0.8, **shared: Any) -> None:
        super().__init__(model, prior, **shared)
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"budget must be an integer >= 1, got {budget!r}")
        if not 0.0 < p_init <= 1.0:
            raise ValueError(f"p_init must lie in (0, 1], got {p_init}")
        self.budget = budget
        self.p_init = float(p_init)

    def _chunk(self, state, images: torch.Tensor) -> int:
        """Rows per call: a step scores one candidate per image, so a small chunk keeps
        the reproducible mode's padding small: :data:`CPU_ROWS` on the CPU (not the
        engines' 128), :data:`CUDA_FIXED_ROWS` for fixed shapes on CUDA (not up to
        4,096)."""
        rows = super()._chunk(state, images)
        if self.max_batch:
            return rows
        if images.device.type == "cpu":
            return min(rows, CPU_ROWS)
        return min(rows, CUDA_FIXED_ROWS) if self.batch_invariant else rows

    def _search(self, images, labels, targets, distribution: PositionDistribution, rows,
                generators) -> SearchOutcome:
        count, channels, height, width = images.shape
        if self.pixel_count >= height * width:
            raise ValueError(f"pixel_count ({self.pixel_count}) must be fewer than the image's "
                             f"{height * width} positions: each step moves a pixel to a "
                             "position not yet changed")
        candidate_scores = self._candidate_scores(images)
        goal = labels if targets is None else targets
        state = _State.start(images, distribution, rows, generators, self.pixel_count)
        margin, success = self._evaluate(candidate_scores, torch.arange(count), state.genes(),
                                         goal, targets is not None)
        queries = torch.ones(count, dtype=torch.long)
        iterations = torch.zeros(count, dtype=torch.long)
        done = success.clone()
        for iteration in range(1, self.budget):
            active = (~done).nonzero().flatten()
            if not active.numel():
                break
            share = p_schedule(iteration, self.p_init, self.budget)
            moved = max(int(share * self.pixel_count), 1)
            proposal = state.propose(active, moved, distribution, rows, generators, images)
            new_margin, new_success = self._evaluate(
                candidate_scores, active, proposal.genes(), goal[active], targets is not None)
            queries[active] += 1
            iterations[active] = iteration
            better = (new_margin < margin[active]) | new_success
            state.accept(active[better], proposal, better)
            margin[active[better]] = new_margin[better]
            done[active[new_success]] = True
        best = state.genes().reshape(count, -1)
        return SearchOutcome(best, queries, {"iterations": iterations})

    def _evaluate(self, candidate_scores, owner: torch.Tensor, genes: torch.Tensor,
                  goal: torch.Tensor, targeted: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Margin loss (lower is better) and success (by the scores' argmax) of one
        candidate per row."""
        device = genes.device
        scored = candidate_scores(owner.to(device), genes)
        probs = scored.probabilities
        logp = probs.clamp_min(1e-38).log()
        rows = torch.arange(len(owner), device=device)
        goal = goal.to(device)
        own = logp[rows, goal]
        others = logp.clone()
        others[rows, goal] = float("-inf")
        runner_up = others.max(1).values
        predicted = scored.labels
        if targeted:
            return (runner_up - own).cpu(), (predicted == goal).cpu()
        return (own - runner_up).cpu(), (predicted != goal).cpu()


class _State:
    """Each image's ``k`` changed positions (flat, ``[A, k]``) and corner colours
    (``[A, k, C]``)."""

    def __init__(self, positions: torch.Tensor, colours: torch.Tensor, width: int,
                 device: torch.device) -> None:
        self.positions, self.colours, self.width, self.device = positions, colours, width, device

    @classmethod
    def start(cls, images, distribution, rows, generators, k: int) -> _State:
        count, channels, _, width = images.shape
        positions = torch.stack([_draw(distribution.probabilities[row], k, None, g)
                                 for row, g in zip(rows, generators, strict=True)])
        colours = torch.stack([_corners(k, channels, g) for g in generators])
        return cls(positions, colours, width, images.device)

    def genes(self) -> torch.Tensor:
        """``[A, k, 2 + C]`` genes on the images' device."""
        xy = torch.stack([self.positions % self.width, self.positions // self.width], 2)
        return torch.cat([xy.to(self.colours.dtype), self.colours], 2).to(self.device)

    def propose(self, active, moved: int, distribution, rows, generators, images) -> _State:
        """One candidate per active image: ``moved`` pixels to new positions and colours."""
        positions = self.positions[active].clone()
        colours = self.colours[active].clone()
        k, channels = positions.shape[1], colours.shape[2]
        for n, a in enumerate(active.tolist()):
            g = generators[a]
            slots = torch.randperm(k, generator=g)[:moved]
            fresh = _draw(distribution.probabilities[rows[a]], moved, positions[n], g)
            positions[n, slots] = fresh
            new = _corners(moved, channels, g)
            if moved == 1:  # Sparse-RS: a single moved pixel must change its colour
                clean = images[a, :, fresh[0] // self.width, fresh[0] % self.width].cpu()
                while bool((new[0] == clean).all()):
                    new = _corners(1, channels, g)
            colours[n, slots] = new
        return _State(positions, colours, self.width, self.device)

    def accept(self, images: torch.Tensor, proposal: _State, better: torch.Tensor) -> None:
        self.positions[images] = proposal.positions[better]
        self.colours[images] = proposal.colours[better]


def _corners(count: int, channels: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random corners of the colour cube, ``[count, C]``."""
    return torch.randint(0, 2, (count, channels), generator=generator).float()


def _draw(weights: torch.Tensor, count: int, taken: torch.Tensor | None,
          generator: torch.Generator) -> torch.Tensor:
    """``count`` distinct flat positions from ``weights`` (the prior), avoiding
    ``taken``; uniform over the free positions when the prior has too few left."""
    weights = weights.detach().cpu().double().clone()
    free = torch.ones_like(weights, dtype=torch.bool)
    if taken is not None:
        free[taken] = False
    weights[~free] = 0
    if int((weights > 0).sum()) < count:
        weights = free.double()
    return torch.multinomial(weights, count, replacement=False, generator=generator)
