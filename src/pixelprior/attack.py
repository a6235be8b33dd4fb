"""The (spatially constrained) one-pixel attack, batched, for any PyTorch classifier.

>>> attack = OnePixelAttack(model, prior=SusceptibleSetPrior(tau=0.5), seed=0)
>>> out = attack(images, labels)          # images: float [B, C, H, W] in [0, 1]
>>> out.adversarial, out.results[0].success, out.results[0].pixels

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
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .data import image_digest
from .evolution import DifferentialEvolution, EvolutionConfig
from .incremental import CleanCache, IncrementalForward, incremental_forward
from .models import scores_agree
from .prior import PositionDistribution, Prior, UniformPrior
from .sensitivity import check_images

INIT_COLORS = ("normal", "uniform")
ENGINES = ("auto", "incremental", "full", "onnxruntime")


class ModelOutputError(RuntimeError):
    """The model returned something an attack cannot use (NaN, wrong shape)."""


@dataclass
class PixelChange:
    """One changed pixel: position and colour before and after (values in [0, 1])."""

    x: int
    y: int
    old: list[float]
    new: list[float]


@dataclass
class AttackResult:
    """Outcome of the attack on one image; ``to_row()`` gives a flat table row."""

    index: int
    success: bool
    true_label: int
    original_label: int
    adversarial_label: int
    target: int | None
    true_probability: float
    target_probability: float | None
    pixels: list[PixelChange]
    generations: int
    queries: int
    seconds: float
    prior: str
    fell_back: bool
    support_size: int
    seed: int
    clean_correct: bool = True
    adversarial: torch.Tensor | None = field(default=None, repr=False)

    def to_row(self) -> dict:
        """A JSON-serialisable dict (pixels flattened as ``x``, ``y``, ``new_rgb`` ...)."""
        row = asdict(self)
        row.pop("adversarial")
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


def image_key(image: torch.Tensor, label: int) -> int:
    """A stable 63-bit key of an image's bytes and label (seeds its random stream)."""
    return image_digest(image, label)


def problem_generator(seed: int, key: int) -> torch.Generator:
    """The random stream of one image: a function of the attack seed and the image only."""
    mixed = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(mixed, "little") >> 1)


