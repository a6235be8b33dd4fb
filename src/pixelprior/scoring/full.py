"""Full forward passes of every candidate: any model, by default a verified faster copy
(BatchNorm folded, channels-last), optionally CUDA graphs for the fixed chunk shape."""

from __future__ import annotations

import torch
from torch import nn

from ..models import inference_model
from .base import Scorer, perturb_rows


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

