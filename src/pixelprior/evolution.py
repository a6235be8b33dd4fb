"""Deprecated import path, kept for one release (0.3); it warns on import.

Its names live elsewhere now (mostly in ``pixelprior.search.evolution``);
import them from there.
"""

import warnings

from pixelprior.search.evolution import (
    OUT_OF_BOUNDS,
    STOP_ON,
    STRATEGIES,
    DifferentialEvolution,
    EvolutionConfig,
    EvolutionResult,
    FitnessFunction,
    Mutant,
    mutation_indices,
)

__all__ = [
    "DifferentialEvolution", "EvolutionConfig", "EvolutionResult", "FitnessFunction",
    "Mutant", "OUT_OF_BOUNDS", "STOP_ON", "STRATEGIES", "mutation_indices",
]

warnings.warn("pixelprior.evolution moved (see pixelprior.search.evolution); this import "
              "path goes in pixelprior 0.4", DeprecationWarning, stacklevel=2)
