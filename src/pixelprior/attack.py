"""One-pixel attacks for any PyTorch classifier: a prior, a search, a scorer.

>>> attack = OnePixelAttack(model, prior=SusceptibleSetPrior(tau=0.5), seed=0)
>>> out = attack(images, labels)          # images: float [B, C, H, W] in [0, 1]
>>> out.adversarial, out.results[0].success, out.results[0].pixels

An attack composes three parts and adds only bookkeeping:

- a **prior** (:mod:`pixelprior.prior`): where the search starts (or, for a ranked scan,
  the order in which it visits positions);
- a **search**: differential evolution (:class:`OnePixelAttack`,
  :mod:`pixelprior.evolution`) or a scan of positions × a colour grid in the order of a map
  (:class:`~pixelprior.susceptibility.RankedScanAttack`);
- a **scorer** (:mod:`pixelprior.scoring`): how candidates' class scores are computed.

A candidate is ``k`` pixels, each ``(x, y, c_1..c_C)`` (``(x, y, r, g, b)`` for RGB).
Fitness is the true class's probability (untargeted, minimised) or one minus the target's
(targeted). The initial ``(x, y)`` come from the prior; colours from N(0.5, 0.5)
clipped to [0, 1] (Su et al.'s N(128, 127) on the 0..255 scale) or uniform. Coordinates
are kept continuous inside the evolution and rounded (and clipped) when applied.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .data import image_digest
from .evolution import DifferentialEvolution, EvolutionConfig
from .prior import PositionDistribution, Prior, UniformPrior
from .scoring import (  # noqa: F401  (re-exported: the attack's public helpers)
    ENGINES,
    ModelOutputError,
    Scorer,
    apply_pixels,
    decode_pixels,
    make_scorer,
    perturb_rows,
)
from .sensitivity import check_images

INIT_COLORS = ("normal", "uniform")


@dataclass
class PixelChange:
    """One changed pixel: position and colour before and after (values in [0, 1])."""

    x: int
    y: int
    old: list[float]
    new: list[float]


@dataclass
class AttackResult:
    """Outcome of the attack on one image; ``to_row()`` gives a flat table row.

    ``generations`` is the DE generation of success (``None`` for scans, which count
    ``positions_scanned`` instead); ``queries`` the model queries spent on the image.
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
    generations: int | None
    queries: int
    seconds: float
    prior: str
    fell_back: bool
    support_size: int
    seed: int
    clean_correct: bool = True
    positions_scanned: int | None = None
    adversarial: torch.Tensor | None = field(default=None, repr=False)

    def to_row(self) -> dict:
        """A JSON-serialisable dict (pixels flattened as ``x``, ``y``, ``new_rgb`` ...)."""
        row = asdict(self)
        row.pop("adversarial")
        if row["positions_scanned"] is None:
            row.pop("positions_scanned")
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
    """What a search found for the images it attacked (rows in attack order)."""

    best: torch.Tensor  # [A, k * (2 + C)] genes of the answer (success or best effort)
    generations: torch.Tensor | None  # int64 [A], None for scans
    queries: torch.Tensor  # int64 [A]
    positions_scanned: torch.Tensor | None = None  # int64 [A], scans only


def image_key(image: torch.Tensor, label: int) -> int:
    """A stable 63-bit key of an image's bytes and label (seeds its random stream)."""
    return image_digest(image, label)


def problem_generator(seed: int, key: int) -> torch.Generator:
    """The random stream of one image: a function of the attack seed and the image only."""
    mixed = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(mixed, "little") >> 1)


