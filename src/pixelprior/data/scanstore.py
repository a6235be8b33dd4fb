"""The saved result of an exhaustive one-pixel scan (``maps.npz``): the ground truth that
oracle priors, ranked scans and map evaluation read.

Arrays are per image (``[B, H, W]``); images are matched by their pixels
(:func:`~pixelprior._streams.pixel_key`), never by position.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._io import save_npz_atomic
from .._streams import pixel_keys

MAPS_FILE = "maps.npz"

_LOADED: dict[tuple, SusceptibilityMaps] = {}


@dataclass
class SusceptibilityMaps:
    """A scan saved to disk (``maps.npz``): what :class:`~pixelprior.priors.OraclePrior`
    and map evaluation read.

    Attributes:
        image_keys: ``str [B]``: :func:`~pixelprior._streams.pixel_key` of the scanned
            float images.
        image_indices: ``int64 [B]``: dataset indices (-1 for a file).
        labels: ``int64 [B]``.
        min_true_probability: ``float32 [B, H, W]``: the lowest true-class probability
            any color of the grid reaches at each position.
        min_margin: ``float32 [B, H, W]``: the lowest margin (negative: fooled).
        vulnerable: ``bool [B, H, W]``: some color fools the model there.
        best_colour: ``float32 [B, H, W, C]``: the color of the lowest margin (the
            ``maps.npz`` key keeps its name).
        levels: the color grid's levels per channel; 0 for the exact ground truth of the
            sound verifier (every color of the cube, see
            :func:`~pixelprior.experiment.exact_ground_truth`).
        source: the file it was read from.
        info: what the scan was made with (model, data, options).
        unknown: ``bool [B, H, W]``: positions the verifier left undecided (the exact
            ground truth only; ``None`` for a scan, which decides every position). Map
            metrics leave them out.
    """

    image_keys: np.ndarray
    image_indices: np.ndarray
    labels: np.ndarray
    min_true_probability: np.ndarray
    min_margin: np.ndarray
    vulnerable: np.ndarray
    best_colour: np.ndarray
    levels: int
    source: str = ""
    info: dict = field(default_factory=dict)
    unknown: np.ndarray | None = None

    @property
    def exact(self) -> bool:
        """The ground truth covers every color (the verifier's), not a grid."""
        return self.levels == 0

    @property
    def colours(self) -> int:
        """Model queries per position of a scan over the grid (1 for the exact ground
        truth: a position is one verification)."""
        return 1 if self.exact else self.levels ** self.best_colour.shape[-1]

    def decided(self, row: int) -> np.ndarray:
        """``bool [H, W]``: the positions of image ``row`` whose verdict is known."""
        if self.unknown is None:
            return np.ones(self.vulnerable.shape[1:], dtype=bool)
        return ~self.unknown[row]

    def oracle_map(self) -> np.ndarray:
        """The lowest margin, negated and min-max normalised per image, so every
        vulnerable position (margin < 0) ranks above every other (computed once).

        Returns:
            ``float32 [B, H, W]`` in [0, 1].
        """
        if "_oracle_map" not in self.__dict__:
            self.__dict__["_oracle_map"] = self._compute_oracle_map()
        return self.__dict__["_oracle_map"]

    def _compute_oracle_map(self) -> np.ndarray:
        score = -self.min_margin.reshape(len(self.labels), -1).astype(np.float64)
        low = score.min(1, keepdims=True)
        span = score.max(1, keepdims=True) - low
        out = np.where(span > 0, (score - low) / np.where(span > 0, span, 1), 0.0)
        out = out.astype(np.float32)
        # float32 may round a vulnerable position's value (margin just below 0) onto a
        # robust one's (just above): those robust values go one step below the lowest
        # vulnerable one (staying in [0, 1]), so each vulnerable position still ranks
        # above each robust one
        vulnerable = score > 0
        lowest = np.where(vulnerable, out, np.inf).min(1, keepdims=True).astype(np.float32)
        below = np.nextafter(lowest, np.float32(0)).astype(np.float32)
        out = np.where(~vulnerable & (out >= lowest), below, out)
        return out.reshape(self.min_margin.shape)

    def rows_of(self, images: torch.Tensor) -> list[int]:
        """Rows of ``images`` in this scan, matched by their pixels.

        Args:
            images: ``float [N, C, H, W]`` in [0, 1].

        Returns:
            The scan's row of each image.

        Raises:
            KeyError: an image the scan does not hold.
        """
        where = {key: row for row, key in enumerate(self.image_keys.tolist())}
        rows = []
        for key in pixel_keys(images.cpu()):
            if key not in where:
                raise KeyError(f"an image is not in the susceptibility scan {self.source}; "
                               "scan it first (`pixelprior susceptibility`)")
            rows.append(where[key])
        return rows

    def save(self, path: str | Path) -> None:
        """Write ``maps.npz`` atomically.

        Args:
            path: the file.

        Raises:
            ValueError: the exact ground truth (it lives in its verification folder).
        """
        if self.exact:
            raise ValueError("the exact ground truth is read from its verification folder "
                             "(pixelprior verify --exact), not saved as a scan")
        save_npz_atomic(Path(path), image_keys=self.image_keys,
                        image_indices=self.image_indices, labels=self.labels,
                        min_true_probability=self.min_true_probability,
                        min_margin=self.min_margin, vulnerable=self.vulnerable,
                        best_colour=self.best_colour, levels=np.int64(self.levels),
                        info=json.dumps(self.info))

    @classmethod
    def load(cls, path: str | Path) -> SusceptibilityMaps:
        """Read a scan (each file version once).

        Args:
            path: a folder holding ``maps.npz``, or the file itself.

        Returns:
            The scan.

        Raises:
            FileNotFoundError: no scan there.
            ValueError: a file that is not a readable scan.
        """
        path = Path(path)
        if path.is_dir():
            path = path / MAPS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no susceptibility scan at {path}; make one with "
                                    "`pixelprior susceptibility ... --out DIR`")
        # runs build an oracle prior or order per group of images: read each file version
        # once (keyed by path, size and modification time; scans are never changed in place)
        stat = path.stat()
        identity = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if identity not in _LOADED:
            _LOADED.clear()  # one scan at a time is what runs use
            _LOADED[identity] = cls._read(path)
        return _LOADED[identity]

    @classmethod
    def _read(cls, path: Path) -> SusceptibilityMaps:
        try:
            with np.load(path, allow_pickle=False) as npz:
                return cls(npz["image_keys"], npz["image_indices"], npz["labels"],
                           npz["min_true_probability"], npz["min_margin"], npz["vulnerable"],
                           npz["best_colour"], int(npz["levels"]), str(path),
                           json.loads(str(npz["info"])))
        except (KeyError, ValueError, OSError) as exc:
            raise ValueError(f"{path}: not a readable susceptibility scan ({exc})") from exc

    @classmethod
    def from_scan(cls, result, images: torch.Tensor, labels: torch.Tensor,
                  indices: list[int], levels: int, info: dict | None = None,
                  keys: list[str] | None = None) -> SusceptibilityMaps:
        """A store from a :class:`~pixelprior.search.ScanResult` of ``images``.

        Args:
            result: the scan's result.
            images: ``float [B, C, H, W]``: the scanned images.
            labels: ``int64 [B]``.
            indices: each image's dataset index (-1 for a file).
            levels: the color grid's levels per channel.
            info: what the scan was made with.
            keys: the images' :func:`~pixelprior._streams.pixel_keys`, when already
                computed.

        Returns:
            The store (not yet saved).
        """
        keys = keys if keys is not None else pixel_keys(images.cpu())
        return cls(np.array(keys), np.asarray(indices, dtype=np.int64),
                   labels.cpu().numpy().astype(np.int64),
                   result.min_fitness.numpy().astype(np.float32),
                   result.min_margin.numpy().astype(np.float32),
                   result.vulnerable.numpy(), result.best_colour.numpy().astype(np.float32),
                   levels, "", info or {})


def scan_summary(maps: SusceptibilityMaps) -> list[dict]:
    """What a scan found, per image.

    Args:
        maps: a scan.

    Returns:
        ``[{"image_index", "vulnerable_positions", "fooled"}]``, one per image.
    """
    counts = maps.vulnerable.reshape(len(maps.labels), -1).sum(1)
    return [{"image_index": int(index), "vulnerable_positions": int(count),
             "fooled": bool(count > 0)}
            for index, count in zip(maps.image_indices.tolist(), counts.tolist(), strict=True)]

