"""Long checks on the bundled CIFAR-10 model (run with `pytest -m slow`)."""

from __future__ import annotations

import pytest
import torch

from pixelprior import OnePixelAttack, SusceptibleSetPrior, load_cifar10, load_model, to_float
from pixelprior.experiment import correctly_classified

pytestmark = pytest.mark.slow


def correct_images(count: int):
    model = load_model("squeezenet1_1-cifar10")
    data = load_cifar10("sample")
    pick = correctly_classified(model, data, count)
    return model, to_float(data.images[pick]), data.labels[pick]


def test_real_model_batch_invariance_and_seed_reproducibility():
    model, images, labels = correct_images(4)
    make = lambda: OnePixelAttack(model, prior=SusceptibleSetPrior(0.5, n_samples=10),  # noqa
                                  popsize=100, maxiter=10, seed=3, batch_invariant=True)
    together = make().run(images, labels)
    again = make().run(images, labels)
    assert torch.equal(together.adversarial, again.adversarial)
    for i in range(4):
        alone = make().run(images[i:i + 1], labels[i:i + 1])
        assert alone.results[0].true_probability == together.results[i].true_probability
        assert alone.results[0].pixels == together.results[i].pixels


def test_fast_query_model_gives_the_same_attack_outcomes():
    model, images, labels = correct_images(6)
    fast = OnePixelAttack(model, popsize=100, maxiter=10, seed=1).run(images, labels)
    plain = OnePixelAttack(model, popsize=100, maxiter=10, seed=1, optimize=False).run(images,
                                                                                  labels)
    assert [r.success for r in fast.results] == [r.success for r in plain.results]
    assert [r.adversarial_label for r in fast.results] == [
        r.adversarial_label for r in plain.results]


@pytest.mark.checkout
def test_committed_table1_rows_are_reproduced(shared_data, tmp_path):
    """The first 6 images of the committed Table 1 (seed 0, both modes) come out of the
    current code with the same outcome: success, labels, generations, queries and pixel
    positions exact. Colours and probabilities agree to 1e-5: the committed rows were made
    by v0.1, which prepared the incremental engine's clean activations for a whole group
    at once (their last bits depend on the batch); v0.2 prepares them image by image, so a
    failure's best-so-far colour can move on a near-tie of fitness."""
    import json
    from pathlib import Path

    from pixelprior.experiment import ExperimentConfig, ExperimentRunner, read_results

    committed = Path(__file__).parents[1] / "results" / "cifar10"
    config = json.loads((committed / "config.json").read_text())["config"]
    selection = json.loads((committed / "selection.json").read_text())
    keep = 6
    config.update(images=keep, seeds=[0], out=str(tmp_path / "rerun"), data=str(shared_data),
                  device="cpu")
    out = tmp_path / "rerun"
    out.mkdir()
    trimmed = {**selection, "positions": selection["positions"][:keep],
               "indices": selection["indices"][:keep]}
    (out / "selection.json").write_text(json.dumps(trimmed))
    rows = ExperimentRunner(ExperimentConfig(**config)).run(progress=False)
    exact = ("success", "true_label", "original_label", "adversarial_label", "generations",
             "queries", "x", "y", "support_size", "fell_back", "clean_correct")
    wanted = {(r["seed"], r["mode"], r["image_index"]): r
              for r in read_results(committed / "results.jsonl")
              if r["seed"] == 0 and r["image_index"] in trimmed["indices"]}
    got = {(r["seed"], r["mode"], r["image_index"]): r for r in rows}
    assert got.keys() == wanted.keys() and len(got) == 2 * keep
    for key, row in wanted.items():
        mine = got[key]
        assert {k: mine[k] for k in exact} == {k: row[k] for k in exact}, key
        assert mine["true_probability"] == pytest.approx(row["true_probability"], abs=1e-5)
        for a, b in zip(mine["pixels"], row["pixels"], strict=True):
            assert a["new"] == pytest.approx(b["new"], abs=1e-5), key


