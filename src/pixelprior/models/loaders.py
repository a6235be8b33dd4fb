"""Models from anywhere: one spec string, one loader, one description of what was loaded.

:func:`load_model_spec` takes

- a registered name (``squeezenet1_1-cifar10``; see :data:`~pixelprior.models.REGISTRY`);
- a TorchScript file (``*.pt`` / ``*.pth`` / ``*.ts`` that ``torch.jit.load`` reads);
- an ONNX file (``*.onnx``): queries run in ONNX Runtime, gradients through a PyTorch
  copy converted by ``onnx2torch`` (when the conversion fails the model is query-only:
  :attr:`LoadedModel.gradients` is False and gradient maps are unavailable);
- ``module:callable`` or ``path/to/file.py:callable``: a factory returning an
  ``nn.Module``, with ``weights`` a state dict loaded strictly;
- a pickled ``nn.Module`` (``torch.save(model)``), only with ``allow_pickle=True``:
  unpickling runs code from the file.

and returns a :class:`LoadedModel`: the module (eval mode, on the device, taking float
images in [0, 1]), what it takes (input size, channels), what it returns (logits or
probabilities, how many classes, their names) and notes in words on every assumption.
Every failure is a :class:`ModelLoadError` (a :class:`~pixelprior.models.WeightsError`)
of one short line.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import pickle
import re
import sys
import types
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data import ImageSet, parse_classes, to_float
from ..data.sizes import Size, as_height_width, format_size
from .registry import REGISTRY, WeightsError, load_model, model_spec, read_state_dict

KINDS = ("registered", "torchscript", "onnx", "module", "pickle")
OUTPUTS = ("logits", "probabilities")
PROBE_SIZES = (32, 224, 28, 64, 96, 128, 299, 256)  # tried when no size is declared
PROBE_SEED = 0
PROBE_BATCH = 2
PROBABILITY_ATOL = 1e-4
REASON_CHARS = 120
ONE_CLASS_SHARE = 0.9
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L")
_ONNX_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
               "tensor(double)": np.float64}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MODULE_SPEC = re.compile(r"^(?P<target>[A-Za-z_][\w.]*|.+\.py):(?P<attr>[A-Za-z_][\w.]*)$")


__all__ = [
    "KINDS", "OUTPUTS", "GradientsUnavailableError", "LoadedModel", "ModelInputError",
    "ModelLoadError", "Normalize", "OnnxModel", "accuracy_on", "load_model_spec",
    "model_spec_problem", "one_class_warning", "output_kind", "predict_labels",
    "short_reason", "to_model_channels",
]


class ModelLoadError(WeightsError):
    """A model spec that does not load; the message says what was tried and why."""


class _Definite(ModelLoadError):
    """A definite answer about a file (no point trying other kinds)."""


class ModelInputError(ModelLoadError, ValueError):
    """Images that do not fit the model (size, channels, labels beyond its classes)."""


class GradientsUnavailableError(ModelLoadError):
    """A gradient was asked of a query-only model (ONNX without a PyTorch copy)."""


@dataclass(frozen=True)
class LoadedModel:
    """A model and what is known about it.

    ``input_size``: ``(height, width)`` (an ``int`` for a square) the model takes, or
    ``None`` when it runs at any size (give it the images at their own size).
    ``channels``: what the model takes (3, or 1: see :func:`to_model_channels`).
    ``output``: ``"logits"`` or ``"probabilities"`` (decided by a probe forward).
    ``gradients``: whether gradient maps can run (False: occlusion only).
    """

    model: nn.Module
    name: str
    kind: str
    input_size: int | tuple[int, int] | None
    channels: int
    num_classes: int
    class_names: tuple[str, ...]
    output: str
    gradients: bool
    notes: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def size_hw(self) -> tuple[int, int] | None:
        """``input_size`` as ``(height, width)``."""
        return _hw(self.input_size)

    @property
    def has_class_names(self) -> bool:
        """Whether the class names are real (not the numbering ``0..K-1``)."""
        return self.class_names != _numbered(self.num_classes)


@dataclass
class _Raw:
    """What building a spec found, before the probe."""

    model: nn.Module
    kind: str
    source: str
    notes: list[str]
    input_size: tuple[int, int] | None = None
    size_is_fixed: bool = False  # declared by the registry or the ONNX graph
    size_from: str = ""
    channels: int | None = None
    class_names: tuple[str, ...] | None = None
    normalises: bool = False  # known to normalise inside (registered models)


@dataclass
class _Probe:
    """What one probe forward found."""

    hw: tuple[int, int] | None  # None: runs at any size
    channels: int
    images: torch.Tensor
    scores: torch.Tensor
    notes: list[str]


# ============================================================================ messages
def short_reason(error: BaseException | str, limit: int = REASON_CHARS) -> str:
    """An exception (or text) as one short line: no ANSI codes, first line, first sentence
    when that line is too long, cut to ``limit`` characters."""
    text = error if isinstance(error, str) else (
        f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
    lines = [part.strip() for part in _ANSI.sub("", text).splitlines() if part.strip()]
    line = lines[0] if lines else ""
    if len(lines) > 1 and ("TorchScript interpreter" in line or line.endswith(":")):
        line = lines[-1]  # a header line; the reason comes last (TorchScript's traceback)
    line = re.sub(r"\s+", " ", line)
    if len(line) > limit and ". " in line[20:]:
        line = line[:20 + line[20:].index(". ")]
    return line if len(line) <= limit else line[:limit - 1].rstrip() + "…"


def _shape(values: Sequence) -> str:
    return "[" + ", ".join("?" if v is None else str(v) for v in values) + "]"


def _numbered(count: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(count))


def _hw(size: Size | Sequence[int] | None) -> tuple[int, int] | None:
    try:
        return as_height_width(size, "input_size")
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from None


def _size_value(hw: tuple[int, int] | None) -> int | tuple[int, int] | None:
    if hw is None:
        return None
    return hw[0] if hw[0] == hw[1] else hw


# ============================================================================ wrappers
class Normalize(nn.Module):
    """Wrap a model that expects normalised inputs so it takes images in [0, 1].

    ``forward(x) = model((x - mean) / std)``; mean and std are non-persistent buffers, so
    the ``state_dict`` holds the model's own keys only (under ``model.``).
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


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
        self.session = session if session is not None else _ort_session(path)
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.dtype = _ONNX_TYPES.get(first.type, np.float32)
        self.batch = first.shape[0] if isinstance(first.shape[0], int) else None
        self.output_name = self.session.get_outputs()[0].name
        self.twin = twin
        self.prefer_twin = prefer_twin and twin is not None
        self.twin_problem: str | None = None if twin is not None else "not converted"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        needs_grad = torch.is_grad_enabled() and x.requires_grad
        if self.twin is not None and (needs_grad or self.prefer_twin):
            return self.twin(x)
        if needs_grad:
            raise GradientsUnavailableError(
                f"{self.path}: no PyTorch copy of this ONNX graph ({self.twin_problem}), so "
                "gradients are unavailable: use the occlusion map (or convert the model to "
                "TorchScript)")
        return self.run(x)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of ``x`` from ONNX Runtime (on the CPU), returned on ``x``'s device."""
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
        """Stop using the PyTorch copy (it disagrees with ONNX Runtime, say)."""
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
        self.session = _ort_session(Path(self.path))


