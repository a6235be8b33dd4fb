"""What every search shares: the :class:`Attack` base, its results and the outcome a
search returns.

An attack composes three parts and adds only bookkeeping:

- a **prior** (:mod:`pixelprior.priors`): where the search starts (or, for a ranked
  scan, the order in which it visits positions);
- a **search**: a subclass of :class:`Attack` that implements :meth:`Attack._search`
  (differential evolution, ranked scans, random search, the fast corner answer);
- a **scorer** (:mod:`pixelprior.scoring`): how candidates' class scores are computed.

A candidate is ``k`` pixels, each ``(x, y, c_1..c_C)``; coordinates are rounded (and
clipped) when applied. Every search returns a :class:`SearchOutcome`: the answer's genes,
the queries per image and its own ``steps`` record (generations, positions scanned,
iterations, ...), which results and rows carry as they are, so the runner, the report,
the figures and the command line treat every search the same way.
"""

from __future__ import annotations

import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .._streams import image_key, stream
from ..data import check_images
from ..priors import PositionDistribution, Prior, UniformPrior
from ..scoring import ENGINES, Scorer, apply_pixels, make_scorer

__all__ = ["Attack", "AttackOutput", "AttackResult", "PixelChange", "SearchOutcome",
           "check_labels"]


@dataclass
class PixelChange:
    """One changed pixel: position and colour before and after (values in [0, 1])."""

    x: int
    y: int
    old: list[float]
    new: list[float]


@dataclass
class AttackResult:
    """Outcome of an attack on one image; :meth:`to_row` gives a flat table row.

    ``queries`` are the model queries spent on the image; ``steps`` is the search's own
    record of its effort (``{"generations": g}`` for differential evolution,
    ``{"positions_scanned": n}`` for scans, ...), kept in rows as top-level fields.
    """

    index: int
    success: bool
    true_label: int
    original_label: int
    adversarial_label: int
    target: int | None
    true_probability: float
    target_probability: float | None
    pixels: list[PixelChange]
    queries: int
    seconds: float
    prior: str
    fell_back: bool
    support_size: int
    seed: int
    clean_correct: bool = True
    steps: dict[str, Any] = field(default_factory=dict)
    adversarial: torch.Tensor | None = field(default=None, repr=False)

    @property
    def generations(self) -> int | None:
        """The generation of success (differential evolution; ``None`` otherwise)."""
        return self.steps.get("generations")

    @property
    def positions_scanned(self) -> int | None:
        """Positions scanned (scans; ``None`` otherwise)."""
        return self.steps.get("positions_scanned")

    def to_row(self) -> dict:
        """A JSON-serialisable dict: every field, ``steps`` as top-level fields
        (``generations`` always present, ``None`` for searches without generations), the
        pixels as dicts and the first pixel's ``x``, ``y``."""
        row = asdict(self)
        row.pop("adversarial")
        steps = row.pop("steps")
        row["generations"] = steps.pop("generations", None)
        row.update(steps)
        row["pixels"] = [asdict(p) for p in self.pixels]
        if self.pixels:
            row["x"], row["y"] = self.pixels[0].x, self.pixels[0].y
        return row


@dataclass
class AttackOutput:
    """Results of one call: per-image results, the adversarial batch, the prior used."""

    results: list[AttackResult]
    adversarial: torch.Tensor
    distribution: PositionDistribution
    seconds: float

    @property
    def success(self) -> torch.Tensor:
        return torch.tensor([r.success for r in self.results])

    def rows(self) -> list[dict]:
        return [r.to_row() for r in self.results]


@dataclass
class SearchOutcome:
    """What a search found for the images it attacked (rows in attack order).

    ``best``: ``[A, k * (2 + C)]`` genes of each answer (a success or the best effort);
    ``queries``: ``int64 [A]``; ``steps``: the search's own per-image record (each a
    tensor ``[A]`` or a list of ``A`` JSON values, e.g. words), carried into results and
    rows under their names.
    """

    best: torch.Tensor
    queries: torch.Tensor
    steps: dict[str, torch.Tensor | list] = field(default_factory=dict)


