"""Sensitivity maps: which pixels does the true-class score react to?

One class per method, in the style of Captum's attribution API, behind one flat public
namespace: :class:`VanillaGradient`, :class:`SmoothGrad` (the paper's),
:class:`IntegratedGradients`, :class:`GradCAM`, :class:`Occlusion` and
:class:`CaptumSensitivity` (any Captum attribution object). ``method(images, labels)``
returns per-pixel maps ``[B, H, W]`` in [0, 1]; :data:`METHODS` names them.
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
from .registry import METHOD_OPTIONS, METHODS, make_sensitivity, method_options
from .smoothgrad import SmoothGrad

__all__ = [
    "CaptumSensitivity", "GradCAM", "InputXGradient", "IntegratedGradients", "METHODS",
    "METHOD_OPTIONS", "NORMALIZATIONS", "Occlusion", "REDUCTIONS", "SCORES",
    "SHARED_OPTIONS", "SensitivityMethod", "SmoothGrad", "VanillaGradient", "check_images",
    "class_scores", "make_sensitivity", "method_options", "normalize_maps",
    "reduce_channels",
]
