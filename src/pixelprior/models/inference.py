"""Faster copies of a model for black-box queries, and the check every copy passes."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..data import ImageSet, to_float
from .accuracy import check_finite_scores
from .errors import GradientsUnavailableError
from .squeezenet import Fire

__all__ = ["NO_GRADIENT", "ChannelsLast", "copy_module", "evaluation_mode",
           "WeightsWatch", "fold_batchnorm", "gradient_problem", "inference_model",
           "predict", "scores_agree", "weights_version"]


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the block and restore every module's own mode after
    it (as torchattacks does), even when the block raises.

    Args:
        model: the model; anything that is not an ``nn.Module`` is left as it is.

    Yields:
        Nothing; the block runs with the model in eval mode.
    """
    if not isinstance(model, nn.Module):
        yield
        return
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


NO_GRADIENT = ("scores carry no gradient of its input (it detaches them, or computes "
               "outside PyTorch autograd)")
IN_PLACE_GRADIENT = ("input gradient cannot be computed: an in-place operation overwrites a "
                     "value its backward pass needs")


def gradient_problem(model: nn.Module, images: torch.Tensor) -> str | None:
    """Why the gradient of ``model``'s scores with respect to its input cannot be had,
    or ``None`` when it can (one forward and backward of the first image, in eval
    mode).

    Args:
        model: the model.
        images: float ``[B, C, H, W]`` in [0, 1] (the first is used).

    Returns:
        The reason in a few words (an ONNX graph without a PyTorch copy, scores detached
        from the input), or ``None``.
    """
    probe = images[:1].detach().clone().requires_grad_(True)
    try:
        with torch.enable_grad(), evaluation_mode(model):
            scores = model(probe)
            if not isinstance(scores, torch.Tensor):  # a tuple, say: named where scored
                return None
            reached = scores.requires_grad and (
                torch.autograd.grad(scores.float().sum(), probe, allow_unused=True)[0]
                is not None)
    except GradientsUnavailableError as exc:
        return exc.why
    except RuntimeError as exc:  # autograd's refusal: a value overwritten in place
        if "inplace operation" not in str(exc):
            raise
        return f"its {IN_PLACE_GRADIENT} (make it out of place)"
    return None if reached else f"its {NO_GRADIENT}"


def weights_version(model: nn.Module) -> tuple:
    """What changes when a model's weights or settings do: each parameter's and
    buffer's identity, storage, in-place version counter (an optimiser step,
    ``load_state_dict``, an ``add_`` under ``no_grad`` all count it up) and sum (a write
    through ``.data``, which no counter sees); each submodule's name, class and identity,
    its attributes (:func:`_settings`: a Hardtanh's limits, a LeakyReLU's slope, a
    submodule replaced, a tensor held as a plain attribute, private ones too) and its
    forward hooks, and the global forward hooks. Copies made of a model (a
    BatchNorm-folded scorer, a bound engine's float64 copy) are stale once it differs.
    Constants a ``forward`` reads from elsewhere (a global, a class attribute) are not
    seen.

    Args:
        model: the model (anything else has no weights: ``()``).

    Returns:
        A tuple that compares equal while no weight or setting changed.
    """
    if not isinstance(model, nn.Module):
        return ()
    return tuple(_parts(model).items())


def _parts(model: nn.Module) -> dict[tuple, object]:
    """:func:`weights_version`'s parts, each keyed by what it is of (``("parameter",
    name)``, ``("setting", module, attribute)``, ``("sum", "buffer", name)``, ...)."""
    out: dict[tuple, object] = {}
    named = [*((("parameter", name), t) for name, t in model.named_parameters()),
             *((("buffer", name), t) for name, t in model.named_buffers())]
    settings, held = _settings(model)
    out.update(settings)
    named += held
    for key, tensor in named:
        out[key] = _tensor_state(tensor)
    summed = [(key, t) for key, t in named
              if not isinstance(t, nn.parameter.UninitializedTensorMixin)
              and t.is_floating_point() and t.numel() and t.layout == torch.strided
              and not t.is_meta]
    for (key, _), total in zip(summed, _sums([t for _, t in summed]), strict=True):
        out[("sum", *key)] = repr(total)  # by its text: a NaN equals itself
    return out


def _tensor_state(tensor: torch.Tensor) -> tuple:
    """A tensor's identity, storage and in-place version counter (a tensor without
    storage, sparse or meta: its identity and counter)."""
    try:
        version = tensor._version
    except RuntimeError:  # an inference tensor keeps no counter: its storage only
        version = -1
    try:
        storage = tensor.data_ptr()
    except (RuntimeError, ValueError):  # sparse, meta, a lazy module's uninitialised
        storage = None  # parameter: no data pointer
    return (id(tensor), storage, version)


