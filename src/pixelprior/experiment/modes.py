"""Modes: what an experiment runs, by name, and the one place attacks are built from a
configuration.

A mode names a search of :data:`~pixelprior.search.SEARCHES` and its argument:
``scan:gradient`` (a scan in the gradient's order), ``random_search:constrained`` (random
search from the susceptible set). Differential evolution's modes are the bare prior names
(``unconstrained`` and ``constrained`` are the paper's).

The search classes know nothing of the configuration: :data:`ADAPTERS` holds, per search
name, the function that builds that search from an
:class:`~pixelprior.experiment.ExperimentConfig` (which config fields become which of
the search's options). A new search adds one entry there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..maps import METHODS, method_options
from ..priors import MODE_ALIASES, PRIORS, Prior, make_prior
from ..search import (
    ORDERS,
    SEARCHES,
    Attack,
    FastAttack,
    OnePixelAttack,
    RandomSearchAttack,
    RankedScanAttack,
    ranked_prior,
)

# differential evolution's modes: the paper's two names, then every prior
DE_MODES = (*MODE_ALIASES, *PRIORS)
SCAN_ORDERS = ORDERS
SENSITIVITIES = METHODS.names()

# Sparse-RS's budget, used when the config leaves query_budget unset
DEFAULT_QUERY_BUDGET = 10_000

__all__ = ["ADAPTERS", "DEFAULT_QUERY_BUDGET", "DE_MODES", "READ_WHEN", "SCAN_ORDERS",
           "SENSITIVITIES", "build_attack", "de_prior", "mode_meaning", "mode_prior",
           "modes_help", "parse_mode"]


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


def mode_meaning(mode: str) -> tuple[str | None, str | None]:
    """What a mode runs, whatever its spelling: :func:`parse_mode` with the paper's names
    resolved for every search that starts from a prior (``constrained`` is
    ``susceptible``, ``random_search`` is ``random_search:unconstrained``) and default
    arguments filled in (``scan`` is ``scan:raster``), so two
    spellings of one experiment compare equal."""
    kind, argument = parse_mode(mode)
    if kind is not None and argument is not None and SEARCHES.get(kind).argument == "prior":
        return kind, MODE_ALIASES.get(argument, argument)  # de, random_search:constrained
    return kind, argument


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
    own = PRIORS.entry(key).options
    kwargs: dict = {name: value for name, value in (("tau", config.tau),
                                                    ("scan", config.oracle)) if name in own}
    kwargs.update({k: v for k, v in config.prior_options.items() if k in own})
    if PRIORS.get(key).needs_sensitivity:  # by the prior's class, not by its name
        kwargs.update(sensitivity=config.sensitivity,
                      **method_options(config.sensitivity, config.sensitivity_kwargs()))
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


# ------------------------------------------------------------------ adapters
# adapter(config, model, prior, argument, shared) -> the search, where ``argument`` is the
# mode's argument (what follows "search:") and ``shared`` the Attack options
Adapter = Callable[[Any, nn.Module, Prior | None, str | None, dict], Attack]


def _differential_evolution(config, model: nn.Module, prior: Prior | None,
                            argument: str | None, shared: dict) -> Attack:
    """:class:`~pixelprior.search.OnePixelAttack` with the config's DE fields."""
    return OnePixelAttack(model, prior, popsize=config.popsize, maxiter=config.maxiter,
                          mutation=config.mutation, strategy=config.strategy,
                          recombination=config.recombination,
                          out_of_bounds=config.out_of_bounds, stop_on=config.stop_on,
                          replace_on_tie=config.replace_on_tie, init_color=config.init_color,
                          pixel_count=config.pixels, **shared)


def _ranked_scan(config, model: nn.Module, prior: Prior | None, argument: str | None,
                 shared: dict) -> Attack:
    """:class:`~pixelprior.search.RankedScanAttack` on the config's grid (``levels``),
    to ``scan_positions``; the ``raster`` order keeps raster order for ties."""
    return RankedScanAttack(model, prior, levels=config.levels,
                            tie_break="raster" if argument == "raster" else "random",
                            max_positions=config.scan_positions, **shared)


def _random_search(config, model: nn.Module, prior: Prior | None, argument: str | None,
                   shared: dict) -> Attack:
    """:class:`~pixelprior.search.RandomSearchAttack` with the config's ``query_budget``
    (:data:`DEFAULT_QUERY_BUDGET` when unset) and ``pixels``."""
    return RandomSearchAttack(model, prior, budget=config.query_budget or DEFAULT_QUERY_BUDGET,
                              pixel_count=config.pixels, **shared)


