"""Deprecated import path, kept for one release (0.3); it warns on import.

Its names live elsewhere now (mostly in ``pixelprior.priors``);
import them from there.
"""

import warnings

from pixelprior._streams import (
    image_digest,
)
from pixelprior.maps.base import (
    SensitivityMethod,
)
from pixelprior.maps.registry import (
    make_sensitivity,
)
from pixelprior.priors.base import (
    PositionDistribution,
    Prior,
    _from_sets,
    check_tau,
)
from pixelprior.priors.oracle import (
    OraclePrior,
)
from pixelprior.priors.registry import (
    MODE_ALIASES,
    PRIORS,
    make_prior,
)
from pixelprior.priors.sensitivity import (
    RandomSetPrior,
    SusceptibleSetPrior,
    TopKPrior,
    WeightedPrior,
)
from pixelprior.priors.uniform import (
    UniformPrior,
)

__all__ = [
    "MODE_ALIASES", "OraclePrior", "PRIORS", "PositionDistribution", "Prior",
    "RandomSetPrior", "SensitivityMethod", "SusceptibleSetPrior", "TopKPrior",
    "UniformPrior", "WeightedPrior", "_from_sets", "check_tau", "image_digest",
    "make_prior", "make_sensitivity",
]

warnings.warn("pixelprior.prior moved (see pixelprior.priors); this import "
              "path goes in pixelprior 0.4", DeprecationWarning, stacklevel=2)
