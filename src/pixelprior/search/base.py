# Over 400 lines: the Attack base class is one unit, and most of it is its public docstrings.
"""What every search shares: the :class:`Attack` base class.

An attack composes three parts and adds only bookkeeping:

- a **prior** (:mod:`pixelprior.priors`): where the search starts (or, for a ranked
  scan, the order in which it visits positions);
- a **search**: a subclass of :class:`Attack` that implements :meth:`Attack._search`
  (differential evolution, ranked scans, random search, the fast corner answer);
- a **scorer** (:mod:`pixelprior.scoring`): how candidates' class scores are computed.

A candidate is ``k`` pixels, each ``(x, y, c_1..c_C)``; coordinates are rounded (and
clipped) when applied. Every search returns a
:class:`~pixelprior.search.results.SearchOutcome`: the answer's genes, the queries per
image and its own ``steps`` record (generations, positions scanned, iterations, ...,
declared in the class's ``step_fields``), which results and rows carry as they are.

Every attack is built the same way, ``Cls(model, prior=None, *, option=...)``: the
options every search shares are those of :class:`Attack`, a subclass documents only its
own. Searches know nothing of experiment configurations: the experiment package builds
attacks from a configuration (:mod:`pixelprior.experiment.modes`).
"""

from __future__ import annotations

import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .._streams import image_key, stream
from ..models import WeightsWatch
from ..priors import PositionDistribution, Prior, UniformPrior, make_prior
from ..scoring import (
    ENGINES,
    PRECISIONS,
    Scored,
    Scorer,
    apply_pixels,
    check_logits,
    engine_of,
    make_scorer,
)
from ._options import Renamed, keyword_options
from .checks import (
    check_batch_independent,
    check_channels,
    check_classes,
    check_inputs,
    check_int,
    check_labels,
    check_model,
    evaluation_mode,
)
from .results import AttackOutput, AttackResult, PixelChange, SearchOutcome, check_step_fields

__all__ = ["Attack", "AttackOutput", "AttackResult", "PixelChange", "SearchOutcome",
           "check_labels", "evaluation_mode"]


