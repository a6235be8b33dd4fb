"""Deprecated import path, kept for one release (0.3); it warns on import.

Its names live elsewhere now (mostly in ``pixelprior.search``);
import them from there.
"""

import warnings

from pixelprior._streams import (
    image_digest,
)
from pixelprior._streams import (
    pixel_keys as image_keys,
)
from pixelprior.data.base import (
    check_images,
)
from pixelprior.data.scanstore import (
    _LOADED,
    MAPS_FILE,
    SusceptibilityMaps,
    scan_summary,
)
from pixelprior.experiment.scans import (
    _existing_parts,
    _merge,
    _summary_json,
    run_scan,
)
from pixelprior.priors.base import (
    PositionDistribution,
    Prior,
)
from pixelprior.priors.uniform import (
    UniformPrior,
)
from pixelprior.scoring.registry import (
    make_scorer,
)
from pixelprior.search.base import (
    Attack,
    SearchOutcome,
)
from pixelprior.search.scan import (
    TIE_BREAKS,
    RankedScanAttack,
    ScanResult,
    SusceptibilityScan,
    _answers,
    _goal,
    colour_grid,
    ranked_prior,
    scan_positions,
)
from pixelprior.search.scan import (
    rank_positions as _orders,
)

__all__ = [
    "Attack", "MAPS_FILE", "PositionDistribution", "Prior", "RankedScanAttack",
    "ScanResult", "SearchOutcome", "SusceptibilityMaps", "SusceptibilityScan", "TIE_BREAKS",
    "UniformPrior", "_LOADED", "_answers", "_existing_parts", "_goal", "_merge", "_orders",
    "_summary_json", "check_images", "colour_grid", "image_digest", "image_keys",
    "make_scorer", "ranked_prior", "run_scan", "scan_positions", "scan_summary",
]

warnings.warn("pixelprior.susceptibility moved (see pixelprior.search); this import "
              "path goes in pixelprior 0.4", DeprecationWarning, stacklevel=2)
