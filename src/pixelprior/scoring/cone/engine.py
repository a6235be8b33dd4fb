"""The incremental engine: scores of one-pixel changes of cached clean images for any
network ``torch.fx`` can trace (see the package docstring)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .graph import FxUnsupportedError, TracedGraph
from .plan import Plan, Planner
from .runtime import FxCache, Query

__all__ = ["FxIncrementalForward", "fx_incremental_forward"]


class FxIncrementalForward:
    """Scores of one-pixel changes of cached clean images.

    >>> engine = FxIncrementalForward(model)
    >>> cache = engine.prepare(images)                     # [B, C, H, W] in [0, 1]
    >>> logits = engine(cache, owner, y, x, color)         # rows: image, pixel, color

    Args:
        model: the network, in eval mode.
        fold: fold BatchNorm into convolutions (see :class:`TracedGraph`).
        float_as: run ``.float()`` calls as casts to this dtype (see
            :class:`TracedGraph`).
        decompose: divisions by values that change with the pixel and normalisations
            as the operations the bound rules relax (see :class:`TracedGraph`; the
            verifier's engines).
        source_dtype: the dtype of the model ``model`` copies (see :class:`TracedGraph`).
        shape: the images' ``(C, H, W)``, where settings the model computes from sizes
            are read on them (see :class:`TracedGraph`; the verifier's engines).

    Raises:
        torch.fx.proxy.TraceError (or another tracing error): ``torch.fx`` cannot trace it.
        FxUnsupportedError: the graph has in-place operations or several image inputs.
    """

    def __init__(self, model: nn.Module, fold: bool = True,
                 float_as: torch.dtype | None = None, decompose: bool = False,
                 source_dtype: torch.dtype | None = None,
                 shape: tuple[int, ...] | None = None) -> None:
        self.graph = TracedGraph(model, fold, float_as, decompose, source_dtype, shape)
        self._plans: dict[tuple, Plan] = {}

    @property
    def graph_module(self) -> fx.GraphModule:
        """The traced copy the engine runs."""
        return self.graph.graph_module

    def plan(self, images: torch.Tensor) -> Plan:
        """The plan for images of this shape (built once, from one image's clean pass).

        Args:
            images: float ``[B, C, H, W]``.

        Returns:
            The plan of their size, dtype and device.
        """
        key = (tuple(images.shape[1:]), images.dtype, images.device)
        if key not in self._plans:
            with torch.inference_mode():
                shapes = {node: value.shape if isinstance(value, torch.Tensor) else None
                          for node, value in self.graph.clean(images[:1])}
            self._plans[key] = Planner(self.graph, shapes, tuple(images.shape[-2:]),
                                       images.device).plan()
        return self._plans[key]

    def problem(self, images: torch.Tensor) -> str | None:
        """Why the cone does not pay for images of this shape (``None`` when it does)."""
        return self.plan(images).problem

    def macs(self, images: torch.Tensor) -> tuple[int, int]:
        """Multiply-accumulates per row: the cone's and the full pass's (conv and linear
        layers only)."""
        plan = self.plan(images)
        return plan.cone_macs, plan.full_macs

    @torch.inference_mode()
    def prepare(self, images: torch.Tensor) -> FxCache:
        """Run the clean images once, keeping what the windows need.

        Args:
            images: float ``[B, C, H, W]`` in [0, 1].

        Returns:
            The cache every query of these images reuses.
        """
        plan = self.plan(images)
        tensors = {}
        for node, value in self.graph.clean(images):
            for key, (pads, fill) in plan.needs.get(node, {}).items():
                if pads is not None:
                    value_padded = F.pad(value, pads, value=fill)
                    tensors[key] = value_padded.permute(0, 2, 3, 1).contiguous()
                else:
                    tensors[key] = value.permute(0, 2, 3, 1).contiguous()
        return FxCache(images, tensors, plan)

    @staticmethod
    def concat(parts: list[FxCache]) -> FxCache:
        """One cache of several images' caches (prepared one image at a time)."""
        first = parts[0]
        return FxCache(torch.cat([p.images for p in parts]),
                       {k: torch.cat([p.tensors[k] for p in parts]) for k in first.tensors},
                       first.plan)

    @torch.inference_mode()
    def __call__(self, cache: FxCache, owner: torch.Tensor, y: torch.Tensor, x: torch.Tensor,
                 color: torch.Tensor) -> torch.Tensor:
        """Logits of rows ``n``: image ``owner[n]`` with pixel ``(y[n], x[n])`` set to
        ``color[n]``.

        Args:
            cache: from :meth:`prepare`.
            owner, y, x: long ``[N]``.
            color: float ``[N, C]`` in [0, 1].

        Returns:
            float ``[N, K]`` scores, as the model's full pass gives them (to float tolerance).
        """
        q = Query(cache, owner, y, x, color.to(cache.images.dtype))
        env: dict[fx.Node, Any] = dict(self.graph.statics)
        result = None
        for node, step, done in cache.plan.steps:
            env[node] = result = step.run(q, env)
            for n in done:
                del env[n]
        return result


def fx_incremental_forward(model: nn.Module, example: torch.Tensor
                           ) -> tuple[FxIncrementalForward | None, str | None]:
    """The fx cone engine for ``model`` on images like ``example``, or why it does not apply.

    Args:
        model: the network, in eval mode.
        example: float ``[B, C, H, W]``, images of the size the attack will query.

    Returns:
        ``(engine, None)``, or ``(None, reason)`` (a one-line reason naming the operation).
    """
    if model.training:
        return None, "the model is in training mode"
    try:
        engine = FxIncrementalForward(model)
    except FxUnsupportedError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - tracing fails in many ways
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return None, f"torch.fx cannot trace the model ({type(exc).__name__}: {message})"
    try:
        problem = engine.problem(example)
    except Exception as exc:  # noqa: BLE001 - an op the planner did not foresee
        return None, f"planning failed ({type(exc).__name__}: {exc})"
    return (None, problem) if problem else (engine, None)
