"""pixelprior: interpretability-guided sparse adversarial attacks.

Image → model → sensitivity map → prior → search (evolution or scan) + scorer → result →
report.
"""

from .attack import AttackOutput, AttackResult, OnePixelAttack, PixelChange
from .config import ExperimentConfig
from .data import load_cifar10, load_cifar10_sample, load_cifar10_test, to_float
from .evolution import DifferentialEvolution, EvolutionConfig
from .models import load_model
from .prior import (
    OraclePrior,
    RandomSetPrior,
    SusceptibleSetPrior,
    TopKPrior,
    UniformPrior,
    WeightedPrior,
    make_prior,
)
from .scoring import FullPassScorer, IncrementalScorer, Scorer, make_scorer
from .sensitivity import (
    CaptumSensitivity,
    GradCAM,
    IntegratedGradients,
    Occlusion,
    SmoothGrad,
    VanillaGradient,
)
from .susceptibility import RankedScanAttack, SusceptibilityMaps, SusceptibilityScan

__version__ = "0.2.0"

__all__ = [
    "AttackOutput", "AttackResult", "CaptumSensitivity", "DifferentialEvolution",
    "EvolutionConfig", "ExperimentConfig", "FullPassScorer", "GradCAM", "IncrementalScorer",
    "IntegratedGradients", "Occlusion", "OnePixelAttack", "OraclePrior", "PixelChange",
    "RandomSetPrior", "RankedScanAttack", "Scorer", "SmoothGrad", "SusceptibilityMaps",
    "SusceptibilityScan", "SusceptibleSetPrior", "TopKPrior", "UniformPrior",
    "VanillaGradient", "WeightedPrior", "load_cifar10", "load_cifar10_sample",
    "load_cifar10_test", "load_model", "make_prior", "make_scorer", "to_float",
]
