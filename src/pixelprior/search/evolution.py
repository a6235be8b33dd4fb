"""Differential evolution for many problems at once, with SciPy's strategy table.

The one-pixel attack of Su et al. (2019) runs one DE per image. Here every image is a
*problem* and one generation of all still-active problems is evaluated by a single call
of the fitness function, so the model sees one large batch (images × population) instead
of one small batch per image. Problems that succeed leave the batch (early stop).

Randomness is per problem: each problem owns a ``torch.Generator``, and every random
number of that problem is drawn from it alone, on the CPU. A problem's trajectory therefore
does not depend on which other problems share the batch, nor on the device — attacking a
batch gives the same results as attacking its images one at a time.

Strategies follow SciPy's ``differential_evolution`` names (``rand1bin``, ``best1bin``,
``rand2bin``, ``best2bin``, ``currenttobest1bin``, ``randtobest1bin``): a mutant from the
table below, then binomial crossover with rate ``recombination`` (1: every gene from the
mutant). Two settings reproduce the two published versions of the one-pixel attack:

- the paper's DE/rand/1 (Su et al., Sec. 3.3; Kumar et al.): ``rand1bin``, F = 0.5,
  recombination 1, mutants clipped to the bounds, a child replaces its parent when at
  least as fit, stop as soon as *any* candidate succeeds — the defaults;
- Su et al.'s public code (a vectorised copy of SciPy's solver): ``best1bin``, F dithered
  per generation in U(0.5, 1), recombination 1, out-of-bounds genes resampled uniformly
  within the bounds, a child replaces its parent only when strictly fitter, success
  checked on the population's *best* member (``stop_on="best"``).

SciPy's solver handles one problem in a Python loop with no batched problems and no early
stop on an external success criterion, so the solver is hand-written here; tests check
that ``best1bin`` finds the optima of smooth test functions as SciPy does.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch

# fitness(problem_ids [A], candidates [A, P, D]) -> (fitness [A, P], success [A, P])
FitnessFunction = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
Mutant = Callable[[torch.Tensor, torch.Tensor, Callable[[int], torch.Tensor], torch.Tensor],
                  torch.Tensor]

# name -> (random members needed, mutant(x, best, r, F)); r(k) is the k-th random member
STRATEGIES: dict[str, tuple[int, Mutant]] = {
    "rand1bin": (3, lambda x, best, r, f: r(0) + f * (r(1) - r(2))),
    "best1bin": (2, lambda x, best, r, f: best + f * (r(0) - r(1))),
    "rand2bin": (5, lambda x, best, r, f: r(0) + f * (r(1) - r(2) + r(3) - r(4))),
    "best2bin": (4, lambda x, best, r, f: best + f * (r(0) - r(1) + r(2) - r(3))),
    "currenttobest1bin": (2, lambda x, best, r, f: x + f * (best - x + r(0) - r(1))),
    "randtobest1bin": (3, lambda x, best, r, f: r(0) + f * (best - r(0) + r(1) - r(2))),
}
OUT_OF_BOUNDS = ("clip", "resample")
STOP_ON = ("any", "best")


@dataclass(frozen=True)
class EvolutionConfig:
    """DE settings; the defaults are the paper's DE/rand/1 for the one-pixel attack.

    Args:
        popsize: members per problem (at least 4, and enough for the strategy).
        maxiter: most generations after the initial population (>= 0).
        mutation: F, or ``(low, high)`` to dither F uniformly per generation (SciPy);
            within (0, 2].
        early_stop: a problem stops once it succeeds.
        strategy: a name of :data:`STRATEGIES`.
        recombination: the crossover rate in [0, 1] (1: every gene from the mutant).
        out_of_bounds: ``"clip"`` mutants to the bounds or ``"resample"`` the offending
            genes uniformly within them (SciPy).
        stop_on: stop when ``"any"`` evaluated candidate succeeds, or only when the
            population's ``"best"`` member does (Su et al.'s code).
        replace_on_tie: a child at least as fit as its parent replaces it (the paper);
            ``False``: only a strictly fitter one (SciPy).

    Raises:
        ValueError: an unknown strategy, ``out_of_bounds`` or ``stop_on``, or a value
            out of range.
    """

    popsize: int = 400
    maxiter: int = 100
    mutation: float | tuple[float, float] = 0.5  # F
    early_stop: bool = True
    strategy: str = "rand1bin"
    recombination: float = 1.0
    out_of_bounds: str = "clip"
    stop_on: str = "any"
    replace_on_tie: bool = True

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; use one of "
                             f"{sorted(STRATEGIES)}")
        needed = STRATEGIES[self.strategy][0] + 1
        if self.popsize < max(4, needed):
            raise ValueError(f"popsize must be >= {max(4, needed)} ({self.strategy} needs "
                             f"{needed - 1} members besides each parent), got {self.popsize}")
        if self.maxiter < 0:
            raise ValueError("maxiter must be >= 0")
        values = self.mutation if isinstance(self.mutation, (tuple, list)) else [self.mutation]
        if any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in values):
            raise TypeError(f"mutation (F) must be a number or [low, high], got "
                            f"{self.mutation!r}")
        if not isinstance(self.replace_on_tie, bool):
            raise TypeError(f"replace_on_tie must be True or False, got "
                            f"{self.replace_on_tie!r}")
        low, high = self.mutation_range
        if not 0.0 < low <= high <= 2.0:
            raise ValueError(f"mutation (F) must lie in (0, 2] (a dither range low <= high),"
                             f" got {self.mutation}")
        if not 0.0 <= self.recombination <= 1.0:
            raise ValueError(f"recombination must lie in [0, 1], got {self.recombination}")
        if self.out_of_bounds not in OUT_OF_BOUNDS:
            raise ValueError(f"out_of_bounds must be one of {OUT_OF_BOUNDS}")
        if self.stop_on not in STOP_ON:
            raise ValueError(f"stop_on must be one of {STOP_ON}")

    @property
    def mutation_range(self) -> tuple[float, float]:
        """``(F, F)`` for a fixed F, else the dither range ``(low, high)``.

        Raises:
            ValueError: a dither range that is not two values.
        """
        if isinstance(self.mutation, (tuple, list)):
            if len(self.mutation) != 2:
                raise ValueError(f"mutation must be F or [low, high], got {self.mutation}")
            return float(self.mutation[0]), float(self.mutation[1])
        return float(self.mutation), float(self.mutation)


@dataclass
class EvolutionResult:
    """Per-problem outcome of :meth:`DifferentialEvolution.solve`.

    Args:
        best: float ``[B, D]``, the first successful candidate, else the fittest.
        best_fitness: float ``[B]``.
        success: bool ``[B]``.
        generations: int64 ``[B]``, the generation of success (0: the initial
            population), else the last generation run.
        evaluations: int64 ``[B]``, fitness evaluations (model queries).
    """

    best: torch.Tensor
    best_fitness: torch.Tensor
    success: torch.Tensor
    generations: torch.Tensor
    evaluations: torch.Tensor


def mutation_indices(popsize: int, generator: torch.Generator, count: int = 3) -> torch.Tensor:
    """Random members for each member's mutant: distinct, and all different from it.

    Drawn without rejection: each draw is uniform over the positions not yet excluded,
    then shifted past the excluded ones in ascending order.

    Args:
        popsize: members ``P``.
        generator: the problem's random stream.
        count: members drawn per member.

    Returns:
        int64 ``[P, count]``; row ``i`` holds no ``i`` and no repeat.
    """
    own = torch.arange(popsize)
    chosen = [own]
    for k in range(count):
        draw = torch.randint(0, popsize - 1 - k, (popsize,), generator=generator)
        excluded = torch.stack(chosen, 1).sort(1).values
        for column in range(excluded.shape[1]):
            draw = draw + (draw >= excluded[:, column])
        chosen.append(draw)
    return torch.stack(chosen[1:], 1)


class DifferentialEvolution:
    """Batched DE solver (minimisation) with per-problem early stop.

    Args:
        fitness: ``fitness(ids [A], candidates [A, P, D]) -> (fitness [A, P],
            success bool [A, P])``, lower fitness better.
        lower: float ``[D]``, each gene's lower bound.
        upper: float ``[D]``, each gene's upper bound.
        config: the strategy, crossover, bounds handling, selection and stopping rule.
    """

    def __init__(self, fitness: FitnessFunction, lower: torch.Tensor, upper: torch.Tensor,
                 config: EvolutionConfig = EvolutionConfig()) -> None:
        self.fitness = fitness
        self.lower = lower
        self.upper = upper
        self.config = config

    def _scales(self, generators: list[torch.Generator], device) -> torch.Tensor:
        """F per active problem, ``[A, 1, 1]``: fixed, or dithered once per generation."""
        low, high = self.config.mutation_range
        if low == high:
            return torch.full((len(generators), 1, 1), low, device=device)
        draws = torch.cat([torch.rand(1, generator=g, dtype=torch.float64)
                           for g in generators])
        return (low + (high - low) * draws).float().to(device).view(-1, 1, 1)

    def _children(self, population: torch.Tensor, fitness: torch.Tensor,
                  generators: list[torch.Generator]) -> torch.Tensor:
        """Trial vectors of every active problem's members (mutation, crossover, bounds).

        Per problem and generation the random numbers are drawn in a fixed order: F (when
        dithered), the mutation indices, the crossover mask (when recombination < 1), the
        resampled genes (when resampling). The defaults draw only the indices.
        """
        config = self.config
        count, mutant_of = STRATEGIES[config.strategy]
        scale = self._scales(generators, population.device)
        index = torch.stack([mutation_indices(config.popsize, g, count) for g in generators])
        index = index.to(population.device)
        dims = population.shape[2]

        def member(k: int) -> torch.Tensor:
            return torch.gather(population, 1, index[:, :, k:k + 1].expand(-1, -1, dims))

        best = population[torch.arange(population.shape[0], device=population.device),
                          fitness.argmin(1)][:, None]
        trial = mutant_of(population, best, member, scale)
        if config.recombination < 1.0:
            trial = torch.where(self._crossover_mask(generators, dims).to(trial.device),
                                trial, population)
        if config.out_of_bounds == "clip":
            return torch.maximum(torch.minimum(trial, self.upper), self.lower)
        fresh = torch.stack([torch.rand(config.popsize, dims, generator=g) for g in generators])
        fresh = self.lower + fresh.to(trial.device) * (self.upper - self.lower)
        outside = (trial < self.lower) | (trial > self.upper)
        return torch.where(outside, fresh, trial)

    def _crossover_mask(self, generators: list[torch.Generator], dims: int) -> torch.Tensor:
        """Binomial crossover: gene from the mutant with probability ``recombination``,
        and always at one random gene per member."""
        masks = []
        for g in generators:
            mask = torch.rand(self.config.popsize, dims, generator=g) < self.config.recombination
            forced = torch.randint(0, dims, (self.config.popsize,), generator=g)
            mask[torch.arange(self.config.popsize), forced] = True
            masks.append(mask)
        return torch.stack(masks)

    def solve(self, initial: torch.Tensor, generators: list[torch.Generator],
              callback: Callable[[int, torch.Tensor], None] | None = None) -> EvolutionResult:
        """Evolve every problem's population.

        Args:
            initial: float ``[B, P, D]``, each problem's initial population.
            generators: ``B`` random streams; ``generators[b]`` drives problem ``b``.
            callback: called as ``callback(generation, finished_ids)`` after every
                generation with the ids of the problems that finished in it (for
                progress bars).

        Returns:
            Each problem's answer, fitness, success, generations and evaluations.

        Raises:
            ValueError: ``initial`` holds another population size than the config's.
        """
        batch, popsize, dims = initial.shape
        if popsize != self.config.popsize:
            raise ValueError(f"initial population has {popsize} members, config says "
                             f"{self.config.popsize}")
        device = initial.device
        population = initial.clone()
        ids = torch.arange(batch, device=device)
        fitness, success = self.fitness(ids, population)
        member_success = success.clone()
        result = EvolutionResult(
            best=population[:, 0].clone(), best_fitness=fitness[:, 0].clone(),
            success=torch.zeros(batch, dtype=torch.bool, device=device),
            generations=torch.zeros(batch, dtype=torch.long, device=device),
            evaluations=torch.full((batch,), popsize, dtype=torch.long, device=device))
        self._record(result, ids, population, fitness, success, 0, population, fitness,
                     member_success)
        active = self._still_active(result, ids)
        if callback is not None:
            callback(0, ids[~torch.isin(ids, active)])
        for generation in range(1, self.config.maxiter + 1):
            if active.numel() == 0:
                break
            # problem ids are 0..B-1, so a problem's id is its row
            parents, parent_fitness = population[active], fitness[active]
            children = self._children(parents, parent_fitness,
                                      [generators[i] for i in active.tolist()])
            child_fitness, child_success = self.fitness(active, children)
            improved = (child_fitness <= parent_fitness if self.config.replace_on_tie
                        else child_fitness < parent_fitness)
            parents = torch.where(improved[:, :, None], children, parents)
            parent_fitness = torch.where(improved, child_fitness, parent_fitness)
            population[active], fitness[active] = parents, parent_fitness
            member_success[active] = torch.where(improved, child_success, member_success[active])
            result.evaluations[active] += popsize
            result.generations[active[~result.success[active]]] = generation  # not winners
            self._record(result, active, children, child_fitness, child_success, generation,
                         parents, parent_fitness, member_success[active])
            finished = active[result.success[active]] if self.config.early_stop else active[:0]
            active = self._still_active(result, active)
            if callback is not None:
                callback(generation, finished)
        return result

    def _still_active(self, result: EvolutionResult, candidates: torch.Tensor) -> torch.Tensor:
        if not self.config.early_stop:
            return candidates
        return candidates[~result.success[candidates]]

    def _record(self, result: EvolutionResult, active: torch.Tensor, candidates: torch.Tensor,
                fitness: torch.Tensor, success: torch.Tensor, generation: int,
                population: torch.Tensor, population_fitness: torch.Tensor,
                population_success: torch.Tensor) -> None:
        """Update best-so-far. ``stop_on="any"``: a successful candidate of this
        generation wins (the fittest of those); ``"best"``: the population's fittest
        member, a success when that member succeeds. Otherwise the fittest member."""
        rows = torch.arange(active.numel(), device=candidates.device)
        fittest = population_fitness.argmin(1)
        if self.config.stop_on == "any":
            masked = torch.where(success, fitness, torch.full_like(fitness, float("inf")))
            won = success.any(1) & ~result.success[active]
            pick, pool, pool_fitness = masked.argmin(1), candidates, fitness
        else:
            won = population_success[rows, fittest] & ~result.success[active]
            pick, pool, pool_fitness = fittest, population, population_fitness
        if won.any():
            winners = active[won]
            result.best[winners] = pool[rows, pick][won]
            result.best_fitness[winners] = pool_fitness[rows, pick][won]
            result.success[winners] = True
            result.generations[winners] = generation
        still = ~result.success[active]
        if still.any():
            losers = active[still]
            result.best[losers] = population[rows, fittest][still]
            result.best_fitness[losers] = population_fitness[rows, fittest][still]