def to_model_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """RGB images ``[B, 3, H, W]`` as the model's channels: unchanged for 3, the luma
    (ITU-R 601-2, as PIL's ``convert("L")``) for 1.

    Raises:
        ModelInputError: any other combination.
    """
    if images.shape[1] == channels:
        return images
    if channels == 1 and images.shape[1] == 3:
        weights = torch.tensor(LUMA, dtype=images.dtype, device=images.device)
        return (images * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)
    raise ModelInputError(f"images with {images.shape[1]} channels for a model taking "
                          f"{channels}")


# ============================================================================ outputs
def output_kind(scores: torch.Tensor, atol: float = PROBABILITY_ATOL) -> str:
    """``"probabilities"`` when every row lies in [0, 1] and sums to 1 within ``atol``,
    else ``"logits"``."""
    values = scores.detach().double()
    if values.ndim != 2 or values.numel() == 0 or not torch.isfinite(values).all():
        return "logits"
    in_range = bool(values.min() >= -atol) and bool(values.max() <= 1 + atol)
    sums = bool(((values.sum(1) - 1).abs() <= atol).all())
    return "probabilities" if in_range and sums else "logits"


def _check_scores(scores: object, batch: int, where: str) -> torch.Tensor:
    if isinstance(scores, (tuple, list)):
        raise ModelLoadError(f"{where}: the model returns a {type(scores).__name__} of "
                             f"{len(scores)}; it must return one tensor of class scores "
                             "[batch, classes]")
    if not isinstance(scores, torch.Tensor):
        raise ModelLoadError(f"{where}: the model returns {type(scores).__name__}, not a "
                             "tensor of class scores [batch, classes]")
    if scores.ndim != 2 or scores.shape[0] != batch:
        raise ModelLoadError(f"{where}: the model's output has shape "
                             f"{_shape(scores.shape)} for a batch of {batch} images; it must "
                             "be class scores [batch, classes]")
    if scores.shape[1] < 2:
        raise ModelLoadError(f"{where}: the model returns {scores.shape[1]} score per image "
                             f"(shape {_shape(scores.shape)}); it needs at least 2 classes "
                             "(wrap a one-logit binary model to return [0, z])")
    if not torch.isfinite(scores).all():
        raise ModelLoadError(f"{where}: the model returns NaN or infinite scores on random "
                             "images")
    return scores.detach().float()


