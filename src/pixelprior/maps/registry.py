"""The sensitivity-method registry: the single source of method names, their own
options and help. Config checks, ranked-scan orders, map evaluation and the command
line's help all read it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

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


def accepted_options(name: str) -> tuple[str, ...]:
    """The options method ``name`` takes: the shared ones, then its own.

    Args:
        name: a method of :data:`METHODS`.

    Returns:
        The option names, e.g. ``("score", ..., "n_samples", ...)``.

    Raises:
        ValueError: an unknown method.
    """
    if name not in METHODS:
        raise ValueError(f"unknown sensitivity method {name!r}; use one of "
                         f"{sorted(METHODS)}")
    return (*SHARED_OPTIONS, *METHODS.entry(name).options)


def check_method_options(name: str, options: Iterable[str], owner: str | None = None) -> None:
    """Refuse options method ``name`` does not take, in one line.

    Args:
        name: a method of :data:`METHODS`.
        options: the option names given.
        owner: what the options were given to, for the message (default the method).

    Raises:
        ValueError: an unknown method.
        TypeError: an option the method does not take (named, with the accepted ones).
    """
    accepted = accepted_options(name)
    unknown = [key for key in options if key not in accepted]
    if unknown:
        where = owner or f"sensitivity method {name!r}"
        raise TypeError(f"{where} got an unknown option {unknown[0]!r}; sensitivity method "
                        f"{name!r} takes: {', '.join(sorted(accepted))}")


def method_options(name: str, settings: Mapping[str, Any]) -> dict:
    """The subset of a shared set of map settings that method ``name`` takes.

    Args:
        name: a method name (an unknown name takes the shared options alone).
        settings: map settings shared by every method (an experiment's).

    Returns:
        The shared options and the method's own, as given in ``settings``.
    """
    own = METHODS.entry(name).options if name in METHODS else ()
    return {k: v for k, v in settings.items() if k in SHARED_OPTIONS or k in own}


def make_sensitivity(name: str, model: nn.Module | None = None,
                     **options: Any) -> SensitivityMethod:
    """Build a sensitivity method by name.

    Args:
        name: a method of :data:`METHODS` (``smoothgrad``, ``gradient``, ...).
        model: the model it attributes, or ``None`` to bind later.
        **options: options the method takes (the shared ones and its own); to build
            every method from one shared set of settings, use
            :func:`sensitivity_from_settings`.

    Returns:
        The method.

    Raises:
        ValueError: an unknown method, or a bad option value.
        TypeError: an option the method does not take (e.g. ``n_samples`` for
            ``gradient``), named with the accepted ones.
    """
    check_method_options(name, options)
    return METHODS.get(name)(model, **options)


def sensitivity_from_settings(name: str, model: nn.Module | None = None,
                              **settings: Any) -> SensitivityMethod:
    """Build method ``name`` from a set of map settings shared by every method (an
    experiment's: ``n_samples`` for SmoothGrad alongside ``score`` for all), taking the
    ones it uses.

    Args:
        name: a method of :data:`METHODS`.
        model: the model it attributes, or ``None`` to bind later.
        **settings: map settings; each must be an option of some method.

    Returns:
        The method.

    Raises:
        ValueError: an unknown method, or a bad value.
        TypeError: a setting no method takes (a typo), named with the known ones.
    """
    known = set(SHARED_OPTIONS).union(*(METHODS.entry(n).options for n in METHODS))
    unknown = [key for key in settings if key not in known]
    if unknown:
        raise TypeError(f"unknown map setting {unknown[0]!r}; the methods take: "
                        f"{', '.join(sorted(known))}")
    return make_sensitivity(name, model, **method_options(name, settings))
