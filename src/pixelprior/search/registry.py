"""The search registry: the single source of search names and help. A new search is one
module with an :class:`~pixelprior.search.Attack` subclass and one line here."""

from __future__ import annotations

from .._registry import Registry
from .base import Attack
from .fast import FastAttack
from .one_pixel import OnePixelAttack
from .random_search import RandomSearchAttack
from .scan import RankedScanAttack

SEARCHES: Registry[type[Attack]] = Registry("search")
SEARCHES.register("de", OnePixelAttack, "differential evolution started from a prior "
                  "(Su et al.; the paper's modes)")
SEARCHES.register("scan", RankedScanAttack, "every position x a colour grid in the order "
                  "of a map, to the first success")
SEARCHES.register("random_search", RandomSearchAttack, "Sparse-RS's L0 random search over "
                  "corner colours (Croce et al.)")
SEARCHES.register("fast", FastAttack, "corners of the colour cube in a map's order: the first "
                  "success, or a certificate on the corner grid")