class Attack(ABC):
    """Base class of pixelprior's attacks: input checks, the scorer, results.

    ``attack(images, labels)`` returns the adversarial images (as torchattacks' attacks
    do); :meth:`run` returns everything (per-image results, the prior's distribution).
    The model is put in eval mode for the call and each module's mode restored after it.
    Subclasses implement :meth:`_search` and declare :attr:`step_fields`.

    Args:
        model: any ``nn.Module`` mapping float32 images ``[B, C, H, W]`` in [0, 1] to
            class scores ``[B, K]`` (logits, or probabilities: detected).
        prior: where the search starts, or in what order a scan visits positions
            (default :class:`~pixelprior.priors.UniformPrior`), or a prior's name
            (``"constrained"``: :func:`~pixelprior.priors.make_prior` with its
            defaults). A prior whose sensitivity method was built without a model
            computes its maps on ``model``; one built on another model is refused.
        pixel_count: pixels changed per candidate (``k``; 0.2's ``pixels=``). Results
            list the changed pixels themselves as :attr:`AttackResult.pixels`.
        targeted: when True, calls need ``targets`` (each other than the image's true
            class) and the attack reaches for them.
        seed: the attack's seed; each image's random stream derives from it and the
            image, so results do not depend on which images share a batch.
        engine: how candidates are scored: ``"auto"`` (incremental where the model
            allows it, else full passes), ``"incremental"``, ``"full"``,
            ``"onnxruntime"``, or a :class:`~pixelprior.scoring.Scorer` built once and
            shared between attacks.
        max_batch: rows per scoring call (default: measured per device and engine).
        batch_invariant: every scoring call on one fixed chunk shape (and whole images
            one at a time), so every image's result is bit-identical whatever else is
            attacked with it; costs only the padding of the last chunk of a step.
        optimize: query a verified faster copy of the model (BatchNorm folded,
            channels-last); gradients for sensitivity maps still use the original model.
        precision: ``"fp32"`` or ``"bf16"`` (autocast; moves probabilities).
        cuda_graphs: on CUDA with full passes, replay captured graphs for fixed chunks.

    Raises:
        TypeError: an option the attack does not take, or an integer option given as a
            float or bool.
        ValueError: an option out of range, an unknown engine or precision, more pixels
            than the search changes, or a prior whose map is bound to another model.
    """

    name = "attack"
    # a mode names a search and its argument: "scan:gradient" (an order), "random_search"
    argument: str | None = None  # "prior", "order" or None
    default_argument: str | None = None
    max_pixels: int | None = None  # the most pixels per candidate (None: any)
    # the search's steps record: field name -> kind ("int", "number", "bool", "str"; a "?"
    # suffix: may be None); step_names is derived from it
    step_fields: dict[str, str] = {}
    step_names: tuple[str, ...] = ()
    # the options of Attack.__init__, which every search takes through **shared
    shared_options: tuple[str, ...] = ("pixel_count", "targeted", "seed", "engine",
                                       "max_batch", "batch_invariant", "optimize",
                                       "precision", "cuda_graphs")
    pixels = Renamed("pixel_count")  # 0.2's name of the pixel count (deprecated)

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        check_step_fields(cls.__name__, cls.step_fields)
        cls.step_names = tuple(cls.step_fields)

    @keyword_options(renamed={"pixels": "pixel_count"})
    def __init__(self, model: nn.Module, prior: Prior | str | None = None, *, pixel_count: int = 1,
                 targeted: bool = False, seed: int = 0, engine: str | Scorer = "auto",
                 max_batch: int | None = None, batch_invariant: bool = False,
                 optimize: bool = True, precision: str = "fp32",
                 cuda_graphs: bool = False) -> None:
        check_model(model, type(self).__name__)
        if isinstance(prior, str):  # a prior's name (``"constrained"``): its defaults
            prior = make_prior(prior)
        check_int("pixel_count", pixel_count, 1)
        check_int("seed", seed, 0)
        if max_batch is not None:
            check_int("max_batch", max_batch, 1)
        if self.max_pixels is not None and pixel_count > self.max_pixels:
            raise ValueError(f"{type(self).__name__} changes {self.max_pixels} pixel(s) per "
                             f"candidate; got pixel_count={pixel_count}")
        if isinstance(engine, str) and engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if not isinstance(engine, (str, Scorer)):
            raise TypeError(f"engine must be an engine name or a Scorer, got "
                            f"{type(engine).__name__}")
        if engine == "incremental" and pixel_count != 1:
            raise ValueError("the incremental engine scores one-pixel candidates; use "
                             "engine='full' (or 'auto') for pixel_count > 1")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.model = model
        self.prior = prior if prior is not None else UniformPrior()
        self.prior.check_model(model)
        self.pixel_count = pixel_count
        self.targeted = targeted
        self.seed = seed
        self.max_batch = max_batch
        self.batch_invariant = batch_invariant
        self.optimize = optimize
        self.precision = precision
        self.cuda_graphs = cuda_graphs
        self.engine = engine
        self._scorer: Scorer | None = engine if isinstance(engine, Scorer) else None
        self._batch_checked = False  # scores of an image independent of its batch
        self._weights = WeightsWatch(model)  # copies of the model follow its weights
        self._in_call = False  # inside run(): the weights were checked at its start
        self.queries = 0  # model queries the attack spent, over all calls (not a budget)
        self.query_seconds = 0.0  # wall time spent scoring them
        self.chunk_rows: int | None = None  # rows per scoring call, last used

    # ----------------------------------------------------------------- scoring
    def scorer(self, images: torch.Tensor) -> Scorer:
        """The scorer, built and checked against a full pass on first use.

        Args:
            images: float32 ``[B, C, H, W]`` in [0, 1]; the first 8 are the check's.

        Called between two attacks (not from inside one), it first follows the model's
        weights as a call does: a scorer of weights changed since is made again.

        Returns:
            The scorer every query of this attack goes through.

        Raises:
            ValueError: the engine scores fewer pixels per candidate than the attack
                changes.
        """
        if not self._in_call:  # inside a call, checked once at its start
            self._follow_weights()
        if self._scorer is None:  # (eval mode: called between calls, the model may not be)
            with evaluation_mode(self.model):
                self._scorer = make_scorer(self.model, images[:8], self.engine,
                                           self.pixel_count, self.optimize, self.precision,
                                           self.cuda_graphs)
        most = self._scorer.max_pixels
        if most is not None and self.pixel_count > most:
            raise ValueError(f"engine {self._scorer.name!r} scores candidates of at most "
                             f"{most} pixel(s), not {self.pixel_count}")
        return self._scorer

    def _chunk(self, state, images: torch.Tensor) -> int:
        if self.max_batch:
            return self.max_batch
        return self.scorer(images).chunk_rows(state, images, self.batch_invariant)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Softmax of the model itself on whole images (clean or adversarial): what every
        result reports of them (``true_probability``). Not the scorer's faster copy
        (BatchNorm folded, channels last, bf16, ONNX Runtime) the searches query: at a near
        tie the two may part by a rounding, and a success must be one of the model as
        given.

        Args:
            images: float32 ``[B, C, H, W]`` in [0, 1].

        Returns:
            float ``[B, K]``, each row summing to 1 (or the model's own probabilities).
        """
        return self._verdicts(images)[1]

    def _verdicts(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's labels ``[B]`` of whole images and their probabilities ``[B, K]``.
        The labels are the argmax of the scores as the model returns them: two logits a
        bit apart may round to one probability (logits ``[0, 1e-45]`` do), whose argmax
        is then the first class, not the model's, nor the one ``fast`` and the verifier
        (which read logits) name."""
        scorer = self.scorer(images)  # its output kind: decided here, from the whole batch
        step = 1 if self.batch_invariant else self.max_batch or scorer.image_chunk_rows(images)
        with torch.inference_mode(), self._model_bits(images):
            scores = torch.cat([check_logits(self.model(images[i:i + step]),
                                             images[i:i + step].shape[0])
                                for i in range(0, images.shape[0], step)])
        return scores.argmax(1), scorer.to_probabilities(scores)

    def _model_bits(self, images: torch.Tensor):
        """Where the model itself scores whole images: at one thread for a batch-invariant
        attack on the CPU (:func:`_one_thread`), so its bits do not depend on the count."""
        return _one_thread(self.batch_invariant and images.device.type == "cpu")

    def _query(self, state, images: torch.Tensor, owner: torch.Tensor,
               genes: torch.Tensor) -> Scored:
        """Probabilities and labels of candidate rows ``(owner[n], genes[n])``, timed. A
        search judges success by the labels (the argmax of the scores, as the final
        verdicts do), never by the argmax of probabilities that may tie."""
        began = time.perf_counter()
        scorer = self.scorer(images)
        self.chunk_rows = self._chunk(state, images)
        out = scorer.scored(state, images, owner, genes, self.chunk_rows,
                            self.batch_invariant)
        self.query_seconds += time.perf_counter() - began
        return out

    def _candidate_scores(self, images: torch.Tensor
                          ) -> Callable[[torch.Tensor, torch.Tensor], Scored]:
        """``scored(owner, genes [N, k, 2 + C]) ->`` :class:`Scored` over ``images``,
        with the clean images prepared once."""
        state = self.scorer(images).prepare(images, per_image=self.batch_invariant)
        return lambda owner, genes: self._query(state, images, owner, genes)

    def _fitness(self, images: torch.Tensor, labels: torch.Tensor,
                 targets: torch.Tensor | None):
        """``fitness(ids, candidates [A, P, D]) -> (fitness, success)`` over ``images``:
        the true class's probability (minimised) or one minus the target's (what
        differential evolution minimises, wherever a search runs one)."""
        channels = images.shape[1]
        candidate_scores = self._candidate_scores(images)

        def fitness(ids: torch.Tensor, candidates: torch.Tensor):
            count, popsize, _ = candidates.shape
            genes = candidates.reshape(count * popsize, self.pixel_count, 2 + channels)
            scored = candidate_scores(ids.repeat_interleave(popsize), genes)
            probs = scored.probabilities.view(count, popsize, -1)
            predicted = scored.labels.view(count, popsize)
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
            images: float32 ``[B, C, H, W]`` in [0, 1].
            labels: the true classes, integer ``[B]``.
            targets: the target classes of a targeted attack, integer ``[B]``.

        Returns:
            float32 ``[B, C, H, W]``: each image with the search's best pixels applied
            (the clean image where no search was needed). :meth:`run` returns everything.

        Raises:
            TypeError: images that are not float32, labels or targets not integers.
            ValueError: see :meth:`run`.
        """
        return self.run(images, labels, targets).adversarial

    def attack(self, images: torch.Tensor, labels: torch.Tensor,
               targets: torch.Tensor | None = None,
               keys: list[int] | None = None) -> AttackOutput:
        """Deprecated alias of :meth:`run` (kept for one release).

        Args:
            images: as for :meth:`run`.
            labels: as for :meth:`run`.
            targets: as for :meth:`run`.
            keys: as for :meth:`run`.

        Returns:
            What :meth:`run` returns.
        """
        warnings.warn("Attack.attack() is deprecated; use Attack.run() for the full "
                      "output or call the attack for the adversarial images",
                      DeprecationWarning, stacklevel=2)
        return self.run(images, labels, targets, keys)

    def run(self, images: torch.Tensor, labels: torch.Tensor,
            targets: torch.Tensor | None = None,
            keys: list[int] | None = None) -> AttackOutput:
        """Attack every image of the batch and return everything that was found.

        The model is in eval mode during the call (each module's own mode is restored
        after it). An empty batch gives an empty output.

        Args:
            images: float32 ``[B, C, H, W]`` in [0, 1].
            labels: the true classes, integer ``[B]``.
            targets: the target classes of a targeted attack, integer ``[B]``, each
                other than the image's true class.
            keys: each image's random-stream key (default: a hash of its pixels and
                label), so results do not depend on batch composition or order.

        Returns:
            The per-image results, the adversarial batch, the prior's distribution and
            the seconds spent.

        Raises:
            TypeError: images that are not float32 (convert with ``images.float()``),
                labels or targets that are not integer tensors.
            ValueError: images outside [0, 1] or of the wrong shape, labels or targets
                outside the model's classes or of the wrong shape, targets missing for a
                targeted attack (or given to an untargeted one), a target equal to the
                image's true class.
        """
        self._follow_weights()
        self._in_call = True
        try:
            with evaluation_mode(self.model):
                return self._run(images, labels, targets, keys)
        finally:
            self._in_call = False

    def _follow_weights(self) -> None:
        """Copies made of the model (the scorer's BatchNorm-folded copy, ``FastAttack``'s
        bound engines) follow its weights: changed in place since they were made (a
        training step between two calls), they are made again, so every call attacks
        the model as it is (a scorer given as ``engine=`` is made again by its engine's
        name)."""
        if not self._weights.changed():
            return
        self.engine = engine_of(self.engine)
        self._scorer = None
        self._batch_checked = False
        self._forget_copies()
        self._weights.renew()

    def _forget_copies(self) -> None:  # noqa: B027  (a hook: most attacks hold no other)
        """Drop what else the attack made of the model (a subclass's verifier)."""

    def _run(self, images: torch.Tensor, labels: torch.Tensor,
             targets: torch.Tensor | None, keys: list[int] | None) -> AttackOutput:
        began = time.perf_counter()
        labels, targets = check_inputs(images, labels, targets, self.targeted)
        check_channels(self.model, images)
        if self.pixel_count > images.shape[-2] * images.shape[-1]:
            raise ValueError(f"pixel_count={self.pixel_count} is more than the "
                             f"{images.shape[-2] * images.shape[-1]:,} pixels of the images")
        if images.shape[0] == 0:
            return self._empty_output(images, began)
        device = images.device
        original, clean = self._verdicts(images)
        check_classes(clean, labels, targets)
        if not self._batch_checked:  # the first call, or the weights changed
            check_batch_independent(self.model, images)
            self._batch_checked = True
        goal_reached = (original == targets) if targets is not None else (original != labels)
        if keys is not None and len(keys) != images.shape[0]:
            raise ValueError(f"keys must hold one key per image ({images.shape[0]}), got "
                             f"{len(keys)}")
        keys = keys if keys is not None else [image_key(images[i], int(labels[i]))
                                              for i in range(images.shape[0])]
        distribution = self.start_distribution(images, labels, keys)
        generators = [stream(self.seed, key) for key in keys]
        todo = (~goal_reached).nonzero().flatten().tolist()
        best = torch.zeros(images.shape[0], self.pixel_count * (2 + images.shape[1]),
                           device=device)
        queries = torch.zeros(images.shape[0], dtype=torch.long)
        steps: dict[str, torch.Tensor | list] = {}
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
            genes = best[idx].view(len(todo), 1, self.pixel_count, 2 + images.shape[1])
            adversarial[idx] = apply_pixels(images[idx], genes)
        final_labels, final = self._verdicts(adversarial)
        seconds = time.perf_counter() - began
        results = self._results(images, adversarial, labels, targets, original, final,
                                final_labels, best, queries, steps, distribution, set(todo),
                                prep_seconds, seconds)
        self._settle(results)
        return AttackOutput(results, adversarial, distribution, seconds)

    def _settle(self, results: list[AttackResult]) -> None:
        """Make a result's search record agree with its final verdict (the model itself;
        the searches query a faster copy that may part from it at a near tie). Nothing
        to do here; :class:`~pixelprior.search.FastAttack` says which stage decided."""
        return None

    def _empty_output(self, images: torch.Tensor, began: float) -> AttackOutput:
        """The output of an empty batch: no results, an empty adversarial batch."""
        height, width = images.shape[-2:]
        distribution = PositionDistribution(
            torch.zeros(0, height * width, dtype=torch.float64), height, width,
            torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.long))
        return AttackOutput([], images.clone(), distribution, time.perf_counter() - began)

    def _empty_steps(self, count: int) -> dict[str, torch.Tensor | list]:
        """The steps record of images no search was needed for: zero, False, or ``None``
        for nullable fields, by :attr:`step_fields`."""
        out: dict[str, torch.Tensor | list] = {}
        for name, kind in self.step_fields.items():
            if kind.endswith("?") or kind == "str":
                out[name] = [None if kind.endswith("?") else ""] * count
            else:
                dtype = {"int": torch.long, "bool": torch.bool, "number": torch.float64}[kind]
                out[name] = torch.zeros(count, dtype=dtype)
        return out

    @abstractmethod
    def _search(self, images: torch.Tensor, labels: torch.Tensor,
                targets: torch.Tensor | None, distribution: PositionDistribution,
                rows: list[int], generators: list[torch.Generator]) -> SearchOutcome:
        """Search the images still to attack.

        Args:
            images: float32 ``[A, C, H, W]``, the images the model still classifies as
                their label (untargeted) or not yet as their target.
            labels: int64 ``[A]``.
            targets: int64 ``[A]`` (targeted), else ``None``.
            distribution: the prior's distribution of the whole batch; ``rows`` index it.
            rows: each attacked image's row in the batch.
            generators: each attacked image's random stream.

        Returns:
            The answers, queries and steps record (:attr:`step_fields`) of the ``A``
            images.
        """

    def start_distribution(self, images: torch.Tensor, labels: torch.Tensor,
                           keys: list[int]) -> PositionDistribution:
        """The prior's distribution over positions for each image (per image in
        batch-invariant mode).

        Args:
            images: float32 ``[B, C, H, W]`` in [0, 1].
            labels: int64 ``[B]``.
            keys: the images' random-stream keys.

        Returns:
            The distribution of the ``B`` images.
        """
        if not self.batch_invariant or not self.prior.needs_sensitivity:
            return self.prior.distribution(self.model, images, labels, seed=self.seed,
                                           keys=keys)
        return PositionDistribution.cat([
            self.prior.distribution(self.model, images[i:i + 1], labels[i:i + 1],
                                    seed=self.seed, keys=keys[i:i + 1])
            for i in range(images.shape[0])])

    def _results(self, images, adversarial, labels, targets, original, final, final_labels,
                 best, queries, steps, distribution, attacked, prep_seconds, seconds
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
                genes = best[i].view(self.pixel_count, 2 + channels).cpu()
                seen = set()  # two genes at one position change one pixel: listed once,
                for gene in genes:  # with the color the adversarial holds there
                    x = int(gene[0].round().clamp(0, width - 1))
                    y = int(gene[1].round().clamp(0, height - 1))
                    if (x, y) not in seen:
                        seen.add((x, y))
                        pixels.append(PixelChange(x, y, images[i, :, y, x].tolist(),
                                                  adversarial[i, :, y, x].tolist()))
            adv_label = int(final_labels[i])
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


@contextmanager
def _one_thread(active: bool) -> Iterator[None]:
    """One torch thread for the block (``active``), then the count as it was. A model's
    own CPU kernels may split a sum by the thread count, and with it the last bits of a
    score; the verdicts of a batch-invariant attack (the runner's) must be the same bits
    in a process of 2 threads and in a Ray worker of 1. (The scorers' chunks are so
    already.) One pass per image, so the cost is small."""
    threads = torch.get_num_threads()
    if not active or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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