# ============================================================================ the loader
def load_model_spec(spec: str | Path, *, weights: str | Path | None = None,
                    classes: Sequence[str] | str | Path | None = None,
                    mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                    input_size: Size | None = None, allow_pickle: bool = False,
                    device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model from a spec string; see the module docstring for the forms.

    Args:
        spec: a registered name, a TorchScript / ONNX / pickled-module file, or
            ``module:callable`` / ``file.py:callable``.
        weights: a state dict for a registered model or a ``module:callable`` factory.
        classes: class names (a list, a names file, JSON, or ``"a,b,c"``); their number
            must equal the model's.
        mean: per-channel mean: with ``std``, the model is wrapped (:class:`Normalize`)
            to take images in [0, 1]; without, it is assumed to normalise inside.
        std: per-channel standard deviation (with ``mean``).
        input_size: the model's input side or ``(height, width)``, for models that do
            not declare one (``None``: declared, or found by probing).
        allow_pickle: allow unpickling a full ``nn.Module`` (runs code from the file).
        device: where the model runs.

    Returns:
        The model and what is known about it.

    Raises:
        ModelLoadError: the spec does not load, or the model's output is unusable.
        WeightsError: ``weights`` do not load or do not fit.
        DataError: a class names file that does not exist or does not parse.
    """
    name, device = str(spec), torch.device(device)
    _check_normalisation(mean, std)
    raw = _build(name, weights, allow_pickle, device)
    if mean is not None and raw.normalises:
        raise ModelLoadError(f"{name} normalises inside (its own mean/std); do not pass "
                             "mean/std")
    probe = _probe(raw.model.eval(), raw, _hw(input_size), device, name)
    model, notes = _normalised(raw, probe, mean, std, name)
    scores = _check_scores(_forward(model, probe.images), PROBE_BATCH, name)
    output = output_kind(scores)
    gradients = _gradients(model, raw, probe, notes)
    names = _class_names(classes, raw.class_names, scores.shape[1], notes)
    notes += _output_notes(output, scores.shape[1])
    model.class_names = names  # type: ignore[attr-defined]
    model.pixelprior_name = name  # type: ignore[attr-defined]
    return LoadedModel(model.eval(), name, raw.kind, _size_value(probe.hw), probe.channels,
                       int(scores.shape[1]), names, output, gradients,
                       raw.notes + probe.notes + notes, raw.source)


def _check_normalisation(mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
    if (mean is None) != (std is None):
        raise ModelLoadError("give both mean and std (or neither: the model normalises "
                             "inside)")
    if std is not None and any(float(s) <= 0 for s in std):
        raise ModelLoadError(f"std must be positive, got {tuple(std)}")


def _normalised(raw: _Raw, probe: _Probe, mean, std, name: str
                ) -> tuple[nn.Module, list[str]]:
    if mean is None:
        if raw.normalises:
            return raw.model, []
        return raw.model, ["no mean/std given: the model is assumed to take images in "
                           "[0, 1] and normalise inside (pass mean/std otherwise)"]
    for label, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, probe.channels):
            raise ModelLoadError(f"{name}: {label} has {len(values)} values for a model "
                                 f"taking {probe.channels} channel(s)")
    model = Normalize(raw.model, mean, std).to(probe.images.device).eval()
    return model, [f"wrapped to take images in [0, 1] and normalise inside (mean "
                   f"{tuple(float(v) for v in mean)}, std {tuple(float(v) for v in std)})"]


def _output_notes(output: str, classes: int) -> list[str]:
    if output == "probabilities":
        return [f"outputs probabilities ({classes} classes; rows in [0, 1] summing to 1): "
                "used as they are, never soft-maxed again"]
    return [f"outputs logits ({classes} classes): probabilities are their softmax"]


def _gradients(model: nn.Module, raw: _Raw, probe: _Probe, notes: list[str]) -> bool:
    if raw.kind != "onnx":
        return True
    onnx_model = raw.model
    assert isinstance(onnx_model, OnnxModel)
    if onnx_model.twin is not None:
        problem = _twin_disagrees(onnx_model, probe.images)
        if problem is not None:
            onnx_model.drop_twin(problem)
    if onnx_model.twin is None:
        notes.append(f"no PyTorch copy of the ONNX graph ({onnx_model.twin_problem}): "
                     "queries run in ONNX Runtime; maps that need gradients (every "
                     "sensitivity method except occlusion) are unavailable")
        return False
    where = ("every forward runs the copy (on the GPU)" if onnx_model.prefer_twin
             else "queries run in ONNX Runtime")
    notes.append(f"gradients through a PyTorch copy converted by onnx2torch; {where}")
    return True


def _twin_disagrees(model: OnnxModel, images: torch.Tensor) -> str | None:
    try:
        with torch.no_grad():
            reference, twin = model.run(images), model.twin(images).float()
    except Exception as exc:  # a converted operator that fails to run
        return f"the onnx2torch copy fails: {short_reason(exc)}"
    tolerance = 1e-3 * max(1.0, float(reference.abs().max()))
    if twin.shape != reference.shape or not torch.allclose(twin.to(reference.device),
                                                           reference, atol=tolerance,
                                                           rtol=1e-3):
        return "the onnx2torch copy's scores differ from ONNX Runtime's"
    return None


def _class_names(classes, declared: tuple[str, ...] | None, count: int,
                 notes: list[str]) -> tuple[str, ...]:
    if classes is not None:
        names = parse_classes(classes)
        if len(names) != count:
            raise ModelLoadError(f"{len(names)} class names given for a model with "
                                 f"{count} classes")
        return names
    if declared is not None and len(declared) == count:
        return tuple(str(n) for n in declared)
    if declared is not None:
        notes.append(f"the model's class_names ({len(declared)}) do not match its {count} "
                     "outputs: ignored")
    notes.append(f"no class names: classes are numbered 0..{count - 1} (pass classes)")
    return _numbered(count)


# ============================================================================ probing
def _forward(model: nn.Module, images: torch.Tensor) -> object:
    with torch.no_grad():
        return model(images)


def _probe_images(channels: int, hw: tuple[int, int], device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(PROBE_SEED)
    return torch.rand(PROBE_BATCH, channels, *hw, generator=generator).to(device)


def _probe(model: nn.Module, raw: _Raw, size: tuple[int, int] | None,
           device: torch.device, name: str) -> _Probe:
    """Run the model once on random images to find what it takes and returns."""
    if size is not None and raw.size_is_fixed and size != raw.input_size:
        raise ModelLoadError(f"{name} takes {format_size(raw.input_size)} inputs "
                             f"({raw.size_from}); "
                             f"input_size {format_size(size)} differs")
    channels = (raw.channels,) if raw.channels else (3, 1)
    hw, source = (size, "given") if size is not None else (raw.input_size, raw.size_from)
    if hw is not None:
        probe = _probe_at(model, hw, channels, device, name, source)
    else:
        probe = _search_size(model, channels, device, name)
    if probe.channels == 1:
        probe.notes.append("the model takes 1-channel (grayscale) images: convert RGB "
                           "images with to_model_channels")
    return probe


def _probe_at(model: nn.Module, hw: tuple[int, int], channels: Sequence[int],
              device: torch.device, name: str, source: str) -> _Probe:
    failures = []
    for count in channels:
        images = _probe_images(count, hw, device)
        try:
            scores = _forward(model, images)
        except Exception as exc:  # the wrong channels, size, or a broken model
            failures.append(f"{_shape(images.shape)}: {short_reason(exc)}")
            continue
        return _Probe(hw, count, images, _check_scores(scores, PROBE_BATCH, name),
                      [f"input {format_size(hw)} ({source})"])
    raise ModelLoadError(f"{name} fails on random images {'; '.join(failures)}")


def _search_size(model: nn.Module, channels: Sequence[int], device: torch.device,
                 name: str) -> _Probe:
    """Probe :data:`PROBE_SIZES` until the model runs at two of them (any size) or all
    were tried (the one size it runs at)."""
    first_failure = None
    for count in channels:
        ran: list[tuple[tuple[int, int], torch.Tensor, object]] = []
        for side in PROBE_SIZES:
            images = _probe_images(count, (side, side), device)
            try:
                ran.append(((side, side), images, _forward(model, images)))
            except Exception as exc:  # not this size (or channels)
                first_failure = first_failure or f"{_shape(images.shape)}: {short_reason(exc)}"
                continue
            if len(ran) == 2:
                break
        if ran:
            return _searched(ran, count, name)
    raise ModelLoadError(f"{name} declares no input size and runs at none of "
                         f"{', '.join(map(str, PROBE_SIZES))} px ({first_failure}); pass "
                         "input_size (--input-size)")


def _searched(ran: list, channels: int, name: str) -> _Probe:
    hw, images, scores = ran[0]
    scores = _check_scores(scores, PROBE_BATCH, name)
    if len(ran) == 2:
        return _Probe(None, channels, images, scores, [
            f"input of any size (the model runs at {format_size(hw)} and "
            f"{format_size(ran[1][0])}): images "
            "are used at their own size (pass input_size to resize them)"])
    return _Probe(hw, channels, images, scores, [
        f"input {format_size(hw)} (inferred: the only probe size the model runs at; pass "
        "input_size to be sure)"])


# ============================================================================ building
def _build(spec: str, weights, allow_pickle: bool, device: torch.device) -> _Raw:
    if spec in REGISTRY:
        return _registered(spec, weights, device)
    target = _split_module_spec(spec)
    if target is not None:
        return _from_factory(spec, *target, weights, device)
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelLoadError(_unknown_spec(spec))
    if path.is_dir():
        raise ModelLoadError(f"model {spec!r} is a folder, not a model file")
    if weights is not None:
        raise ModelLoadError(f"weights apply to registered models and module:callable "
                             f"specs; {path.name} holds its own")
    return _from_file(path, allow_pickle, device)


def _unknown_spec(spec: str) -> str:
    return (f"unknown model {spec!r}: not a registered name ({', '.join(REGISTRY)}), an "
            "existing model file (.pt/.pth/.ts TorchScript, .onnx, a pickled module) or "
            "module:callable")


def _registered(name: str, weights, device: torch.device) -> _Raw:
    spec = model_spec(name)
    model = load_model(name, weights, device=device)
    source = str(weights) if weights is not None else (
        f"bundled weights {spec.bundled}" if spec.bundled else f"weights {spec.filename}")
    side = spec.input_size
    return _Raw(model, "registered", source, [f"registered model {name}"], (side, side),
                True, "from the registry", 3, tuple(spec.class_names()), True)


# ----------------------------------------------------------------------------- factories
def _split_module_spec(spec: str) -> tuple[str, str] | None:
    match = _MODULE_SPEC.match(spec)
    return (match["target"], match["attr"]) if match else None


def _from_factory(spec: str, target: str, attr: str, weights, device: torch.device) -> _Raw:
    module = _import_target(target)
    factory = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            public = sorted(n for n in dir(module) if not n.startswith("_")
                            and callable(getattr(module, n)))
            raise ModelLoadError(f"{target} has no {attr!r} (callables there: "
                                 f"{', '.join(public[:10]) or 'none'})")
        factory = getattr(factory, part)
    try:
        model = factory()
    except Exception as exc:  # the user's code
        raise ModelLoadError(f"{spec}: calling {attr}() failed: {short_reason(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"{spec}: {attr}() returned {type(model).__name__}, not an "
                             "nn.Module")
    notes = [f"built by {spec}"]
    if weights is not None:
        _load_weights(model, Path(weights).expanduser(), spec, notes)
    else:
        notes.append("no weights given: the factory's own parameters (random unless it "
                     "loads weights itself)")
    source = f"{getattr(module, '__file__', target)}:{attr}"
    return _Raw(model.to(device), "module", source, notes, _declared_size(model),
                size_from="declared by the model", class_names=_declared_names(model))


def _import_target(target: str) -> types.ModuleType:
    if target.endswith(".py"):
        return _import_file(Path(target).expanduser())
    try:
        return importlib.import_module(target)
    except ImportError as exc:
        raise ModelLoadError(f"cannot import {target}: {short_reason(exc)} (is it installed "
                             "or on PYTHONPATH?)") from None
    except Exception as exc:  # the module's own code failed
        raise ModelLoadError(f"importing {target} failed: {short_reason(exc)}") from None


def _import_file(path: Path) -> types.ModuleType:
    if not path.is_file():
        raise ModelLoadError(f"{path} does not exist")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    name = f"pixelprior_user_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
    found = importlib.util.spec_from_file_location(name, path)
    if found is None or found.loader is None:
        raise ModelLoadError(f"{path}: not an importable Python file")
    module = importlib.util.module_from_spec(found)
    sys.modules[name] = module  # pickling and dataclasses look modules up by name
    try:
        found.loader.exec_module(module)
    except Exception as exc:  # the file's own code failed
        del sys.modules[name]
        raise ModelLoadError(f"importing {path} failed: {short_reason(exc)}") from None
    return module


def _load_weights(model: nn.Module, path: Path, spec: str, notes: list[str]) -> None:
    state = read_state_dict(path)
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
        notes.append("weights saved from a DataParallel wrapper: 'module.' prefix removed")
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if "mismatch" in line]
        raise WeightsError(f"{path}: weights do not fit {spec}: "
                           f"{short_reason(lines[0] if lines else str(exc))}") from None
    if result.missing_keys or result.unexpected_keys:
        parts = [f"{len(keys)} {label} key(s) (e.g. {', '.join(keys[:2])})"
                 for label, keys in (("missing", result.missing_keys),
                                     ("unexpected", result.unexpected_keys)) if keys]
        raise WeightsError(f"{path}: weights do not fit {spec}: {'; '.join(parts)}")
    notes.append(f"weights {path.name} loaded strictly")


def _declared_size(model: nn.Module) -> tuple[int, int] | None:
    try:
        return _hw(getattr(model, "input_size", None))
    except ModelLoadError:
        return None


def _declared_names(model: nn.Module) -> tuple[str, ...] | None:
    names = getattr(model, "class_names", None)
    if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
        return tuple(names)
    return None


# ----------------------------------------------------------------------------- files
def _from_file(path: Path, allow_pickle: bool, device: torch.device) -> _Raw:
    attempts = [("TorchScript", _torchscript), ("ONNX", _onnx),
                ("PyTorch file", _torch_file)]
    if path.suffix.lower() == ".onnx":
        attempts.insert(0, attempts.pop(1))
    tried = []
    for label, attempt in attempts:
        try:
            return attempt(path, allow_pickle, device)
        except _Definite:
            raise
        except ImportError as exc:
            tried.append(f"{label}: {short_reason(exc)}")
        except Exception as exc:  # this kind does not read the file: try the next
            reason = str(exc) if isinstance(exc, ModelLoadError) else short_reason(exc)
            tried.append(f"{label}: {reason}")
    raise ModelLoadError(f"cannot load {path} as a model; tried {'; '.join(tried)}")


def _torchscript(path: Path, allow_pickle: bool, device: torch.device) -> _Raw:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torch.jit.load(str(path), map_location=device)
    return _Raw(model, "torchscript", str(path.resolve()), [f"TorchScript {path.name}"],
                class_names=_declared_names(model))


def _torch_file(path: Path, allow_pickle: bool, device: torch.device) -> _Raw:
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = _ANSI.sub("", str(exc))
        found = re.findall(r"GLOBAL ([\w.]+)", text)
        if not found:  # not refused objects: a broken or foreign file
            detail = [line for line in text.splitlines() if "Unsupported" in line]
            raise ModelLoadError(f"not a readable PyTorch file "
                                 f"({short_reason(detail[-1] if detail else text)})") from None
        if not allow_pickle:
            raise _Definite(
                f"{path} holds pickled Python objects ({found[0]}), e.g. a model saved with "
                "torch.save(model); unpickling runs code from the file: pass allow_pickle="
                "True (--allow-pickle) if you trust it, or save TorchScript or a state "
                "dict instead") from None
        value = _unpickle(path, device)
    if isinstance(value, nn.Module):
        return _Raw(value.to(device), "pickle", str(path.resolve()),
                    [f"pickled module {type(value).__name__} from {path.name} (allow_pickle)"],
                    _declared_size(value), size_from="declared by the model",
                    class_names=_declared_names(value))
    if isinstance(value, dict) and value and all(isinstance(v, torch.Tensor)
                                                 for v in _state_of(value).values()):
        keys = list(_state_of(value))
        raise _Definite(f"{path} holds a state dict ({len(keys)} tensors, e.g. {keys[0]!r}) "
                        "but no architecture: load it as weights of module:callable "
                        "(--weights)")
    raise ModelLoadError(f"holds a {type(value).__name__}, not a model")


def _state_of(value: dict) -> dict:
    inner = value.get("model", value.get("state_dict"))
    return inner if isinstance(inner, dict) else value


def _unpickle(path: Path, device: torch.device) -> object:
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except (AttributeError, ModuleNotFoundError) as exc:
        raise _Definite(f"{path}: the pickled model's class cannot be found "
                        f"({short_reason(exc)}); import the module that defines it first, "
                        "or save TorchScript instead") from None
    except Exception as exc:  # unpickling the user's objects
        raise _Definite(f"{path}: unpickling failed: {short_reason(exc)}") from None


# ----------------------------------------------------------------------------- ONNX
def _onnx(path: Path, allow_pickle: bool, device: torch.device) -> _Raw:
    session = _ort_session(path)
    name, channels, hw = _onnx_input(path, session)
    twin, problem = _onnx_twin(path)
    model = OnnxModel(path, twin, prefer_twin=device.type != "cpu", session=session)
    if twin is None:
        model.twin_problem = problem
    notes = [f"ONNX {path.name} (input {name!r})"]
    if model.batch is not None:
        notes.append(f"the ONNX graph has a fixed batch of {model.batch}: ONNX Runtime runs "
                     f"{model.batch} image(s) per call (export it with a dynamic batch axis "
                     "for speed)")
    return _Raw(model.to(device), "onnx", str(path.resolve()), notes, hw, hw is not None,
                "declared by the ONNX graph", channels)


def _ort_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no warnings on stderr
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _onnx_input(path: Path, session) -> tuple[str, int, tuple[int, int] | None]:
    """The graph's image input: its name, channels and fixed ``(height, width)``."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise _Definite(f"{path}: the ONNX graph has {len(inputs)} inputs "
                        f"({', '.join(i.name for i in inputs)}); it must take one batch of "
                        "images")
    first = inputs[0]
    if first.type not in _ONNX_TYPES:
        raise _Definite(f"{path}: the ONNX input {first.name!r} is {first.type}; it must be "
                        "a float tensor of images")
    channels, hw = _onnx_layout(path, first.name, list(first.shape))
    return first.name, channels, hw


