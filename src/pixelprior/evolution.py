"""Differential evolution (DE/rand/1, no crossover) for many problems at once.

The one-pixel attack of Su et al. (2019) runs one DE per image. Here every image is a
*problem* and one generation of all still-active problems is evaluated by a single call
of the fitness function, so the model sees one large batch (images × population) instead
of one small batch per image. Problems that succeed leave the batch (early stop).

Randomness is per problem: each problem owns a ``torch.Generator``, and every random
number of that problem is drawn from it alone, on the CPU. A problem's trajectory therefore
does not depend on which other problems share the batch, nor on the device — attacking a
batch gives the same results as attacking its images one at a time.

SciPy's ``differential_evolution`` solves one problem with a Python-level loop and has no
early stop on an external success criterion nor batched problems, so the solver is
hand-written here; its update rule matches SciPy's ``strategy='rand1bin'`` with
``recombination=1`` (every gene from the mutant), which is what Su et al. use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

# fitness(problem_ids [A], candidates [A, P, D]) -> (fitness [A, P], success [A, P])
FitnessFunction = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class EvolutionConfig:
    """DE settings; the defaults are Su et al.'s for the one-pixel attack."""

    popsize: int = 400
    maxiter: int = 100
    mutation: float = 0.5  # F
    early_stop: bool = True

    def __post_init__(self) -> None:
        if self.popsize < 4:
            raise ValueError(f"popsize must be >= 4 (DE/rand/1 needs 3 others), got "
                             f"{self.popsize}")
        if self.maxiter < 0:
            raise ValueError("maxiter must be >= 0")
        if not 0.0 < self.mutation <= 2.0:
            raise ValueError("mutation (F) must lie in (0, 2]")


@dataclass
class EvolutionResult:
    """Per-problem outcome of :meth:`DifferentialEvolution.solve`."""

    best: torch.Tensor  # [B, D]: first successful candidate, else the fittest
    best_fitness: torch.Tensor  # [B]
    success: torch.Tensor  # bool [B]
    generations: torch.Tensor  # int64 [B]: 0 when the initial population succeeded
    evaluations: torch.Tensor  # int64 [B]: fitness evaluations (model queries)


def mutation_indices(popsize: int, generator: torch.Generator) -> torch.Tensor:
    """``[P, 3]`` indices r1, r2, r3 for each member i: distinct, and all different from i.

    Drawn without rejection: each draw is uniform over the positions not yet excluded,
    then shifted past the excluded ones in ascending order.
    """
    own = torch.arange(popsize)
    chosen = [own]
    for k in range(3):
        draw = torch.randint(0, popsize - 1 - k, (popsize,), generator=generator)
        excluded = torch.stack(chosen, 1).sort(1).values
        for column in range(excluded.shape[1]):
            draw = draw + (draw >= excluded[:, column])
        chosen.append(draw)
    return torch.stack(chosen[1:], 1)


class DifferentialEvolution:
    """Batched DE/rand/1 solver (minimisation) with per-problem early stop.

    ``lower``/``upper`` (``[D]``) bound every gene; mutants are clipped to them. A child
    replaces its parent when it is at least as fit (``<=``), as in Su et al.
    """

    def __init__(self, fitness: FitnessFunction, lower: torch.Tensor, upper: torch.Tensor,
                 config: EvolutionConfig = EvolutionConfig()) -> None:
        self.fitness = fitness
        self.lower = lower
        self.upper = upper
        self.config = config

    def _mutants(self, population: torch.Tensor, generators: list[torch.Generator]
                 ) -> torch.Tensor:
        """DE/rand/1 mutants for each active problem: x[r1] + F (x[r2] − x[r3]), clipped."""
        index = torch.stack([mutation_indices(self.config.popsize, g) for g in generators])
        index = index.to(population.device)
        gather = lambda k: torch.gather(  # noqa: E731
            population, 1, index[:, :, k:k + 1].expand(-1, -1, population.shape[2]))
        mutant = gather(0) + self.config.mutation * (gather(1) - gather(2))
        return torch.maximum(torch.minimum(mutant, self.upper), self.lower)

    def solve(self, initial: torch.Tensor, generators: list[torch.Generator],
              callback: Callable[[int, torch.Tensor], None] | None = None) -> EvolutionResult:
        """Evolve ``initial`` (``[B, P, D]``); ``generators[b]`` drives problem ``b``.

        ``callback(generation, finished_ids)`` is called after every generation with the
        ids of the problems that finished in it (for progress bars).
        """
        batch, popsize, dims = initial.shape
        if popsize != self.config.popsize:
            raise ValueError(f"initial population has {popsize} members, config says "
                             f"{self.config.popsize}")
        device = initial.device
        population = initial.clone()
        ids = torch.arange(batch, device=device)
        fitness, success = self.fitness(ids, population)
        result = EvolutionResult(
            best=population[:, 0].clone(), best_fitness=fitness[:, 0].clone(),
            success=torch.zeros(batch, dtype=torch.bool, device=device),
            generations=torch.zeros(batch, dtype=torch.long, device=device),
            evaluations=torch.full((batch,), popsize, dtype=torch.long, device=device))
        self._record(result, ids, population, fitness, success, generation=0)
        active = self._still_active(result, ids)
        if callback is not None:
            callback(0, ids[~torch.isin(ids, active)])
        for generation in range(1, self.config.maxiter + 1):
            if active.numel() == 0:
                break
            # problem ids are 0..B-1, so a problem's id is its row
            parents, parent_fitness = population[active], fitness[active]
            children = self._mutants(parents, [generators[i] for i in active.tolist()])
            child_fitness, child_success = self.fitness(active, children)
            improved = child_fitness <= parent_fitness
            parents = torch.where(improved[:, :, None], children, parents)
            parent_fitness = torch.where(improved, child_fitness, parent_fitness)
            population[active], fitness[active] = parents, parent_fitness
            result.evaluations[active] += popsize
            result.generations[active] = generation
            self._record(result, active, children, child_fitness, child_success, generation,
                         parents, parent_fitness)
            finished = active[result.success[active]] if self.config.early_stop else active[:0]
            active = self._still_active(result, active)
            if callback is not None:
                callback(generation, finished)
        return result

    def _still_active(self, result: EvolutionResult, candidates: torch.Tensor) -> torch.Tensor:
        if not self.config.early_stop:
            return candidates
        return candidates[~result.success[candidates]]

    @staticmethod
    def _record(result: EvolutionResult, active: torch.Tensor, candidates: torch.Tensor,
                fitness: torch.Tensor, success: torch.Tensor, generation: int,
                population: torch.Tensor | None = None,
                population_fitness: torch.Tensor | None = None) -> None:
        """Update best-so-far: a successful candidate wins (the fittest of those)."""
        masked = torch.where(success, fitness, torch.full_like(fitness, float("inf")))
        any_success = success.any(1) & ~result.success[active]
        pick = masked.argmin(1)
        rows = torch.arange(active.numel(), device=candidates.device)
        if any_success.any():
            winners = active[any_success]
            result.best[winners] = candidates[rows, pick][any_success]
            result.best_fitness[winners] = fitness[rows, pick][any_success]
            result.success[winners] = True
            result.generations[winners] = generation
        pool, pool_fitness = ((candidates, fitness) if population is None
                              else (population, population_fitness))
        fittest = pool_fitness.argmin(1)
        still = ~result.success[active]
        if still.any():
            losers = active[still]
            result.best[losers] = pool[rows, fittest][still]
            result.best_fitness[losers] = pool_fitness[rows, fittest][still]
