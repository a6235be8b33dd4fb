"""The batched DE engine: index sampling, known optima, early stop, per-problem streams."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pixelprior.evolution import DifferentialEvolution, EvolutionConfig, mutation_indices


@given(popsize=st.integers(4, 60), seed=st.integers(0, 2**31))
@settings(max_examples=60, deadline=None)
def test_mutation_indices_are_distinct_and_not_self(popsize, seed):
    index = mutation_indices(popsize, torch.Generator().manual_seed(seed))
    assert index.shape == (popsize, 3)
    assert int(index.min()) >= 0 and int(index.max()) < popsize
    full = torch.cat([torch.arange(popsize)[:, None], index], 1)
    assert all(len(set(row)) == 4 for row in full.tolist())


def test_mutation_indices_are_uniform_enough():
    index = mutation_indices(10, torch.Generator().manual_seed(0))
    counts = torch.zeros(10)
    gen = torch.Generator().manual_seed(1)
    for _ in range(300):
        counts += torch.bincount(mutation_indices(10, gen)[:, 0], minlength=10)
    assert counts.min() > 0.8 * counts.mean() and index.shape == (10, 3)


def sphere(centres):
    """Fitness of problem b: squared distance to centres[b]; success within 0.05."""
    def fitness(ids, candidates):
        value = ((candidates - centres[ids][:, None, :]) ** 2).sum(2)
        return value, value < 0.05 ** 2
    return fitness


def test_finds_known_optima_of_many_problems():
    centres = torch.tensor([[0.2, 0.8], [0.9, 0.1], [0.5, 0.5]])
    solver = DifferentialEvolution(sphere(centres), torch.zeros(2), torch.ones(2),
                                   EvolutionConfig(popsize=30, maxiter=200))
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    initial = torch.rand(3, 30, 2, generator=torch.Generator().manual_seed(9))
    result = solver.solve(initial, gens)
    assert result.success.all()
    assert torch.allclose(result.best, centres, atol=0.05)
    assert (result.evaluations == 30 * (result.generations + 1)).all()


def test_early_stop_at_generation_zero_and_budget():
    def always(ids, c):
        return torch.zeros(c.shape[:2]), torch.ones(c.shape[:2], dtype=torch.bool)

    def never(ids, c):
        return c.sum(2), torch.zeros(c.shape[:2], dtype=torch.bool)

    initial = torch.rand(2, 8, 3)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    done = DifferentialEvolution(always, torch.zeros(3), torch.ones(3),
                                 EvolutionConfig(8, 5)).solve(initial, gens)
    assert done.generations.tolist() == [0, 0] and done.evaluations.tolist() == [8, 8]
    failed = DifferentialEvolution(never, torch.zeros(3), torch.ones(3),
                                   EvolutionConfig(8, 5)).solve(initial, gens)
    assert not failed.success.any()
    assert failed.generations.tolist() == [5, 5] and failed.evaluations.tolist() == [48, 48]
    # without success the best is the fittest member seen, and the selection is elitist
    assert (failed.best_fitness <= initial.sum(2).min(1).values + 1e-6).all()


def test_problem_trajectories_do_not_depend_on_batch():
    centres = torch.tensor([[0.3, 0.3], [0.7, 0.2]])
    initial = torch.rand(2, 12, 2, generator=torch.Generator().manual_seed(4))
    config = EvolutionConfig(popsize=12, maxiter=40)
    together = DifferentialEvolution(sphere(centres), torch.zeros(2), torch.ones(2), config
                                     ).solve(initial, [torch.Generator().manual_seed(s)
                                                       for s in (11, 22)])
    for b, seed in enumerate((11, 22)):
        alone = DifferentialEvolution(sphere(centres[b:b + 1]), torch.zeros(2), torch.ones(2),
                                      config).solve(initial[b:b + 1],
                                                    [torch.Generator().manual_seed(seed)])
        assert torch.equal(alone.best[0], together.best[b])
        assert alone.generations[0] == together.generations[b]


@pytest.mark.parametrize("kwargs, error", [({"popsize": 3}, "popsize"),
                                          ({"maxiter": -1}, "maxiter"),
                                          ({"mutation": 0.0}, "mutation")])
def test_config_validation(kwargs, error):
    with pytest.raises(ValueError, match=error):
        EvolutionConfig(**kwargs)