def decode_pixels(genes: torch.Tensor, height: int, width: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Genes ``[..., 2 + C]`` → pixel ``(x, y)`` rounded and clipped to the image, and
    the colour clipped to [0, 1]."""
    x = genes[..., 0].round().clamp(0, width - 1).long()
    y = genes[..., 1].round().clamp(0, height - 1).long()
    return x, y, genes[..., 2:].clamp(0, 1)


def perturb_rows(images: torch.Tensor, owner: torch.Tensor, genes: torch.Tensor) -> torch.Tensor:
    """Perturbed copies for arbitrary rows: row ``n`` is ``images[owner[n]]`` with the
    ``k`` pixels of ``genes[n]`` (``[N, k, 2 + C]``) applied → ``[N, C, H, W]``.

    Coordinates are rounded and clipped to the image; colours clipped to [0, 1].
    """
    out = images[owner].clone()
    x, y, colour = decode_pixels(genes, images.shape[-2], images.shape[-1])
    row = torch.arange(genes.shape[0], device=images.device)[:, None].expand_as(x)
    out.permute(0, 2, 3, 1)[row, y, x] = colour.to(out.dtype)  # index_put: [N, k], [N, k, C]
    return out


def apply_pixels(images: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Perturbed copies: ``images [A, C, H, W]``, ``candidates [A, P, k, 2 + C]`` →
    ``[A * P, C, H, W]`` (all at once; the attack itself builds them chunk by chunk)."""
    count, popsize = candidates.shape[:2]
    owner = torch.arange(count, device=images.device).repeat_interleave(popsize)
    return perturb_rows(images, owner, candidates.reshape(count * popsize,
                                                          *candidates.shape[2:]))


def _softmax(logits: torch.Tensor, rows: int) -> torch.Tensor:
    """Softmax of ``rows`` rows of class scores, after checking that they are usable."""
    if logits.ndim != 2 or logits.shape[0] != rows:
        raise ModelOutputError(f"model must return [B, K] scores, got {tuple(logits.shape)}")
    if not torch.isfinite(logits).all():
        raise ModelOutputError("model returned NaN or infinite scores")
    return logits.float().softmax(1)


def _disagreement(engine: IncrementalForward, model: nn.Module, image: torch.Tensor,
                  atol: float = 1e-3) -> str | None:
    """Why the incremental engine cannot stand in for ``model`` (``None`` when it can):
    scored against full passes at the corners, edges and centre of ``image``."""
    height, width = image.shape[-2:]
    spots = [(y, x) for y in (0, height // 2, height - 1) for x in (0, width // 2, width - 1)]
    y = torch.tensor([p[0] for p in spots], device=image.device)
    x = torch.tensor([p[1] for p in spots], device=image.device)
    colour = torch.rand(len(spots), image.shape[1], generator=torch.Generator().manual_seed(0))
    colour = colour.to(device=image.device, dtype=image.dtype)
    owner = torch.zeros(len(spots), dtype=torch.long, device=image.device)
    genes = torch.cat([x[:, None].to(colour.dtype), y[:, None].to(colour.dtype), colour], 1)
    try:
        with torch.inference_mode():
            expected = model(perturb_rows(image, owner, genes[:, None]))
            got = engine(engine.prepare(image), owner, y, x, colour)
    except Exception as exc:  # an unexpected layer configuration
        return f"it failed: {exc}"
    if got.shape != expected.shape:
        return f"scores of shape {tuple(got.shape)}, full pass {tuple(expected.shape)}"
    scale = float(expected.abs().max())
    if not scores_agree(expected, got, atol * max(1.0, scale)):
        return "its scores differ from the full pass"
    return None


class OnePixelAttack:
    """One-pixel attack (Su et al. 2019) with a position prior (Kumar et al. 2019).

    Parameters
    ----------
    model: any ``nn.Module`` mapping float images in [0, 1] to class scores ``[B, K]``.
    prior: where initial positions come from: :class:`UniformPrior` (unconstrained, the
        default) or :class:`SusceptibleSetPrior` (the paper's constrained mode), ...
    popsize, maxiter, mutation: DE settings (400, 100, 0.5 as in Su et al.).
    pixels: pixels changed per candidate (``k``).
    targeted: when True, ``__call__`` needs ``targets`` and maximises their probability.
    init_color: ``"normal"`` (Su et al.) or ``"uniform"``.
    seed: the attack's seed; each image's random stream derives from it and the image.
    max_batch: most images per model forward; default from ``memory_mb``.
    optimize: query a faster copy of the model (BatchNorm folded into convolutions,
        channels-last memory), checked against the original on the first batch; gradients
        for sensitivity maps still use the original model.
    engine: how candidates are scored. ``"full"`` builds each perturbed image and runs
        the whole model. ``"incremental"`` caches the clean image's activations and
        recomputes only what the changed pixel can reach
        (:mod:`pixelprior.incremental`; SqueezeNet-style models, one pixel per
        candidate); it is checked against the full pass before use. ``"auto"`` (default)
        takes the incremental engine where it applies and the full pass elsewhere.
        ``"onnxruntime"`` runs full passes with ONNX Runtime on the CPU
        (:mod:`pixelprior.runtime`, optional dependency): faster full passes for models
        the incremental engine does not know.
    batch_invariant: evaluate each image's population (and its sensitivity map) in its own
        forward calls. CPU/GPU kernels are chosen by batch size, so float results depend
        on batch composition in the last bits; this mode makes every image's result
        bit-identical whatever else is attacked with it (at some cost in throughput).
    """

    def __init__(self, model: nn.Module, prior: Prior | None = None, popsize: int = 400,
                 maxiter: int = 100, mutation: float = 0.5, pixels: int = 1,
                 targeted: bool = False, init_color: str = "normal", seed: int = 0,
                 max_batch: int | None = None, memory_mb: float = 1024.0,
                 early_stop: bool = True, batch_invariant: bool = False,
                 optimize: bool = True, engine: str = "auto") -> None:
        if pixels < 1:
            raise ValueError("pixels must be >= 1")
        if init_color not in INIT_COLORS:
            raise ValueError(f"init_color must be one of {INIT_COLORS}")
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if engine == "incremental" and pixels != 1:
            raise ValueError("the incremental engine scores one-pixel candidates; use "
                             "engine='full' (or 'auto') for pixels > 1")
        self.model = model
        self.prior = prior if prior is not None else UniformPrior()
        self.config = EvolutionConfig(popsize, maxiter, mutation, early_stop)
        self.pixels = pixels
        self.targeted = targeted
        self.init_color = init_color
        self.seed = seed
        self.max_batch = max_batch
        self.memory_mb = memory_mb
        self.batch_invariant = batch_invariant
        self.optimize = optimize
        self.engine = engine
        self._query_model: nn.Module | None = None
        self._incremental: IncrementalForward | None | bool = None  # False: not usable
        self.queries = 0  # model queries of the search, over all calls
        self.query_seconds = 0.0  # wall time spent scoring them (model or engine)

    # ----------------------------------------------------------------- model access
    def _batch_limit(self, images: torch.Tensor) -> int:
        """Rows per model forward: ``max_batch``, else from the memory budget; on the CPU
        at most 128 (``benchmarks/inference_variants.py``: larger batches were slower for
        the CIFAR SqueezeNet, spilling the caches and spending time in page faults), 256
        with ONNX Runtime (3,500 queries/s in the attack at 256 rows, 3,300 at 128, 3,200 at
        64: one ad-hoc run on 10 images for 10 generations)."""
        if self.max_batch:
            return self.max_batch
        per_image = 4 * images.shape[1:].numel() * 32  # input plus ~32x in activations
        limit = max(1, int(self.memory_mb * 2**20 // per_image))
        if images.device.type != "cpu":
            return limit
        return min(limit, 256 if self.engine == "onnxruntime" else 128)

    def _model_for_queries(self, images: torch.Tensor) -> nn.Module:
        if self._query_model is None:
            self._query_model = self.model
            if self.engine == "onnxruntime":
                from .runtime import OnnxRuntimeModel

                self._query_model = OnnxRuntimeModel(self.model, images[:8])
            elif self.optimize:
                from .models import inference_model

                self._query_model = inference_model(self.model, images[:8])
        return self._query_model

    def _row_chunks(self, rows: int, per_image: int, limit: int):
        """``(start, stop)`` row ranges of at most ``limit`` rows. In batch-invariant mode
        a range never straddles two images' ``per_image`` rows, so every image is
        evaluated in the same forward calls whatever else shares the batch."""
        span = per_image if self.batch_invariant else rows
        for first in range(0, rows, span):
            for start in range(first, min(first + span, rows), limit):
                yield start, min(start + limit, first + span, rows)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Softmax of the model on one row per image (clean or adversarial images)."""
        chunks = self._row_chunks(images.shape[0], 1, self._batch_limit(images))
        return torch.cat([self._forward(images[start:stop]) for start, stop in chunks])

    @torch.inference_mode()
    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        """Softmax of one model call on ``images``; checks the output is usable."""
        return _softmax(self._model_for_queries(images)(images), images.shape[0])

    def _incremental_engine(self, images: torch.Tensor) -> IncrementalForward | None:
        """The incremental engine when the configuration and the model allow it, checked
        once against the full pass; ``None`` means: use full passes."""
        if self.engine in ("full", "onnxruntime") or self.pixels != 1:
            return None
        if self._incremental is None:
            engine = incremental_forward(self._model_for_queries(images))
            problem = ("the model is not a SqueezeNet-style network it knows" if engine is None
                       else _disagreement(engine, self._model_for_queries(images), images[:1]))
            if problem and self.engine == "incremental":
                raise ValueError(f"engine='incremental' cannot be used: {problem}")
            if problem and engine is not None:
                warnings.warn(f"incremental engine disabled ({problem}); using full passes",
                              RuntimeWarning, stacklevel=3)
            self._incremental = False if problem else engine
        return self._incremental or None

    def _fitness_function(self, images: torch.Tensor, labels: torch.Tensor,
                          targets: torch.Tensor | None):
        channels = images.shape[1]

        engine = self._incremental_engine(images)
        cache = engine.prepare(images) if engine is not None else None

        def fitness(ids: torch.Tensor, candidates: torch.Tensor):
            count, popsize, _ = candidates.shape
            genes = candidates.view(count * popsize, self.pixels, 2 + channels)
            probs = self._query_rows(images, ids, genes, popsize, engine, cache)
            probs = probs.view(count, popsize, -1)
            predicted = probs.argmax(2)
            if targets is None:
                score = probs.gather(2, labels[ids].view(-1, 1, 1).expand(-1, popsize, 1))
                return score.squeeze(2), predicted != labels[ids, None]
            score = probs.gather(2, targets[ids].view(-1, 1, 1).expand(-1, popsize, 1))
            return 1.0 - score.squeeze(2), predicted == targets[ids, None]

        return fitness

    # ----------------------------------------------------------------- population
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
                          RuntimeWarning, stacklevel=3)
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
        distribution = self._distribution(images, labels)
        keys = keys if keys is not None else [image_key(images[i], int(labels[i]))
                                              for i in range(images.shape[0])]
        generators = [problem_generator(self.seed, key) for key in keys]
        todo = (~goal_reached).nonzero().flatten().tolist()
        best = torch.zeros(images.shape[0], self.pixels * (2 + images.shape[1]), device=device)
        generations = torch.zeros(images.shape[0], dtype=torch.long)
        queries = torch.zeros(images.shape[0], dtype=torch.long)
        prep_seconds = time.perf_counter() - began
        if todo:
            idx = torch.tensor(todo, device=device)
            solver = DifferentialEvolution(
                self._fitness_function(images[idx], labels[idx],
                                       targets[idx] if targets is not None else None),
                *self._bounds(images, device), self.config)
            initial = self._initial_population(distribution, todo, images.shape[1],
                                               [generators[i] for i in todo]).to(device)
            solved = solver.solve(initial, [generators[i] for i in todo])
            best[idx] = solved.best
            generations[todo] = solved.generations.cpu()
            queries[todo] = solved.evaluations.cpu()
        self.queries += int(queries.sum())
        adversarial = images.clone()
        if todo:
            genes = best[idx].view(len(todo), 1, self.pixels, 2 + images.shape[1])
            adversarial[idx] = apply_pixels(images[idx], genes)
        final = self.probabilities(adversarial)
        seconds = time.perf_counter() - began
        results = self._results(images, adversarial, labels, targets, original, final,
                                best, generations, queries, distribution, set(todo),
                                prep_seconds, seconds)
        return AttackOutput(results, adversarial, distribution, seconds)

    def _query_rows(self, images: torch.Tensor, ids: torch.Tensor, genes: torch.Tensor,
                    popsize: int, engine: IncrementalForward | None = None,
                    cache: CleanCache | None = None) -> torch.Tensor:
        """Probabilities of every candidate (``popsize`` rows of genes per image
        ``images[ids]``), one chunk of at most ``max_batch`` rows at a time so memory
        stays bounded whatever the population."""
        owner = ids.repeat_interleave(popsize)
        chunks = self._row_chunks(genes.shape[0], popsize, self._batch_limit(images))
        began = time.perf_counter()
        if engine is None:
            out = torch.cat([self._forward(perturb_rows(images, owner[a:b], genes[a:b]))
                             for a, b in chunks])
        else:
            x, y, colour = decode_pixels(genes[:, 0], images.shape[-2], images.shape[-1])
            out = torch.cat([_softmax(engine(cache, owner[a:b], y[a:b], x[a:b], colour[a:b]),
                                      b - a) for a, b in chunks])
        self.query_seconds += time.perf_counter() - began
        return out

    def _distribution(self, images: torch.Tensor, labels: torch.Tensor) -> PositionDistribution:
        if not self.batch_invariant or not self.prior.needs_sensitivity:
            return self.prior.distribution(self.model, images, labels)
        return PositionDistribution.cat([
            self.prior.distribution(self.model, images[i:i + 1], labels[i:i + 1])
            for i in range(images.shape[0])])

    def _bounds(self, images: torch.Tensor, device: torch.device):
        channels, height, width = images.shape[1:]
        lower = torch.zeros(2 + channels)
        upper = torch.tensor([width - 1, height - 1] + [1.0] * channels)
        return lower.repeat(self.pixels).to(device), upper.repeat(self.pixels).to(device)

    def _results(self, images, adversarial, labels, targets, original, final, best,
                 generations, queries, distribution, attacked, prep_seconds, seconds):
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
                pixels=pixels, generations=int(generations[i]), queries=int(queries[i]),
                seconds=prep_seconds / images.shape[0]
                + search_seconds * int(queries[i]) / total_queries,
                prior=self.prior.name, fell_back=bool(distribution.fell_back[i]),
                support_size=int(distribution.support_size[i]), seed=self.seed,
                clean_correct=int(original[i]) == int(labels[i]),
                adversarial=adversarial[i]))
        return results
