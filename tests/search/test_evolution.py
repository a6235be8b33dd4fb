"""The batched DE engine: index sampling, known optima, early stop, per-problem streams."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pixelprior.search.evolution import DifferentialEvolution, EvolutionConfig, mutation_indices


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


# ------------------------------------------------------------------ strategy table
def smooth_problem(name):
    """Smooth test functions on [-2, 2]^d (minimum 0): batched fitness, never 'success'."""
    def values(x):
        if name == "sphere":
            return (x ** 2).sum(-1)
        if name == "rosenbrock":
            return (100 * (x[..., 1:] - x[..., :-1] ** 2) ** 2 + (1 - x[..., :-1]) ** 2).sum(-1)
        return (x ** 2).sum(-1) + 0.5 * (1 - torch.cos(3 * x)).sum(-1)  # bumpy bowl

    def fitness(ids, candidates):
        value = values(candidates.double()).float()
        return value, torch.zeros_like(value, dtype=torch.bool)

    return values, fitness


SU_CODE = dict(strategy="best1bin", mutation=(0.5, 1.0), recombination=1.0,
               out_of_bounds="resample", replace_on_tie=False)


@pytest.mark.parametrize("name, dims", [("sphere", 4), ("rosenbrock", 2), ("bumpy", 3)])
def test_best1bin_finds_the_optimum_as_scipy_does(name, dims):
    from scipy.optimize import differential_evolution

    values, fitness = smooth_problem(name)
    popsize, maxiter = 40, 150
    lower, upper = torch.full((dims,), -2.0), torch.full((dims,), 2.0)
    initial = lower + 4 * torch.rand(1, popsize, dims, generator=torch.Generator().manual_seed(0))
    ours = DifferentialEvolution(fitness, lower, upper, EvolutionConfig(
        popsize, maxiter, early_stop=False, **SU_CODE)).solve(
        initial, [torch.Generator().manual_seed(1)])
    theirs = differential_evolution(
        lambda x: float(values(torch.tensor(x))), [(-2, 2)] * dims, strategy="best1bin",
        mutation=(0.5, 1.0), recombination=1.0, popsize=popsize // dims, maxiter=maxiter,
        polish=False, tol=0, seed=1, updating="deferred")
    assert theirs.fun < 1e-3  # SciPy's reaches the optimum ...
    assert float(ours.best_fitness[0]) < 1e-3  # ... and so does ours
    assert torch.allclose(ours.best[0].double(), torch.tensor(theirs.x), atol=0.05)


@pytest.mark.parametrize("strategy", ["rand1bin", "best1bin", "rand2bin", "best2bin",
                                      "currenttobest1bin", "randtobest1bin"])
def test_every_strategy_of_the_table_minimises(strategy):
    _, fitness = smooth_problem("sphere")
    initial = -2 + 4 * torch.rand(2, 20, 3, generator=torch.Generator().manual_seed(3))
    result = DifferentialEvolution(fitness, torch.full((3,), -2.0), torch.full((3,), 2.0),
                                   EvolutionConfig(20, 80, early_stop=False, strategy=strategy,
                                                   recombination=0.9)).solve(
        initial, [torch.Generator().manual_seed(s) for s in (4, 5)])
    assert (result.best_fitness < 0.01).all()
    assert (result.best_fitness <= (initial ** 2).sum(2).min(1).values).all()


def test_resampling_keeps_genes_inside_without_piling_on_the_bounds():
    def pull(ids, candidates):  # optimum far outside the box: mutants leave it often
        value = -candidates.sum(2)
        return value, torch.zeros_like(value, dtype=torch.bool)

    initial = torch.rand(1, 16, 2, generator=torch.Generator().manual_seed(0))
    seen = []
    for rule in ("clip", "resample"):
        config = EvolutionConfig(16, 1, mutation=2.0, early_stop=False, out_of_bounds=rule)
        solver = DifferentialEvolution(pull, torch.zeros(2), torch.ones(2), config)
        children = solver._children(initial, pull(None, initial)[0],
                                    [torch.Generator().manual_seed(7)])
        assert ((children >= 0) & (children <= 1)).all()
        seen.append(((children == 0) | (children == 1)).sum().item())
    assert seen[0] > 0 and seen[1] == 0  # clipping piles genes on the bounds; resampling not


def test_dithered_mutation_is_drawn_per_generation_within_its_range():
    solver = DifferentialEvolution(None, torch.zeros(1), torch.ones(1),
                                   EvolutionConfig(8, 1, mutation=(0.5, 1.0)))
    gens = [torch.Generator().manual_seed(s) for s in range(50)]
    scales = solver._scales(gens, "cpu").flatten()
    assert ((scales >= 0.5) & (scales <= 1.0)).all() and scales.std() > 0.05
    fixed = DifferentialEvolution(None, torch.zeros(1), torch.ones(1), EvolutionConfig(8, 1))
    assert (fixed._scales(gens, "cpu") == 0.5).all()


def test_stop_on_best_waits_until_the_fittest_member_succeeds():
    def fitness(ids, candidates):  # 'success' far from the optimum at 0
        value = (candidates ** 2).sum(2)
        return value, candidates[..., 0] > 0.8

    initial = torch.rand(1, 12, 2, generator=torch.Generator().manual_seed(2))
    initial[0, 0] = torch.tensor([0.9, 0.0])  # one member succeeds but is not the best
    any_ = DifferentialEvolution(fitness, torch.zeros(2), torch.ones(2),
                                 EvolutionConfig(12, 20)).solve(
        initial, [torch.Generator().manual_seed(0)])
    best = DifferentialEvolution(fitness, torch.zeros(2), torch.ones(2),
                                 EvolutionConfig(12, 20, stop_on="best")).solve(
        initial, [torch.Generator().manual_seed(0)])
    assert any_.success.item() and any_.generations.item() == 0
    assert not best.success.item() and best.generations.item() == 20


def test_ties_replace_parents_only_when_asked():
    def flat(ids, candidates):
        value = torch.zeros(candidates.shape[:2])
        return value, torch.zeros_like(value, dtype=torch.bool)

    initial = torch.rand(1, 8, 2, generator=torch.Generator().manual_seed(1))
    for ties, moved in ((True, True), (False, False)):
        solver = DifferentialEvolution(flat, torch.zeros(2), torch.ones(2),
                                       EvolutionConfig(8, 3, early_stop=False,
                                                       replace_on_tie=ties))
        result = solver.solve(initial, [torch.Generator().manual_seed(0)])
        assert (not torch.equal(result.best[0], initial[0, 0])) == moved


@pytest.mark.parametrize("kwargs, error", [({"strategy": "rand3bin"}, "unknown strategy"),
                                          ({"mutation": (1.0, 0.5)}, "mutation"),
                                          ({"recombination": 1.5}, "recombination"),
                                          ({"out_of_bounds": "wrap"}, "out_of_bounds"),
                                          ({"stop_on": "all"}, "stop_on"),
                                          ({"popsize": 5, "strategy": "rand2bin"},
                                           "popsize must be >= 6")])
def test_strategy_settings_are_validated(kwargs, error):
    with pytest.raises(ValueError, match=error):
        EvolutionConfig(**kwargs)
