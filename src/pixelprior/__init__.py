"""pixelprior: interpretability-guided sparse adversarial attacks.

Image → model → sensitivity map → prior → evolution → result → report.
"""

from .attack import AttackOutput, AttackResult, OnePixelAttack, PixelChange
from .data import load_cifar10, load_cifar10_sample, load_cifar10_test, to_float
from .evolution import DifferentialEvolution, EvolutionConfig
from .models import load_model
from .prior import (
    RandomSetPrior,
    SusceptibleSetPrior,
    TopKPrior,
    UniformPrior,
    WeightedPrior,
    make_prior,
)
from .sensitivity import GradCAM, IntegratedGradients, SmoothGrad, VanillaGradient

__version__ = "0.1.0"

__all__ = [
    "AttackOutput", "AttackResult", "DifferentialEvolution", "EvolutionConfig", "GradCAM",
    "IntegratedGradients", "OnePixelAttack", "PixelChange", "RandomSetPrior", "SmoothGrad",
    "SusceptibleSetPrior", "TopKPrior", "UniformPrior", "VanillaGradient", "WeightedPrior",
    "load_cifar10", "load_cifar10_sample", "load_cifar10_test", "load_model", "make_prior",
    "to_float",
]
