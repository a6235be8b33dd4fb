"""The sensitivity-method registry: the single source of method names, their own
options and help. Config checks, ranked-scan orders, map evaluation and the command
line's help all read it."""

from __future__ import annotations

from torch import nn

from .._registry import Registry
from .base import SHARED_OPTIONS, SensitivityMethod
from .gradcam import GradCAM
from .gradient import VanillaGradient
from .input_x_gradient import InputXGradient
from .integrated_gradients import IntegratedGradients
from .occlusion import Occlusion
from .smoothgrad import SmoothGrad

METHODS: Registry[type[SensitivityMethod]] = Registry("sensitivity method")
METHODS.register("smoothgrad", SmoothGrad, "gradient averaged over noisy copies (the paper)",
                 options=("n_samples", "noise_level", "absolute", "seed"))
METHODS.register("gradient", VanillaGradient, "the input gradient of the class score")
METHODS.register("integrated_gradients", IntegratedGradients,
                 "path integral of gradients from a black baseline",
                 options=("steps", "baseline"))
METHODS.register("gradcam", GradCAM, "class-weighted activations of the last conv layer",
                 options=("layer",))
METHODS.register("occlusion", Occlusion, "the score's drop when one pixel is set to black",
                 options=("baseline",))
METHODS.register("input_x_gradient", InputXGradient, "the input times its gradient")
# the options each method takes beyond the shared ones, as earlier releases exposed them
METHOD_OPTIONS = {name: METHODS.entry(name).options for name in METHODS}


def method_options(name: str, settings: dict) -> dict:
    """The subset of ``settings`` that method ``name`` takes (shared and its own)."""
    own = METHODS.entry(name).options if name in METHODS else ()
    return {k: v for k, v in settings.items() if k in SHARED_OPTIONS or k in own}


def make_sensitivity(name: str, model: nn.Module, **kwargs) -> SensitivityMethod:
    """Build a sensitivity method by name (``smoothgrad``, ``gradient``, ...). Options a
    method does not take (e.g. ``n_samples`` for ``gradient``) are dropped, so one set of
    settings serves every method."""
    if name not in METHODS:
        raise ValueError(f"unknown sensitivity method {name!r}; use one of "
                         f"{sorted(METHODS)}")
    return METHODS.get(name)(model, **method_options(name, kwargs))
