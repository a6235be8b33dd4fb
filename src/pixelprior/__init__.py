"""pixelprior: interpretability-guided sparse adversarial attacks.

Data flows one way through packages named after its stages, each importing only from
the ones before it::

    data → models → maps → priors → scoring → search → experiment → report → cli

(with small shared helpers below them all: ``_streams``, ``_io``, ``_format``,
``_registry``). This namespace is the flat public API.
"""

from .data import SusceptibilityMaps, load_cifar10, load_cifar10_sample, load_cifar10_test, to_float
from .experiment import ExperimentConfig
from .maps import (
    CaptumSensitivity,
    GradCAM,
    IntegratedGradients,
    Occlusion,
    SmoothGrad,
    VanillaGradient,
)
from .models import load_model
from .priors import (
    OraclePrior,
    RandomSetPrior,
    SusceptibleSetPrior,
    TopKPrior,
    UniformPrior,
    WeightedPrior,
    make_prior,
)
from .scoring import FullPassScorer, IncrementalScorer, Scorer, make_scorer
from .search import (
    AttackOutput,
    AttackResult,
    DifferentialEvolution,
    EvolutionConfig,
    FastAttack,
    OnePixelAttack,
    PixelChange,
    RandomSearchAttack,
    RankedScanAttack,
    SusceptibilityScan,
)

from ._version import __version__  # noqa: E402

__all__ = [
    "AttackOutput", "AttackResult", "CaptumSensitivity", "DifferentialEvolution",
    "EvolutionConfig", "ExperimentConfig", "FastAttack", "FullPassScorer", "GradCAM", "IncrementalScorer",
    "IntegratedGradients", "Occlusion", "OnePixelAttack", "OraclePrior", "PixelChange",
    "RandomSearchAttack", "RandomSetPrior", "RankedScanAttack", "Scorer", "SmoothGrad",
    "SusceptibilityMaps", "SusceptibilityScan", "SusceptibleSetPrior", "TopKPrior",
    "UniformPrior", "VanillaGradient", "WeightedPrior", "load_cifar10", "load_cifar10_sample",
    "load_cifar10_test", "load_model", "make_prior", "make_scorer", "to_float",
]
