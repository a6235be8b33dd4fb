"""The prior registry: the single source of prior names (and the paper's two mode
names for them)."""

from __future__ import annotations

from typing import Any

from .._registry import Registry
from .base import Prior
from .oracle import OraclePrior
from .sensitivity import RandomSetPrior, SusceptibleSetPrior, TopKPrior, WeightedPrior
from .uniform import UniformPrior

PRIORS: Registry[type[Prior]] = Registry("prior")
PRIORS.register("uniform", UniformPrior, "every pixel equally likely (Su et al.)")
PRIORS.register("susceptible", SusceptibleSetPrior, "uniform over S = {s > tau} (the paper)",
                options=("tau",))
PRIORS.register("weighted", WeightedPrior, "proportional to the sensitivity map")
PRIORS.register("topk", TopKPrior, "uniform over the k most sensitive pixels",
                options=("k",))
PRIORS.register("random_set", RandomSetPrior, "control: a random set as large as S, fresh "
                "per image and seed", options=("tau",))
PRIORS.register("oracle", OraclePrior, "upper bound: the true vulnerable set of a scan",
                options=("scan",))
# The paper's two modes, by the names the CLI and the experiments use.
MODE_ALIASES = {"unconstrained": "uniform", "constrained": "susceptible"}


def make_prior(name: str, **options: Any) -> Prior:
    """Build a prior by name.

    Args:
        name: a prior of :data:`PRIORS`, or ``unconstrained``/``constrained`` (the
            paper's modes).
        **options: the prior's options (``tau``, ``k``, ``scan``, ...) and, for a prior
            that uses a map, ``sensitivity`` and that method's options.

    Returns:
        The prior.

    Raises:
        ValueError: an unknown prior, or a bad value.
        TypeError: an option the prior does not take, named with the accepted ones.
    """
    key = MODE_ALIASES.get(name, name)
    if key not in PRIORS:
        known = sorted([*PRIORS, *MODE_ALIASES])
        raise ValueError(f"unknown prior {name!r}; use one of {known}")
    cls = PRIORS.get(key)
    own = PRIORS.entry(key).options
    unknown = [k for k in options if k not in own]
    if unknown and not cls.needs_sensitivity:
        raise TypeError(f"prior {name!r} got an unknown option {unknown[0]!r}; it takes: "
                        f"{', '.join(own) if own else 'no options'}")
    return cls(**options)  # a map's prior checks the rest against its method
