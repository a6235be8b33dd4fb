"""What runs and scans cost, said before the work starts: the most model queries each
search spends, and the queries (and on the CPU the time) of the whole work."""

from __future__ import annotations

from ..data import as_height_width
from ..data.nips17 import PUBLISHED_SIZE
from ..models import model_spec
from ..search.fast import MAX_RECHECKED
from .config import ExperimentConfig
from .modes import parse_mode

# queries per second of whole attacks on the CPU, measured on the 2-core machine of
# benchmarks/RESULTS.md (the committed runs: DE ~2,000/s, scans ~1,100/s on the bundled
# CIFAR model; ImageNet SqueezeNets from the engines' rates there): estimates only
QUERY_RATES = {"squeezenet1_1-cifar10": {"search": 2000, "scan": 1100},
               "squeezenet1_1": {"search": 300, "scan": 300},
               "squeezenet1_0": {"search": 250, "scan": 250}}
WARN_QUERIES = 10**8  # a warning line past this many queries ...
WARN_SECONDS = 3600  # ... or past an hour (estimated)


def duration(seconds: float) -> str:
    """A rough duration in words.

    Args:
        seconds: the duration.

    Returns:
        ``40 s``, ``12 min``, ``3.5 h`` or ``6 days``.
    """
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:,.0f} days"


def cost_lines(parts: list[tuple[int, str]], model: str, device: str, what: str,
               exact: bool = False, advice: str = "") -> list[str]:
    """The cost of the work in words, before it starts: queries, and on the CPU the time
    at a measured rate (an estimate); a ``warning:`` line past :data:`WARN_QUERIES`
    queries or :data:`WARN_SECONDS`.

    Args:
        parts: ``(queries, kind)`` of each part of the work; kind ``search`` or ``scan``
            (their rates differ).
        model: the model's registry name (its rate).
        device: where the work runs (times are estimated for ``cpu`` only).
        what: the work, in words (``"12 attacks"``).
        exact: the queries are exact (a scan), not an upper bound (searches stop early).
        advice: how to make the work smaller (said in the warning).

    Returns:
        The cost line, and a warning line for a large job.
    """
    queries = sum(q for q, _ in parts)
    rates = QUERY_RATES.get(model)
    seconds = None
    if device == "cpu" and rates is not None:
        seconds = sum(q / rates[kind] for q, kind in parts)
        rate = min(rates[kind] for _, kind in parts) if parts else rates["search"]
        timing = (f"; about {duration(seconds)} at ~{rate:,} queries/s (an estimate for "
                  "a 2-core CPU)")
    else:
        timing = f" (time not estimated on {device}: no measured rate for {model} there)"
    lines = [f"cost: {'' if exact else 'at most '}{queries:,} model queries for "
             f"{what}{timing}"]
    if queries > WARN_QUERIES or (seconds is not None and seconds > WARN_SECONDS):
        size = f"{queries:.1e} queries" + (f", about {duration(seconds)}"
                                           if seconds is not None else "")
        lines.append(f"warning: this is a large job ({size}); {advice + '; ' if advice else ''}"
                     "Ctrl-C stops it, keeping what is finished")
    return lines


def max_queries(config: ExperimentConfig, mode: str,
                image_size: tuple[int, int] | None = None) -> int | None:
    """The most model queries one attack of ``mode`` spends (searches stop early when
    they succeed).

    Args:
        config: the run's config.
        mode: one of its modes.
        image_size: ``(height, width)`` of the attacked images; without it, the model's
            declared input (a registered model, ``input_size``, NIPS-17 resized inside).

    Returns:
        The queries, or ``None`` for a search whose budget is not known here (a scan or
        the fast mode when the image size is not known).
    """
    search, _ = parse_mode(mode)
    if search == "de":
        return config.popsize * (config.maxiter + 1)
    if search == "random_search":
        return config.query_budget or 10_000
    every = _positions(config, image_size)
    if every is None:
        return None
    positions = min(config.scan_positions or every, every)
    if search == "scan":
        return positions * config.levels ** 3
    if search == "fast":  # the corners, the certificate's re-checks, the refine budget
        return 8 * positions + 8 * MAX_RECHECKED + (
            config.fast_refine_queries if config.fast_refine == "de" else 0)
    return None


def _positions(config: ExperimentConfig, image_size: tuple[int, int] | None) -> int | None:
    """Pixel positions of an attacked image (``None`` when its size is not known)."""
    if image_size is not None:
        return int(image_size[0]) * int(image_size[1])
    if config.resize_inside:
        return PUBLISHED_SIZE * PUBLISHED_SIZE
    if config.input_size is not None:
        height, width = as_height_width(config.input_size)
        return height * width
    try:
        side = model_spec(config.model).input_size
    except KeyError:
        return None
    return side * side if isinstance(side, int) else None
