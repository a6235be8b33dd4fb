"""The one-pixel attack of Su et al. (2019) by differential evolution, started from a
position prior (Kumar et al. 2019).

Fitness is the true class's probability (untargeted, minimised) or one minus the
target's (targeted). The initial ``(x, y)`` come from the prior; colours from
N(0.5, 0.5) clipped to [0, 1] (Su et al.'s N(128, 127) on the 0..255 scale) or uniform.
Coordinates are kept continuous inside the evolution and rounded when applied.
"""

from __future__ import annotations

import torch
from torch import nn

from ..priors import PositionDistribution, Prior
from ..scoring import Scorer
from .base import Attack, SearchOutcome
from .evolution import DifferentialEvolution, EvolutionConfig

INIT_COLORS = ("normal", "uniform")


class OnePixelAttack(Attack):
    """One-pixel attack (Su et al. 2019) with a position prior (Kumar et al. 2019).

    >>> attack = OnePixelAttack(model, prior=SusceptibleSetPrior(tau=0.5), seed=0)
    >>> out = attack.run(images, labels)      # images: float [B, C, H, W] in [0, 1]
    >>> out.adversarial, out.results[0].success, out.results[0].pixels

    Args (besides :class:`~pixelprior.search.Attack`'s):
        prior: where initial positions come from: ``UniformPrior`` (unconstrained, the
            default) or ``SusceptibleSetPrior`` (the paper's constrained mode), ...
        popsize: candidates per generation (400, as in Su et al.).
        maxiter: most generations after the initial population (100).
        mutation: F (0.5), or ``(low, high)`` to dither F per generation.
        strategy, recombination, out_of_bounds, stop_on, replace_on_tie: the rest of the
            DE (:class:`~pixelprior.search.EvolutionConfig`; the defaults are the paper's
            DE/rand/1; ``strategy="best1bin"`` with F in (0.5, 1),
            ``out_of_bounds="resample"``, ``stop_on="best"`` and ``replace_on_tie=False``
            is Su et al.'s public code).
        init_color: ``"normal"`` (Su et al.) or ``"uniform"``.
        early_stop: stop an image's search once it succeeds.
    """

    name = "de"
    argument = 'prior'  # what follows "de:" in a mode name
    default_argument = None
    settings = ("popsize", "maxiter", "mutation", "pixels", "init_color", "strategy",
                "recombination", "out_of_bounds", "stop_on", "replace_on_tie")
    step_names = ("generations",)

    def __init__(self, model: nn.Module, prior: Prior | None = None, popsize: int = 400,
                 maxiter: int = 100, mutation: float | tuple[float, float] = 0.5,
                 pixels: int = 1, targeted: bool = False, init_color: str = "normal",
                 seed: int = 0, max_batch: int | None = None, early_stop: bool = True,
                 batch_invariant: bool = False, optimize: bool = True,
                 engine: str | Scorer = "auto", strategy: str = "rand1bin",
                 recombination: float = 1.0, out_of_bounds: str = "clip",
                 stop_on: str = "any", replace_on_tie: bool = True,
                 precision: str = "fp32", cuda_graphs: bool = False) -> None:
        super().__init__(model, prior, pixels=pixels, targeted=targeted, seed=seed,
                         max_batch=max_batch, batch_invariant=batch_invariant, engine=engine,
                         optimize=optimize, precision=precision, cuda_graphs=cuda_graphs)
        for name, value in (("popsize", popsize), ("maxiter", maxiter)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, got {value!r}")
        if isinstance(mutation, list):
            mutation = tuple(mutation)
        if init_color not in INIT_COLORS:
            raise ValueError(f"init_color must be one of {INIT_COLORS}")
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
        popsize, k = self.config.popsize, self.pixels
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
        return lower.repeat(self.pixels).to(device), upper.repeat(self.pixels).to(device)

