"""Models from anywhere: one spec string, one loader, one description of what was loaded.

:func:`load_model_spec` takes

- a registered name (``squeezenet1_1-cifar10``; see :data:`~pixelprior.models.REGISTRY`);
- a model file, tried as each of :data:`~pixelprior.models.formats.FILE_FORMATS`: a
  TorchScript file, an ONNX file (queries in ONNX Runtime, gradients through an
  ``onnx2torch`` copy when it converts), a pickled ``nn.Module`` (only with
  ``allow_pickle=True``: unpickling runs code from the file);
- ``module:callable`` or ``path/to/file.py:callable``: a factory returning an
  ``nn.Module``, with ``weights`` a state dict loaded strictly (an existing file named
  like ``a:b.pt`` is a file);

and returns a :class:`LoadedModel`: the module (eval mode, on the device, taking float
images in [0, 1]), what it takes (input size, channels), what it returns (logits or
probabilities, how many classes, their names) and notes in words on every assumption.
Every failure is a :class:`~pixelprior.models.ModelLoadError` (a
:class:`~pixelprior.models.WeightsError`) of one short line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..data import parse_classes
from ..data.sizes import Size
from .errors import ModelLoadError, short_reason
from .formats import BuiltModel, factory_problem, height_width, load_factory, load_file
from .formats import split_factory_spec as _split_module_spec
from .probing import (
    PROBE_BATCH,
    Probe,
    check_scores,
    modules_in_train_mode,
    output_kind,
    probe_model,
)
from .registry import REGISTRY, load_model, model_spec
from .wrappers import ModelSettingError, Normalize, OnnxModel, normalization_problem

KINDS = ("registered", "torchscript", "onnx", "module", "pickle")
FILE_KINDS = ("torchscript", "onnx", "pickle")  # a model file holds the whole model
OUTPUTS = ("logits", "probabilities")

__all__ = ["FILE_KINDS", "KINDS", "OUTPUTS", "LoadedModel", "as_registered", "load_model_spec",
           "model_spec_problem"]


def _numbered(count: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(count))


@dataclass(frozen=True)
class LoadedModel:
    """A model and what is known about it.

    Attributes:
        model: takes ``float32 [B, channels, H, W]`` in [0, 1], returns ``[B, K]``.
        name: the spec it was loaded from.
        kind: one of :data:`KINDS`.
        input_size: the side (a square) or ``(height, width)`` the model takes, or
            ``None`` when it runs at any size (give it the images at their own size).
        channels: what the model takes: 3, or 1 (see
            :func:`~pixelprior.models.to_model_channels`); declared by the registry or
            the ONNX graph, else found by probing (the first convolution's count first).
        num_classes: ``K``.
        class_names: ``K`` names (``"0".."K-1"`` when none are known).
        output: ``"logits"`` or ``"probabilities"`` (decided by a probe forward).
        gradients: whether gradient maps can run (False: occlusion only).
        notes: what was loaded and assumed, in words.
        source: where it came from (a resolved path, weights, ``file:callable``).
        file: the model file (TorchScript, ONNX, pickle), or ``None``.
        weights: the weights file given, or ``None``.
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
    file: Path | None = None
    weights: Path | None = None

    @property
    def size_hw(self) -> tuple[int, int] | None:
        """``input_size`` as ``(height, width)`` (``None``: any size)."""
        return height_width(self.input_size)

    @property
    def has_class_names(self) -> bool:
        """Whether the class names are real (not the numbering ``0..K-1``)."""
        return self.class_names != _numbered(self.num_classes)


def load_model_spec(spec: str | Path, *, weights: str | Path | None = None,
                    classes: Sequence[str] | str | Path | None = None,
                    mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                    input_size: Size | None = None, allow_pickle: bool = False,
                    device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model from a spec string; see the module docstring for the forms.

    Args:
        spec: a registered name, a TorchScript / ONNX / pickled-module file, or
            ``module:callable`` / ``file.py:callable``.
        weights: a state dict (or a checkpoint holding one) for a registered model or a
            ``module:callable`` factory.
        classes: class names (a list, a names file, JSON, or ``"a,b,c"``); their number
            must equal the model's.
        mean: per-channel mean on the [0, 1] scale: with ``std``, the model is wrapped
            (:class:`~pixelprior.models.Normalize`) to take images in [0, 1]; without,
            it is assumed to normalise inside.
        std: per-channel standard deviation on the [0, 1] scale (with ``mean``).
        input_size: the model's input side or ``(height, width)``, for models that do
            not declare one (``None``: declared, or found by probing).
        allow_pickle: allow unpickling a full ``nn.Module`` (runs code from the file).
        device: where the model runs.

    Returns:
        The model (eval mode) and what is known about it.

    Raises:
        ModelSettingError: settings that contradict each other or the model: mean/std
            that cannot be right (checked before loading), mean/std for a model that
            normalises inside, ``weights`` for a model file that holds its own, a class
            names file of another count than the model's classes.
        ModelLoadError: the spec does not load, or the model cannot be queried: unusable
            output, different scores for the same images, float64 parameters, a batch
            of 1 only.
        WeightsError: ``weights`` do not load or do not fit.
        DataError: a class names file that does not exist or does not parse.
    """
    name, device = str(spec), torch.device(device)
    if problem := normalization_problem(mean, std):
        raise ModelSettingError(problem)
    built = _build(name, weights, allow_pickle, device)
    if mean is not None and built.normalises:
        raise ModelSettingError(f"{name} normalises inside (its own mean/std); do not "
                                "pass mean/std")
    trained = modules_in_train_mode(built.model)
    probe = probe_model(built.model.eval(), built, height_width(input_size), device, name,
                        trained)
    model, notes = _normalised(built, probe, mean, std, name)
    scores = probe.scores if model is built.model else check_scores(
        _forward(model, probe.images), PROBE_BATCH, name)
    output = output_kind(scores)
    gradients = _gradients(built, probe, notes)
    names = _class_names(classes, built.class_names, scores.shape[1], notes)
    notes += _train_mode_notes(trained) + _output_notes(output, scores.shape[1])
    model.class_names = names  # type: ignore[attr-defined]
    model.pixelprior_name = name  # type: ignore[attr-defined]
    return LoadedModel(model.eval(), name, built.kind, _size_value(probe.hw), probe.channels,
                       int(scores.shape[1]), names, output, gradients,
                       built.notes + probe.notes + notes, built.source, built.file,
                       built.weights)


def _forward(model: nn.Module, images: torch.Tensor) -> object:
    with torch.no_grad():
        return model(images)


def _size_value(hw: tuple[int, int] | None) -> int | tuple[int, int] | None:
    if hw is None:
        return None
    return hw[0] if hw[0] == hw[1] else hw


def _normalised(built: BuiltModel, probe: Probe, mean, std, name: str
                ) -> tuple[nn.Module, list[str]]:
    if mean is None:
        if built.normalises:
            return built.model, []
        return built.model, ["no mean/std given: the model is assumed to take images in "
                             "[0, 1] and normalise inside (pass mean/std otherwise)"]
    for label, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, probe.channels):
            raise ModelSettingError(f"{name}: {label} has {len(values)} values for a model "
                                    f"taking {probe.channels} channel(s)")
    model = Normalize(built.model, mean, std).to(probe.images.device).eval()
    return model, [f"wrapped to take images in [0, 1] and normalise inside (mean "
                   f"{tuple(float(v) for v in mean)}, std {tuple(float(v) for v in std)})"]


def _train_mode_notes(trained: Sequence[str]) -> list[str]:
    if not trained:
        return []
    return [f"the model came in train mode ({', '.join(trained)}): put in eval mode "
            "(dropout off, BatchNorm's running statistics)"]


def _output_notes(output: str, classes: int) -> list[str]:
    if output == "probabilities":
        return [f"outputs probabilities ({classes} classes; rows in [0, 1] summing to 1): "
                "used as they are, never soft-maxed again"]
    return [f"outputs logits ({classes} classes): probabilities are their softmax"]


def _gradients(built: BuiltModel, probe: Probe, notes: list[str]) -> bool:
    if built.kind != "onnx":
        return True
    onnx_model = built.model
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
    opsets = getattr(onnx_model.twin, "converted_opsets", None)
    how = (f" (the graph taken from opset {opsets[0]} to {opsets[1]} first by onnx's "
           "version converter, the copy checked against ONNX Runtime)" if opsets else "")
    notes.append(f"gradients through a PyTorch copy converted by onnx2torch{how}; {where}")
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
            raise ModelSettingError(f"{len(names)} class names given for a model with "
                                    f"{count} classes")
        return names
    if declared is not None and len(declared) == count:
        return tuple(str(n) for n in declared)
    if declared is not None:
        notes.append(f"the model's class_names ({len(declared)}) do not match its {count} "
                     "outputs: ignored")
    notes.append(f"no class names: classes are numbered 0..{count - 1} (name them "
                 "with --classes FILE, or classes= in the API)")
    return _numbered(count)


# ----------------------------------------------------------------------------- dispatch
def _build(spec: str, weights, allow_pickle: bool, device: torch.device) -> BuiltModel:
    if spec in REGISTRY:
        return _registered(spec, weights, device)
    target = _split_module_spec(spec)
    if target is not None:
        return load_factory(spec, *target, weights, device)
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelLoadError(_unknown_spec(spec))
    if path.is_dir():
        raise ModelLoadError(f"model {spec!r} is a folder, not a model file")
    if weights is not None:
        raise ModelSettingError(f"weights apply to registered models and module:callable "
                                f"specs; {path.name} holds its own")
    return load_file(path, allow_pickle, device)


def _unknown_spec(spec: str) -> str:
    return (f"unknown model {spec!r}: not a registered name ({', '.join(REGISTRY)}), an "
            "existing model file (.pt/.pth/.ts TorchScript, .onnx, a pickled module) or "
            "module:callable")


def _registered(name: str, weights, device: torch.device) -> BuiltModel:
    spec = model_spec(name)
    notes = [f"registered model {name}"]
    model = load_model(name, weights, device=device, notes=notes)
    source = str(weights) if weights is not None else (
        f"bundled weights {spec.bundled}" if spec.bundled else f"weights {spec.filename}")
    side = spec.input_size
    return BuiltModel(model, "registered", source, notes, (side, side), True,
                      "from the registry", 3, tuple(spec.class_names()), True,
                      weights=Path(weights).expanduser() if weights is not None else None)


# ----------------------------------------------------------------------------- checks
def as_registered(spec: str | Path, classes=None, mean=None, std=None,
                  input_size=None) -> bool:
    """Whether ``spec`` is a registered model asked for as it is registered.

    Such a model loads through :func:`~pixelprior.models.load_model` exactly as it
    always did.

    Args:
        spec: the model spec.
        classes: class names given, if any.
        mean: mean given, if any.
        std: std given, if any.
        input_size: input size given, if any.

    Returns:
        True for a registered name with none of the options that change it.
    """
    return str(spec) in REGISTRY and not any((classes, mean, std, input_size))


def model_spec_problem(spec: str | Path) -> str | None:
    """Why ``spec`` cannot name a model, without building it.

    Args:
        spec: a registered name, an existing file, or an importable ``module:callable``.

    Returns:
        One line, or ``None`` when it can name a model.
    """
    text = str(spec)
    if text in REGISTRY:
        return None
    target = _split_module_spec(text)
    if target is not None:
        return factory_problem(text, target[0])
    path = Path(text).expanduser()
    if path.is_file():
        return None
    if path.exists():
        return f"model {text!r} is a folder, not a model file"
    return _unknown_spec(text)
