"""Searches: the :class:`Attack` base and one class per search.

:class:`OnePixelAttack` (differential evolution, the paper's), :class:`RankedScanAttack`
(a scan of positions × a colour grid in a map's order), :class:`RandomSearchAttack`
(Sparse-RS's L0 random search); :class:`SusceptibilityScan` is the exhaustive scan that
gives the ground truth. :data:`SEARCHES` names them.
"""

from .base import Attack, AttackOutput, AttackResult, PixelChange, SearchOutcome, check_labels
from .evolution import STRATEGIES, DifferentialEvolution, EvolutionConfig, EvolutionResult
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
    "INIT_COLORS", "ORDERS", "SEARCHES", "STRATEGIES", "TIE_BREAKS", "Attack", "AttackOutput",
    "AttackResult", "DifferentialEvolution", "EvolutionConfig", "EvolutionResult",
    "OnePixelAttack", "PixelChange", "RandomSearchAttack", "RankedScanAttack", "ScanResult",
    "SearchOutcome", "SusceptibilityScan", "check_labels", "colour_grid", "p_schedule",
    "rank_positions", "ranked_prior", "scan_positions",
]
