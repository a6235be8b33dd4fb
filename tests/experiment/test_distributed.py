"""Ray runs: the generator that hands groups to workers and streams rows back, tested on
a fake ``ray`` module (no cluster), and once on a real local Ray (slow)."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import pytest
import torch

from pixelprior.experiment import ConfigError, ExperimentConfig, distributed
from pixelprior.experiment.distributed import IN_FLIGHT_PER_WORKER, ray_groups
from pixelprior.experiment.distributed import _Worker as RealWorker


class FakeRef:
    def __init__(self, actor, group, number):
        self.actor, self.group, self.number = actor, group, number

    def __repr__(self):
        return f"ref{self.number}"


class FakeMethod:
    def __init__(self, actor, name):
        self.actor, self.name = actor, name

    def remote(self, *args):
        return self.actor.ray.submit(self.actor, self.name, args)


class FakeActor:
    def __init__(self, ray, cls, options, args):
        self.ray, self.options, self.args = ray, options, args
        self.instance = cls(*args)

    def __getattr__(self, name):
        return FakeMethod(self, name)


class FakeActorClass:
    def __init__(self, ray, cls, options):
        self.ray, self.cls, self.options = ray, cls, options

    def remote(self, *args):
        actor = FakeActor(self.ray, self.cls, self.options, args)
        self.ray.actors.append(actor)
        return actor


class FakeRay(types.ModuleType):
    """The parts of ``ray`` that ray_groups uses. Tasks finish in the order ``finish``
    chooses among the pending ones (default: the most recently submitted first, so
    completion order differs from submission order)."""

    def __init__(self, resources, initialized=False, finish=None, free=None,
                 slow_starts=0):
        super().__init__("ray")
        self.__spec__ = importlib.machinery.ModuleSpec("ray", None)  # "installed"
        self.resources = resources
        self.free = resources if free is None else free
        self.slow_starts = slow_starts  # waits on the identities that return none ready
        self.initialized = initialized
        self.finish = finish or (lambda refs: max(refs, key=lambda r: r.number))
        self.actors: list[FakeActor] = []
        self.submitted: list[FakeRef] = []
        self.identities: list[FakeRef] = []
        self.done: list[FakeRef] = []
        self.killed: list[FakeActor] = []
        self.cancelled: list[FakeRef] = []
        self.calls: list[str] = []
        self.init_kwargs: dict | None = None
        self.most_in_flight: dict[int, int] = {}

    def init(self, **kwargs):
        self.calls.append("init")
        self.init_kwargs = kwargs
        self.initialized = True

    def is_initialized(self):
        return self.initialized

    def shutdown(self):
        self.calls.append("shutdown")
        self.initialized = False

    def cluster_resources(self):
        return dict(self.resources)

    def available_resources(self):
        return dict(self.free)

    def remote(self, **options):
        return lambda cls: FakeActorClass(self, cls, options)

    def submit(self, actor, name, args):
        ref = FakeRef(actor, args[0] if args else None, len(self.submitted))
        ref.method, ref.args = name, args
        if name in ("identity", "inputs"):  # asked of every worker before any work;
            # answered at once
            self.identities.append(ref)
            return ref
        self.submitted.append(ref)
        pending = [r for r in self.submitted if r.actor is actor and r not in self.done]
        key = id(actor)
        self.most_in_flight[key] = max(self.most_in_flight.get(key, 0), len(pending))
        return ref

    def wait(self, refs, num_returns=1, timeout=None):
        if all(r in self.identities for r in refs):  # the workers say which code they run
            if self.slow_starts:
                self.slow_starts -= 1
                return [], list(refs)
            return list(refs), []
        assert num_returns == 1
        assert all(r not in self.done for r in refs), "a finished task waited on again"
        ready = self.finish(refs)
        self.done.append(ready)
        return [ready], [r for r in refs if r is not ready]

    def get(self, ref):
        if ref in self.identities:
            assert not self.submitted, "work submitted before the workers were checked"
            return getattr(ref.actor.instance, ref.method)(*ref.args)
        assert ref in self.done, "get before the task finished"
        return getattr(ref.actor.instance, ref.method)(*ref.args)

    def kill(self, actor):
        self.killed.append(actor)

    def cancel(self, ref, force=False):
        if force:  # as Ray: actor calls cannot be force-cancelled
            raise ValueError("force=True is not supported for actor tasks")
        self.cancelled.append(ref)


class FakeWorker:
    """Stands in for the Ray actor class: rows name the group and the worker."""

    def __init__(self, config_dict, device):
        self.config_dict, self.device = config_dict, device

    identity = staticmethod(distributed.worker_identity)
    notes: list[str] = []  # what each group's attack says (the same note from each)

    def attack(self, group):
        rows = [{"seed": g[0], "mode": g[1], "image_index": g[3], "device": self.device,
                 "worker": id(self)} for g in group]
        return rows, {"image_index": [g[3] for g in group]}, list(self.notes)

    def inputs(self, positions):
        return {"model": "m", "images": [f"i{p}" for p in positions], "labels": positions}


@pytest.fixture
def fake_ray(monkeypatch):
    def install(resources, **kwargs):
        ray = FakeRay(resources, **kwargs)
        monkeypatch.setitem(sys.modules, "ray", ray)
        monkeypatch.setattr(distributed, "_Worker", FakeWorker)
        monkeypatch.setattr(distributed, "_reachable", lambda address: None)  # no cluster
        return ray
    return install


def groups(count, size=2):
    return [[(0, "constrained", n * size + i, 100 + n * size + i) for i in range(size)]
            for n in range(count)]


def quiet(config, work):
    return list(ray_groups(config, work, log=lambda message: None))


def test_device_cuda_without_cluster_gpus_is_refused_before_any_worker(fake_ray):
    ray = fake_ray({"CPU": 8})
    with pytest.raises(ConfigError, match="device cuda asked for, but the Ray cluster has "
                                          "no GPUs; use --device cpu"):
        quiet(ExperimentConfig(device="cuda", workers=2), groups(3))
    assert ray.actors == [] and ray.submitted == []
    assert ray.calls == ["init", "shutdown"]  # the instance it started is stopped


def test_device_cuda_index_without_gpus_is_refused(fake_ray):
    fake_ray({"CPU": 8, "GPU": 0})
    with pytest.raises(ConfigError, match="device cuda:1 asked for"):
        quiet(ExperimentConfig(device="cuda:1", workers=2), groups(1))


def test_every_group_is_yielded_exactly_once_in_completion_order(fake_ray):
    ray = fake_ray({"CPU": 4})
    work = groups(7)
    out = quiet(ExperimentConfig(device="auto", workers=3), work)
    assert len(out) == 7
    yielded = [tuple(row["image_index"] for row in rows) for rows, _ in out]
    assert sorted(yielded) == sorted(tuple(g[3] for g in group) for group in work)
    finished = [tuple(g[3] for g in ref.group) for ref in ray.done]
    assert yielded == finished  # as the workers finished them, not as submitted
    assert yielded != [tuple(g[3] for g in group) for group in work]
    assert [maps["image_index"] for _, maps in out] == [list(y) for y in yielded]


def test_workers_are_cpu_actors_with_the_config_for_one_process(fake_ray):
    ray = fake_ray({"CPU": 4})
    config = ExperimentConfig(device="auto", workers=3, ray_address="10.0.0.1:6379",
                              popsize=17)
    out = quiet(config, groups(5))
    assert len(ray.actors) == 3
    for actor in ray.actors:
        assert actor.options == {"num_gpus": 0, "num_cpus": 1}
        config_dict, device = actor.args
        assert device == "cpu"
        assert config_dict["workers"] == 1 and config_dict["ray_address"] is None
        assert config_dict["popsize"] == 17
        assert ExperimentConfig.from_dict(config_dict).digest() == config.digest()
    assert {row["device"] for rows, _ in out for row in rows} == {"cpu"}
    assert ray.init_kwargs["address"] == "10.0.0.1:6379"


def test_no_more_workers_than_groups(fake_ray):
    ray = fake_ray({"CPU": 16})
    quiet(ExperimentConfig(device="cpu", workers=8), groups(2))
    assert len(ray.actors) == 2


def test_each_worker_holds_at_most_two_groups_in_flight_and_all_are_used(fake_ray):
    ray = fake_ray({"CPU": 4})
    quiet(ExperimentConfig(device="cpu", workers=2), groups(9))
    assert max(ray.most_in_flight.values()) == IN_FLIGHT_PER_WORKER == 2
    assert {id(ref.actor) for ref in ray.submitted} == {id(a) for a in ray.actors}
    assert len(ray.submitted) == 9  # every group submitted once


def test_gpu_cluster_gives_one_gpu_per_worker_and_no_more_workers_than_gpus(fake_ray):
    ray = fake_ray({"CPU": 32, "GPU": 2})
    out = quiet(ExperimentConfig(device="auto", workers=4), groups(6))
    assert len(ray.actors) == 2
    assert all(a.options == {"num_gpus": 1, "num_cpus": 0} and a.args[1] == "cuda"
               for a in ray.actors)
    assert {row["device"] for rows, _ in out for row in rows} == {"cuda"}


def test_device_cpu_on_a_gpu_cluster_uses_cpu_workers(fake_ray):
    ray = fake_ray({"CPU": 8, "GPU": 2})
    quiet(ExperimentConfig(device="cpu", workers=3), groups(4))
    assert len(ray.actors) == 3
    assert all(a.options == {"num_gpus": 0, "num_cpus": 1} and a.args[1] == "cpu"
               for a in ray.actors)


class FakeVerifyWorker:
    """Stands in for the verify actor: answers with the image number and its device."""

    identity = staticmethod(distributed.worker_identity)

    def __init__(self, model_factory, settings, device):
        self.device = device

    def verify(self, n):
        return n, self.device


def verified_on(fake_ray, monkeypatch, resources, device):
    ray = fake_ray(resources)
    monkeypatch.setattr(distributed, "_VerifyWorker", FakeVerifyWorker)
    out = list(distributed.ray_verify(lambda: None, {}, [(0,), (1,), (2,)], 2, None, device,
                                      log=lambda message: None))
    return ray, sorted(out)


@pytest.mark.parametrize(("resources", "device", "expected", "options"), [
    ({"CPU": 8}, "auto", "cpu", {"num_gpus": 0, "num_cpus": 1}),
    ({"CPU": 8, "GPU": 2}, "auto", "cuda", {"num_gpus": 1, "num_cpus": 0}),
    ({"CPU": 8, "GPU": 2}, "cpu", "cpu", {"num_gpus": 0, "num_cpus": 1}),
])
def test_verify_workers_take_the_clusters_gpus_only_when_asked_or_auto(
        fake_ray, monkeypatch, resources, device, expected, options):
    ray, out = verified_on(fake_ray, monkeypatch, resources, device)
    assert out == [(0, expected), (1, expected), (2, expected)]
    assert all(a.options == options for a in ray.actors)


def test_verify_workers_asked_for_cuda_on_a_cpu_cluster_are_refused(fake_ray, monkeypatch):
    with pytest.raises(ConfigError, match="the Ray cluster has no GPUs; use --device cpu"):
        verified_on(fake_ray, monkeypatch, {"CPU": 8}, "cuda")


def test_a_verification_asked_for_auto_lets_the_cluster_choose(monkeypatch):
    """``verify --device auto`` on a GPU host joining a CPU-only cluster: the workers are
    asked for ``auto`` (the cluster's GPUs if any), not this host's ``cuda``."""
    from pixelprior.experiment import verification

    asked = {}

    def fake_verify_pool(factory, settings, workers, address, device, log, interrupts,
                         most):
        asked["device"], asked["settings"], asked["most"] = device, settings, most
        return "pool"

    monkeypatch.setattr(distributed, "verify_pool", fake_verify_pool)
    verifier = types.SimpleNamespace(budget=1.0, max_boxes=None, tolerance=None,
                                     deterministic=False, screen_mode=None, search=False)

    def answers(device, worker_device=None):
        assert verification._worker_pool(verifier, 2, 2, None, device, worker_device,
                                         lambda: None, print, None) == "pool"
        assert asked["most"] == 2
        return asked["device"]

    assert answers("cuda", "auto") == "auto"
    assert answers("cuda:1") == "cuda"
    assert answers("cpu") == "cpu"
    assert asked["settings"]["search"] is False  # the workers' verifiers are made alike


@pytest.mark.parametrize(("field", "value"), [("pixelprior", "0.1.0"), ("verifier", 1)])
def test_workers_running_other_code_are_refused_before_any_work(fake_ray, monkeypatch,
                                                                 field, value):
    """A cluster node with another pixelprior (or verifier revision) would write rows
    that are not this run's: the pool stops before any group or image is submitted, and
    names both versions."""
    ray = fake_ray({"CPU": 4})
    other = {**distributed.worker_identity(), field: value}
    monkeypatch.setattr(FakeWorker, "identity", lambda self: other)
    here = distributed.worker_identity()
    message = (f"Ray worker 1 of 2 runs pixelprior {other['pixelprior']} (verifier revision "
               f"{other['verifier']}), this process {here['pixelprior']} (revision "
               f"{here['verifier']}): install the same pixelprior (the same commit, from a "
               "checkout) on every node of the cluster; rows of other code would not be "
               "this run's")
    with pytest.raises(distributed.WorkerMismatchError) as refused:
        quiet(ExperimentConfig(device="cpu", workers=2), groups(3))
    assert str(refused.value) == message
    assert ray.submitted == [] and len(ray.killed) == 2 and ray.calls == ["init", "shutdown"]
    monkeypatch.setattr(distributed, "_VerifyWorker", FakeVerifyWorker)
    monkeypatch.setattr(FakeVerifyWorker, "identity", lambda self: other)
    with pytest.raises(distributed.WorkerMismatchError):
        list(distributed.ray_verify(lambda: None, {}, [(0,), (1,)], 2, log=lambda m: None))
    assert ray.submitted == []


def test_a_worker_that_cannot_say_which_code_it_runs_is_refused(fake_ray, monkeypatch):
    """An older pixelprior on a node has no ``identity`` (Ray then fails the call, or
    the actor's creation): one line that says what to do, no work sent."""
    ray = fake_ray({"CPU": 4})

    def older(self):
        raise AttributeError("Can't get attribute '_Worker.identity'")

    monkeypatch.setattr(FakeWorker, "identity", older)
    with pytest.raises(distributed.WorkerMismatchError,
                       match=r"^Ray worker 1 of 2 could not say which pixelprior it runs "
                             r"\(Can't get attribute '_Worker.identity'\): install this "
                             r"pixelprior \(.+\) on every node of the cluster$"):
        quiet(ExperimentConfig(device="cpu", workers=2), groups(3))
    assert ray.submitted == [] and len(ray.killed) == 2


def test_a_worker_that_fails_to_start_otherwise_is_not_called_other_code(fake_ray,
                                                                         monkeypatch):
    """A worker that fails for another reason (out of memory, data missing on its
    node): its last line, the cause chained for --debug, no advice to reinstall."""
    fake_ray({"CPU": 4})

    def failing(self):
        raise RuntimeError("CUDA out of memory\nwhile building the model")

    monkeypatch.setattr(FakeWorker, "identity", failing)
    with pytest.raises(distributed.WorkerMismatchError) as refused:
        quiet(ExperimentConfig(device="cpu", workers=2), groups(3))
    assert str(refused.value) == ("Ray worker 1 of 2 could not start (while building the "
                                  "model); --debug shows Ray's report")
    assert isinstance(refused.value.__cause__, RuntimeError)


def test_a_worker_identity_is_this_processs_version_and_verifier_revision():
    from pixelprior.experiment.environment import package_version
    from pixelprior.search.verify import REVISION

    assert distributed.worker_identity() == {"pixelprior": package_version(),
                                             "verifier": REVISION}
    assert issubclass(distributed.WorkerMismatchError, ConfigError)  # one line in the CLI


def test_the_log_says_how_many_workers_on_what(fake_ray):
    fake_ray({"CPU": 8})
    messages = []
    list(ray_groups(ExperimentConfig(device="cpu", workers=2), groups(3), messages.append))
    assert messages == ["ray: 2 worker(s) on cpu (one CPU and one torch thread each)"]


def test_workers_slow_to_start_are_said_with_what_the_cluster_has_free(fake_ray,
                                                                       monkeypatch):
    ray = fake_ray({"CPU": 4}, free={"CPU": 0}, slow_starts=3)
    monkeypatch.setattr(distributed, "PATIENCE_S", 0.0)
    monkeypatch.setattr(distributed, "NOTE_EVERY_S", 3600.0)
    said = []
    out = list(ray_groups(ExperimentConfig(device="auto", workers=3), groups(5),
                          log=said.append))
    assert len(out) == 5 and len(ray.submitted) == 5  # the wait ends when they start
    notes = [m for m in said if "ready after" in m]
    assert notes == ["note: 0 of 3 Ray worker(s) ready after 0 s; the others are starting "
                     "or waiting for a CPU (the cluster has 0 of 4 CPUs free); Ctrl-C "
                     "stops, or run with fewer --workers"]  # once: next NOTE_EVERY_S later


def test_workers_that_start_within_the_patience_are_not_said(fake_ray, monkeypatch):
    fake_ray({"GPU": 2, "CPU": 8}, slow_starts=3)
    said = []
    list(ray_groups(ExperimentConfig(device="auto", workers=2), groups(3), log=said.append))
    assert not [m for m in said if "ready after" in m]
    monkeypatch.setattr(distributed, "PATIENCE_S", 0.0)
    monkeypatch.setattr(distributed, "NOTE_EVERY_S", 0.0)
    fake_ray({"GPU": 2, "CPU": 8}, free={"GPU": 1, "CPU": 8}, slow_starts=2)
    said = []
    list(ray_groups(ExperimentConfig(device="auto", workers=2), groups(3), log=said.append))
    notes = [m for m in said if "ready after" in m]
    assert len(notes) == 2 and all("waiting for a GPU (the cluster has 1 of 2 GPUs free)"
                                   in m for m in notes)


def test_actors_are_killed_and_the_started_instance_stopped(fake_ray):
    ray = fake_ray({"CPU": 4})
    quiet(ExperimentConfig(device="cpu", workers=2), groups(3))
    assert len(ray.killed) == 2 and ray.cancelled == []
    assert ray.calls == ["init", "shutdown"]


def test_a_cluster_already_running_is_joined_and_left_running(fake_ray):
    ray = fake_ray({"CPU": 4}, initialized=True)
    out = quiet(ExperimentConfig(device="cpu", workers=2), groups(3))
    assert len(out) == 3 and ray.calls == [] and ray.initialized


def test_stopping_early_cancels_what_is_in_flight_and_kills_the_workers(fake_ray):
    ray = fake_ray({"CPU": 4})
    stream = ray_groups(ExperimentConfig(device="cpu", workers=2), groups(6),
                        log=lambda message: None)
    next(stream)
    stream.close()  # the caller stops (an interrupt, an error writing rows)
    assert len(ray.cancelled) == 4  # 2 workers x 2 in flight (one refilled after the first)
    assert all(ref not in ray.done for ref in ray.cancelled)
    assert len(ray.killed) == 2 and ray.calls == ["init", "shutdown"]


def test_first_in_first_out_completion_yields_the_submission_order(fake_ray):
    ray = fake_ray({"CPU": 4}, finish=lambda refs: min(refs, key=lambda r: r.number))
    work = groups(5)
    out = quiet(ExperimentConfig(device="cpu", workers=2), work)
    assert [[r["image_index"] for r in rows] for rows, _ in out] == [
        [g[3] for g in group] for group in work]
    assert len(ray.done) == 5


def test_without_ray_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ImportError, match=r'--workers > 1 runs on Ray: pip install '
                                          r'"pixelprior\[ray\]"'):
        next(ray_groups(ExperimentConfig(device="cpu", workers=2), groups(1)))


@pytest.mark.slow
def test_two_local_ray_workers_write_the_rows_of_one(tmp_path):
    pytest.importorskip("ray")
    from pixelprior.experiment import ExperimentRunner

    values = dict(source="sample", images=3, seeds=[0], popsize=8, maxiter=2,
                  batch_images=1, device="cpu", modes=["unconstrained", "random_search"],
                  query_budget=20)
    one = ExperimentRunner(ExperimentConfig(**values, out=str(tmp_path / "one")),
                           log=lambda m: None).run(progress=False)
    two = ExperimentRunner(ExperimentConfig(**values, workers=2, out=str(tmp_path / "two")),
                           log=lambda m: None).run(progress=False)
    timing = {"seconds", "group_seconds", "finished", "group_size"}
    strip = lambda rows: {(r["seed"], r["mode"], r["image_index"]):  # noqa: E731
                          {k: v for k, v in r.items() if k not in timing} for r in rows}
    assert len(one) == len(two) == 6
    assert strip(one) == strip(two)


# ------------------------------------------------------------------ refused before writing
@pytest.fixture
def other_code(fake_ray, monkeypatch):
    """A fake cluster whose workers run another verifier revision."""
    ray = fake_ray({"CPU": 4})
    other = {**distributed.worker_identity(), "verifier": 0}
    monkeypatch.setattr(FakeWorker, "identity", lambda self: other)
    monkeypatch.setattr(distributed, "_VerifyWorker", FakeVerifyWorker)
    monkeypatch.setattr(FakeVerifyWorker, "identity", lambda self: other)
    return ray


def snapshot(folder):
    """Every file of the folder but the lock (which names its last holder and time)."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def test_a_run_refused_by_its_workers_writes_nothing_and_moves_nothing(other_code,
                                                                       tiny_run, tmp_path):
    from pixelprior.experiment import ExperimentRunner

    new = tiny_run("new", modes=["unconstrained"], workers=2)
    with pytest.raises(distributed.WorkerMismatchError):
        ExperimentRunner(new, log=lambda m: None).run()
    assert not (tmp_path / "new").exists()
    old = tiny_run(modes=["unconstrained"])  # one process: no Ray
    ExperimentRunner(old, log=lambda m: None).run()
    results = tmp_path / "run" / "results.jsonl"
    results.write_text("".join(results.read_text().splitlines(keepends=True)[:-1]))
    before = snapshot(tmp_path / "run")
    for config, force in [(tiny_run(modes=["unconstrained"], workers=2), False),
                          (tiny_run(modes=["unconstrained"], workers=2, popsize=9), True)]:
        with pytest.raises(distributed.WorkerMismatchError):
            ExperimentRunner(config, log=lambda m: None, force=force).run()
        assert snapshot(tmp_path / "run") == before  # not resumed, not moved aside
    assert other_code.submitted == []


def test_a_verification_refused_by_its_workers_writes_nothing(other_code, tmp_path,
                                                               tiny_kit):
    from pixelprior.experiment.verification import run_verification

    model = tiny_kit.tiny_model()
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        labels = model(images).argmax(1)
    with pytest.raises(distributed.WorkerMismatchError):
        run_verification(tmp_path / "verified", model, images, labels, [0, 1, 2],
                         budget=None, max_boxes=10, workers=2)
    assert not [p for p in (tmp_path / "verified").rglob("*") if p.name != ".lock"]


def test_a_forced_run_without_its_config_record_starts_workers_for_every_attack(
        fake_ray, monkeypatch, tiny_run, tmp_path):
    """``--force`` on a finished run whose config.json was lost moves the old files
    aside and attacks everything again: the workers are started for all of it (not for
    the none the old rows left), before anything is moved."""
    from pixelprior.experiment import ExperimentRunner

    ray = fake_ray({"CPU": 4})
    monkeypatch.setattr(distributed, "_Worker", RealWorker)  # attacks in this process
    config = tiny_run(modes=["unconstrained"], batch_images=1, images=3)
    first = ExperimentRunner(config, log=lambda m: None).run()
    (tmp_path / "run" / "config.json").unlink()
    two = tiny_run(modes=["unconstrained"], batch_images=1, images=3, workers=2)
    again = ExperimentRunner(two, log=lambda m: None, force=True).run()
    assert len(again) == len(first) == 3 and len(ray.actors) == 2
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith("old-")]


def test_a_run_takes_its_signals_back_from_ray(fake_ray, monkeypatch, tiny_run):
    """Ray's start replaces the SIGTERM handler: a run on workers gives the pool its
    interrupts, reinstalled after Ray starts, and waits between them."""
    import contextlib

    from pixelprior.experiment import ExperimentRunner

    class Recorder:
        def __init__(self):
            self.calls = []

        def reinstall(self):
            self.calls.append("reinstall")

        @contextlib.contextmanager
        def critical(self):
            self.calls.append("critical")
            yield

    fake_ray({"CPU": 4})
    monkeypatch.setattr(distributed, "_Worker", RealWorker)
    recorder = Recorder()
    ExperimentRunner(tiny_run(modes=["unconstrained"], images=2, batch_images=1, workers=2),
                     log=lambda m: None).run(interrupts=recorder)
    assert recorder.calls[0] == "reinstall" and recorder.calls.count("reinstall") == 1
    assert "critical" in recorder.calls


def test_a_sigterm_while_ray_starts_is_an_interrupt(fake_ray, monkeypatch):
    """Ray's start installs a SIGTERM handler that calls sys.exit(15): a run stopped then
    ended with exit 15 and not a word (an audit's case); it is now this run's interrupt
    (143, with the line of what was kept), and the half-started Ray is shut down."""
    import signal

    from pixelprior._io import Interrupted

    ray = fake_ray({"CPU": 4})

    def stopped_while_starting(**kwargs):
        ray.calls.append("init")
        ray.initialized = True
        raise SystemExit(signal.SIGTERM)

    monkeypatch.setattr(ray, "init", stopped_while_starting)
    with pytest.raises(Interrupted) as caught:
        quiet(ExperimentConfig(device="cpu", workers=2), groups(2))
    assert caught.value.exit_code == 143 and ray.calls == ["init", "shutdown"]


def test_without_an_address_the_run_starts_a_ray_of_its_own(fake_ray):
    """ray.init() without an address joins any cluster `ray start` left on the machine
    (an audit's case: its workers read other data); "local" starts the run's own."""
    ray = fake_ray({"CPU": 4})
    quiet(ExperimentConfig(device="cpu", workers=2), groups(2))
    assert ray.init_kwargs["address"] == "local"


def test_rays_token_notice_is_not_printed_when_the_run_starts_its_own(fake_ray, monkeypatch,
                                                                     caplog):
    """Ray said "Token authentication is enabled ..." at every start of the run's own
    local instance; its warning that authentication is off still prints."""
    import logging

    from pixelprior.experiment import distributed

    ray, said = fake_ray({"CPU": 4}), logging.getLogger(distributed._TOKEN_NOTICE_LOGGER)
    start = ray.init

    def init(**kwargs):
        said.warning("Token authentication is enabled for this Ray cluster. Set ...")
        said.warning("Token authentication is disabled for this Ray cluster. Anyone ...")
        return start(**kwargs)

    monkeypatch.setattr(ray, "init", init)
    with caplog.at_level(logging.WARNING, logger=distributed._TOKEN_NOTICE_LOGGER):
        quiet(ExperimentConfig(device="cpu", workers=2), groups(2))
    assert [r.getMessage()[:36] for r in caplog.records] == [
        "Token authentication is disabled for"]
    assert not said.filters  # the filter is gone after the start


@pytest.mark.parametrize("address", ["garbage", "host:", "host:99999", ":6379", "ray://x"])
def test_an_address_that_is_none_is_refused_with_the_config(address):
    with pytest.raises(ConfigError, match="is not a Ray cluster address: give HOST:PORT"):
        ExperimentConfig(workers=2, ray_address=address).validate()


def test_an_address_nothing_answers_at_is_refused_at_once():
    """Ray waits for an unreachable cluster without end, printing only its warnings."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConfigError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
        distributed._reachable(f"127.0.0.1:{port}")


class TaskError(Exception):
    def __init__(self, cause, where="/site/pixelprior/search/base.py"):
        super().__init__(f"ray::_Worker.attack() ... {cause!r} ... a long traceback")
        self.cause = cause
        self.traceback_str = f'Traceback:\n  File "{where}", line 1, in f\n{cause!r}'


class ActorError(Exception):
    pass


@pytest.mark.parametrize(("error", "expected", "match"), [
    (TaskError(ValueError("model returned NaN scores: make it finite")), ValueError,
     "^model returned NaN scores: make it finite$"),
    (TaskError(KeyError("conv1.weight"), "/site/torch/nn/modules/module.py"), RuntimeError,
     r"^KeyError: 'conv1.weight' \(in a Ray worker\)$"),
    (ActorError("The actor died unexpectedly before finishing this task."),
     distributed.WorkerLostError, "a Ray worker stopped before it finished its work "
     r"\(The actor died unexpectedly.*run the same command again to resume")])
def test_a_workers_failure_is_its_own_one_line_or_a_lost_worker(fake_ray, error, expected,
                                                                  match):
    """Ray wraps a worker's exception in its traceback text (cut in the error line), and a
    killed worker was an internal error."""
    ray = fake_ray({"CPU": 2})
    ray.exceptions = types.SimpleNamespace(RayTaskError=TaskError, RayActorError=ActorError)
    original = ray.get

    def failing(ref):
        if getattr(ref, "method", None) == "attack":
            raise error
        return original(ref)

    ray.get = failing
    with pytest.raises(expected, match=match):
        quiet(ExperimentConfig(device="cpu", workers=2), groups(2))


def test_workers_that_loaded_other_inputs_are_refused_before_any_work(
        fake_ray, monkeypatch, tiny_run, tmp_path):
    """(An audit's case: workers read another PIXELPRIOR_DATA, a relative model path in
    the cluster's folder, a model file changed while the run started; the rows were
    written, and the report took them.) Nothing is written."""
    from pixelprior.experiment import ExperimentRunner

    fake_ray({"CPU": 4})
    monkeypatch.setattr(distributed, "_Worker", RealWorker)
    real = RealWorker.inputs

    def other_images(self, positions):
        return {**real(self, positions), "images": ["another"] * len(positions)}

    monkeypatch.setattr(RealWorker, "inputs", other_images)
    config = tiny_run(modes=["unconstrained"], images=2, batch_images=1, workers=2)
    with pytest.raises(distributed.WorkerMismatchError,
                       match="Ray worker 1 of 2 loaded other images than this process"):
        ExperimentRunner(config, log=lambda m: None).run()
    assert not (tmp_path / "run" / "results.jsonl").exists()


def test_a_workers_notes_are_said_once_as_in_one_process(fake_ray, monkeypatch, tiny_run):
    """A note of an attack (why fast did not verify) was lost on Ray workers."""
    from pixelprior.experiment import ExperimentRunner
    from pixelprior.experiment.worker import GroupWorker

    fake_ray({"CPU": 4})
    monkeypatch.setattr(distributed, "_Worker", RealWorker)
    attack = GroupWorker.attack

    def noting(self, group):
        self.log("note: unconstrained: a note")
        return attack(self, group)

    monkeypatch.setattr(GroupWorker, "attack", noting)
    said = []
    config = tiny_run(modes=["unconstrained"], images=3, batch_images=1, workers=2)
    ExperimentRunner(config, log=said.append).run()
    assert said.count("note: unconstrained: a note") == 1


def test_a_lost_worker_is_a_runtime_failure_of_one_line():
    from pixelprior.cli.errors import error_line

    code, line = error_line(distributed.WorkerLostError("a Ray worker stopped ..."))
    assert code == 1 and "internal error" not in line


def test_a_library_error_in_a_worker_stays_an_internal_error():
    """A plain KeyError raised by a library inside a worker read as a user's error (exit
    2) once re-raised in pixelprior's code; in one process it is one to report."""
    from pixelprior.cli.errors import error_line

    code, line = error_line(distributed._worker_failure(
        types.SimpleNamespace(exceptions=types.SimpleNamespace(
            RayTaskError=TaskError, RayActorError=ActorError)),
        TaskError(KeyError("conv1.weight"), "/site/torch/nn/modules/module.py")))
    assert code == 1 and "internal error" in line


def test_with_ray_address_set_the_run_leaves_the_choice_to_ray(fake_ray, monkeypatch):
    """`ray job submit` sets RAY_ADDRESS: "local" would start a Ray beside that cluster."""
    ray = fake_ray({"CPU": 4})
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    quiet(ExperimentConfig(device="cpu", workers=2), groups(2))
    assert ray.init_kwargs["address"] is None
