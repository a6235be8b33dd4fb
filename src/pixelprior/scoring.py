"""Scorers: class scores of candidate images, one interface for every query engine.

A black-box one-pixel attack spends nearly all its time asking the model about candidates:
row ``n`` is image ``owner[n]`` with the ``k`` pixels of ``genes[n]`` (``[N, k, 2 + C]``:
``x, y, colour``) applied. A :class:`Scorer` answers that question:

- :class:`FullPassScorer` builds each perturbed image and runs the whole model: any model;
  by default a verified faster copy (BatchNorm folded, channels-last), optionally bf16
  autocast and, on CUDA, CUDA graphs for the fixed chunk shape;
- :class:`IncrementalScorer` caches the clean images' activations once and recomputes only
  what one pixel can reach (:mod:`pixelprior.incremental`; SqueezeNet-style models);
- :class:`OnnxRuntimeScorer` runs full passes with ONNX Runtime on the CPU.

Every scorer prepares the clean images once (:meth:`Scorer.prepare`), scores rows of
candidates (:meth:`Scorer.logits`) and declares how many rows one call may take
(:meth:`Scorer.chunk_rows`: measured constants on the CPU, the free device memory and the
engine's measured per-row footprint on CUDA). :meth:`Scorer.probabilities` drives it:
chunks, a check that the output is usable, and ``fixed_shape`` — every call on exactly
``chunk_rows`` rows (the last chunk padded), so the kernels, and hence the bits, of a row's
scores do not depend on which other rows share its batch. :func:`make_scorer` resolves
``engine="auto"`` and checks every engine against a plain full pass once before use
(:func:`check_scorer`).
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from .models import scores_agree

ENGINES = ("auto", "incremental", "full", "onnxruntime")
PRECISIONS = ("fp32", "bf16")
# Rows per call on the CPU. benchmarks/inference_variants.py: for the CIFAR SqueezeNet
# larger batches were slower (caches spill, page faults); ONNX Runtime: 3,500 queries/s in
# the attack at 256 rows, 3,300 at 128, 3,200 at 64 (one ad-hoc run, 10 images x 10
# generations, queries / query_seconds).
CPU_CHUNK_ROWS = {"full": 128, "incremental": 128, "onnxruntime": 256}
# CUDA: chunks fill at most this much of the device memory (and at most this share of what
# is free), rounded down to a power of two between the bounds below.
CUDA_MEMORY_BUDGET = 8 * 2**30
CUDA_FREE_SHARE = 0.5
CUDA_MIN_ROWS, CUDA_MAX_ROWS = 64, 16384
# Fixed-shape (reproducible) chunks on CUDA: padding wastes up to a chunk per generation,
# and one H100 ran the CIFAR model at 288k images/s at 4,000 rows vs 297k at 16,000
# (issue 13's table), so a smaller fixed chunk loses little and pads little.
CUDA_FIXED_MAX_ROWS = 4096


class ModelOutputError(RuntimeError):
    """The model returned something an attack cannot use (NaN, wrong shape)."""


class ScorerMismatchError(ValueError):
    """A faster engine's scores differ from the plain full pass: it is not used."""


