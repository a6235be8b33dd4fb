"""Deprecated import path, kept for one release (0.3); it warns on import.

Its names live elsewhere now (mostly in ``pixelprior.maps``);
import them from there.
"""

import warnings

from pixelprior._streams import (
    image_digest,
)
from pixelprior.data.base import (
    check_images,
)
from pixelprior.maps.base import (
    NORMALIZATIONS,
    REDUCTIONS,
    SCORES,
    SensitivityMethod,
    class_scores,
    normalize_maps,
    reduce_channels,
)
from pixelprior.maps.captum import (
    CaptumSensitivity,
)
from pixelprior.maps.gradcam import (
    GradCAM,
)
from pixelprior.maps.gradient import (
    VanillaGradient,
)
from pixelprior.maps.integrated_gradients import (
    IntegratedGradients,
)
from pixelprior.maps.occlusion import (
    Occlusion,
)
from pixelprior.maps.registry import (
    METHOD_OPTIONS,
    METHODS,
    make_sensitivity,
)
from pixelprior.maps.smoothgrad import (
    SmoothGrad,
)

__all__ = [
    "CaptumSensitivity", "GradCAM", "IntegratedGradients", "METHODS", "METHOD_OPTIONS",
    "NORMALIZATIONS", "Occlusion", "REDUCTIONS", "SCORES", "SensitivityMethod",
    "SmoothGrad", "VanillaGradient", "check_images", "class_scores", "image_digest",
    "make_sensitivity", "normalize_maps", "reduce_channels",
]

warnings.warn("pixelprior.sensitivity moved (see pixelprior.maps); this import "
              "path goes in pixelprior 0.4", DeprecationWarning, stacklevel=2)