def _fast(config, model: nn.Module, prior: Prior | None, argument: str | None,
          shared: dict) -> Attack:
    """:class:`~pixelprior.search.FastAttack` with ``fast_refine``,
    ``fast_refine_queries`` (its ``refine_budget``), ``scan_positions`` and the verifier's
    ``fast_verify``, ``verify_boxes``, ``verify_seconds`` (targeted attacks: no
    verifier, it proves untargeted robustness); the ``raster`` order keeps raster order
    for ties, as ``scan:raster`` does."""
    verify = "off" if shared.get("targeted") else config.fast_verify
    return FastAttack(model, prior, refine=config.fast_refine,
                      refine_budget=config.fast_refine_queries,
                      max_positions=config.scan_positions,
                      tie_break="raster" if argument == "raster" else "random", verify=verify,
                      verify_boxes=config.verify_boxes, verify_seconds=config.verify_seconds,
                      **shared)


# search name (SEARCHES) -> how a configuration builds it
ADAPTERS: dict[str, Adapter] = {
    "de": _differential_evolution,
    "scan": _ranked_scan,
    "random_search": _random_search,
    "fast": _fast,
}


# search name -> the config fields its adapter reads (beside ``pixels`` and the shared
# options); a field set for a run whose modes read none of them is refused, not ignored
SEARCH_FIELDS: dict[str, tuple[str, ...]] = {
    "de": ("popsize", "maxiter", "mutation", "strategy", "recombination", "out_of_bounds",
           "stop_on", "replace_on_tie", "init_color"),
    "scan": ("levels", "scan_positions"),
    "random_search": ("query_budget",),
    "fast": ("fast_refine", "fast_refine_queries", "scan_positions", "fast_verify",
             "verify_boxes", "verify_seconds"),
}


def reads_tau(mode: str) -> bool:
    """Whether a mode starts from a prior that thresholds a map at τ."""
    search, argument = parse_mode(mode)
    if search is None or SEARCHES.get(search).argument != "prior":
        return False
    key = MODE_ALIASES.get(argument, argument)
    return key in PRIORS and "tau" in PRIORS.entry(key).options


# the config's map settings (a search reads them only where its prior or order is a map)
MAP_FIELDS = ("sensitivity", "score", "reduction", "normalization", "percentile",
              "n_samples", "noise_level", "absolute")


def map_fields_read(mode: str, sensitivity: str) -> set[str]:
    """The map settings a mode reads: none where it starts from no map (``unconstrained``,
    the oracle, a random or raster order); ``sensitivity`` and that method's options
    where its prior is drawn from a map; the named method's options where its order is
    one (``scan:gradient``, ``fast``).

    Args:
        mode: a mode name.
        sensitivity: the run's map method (what a prior's map is made with).

    Returns:
        Config fields of :data:`MAP_FIELDS`.
    """
    method = map_method(mode, sensitivity)
    if method is None:
        return set()
    fields = {"sensitivity"} if SEARCHES.get(parse_mode(mode)[0]).argument == "prior" else set()
    return fields | set(method_options(method, dict.fromkeys(MAP_FIELDS)))


# options the config sets by fields of their own
FIELD_OPTIONS = {"n_samples", "noise_level", "absolute", "tau", "scan"}


def options_problems(map_options: dict, prior_options: dict, modes: list[str],
                     sensitivity: str) -> list[str]:
    """What is wrong with a run's ``map_options`` and ``prior_options``: a name no map
    (prior) of the registry takes, one with a field of its own, a value the method
    (prior) refuses, or one no mode of the run reads.

    Args:
        map_options: option name → value, for the map methods taking it.
        prior_options: option name → value, for the priors taking it.
        modes: the run's modes.
        sensitivity: the run's map method.

    Returns:
        One phrase per problem.
    """
    problems: list[str] = []
    read_maps = {m for m in (map_method(mode, sensitivity) for mode in modes
                             if parse_mode(mode)[0] is not None) if m is not None}
    read_priors = {MODE_ALIASES.get(a, a) for s, a in map(parse_mode, modes)
                   if s is not None and SEARCHES.get(s).argument == "prior" and a in
                   {*PRIORS, *MODE_ALIASES}}
    for kind, options, registry, read in (("map", map_options, METHODS, read_maps),
                                          ("prior", prior_options, PRIORS, read_priors)):
        for name, value in options.items():
            takers = [m for m in registry if name in registry.entry(m).options]
            problem = _option_problem(kind, name, value, takers, registry, read)
            if problem:
                problems.append(problem)
    return problems


def _option_problem(kind: str, name: str, value: Any, takers: list[str], registry,
                    read: set[str]) -> str | None:
    """Why one of ``map_options`` / ``prior_options`` cannot be used, or ``None``."""
    where = f"{kind}_options.{name}"
    if name in FIELD_OPTIONS:
        return f"{where}: set it as `{'oracle' if name == 'scan' else name}`, its own setting"
    if not takers:
        every = sorted({o for m in registry for o in registry.entry(m).options}
                       - FIELD_OPTIONS)
        return f"{where}: no {kind} takes {name!r}; the {kind} options are {', '.join(every)}"
    if not set(takers) & read:
        return (f"{where} is read by {', '.join(takers)}, which no mode of this run uses; "
                "drop it")
    for taker in sorted(set(takers) & read):  # the maps (priors) the run makes
        try:
            registry.get(taker)(**{name: value})
        except (TypeError, ValueError) as exc:
            return f"{where} = {value!r}: {taker} refuses it ({exc})"
    return None