# --------------------------------------------------------------------------- candidates
def decode_pixels(genes: torch.Tensor, height: int, width: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Genes ``[..., 2 + C]`` → pixel ``(x, y)`` rounded and clipped to the image, and
    the colour clipped to [0, 1]."""
    x = genes[..., 0].round().clamp(0, width - 1).long()
    y = genes[..., 1].round().clamp(0, height - 1).long()
    return x, y, genes[..., 2:].clamp(0, 1)


def perturb_rows(images: torch.Tensor, owner: torch.Tensor, genes: torch.Tensor,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """Perturbed copies for arbitrary rows: row ``n`` is ``images[owner[n]]`` with the
    ``k`` pixels of ``genes[n]`` (``[N, k, 2 + C]``) applied → ``[N, C, H, W]``.

    Coordinates are rounded and clipped to the image; colours clipped to [0, 1]. ``out``
    (``[N, C, H, W]``) receives the rows in place (a CUDA graph's static input).
    """
    if out is None:
        out = images[owner].clone()
    else:
        torch.index_select(images, 0, owner, out=out)
    x, y, colour = decode_pixels(genes, images.shape[-2], images.shape[-1])
    row = torch.arange(genes.shape[0], device=images.device)[:, None].expand_as(x)
    out.permute(0, 2, 3, 1)[row, y, x] = colour.to(out.dtype)  # index_put: [N, k], [N, k, C]
    return out


def apply_pixels(images: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Perturbed copies: ``images [A, C, H, W]``, ``candidates [A, P, k, 2 + C]`` →
    ``[A * P, C, H, W]`` (all at once; attacks build them chunk by chunk)."""
    count, popsize = candidates.shape[:2]
    owner = torch.arange(count, device=images.device).repeat_interleave(popsize)
    return perturb_rows(images, owner, candidates.reshape(count * popsize,
                                                          *candidates.shape[2:]))


def check_logits(logits: torch.Tensor, rows: int) -> torch.Tensor:
    """``logits`` as float32 after checking that they are usable ``[rows, K]`` scores."""
    if logits.ndim != 2 or logits.shape[0] != rows:
        raise ModelOutputError(f"model must return [B, K] scores, got {tuple(logits.shape)}")
    if not torch.isfinite(logits).all():
        raise ModelOutputError("model returned NaN or infinite scores")
    return logits.float()


def _pad_rows(owner: torch.Tensor, genes: torch.Tensor, rows: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Repeat the first row until there are ``rows`` rows (fixed-shape chunks)."""
    missing = rows - owner.shape[0]
    if missing <= 0:
        return owner, genes
    return (torch.cat([owner, owner[:1].expand(missing)]),
            torch.cat([genes, genes[:1].expand(missing, *genes.shape[1:])]))


def rows_for_memory(row_bytes: float, free_bytes: int, fixed_shape: bool = False) -> int:
    """Rows per call on CUDA: the memory budget over the per-row footprint, rounded down
    to a power of two within ``[CUDA_MIN_ROWS, CUDA_MAX_ROWS]`` (``CUDA_FIXED_MAX_ROWS``
    for fixed-shape chunks)."""
    budget = min(CUDA_MEMORY_BUDGET, CUDA_FREE_SHARE * free_bytes)
    rows = int(budget // max(row_bytes, 1.0))
    cap = CUDA_FIXED_MAX_ROWS if fixed_shape else CUDA_MAX_ROWS
    rows = max(CUDA_MIN_ROWS, min(cap, rows))
    return 1 << (rows.bit_length() - 1)


# --------------------------------------------------------------------------- scorers
class Scorer(ABC):
    """Scores of candidate images; see the module docstring.

    Subclasses implement :meth:`logits` (and :meth:`prepare` when the clean images have
    state to keep). ``max_pixels`` is the most pixels per candidate the engine can score.
    """

    name = "scorer"
    max_pixels: int | None = None

    def __init__(self, model: nn.Module, precision: str = "fp32") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.model = model
        self.precision = precision
        self._chunks: dict[tuple, int] = {}

    # -- what an engine implements
    def prepare(self, images: torch.Tensor, per_image: bool = False) -> Any:
        """State of the clean images ``[B, C, H, W]`` that every query reuses.
        ``per_image``: computed one image at a time, so an image's state does not depend
        on the others (batch invariance)."""
        return images

    @abstractmethod
    def logits(self, state: Any, owner: torch.Tensor, genes: torch.Tensor) -> torch.Tensor:
        """Class scores ``[N, K]`` of rows ``(owner[n], genes[n])``, one call."""

    def fixed_logits(self, state: Any, owner: torch.Tensor, genes: torch.Tensor
                     ) -> torch.Tensor:
        """:meth:`logits` for a call of the fixed chunk shape (where static-shape
        machinery such as CUDA graphs applies)."""
        return self.logits(state, owner, genes)

    def image_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Class scores of whole images (clean or adversarial), one call."""
        with torch.inference_mode(), self._autocast(images.device):
            return self.model(images)

    def cpu_chunk_rows(self) -> int:
        return CPU_CHUNK_ROWS.get(self.name, 128)

    # -- shared machinery
    def _autocast(self, device: torch.device):
        if self.precision == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return torch.autocast(device.type, enabled=False)

    def chunk_rows(self, state: Any, images: torch.Tensor, fixed_shape: bool = False) -> int:
        """Rows per call: measured constants on the CPU; on CUDA the memory budget over
        this engine's per-row footprint, measured once per image shape."""
        if images.device.type != "cuda":
            return self.cpu_chunk_rows()
        key = (tuple(images.shape[1:]), images.device, fixed_shape)
        if key not in self._chunks:
            row_bytes = self._row_bytes(state, images)
            free = torch.cuda.mem_get_info(images.device)[0]
            if not fixed_shape:
                self._chunks[key] = rows_for_memory(row_bytes, free)
            else:  # the fixed shape must not depend on what else uses the device
                rows = rows_for_memory(row_bytes, 2 * CUDA_MEMORY_BUDGET, fixed_shape=True)
                if rows * row_bytes > CUDA_FREE_SHARE * free:
                    shrunk = rows_for_memory(row_bytes, free, fixed_shape=True)
                    warnings.warn(f"only {free / 2**30:.1f} GiB free on {images.device}: "
                                  f"fixed chunks of {shrunk} rows instead of {rows}; results "
                                  "may differ in the last bits from a run with more memory "
                                  "free (each row records its chunk size)", RuntimeWarning,
                                  stacklevel=2)
                    rows = shrunk
                self._chunks[key] = rows
        return self._chunks[key]

    def image_chunk_rows(self, images: torch.Tensor) -> int:
        """Whole images per call (clean and adversarial forwards): the full pass's rows
        on the CPU; on CUDA from the memory of one full pass per image."""
        if images.device.type != "cuda":
            return CPU_CHUNK_ROWS["onnxruntime" if self.name == "onnxruntime" else "full"]
        key = ("images", tuple(images.shape[1:]), images.device)
        if key not in self._chunks:
            probe = images[:1].expand(32, *images.shape[1:]).contiguous()
            row_bytes = _peak_bytes(lambda: self.image_logits(probe), images.device) / 32
            self._chunks[key] = rows_for_memory(row_bytes,
                                                torch.cuda.mem_get_info(images.device)[0])
        return self._chunks[key]

    def _row_bytes(self, state: Any, images: torch.Tensor, rows: int = 256) -> float:
        """Peak CUDA memory of one call per row (a probe of ``rows`` random candidates)."""
        owner = torch.zeros(rows, dtype=torch.long, device=images.device)
        genes = _probe_genes(images, rows)
        return _peak_bytes(lambda: self.logits(state, owner, genes), images.device) / rows

    def probabilities(self, state: Any, images: torch.Tensor, owner: torch.Tensor,
                      genes: torch.Tensor, chunk: int, fixed_shape: bool = False
                      ) -> torch.Tensor:
        """Softmax of every row, ``chunk`` rows per call. ``fixed_shape``: every call on
        exactly ``chunk`` rows (the last one padded), so a row's bits do not depend on
        the other rows."""
        out = []
        for start in range(0, owner.shape[0], chunk):
            part_owner, part_genes = owner[start:start + chunk], genes[start:start + chunk]
            rows = part_owner.shape[0]
            if fixed_shape:
                part_owner, part_genes = _pad_rows(part_owner, part_genes, chunk)
            logits = (self.fixed_logits(state, part_owner, part_genes) if fixed_shape
                      else self.logits(state, part_owner, part_genes))
            out.append(check_logits(logits, part_owner.shape[0])[:rows].softmax(1))
        return torch.cat(out)

    def image_probabilities(self, images: torch.Tensor, chunk: int,
                            one_per_call: bool = False) -> torch.Tensor:
        """Softmax of whole images; ``one_per_call`` runs each image alone (so its bits do
        not depend on the batch)."""
        step = 1 if one_per_call else chunk
        return torch.cat([check_logits(self.image_logits(images[i:i + step]),
                                       images[i:i + step].shape[0]).softmax(1)
                          for i in range(0, images.shape[0], step)])

    def config(self) -> dict:
        return {"engine": self.name, "precision": self.precision}


def _peak_bytes(call, device: torch.device) -> float:
    """Peak CUDA memory that ``call()`` allocates beyond what was allocated before."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    call()
    torch.cuda.synchronize(device)
    return max(1.0, float(torch.cuda.max_memory_allocated(device) - before))


def _probe_genes(images: torch.Tensor, rows: int, seed: int = 0) -> torch.Tensor:
    """``rows`` one-pixel candidates spread over the image (fixed seed)."""
    generator = torch.Generator().manual_seed(seed)
    height, width = images.shape[-2:]
    xy = torch.rand(rows, 2, generator=generator) * torch.tensor([width - 1, height - 1])
    colour = torch.rand(rows, images.shape[1], generator=generator)
    return torch.cat([xy.round(), colour], 1)[:, None].to(images.device, images.dtype)


class FullPassScorer(Scorer):
    """Builds each perturbed image and runs the whole model (any model).

    ``optimize``: query a faster copy (BatchNorm folded, channels-last), checked against
    the model on ``example`` images and dropped when it disagrees. ``cuda_graphs``: on
    CUDA, replay one captured graph per fixed chunk shape (launch overhead gone; only
    with fixed-shape chunks, where every call has the same shape).
    """

    name = "full"

    def __init__(self, model: nn.Module, example: torch.Tensor | None = None,
                 optimize: bool = True, precision: str = "fp32",
                 cuda_graphs: bool = False) -> None:
        super().__init__(model, precision)
        self.query_model = model
        if optimize and example is not None:
            from .models import inference_model

            self.query_model = inference_model(model, example[:8])
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[tuple, _CudaGraph] = {}

    def logits(self, state: torch.Tensor, owner: torch.Tensor, genes: torch.Tensor
               ) -> torch.Tensor:
        return self._eager(state, owner, genes)

    def fixed_logits(self, state: torch.Tensor, owner: torch.Tensor, genes: torch.Tensor
                     ) -> torch.Tensor:
        images = state
        if self.cuda_graphs and images.device.type == "cuda":
            key = (owner.shape[0], *images.shape[1:])
            if key not in self._graphs:
                if len(self._graphs) >= 4:  # shapes vary: graphs do not pay here
                    return self._eager(images, owner, genes)
                self._graphs[key] = _CudaGraph(self._eager_model, images, owner.shape[0])
            return self._graphs[key](images, owner, genes)
        return self._eager(images, owner, genes)

    def _eager_model(self, batch: torch.Tensor) -> torch.Tensor:
        with self._autocast(batch.device):
            return self.query_model(batch)

    @torch.inference_mode()
    def _eager(self, images, owner, genes) -> torch.Tensor:
        return self._eager_model(perturb_rows(images, owner, genes))

    def image_logits(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self._eager_model(images)


class _CudaGraph:
    """One captured forward of the fixed chunk shape: the perturbed rows are written into
    the graph's static input, the graph replays, the scores are copied out."""

    def __init__(self, forward, images: torch.Tensor, rows: int) -> None:
        self.static = torch.zeros(rows, *images.shape[1:], device=images.device,
                                  dtype=images.dtype)
        stream = torch.cuda.Stream(images.device)
        stream.wait_stream(torch.cuda.current_stream(images.device))
        with torch.cuda.stream(stream), torch.no_grad():
            for _ in range(3):  # warm-up: allocator, cuDNN algorithm choice
                forward(self.static)
        torch.cuda.current_stream(images.device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.no_grad():
            self.output = forward(self.static)

    def __call__(self, images, owner, genes) -> torch.Tensor:
        with torch.no_grad():
            perturb_rows(images, owner, genes, out=self.static)
            self.graph.replay()
            return self.output.clone()


class IncrementalScorer(Scorer):
    """One-pixel candidates scored from cached clean activations
    (:class:`~pixelprior.incremental.IncrementalForward`); whole images by full passes
    of the same fast copy."""

    name = "incremental"
    max_pixels = 1

    def __init__(self, model: nn.Module, engine, full: FullPassScorer,
                 precision: str = "fp32") -> None:
        super().__init__(model, precision)
        self.engine = engine
        self.full = full

    def prepare(self, images: torch.Tensor, per_image: bool = False):
        with self._autocast(images.device):
            if not per_image or images.shape[0] == 1:
                return self.engine.prepare(images)
            # the clean activations' last bits depend on the batch size: one image a call
            return _concat_caches([self.engine.prepare(images[i:i + 1])
                                   for i in range(images.shape[0])])

    def logits(self, state, owner: torch.Tensor, genes: torch.Tensor) -> torch.Tensor:
        images = state.images
        x, y, colour = decode_pixels(genes[:, 0], images.shape[-2], images.shape[-1])
        with self._autocast(images.device):
            return self.engine(state, owner, y, x, colour)

    def image_logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.full.image_logits(images)


def _concat_caches(parts: list):
    """One :class:`~pixelprior.incremental.CleanCache` of several images' caches."""
    from dataclasses import replace

    first = parts[0]
    return replace(first, images=torch.cat([p.images for p in parts]),
                   padded=[None if t is None else torch.cat([p.padded[n] for p in parts])
                           for n, t in enumerate(first.padded)],
                   at_switch=torch.cat([p.at_switch for p in parts]))


class OnnxRuntimeScorer(Scorer):
    """Full passes by ONNX Runtime on the CPU (:class:`~pixelprior.runtime.OnnxRuntimeModel`,
    optional extra ``pixelprior[onnx]``)."""

    name = "onnxruntime"

    def __init__(self, model: nn.Module, example: torch.Tensor, precision: str = "fp32"
                 ) -> None:
        if precision != "fp32":
            raise ValueError("engine='onnxruntime' runs in fp32 only")
        super().__init__(model, precision)
        from .runtime import OnnxRuntimeModel

        self.runtime = OnnxRuntimeModel(model, example[:8])

    @torch.inference_mode()
    def logits(self, state: torch.Tensor, owner: torch.Tensor, genes: torch.Tensor
               ) -> torch.Tensor:
        return self.runtime(perturb_rows(state, owner, genes))

    def image_logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.runtime(images)


# --------------------------------------------------------------------------- choice
def check_scorer(scorer: Scorer, model: nn.Module, image: torch.Tensor,
                 atol: float = 1e-3) -> str | None:
    """Why ``scorer`` cannot stand in for ``model``'s full pass (``None`` when it can):
    one-pixel candidates at the corners, edges and centre of ``image`` (``[1, C, H, W]``)
    and the clean image, scored both ways (same labels, scores within ``atol`` times the
    score scale). Lower precision moves scores by design (an explicit option): only the
    shapes are checked."""
    height, width = image.shape[-2:]
    spots = [(y, x) for y in (0, height // 2, height - 1) for x in (0, width // 2, width - 1)]
    colour = torch.rand(len(spots), image.shape[1], generator=torch.Generator().manual_seed(0))
    genes = torch.cat([torch.tensor([[x, y] for y, x in spots], dtype=colour.dtype), colour],
                      1)[:, None].to(image.device, image.dtype)
    owner = torch.zeros(len(spots), dtype=torch.long, device=image.device)
    try:
        with torch.inference_mode():
            expected = model(perturb_rows(image, owner, genes))
            clean = model(image)
            got = scorer.logits(scorer.prepare(image), owner, genes)
            got_clean = scorer.image_logits(image)
    except Exception as exc:  # an unexpected layer configuration, an export failure
        return f"it failed: {type(exc).__name__}: {exc}"
    if expected.ndim != 2 or not (torch.isfinite(expected).all()
                                  and torch.isfinite(clean).all()):
        return None  # a broken model: the attack's output check names the problem
    for reference, candidate in ((expected, got), (clean, got_clean)):
        if candidate.shape != reference.shape:
            return (f"scores of shape {tuple(candidate.shape)}, full pass "
                    f"{tuple(reference.shape)}")
        if scorer.precision != "fp32":
            continue  # lower precision moves scores by design (an explicit option)
        tolerance = atol * max(1.0, float(reference.abs().max()))
        if not scores_agree(reference.float(), candidate.float(), tolerance):
            return "its scores differ from the full pass"
    return None


def make_scorer(model: nn.Module, example: torch.Tensor, engine: str = "auto",
                pixels: int = 1, optimize: bool = True, precision: str = "fp32",
                cuda_graphs: bool = False) -> Scorer:
    """The scorer for ``engine``, checked against ``model``'s plain full pass on
    ``example`` images (``[B, C, H, W]``).

    ``auto`` takes the incremental engine where the model and ``pixels`` allow it (with a
    warning and full passes when its check fails) and full passes elsewhere; an engine
    asked for by name that cannot apply or disagrees is an error.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "incremental" and pixels != 1:
        raise ValueError("the incremental engine scores one-pixel candidates; use "
                         "engine='full' (or 'auto') for pixels > 1")
    if engine == "onnxruntime":
        if example.device.type != "cpu":
            raise ValueError("engine='onnxruntime' runs on the CPU; use engine='full' or "
                             "'auto' on the GPU")
        scorer: Scorer = OnnxRuntimeScorer(model, example, precision)
        _require_agreement(scorer, model, example)
        return scorer
    full = FullPassScorer(model, example, optimize, precision, cuda_graphs)
    if engine == "full" or (engine == "auto" and pixels != 1):
        _require_agreement(full, model, example)
        return full
    from .incremental import incremental_forward

    network = incremental_forward(full.query_model)
    problem = ("the model is not a SqueezeNet-style network it knows" if network is None
               else None)
    if network is not None:
        scorer = IncrementalScorer(model, network, full, precision)
        problem = check_scorer(scorer, model, example[:1])
        if problem is None:
            return scorer
    if engine == "incremental":
        raise ValueError(f"engine='incremental' cannot be used: {problem}; use "
                         "engine='full' or 'auto'")
    if network is not None:  # auto, and a known model whose check failed: say so
        warnings.warn(f"incremental engine not used ({problem}); using full forward passes",
                      RuntimeWarning, stacklevel=2)
    _require_agreement(full, model, example)
    return full


def _require_agreement(scorer: Scorer, model: nn.Module, example: torch.Tensor) -> None:
    problem = check_scorer(scorer, model, example[:1])
    if problem is not None:
        raise ScorerMismatchError(f"engine={scorer.name!r} cannot stand in for the model: "
                                  f"{problem}")
