"""Searches: the :class:`Attack` base and one class per search.

:class:`OnePixelAttack` (differential evolution, the paper's), :class:`RankedScanAttack`
(a scan of positions × a colour grid in a map's order), :class:`RandomSearchAttack`
(Sparse-RS's L0 random search), :class:`FastAttack` (a ranked corner scan: fooled or
certified); :class:`SusceptibilityScan` is the exhaustive scan that
gives the ground truth. :data:`SEARCHES` names them.
"""

from .base import Attack, AttackOutput, AttackResult, PixelChange, SearchOutcome, check_labels
from .evolution import STRATEGIES, DifferentialEvolution, EvolutionConfig, EvolutionResult
from .fast import CERTIFY_TOLERANCE, REFINES, FastAttack
from .one_pixel import INIT_COLORS, OnePixelAttack
from .random_search import RandomSearchAttack, p_schedule
from .registry import SEARCHES
from .scan import (
    ORDERS,
    TIE_BREAKS,
    RankedScanAttack,
    ScanResult,
    SusceptibilityScan,
    colour_grid,
    rank_positions,
    ranked_prior,
    scan_positions,
)

__all__ = [
    "Attack", "AttackOutput", "AttackResult", "CERTIFY_TOLERANCE", "DifferentialEvolution",
    "EvolutionConfig", "EvolutionResult", "FastAttack", "INIT_COLORS", "ORDERS",
    "OnePixelAttack", "PixelChange", "REFINES", "RandomSearchAttack", "RankedScanAttack",
    "SEARCHES", "STRATEGIES", "ScanResult", "SearchOutcome", "SusceptibilityScan",
    "TIE_BREAKS", "check_labels", "colour_grid", "p_schedule", "rank_positions",
    "ranked_prior", "scan_positions",
]
