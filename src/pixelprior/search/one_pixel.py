"""The one-pixel attack of Su et al. (2019) by differential evolution, started from a
position prior (Kumar et al. 2019).

Fitness is the true class's probability (untargeted, minimised) or one minus the
target's (targeted). The initial ``(x, y)`` come from the prior; colours from
N(0.5, 0.5) clipped to [0, 1] (Su et al.'s N(128, 127) on the 0..255 scale) or uniform.
Coordinates are kept continuous inside the evolution and rounded when applied.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..priors import PositionDistribution, Prior
from ._options import keyword_options
from .base import Attack, SearchOutcome
from .checks import check_int
from .evolution import DifferentialEvolution, EvolutionConfig

INIT_COLORS = ("normal", "uniform")


class OnePixelAttack(Attack):
    """One-pixel attack (Su et al. 2019) with a position prior (Kumar et al. 2019).

    >>> attack = OnePixelAttack(model, SusceptibleSetPrior(tau=0.5), seed=0)
    >>> adversarial = attack(images, labels)   # images: float32 [B, C, H, W] in [0, 1]
    >>> out = attack.run(images, labels)       # results, adversarial, distribution

    Args:
        model: the model (see :class:`~pixelprior.search.Attack`).
        prior: where initial positions come from: ``UniformPrior`` (unconstrained, the
            default) or ``SusceptibleSetPrior`` (the paper's constrained mode), ...
        popsize: candidates per generation (400, as in Su et al.).
        maxiter: most generations after the initial population (100); an image costs at
            most ``popsize * (maxiter + 1)`` queries.
        mutation: F (0.5), or ``(low, high)`` to dither F per generation.
        strategy: the DE strategy, one of :data:`~pixelprior.search.STRATEGIES`
            (``"rand1bin"``, the paper's DE/rand/1; ``"best1bin"`` is Su et al.'s code).
        recombination: the crossover rate in [0, 1] (1: every gene from the mutant).
        out_of_bounds: ``"clip"`` mutants to the bounds or ``"resample"`` them.
        stop_on: stop when ``"any"`` candidate succeeds or the ``"best"`` one does.
        replace_on_tie: a child as fit as its parent replaces it (the paper).
        init_color: initial colors from ``"normal"`` N(0.5, 0.5) clipped (Su et al.)
            or ``"uniform"``.
        early_stop: stop an image's search once it succeeds.
        **shared: the options of every attack (``pixel_count``, ``targeted``, ``seed``,
            ``engine``, ...: see :class:`~pixelprior.search.Attack`).

    Raises:
        TypeError: an unknown option, or ``popsize``/``maxiter`` not an integer.
        ValueError: an option out of range (see :class:`~pixelprior.search.EvolutionConfig`).
    """

    name = "de"
    argument = "prior"  # what follows "de:" in a mode name
    default_argument = None
    step_fields = {"generations": "int"}

    @keyword_options(positional=(
        "popsize", "maxiter", "mutation", "pixels", "targeted", "init_color", "seed",
        "max_batch", "early_stop", "batch_invariant", "optimize", "engine", "strategy",
        "recombination", "out_of_bounds", "stop_on", "replace_on_tie", "precision",
        "cuda_graphs"), renamed={"pixels": "pixel_count"})
    def __init__(self, model: nn.Module, prior: Prior | str | None = None, *, popsize: int = 400,
                 maxiter: int = 100, mutation: float | tuple[float, float] = 0.5,
                 strategy: str = "rand1bin", recombination: float = 1.0,
                 out_of_bounds: str = "clip", stop_on: str = "any",
                 replace_on_tie: bool = True, init_color: str = "normal",
                 early_stop: bool = True, **shared: Any) -> None:
        super().__init__(model, prior, **shared)
        check_int("popsize", popsize, 1)
        check_int("maxiter", maxiter, 0)
        if isinstance(mutation, list):
            mutation = tuple(mutation)
        if init_color not in INIT_COLORS:
            raise ValueError(f"init_color must be one of {INIT_COLORS}, got {init_color!r}")
        self.config = EvolutionConfig(popsize, maxiter, mutation, early_stop, strategy,
                                      recombination, out_of_bounds, stop_on, replace_on_tie)
        self.init_color = init_color

    def _search(self, images, labels, targets, distribution, rows, generators
                ) -> SearchOutcome:
        device = images.device
        solver = DifferentialEvolution(self._fitness(images, labels, targets),
                                       *self._bounds(images, device), self.config)
        initial = self._initial_population(distribution, rows, images.shape[1], generators)
        solved = solver.solve(initial.to(device), generators)
        return SearchOutcome(solved.best, solved.evaluations,
                             {"generations": solved.generations})

    def _initial_population(self, distribution: PositionDistribution, rows: list[int],
                            channels: int, generators: list[torch.Generator]) -> torch.Tensor:
        popsize, k = self.config.popsize, self.pixel_count
        out = []
        for row, generator in zip(rows, generators, strict=True):
            positions = distribution.sample(row, popsize * k, generator).double()
            if self.init_color == "normal":
                colours = (torch.randn(popsize * k, channels, generator=generator,
                                       dtype=torch.float64) * 0.5 + 0.5).clamp(0, 1)
            else:
                colours = torch.rand(popsize * k, channels, generator=generator,
                                     dtype=torch.float64)
            out.append(torch.cat([positions, colours], 1).view(popsize, k * (2 + channels)))
        return torch.stack(out).float()

    def _bounds(self, images: torch.Tensor, device: torch.device):
        channels, height, width = images.shape[1:]
        lower = torch.zeros(2 + channels)
        upper = torch.tensor([width - 1, height - 1] + [1.0] * channels)
        return (lower.repeat(self.pixel_count).to(device),
                upper.repeat(self.pixel_count).to(device))

