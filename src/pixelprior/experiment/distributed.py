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
import logging
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

from .._io import Interrupted
from ..search.verify import REVISION
from .config import ConfigError, ExperimentConfig, address_parts
from .environment import package_version
from .worker import GroupWorker

INSTALL_HINT = 'pip install "pixelprior[ray]"'
# what a worker's inputs() returns, in words
INPUT_NAMES = {"model": "another model", "images": "other images", "labels": "other labels"}
IN_FLIGHT_PER_WORKER = 2
# workers not ready after this long are said (the cluster's CPUs or GPUs may be held by
# other jobs: Ray then waits for them without a word), and again every NOTE_EVERY_S
PATIENCE_S = 20.0
NOTE_EVERY_S = 120.0
CONNECT_TIMEOUT_S = 5.0  # a cluster address must answer within this


class WorkerMismatchError(ConfigError):
    """A Ray worker runs another pixelprior (or verifier revision) than the calling
    process, loaded another model or other images, or could not start (the cause
    chained)."""


class WorkerLostError(RuntimeError):
    """A Ray worker stopped before it finished its work (killed, out of memory, its node
    lost); what was written before is kept."""


def _reachable(address: str) -> None:
    """Refuse a cluster address nothing answers at (Ray would wait for it without end,
    printing only its own warnings): one TCP connection, a few seconds at most."""
    import socket

    host, port = address_parts(address)
    if port is None:
        return
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigError(f"no Ray cluster answers at {address} ({exc.strerror or exc}): "
                          "start one there (`ray start --head --port PORT`) or give its "
                          "address as `ray start` printed it") from None


def worker_identity() -> dict:
    """What code this process runs, compared between the caller and each Ray worker.

    Returns:
        ``{"pixelprior": version (with its commit from a checkout), "verifier":
        revision}``.
    """
    return {"pixelprior": package_version(), "verifier": REVISION}


def _ray():
    try:
        import ray
    except ImportError:
        raise ImportError(f"--workers > 1 runs on Ray: {INSTALL_HINT}") from None
    return ray