def _onnx_layout(path: Path, name: str, shape: list) -> tuple[int, tuple[int, int] | None]:
    need = "it must be NCHW [N, C, H, W] with C = 1 or 3"
    if len(shape) != 4:
        raise _Definite(f"{path}: the ONNX input {name!r} has shape {_shape(shape)}; {need}")
    _, channels, height, width = shape
    if channels not in (1, 3):
        layout = ("channels last (NHWC)" if width in (1, 3) else
                  f"{channels} channels" if isinstance(channels, int) else
                  "no fixed channel count")
        raise _Definite(f"{path}: the ONNX input {name!r} has shape {_shape(shape)}, "
                        f"{layout}; {need} (re-export it channels first)")
    fixed = isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0
    return channels, (height, width) if fixed else None


def _onnx_twin(path: Path) -> tuple[nn.Module | None, str | None]:
    """The graph converted to PyTorch by ``onnx2torch``, or ``None`` and why not."""
    try:
        import onnx

        onnx2torch = _import_onnx2torch()
    except ImportError as exc:
        return None, f"onnx2torch is not available: {short_reason(exc)}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return onnx2torch.convert(onnx.load(str(path))).eval(), None
    except Exception as exc:  # an operator onnx2torch does not convert
        return None, f"onnx2torch cannot convert it: {short_reason(exc, 90)}"


