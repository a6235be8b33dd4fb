"""Priors over pixel positions: where a search starts, or the order a scan visits.

A prior turns a batch of images into a :class:`PositionDistribution` (per image a
probability vector over its ``H·W`` pixels). :data:`PRIORS` names them.
"""

from .base import PositionDistribution, Prior, check_tau
from .oracle import OraclePrior
from .registry import MODE_ALIASES, PRIORS, make_prior
from .sensitivity import RandomSetPrior, SusceptibleSetPrior, TopKPrior, WeightedPrior
from .uniform import UniformPrior

__all__ = [
    "MODE_ALIASES", "PRIORS", "OraclePrior", "PositionDistribution", "Prior",
    "RandomSetPrior", "SusceptibleSetPrior", "TopKPrior", "UniformPrior", "WeightedPrior",
    "check_tau", "make_prior",
]
