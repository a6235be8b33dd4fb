"""Runs that outgrow one process: groups of attacks (and ``pixelprior verify --workers``'
images, :func:`ray_verify`) as Ray tasks, rows back to one writer.

``pixelprior reproduce ... --workers N [--ray-address ADDR]`` (``pip install
"pixelprior[ray]"``) starts ``N`` Ray actors. Each builds the model, the images and one
scorer once (:class:`~pixelprior.experiment.worker.GroupWorker`) and attacks whole groups of
(seed, images); with GPUs in the cluster each actor takes one GPU, otherwise one CPU (and
one torch thread, so ``N`` workers share the cores instead of fighting over them). Rows
and maps stream back to the calling process, which alone writes the run directory, so the
lock, resume and no-duplicate guarantees are those of a single-process run. Every image's
random stream and every scoring call are independent of which worker or batch handles it
(fixed-shape chunks), so the rows equal a one-worker run's in every field but timings.

Without ``--ray-address`` a local Ray instance is started for the run and stopped after
it; with one, the run joins that cluster (whose workers must have pixelprior installed).
Before any work each worker says which pixelprior it runs and its verifier's revision
(:func:`worker_identity`); a cluster whose workers run other code than the calling
process is refused (:class:`WorkerMismatchError`), since their rows would not be this
process's (the rows record the workers' version, not the caller's).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from ..search.verify import REVISION
from .config import ConfigError, ExperimentConfig
from .environment import package_version
from .worker import GroupWorker

INSTALL_HINT = 'pip install "pixelprior[ray]"'
IN_FLIGHT_PER_WORKER = 2


class WorkerMismatchError(ConfigError):
    """A Ray worker runs another pixelprior (or verifier revision) than the calling
    process."""


def worker_identity() -> dict:
    """What code this process runs, compared between the caller and each Ray worker.

    Returns:
        ``{"pixelprior": version (with its commit from a checkout), "verifier":
        revision}``.
    """
    return {"pixelprior": package_version(), "verifier": REVISION}


def _check_identities(ray, actors: list) -> None:
    """Refuse workers that run other code than this process, before any work."""
    here = worker_identity()
    for number, there in enumerate(ray.get([a.identity.remote() for a in actors]), 1):
        if there != here:
            raise WorkerMismatchError(
                f"Ray worker {number} of {len(actors)} runs pixelprior "
                f"{there.get('pixelprior')} (verifier revision {there.get('verifier')}), "
                f"this process {here['pixelprior']} (revision {here['verifier']}): install "
                "the same pixelprior on every node of the cluster (rows of other code "
                "would not be this run's)")


def _ray():
    try:
        import ray
    except ImportError:
        raise ImportError(f"--workers > 1 runs on Ray: {INSTALL_HINT}") from None
    return ray


def ray_groups(config: ExperimentConfig, groups: list[list[tuple]],
               log: Callable[[str], None] = print) -> Iterator[tuple[list[dict], dict]]:
    """Attack the groups on Ray workers (one GPU each where the cluster has GPUs).

    Args:
        config: the run's config (``workers``, ``ray_address``, ``device``).
        groups: groups of ``(seed, mode, position, index)`` work items.
        log: told how many workers run on what.

    Yields:
        ``(rows, maps)`` of each group, as the workers finish them.

    Raises:
        ImportError: Ray is not installed (with how to install it).
        ConfigError: ``device`` asks for CUDA and the cluster has no GPUs.
    """
    config_dict = {**config.to_dict(), "workers": 1, "ray_address": None}
    yield from _actor_pool(_Worker, (config_dict,), "attack", [(g,) for g in groups],
                           config.workers, config.device, config.ray_address, log)


def _actor_pool(actor_class: type, args: tuple, method: str, jobs: list[tuple],
                workers: int, device: str, address: str | None,
                log: Callable[[str], None], interrupts: Any = None) -> Iterator[Any]:
    """``actor.method(*job)`` for each job on up to ``workers`` Ray actors
    (``actor_class(*args, device)``), at most :data:`IN_FLIGHT_PER_WORKER` calls each;
    results yielded as they finish. Actors take one GPU each where the cluster has GPUs
    and ``device`` is not ``cpu``, else one CPU; never more actors than the cluster holds
    (the extra ones would never start, and their calls wait forever). A local Ray
    instance is started for the pool when none runs, and stopped after it."""
    ray = _ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    if interrupts is not None:
        interrupts.reinstall()
    actors: list = []
    pending: dict = {}
    try:
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        if device.startswith("cuda") and gpus < 1:
            raise ConfigError(f"device {device} asked for, but the Ray cluster has no GPUs; "
                              "use --device cpu")
        use_gpu = gpus >= 1 and device != "cpu"
        count = min(workers, len(jobs), gpus if use_gpu else max(1, cpus))
        if count < min(workers, len(jobs)):
            log(f"note: the Ray cluster has {gpus if use_gpu else cpus} "
                f"{'GPU' if use_gpu else 'CPU'}(s): {count} worker(s), not {workers}")
        actor = ray.remote(num_gpus=1 if use_gpu else 0, num_cpus=0 if use_gpu else 1)(
            actor_class)
        actors = [actor.remote(*args, "cuda" if use_gpu else "cpu") for _ in range(count)]
        _check_identities(ray, actors)
        where = "cuda (one GPU each)" if use_gpu else "cpu (one CPU and one torch thread each)"
        log(f"ray: {count} worker(s) on {where}")
        queue = list(jobs)

        def submit(worker) -> None:
            pending[getattr(worker, method).remote(*queue.pop(0))] = worker

        for worker in actors:
            for _ in range(IN_FLIGHT_PER_WORKER):
                if queue:
                    submit(worker)
        while pending:
            ready = _wait(ray, pending, interrupts)
            worker = pending.pop(ready)
            if queue:
                submit(worker)
            yield ray.get(ready)
    finally:
        _stop(ray, pending, actors, started)


def _wait(ray, pending: dict, interrupts: Any) -> Any:
    """The next finished call; a signal that arrives meanwhile is raised here, between
    short waits, rather than inside Ray (which would swallow it)."""
    guard = interrupts.critical if interrupts is not None else contextlib.nullcontext
    while True:
        with guard():
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
        if ready:
            return ready[0]


def _stop(ray, pending: dict, actors: list, started: bool) -> None:
    """Cancel the calls in flight, stop the actors and a local Ray instance; every step
    tried even when one fails (the run's own error or interrupt is what the user sees)."""
    for ref in pending:
        with contextlib.suppress(Exception):
            ray.cancel(ref)  # actor calls cannot be force-cancelled; killing ends them
    for worker in actors:
        with contextlib.suppress(Exception):
            ray.kill(worker)
    if started:
        with contextlib.suppress(Exception):
            ray.shutdown()


class _Worker:
    """A Ray actor around :class:`~pixelprior.experiment.worker.GroupWorker`."""

    def __init__(self, config_dict: dict, device: str) -> None:
        import torch

        if device == "cpu":
            torch.set_num_threads(1)
        self.worker = GroupWorker(ExperimentConfig.from_dict(config_dict), device)

    def attack(self, group: list[tuple]) -> tuple[list[dict], dict]:
        return self.worker.attack(group)

    def identity(self) -> dict:
        return worker_identity()


def ray_verify(model_factory: Callable[[], Any], settings: dict, jobs: list[tuple],
               workers: int, ray_address: str | None = None, device: str = "cpu",
               log: Callable[[str], None] = print,
               interrupts: Any = None) -> Iterator[tuple[int, Any]]:
    """Verify images on Ray workers (``pixelprior verify --workers N``): each actor builds
    the model once (``model_factory()``, in its own process) and a
    :class:`~pixelprior.search.Verifier` with ``settings``, then verifies one image per
    call.

    Args:
        model_factory: a picklable callable returning the model (eval mode).
        settings: the verifier's keyword arguments (budget, max_boxes, tolerance,
            deterministic, screen).
        jobs: ``(n, image [1, C, H, W], label [1], stop_at_first)`` per image.
        workers: actors to start.
        ray_address: a cluster to join (``None``: a local instance for this call).
        device: ``cpu``, ``cuda`` (one GPU per actor) or ``auto`` (GPUs when the
            cluster has them).
        log: told how many workers run on what.
        interrupts: the run's :class:`~pixelprior._io.Interrupts`: SIGINT/SIGTERM taken
            back from Ray after it starts, and raised between waits (Ray swallows
            exceptions other than ``KeyboardInterrupt`` raised inside its calls).

    Yields:
        ``(n, Verification)`` as the workers finish them.

    Raises:
        ImportError: Ray is not installed (with how to install it).
        ConfigError: ``device`` asks for CUDA and the cluster has no GPUs.
    """
    yield from _actor_pool(_VerifyWorker, (model_factory, settings), "verify", jobs, workers,
                           device, ray_address, log, interrupts)


class _VerifyWorker:
    """A Ray actor holding one model and one :class:`~pixelprior.search.Verifier`."""

    def __init__(self, model_factory: Callable[[], Any], settings: dict, device: str) -> None:
        import torch

        from ..search import Verifier

        if device == "cpu":
            torch.set_num_threads(1)
        self.device = device
        self.verifier = Verifier(model_factory().to(device).eval(), **settings)

    def identity(self) -> dict:
        return worker_identity()

    def verify(self, n: int, image, label, stop_at_first: bool) -> tuple[int, Any]:
        import dataclasses

        answer = self.verifier.verify(image.to(self.device), label.to(self.device),
                                      stop_at_first=stop_at_first)[0]
        verdicts = answer.positions  # back to the caller on the CPU
        cpu = dataclasses.replace(verdicts, **{
            f.name: getattr(verdicts, f.name).cpu() for f in dataclasses.fields(verdicts)
            if hasattr(getattr(verdicts, f.name), "cpu")})
        return n, dataclasses.replace(answer, positions=cpu)