def _import_onnx2torch() -> types.ModuleType:
    """``onnx2torch``, imported without torchvision (used only by its NMS and RoiAlign
    converters, which then fail with a clear error if a graph needs them)."""
    if "onnx2torch" in sys.modules or "torchvision" in sys.modules:
        return importlib.import_module("onnx2torch")
    with _torchvision_stub():
        return importlib.import_module("onnx2torch")


@contextmanager
def _torchvision_stub():
    def missing(name: str):
        def call(*args, **kwargs):
            raise ModelLoadError(f"the ONNX graph needs torchvision.ops.{name}, which "
                                 "pixelprior does not use")
        return call

    package, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    ops.__getattr__ = missing  # type: ignore[attr-defined]
    package.ops = ops  # type: ignore[attr-defined]
    stubs = {"torchvision": package, "torchvision.ops": ops}
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for key, stub in stubs.items():
            if sys.modules.get(key) is stub:
                del sys.modules[key]


# ============================================================================ checks
def as_registered(spec: str | Path, classes=None, mean=None, std=None,
                  input_size=None) -> bool:
    """Whether ``spec`` is a registered model asked for as it is registered (no option
    that changes it): such a model loads through ``load_model`` exactly as it always did."""
    return str(spec) in REGISTRY and not any((classes, mean, std, input_size))


