"""ONNX Runtime as a query engine: full passes of an exported model on the CPU.

Used only when asked (``engine="onnxruntime"``): for models the incremental engines do
not cover, its CPU kernels can beat PyTorch's full pass (measured ratios in
``benchmarks/RESULTS.md``).

Optional dependency: ``pip install "pixelprior[onnx]"`` (``onnxruntime``, ``onnx``).
"""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn

from ..models import fold_batchnorm, scores_agree
from .base import Scorer, perturb_rows

INSTALL_HINT = 'pip install "pixelprior[onnx]"  (or: pip install onnxruntime onnx)'


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError(f"engine='onnxruntime' needs ONNX Runtime: {INSTALL_HINT}") from exc
    return onnxruntime


def export_onnx(model: nn.Module, example: torch.Tensor) -> bytes:
    """``model`` (BatchNorm folded, eval mode, on the CPU) as ONNX bytes with a free batch
    dimension; ``example`` gives the image shape. Raises ``ValueError`` when the model
    cannot be exported."""
    buffer = io.BytesIO()
    folded = fold_batchnorm(model).cpu().eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # exporter chatter about constant folding
            torch.onnx.export(folded, example[:1].detach().cpu().float(), buffer,
                              input_names=["images"], output_names=["scores"],
                              dynamic_axes={"images": {0: "batch"}, "scores": {0: "batch"}},
                              dynamo=False)
    except Exception as exc:  # an operator the exporter does not support
        raise ValueError(f"engine='onnxruntime': the model cannot be exported to ONNX "
                         f"({type(exc).__name__}: {exc}); use engine='full'") from exc
    return buffer.getvalue()


class OnnxRuntimeModel(nn.Module):
    """A PyTorch-callable stand-in for ``model`` that runs it with ONNX Runtime on the CPU.

    Built from ``example`` images (for the shape) and checked against ``model`` on them:
    the same labels and scores within ``atol``, else ``ValueError``. Thread count defaults
    to PyTorch's, so both engines use the same cores; results are deterministic for a
    fixed thread count and batch size, like PyTorch's CPU kernels.
    """

    def __init__(self, model: nn.Module, example: torch.Tensor, threads: int | None = None,
                 atol: float = 1e-3) -> None:
        super().__init__()
        ort = _onnxruntime()
        if example.device.type != "cpu":
            raise ValueError("engine='onnxruntime' runs on the CPU; move the images there "
                             "or use engine='full' on the GPU")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # Idle ORT threads would spin while PyTorch builds the next chunk, fighting its own
        # threads for the cores: 2,200 queries/s in the attack with spinning, 3,300 without
        # (2 CPU cores, 128 rows per call; one ad-hoc run of the attack on 10 images for 10
        # generations, queries / query_seconds).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(export_onnx(model, example), options,
                                            providers=["CPUExecutionProvider"])
        if [i.name for i in self.session.get_inputs()] != ["images"]:
            raise ValueError("engine='onnxruntime': the exported graph does not read the "
                             "images (the model leaves PyTorch inside forward); use "
                             "engine='full'")
        self._check(model, example, atol)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.device.type != "cpu":
            raise ValueError("engine='onnxruntime' runs on the CPU")
        array = images.detach().float().contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {"images": array})[0])

    def _check(self, model: nn.Module, example: torch.Tensor, atol: float) -> None:
        with torch.inference_mode():
            reference, got = model(example), self(example)
        if not torch.isfinite(reference).all():
            return  # a NaN model: the attack's own output check names the problem
        if not scores_agree(reference.float(), got, atol):
            raise ValueError("engine='onnxruntime': the exported model's scores differ "
                             "from the PyTorch model's; use engine='full'")


class OnnxRuntimeScorer(Scorer):
    """Full passes by ONNX Runtime on the CPU (:class:`OnnxRuntimeModel`,
    optional extra ``pixelprior[onnx]``)."""

    name = "onnxruntime"

    def __init__(self, model: nn.Module, example: torch.Tensor, precision: str = "fp32"
                 ) -> None:
        if precision != "fp32":
            raise ValueError("engine='onnxruntime' runs in fp32 only")
        super().__init__(model, precision)
        self.runtime = OnnxRuntimeModel(model, example[:8])

    @torch.inference_mode()
    def logits(self, state: torch.Tensor, owner: torch.Tensor, genes: torch.Tensor
               ) -> torch.Tensor:
        return self.runtime(perturb_rows(state, owner, genes))

    def image_logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.runtime(images)

