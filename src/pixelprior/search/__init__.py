"""Searches: the :class:`Attack` base and one class per search.

:class:`OnePixelAttack` (differential evolution, the paper's), :class:`RankedScanAttack`
(a scan of positions × a colour grid in a map's order), :class:`RandomSearchAttack`
(Sparse-RS's L0 random search), :class:`FastAttack` (a ranked corner scan: fooled or
certified); :class:`SusceptibilityScan` is the exhaustive scan that
gives the ground truth on a color grid, and :class:`Verifier` the proof over every color
(branch and bound on sound zonotope bounds; :class:`LocalSearch` looks for witnesses
where its bounds leave positions open). :data:`SEARCHES` names them.

Every attack is built as ``Cls(model, prior=None, *, option=...)``, with the options every
search shares documented once on :class:`Attack`; ``attack(images, labels)`` returns the
adversarial images and ``attack.run(images, labels)`` everything (:class:`AttackOutput`).
Each search declares its steps record in ``step_fields`` (name -> kind).
"""

from .base import Attack
from .checks import check_labels, evaluation_mode
from .evolution import STRATEGIES, DifferentialEvolution, EvolutionConfig, EvolutionResult
from .fast import CERTIFY_TOLERANCE, REFINES, FastAttack
from .local import LocalSearch, LocalSearchResult
from .one_pixel import INIT_COLORS, OnePixelAttack
from .random_search import RandomSearchAttack, p_schedule
from .registry import SEARCHES
from .results import STEP_KINDS, AttackOutput, AttackResult, PixelChange, SearchOutcome
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
from .verify import PositionVerdicts, UnboundedRoundingError, Verification, Verifier

__all__ = [
    "Attack", "AttackOutput", "AttackResult", "CERTIFY_TOLERANCE", "DifferentialEvolution",
    "EvolutionConfig", "EvolutionResult", "FastAttack", "INIT_COLORS", "LocalSearch",
    "LocalSearchResult", "ORDERS",
    "OnePixelAttack", "PixelChange", "PositionVerdicts", "REFINES", "RandomSearchAttack",
    "RankedScanAttack", "SEARCHES", "STEP_KINDS", "STRATEGIES", "ScanResult",
    "SearchOutcome", "SusceptibilityScan", "TIE_BREAKS", "UnboundedRoundingError",
    "Verification", "Verifier",
    "check_labels", "colour_grid", "evaluation_mode", "p_schedule", "rank_positions",
    "ranked_prior", "scan_positions",
]
