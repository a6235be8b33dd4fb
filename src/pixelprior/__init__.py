"""pixelprior: interpretability-guided sparse adversarial attacks.

Data flows one way through packages named after its stages, each importing only from
the ones before it::

    data → models → maps → priors → scoring → search → experiment → report → cli

(with small shared helpers below them all: ``_streams``, ``_io``, ``_format``,
``_registry``). This namespace is the flat public API.

The names below are imported on first use (PEP 562): ``import pixelprior`` alone loads
no torch, so the command line installs its signal handlers before the heavy imports.
``from pixelprior import X`` and ``pixelprior.X`` work as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._version import __version__  # noqa: F401  (pixelprior.__version__)

# public name -> the package that defines it
_HOMES = {
    "SusceptibilityMaps": "data", "load_cifar10": "data", "load_cifar10_sample": "data",
    "load_cifar10_test": "data", "to_float": "data",
    "ExperimentConfig": "experiment",
    "CaptumSensitivity": "maps", "GradCAM": "maps", "IntegratedGradients": "maps",
    "Occlusion": "maps", "SmoothGrad": "maps", "VanillaGradient": "maps",
    "load_model": "models",
    "OraclePrior": "priors", "RandomSetPrior": "priors", "SusceptibleSetPrior": "priors",
    "TopKPrior": "priors", "UniformPrior": "priors", "WeightedPrior": "priors",
    "make_prior": "priors",
    "FullPassScorer": "scoring", "IncrementalScorer": "scoring", "Scorer": "scoring",
    "make_scorer": "scoring",
    "AttackOutput": "search", "AttackResult": "search", "DifferentialEvolution": "search",
    "EvolutionConfig": "search", "FastAttack": "search", "OnePixelAttack": "search",
    "PixelChange": "search", "InputXGradient": "maps", "load_model_spec": "models",
    "RandomSearchAttack": "search", "RankedScanAttack": "search",
    "SusceptibilityScan": "search",
}

__all__ = sorted(_HOMES)  # the one list of public names


def __getattr__(name: str):
    """Import a public name on first access (and keep it, so later accesses are plain)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pixelprior' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and editors: the names as plain imports
    from .data import (  # noqa: F401
        SusceptibilityMaps,
        load_cifar10,
        load_cifar10_sample,
        load_cifar10_test,
        to_float,
    )
    from .experiment import ExperimentConfig  # noqa: F401
    from .maps import (  # noqa: F401
        CaptumSensitivity,
        GradCAM,
        InputXGradient,
        IntegratedGradients,
        Occlusion,
        SmoothGrad,
        VanillaGradient,
    )
    from .models import load_model, load_model_spec  # noqa: F401
    from .priors import (  # noqa: F401
        OraclePrior,
        RandomSetPrior,
        SusceptibleSetPrior,
        TopKPrior,
        UniformPrior,
        WeightedPrior,
        make_prior,
    )
    from .scoring import FullPassScorer, IncrementalScorer, Scorer, make_scorer  # noqa: F401
    from .search import (  # noqa: F401
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
