"""Deprecated import path, kept for one release (0.3); it warns on import.

Its names live elsewhere now (mostly in ``pixelprior.experiment.config``);
import them from there.
"""

import warnings

from pixelprior.experiment.config import (
    DATASETS,
    LATER_FIELDS,
    NON_RESULT_FIELDS,
    PRIOR_VERSIONS,
    SELECTIONS,
    SOURCES,
    ConfigError,
    ConfigMismatchError,
    ExperimentConfig,
    _describe,
    _field_type,
    _fits,
    _type_problem,
    device_problem,
    read_config_file,
    resolve_device,
)
from pixelprior.experiment.modes import (
    DE_MODES,
    SCAN_ORDERS,
    SENSITIVITIES,
    parse_mode,
)
from pixelprior.scoring.base import (
    PRECISIONS,
)
from pixelprior.scoring.registry import (
    ENGINES,
)
from pixelprior.search.evolution import (
    EvolutionConfig,
)

__all__ = [
    "ConfigError", "ConfigMismatchError", "DATASETS", "DE_MODES", "ENGINES",
    "EvolutionConfig", "ExperimentConfig", "LATER_FIELDS", "NON_RESULT_FIELDS",
    "PRECISIONS", "PRIOR_VERSIONS", "SCAN_ORDERS", "SELECTIONS", "SENSITIVITIES", "SOURCES",
    "_describe", "_field_type", "_fits", "_type_problem", "device_problem", "parse_mode",
    "read_config_file", "resolve_device",
]

warnings.warn("pixelprior.config moved (see pixelprior.experiment.config); this import "
              "path goes in pixelprior 0.4", DeprecationWarning, stacklevel=2)
