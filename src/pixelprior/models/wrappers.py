"""Wrappers that change what a model takes: :class:`ResizeInside` (a resize inside the
model), :class:`Normalize` (mean/std inside the model) and :class:`OnnxModel` (an ONNX
graph as an ``nn.Module``)."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import GradientsUnavailableError

# ONNX input element types pixelprior feeds (images are float32 and cast to these)
ONNX_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
              "tensor(double)": np.float64}

__all__ = ["ONNX_TYPES", "ModelSettingError", "Normalize", "OnnxModel", "ResizeInside",
           "normalization_problem", "ort_session"]


class ModelSettingError(ValueError):
    """A setting given with a model that cannot be right (mean/std out of range, or of
    another count than the model's channels): a usage error, not a failing model."""


class ResizeInside(nn.Module):
    """Wrap a model so it takes the published 299×299 images and resizes inside.

    The attack then searches over the 299×299 pixels (a pixel of the published image),
    and the resize to the model's ``size`` is part of the differentiable model.

    Args:
        model: takes ``float [B, C, size, size]`` images in [0, 1].
        size: the side the images are resized to (bilinear, antialiased).
    """

    def __init__(self, model: nn.Module, size: int = 224) -> None:
        super().__init__()
        self.model = model
        self.size = size
        self.class_names = getattr(model, "class_names", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of ``x``.

        Args:
            x: ``float [B, C, H, W]`` in [0, 1], any ``H, W``.

        Returns:
            The model's scores ``float [B, K]`` of ``x`` resized to ``size × size``.
        """
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                          antialias=True)
        return self.model(x)


def _values(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{float(v):g}" for v in values) + ")"


def normalization_problem(mean: Sequence[float] | None, std: Sequence[float] | None
                          ) -> str | None:
    """Why ``mean``/``std`` cannot be the normalisation of images in [0, 1], or ``None``.

    Refused: only one of them; no values; NaN or infinite values; ``std <= 0``; values
    on the 0–255 scale (``mean > 1`` or ``std > 1``: pixelprior feeds images in
    [0, 1]); a negative mean.

    Args:
        mean: per-channel mean, or ``None`` (no normalisation wrapped around the model).
        std: per-channel standard deviation, or ``None``.

    Returns:
        One line saying what is wrong and what to do, or ``None`` when they can be used.
    """
    if (mean is None) != (std is None):
        return "give both mean and std (or neither: the model normalises inside)"
    if mean is None or std is None:
        return None
    if not len(mean) or not len(std):
        return f"mean/std name no value (mean {_values(mean)}, std {_values(std)})"
    every = [float(v) for v in (*mean, *std)]
    if not all(math.isfinite(v) for v in every):
        return (f"mean/std must be finite numbers, got mean {_values(mean)}, std "
                f"{_values(std)}")
    if any(float(s) <= 0 for s in std):
        return f"std must be positive, got {_values(std)}"
    if any(v > 1 for v in every):
        return (f"mean/std are on the 0–255 scale (mean {_values(mean)}, std "
                f"{_values(std)}); pixelprior feeds images in [0, 1]: divide by 255 (mean "
                f"{_values([v / 255 for v in mean])}, std {_values([v / 255 for v in std])})")
    if any(float(m) < 0 for m in mean):
        return (f"mean must lie in [0, 1] (the images are in [0, 1]), got {_values(mean)}")
    return None


# what to check when a model gets few of its images right: the range it takes
RANGE_ADVICE = ("check the input range: pixelprior feeds images in [0, 1]; a model that "
                "takes [-1, 1] needs --mean 0.5 --std 0.5, one that takes [0, 255] --mean 0 "
                "--std 0.00392156862745098 (1/255), one trained on normalised images its "
                "mean/std; and that its classes are the data's (--classes)")


class Normalize(nn.Module):
    """Wrap a model that expects normalised inputs so it takes images in [0, 1].

    ``forward(x) = model((x - mean) / std)``; mean and std are non-persistent buffers, so
    the ``state_dict`` holds the model's own keys only (under ``model.``).

    Args:
        model: takes normalised ``float [B, C, H, W]`` images.
        mean: per-channel mean on the [0, 1] scale (1 or ``C`` values).
        std: per-channel standard deviation on the [0, 1] scale (as many as ``mean``).

    Raises:
        ModelSettingError: a value :func:`normalization_problem` refuses.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if problem := normalization_problem(mean, std):
            raise ModelSettingError(problem)
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of ``x``.

        Args:
            x: ``float [B, C, H, W]`` in [0, 1].

        Returns:
            The model's scores ``float [B, K]`` of ``(x - mean) / std``.
        """
        return self.model((x - self.mean) / self.std)


def ort_session(path: Path):
    """An ONNX Runtime session of ``path`` on the CPU, with torch's thread count and no
    warnings on stderr.

    Args:
        path: the ONNX file.

    Returns:
        ``onnxruntime.InferenceSession``.

    Raises:
        ImportError: ``onnxruntime`` is not installed.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no warnings on stderr
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxModel(nn.Module):
    """An ONNX graph as an ``nn.Module``: ONNX Runtime answers queries, a PyTorch copy
    (``twin``, from ``onnx2torch``) answers whenever a gradient is needed.

    Args:
        path: the ONNX file (the session is rebuilt from it when the module is pickled).
        twin: the converted PyTorch module, or ``None`` (query-only).
        prefer_twin: run every forward with the twin (on CUDA, where it is faster).
        session: an ``onnxruntime.InferenceSession`` of ``path`` already open.
    """

    def __init__(self, path: Path, twin: nn.Module | None = None,
                 prefer_twin: bool = False, session=None) -> None:
        super().__init__()
        self.path = str(path)
        self.session = session if session is not None else ort_session(path)
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.dtype = ONNX_TYPES.get(first.type, np.float32)
        self.batch = first.shape[0] if isinstance(first.shape[0], int) else None
        self.output_name = self.session.get_outputs()[0].name
        self.twin = twin
        self.prefer_twin = prefer_twin and twin is not None
        self.twin_problem: str | None = None if twin is not None else "not converted"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of ``x``: from the twin when a gradient is needed (or preferred), else
        from ONNX Runtime.

        Args:
            x: ``float [B, C, H, W]`` in [0, 1].

        Returns:
            ``float32 [B, K]`` on ``x``'s device.

        Raises:
            GradientsUnavailableError: a gradient is needed and there is no twin.
        """
        needs_grad = torch.is_grad_enabled() and x.requires_grad
        if self.twin is not None and (needs_grad or self.prefer_twin):
            return self.twin(x)
        if needs_grad:
            why = f"no PyTorch copy of this ONNX graph ({self.twin_problem})"
            raise GradientsUnavailableError(
                f"{self.path}: {why}, so gradients are unavailable: use the occlusion map "
                "(or convert the model to TorchScript)", why)
        return self.run(x)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of ``x`` from ONNX Runtime (on the CPU), returned on ``x``'s device.

        Args:
            x: ``float [B, C, H, W]``.

        Returns:
            ``float32 [B, K]`` on ``x``'s device.
        """
        array = x.detach().to("cpu", torch.float32).contiguous().numpy().astype(
            self.dtype, copy=False)
        if self.batch is None:
            out = self.session.run([self.output_name], {self.input_name: array})[0]
        else:
            out = np.concatenate([self._fixed_batch(array[i:i + self.batch])
                                  for i in range(0, len(array), self.batch)])
        return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(x.device)

    def _fixed_batch(self, part: np.ndarray) -> np.ndarray:
        rows = len(part)
        if rows < self.batch:
            part = np.concatenate([part, np.repeat(part[:1], self.batch - rows, axis=0)])
        return self.session.run([self.output_name], {self.input_name: part})[0][:rows]

    def drop_twin(self, reason: str) -> None:
        """Stop using the PyTorch copy (it disagrees with ONNX Runtime, say).

        Args:
            reason: why, in words (said when a gradient is asked for).
        """
        self.twin, self.prefer_twin, self.twin_problem = None, False, reason

    def __deepcopy__(self, memo: dict) -> OnnxModel:
        memo[id(self.session)] = self.session  # the session is shared, never copied
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        new.__dict__.update({k: copy.deepcopy(v, memo) for k, v in self.__dict__.items()})
        return new

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["session"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.session = ort_session(Path(self.path))