def model_spec_problem(spec: str | Path) -> str | None:
    """Why ``spec`` cannot name a model (``None`` when it can), without building it: a
    registered name, an existing file, or an importable ``module:callable``."""
    text = str(spec)
    if text in REGISTRY:
        return None
    target = _split_module_spec(text)
    if target is not None:
        return _target_problem(text, target[0])
    path = Path(text).expanduser()
    if path.is_file():
        return None
    if path.exists():
        return f"model {text!r} is a folder, not a model file"
    return _unknown_spec(text)


def _target_problem(spec: str, target: str) -> str | None:
    if target.endswith(".py"):
        path = Path(target).expanduser()
        return None if path.is_file() else f"model {spec!r}: {path} does not exist"
    try:
        found = importlib.util.find_spec(target)
    except (ImportError, ValueError) as exc:
        return f"model {spec!r}: cannot import {target} ({short_reason(exc)})"
    if found is None:
        return f"model {spec!r}: no module named {target!r} (is it installed or on PYTHONPATH?)"
    return None


@torch.inference_mode()
def predict_labels(loaded: LoadedModel, images: ImageSet, device: str | torch.device = "cpu",
                   batch: int = 256) -> torch.Tensor:
    """The model's label for every image of ``images`` (``int64 [N]`` on the CPU).

    Raises:
        ModelInputError: images of another size than the model takes.
    """
    expected, found = loaded.size_hw, tuple(images.images.shape[-2:])
    if expected is not None and found != expected:
        raise ModelInputError(f"the images are {format_size(found)} but {loaded.name} takes "
                              f"{format_size(expected)}; load them with size={loaded.input_size}")
    out = []
    for start in range(0, len(images), batch):
        chunk = to_float(images.images[start:start + batch]).to(device)
        out.append(loaded.model(to_model_channels(chunk, loaded.channels)).argmax(1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def accuracy_on(loaded: LoadedModel, images: ImageSet,
                device: str | torch.device = "cpu") -> float:
    """The share of ``images`` the model classifies correctly.

    Raises:
        ModelInputError: labels beyond the model's classes, or images of another size.
    """
    if len(images) and int(images.labels.max()) >= loaded.num_classes:
        raise ModelInputError(f"labels go up to {int(images.labels.max())} but "
                              f"{loaded.name} has {loaded.num_classes} classes")
    predicted = predict_labels(loaded, images, device)
    return float((predicted == images.labels).float().mean()) if len(images) else 0.0


def one_class_warning(preds: torch.Tensor | Sequence[int],
                      classes: Sequence[str] | int | None = None,
                      share: float = ONE_CLASS_SHARE, min_count: int = 10) -> str | None:
    """A warning when at least ``share`` of ``preds`` are one class (a model fed the
    wrong normalisation, size or channel order often does that); ``None`` otherwise or
    for fewer than ``min_count`` predictions.

    Args:
        preds: predicted labels.
        classes: class names (to name the class), or their number.
        share: the share that triggers the warning.
        min_count: fewer predictions than this never warn.
    """
    values = torch.as_tensor(preds).flatten().long()
    if values.numel() < max(min_count, 1):
        return None
    counts = torch.bincount(values - values.min())
    top = int(counts.argmax())
    label, count = top + int(values.min()), int(counts[top])
    if count < share * values.numel():
        return None
    names = classes if isinstance(classes, Sequence) and not isinstance(classes, str) else None
    named = f"class {label} ({names[label]!r})" if names and 0 <= label < len(names) else (
        f"class {label}")
    return (f"the model puts {count} of {values.numel()} images "
            f"({100 * count / values.numel():.0f}%) in {named}: check its normalisation "
            "(mean/std), input size and class order")