def map_method(mode: str, sensitivity: str) -> str | None:
    """The sensitivity method whose map a mode reads: ``sensitivity`` where its prior is
    drawn from a map (``constrained``, ``weighted``), the named one where its order is a
    map (``scan:gradient``, ``fast``), ``None`` where it reads no map.

    Args:
        mode: a mode name.
        sensitivity: the run's map method (what a prior's map is made with).

    Returns:
        A name of :data:`~pixelprior.maps.METHODS`, or ``None``.
    """
    search, argument = parse_mode(mode)
    if search is None:
        return None
    if SEARCHES.get(search).argument == "prior":
        key = MODE_ALIASES.get(argument, argument)
        return sensitivity if key in PRIORS and PRIORS.get(key).needs_sensitivity else None
    return argument if argument in METHODS else None


def reads_oracle(mode: str) -> bool:
    """Whether a mode's prior or order is the ``oracle`` scan."""
    return mode == "oracle" or parse_mode(mode)[1] == "oracle"


# settings read only where another one has a value (field: (that field, its values
# that read it, in words))
READ_WHEN: dict[str, tuple[str, tuple[Any, ...], str]] = {
    "percentile": ("normalization", ("percentile",), "normalization = percentile"),
    "fast_refine_queries": ("fast_refine", ("de",), "fast_refine = de (--fast-refine de)"),
    "verify_boxes": ("fast_verify", ("auto", "on"), "verify auto or on"),
    "verify_seconds": ("fast_verify", ("auto", "on"), "verify auto or on"),
    "selection_seed": ("selection", ("random", "random_correct"),
                       "selection random or random_correct"),
}


def _checked() -> set[str]:
    """The fields :func:`unread_settings` looks at."""
    return {"tau", "oracle", *MAP_FIELDS, *READ_WHEN}.union(
        *(set(f) for f in SEARCH_FIELDS.values()))


def unread_settings(given: dict[str, Any], modes: list[str] | tuple[str, ...],
                    selection: str | None = None, sensitivity: str = "smoothgrad",
                    values: dict[str, Any] | None = None) -> list[str]:
    """The settings given that no mode of a run reads (so they would change nothing but
    the run's config hash): a search's own fields (:data:`SEARCH_FIELDS`), ``tau``,
    ``oracle``, the map settings, and the settings read only beside another one's value
    (:data:`READ_WHEN`: a percentile without percentile normalisation, ...).

    Args:
        given: field -> value, as the user set them (``None``: not set).
        modes: the run's modes.
        selection: the run's image selection (``vulnerable``/``robust`` read the oracle).
        sensitivity: the run's map method (whose options a map prior reads).
        values: the run's settings (field -> value; ``None``: :data:`READ_WHEN` is not
            checked).

    Returns:
        The fields set and unread, in the order given.
    """
    searches = {parse_mode(mode)[0] for mode in modes}
    read = {field for search in searches for field in SEARCH_FIELDS.get(search or "", ())}
    if any(reads_tau(mode) for mode in modes):
        read.add("tau")
    if selection in ("vulnerable", "robust") or any(map(reads_oracle, modes)):
        read.add("oracle")
    read.update(*(map_fields_read(mode, sensitivity) for mode in modes))
    reading = {field for field, (other, wanted, _) in READ_WHEN.items()
               if values is None or values.get(other) in wanted}
    read = (read - (set(READ_WHEN) - reading)) | ({"selection_seed"} & reading)
    checked = _checked()
    return [field for field, value in given.items()
            if value is not None and field in checked and field not in read]


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

    Returns:
        The search of the mode, built by its adapter in :data:`ADAPTERS`.

    Raises:
        ValueError: an unknown mode, or a search with no adapter.
    """
    search, argument = parse_mode(mode)
    if search is None:
        raise ValueError(f"unknown mode {mode!r}; use one of: {modes_help()}")
    if search not in ADAPTERS:
        raise ValueError(f"search {search!r} has no adapter in pixelprior.experiment.modes."
                         f"ADAPTERS (it has: {', '.join(ADAPTERS)}); add one")
    shared = dict(seed=seed, max_batch=config.max_batch, batch_invariant=batch_invariant,
                  engine=scorer if scorer is not None else config.engine,
                  precision=config.precision, targeted=targeted)
    return ADAPTERS[search](config, model, mode_prior(config, search, argument), argument,
                           shared)
