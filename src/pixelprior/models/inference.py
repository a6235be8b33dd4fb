"""Faster copies of a model for black-box queries, and the check every copy passes."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..data import ImageSet, to_float
from .accuracy import check_finite_scores
from .errors import GradientsUnavailableError
from .squeezenet import Fire

__all__ = ["NO_GRADIENT", "ChannelsLast", "copy_module", "evaluation_mode",
           "fold_batchnorm", "gradient_problem", "inference_model", "predict",
           "scores_agree"]


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

