"""Sparse-RS's L0 random search: known answers, query accounting, reproducibility, batch
invariance, k pixels, targeted attacks, the p schedule, bad arguments and the runner."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pixelprior.search import RandomSearchAttack, p_schedule


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread (the cores are shared); restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def light_images(count=3, height=3, width=6, seed=0):
    """Light grey (about 0.7): at (5, 2) no non-white corner brightens the pixel, so only
    a white pixel there lowers the margin (no partial improvement to get stuck on)."""
    generator = torch.Generator().manual_seed(seed)
    return 0.68 + 0.04 * torch.rand(count, 3, height, width, generator=generator)


def mid_images(count=3, size=8, seed=0):
    """Values in (0.2, 0.8): no pixel is a corner of the colour cube."""
    generator = torch.Generator().manual_seed(seed)
    return 0.2 + 0.6 * torch.rand(count, 3, size, size, generator=generator)


class Constant(nn.Module):
    """Class 0 whatever the input: no pixel can fool it."""

    def __init__(self, classes=3):
        super().__init__()
        self.classes = classes

    def forward(self, x):
        base = torch.arange(self.classes, 0, -1, dtype=x.dtype, device=x.device)
        return base.expand(x.shape[0], -1) + 0 * x.mean((1, 2, 3))[:, None]


class TwoSwitches(nn.Module):
    """Class 0 on mid-grey; class 1 iff (5, 2) is white; class 2 iff (1, 1) is black."""

    def forward(self, x):
        bright = x[:, :, 2, 5].sum(1)
        dark = x[:, :, 1, 1].sum(1)
        return torch.stack([torch.zeros_like(bright), 10 * (bright - 2.4),
                            10 * (0.6 - dark)], 1)


def switch_images(count=2):
    images = torch.full((count, 3, 3, 6), 0.5)
    images[:, :, 1, 1] = 0.3  # dark, but only black there reaches class 2
    return images


def changed_pixels(clean, adversarial):
    return (clean != adversarial).any(0).nonzero().tolist()  # [[y, x], ...]


# ------------------------------------------------------------------ known answers
def test_finds_exactly_the_white_pixel_of_the_bright_model(bright_model):
    images = light_images(3)
    labels = torch.zeros(3, dtype=torch.long)
    out = RandomSearchAttack(bright_model, budget=1000, seed=0).run(images, labels)
    for i, result in enumerate(out.results):
        assert result.success and result.adversarial_label == 1
        assert [(p.x, p.y) for p in result.pixels] == [(5, 2)]
        assert result.pixels[0].new == [1.0, 1.0, 1.0]
        assert changed_pixels(images[i], out.adversarial[i]) == [[2, 5]]
        assert result.queries == 1 + result.steps["iterations"] <= 1000
        assert result.generations is None


def test_queries_are_counted_per_image_and_in_total(bright_model):
    attack = RandomSearchAttack(bright_model, budget=1000, seed=0)
    out = attack.run(light_images(3), torch.zeros(3, dtype=torch.long))
    assert attack.queries == sum(r.queries for r in out.results)
    assert len({r.queries for r in out.results}) > 1  # each image stops at its own success


def test_an_unfoolable_model_spends_exactly_its_budget_and_fails():
    attack = RandomSearchAttack(Constant().eval(), budget=37, seed=1)
    out = attack.run(mid_images(2), torch.zeros(2, dtype=torch.long))
    for result in out.results:
        assert not result.success and result.adversarial_label == 0
        assert result.queries == 37 and result.steps == {"iterations": 36}
    assert attack.queries == 74


def test_a_budget_of_one_query_is_the_first_evaluation_only():
    out = RandomSearchAttack(Constant().eval(), budget=1, seed=0).run(
        mid_images(1), torch.zeros(1, dtype=torch.long))
    assert out.results[0].queries == 1 and out.results[0].steps["iterations"] == 0


def test_an_image_already_misclassified_costs_no_query(bright_model):
    images = light_images(2)
    images[1, :, 2, 5] = 1.0  # already class 1
    out = RandomSearchAttack(bright_model, budget=50, seed=0).run(
        images, torch.zeros(2, dtype=torch.long))
    assert out.results[1].queries == 0 and out.results[1].steps["iterations"] == 0
    assert out.results[1].pixels == [] and not out.results[1].clean_correct
    assert torch.equal(out.adversarial[1], images[1])


def test_every_success_is_confirmed_by_the_model_on_the_adversarial_image(bright_model):
    images = light_images(8, seed=3)
    labels = torch.zeros(8, dtype=torch.long)
    out = RandomSearchAttack(bright_model, budget=100, seed=2).run(images, labels)
    predicted = bright_model(out.adversarial).argmax(1)
    for i, result in enumerate(out.results):
        assert result.adversarial_label == int(predicted[i])
        assert result.success == (int(predicted[i]) != 0)
        assert len(changed_pixels(images[i], out.adversarial[i])) == 1
        assert result.success or result.queries == 100
    assert any(r.success for r in out.results) and not all(r.success for r in out.results)


# ------------------------------------------------------------------ reproducibility
def strip(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def test_same_seed_gives_identical_results_and_another_seed_differs():
    images, labels = mid_images(3), torch.zeros(3, dtype=torch.long)
    run = lambda seed: RandomSearchAttack(  # noqa: E731
        Constant().eval(), budget=25, seed=seed, pixel_count=2).run(images, labels)
    first, second, other = run(5), run(5), run(6)
    assert torch.equal(first.adversarial, second.adversarial)
    assert strip(first.rows()) == strip(second.rows())
    assert not torch.equal(first.adversarial, other.adversarial)


def test_each_image_alone_equals_the_batch_when_batch_invariant(tiny_net):
    images = mid_images(3, size=8, seed=7)
    labels = tiny_net(images).argmax(1)
    attack = RandomSearchAttack(tiny_net, budget=25, seed=3, batch_invariant=True,
                                max_batch=4)
    together = attack.run(images, labels)
    for i in range(3):
        alone = attack.run(images[i:i + 1], labels[i:i + 1])
        assert torch.equal(alone.adversarial[0], together.adversarial[i])
        a, b = strip(alone.rows())[0], strip(together.rows())[i]
        a.pop("index"), b.pop("index")
        assert a == b


def test_the_order_of_the_batch_does_not_change_an_images_result(tiny_net):
    images = mid_images(3, size=8, seed=9)
    labels = tiny_net(images).argmax(1)
    attack = RandomSearchAttack(tiny_net, budget=30, seed=0, batch_invariant=True,
                                max_batch=4)
    forward, backward = attack.run(images, labels), attack.run(images.flip(0), labels.flip(0))
    assert torch.equal(forward.adversarial, backward.adversarial.flip(0))


# ------------------------------------------------------------------ k pixels
def test_k_pixels_change_exactly_k_distinct_pixels_to_corner_colours():
    images = mid_images(3)
    out = RandomSearchAttack(Constant().eval(), budget=30, seed=0, pixel_count=3).run(
        images, torch.zeros(3, dtype=torch.long))
    for i, result in enumerate(out.results):
        changed = changed_pixels(images[i], out.adversarial[i])
        assert len(changed) == 3
        assert sorted([p.y, p.x] for p in result.pixels) == sorted(changed)
        for y, x in changed:
            colour = out.adversarial[i, :, y, x]
            assert bool(((colour == 0) | (colour == 1)).all())
        for p in result.pixels:
            assert all(c in (0.0, 1.0) for c in p.new)
            assert p.old == pytest.approx(images[i, :, p.y, p.x].tolist())


# ------------------------------------------------------------------ targeted
def test_targeted_search_reaches_the_target_not_just_any_other_class():
    images, labels = switch_images(2), torch.zeros(2, dtype=torch.long)
    out = RandomSearchAttack(TwoSwitches().eval(), budget=1000, seed=0, targeted=True).run(
        images, labels, torch.full((2,), 2))
    for result in out.results:
        assert result.success and result.target == 2 and result.adversarial_label == 2
        assert [(p.x, p.y, p.new) for p in result.pixels] == [(1, 1, [0.0, 0.0, 0.0])]
        assert result.target_probability > 0.5


def test_targeted_search_needs_targets_and_untargeted_refuses_them(bright_model):
    images, labels = light_images(1), torch.zeros(1, dtype=torch.long)
    with pytest.raises(ValueError, match="a targeted attack needs `targets`"):
        RandomSearchAttack(bright_model, budget=5, targeted=True)(images, labels)
    with pytest.raises(ValueError, match="use targeted=True"):
        RandomSearchAttack(bright_model, budget=5)(images, labels, torch.ones(1).long())


# ------------------------------------------------------------------ the p schedule
@pytest.mark.parametrize(("iteration", "divisor"), [
    (0, 1), (1, 2), (10, 2), (50, 2), (51, 4), (100, 4), (200, 4), (201, 5), (500, 5),
    (501, 6), (1000, 6), (1001, 8), (2000, 8), (2001, 10), (4000, 10), (5000, 12),
    (6000, 12), (6001, 15), (8000, 15), (8001, 20), (9000, 20), (9999, 20)])
def test_p_schedule_of_sparse_rs_for_ten_thousand_queries(iteration, divisor):
    assert p_schedule(iteration, 0.8, 10_000) == pytest.approx(0.8 / divisor)


@pytest.mark.parametrize(("iteration", "divisor"), [
    (0, 1), (1, 2), (5, 2), (6, 4), (10, 4), (20, 4), (21, 5), (100, 6), (500, 12),
    (800, 15), (801, 20), (900, 20), (999, 20)])
def test_p_schedule_is_rescaled_to_the_budget(iteration, divisor):
    assert p_schedule(iteration, 0.8, 1000) == pytest.approx(0.8 / divisor)
    assert p_schedule(iteration, 0.8, 1000) == p_schedule(iteration * 10, 0.8, 10_000)


def test_p_schedule_scales_with_p_init():
    assert p_schedule(100, 0.4, 10_000) == pytest.approx(0.1)


# ------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize("budget", [0, -5, 10.5, 100.0, True, "100", None])
def test_bad_query_budgets_are_refused(bright_model, budget):
    with pytest.raises(ValueError, match=r"budget must be an integer >= 1, got "):
        RandomSearchAttack(bright_model, budget=budget)


def test_the_old_queries_keyword_is_the_budget_with_a_deprecation(bright_model):
    with pytest.warns(DeprecationWarning, match=r"RandomSearchAttack\(queries=...\) is "
                      r"deprecated.*use budget="):
        attack = RandomSearchAttack(bright_model, queries=37)
    assert attack.budget == 37 and attack.queries == 0  # queries: what was spent
    with pytest.raises(TypeError, match="both queries= .* and budget="):
        RandomSearchAttack(bright_model, queries=37, budget=40)


@pytest.mark.parametrize("p_init", [0, 0.0, -0.1, 1.5, float("nan")])
def test_bad_p_init_is_refused(bright_model, p_init):
    with pytest.raises(ValueError, match=r"p_init must lie in \(0, 1\]"):
        RandomSearchAttack(bright_model, p_init=p_init)


def test_p_init_of_one_is_allowed(bright_model):
    assert RandomSearchAttack(bright_model, p_init=1).p_init == 1.0


@pytest.mark.parametrize(("name", "value", "error", "message"), [
    ("pixel_count", 0, ValueError, "pixel_count must be >= 1, got 0"),
    ("pixel_count", 2.0, TypeError, "pixel_count must be an integer, got 2.0"),
    ("seed", -1, ValueError, "seed must be >= 0, got -1"),
    ("seed", 1.5, TypeError, "seed must be an integer, got 1.5"),
    ("max_batch", 0, ValueError, "max_batch must be >= 1, got 0"),
    ("engine", "turbo", ValueError, "engine must be one of"),
])
def test_bad_shared_arguments_are_refused(bright_model, name, value, error, message):
    with pytest.raises(error, match=message):
        RandomSearchAttack(bright_model, **{name: value})


def test_several_pixels_need_an_engine_that_scores_them(bright_model):
    with pytest.raises(ValueError, match="incremental engine scores one-pixel candidates"):
        RandomSearchAttack(bright_model, pixel_count=2, engine="incremental")


@pytest.mark.parametrize("pixels", [4, 5])
def test_more_pixels_than_the_image_can_move_is_a_clear_error(pixels):
    images = torch.full((1, 3, 2, 2), 0.5)
    with pytest.raises(ValueError, match=rf"pixel_count[ =(]+{pixels}\)? (must be fewer|is "
                                         "more than the 4 pixels)"):
        RandomSearchAttack(Constant().eval(), budget=5, pixel_count=pixels)(
            images, torch.zeros(1, dtype=torch.long))


# ------------------------------------------------------------------ the runner
class Prototypes(nn.Module):
    """A fast stand-in for the CIFAR model: logits are minus the squared distance to the
    first sample image of each class, so those images are classified correctly."""

    def __init__(self):
        super().__init__()
        from pixelprior.data import load_cifar10_sample, to_float

        sample = load_cifar10_sample()
        first = [int((sample.labels == k).nonzero()[0, 0]) for k in range(10)]
        self.register_buffer("prototypes", to_float(sample.images[first]).flatten(1))
        self.scale = nn.Parameter(torch.tensor(0.01))

    def forward(self, x):
        flat = x.flatten(1)
        distance = ((flat[:, None, :] - self.prototypes[None]) ** 2).sum(2)
        return -self.scale * distance


def tiny_run(tmp_path, monkeypatch, **values):
    from pixelprior.experiment import ExperimentConfig, ExperimentRunner, worker

    monkeypatch.setattr(worker, "build_model",
                        lambda config, device=None: Prototypes().eval())
    settings = dict(modes=["random_search"], query_budget=50, images=2, seeds=[0],
                    source="sample", device="cpu", out=str(tmp_path))
    settings.update(values)
    return ExperimentRunner(ExperimentConfig(**settings), log=lambda m: None).run(
        progress=False)


def test_runner_rows_of_random_search_count_iterations_not_generations(tmp_path,
                                                                       monkeypatch):
    rows = tiny_run(tmp_path / "run", monkeypatch)
    assert len(rows) == 2
    for row in rows:
        assert row["mode"] == "random_search" and row["generations"] is None
        assert row["queries"] == 1 + row["iterations"] <= 50
        assert row["success"] or row["queries"] == 50
        assert row["prior"] == "uniform" and len(row["pixels"]) == 1


def test_runner_report_compares_random_search_by_queries(tmp_path, monkeypatch):
    from pixelprior.report import write_report

    directory = tmp_path / "run"
    tiny_run(directory, monkeypatch, modes=["unconstrained", "random_search"], popsize=6,
             maxiter=2)
    stats = write_report(directory, figures=False, exports=False)
    paired = stats["paired_vs_a"]["random_search"]
    assert paired["effort"] == "queries" and paired["pairs"] == 2
    text = (directory / "report.md").read_text()
    assert "## Paired: unconstrained vs random_search" in text
    assert "mean queries where both succeed" in text
    line = next(x for x in text.splitlines() if x.startswith("| 0 | random_search |"))
    assert line.split(" | ")[6:8] == ["–", "–"]  # no generations for random search


@pytest.mark.slow
def test_runner_on_the_bundled_model_writes_random_search_rows(tmp_path):
    from pixelprior.experiment import ExperimentConfig, ExperimentRunner
    from pixelprior.report import write_report

    config = ExperimentConfig(modes=["random_search"], query_budget=50, images=2,
                              seeds=[0], source="sample", device="cpu",
                              out=str(tmp_path / "run"))
    rows = ExperimentRunner(config, log=lambda m: None).run(progress=False)
    assert len(rows) == 2
    assert all(r["generations"] is None and r["queries"] == 1 + r["iterations"] <= 50
               for r in rows)
    stats = write_report(tmp_path / "run", figures=False, exports=False)
    assert "random_search" in stats["modes"]
    assert "random_search" in (tmp_path / "run" / "report.md").read_text()
