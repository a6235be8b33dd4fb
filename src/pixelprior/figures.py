"""Deprecated import path, kept for one release (0.3); it warns on import.

Its names live elsewhere now (mostly in ``pixelprior.report.figures``);
import them from there.
"""

import warnings

from pixelprior.data.base import (
    to_float,
)
from pixelprior.experiment.config import (
    ExperimentConfig,
)
from pixelprior.experiment.modes import (
    parse_mode,
)
from pixelprior.report.figures import (
    _adversarial,
    _circle,
    _class_names,
    _map_name,
    _name,
    _save,
    _show,
    examples_figure,
    generations_hist,
    maps_compared_figure,
    oracle_figure,
    pipeline_figure,
    ranked_scans_figure,
    roc_figure,
    success_vs_queries,
    write_figures,
)

__all__ = [
    "ExperimentConfig", "_adversarial", "_circle", "_class_names", "_map_name", "_name",
    "_save", "_show", "examples_figure", "generations_hist", "maps_compared_figure",
    "oracle_figure", "parse_mode", "pipeline_figure", "ranked_scans_figure", "roc_figure",
    "success_vs_queries", "to_float", "write_figures",
]

warnings.warn("pixelprior.figures moved (see pixelprior.report.figures); this import "
              "path goes in pixelprior 0.4", DeprecationWarning, stacklevel=2)
