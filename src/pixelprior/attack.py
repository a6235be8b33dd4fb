"""Deprecated import path, kept for one release (0.3); it warns on import.

Its names live elsewhere now (mostly in ``pixelprior.search``);
import them from there.
"""

import warnings

from pixelprior._streams import (
    image_digest,
    image_key,
)
from pixelprior._streams import (
    stream as problem_generator,
)
from pixelprior.data.base import (
    check_images,
)
from pixelprior.priors.base import (
    PositionDistribution,
    Prior,
)
from pixelprior.priors.uniform import (
    UniformPrior,
)
from pixelprior.scoring.base import (
    ModelOutputError,
    Scorer,
    apply_pixels,
    decode_pixels,
    perturb_rows,
)
from pixelprior.scoring.registry import (
    ENGINES,
    make_scorer,
)
from pixelprior.search.base import (
    Attack,
    AttackOutput,
    AttackResult,
    PixelChange,
    SearchOutcome,
)
from pixelprior.search.evolution import (
    DifferentialEvolution,
    EvolutionConfig,
)
from pixelprior.search.one_pixel import (
    INIT_COLORS,
    OnePixelAttack,
)

__all__ = [
    "Attack", "AttackOutput", "AttackResult", "DifferentialEvolution", "ENGINES",
    "EvolutionConfig", "INIT_COLORS", "ModelOutputError", "OnePixelAttack", "PixelChange",
    "PositionDistribution", "Prior", "Scorer", "SearchOutcome", "UniformPrior",
    "apply_pixels", "check_images", "decode_pixels", "image_digest", "image_key",
    "make_scorer", "perturb_rows", "problem_generator",
]

warnings.warn("pixelprior.attack moved (see pixelprior.search); this import "
              "path goes in pixelprior 0.4", DeprecationWarning, stacklevel=2)
