"""Deprecated import path, kept for one release (0.3); it warns on import.

Its names live elsewhere now (mostly in ``pixelprior.scoring``);
import them from there.
"""

import warnings

from pixelprior.models.squeezenet import (
    Fire,
    SqueezeNet,
    SqueezeNetCifar,
)
from pixelprior.scoring._squeezenet_cone import (
    POINTWISE,
    CleanCache,
    IncrementalForward,
    Window,
    _Axis,
    _conv_step,
    _fire_steps,
    _pair,
    _Pointwise,
    _pool_step,
    _Spatial,
    _steps,
    _unwrap,
    incremental_forward,
)

__all__ = [
    "CleanCache", "Fire", "IncrementalForward", "POINTWISE", "SqueezeNet",
    "SqueezeNetCifar", "Window", "_Axis", "_Pointwise", "_Spatial", "_conv_step",
    "_fire_steps", "_pair", "_pool_step", "_steps", "_unwrap", "incremental_forward",
]

warnings.warn("pixelprior.incremental moved (see pixelprior.scoring); this import "
              "path goes in pixelprior 0.4", DeprecationWarning, stacklevel=2)