class Attack(ABC):
    """What every pixelprior attack shares: input checks, the scorer, results.

    Parameters
    ----------
    model: any ``nn.Module`` mapping float images in [0, 1] to class scores ``[B, K]``.
    prior: where the search starts (or in what order a scan visits positions).
    pixels: pixels changed per candidate (``k``).
    targeted: when True, ``__call__`` needs ``targets`` and maximises their probability.
    seed: the attack's seed; each image's random stream derives from it and the image.
    engine: how candidates are scored: ``"auto"`` (incremental where the model allows it,
        else full passes), ``"incremental"``, ``"full"``, ``"onnxruntime"``, or a
        :class:`~pixelprior.scoring.Scorer` built once and shared between attacks.
    max_batch: rows per scoring call (default: measured per device and engine).
    batch_invariant: every scoring call on one fixed chunk shape (and whole images one
        at a time), so every image's result is bit-identical whatever else is attacked
        with it; costs only the padding of the last chunk of a generation.
    optimize: query a verified faster copy of the model (BatchNorm folded,
        channels-last); gradients for sensitivity maps still use the original model.
    precision: ``"fp32"`` or ``"bf16"`` (autocast; moves probabilities, see the README).
    cuda_graphs: on CUDA with full passes, replay captured graphs for fixed chunk shapes.
    """

    def __init__(self, model: nn.Module, prior: Prior | None = None, *, pixels: int = 1,
                 targeted: bool = False, seed: int = 0, max_batch: int | None = None,
                 batch_invariant: bool = False, engine: str | Scorer = "auto",
                 optimize: bool = True, precision: str = "fp32",
                 cuda_graphs: bool = False) -> None:
        if pixels < 1:
            raise ValueError("pixels must be >= 1")
        if isinstance(engine, str) and engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if engine == "incremental" and pixels != 1:
            raise ValueError("the incremental engine scores one-pixel candidates; use "
                             "engine='full' (or 'auto') for pixels > 1")
        if max_batch is not None and max_batch < 1:
            raise ValueError("max_batch must be >= 1")
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

    # ----------------------------------------------------------------- public API
    def __call__(self, images: torch.Tensor, labels: torch.Tensor,
                 targets: torch.Tensor | None = None) -> AttackOutput:
        return self.attack(images, labels, targets)

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

    def attack(self, images: torch.Tensor, labels: torch.Tensor,
               targets: torch.Tensor | None = None,
               keys: list[int] | None = None) -> AttackOutput:
        """Attack every image of the batch; see the class docstring.

        ``keys`` fix each image's random stream (default: a hash of its pixels and label),
        so results do not depend on batch composition or order.
        """
        began = time.perf_counter()
        device = images.device
        labels = labels.to(device=device, dtype=torch.long)
        targets = targets.to(device=device, dtype=torch.long) if targets is not None else None
        clean = self._check(images, labels, targets)
        original = clean.argmax(1)
        goal_reached = (original == targets) if targets is not None else (original != labels)
        keys = keys if keys is not None else [image_key(images[i], int(labels[i]))
                                              for i in range(images.shape[0])]
        distribution = self.start_distribution(images, labels, keys)
        generators = [problem_generator(self.seed, key) for key in keys]
        todo = (~goal_reached).nonzero().flatten().tolist()
        width = self.pixels * (2 + images.shape[1])
        best = torch.zeros(images.shape[0], width, device=device)
        generations = torch.zeros(images.shape[0], dtype=torch.long)
        queries = torch.zeros(images.shape[0], dtype=torch.long)
        scanned = None
        prep_seconds = time.perf_counter() - began
        if todo:
            idx = torch.tensor(todo, device=device)
            outcome = self._search(images[idx], labels[idx],
                                   targets[idx] if targets is not None else None,
                                   distribution, todo, [generators[i] for i in todo])
            best[idx] = outcome.best.to(best.device, best.dtype)
            queries[todo] = outcome.queries.cpu()
            if outcome.generations is not None:
                generations[todo] = outcome.generations.cpu()
            if outcome.positions_scanned is not None:
                scanned = torch.zeros(images.shape[0], dtype=torch.long)
                scanned[todo] = outcome.positions_scanned.cpu()
        self.queries += int(queries.sum())
        adversarial = images.clone()
        if todo:
            genes = best[idx].view(len(todo), 1, self.pixels, 2 + images.shape[1])
            adversarial[idx] = apply_pixels(images[idx], genes)
        final = self.probabilities(adversarial)
        seconds = time.perf_counter() - began
        results = self._results(images, adversarial, labels, targets, original, final,
                                best, None if self.counts_positions else generations,
                                queries, scanned, distribution, set(todo), prep_seconds,
                                seconds)
        return AttackOutput(results, adversarial, distribution, seconds)

    counts_positions = False  # scans report positions scanned instead of generations

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

    def _fitness(self, images: torch.Tensor, labels: torch.Tensor,
                 targets: torch.Tensor | None):
        """``fitness(ids, candidates [A, P, D]) -> (fitness, success)`` over ``images``:
        the true class's probability (minimised) or one minus the target's."""
        channels = images.shape[1]
        state = self.scorer(images).prepare(images, per_image=self.batch_invariant)

        def fitness(ids: torch.Tensor, candidates: torch.Tensor):
            count, popsize, _ = candidates.shape
            genes = candidates.reshape(count * popsize, self.pixels, 2 + channels)
            probs = self._query(state, images, ids.repeat_interleave(popsize), genes)
            probs = probs.view(count, popsize, -1)
            predicted = probs.argmax(2)
            if targets is None:
                score = probs.gather(2, labels[ids].view(-1, 1, 1).expand(-1, popsize, 1))
                return score.squeeze(2), predicted != labels[ids, None]
            score = probs.gather(2, targets[ids].view(-1, 1, 1).expand(-1, popsize, 1))
            return 1.0 - score.squeeze(2), predicted == targets[ids, None]

        return fitness

    def _results(self, images, adversarial, labels, targets, original, final, best,
                 generations, queries, scanned, distribution, attacked, prep_seconds,
                 seconds) -> list[AttackResult]:
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
                pixels=pixels,
                generations=int(generations[i]) if generations is not None else None,
                queries=int(queries[i]),
                seconds=prep_seconds / images.shape[0]
                + search_seconds * int(queries[i]) / total_queries,
                prior=self.prior.name, fell_back=bool(distribution.fell_back[i]),
                support_size=int(distribution.support_size[i]), seed=self.seed,
                clean_correct=int(original[i]) == int(labels[i]),
                positions_scanned=int(scanned[i]) if scanned is not None else None,
                adversarial=adversarial[i]))
        return results