def group_pool(config: ExperimentConfig, most: int, log: Callable[[str], None] = print,
               interrupts: Any = None, expected: dict | None = None,
               positions: list[int] | None = None) -> ActorPool:
    """The Ray workers of a run (an :class:`ActorPool` of attack workers), to open
    before the run writes anything; each yields ``(rows, maps, notes)`` per group.

    Args:
        config: the run's config (``workers``, ``ray_address``, ``device``).
        most: the groups to attack (never more workers than that).
        log: told how many workers run on what.
        interrupts: the run's :class:`~pixelprior._io.Interrupts`, if any.
        expected: this process's :meth:`~pixelprior.experiment.worker.GroupWorker.inputs`
            of ``positions``: every worker must have loaded the same.
        positions: the run's images (positions in the dataset).

    Returns:
        The pool, not yet opened.
    """
    config_dict = {**config.to_dict(), "workers": 1, "ray_address": None}
    return ActorPool(_Worker, (config_dict,), config.workers, config.device,
                     config.ray_address, log, interrupts, most, expected,
                     (list(positions or []),))


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
        WorkerMismatchError: a worker runs other code than this process (before any
            group is sent).
    """
    with group_pool(config, len(groups), log) as pool:
        for rows, maps, _ in pool.map("attack", [(g,) for g in groups]):
            yield rows, maps


class ActorPool:
    """Up to ``workers`` Ray actors (``actor_class(*args, device)``), started and checked
    when the pool opens (``with pool:``), before any work, and stopped when it closes.

    Actors take one GPU each where the cluster has GPUs and ``device`` is not ``cpu``,
    else one CPU; never more actors than the cluster holds (the extra ones would never
    start, and their calls wait forever) nor than ``most``. A local Ray instance is
    started for the pool when none runs, and stopped after it. Opening asks every actor
    which code it runs (:func:`worker_identity`) and refuses the pool
    (:class:`WorkerMismatchError`) where one differs from this process or cannot say;
    while workers are not ready after :data:`PATIENCE_S` (a joined cluster's CPUs or
    GPUs held by other jobs, or a slow start) a note says so, with what the cluster has
    free, until they are or Ctrl-C stops the wait.

    Args:
        actor_class: the actors' class (with an ``identity()`` method).
        args: its arguments before the device.
        workers: the most actors.
        device: ``cpu``, ``cuda`` or ``auto``.
        address: a cluster to join (``None``: a local instance).
        log: told how many workers run on what.
        interrupts: SIGINT/SIGTERM taken back from Ray after it starts, and raised
            between waits (Ray swallows exceptions other than ``KeyboardInterrupt``
            raised inside its calls).
        most: the most jobs there will be (``None``: no limit).
        expected: what every actor's ``inputs(*inputs_args)`` must return (its model's
            and images' fingerprints), checked when the pool opens; ``None``: unchecked.
        inputs_args: the arguments of ``inputs``.
    """

    def __init__(self, actor_class: type, args: tuple, workers: int, device: str,
                 address: str | None, log: Callable[[str], None], interrupts: Any = None,
                 most: int | None = None, expected: dict | None = None,
                 inputs_args: tuple = ()) -> None:
        self.actor_class, self.args = actor_class, args
        self.expected, self.inputs_args = expected, inputs_args
        self.workers, self.device, self.address = workers, device, address
        self.log, self.interrupts, self.most = log, interrupts, most
        self.ray: Any = None
        self.actors: list = []
        self.pending: dict = {}
        self.started = False
        self.actor_options = {"num_gpus": 0, "num_cpus": 1}

    def __enter__(self) -> ActorPool:
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        ray = self.ray = _ray()
        self.started = not ray.is_initialized()
        if self.started:
            if self.address is not None and self.address != "auto":
                _reachable(self.address)
            # no address: a local instance of this run's own ("local"), never a cluster
            # another job started on this machine (ray.init() would join that one); where
            # RAY_ADDRESS is set (`ray job submit` sets it), Ray's own choice: that cluster
            address = self.address or (None if os.environ.get("RAY_ADDRESS") else "local")
            try:
                with _quiet_token_notice(address == "local"):
                    ray.init(address=address, include_dashboard=False, log_to_driver=False,
                             configure_logging=False)
            except SystemExit as exc:  # Ray's own SIGTERM handler while it starts is
                # sys.exit(15): the run would end with exit 15 and no word of what was kept
                if exc.code != signal.SIGTERM:
                    raise
                raise Interrupted(signal.SIGTERM) from None
        if self.interrupts is not None:
            self.interrupts.reinstall()
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        if self.device.startswith("cuda") and gpus < 1:
            raise ConfigError(f"device {self.device} asked for, but the Ray cluster has no "
                              "GPUs; use --device cpu")
        use_gpu = gpus >= 1 and self.device != "cpu"
        wanted = self.workers if self.most is None else min(self.workers, self.most)
        count = min(wanted, gpus if use_gpu else max(1, cpus))
        if count < wanted:
            self.log(f"note: the Ray cluster has {gpus if use_gpu else cpus} "
                     f"{'GPU' if use_gpu else 'CPU'}(s): {count} worker(s), not "
                     f"{self.workers}")
        self.actor_options = {"num_gpus": int(use_gpu), "num_cpus": int(not use_gpu)}
        actor = ray.remote(**self.actor_options)(self.actor_class)
        self.actors = [actor.remote(*self.args, "cuda" if use_gpu else "cpu")
                       for _ in range(count)]
        self._check_identities()
        if self.expected is not None:
            self._check_inputs()
        where = "cuda (one GPU each)" if use_gpu else "cpu (one CPU and one torch thread each)"
        self.log(f"ray: {count} worker(s) on {where}")

    def _check_identities(self) -> None:
        """Refuse workers that run other code than this process, or that cannot start
        or say which (an older pixelprior has no ``identity``), before any work."""
        ray, here = self.ray, worker_identity()
        refs = [a.identity.remote() for a in self.actors]
        guard = (self.interrupts.critical if self.interrupts is not None
                 else contextlib.nullcontext)
        waiting = list(refs)
        began = time.monotonic()
        note_at = began + PATIENCE_S
        while waiting:  # short waits, so that a signal is raised here, not inside Ray
            with guard():
                _, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=0.5)
            if waiting and time.monotonic() >= note_at:
                self.log(self._waiting_note(len(refs) - len(waiting), len(refs),
                                            time.monotonic() - began))
                note_at += NOTE_EVERY_S
        for number, ref in enumerate(refs, 1):
            try:
                there = ray.get(ref)
            except Exception as exc:  # Ray wraps what failed in the worker's process
                raise _start_failure(exc, number, len(refs), here) from exc
            if there != here:
                raise WorkerMismatchError(
                    f"Ray worker {number} of {len(refs)} runs pixelprior "
                    f"{there.get('pixelprior')} (verifier revision {there.get('verifier')}), "
                    f"this process {here['pixelprior']} (revision {here['verifier']}): "
                    "install the same pixelprior (the same commit, from a checkout) on "
                    "every node of the cluster; rows of other code would not be this run's")

    def _check_inputs(self) -> None:
        """Refuse workers that loaded another model or other images than this process
        (``expected``: what each actor's ``inputs()`` must return): a relative model path
        read in a cluster's own folder, a model file changed since this process read it,
        another ``PIXELPRIOR_DATA`` on a node. Their rows would not be of this run's
        inputs, which the folder records."""
        refs = [a.inputs.remote(*self.inputs_args) for a in self.actors]
        for number, ref in enumerate(refs, 1):
            try:
                there = self.ray.get(ref)
            except Exception as exc:  # e.g. a shorter dataset on its node: an IndexError
                cause = getattr(exc, "cause", None) or exc
                raise WorkerMismatchError(
                    f"Ray worker {number} of {len(refs)} could not read this run's model "
                    f"and images ({type(cause).__name__}: {str(cause)[:200]}): give the "
                    "same files and PIXELPRIOR_DATA on every node") from exc
            differ = [name for name in self.expected if there.get(name) != self.expected[name]]
            if differ:
                what = " and ".join(INPUT_NAMES.get(name, name) for name in differ)
                raise WorkerMismatchError(
                    f"Ray worker {number} of {len(refs)} loaded {what} than this process "
                    "(their fingerprints differ): give the model by an absolute path, the "
                    "same files and PIXELPRIOR_DATA on every node, and do not change the "
                    "model's files while a run starts")

    def _waiting_note(self, started: int, count: int, seconds: float) -> str:
        """What a wait for workers to start is about: how many are ready, and what the
        cluster has free of what they ask for (a worker waiting for a CPU or GPU that
        other jobs hold waits without a word from Ray; one slow to build its model looks
        the same from here)."""
        kind = "GPU" if self.actor_options["num_gpus"] else "CPU"
        try:
            free = self.ray.available_resources().get(kind, 0)
            total = self.ray.cluster_resources().get(kind, 0)
            held = f"the cluster has {free:g} of {total:g} {kind}s free"
        except Exception:  # the note must not end the run; it only explains the wait
            held = f"the cluster's {kind}s may be held by other jobs"
        return (f"note: {started} of {count} Ray worker(s) ready after {seconds:.0f} s; "
                f"the others are starting or waiting for a {kind} ({held}); Ctrl-C "
                "stops, or run with fewer --workers")

    def map(self, method: str, jobs: list[tuple]) -> Iterator[Any]:
        """``actor.method(*job)`` for each job, at most :data:`IN_FLIGHT_PER_WORKER`
        calls per actor.

        Args:
            method: the actors' method.
            jobs: its arguments, one tuple per call.

        Yields:
            The results, in the order they finish.
        """
        queue = list(jobs)

        def submit(worker) -> None:
            self.pending[getattr(worker, method).remote(*queue.pop(0))] = worker

        for worker in self.actors:
            for _ in range(IN_FLIGHT_PER_WORKER):
                if queue:
                    submit(worker)
        while self.pending:
            ready = _wait(self.ray, self.pending, self.interrupts)
            worker = self.pending.pop(ready)
            if queue:
                submit(worker)
            try:
                result = self.ray.get(ready)
            except Exception as exc:  # Ray's wrapping of what failed in the worker
                raise _worker_failure(self.ray, exc) from exc
            yield result

    def close(self) -> None:
        """Cancel the calls in flight, stop the actors and a local Ray instance (every
        step tried even when one fails)."""
        if self.ray is not None:
            _stop(self.ray, self.pending, self.actors, self.started)
            self.ray, self.pending, self.actors = None, {}, []


# what a node with another (older) pixelprior fails with: the actor class or its
# ``identity`` cannot be unpickled there, or a module is missing
OTHER_CODE = ("identity", "Can't get attribute", "No module named", "ImportError",
              "AttributeError", "ModuleNotFoundError")


# Ray (2.5x) says at every start of a local instance that token authentication is on by
# default (a notice, not a warning of risk): the run's own instance, on this machine alone,
# need not print it. A warning that it is off, or any other, still prints.
_TOKEN_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"
_TOKEN_NOTICE = "Token authentication is enabled"


@contextlib.contextmanager
def _quiet_token_notice(local: bool) -> Iterator[None]:
    """Drop Ray's notice that token authentication is enabled while a local instance of
    the run's own starts (``local``); nothing else of Ray's logging changes."""
    if not local:
        yield
        return
    logger = logging.getLogger(_TOKEN_NOTICE_LOGGER)
    notice = _DropNotice()
    logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)


class _DropNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_TOKEN_NOTICE)


def _start_failure(exc: Exception, number: int, count: int, here: dict) -> WorkerMismatchError:
    """The refusal for a worker whose ``identity`` call failed: other code (what to
    install) or another failure of its start (its last line; the rest in the chained
    cause, shown with ``--debug``)."""
    text = str(exc).strip()
    last = (text.splitlines() or [type(exc).__name__])[-1][:300]
    if any(sign in text for sign in OTHER_CODE):
        return WorkerMismatchError(
            f"Ray worker {number} of {count} could not say which pixelprior it runs "
            f"({last}): install this pixelprior ({here['pixelprior']}) on every node of "
            "the cluster")
    return WorkerMismatchError(f"Ray worker {number} of {count} could not start ({last}); "
                               "--debug shows Ray's report")


def _worker_failure(ray, exc: Exception) -> Exception:
    """What to raise for a call that failed on a worker: the worker's own exception
    (the one line a run in one process shows; Ray's report is chained, for --debug),
    or, for a worker that stopped, :class:`WorkerLostError`."""
    errors = getattr(ray, "exceptions", None)
    cause = getattr(exc, "cause", None)
    if isinstance(exc, getattr(errors, "RayTaskError", ())) and isinstance(cause, Exception):
        if type(cause) in (ValueError, TypeError, KeyError) and not _raised_by_pixelprior(exc):
            # a library's plain error (a bug to report, as in one process), not a message
            # of pixelprior's that re-raised here would be taken for
            return RuntimeError(f"{type(cause).__name__}: {cause} (in a Ray worker)")
        return cause
    if isinstance(exc, getattr(errors, "RayActorError", ())):
        last = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return WorkerLostError(f"a Ray worker stopped before it finished its work ({last}); "
                               "what was written before is kept: run the same command "
                               "again to resume")
    return exc


def _raised_by_pixelprior(exc: Exception) -> bool:
    """Whether the innermost frame of a worker's traceback (Ray's text of it) is
    pixelprior's own code: what the command line reads a plain error's kind by."""
    text = getattr(exc, "traceback_str", None) or str(exc)
    files = re.findall(r'File "([^"]+)"', text)
    return bool(files) and "/pixelprior/" in files[-1].replace("\\", "/")


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
        self.notes: list[str] = []
        self.worker.log = self.notes.append  # sent back with each group's rows

    def attack(self, group: list[tuple]) -> tuple[list[dict], dict, list[str]]:
        rows, maps = self.worker.attack(group)
        notes = self.notes.copy()
        self.notes.clear()  # the list worker.log appends to
        return rows, maps, notes

    def inputs(self, positions: list[int]) -> dict:
        return self.worker.inputs(positions)

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
        WorkerMismatchError: a worker runs other code than this process (before any
            image is sent).
    """
    with verify_pool(model_factory, settings, workers, ray_address, device, log,
                     interrupts, len(jobs)) as pool:
        yield from pool.map("verify", jobs)


def verify_pool(model_factory: Callable[[], Any], settings: dict, workers: int,
                ray_address: str | None = None, device: str = "cpu",
                log: Callable[[str], None] = print, interrupts: Any = None,
                most: int | None = None) -> ActorPool:
    """The Ray workers of a verification (an :class:`ActorPool` of verifiers, arguments
    as :func:`ray_verify`'s), to open before the folder is written.

    Returns:
        The pool, not yet opened; its ``map("verify", jobs)`` verifies the images.
    """
    return ActorPool(_VerifyWorker, (model_factory, settings), workers, device, ray_address,
                     log, interrupts, most)


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
