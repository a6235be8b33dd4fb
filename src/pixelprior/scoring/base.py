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
chunks, a check that the output is usable, probabilities from the scores (see below), and
``fixed_shape`` — every call on exactly ``chunk_rows`` rows (the last chunk padded), so the
kernels, and hence the bits, of a row's scores do not depend on which other rows share its
batch. :func:`make_scorer` resolves ``engine="auto"`` and checks every engine against a
plain full pass once before use (:func:`check_scorer`).

Logits or probabilities: a model may return either (``nn.Sequential(net, nn.Softmax(1))``
returns probabilities). A scorer decides once (:attr:`Scorer.output_kind`), from the clean
images' scores of its first whole-image call (:meth:`Scorer.image_probabilities`, which
every attack makes first) or :meth:`Scorer.set_output_kind`: rows in [0, 1] summing to 1
(within 1e-4) over the whole batch are probabilities, used as they are (tiny negatives
clamped, never soft-maxed again); anything else is logits, soft-maxed. Candidate scores
(:meth:`Scorer.probabilities`) follow the same decision, whatever the engine (the
incremental engine computes the same network's scores, ONNX Runtime the same graph's); a
scorer that scores candidates before any whole image decides from its first chunk.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import Any, NamedTuple

import torch
from torch import nn

from ..models import output_kind
from ..models.probing import TWO_CLASSES

PRECISIONS = ("fp32", "bf16")
OUTPUT_KINDS = ("logits", "probabilities")
# Rows per call on the CPU. benchmarks/inference_variants.py: for the CIFAR SqueezeNet
# larger batches were slower (caches spill, page faults); ONNX Runtime: 3,500 queries/s in
# the attack at 256 rows, 3,300 at 128, 3,200 at 64 (one ad-hoc run, 10 images x 10
# generations, queries / query_seconds).
CPU_CHUNK_ROWS = {"full": 128, "incremental": 128, "onnxruntime": 256}
# CUDA: chunks fill at most this much of the device memory (and at most this share of what
# is free), rounded down to a power of two between the bounds below.
CUDA_MEMORY_BUDGET = 8 * 2**30
CUDA_FREE_SHARE = 0.5
CUDA_MIN_ROWS = 64  # one assignment per name: the docs generator (griffe) reads each
CUDA_MAX_ROWS = 16384
# Fixed-shape (reproducible) chunks on CUDA: padding wastes up to a chunk per generation,
# and one H100 ran the CIFAR model at 288k images/s at 4,000 rows vs 297k at 16,000
# (issue 13's table), so a smaller fixed chunk loses little and pads little.
CUDA_FIXED_MAX_ROWS = 4096


class ModelOutputError(RuntimeError, ValueError):
    """The model returned something an attack or a verifier cannot use (NaN, a tuple, a
    wrong shape); a ``ValueError`` too, which the verifier raised for these before."""