class OnePixelAttack(Attack):
    """One-pixel attack (Su et al. 2019) with a position prior (Kumar et al. 2019).

    Parameters (besides :class:`Attack`'s)
    ----------
    prior: where initial positions come from: :class:`UniformPrior` (unconstrained, the
        default) or :class:`SusceptibleSetPrior` (the paper's constrained mode), ...
    popsize, maxiter, mutation: DE settings (400, 100, 0.5 as in Su et al.); ``mutation``
        may be ``(low, high)`` to dither F per generation.
    strategy, recombination, out_of_bounds, stop_on, replace_on_tie: the rest of the DE
        (:class:`~pixelprior.evolution.EvolutionConfig`; the defaults are the paper's
        DE/rand/1; ``strategy="best1bin"`` with F in (0.5, 1), ``out_of_bounds="resample"``,
        ``stop_on="best"`` and ``replace_on_tie=False`` is Su et al.'s public code).
    init_color: ``"normal"`` (Su et al.) or ``"uniform"``.
    early_stop: stop an image's search once it succeeds.
    """

    def __init__(self, model: nn.Module, prior: Prior | None = None, popsize: int = 400,
                 maxiter: int = 100, mutation: float | tuple[float, float] = 0.5,
                 pixels: int = 1, targeted: bool = False, init_color: str = "normal",
                 seed: int = 0, max_batch: int | None = None, early_stop: bool = True,
                 batch_invariant: bool = False, optimize: bool = True,
                 engine: str | Scorer = "auto", strategy: str = "rand1bin",
                 recombination: float = 1.0, out_of_bounds: str = "clip",
                 stop_on: str = "any", replace_on_tie: bool = True,
                 precision: str = "fp32", cuda_graphs: bool = False) -> None:
        super().__init__(model, prior, pixels=pixels, targeted=targeted, seed=seed,
                         max_batch=max_batch, batch_invariant=batch_invariant, engine=engine,
                         optimize=optimize, precision=precision, cuda_graphs=cuda_graphs)
        if init_color not in INIT_COLORS:
            raise ValueError(f"init_color must be one of {INIT_COLORS}")
        self.config = EvolutionConfig(popsize, maxiter, mutation, early_stop, strategy,
                                      recombination, out_of_bounds, stop_on, replace_on_tie)
        self.init_color = init_color

    def _search(self, images, labels, targets, distribution, rows, generators
                ) -> SearchOutcome:
        device = images.device
        solver = DifferentialEvolution(self._fitness(images, labels, targets),
                                       *self._bounds(images, device), self.config)
        initial = self._initial_population(distribution, rows, images.shape[1], generators)
        solved = solver.solve(initial.to(device), generators)
        return SearchOutcome(solved.best, solved.generations, solved.evaluations)

    def _initial_population(self, distribution: PositionDistribution, rows: list[int],
                            channels: int, generators: list[torch.Generator]) -> torch.Tensor:
        popsize, k = self.config.popsize, self.pixels
        out = []
        for row, generator in zip(rows, generators, strict=True):
            positions = distribution.sample(row, popsize * k, generator).double()
            if self.init_color == "normal":
                colours = (torch.randn(popsize * k, channels, generator=generator,
                                       dtype=torch.float64) * 0.5 + 0.5).clamp(0, 1)
            else:
                colours = torch.rand(popsize * k, channels, generator=generator,
                                     dtype=torch.float64)
            out.append(torch.cat([positions, colours], 1).view(popsize, k * (2 + channels)))
        return torch.stack(out).float()

    def _bounds(self, images: torch.Tensor, device: torch.device):
        channels, height, width = images.shape[1:]
        lower = torch.zeros(2 + channels)
        upper = torch.tensor([width - 1, height - 1] + [1.0] * channels)
        return lower.repeat(self.pixels).to(device), upper.repeat(self.pixels).to(device)