def check_labels(values, name: str = "labels") -> torch.Tensor:
    """``values`` as an ``int64`` tensor, refusing floats and bools (which would be
    truncated or cast silently)."""
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"{name} must be an integer tensor, got {type(values).__name__}")
    if values.dtype == torch.bool or values.is_floating_point() or values.is_complex():
        raise TypeError(f"{name} must be an integer tensor (class indices), got "
                        f"{values.dtype}")
    return values.to(torch.long)


class Attack(ABC):
    """Base class of pixelprior's attacks: input checks, the scorer, results.

    Subclasses implement :meth:`_search`. Settings shared by every search:

    Args:
        model: any ``nn.Module`` mapping float images in [0, 1] to class scores ``[B, K]``.
        prior: where the search starts (or in what order a scan visits positions).
        pixels: pixels changed per candidate (``k``).
        targeted: when True, ``__call__`` needs ``targets`` and reaches for them.
        seed: the attack's seed; each image's random stream derives from it and the image.
        engine: how candidates are scored: ``"auto"`` (incremental where the model allows
            it, else full passes), ``"incremental"``, ``"full"``, ``"onnxruntime"``, or a
            :class:`~pixelprior.scoring.Scorer` built once and shared between attacks.
        max_batch: rows per scoring call (default: measured per device and engine).
        batch_invariant: every scoring call on one fixed chunk shape (and whole images
            one at a time), so every image's result is bit-identical whatever else is
            attacked with it; costs only the padding of the last chunk of a step.
        optimize: query a verified faster copy of the model (BatchNorm folded,
            channels-last); gradients for sensitivity maps still use the original model.
        precision: ``"fp32"`` or ``"bf16"`` (autocast; moves probabilities).
        cuda_graphs: on CUDA with full passes, replay captured graphs for fixed chunks.
    """

    name = "attack"
    # a mode names a search and its argument: "scan:gradient" (an order), "random_search"
    argument: str | None = None  # "prior", "order" or None
    default_argument: str | None = None
    max_pixels: int | None = None  # the most pixels per candidate (None: any)
    # the settings (ExperimentConfig field names) this search reads in from_settings
    settings: tuple[str, ...] = ()

    def __init__(self, model: nn.Module, prior: Prior | None = None, *, pixels: int = 1,
                 targeted: bool = False, seed: int = 0, max_batch: int | None = None,
                 batch_invariant: bool = False, engine: str | Scorer = "auto",
                 optimize: bool = True, precision: str = "fp32",
                 cuda_graphs: bool = False) -> None:
        _check_int("pixels", pixels, 1)
        _check_int("seed", seed, 0)
        if max_batch is not None:
            _check_int("max_batch", max_batch, 1)
        if isinstance(engine, str) and engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if engine == "incremental" and pixels != 1:
            raise ValueError("the incremental engine scores one-pixel candidates; use "
                             "engine='full' (or 'auto') for pixels > 1")
        self.model = model
        self.prior = prior if prior is not None else UniformPrior()
        self.pixels = pixels
        self.targeted = targeted
        self.seed = seed
        self.max_batch = max_batch
        self.batch_invariant = batch_invariant
        self.optimize = optimize
        self.precision = precision
        self.cuda_graphs = cuda_graphs
        self.engine = engine
        self._scorer: Scorer | None = engine if isinstance(engine, Scorer) else None
        self.queries = 0  # model queries of the search, over all calls
        self.query_seconds = 0.0  # wall time spent scoring them
        self.chunk_rows: int | None = None  # rows per scoring call, last used

    @classmethod
    def from_settings(cls, model: nn.Module, prior: Prior | None, settings: Mapping,
                      arg: str | None = None, **common) -> Attack:
        """The attack with the values of ``settings`` (an experiment's config as a dict)
        for the names in :attr:`settings`; ``arg``: the mode's argument (what follows
        ``name:``); ``common``: the :class:`Attack` arguments."""
        return cls(model, prior, **{k: settings[k] for k in cls.settings if k in settings},
                   **common)

    # ----------------------------------------------------------------- scoring
    def scorer(self, images: torch.Tensor) -> Scorer:
        """The scorer (built and checked against the full pass on first use)."""
        if self._scorer is None:
            self._scorer = make_scorer(self.model, images[:8], self.engine, self.pixels,
                                       self.optimize, self.precision, self.cuda_graphs)
        if self._scorer.max_pixels is not None and self.pixels > self._scorer.max_pixels:
            raise ValueError(f"engine {self._scorer.name!r} scores candidates of at most "
                             f"{self._scorer.max_pixels} pixel(s), not {self.pixels}")
        return self._scorer

    def _chunk(self, state, images: torch.Tensor) -> int:
        if self.max_batch:
            return self.max_batch
        return self.scorer(images).chunk_rows(state, images, self.batch_invariant)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Softmax of the model on whole images (clean or adversarial)."""
        scorer = self.scorer(images)
        chunk = self.max_batch or scorer.image_chunk_rows(images)
        return scorer.image_probabilities(images, chunk, one_per_call=self.batch_invariant)

    def _query(self, state, images: torch.Tensor, owner: torch.Tensor,
               genes: torch.Tensor) -> torch.Tensor:
        """Probabilities of candidate rows ``(owner[n], genes[n])``, timed."""
        began = time.perf_counter()
        scorer = self.scorer(images)
        self.chunk_rows = self._chunk(state, images)
        out = scorer.probabilities(state, images, owner, genes, self.chunk_rows,
                                   self.batch_invariant)
        self.query_seconds += time.perf_counter() - began
        return out

    def _candidate_probabilities(self, images: torch.Tensor
                                 ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """``probabilities(owner, genes [N, k, 2 + C]) -> [N, K]`` over ``images``, with
        the clean images prepared once."""
        state = self.scorer(images).prepare(images, per_image=self.batch_invariant)
        return lambda owner, genes: self._query(state, images, owner, genes)

    def _fitness(self, images: torch.Tensor, labels: torch.Tensor,
                 targets: torch.Tensor | None):
        """``fitness(ids, candidates [A, P, D]) -> (fitness, success)`` over ``images``:
        the true class's probability (minimised) or one minus the target's (what
        differential evolution minimises, wherever a search runs one)."""
        channels = images.shape[1]
        probabilities = self._candidate_probabilities(images)

        def fitness(ids: torch.Tensor, candidates: torch.Tensor):
            count, popsize, _ = candidates.shape
            genes = candidates.reshape(count * popsize, self.pixels, 2 + channels)
            probs = probabilities(ids.repeat_interleave(popsize), genes)
            probs = probs.view(count, popsize, -1)
            predicted = probs.argmax(2)
            if targets is None:
                score = probs.gather(2, labels[ids].view(-1, 1, 1).expand(-1, popsize, 1))
                return score.squeeze(2), predicted != labels[ids, None]
            score = probs.gather(2, targets[ids].view(-1, 1, 1).expand(-1, popsize, 1))
            return 1.0 - score.squeeze(2), predicted == targets[ids, None]

        return fitness

    # ----------------------------------------------------------------- public API
    def __call__(self, images: torch.Tensor, labels: torch.Tensor,
                 targets: torch.Tensor | None = None) -> torch.Tensor:
        """The adversarial images, as torchattacks' attacks return them.

        Args:
            images: float ``[B, C, H, W]`` in [0, 1].
            labels: the true classes, integer ``[B]``.
            targets: the target classes of a targeted attack, integer ``[B]``.

        Returns:
            float ``[B, C, H, W]``: each image with the search's best pixels applied (the
            clean image where no search was needed). :meth:`run` returns everything.
        """
        return self.run(images, labels, targets).adversarial

    def attack(self, images: torch.Tensor, labels: torch.Tensor,
               targets: torch.Tensor | None = None,
               keys: list[int] | None = None) -> AttackOutput:
        """Deprecated alias of :meth:`run` (kept for one release)."""
        warnings.warn("Attack.attack() is deprecated; use Attack.run() for the full "
                      "output or call the attack for the adversarial images",
                      DeprecationWarning, stacklevel=2)
        return self.run(images, labels, targets, keys)

    def _check(self, images: torch.Tensor, labels: torch.Tensor,
               targets: torch.Tensor | None) -> torch.Tensor:
        """Validate inputs; return the clean probabilities."""
        check_images(images, labels)
        if self.model.training:
            warnings.warn("the model is in training mode (dropout, batch statistics): its "
                          "scores change from call to call; call model.eval() first",
                          RuntimeWarning, stacklevel=4)
        if self.targeted and targets is None:
            raise ValueError("a targeted attack needs `targets`")
        if not self.targeted and targets is not None:
            raise ValueError("targets given to an untargeted attack; use targeted=True")
        probs = self.probabilities(images)
        classes = probs.shape[1]
        for name, values in (("labels", labels), ("targets", targets)):
            if values is not None and (values.min() < 0 or values.max() >= classes):
                raise ValueError(f"{name} must lie in 0..{classes - 1} (the model has "
                                 f"{classes} classes); got {values.min()}..{values.max()}")
        return probs

    def run(self, images: torch.Tensor, labels: torch.Tensor,
            targets: torch.Tensor | None = None,
            keys: list[int] | None = None) -> AttackOutput:
        """Attack every image of the batch and return everything that was found.

        Args:
            images: float ``[B, C, H, W]`` in [0, 1].
            labels: the true classes, integer ``[B]``.
            targets: the target classes of a targeted attack, integer ``[B]``.
            keys: each image's random-stream key (default: a hash of its pixels and
                label), so results do not depend on batch composition or order.

        Returns:
            The per-image results, the adversarial batch, the prior's distribution and
            the seconds spent.
        """
        began = time.perf_counter()
        device = images.device
        labels = check_labels(labels).to(device)
        targets = (check_labels(targets, "targets").to(device) if targets is not None
                   else None)
        clean = self._check(images, labels, targets)
        original = clean.argmax(1)
        goal_reached = (original == targets) if targets is not None else (original != labels)
        keys = keys if keys is not None else [image_key(images[i], int(labels[i]))
                                              for i in range(images.shape[0])]
        distribution = self.start_distribution(images, labels, keys)
        generators = [stream(self.seed, key) for key in keys]
        todo = (~goal_reached).nonzero().flatten().tolist()
        best = torch.zeros(images.shape[0], self.pixels * (2 + images.shape[1]),
                           device=device)
        queries = torch.zeros(images.shape[0], dtype=torch.long)
        steps: dict[str, torch.Tensor] = {}
        prep_seconds = time.perf_counter() - began
        if todo:
            idx = torch.tensor(todo, device=device)
            outcome = self._search(images[idx], labels[idx],
                                   targets[idx] if targets is not None else None,
                                   distribution, todo, [generators[i] for i in todo])
            best[idx] = outcome.best.to(best.device, best.dtype)
            queries[todo] = outcome.queries.cpu()
            for name, values in outcome.steps.items():
                steps[name] = _spread(values, todo, images.shape[0])
        else:
            steps = self._empty_steps(images.shape[0])
        self.queries += int(queries.sum())
        adversarial = images.clone()
        if todo:
            genes = best[idx].view(len(todo), 1, self.pixels, 2 + images.shape[1])
            adversarial[idx] = apply_pixels(images[idx], genes)
        final = self.probabilities(adversarial)
        seconds = time.perf_counter() - began
        results = self._results(images, adversarial, labels, targets, original, final,
                                best, queries, steps, distribution, set(todo), prep_seconds,
                                seconds)
        return AttackOutput(results, adversarial, distribution, seconds)

    step_names: tuple[str, ...] = ()  # the keys of this search's steps record

    def _empty_steps(self, count: int) -> dict[str, torch.Tensor]:
        """The steps record of images no search was needed for (all zero)."""
        return {name: torch.zeros(count, dtype=torch.long) for name in self.step_names}

    @abstractmethod
    def _search(self, images: torch.Tensor, labels: torch.Tensor,
                targets: torch.Tensor | None, distribution: PositionDistribution,
                rows: list[int], generators: list[torch.Generator]) -> SearchOutcome:
        """Search the images still to attack (``rows`` index ``distribution``)."""

    def start_distribution(self, images: torch.Tensor, labels: torch.Tensor,
                           keys: list[int]) -> PositionDistribution:
        """The prior's distribution over positions for each image (per image in
        batch-invariant mode); ``keys`` are the images' random-stream keys."""
        if not self.batch_invariant or not self.prior.needs_sensitivity:
            return self.prior.distribution(self.model, images, labels, seed=self.seed,
                                           keys=keys)
        return PositionDistribution.cat([
            self.prior.distribution(self.model, images[i:i + 1], labels[i:i + 1],
                                    seed=self.seed, keys=keys[i:i + 1])
            for i in range(images.shape[0])])

    def _results(self, images, adversarial, labels, targets, original, final, best,
                 queries, steps, distribution, attacked, prep_seconds, seconds
                 ) -> list[AttackResult]:
        """Assemble per-image results. Time per image: the shared preparation (sensitivity,
        clean forward) split evenly, plus the search time split in proportion to queries."""
        total_queries = max(1, int(queries.sum()))
        search_seconds = seconds - prep_seconds
        results = []
        channels, height, width = images.shape[1:]
        for i in range(images.shape[0]):
            pixels = []
            if i in attacked:
                genes = best[i].view(self.pixels, 2 + channels).cpu()
                for gene in genes:
                    x = int(gene[0].round().clamp(0, width - 1))
                    y = int(gene[1].round().clamp(0, height - 1))
                    pixels.append(PixelChange(x, y, images[i, :, y, x].tolist(),
                                              adversarial[i, :, y, x].tolist()))
            adv_label = int(final[i].argmax())
            target = int(targets[i]) if targets is not None else None
            success = adv_label == target if target is not None else adv_label != int(labels[i])
            results.append(AttackResult(
                index=i, success=bool(success), true_label=int(labels[i]),
                original_label=int(original[i]), adversarial_label=adv_label, target=target,
                true_probability=float(final[i, labels[i]]),
                target_probability=float(final[i, target]) if target is not None else None,
                pixels=pixels, queries=int(queries[i]),
                seconds=prep_seconds / images.shape[0]
                + search_seconds * int(queries[i]) / total_queries,
                prior=self.prior.name, fell_back=bool(distribution.fell_back[i]),
                support_size=int(distribution.support_size[i]), seed=self.seed,
                clean_correct=int(original[i]) == int(labels[i]),
                steps={name: _item(values[i]) for name, values in steps.items()},
                adversarial=adversarial[i]))
        return results


def _spread(values, rows: list[int], count: int):
    """A search's per-row record placed at ``rows`` of ``count`` images (zeros, or
    ``None`` for lists, where no search ran)."""
    if isinstance(values, torch.Tensor):
        out = torch.zeros(count, dtype=values.dtype)
        out[rows] = values.cpu()
        return out
    out = [None] * count
    for row, value in zip(rows, values, strict=True):
        out[row] = value
    return out


def _item(value):
    """A tensor element as a Python number; anything else as it is."""
    return value.item() if isinstance(value, torch.Tensor) else value


def _check_int(name: str, value, low: int) -> None:
    """An integer setting: refuse floats and bools (``popsize=20.7``) and values below
    ``low``, in words."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
