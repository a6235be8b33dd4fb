"""Sensitivity maps: which pixels does the true-class score react to?

One class per method, in the style of Captum's attribution API, behind one flat public
namespace: :class:`VanillaGradient`, :class:`SmoothGrad` (the paper's),
:class:`IntegratedGradients`, :class:`GradCAM`, :class:`Occlusion` and
:class:`CaptumSensitivity` (any Captum attribution object). ``method(images, labels)``
returns per-pixel maps ``[B, H, W]`` in [0, 1]; :data:`METHODS` names them. A method
built without a model (``SmoothGrad()``) is bound to the attacked model by the prior that
uses it; :func:`make_sensitivity` refuses options a method does not take.
"""

from ..data import check_images  # noqa: F401  (re-exported: its earlier home)
from .base import (
    NORMALIZATIONS,
    REDUCTIONS,
    SCORES,
    SHARED_OPTIONS,
    SensitivityMethod,
    class_scores,
    normalize_maps,
    reduce_channels,
)
from .captum import CaptumSensitivity
from .gradcam import GradCAM
from .gradient import VanillaGradient
from .input_x_gradient import InputXGradient
from .integrated_gradients import IntegratedGradients
from .occlusion import Occlusion
from .registry import (
    METHOD_OPTIONS,
    METHODS,
    accepted_options,
    check_method_options,
    make_sensitivity,
    method_options,
    sensitivity_from_settings,
)
from .smoothgrad import SmoothGrad

__all__ = [
    "CaptumSensitivity", "GradCAM", "InputXGradient", "IntegratedGradients", "METHODS",
    "METHOD_OPTIONS", "NORMALIZATIONS", "Occlusion", "REDUCTIONS", "SCORES",
    "SHARED_OPTIONS", "SensitivityMethod", "SmoothGrad", "VanillaGradient",
    "accepted_options", "check_images", "check_method_options", "class_scores",
    "make_sensitivity", "method_options", "normalize_maps", "reduce_channels",
    "sensitivity_from_settings",
]
