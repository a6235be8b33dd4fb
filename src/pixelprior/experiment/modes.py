"""Modes: what an experiment runs, by name, and the one place attacks are built from a
configuration.

A mode names a search of :data:`~pixelprior.search.SEARCHES` and its argument:
``scan:gradient`` (a scan in the gradient's order), ``random_search:constrained`` (random
search from the susceptible set). Differential evolution's modes are the bare prior names
(``unconstrained`` and ``constrained`` are the paper's).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from ..maps import METHODS, method_options
from ..priors import MODE_ALIASES, PRIORS, Prior, make_prior
from ..search import ORDERS, SEARCHES, Attack, ranked_prior

# differential evolution's modes: the paper's two names, then every prior
DE_MODES = (*MODE_ALIASES, *PRIORS)
SCAN_ORDERS = ORDERS
SENSITIVITIES = METHODS.names()

__all__ = ["DE_MODES", "SCAN_ORDERS", "SENSITIVITIES", "build_attack", "de_prior",
           "mode_prior", "modes_help", "parse_mode"]


def _arguments(search: str) -> tuple[str, ...]:
    """The arguments a search's modes take (after ``search:``)."""
    return {"order": ORDERS, "prior": DE_MODES}.get(SEARCHES.get(search).argument, ())


def parse_mode(mode: str) -> tuple[str | None, str | None]:
    """``(search, argument)`` of a mode name, e.g. ``("de", "constrained")``,
    ``("scan", "raster")`` for ``scan``; ``(None, None)`` for an unknown mode."""
    if mode in DE_MODES:
        return "de", mode
    name, colon, argument = mode.partition(":")
    if name == "de" or name not in SEARCHES:
        return None, None
    if not colon:
        return name, SEARCHES.get(name).default_argument
    return (name, argument) if argument in _arguments(name) else (None, None)


def modes_help() -> str:
    """Every mode name, in words (for errors and help)."""
    parts = [", ".join(DE_MODES)]
    for name in SEARCHES:
        if name == "de":
            continue
        arguments = _arguments(name)
        parts.append(f"{name}" + (f" or {name}:ARG with ARG in {', '.join(arguments)}"
                                  if arguments else ""))
    return "; ".join(parts)


def de_prior(config, mode: str) -> Prior:
    """The prior of a differential-evolution mode (``unconstrained``, ``constrained`` or
    a prior name), with the configuration's map settings."""
    key = MODE_ALIASES.get(mode, mode)
    if key == "uniform":
        return make_prior("uniform")
    if key == "oracle":
        return make_prior("oracle", scan=config.oracle)
    kwargs: dict = {"sensitivity": config.sensitivity,
                    **method_options(config.sensitivity, config.sensitivity_kwargs())}
    if "tau" in PRIORS.entry(key).options:
        kwargs["tau"] = config.tau
    return make_prior(key, **kwargs)


def mode_prior(config, search: str, argument: str | None) -> Prior | None:
    """The prior of a mode: a start distribution (``prior`` arguments) or an order."""
    kind = SEARCHES.get(search).argument
    if kind == "order":
        settings = (method_options(argument, config.sensitivity_kwargs())
                    if argument in METHODS else {})
        return ranked_prior(argument, settings, config.oracle)
    if kind == "prior":
        return de_prior(config, argument)
    return None


def build_attack(config, mode: str, model: nn.Module, seed: int, scorer=None,
                 batch_invariant: bool = True, targeted: bool = False) -> Attack:
    """The attack of one mode and seed, as the runner and the command line run it.

    Args:
        config: an :class:`~pixelprior.experiment.ExperimentConfig`.
        mode: a mode name (see :func:`parse_mode`).
        model: the model to attack.
        seed: the attack's seed.
        scorer: a scorer built earlier, shared instead of ``config.engine``.
        batch_invariant: results independent of the batch (the runner's default).
        targeted: a targeted attack.
    """
    search, argument = parse_mode(mode)
    if search is None:
        raise ValueError(f"unknown mode {mode!r}; use one of: {modes_help()}")
    settings: Mapping = config.to_dict()
    common = dict(seed=seed, max_batch=config.max_batch, batch_invariant=batch_invariant,
                  engine=scorer if scorer is not None else config.engine,
                  precision=config.precision, targeted=targeted)
    return SEARCHES.get(search).from_settings(model, mode_prior(config, search, argument),
                                              settings, arg=argument, **common)
