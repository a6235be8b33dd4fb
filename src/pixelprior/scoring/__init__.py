"""Scorers: class scores of candidate images, one interface for every query engine.

:class:`FullPassScorer` (any model), :class:`IncrementalScorer` (the cone of one pixel:
SqueezeNet-style networks, or any ``torch.fx``-traceable CNN via :class:`FxIncrementalForward`),
:class:`OnnxRuntimeScorer` (ONNX Runtime on the CPU); :func:`make_scorer` picks and
checks one, :data:`SCORERS` names them.
"""

from ._squeezenet_cone import IncrementalForward, incremental_forward
from .base import (
    CPU_CHUNK_ROWS,
    CUDA_FIXED_MAX_ROWS,
    CUDA_FREE_SHARE,
    CUDA_MAX_ROWS,
    CUDA_MEMORY_BUDGET,
    CUDA_MIN_ROWS,
    PRECISIONS,
    ModelOutputError,
    Scored,
    Scorer,
    ScorerMismatchError,
    apply_pixels,
    check_logits,
    decode_pixels,
    perturb_rows,
    rows_for_memory,
)
from .cone import FxIncrementalForward, fx_incremental_forward
from .full import FullPassScorer
from .incremental import IncrementalScorer
from .onnx_runtime import OnnxRuntimeModel, OnnxRuntimeScorer, export_onnx
from .registry import ENGINES, SCORERS, check_scorer, engine_of, make_scorer

__all__ = [
    "CPU_CHUNK_ROWS", "CUDA_FIXED_MAX_ROWS", "CUDA_FREE_SHARE", "CUDA_MAX_ROWS",
    "CUDA_MEMORY_BUDGET", "CUDA_MIN_ROWS", "ENGINES", "PRECISIONS", "SCORERS", "FullPassScorer",
    "FxIncrementalForward", "IncrementalForward", "IncrementalScorer", "ModelOutputError",
    "OnnxRuntimeModel", "OnnxRuntimeScorer", "Scored", "Scorer", "ScorerMismatchError",
    "apply_pixels", "check_logits", "check_scorer", "decode_pixels", "export_onnx",
    "fx_incremental_forward", "engine_of", "incremental_forward", "make_scorer",
    "perturb_rows", "rows_for_memory",
]
