"""Deprecated import path, kept for one release (0.3); it warns on import.

Its names live elsewhere now (mostly in ``pixelprior.report.mapeval``);
import them from there.
"""

import warnings

from pixelprior.data.scanstore import (
    SusceptibilityMaps,
)
from pixelprior.report.mapeval import (
    METHODS,
    ImageMetrics,
    evaluate_maps,
    image_metrics,
    markdown,
    method_maps,
    run_map_evaluation,
    scan_images,
    summarise,
)
from pixelprior.report.stats import (
    roc_auc,
    roc_curve,
)
from pixelprior.search.scan import (
    rank_positions as _orders,
)

__all__ = [
    "ImageMetrics", "METHODS", "SusceptibilityMaps", "_orders", "evaluate_maps",
    "image_metrics", "markdown", "method_maps", "roc_auc", "roc_curve",
    "run_map_evaluation", "scan_images", "summarise",
]

warnings.warn("pixelprior.mapeval moved (see pixelprior.report.mapeval); this import "
              "path goes in pixelprior 0.4", DeprecationWarning, stacklevel=2)
