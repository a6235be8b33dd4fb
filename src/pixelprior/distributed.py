"""Deprecated import path, kept for one release (0.3); it warns on import.

Its names live elsewhere now (mostly in ``pixelprior.experiment.distributed``);
import them from there.
"""

import warnings

from pixelprior.experiment.distributed import (
    IN_FLIGHT_PER_WORKER,
    INSTALL_HINT,
    _ray,
    _Worker,
    ray_groups,
)

__all__ = [
    "INSTALL_HINT", "IN_FLIGHT_PER_WORKER", "_Worker", "_ray", "ray_groups",
]

warnings.warn("pixelprior.distributed moved (see pixelprior.experiment.distributed); this import "
              "path goes in pixelprior 0.4", DeprecationWarning, stacklevel=2)