_PLAIN = (bool, int, float, complex, str, bytes, type(None))
# what every module holds (its parameters, buffers, submodules, hooks, ...): read by
# their own parts, not as attributes
_MODULE_INTERNALS = frozenset(vars(nn.Module())) | {"training"}
_FORWARD_HOOKS = ("_forward_hooks", "_forward_pre_hooks")
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks")


def _settings(model: nn.Module) -> tuple[dict[tuple, object],
                                          list[tuple[tuple, torch.Tensor]]]:
    """Each submodule's class and identity, its attributes (``vars`` less what every
    module holds, and ``training``, which every call's evaluation mode switches and
    restores): plain values as they are, tensors returned to be watched as weights,
    anything else by its identity (a ``forward`` replaced on the instance, say); its
    forward hooks and the global ones, by their identities."""
    settings: dict[tuple, object] = {}
    held: list[tuple[tuple, torch.Tensor]] = []
    for name in _GLOBAL_HOOKS:
        hooks = getattr(torch.nn.modules.module, name, {})
        settings[("global hooks", name)] = tuple((k, id(v)) for k, v in hooks.items())
    for name, module in model.named_modules(remove_duplicate=False):
        settings[("module", name)] = (type(module), id(module))
        for hooks in _FORWARD_HOOKS:
            found = getattr(module, hooks, None) or {}
            settings[("hooks", name, hooks)] = tuple((k, id(v)) for k, v in found.items())
        try:
            attributes = vars(module).items()
        except TypeError:  # an object without __dict__: its class and identity only
            continue
        for key, value in attributes:
            if key in _MODULE_INTERNALS:
                continue
            if isinstance(value, torch.Tensor):
                held.append((("held", name, key), value))
            else:
                settings[("setting", name, key)] = _setting(value)
    return settings, held


def _setting(value: object, depth: int = 3) -> object:
    """A plain value by its text (a NaN setting equals itself); a dict, list, tuple or
    plain object (a ``SimpleNamespace``, a dataclass) by its items, to a few levels (a
    limit read from ``self.cfg["limit"]``); a tensor by its identity, storage and
    counter; anything else (a function, a module) by its identity."""
    if isinstance(value, _PLAIN):
        return (type(value), repr(value))
    if isinstance(value, torch.Tensor):
        return _tensor_state(value)
    if depth and isinstance(value, dict):
        return (dict, tuple((repr(k), _setting(v, depth - 1)) for k, v in value.items()))
    if depth and isinstance(value, (list, tuple)):
        return (type(value), tuple(_setting(v, depth - 1) for v in value))
    if depth and not isinstance(value, (nn.Module, type)) and not callable(value) and (
            type(value).__module__ in ("types",) or dataclasses.is_dataclass(value)):
        return (type(value), _setting(vars(value), depth - 1))
    return ("id", id(value))


def _sums(tensors: list[torch.Tensor]) -> list[tuple[float, float]]:
    """Each tensor's float64 sum and its sum weighted by position (a ``.data`` write
    that moves values, two rows swapped, keeps the first), read back in one transfer
    (a few ms for a SqueezeNet; a sum per tensor read one by one took 40)."""
    if not tensors:
        return []
    with torch.no_grad():
        sums = [torch.stack([t.sum(dtype=torch.float64), _by_position(t)]) for t in tensors]
        try:
            return [tuple(pair) for pair in torch.stack(sums).tolist()]
        except RuntimeError:  # a model spread over several devices
            return [(float(a), float(b)) for a, b in sums]


def _by_position(tensor: torch.Tensor) -> torch.Tensor:
    """The float64 sum of each value times its flat position (mod 9973), plus one."""
    flat = tensor.detach().reshape(-1).to(torch.float64)
    weights = torch.arange(flat.numel(), device=flat.device, dtype=torch.float64)
    return flat.dot(weights.remainder_(9973).add_(1))