def test_ray_workers_give_the_rows_of_one_worker(tmp_path):
    """A local Ray cluster with 2 CPU workers writes the same rows (every field but
    timings) as one in-process worker; one writer, so no duplicates."""
    pytest.importorskip("ray")
    from pixelprior.experiment import ExperimentConfig, ExperimentRunner, read_results

    values = dict(source="sample", images=4, seeds=[0, 1], popsize=12, maxiter=3,
                  n_samples=4, batch_images=2, device="cpu",
                  modes=["unconstrained", "constrained", "scan:random"])
    one = ExperimentRunner(ExperimentConfig(**values, out=str(tmp_path / "one"))).run(
        progress=False)
    two = ExperimentRunner(ExperimentConfig(**values, workers=2, out=str(tmp_path / "two")),
                           log=lambda m: None).run(progress=False)
    timing = {"seconds", "group_seconds", "finished", "group_size"}
    key = lambda r: (r["seed"], r["mode"], r["image_index"])  # noqa: E731
    strip = lambda rows: {key(r): {k: v for k, v in r.items() if k not in timing}  # noqa: E731
                          for r in rows}
    assert len(one) == len(two) == 24
    assert strip(one) == strip(two)
    assert len(read_results(tmp_path / "two" / "results.jsonl")) == 24


def test_ray_workers_verify_as_one_process_does(tmp_path):
    """``pixelprior verify --workers 2`` (Ray, one CPU each): the same verdicts and
    per-position files as one process, each image once, with fixed-size bound calls and
    no time budget."""
    pytest.importorskip("ray")
    import json

    import numpy as np
    from helpers import invoke

    from pixelprior.experiment import load_positions

    common = ("verify", "cifar10", "--source", "sample", "--model", "convsmall-cifar10",
              "--images", 3, "--first-index", 1, "--budget", 0, "--max-boxes", 3000,
              "--deterministic", "--exact")
    one = invoke(*common, "--out", tmp_path / "one")
    two = invoke(*common, "--workers", 2, "--out", tmp_path / "two")
    assert one.exit_code == 0 and two.exit_code == 0, one.output + two.output
    # one torch thread per worker: float sums in another order move the derived
    # tolerance in its 8th digit, and (on AVX-512) the proved float32 error's largest in
    # its last, nothing else
    timing = {"seconds", "finished", "tolerance", "tolerance_max"}
    rows, tolerances = {}, {}
    for name in ("one", "two"):
        lines = [json.loads(line) for line in
                 (tmp_path / name / "verification.jsonl").read_text().splitlines()]
        lines.sort(key=lambda row: row["image_index"])  # workers write as they finish
        rows[name] = [{k: v for k, v in row.items() if k not in timing} for row in lines]
        tolerances[name] = [(row["tolerance"], row["tolerance_max"]) for row in lines]
    assert rows["one"] == rows["two"]
    for one, two in zip(tolerances["one"], tolerances["two"], strict=True):
        assert one == pytest.approx(two, rel=1e-6)
    assert [r["image_index"] for r in rows["two"]] == [1, 2, 3]  # each once
    for row in rows["one"]:
        a = load_positions(tmp_path / "one" / row["positions_file"])
        b = load_positions(tmp_path / "two" / row["positions_file"])
        assert np.array_equal(a["status"], b["status"])
        assert np.array_equal(a["witness"], b["witness"], equal_nan=True)
        assert np.allclose(a["verified_volume"], b["verified_volume"], rtol=0, atol=1e-12)


def _actor(kind: str) -> type:
    """A Ray actor class made here (so that Ray ships it by value to its workers):
    ``other`` says it runs another verifier revision; ``older`` cannot import what it
    needs (as a node with an older pixelprior); ``broken`` fails to start otherwise."""
    from pixelprior.experiment.distributed import worker_identity

    class Actor:
        def __init__(self, device):
            if kind == "older":
                raise ImportError("cannot import name 'worker_identity'")
            if kind == "broken":
                raise RuntimeError("the model's weights are missing on this node")

        def identity(self):
            return {**worker_identity(), "verifier": -1}

    return Actor


@pytest.mark.parametrize(("kind", "said"), [
    ("other", r"Ray worker 1 of \d runs pixelprior .+ \(verifier revision -1\)"),
    ("older", r"Ray worker 1 of \d could not say which pixelprior it runs "
              r"\(.*worker_identity.*\): install this pixelprior"),
    ("broken", r"Ray worker 1 of \d could not start \(.*weights are missing on this "
               r"node.*\); --debug shows Ray's report"),
])
def test_real_ray_workers_running_other_code_are_refused_in_one_line(kind, said):
    """On a real local Ray: what the workers say, or the error raised in a worker's
    process, comes back as the one-line refusal, never a Ray traceback."""
    pytest.importorskip("ray")
    from pixelprior.experiment.distributed import ActorPool, WorkerMismatchError

    with pytest.raises(WorkerMismatchError, match=said) as refused:
        with ActorPool(_actor(kind), (), 2, "cpu", None, lambda message: None):
            pass
    assert "\n" not in str(refused.value)
