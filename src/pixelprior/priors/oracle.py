"""The upper bound: start inside the true vulnerable set of an exhaustive scan."""

from __future__ import annotations

import torch
from torch import nn

from ..data import SusceptibilityMaps
from .base import PositionDistribution, Prior, _from_sets


class OraclePrior(Prior):
    """Upper bound: start inside the *true* vulnerable set of each image.

    Images are matched by their pixels. The set is every position where some color of
    the scan's grid changes the label; the map (``sensitivity``) ranks positions by how
    far the best color there pushes the true class below the runner-up, so every
    vulnerable position ranks above every other. An image with no vulnerable position
    falls back to the whole image.

    Args:
        scan: an exhaustive susceptibility scan: a folder holding ``maps.npz``, the file,
            or a loaded :class:`~pixelprior.data.SusceptibilityMaps`.

    Raises:
        pixelprior.data.DataNotFoundError: no scan there (and the loader's other errors).
    """

    name = "oracle"
    needs_sensitivity = False

    def __init__(self, scan) -> None:
        super().__init__()
        self.scan = scan if isinstance(scan, SusceptibilityMaps) else (
            SusceptibilityMaps.load(scan))

    def config(self) -> dict:
        """Returns: the prior's name and the scan's source."""
        return {"prior": self.name, "scan": self.scan.source}

    def distribution(self, model: nn.Module | None, images: torch.Tensor,
                     labels: torch.Tensor, *, seed: int = 0,
                     keys: list[int] | None = None) -> PositionDistribution:
        """The scan's vulnerable set of each image (see base class
        :meth:`Prior.distribution`; ``model``, ``seed`` and ``keys`` are not used).

        Raises:
            KeyError: an image that is not in the scan (its message says to scan it first).
        """
        rows = self.scan.rows_of(images)
        sets = torch.from_numpy(self.scan.vulnerable[rows])
        return _from_sets(sets, torch.from_numpy(self.scan.oracle_map()[rows]))

    def from_sensitivity(self, maps, height, width, **_):  # pragma: no cover - not used
        """Not used: the oracle reads its scan, not a map (see base class)."""
        raise NotImplementedError