class WeightsWatch:
    """Whether a model's weights or settings changed since a point
    (:func:`weights_version`): what an attack or verifier holding copies of the model
    asks before each call. The point is when the copies were made (:meth:`renew`), so
    a change the model's own forward makes (a call counter, a setting written on its
    first call) is one too, and the copies are made anew: a write no check can tell
    from a user's edit is never taken as harmless.

    Args:
        model: the model watched.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.version = weights_version(model)

    def changed(self) -> bool:
        """Returns: whether a weight or setting changed since the watch was made or
        renewed."""
        return weights_version(self.model) != self.version

    def renew(self) -> None:
        """Take the weights and settings as they are now as the point compared with
        (when the copies are made anew)."""
        self.version = weights_version(self.model)


def copy_module(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters are leaves, as the original's.

    Copied under ``no_grad``: ``copy.deepcopy`` of a TorchScript module records the
    copies in autograd, so its parameters come out as non-leaf tensors, and every later
    ``.to()`` on the copy warns "The .grad attribute of a Tensor that is not a leaf
    Tensor is being accessed".

    Args:
        model: any module (TorchScript included).

    Returns:
        The copy, each parameter with the original's ``requires_grad``.
    """
    with torch.no_grad():
        clone = copy.deepcopy(model)
    for original, copied in zip(model.parameters(), clone.parameters(), strict=True):
        copied.requires_grad_(original.requires_grad)
    return clone


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every eval-mode BatchNorm folded into the conv before it.

    Folds the patterns whose order is known: ``Conv2d`` directly followed by
    ``BatchNorm2d`` inside an ``nn.Sequential``, and :class:`Fire`'s conv/BN pairs. Other
    BatchNorms are left alone (still correct, just not faster).

    Args:
        model: any module (left unchanged).

    Returns:
        The folded copy, in eval mode.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy_module(model).eval()
    for module in model.modules():
        if isinstance(module, Fire):
            for conv, bn in (("squeeze", "squeeze_bn"), ("expand1x1", "expand1x1_bn"),
                             ("expand3x3", "expand3x3_bn")):
                if isinstance(getattr(module, bn), nn.BatchNorm2d):
                    setattr(module, conv, fuse_conv_bn_eval(getattr(module, conv),
                                                            getattr(module, bn)))
                    setattr(module, bn, nn.Identity())
        elif isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if isinstance(module[i], nn.Conv2d) and isinstance(module[i + 1],
                                                                   nn.BatchNorm2d):
                    module[i] = fuse_conv_bn_eval(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()
    return model


class ChannelsLast(nn.Module):
    """Run a model (converted to channels-last memory format) on channels-last inputs.

    Args:
        model: converted in place (``.to(memory_format=torch.channels_last)``).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of ``x``.

        Args:
            x: ``float [B, C, H, W]`` (any memory format).

        Returns:
            The model's scores ``float [B, K]``.
        """
        return self.model(x.contiguous(memory_format=torch.channels_last))


def scores_agree(reference: torch.Tensor, candidate: torch.Tensor,
                 atol: float = 1e-3) -> bool:
    """Whether ``candidate`` can stand in for ``reference`` class scores.

    The one test every faster query path (folded copy, incremental engine, ONNX Runtime)
    passes before it is used.

    Args:
        reference: ``float [B, K]`` of the model itself.
        candidate: ``float [B, K]`` of the faster path.
        atol: absolute tolerance (the relative one is 1e-3).

    Returns:
        True for the same shape, scores within the tolerances and the same labels.
    """
    return (candidate.shape == reference.shape
            and torch.allclose(candidate, reference, atol=atol, rtol=1e-3)
            and bool((candidate.argmax(1) == reference.argmax(1)).all()))


def inference_model(model: nn.Module, example: torch.Tensor, atol: float = 1e-3) -> nn.Module:
    """A faster copy of ``model`` for black-box queries: BatchNorm folded, channels-last.

    Args:
        model: the model (left unchanged).
        example: ``float [B, C, H, W]`` images the copy is checked on.
        atol: the tolerance of :func:`scores_agree`.

    Returns:
        The copy when it agrees with the original on ``example`` (scores within ``atol``,
        the same labels); else, or when it cannot be built, the original.
    """
    try:
        fast = ChannelsLast(fold_batchnorm(model)).eval()
        with torch.inference_mode():
            reference, candidate = model(example), fast(example)
        if scores_agree(reference, candidate, atol):
            return fast
    except Exception:  # an exotic model: keep the original, correctness first
        pass
    return model


@torch.inference_mode()
def predict(model: torch.nn.Module, dataset: ImageSet, device: str,
            batch: int = 256) -> torch.Tensor:
    """The model's labels for every image of ``dataset``.

    Args:
        model: takes ``float [B, 3, H, W]`` in [0, 1].
        dataset: ``uint8`` images at the model's size.
        device: where the forwards run.
        batch: images per forward.

    Returns:
        ``int64 [N]`` on the CPU.

    Raises:
        ModelLoadError: the model returns NaN or infinite scores for an image.
    """
    out = []
    name = getattr(model, "pixelprior_name", "the model")
    for start in range(0, len(dataset), batch):
        images = to_float(dataset.images[start:start + batch]).to(device)
        scores = model(images)
        check_finite_scores(scores, start, len(dataset), name, len(images))
        out.append(scores.argmax(1).cpu())
    return torch.cat(out)