class ScorerMismatchError(ValueError):
    """A faster engine's scores differ from the plain full pass: it is not used."""


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

    Coordinates are rounded and clipped to the image; colours clipped to [0, 1]; of two
    genes on one pixel the later one's colour stays. ``out`` (``[N, C, H, W]``) receives
    the rows in place (a CUDA graph's static input).
    """
    if out is None:
        out = images[owner].clone()
    else:
        torch.index_select(images, 0, owner, out=out)
    x, y, colour = decode_pixels(genes, images.shape[-2], images.shape[-1])
    row = torch.arange(genes.shape[0], device=images.device)
    channels_last = out.permute(0, 2, 3, 1)
    for j in range(genes.shape[1]):  # one gene at a time: of two genes on one pixel the
        # later wins on every device (one index_put of both leaves it undefined on CUDA)
        channels_last[row, y[:, j], x[:, j]] = colour[:, j].to(out.dtype)
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
    if logits.shape[1] < 2:  # its argmax is always 0: no pixel could change it
        raise ModelOutputError(f"model returns {logits.shape[1]} score per image; a label "
                               f"needs at least 2 classes ({TWO_CLASSES})")
    if not torch.isfinite(logits).all():
        bad = int((~torch.isfinite(logits)).any(1).sum())
        raise ModelOutputError(f"model returned NaN or infinite scores for {bad} of the "
                               f"{rows} images scored: its forward overflows or divides by "
                               "zero on some inputs; make it finite on every image in [0, 1]")
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


class Scored(NamedTuple):
    """Candidates as a scorer answers them (:meth:`Scorer.scored`).

    Attributes:
        probabilities: ``[N, K]``, what the searches' fitness reads.
        labels: int64 ``[N]``, the argmax of the scores themselves (not of their softmax,
            which may round two of them to one probability): what decides success.
    """

    probabilities: torch.Tensor
    labels: torch.Tensor


class Scorer(ABC):
    """Scores of candidate images; see the module docstring.

    Subclasses implement :meth:`logits` (and :meth:`prepare` when the clean images have
    state to keep). ``max_pixels`` is the most pixels per candidate the engine can score.
    """

    name = "scorer"
    max_pixels: int | None = None
    note: str | None = None  # one line on how the engine was chosen (make_scorer sets it)

    def __init__(self, model: nn.Module, precision: str = "fp32") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.model = model
        self.precision = precision
        self._chunks: dict[tuple, int] = {}
        self.output_kind: str | None = None  # "logits" | "probabilities", decided once
        # the largest gap between its scores and the model's full pass, where measured
        # (check_scorer: one-pixel candidates and the clean image); None: not measured
        self.agreement: float | None = None
        # for a model returning probabilities, the largest gap of their logarithms (the
        # logits' gap, up to a constant per row), where measured; None otherwise
        self.log_agreement: float | None = None
        # fast's rounding band per (image size, device), estimated once for these weights
        self.rounding_bands: dict[tuple, float] = {}

    # -- logits or probabilities
    def set_output_kind(self, kind: str) -> None:
        """Declare what the model returns: ``"logits"`` or ``"probabilities"``.

        Args:
            kind: one of :data:`OUTPUT_KINDS`.
        """
        if kind not in OUTPUT_KINDS:
            raise ValueError(f"output kind must be one of {OUTPUT_KINDS}, got {kind!r}")
        self.output_kind = kind

    def to_probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """Checked scores ``[N, K]`` as probabilities: as they are (clamped to [0, 1]) for
        a model that returns probabilities, else their softmax. Decides
        :attr:`output_kind` from ``scores`` when it is still open.

        Args:
            scores: float32 class scores of a whole batch.

        Returns:
            Probabilities ``[N, K]``.
        """
        if self.output_kind is None:
            self.output_kind = output_kind(scores)
        if self.output_kind == "probabilities":
            return scores.clamp(0.0, 1.0)
        return scores.softmax(1)

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
        """Probabilities of every row (:meth:`to_probabilities`), ``chunk`` rows per call.
        ``fixed_shape``: every call on exactly ``chunk`` rows (the last one padded), so a
        row's bits do not depend on the other rows. :meth:`scored` also gives the labels.
        """
        return self.scored(state, images, owner, genes, chunk, fixed_shape).probabilities

    def scored(self, state: Any, images: torch.Tensor, owner: torch.Tensor,
               genes: torch.Tensor, chunk: int, fixed_shape: bool = False) -> Scored:
        """Probabilities and labels of every row, ``chunk`` rows per call (see
        :meth:`probabilities`). The labels are the argmax of the scores as the engine
        computes them, not of their softmax: logits a bit apart may round to one
        probability (``[0, 1e-30]`` do), whose argmax is then the first class.

        Args:
            state: what :meth:`prepare` returned for ``images``.
            images: the clean images, float32 ``[B, C, H, W]``.
            owner: int64 ``[N]``, the image of each row.
            genes: ``[N, k, 2 + C]``, each row's pixels (``x, y, colour``).
            chunk: rows per call.
            fixed_shape: every call on exactly ``chunk`` rows (the last one padded).

        Returns:
            :class:`Scored`: probabilities ``[N, K]`` and labels int64 ``[N]``.

        Raises:
            ModelOutputError: scores that are not finite, or not ``[rows, K >= 2]``.
        """
        probabilities, labels = [], []
        for start in range(0, owner.shape[0], chunk):
            part_owner, part_genes = owner[start:start + chunk], genes[start:start + chunk]
            rows = part_owner.shape[0]
            if fixed_shape:
                part_owner, part_genes = _pad_rows(part_owner, part_genes, chunk)
            logits = (self.fixed_logits(state, part_owner, part_genes) if fixed_shape
                      else self.logits(state, part_owner, part_genes))
            scores = check_logits(logits, part_owner.shape[0])[:rows]
            probabilities.append(self.to_probabilities(scores))
            labels.append(scores.argmax(1))
        return Scored(torch.cat(probabilities), torch.cat(labels))

    def image_probabilities(self, images: torch.Tensor, chunk: int,
                            one_per_call: bool = False) -> torch.Tensor:
        """Probabilities of whole images (:meth:`to_probabilities`; the first call, on the
        clean images, decides :attr:`output_kind` from the whole batch); ``one_per_call``
        runs each image alone (so its bits do not depend on the batch)."""
        step = 1 if one_per_call else chunk
        scores = torch.cat([check_logits(self.image_logits(images[i:i + step]),
                                         images[i:i + step].shape[0])
                            for i in range(0, images.shape[0], step)])
        return self.to_probabilities(scores)

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

