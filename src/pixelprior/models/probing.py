"""What a model takes and returns, found by probe forwards on random images: its input
size and channels, whether it returns ``[B, K]`` logits or probabilities, and whether it
can be queried at all — the same scores for the same images (no train mode, no random
numbers), an image's scores independent of its batch, a batch of 2 in float32."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import torch
from torch import nn

from ..data.sizes import format_size
from .channels import first_conv_channels
from .errors import DefiniteLoadError, ModelLoadError, batch_failure, short_reason
from .formats.base import BuiltModel

PROBE_SIZES = (32, 224, 28, 64, 96, 128, 299, 256)  # tried when no size is declared
PROBE_SEED = 0
PROBE_BATCH = 2
PROBABILITY_ATOL = 1e-4
AGREEMENT = 1e-3  # scores that differ by more (relative to their scale) disagree
RANDOM_CAUSE = ("it draws random numbers in forward (dropout with training=True, torch.rand, "
                "noise): remove the randomness, pixelprior compares scores of the same images")
BATCH_CAUSE = ("BatchNorm using batch statistics (track_running_stats=False) or another layer "
               "mixing the images of a batch: pixelprior scores many images per forward")
TWO_CLASSES = ("wrap a one-logit binary model to return [0, z], one of a probability p to "
               "return [1 - p, p]")
_TRAIN_KINDS = re.compile(r"Dropout|Norm")  # modules whose train mode changes the output

__all__ = ["PROBE_BATCH", "PROBE_SIZES", "Probe", "batch_dependence", "check_scores",
           "modules_in_train_mode", "output_kind", "probe_model"]


@dataclass
class Probe:
    """What the probe forwards found.

    Attributes:
        hw: ``(height, width)`` the model takes, or ``None`` (it runs at any size).
        channels: the channels it takes (1 or 3).
        images: the probe images, ``float32 [2, channels, H, W]`` in [0, 1].
        scores: their scores, ``float32 [2, K]``.
        notes: what was found, in words.
    """

    hw: tuple[int, int] | None
    channels: int
    images: torch.Tensor
    scores: torch.Tensor
    notes: list[str]


def output_kind(scores: torch.Tensor, atol: float = PROBABILITY_ATOL) -> str:
    """Whether a model's scores are probabilities or logits.

    Args:
        scores: ``float [B, K]``.
        atol: the tolerance of "in [0, 1]" and "sums to 1".

    Returns:
        ``"probabilities"`` when every row lies in [0, 1] and sums to 1 within ``atol``
        (plus :data:`HALF_ROUNDING` times the resolution of float16 or bfloat16 where
        every score is one of theirs: a half-precision softmax, cast to float32 or not,
        sums to 1 only within its rounding), else ``"logits"``.
    """
    values = scores.detach().double()
    if values.ndim != 2 or values.numel() == 0 or not torch.isfinite(values).all():
        return "logits"
    atol += HALF_ROUNDING * _half_resolution(scores.detach())
    in_range = bool(values.min() >= -atol) and bool(values.max() <= 1 + atol)
    sums = bool(((values.sum(1) - 1).abs() <= atol).all())
    return "probabilities" if in_range and sums else "logits"


# a half-precision softmax's row sums lie within about one epsilon of 1 (measured for
# 10 to 21,843 classes, computed in float16/bfloat16 or cast to it); a tolerance of K
# epsilons took bfloat16 logits of a 1000-class model for probabilities
HALF_ROUNDING = 4


def _half_resolution(scores: torch.Tensor) -> float:
    """The machine epsilon of the narrowest of float16 and bfloat16 that holds every
    score exactly (scores a half-precision model made), else 0."""
    if scores.dtype in (torch.float16, torch.bfloat16):
        return torch.finfo(scores.dtype).eps
    for dtype in (torch.float16, torch.bfloat16):
        if torch.equal(scores.to(dtype).to(scores.dtype), scores):
            return torch.finfo(dtype).eps
    return 0.0


def _shape(values: Sequence) -> str:
    return "[" + ", ".join("?" if v is None else str(v) for v in values) + "]"


def check_scores(scores: object, batch: int, where: str) -> torch.Tensor:
    """A model's output checked to be finite class scores ``[batch, K]``, ``K >= 2``.

    Args:
        scores: what the model returned.
        batch: the number of images it was given.
        where: the model's name (for messages).

    Returns:
        ``float32 [batch, K]``, detached.

    Raises:
        ModelLoadError: not one tensor, another shape, one score per image, NaN or inf.
    """
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
                             f"({TWO_CLASSES})")
    if not torch.isfinite(scores).all():  # it ran: definite, not a size or format to retry
        raise DefiniteLoadError(f"{where}: the model returns NaN or infinite scores on "
                                "random images")
    return scores.detach().float()


def _kind(module: nn.Module) -> str:
    return getattr(module, "original_name", None) or type(module).__name__


def modules_in_train_mode(model: nn.Module, limit: int = 3) -> list[str]:
    """The dropout and normalisation modules of ``model`` in train mode, also inside a
    TorchScript module (whose submodules carry ``.training`` too).

    Args:
        model: any module.
        limit: the most named; a last entry says how many more there are.

    Returns:
        e.g. ``["Dropout 'head.drop'", "BatchNorm2d 'bn'", "and 4 more"]``.
    """
    found = [f"{_kind(m)} {name!r}" for name, m in model.named_modules()
             if m.training and _TRAIN_KINDS.search(_kind(m))]
    return found[:limit] + ([f"and {len(found) - limit} more"] if len(found) > limit else [])


def _forward(model: nn.Module, images: torch.Tensor) -> object:
    with torch.no_grad():
        return model(images)


def _probe_images(channels: int, hw: tuple[int, int], device: torch.device,
                  batch: int = PROBE_BATCH) -> torch.Tensor:
    generator = torch.Generator().manual_seed(PROBE_SEED)
    return torch.rand(batch, channels, *hw, generator=generator).to(device)


def probe_model(model: nn.Module, built: BuiltModel, size: tuple[int, int] | None,
                device: torch.device, name: str, trained: Sequence[str] = ()) -> Probe:
    """Run the model on random images to find what it takes and returns, and check it
    gives the same scores for the same images whatever the batch.

    Args:
        model: the model in eval mode.
        built: what its format declared (size, channels).
        size: ``(height, width)`` given by the user, or ``None``.
        device: where the probe images go.
        name: the spec (for messages).
        trained: its dropout / normalisation modules that were in train mode when it was
            loaded (see :func:`modules_in_train_mode`), named when it misbehaves.

    Returns:
        What was found.

    Raises:
        ModelLoadError: another size than the declared one; a model that runs on none of
            the probe images (saying why: float64 parameters, batch of 1 only, ...);
            unusable scores; different scores for the same images.
    """
    if size is not None and built.size_is_fixed and size != built.input_size:
        raise ModelLoadError(f"{name} takes {format_size(built.input_size)} inputs "
                             f"({built.size_from}); input_size {format_size(size)} differs")
    channels = (built.channels,) if built.channels else _channel_order(model)
    hw, source = (size, "given") if size is not None else (built.input_size, built.size_from)
    if hw is not None:
        probe = _probe_at(model, hw, channels, device, name, source)
    else:
        probe = _search_size(model, channels, device, name)
    _check_repeatable(model, probe, name, trained)
    if probe.channels == 1:
        probe.notes.append("the model takes 1-channel (grayscale) images: commands convert "
                           "RGB images to gray (in the Python API: to_model_channels)")
    return probe


def _channel_order(model: nn.Module) -> tuple[int, int]:
    """1 then 3 when the first convolution takes 1 channel, else 3 then 1."""
    return (1, 3) if first_conv_channels(model) == 1 else (3, 1)


def _probe_at(model: nn.Module, hw: tuple[int, int], channels: Sequence[int],
              device: torch.device, name: str, source: str) -> Probe:
    failures = []
    for count in channels:
        images = _probe_images(count, hw, device)
        try:
            scores = _forward(model, images)
        except Exception as exc:  # the wrong channels, size, or a broken model
            failures.append(f"{_shape(images.shape)}: {short_reason(exc)}")
            continue
        return Probe(hw, count, images, check_scores(scores, PROBE_BATCH, name),
                     [f"input {format_size(hw)} ({source})"])
    tried = [(hw, count) for count in channels]
    raise ModelLoadError(_why_not(model, tried, device, name)
                         or f"{name} fails on random images {'; '.join(failures)}")


def _search_size(model: nn.Module, channels: Sequence[int], device: torch.device,
                 name: str) -> Probe:
    """Probe :data:`PROBE_SIZES` until the model runs at two of them (any size) or all
    were tried (the one size it runs at)."""
    first_failure = None
    for count in channels:
        ran: list[tuple[tuple[int, int], torch.Tensor, object]] = []
        for side in PROBE_SIZES:
            images = _probe_images(count, (side, side), device)
            try:
                scores = check_scores(_forward(model, images), PROBE_BATCH, name)
                if ran:  # a second size must give scores [batch, K] of the first's K
                    if scores.shape[1] != ran[0][2].shape[1]:
                        raise ModelLoadError(f"{scores.shape[1]} scores, not "
                                             f"{ran[0][2].shape[1]}")
            except DefiniteLoadError:  # it runs at this size: its scores are the problem
                raise
            except Exception as exc:  # not this size (or channels)
                first_failure = first_failure or f"{_shape(images.shape)}: {short_reason(exc)}"
                continue
            ran.append(((side, side), images, scores))
            if len(ran) == 2:
                break
        if ran:
            return _searched(ran, count, name)
    tried = [((side, side), count) for count in channels for side in PROBE_SIZES]
    raise ModelLoadError(_why_not(model, tried, device, name)
                         or f"{name} declares no input size and runs at none of "
                            f"{', '.join(map(str, PROBE_SIZES))} px ({first_failure}); pass "
                            "input_size (--input-size SIDE, or WIDTHxHEIGHT for a "
                            "non-square one; input_size=(H, W) in the Python API, or an "
                            "input_size = (H, W) attribute set on the model)")


def _searched(ran: list, channels: int, name: str) -> Probe:
    hw, images, scores = ran[0]
    scores = check_scores(scores, PROBE_BATCH, name)
    if len(ran) == 2:
        return Probe(None, channels, images, scores, [
            f"input of any size (the model runs at {format_size(hw)} and "
            f"{format_size(ran[1][0])}): images "
            "are used at their own size (pass input_size to resize them)"])
    return Probe(hw, channels, images, scores, [
        f"input {format_size(hw)} (inferred: the only probe size the model runs at; pass "
        "input_size to be sure)"])


# ----------------------------------------------------------------------------- failures
def _parameter_dtype(model: nn.Module, tried: Sequence[tuple[tuple[int, int], int]],
                     device: torch.device) -> str | None:
    """The float type of the model's parameters when it is not float32 and images of that
    type run (``"float64"``), else ``None``."""
    dtypes = {t.dtype for t in chain(model.parameters(), model.buffers())
              if t.is_floating_point() and t.dtype != torch.float32}
    for dtype in sorted(dtypes, key=str):
        for hw, count in tried:
            try:
                _forward(model, _probe_images(count, hw, device).to(dtype))
            except Exception:  # not this size or channels either
                continue
            return str(dtype).removeprefix("torch.")
    return None


def _why_not(model: nn.Module, tried: Sequence[tuple[tuple[int, int], int]],
             device: torch.device, name: str) -> str | None:
    """The real reason a model runs on none of the probe batches, when it is one of
    these: parameters of another float type, a batch of 1 only, a first convolution
    taking neither 1 nor 3 channels. ``None`` otherwise."""
    if dtype := _parameter_dtype(model, tried, device):
        return (f"{name}: the model's parameters are {dtype}; pixelprior feeds float32 "
                "images: convert it with model.float() (and save it again)")
    for hw, count in tried:
        single = _probe_images(count, hw, device, batch=1)
        try:
            _forward(model, single)
        except Exception:  # not this size or channels either
            continue
        return (f"{name}: the model runs on one image at a time ({_shape(single.shape)}) but "
                f"fails on a batch of {PROBE_BATCH}; pixelprior scores many images per "
                "forward: make it take a batch [B, C, H, W] (no view/reshape to one image)")
    conv = first_conv_channels(model)
    if conv is not None and conv not in (1, 3):
        return (f"{name}: the model's first convolution takes {conv} channels; pixelprior "
                "feeds images of 3 (RGB) or 1 (grayscale) channels")
    return None


# ----------------------------------------------------------------------------- repeatable
def _difference(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """The largest difference of two score tensors when they disagree, else ``None``."""
    b = b.to(a.device)
    tolerance = AGREEMENT * max(1.0, float(a.abs().max()))
    if torch.allclose(a, b, atol=tolerance, rtol=AGREEMENT):
        return None
    return float((a - b).abs().max())


def batch_dependence(model: nn.Module, images: torch.Tensor) -> str | None:
    """Why an image's scores change with the other images in its batch, or ``None``: the
    first image scored alone, again (a forward that draws random numbers is named as
    one), and beside another (the same image shifted by half the range, so that two
    equal images hide nothing). The model is run as it is (put it in eval mode first).

    Args:
        model: the model.
        images: float ``[B, C, H, W]`` in [0, 1] (the first is used).

    Returns:
        The cause in words, or ``None``; also ``None`` where the scores are not a finite
        tensor (named where they are scored).

    Raises:
        Exception: what the model's forward raises on one image (on two: a cause).
    """
    first = images[:1]
    alone, again = _forward(model, first), _forward(model, first)
    try:
        together = _forward(model, torch.cat([first, torch.remainder(first + 0.5, 1.0)]))
    except Exception as exc:  # noqa: BLE001 - one image runs, two do not: say so
        return batch_failure(2, exc)
    outputs = (alone, again, together)
    if not all(isinstance(o, torch.Tensor) and torch.isfinite(o).all() for o in outputs) or (
            together.shape[1:] != alone.shape[1:]):
        return None
    if (gap := _difference(alone.float(), again.float())) is not None:
        return (f"two forwards of the same image give different scores (by up to "
                f"{gap:.3g}): {_train_mode_cause(model, ()) or RANDOM_CAUSE}")
    if (gap := _difference(together[:1].float(), alone.float())) is None:
        return None
    return (f"an image's scores change with the other images in its batch (by up to "
            f"{gap:.3g}): {_train_mode_cause(model, ()) or BATCH_CAUSE}")


def _train_mode_cause(model: nn.Module, trained: Sequence[str]) -> str | None:
    """Train mode in words when it explains misbehaving scores, else ``None``."""
    if still := modules_in_train_mode(model):
        return (f"parts of the model stay in train mode after .eval() ({', '.join(still)} "
                "have training=True): make its forward and train() leave them in eval mode")
    if trained and isinstance(model, torch.jit.ScriptModule):
        return (f"the model was saved in train mode ({', '.join(trained)} had "
                "training=True) and a traced TorchScript model keeps the mode it was "
                "traced in, even after .eval(): trace it again after model.eval()")
    return None


def _check_repeatable(model: nn.Module, probe: Probe, name: str,
                      trained: Sequence[str]) -> None:
    """The input left as it was, the same images giving the same scores again, and
    alone as in a batch."""
    given = probe.images.clone()
    _forward(model, given)
    if not torch.equal(given, probe.images):
        raise ModelLoadError(f"{name}: the model writes into the images it is given (an "
                             "in-place operation on its input in forward, e.g. x.sub_(mean) "
                             "or x /= std): pixelprior passes the same images again; make it "
                             "out of place (x = (x - mean) / std)")
    again = check_scores(_forward(model, probe.images), PROBE_BATCH, name)
    if (gap := _difference(probe.scores, again)) is not None:
        cause = _train_mode_cause(model, trained) or RANDOM_CAUSE
        raise ModelLoadError(f"{name}: two forwards on the same images give different "
                             f"scores (by up to {gap:.3g}): {cause}")
    single = probe.images[:1]
    try:
        alone = check_scores(_forward(model, single), 1, name)
    except Exception as exc:  # runs on a batch of 2 but not on one image
        raise ModelLoadError(f"{name}: the model runs on a batch of {PROBE_BATCH} but not on "
                             f"one image ({short_reason(exc)})") from None
    if (gap := _difference(probe.scores[:1], alone)) is not None:
        cause = _train_mode_cause(model, trained) or BATCH_CAUSE
        raise ModelLoadError(f"{name}: an image's scores change with the other images in "
                             f"its batch (by up to {gap:.3g}): {cause}")
