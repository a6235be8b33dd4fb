"""pixelprior's public API: the one list of its names, as plain imports.

Type checkers and editors read this file; at run time ``pixelprior/__init__.py`` reads
the same imports and performs each on first use, so ``import pixelprior`` loads no
torch. Add a public name here (``Name as Name``, grouped by the package it lives in)
and nowhere else.
"""

from ._version import __version__ as __version__

# image sets
from .data import SusceptibilityMaps as SusceptibilityMaps
from .data import load_cifar10 as load_cifar10
from .data import load_cifar10_sample as load_cifar10_sample
from .data import load_cifar10_test as load_cifar10_test
from .data import to_float as to_float

# experiments: one configuration, attacks built from it
from .experiment import ExperimentConfig as ExperimentConfig
from .experiment import build_attack as build_attack

# sensitivity maps: the base class, one class per method, the registry's factory
from .maps import CaptumSensitivity as CaptumSensitivity
from .maps import GradCAM as GradCAM
from .maps import InputXGradient as InputXGradient
from .maps import IntegratedGradients as IntegratedGradients
from .maps import Occlusion as Occlusion
from .maps import SensitivityMethod as SensitivityMethod
from .maps import SmoothGrad as SmoothGrad
from .maps import VanillaGradient as VanillaGradient
from .maps import make_sensitivity as make_sensitivity

# models
from .models import load_model as load_model
from .models import load_model_spec as load_model_spec

# priors over positions: the base class, its distribution, one class per prior
from .priors import OraclePrior as OraclePrior
from .priors import PositionDistribution as PositionDistribution
from .priors import Prior as Prior
from .priors import RandomSetPrior as RandomSetPrior
from .priors import SusceptibleSetPrior as SusceptibleSetPrior
from .priors import TopKPrior as TopKPrior
from .priors import UniformPrior as UniformPrior
from .priors import WeightedPrior as WeightedPrior
from .priors import make_prior as make_prior

# scorers: how candidates are scored
from .scoring import FullPassScorer as FullPassScorer
from .scoring import IncrementalScorer as IncrementalScorer
from .scoring import Scored as Scored
from .scoring import Scorer as Scorer
from .scoring import make_scorer as make_scorer

# searches: the Attack base class, its results, one class per search, the exhaustive scan
from .search import Attack as Attack
from .search import AttackOutput as AttackOutput
from .search import AttackResult as AttackResult
from .search import DifferentialEvolution as DifferentialEvolution
from .search import EvolutionConfig as EvolutionConfig
from .search import FastAttack as FastAttack
from .search import OnePixelAttack as OnePixelAttack
from .search import PixelChange as PixelChange
from .search import RandomSearchAttack as RandomSearchAttack
from .search import RankedScanAttack as RankedScanAttack
from .search import ScanResult as ScanResult
from .search import SearchOutcome as SearchOutcome
from .search import SusceptibilityScan as SusceptibilityScan
from .search import Verification as Verification
from .search import Verifier as Verifier
