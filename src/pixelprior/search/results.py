"""What attacks return: per-image results, the output of one call, a search's outcome.

Every search returns a :class:`SearchOutcome` (the answer's genes, the queries per image
and its own ``steps`` record); :class:`~pixelprior.search.Attack` turns it into one
:class:`AttackResult` per image and an :class:`AttackOutput` for the call, so the runner,
the report, the figures and the command line treat every search the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..priors import PositionDistribution

__all__ = ["STEP_KINDS", "AttackOutput", "AttackResult", "PixelChange", "SearchOutcome",
           "check_step_fields"]

# the kinds of a search's steps record (a "?" suffix: the value may be None)
STEP_KINDS = ("int", "number", "bool", "str")


def check_step_fields(owner: str, fields: dict[str, str]) -> None:
    """Refuse a steps record declared with a kind that is not one of :data:`STEP_KINDS`.

    Args:
        owner: the search class's name (for the message).
        fields: the record, field name -> kind (e.g. ``{"decided_by": "str?"}``).

    Raises:
        TypeError: a kind is not one of :data:`STEP_KINDS` (with an optional ``?``).
    """
    for name, kind in fields.items():
        if kind.removesuffix("?") not in STEP_KINDS:
            raise TypeError(f"{owner}.step_fields[{name!r}] is {kind!r}; a kind is one of "
                            f"{', '.join(STEP_KINDS)}, with '?' when it may be None")


@dataclass
class PixelChange:
    """One changed pixel: its position and its color before and after.

    Args:
        x: column, ``0 <= x < W``.
        y: row, ``0 <= y < H``.
        old: the clean pixel's ``C`` channel values in [0, 1].
        new: the adversarial pixel's ``C`` channel values in [0, 1].
    """

    x: int
    y: int
    old: list[float]
    new: list[float]


@dataclass
class AttackResult:
    """The outcome of an attack on one image; :meth:`to_row` gives a flat table row.

    Args:
        index: the image's position in the attacked batch.
        success: the adversarial image reaches the goal (another class, or the target);
            ``True`` too, with 0 queries and no pixel, for an image the model gets wrong
            already (``clean_correct`` False: no attack needed, as Foolbox counts it).
        true_label: the image's true class.
        original_label: the model's class for the clean image.
        adversarial_label: the model's class for the adversarial image.
        target: the target class of a targeted attack, else ``None``.
        true_probability: the true class's probability on the adversarial image.
        target_probability: the target's probability there (targeted), else ``None``.
        pixels: the changed pixels, each position once (at most ``pixel_count``: two of
            a candidate's pixels at one position change one; empty where no search ran:
            the model already misclassified the image).
        queries: the model queries spent on the image.
        seconds: the image's share of the call's wall time.
        prior: the prior's name.
        fell_back: the prior's set was empty, so the whole image was used.
        support_size: positions with non-zero start probability.
        seed: the attack's seed.
        clean_correct: the model classified the clean image correctly.
        steps: the search's own record of its effort (``{"generations": g}`` for
            differential evolution, ``{"positions_scanned": n}`` for scans, ...; see each
            search's ``step_fields``), kept in rows as top-level fields.
        adversarial: float ``[C, H, W]`` in [0, 1], the adversarial image.
    """

    index: int
    success: bool
    true_label: int
    original_label: int
    adversarial_label: int
    target: int | None
    true_probability: float
    target_probability: float | None
    pixels: list[PixelChange]
    queries: int
    seconds: float
    prior: str
    fell_back: bool
    support_size: int
    seed: int
    clean_correct: bool = True
    steps: dict[str, Any] = field(default_factory=dict)
    adversarial: torch.Tensor | None = field(default=None, repr=False)

    @property
    def generations(self) -> int | None:
        """The generation of success (differential evolution; ``None`` otherwise)."""
        return self.steps.get("generations")

    @property
    def positions_scanned(self) -> int | None:
        """Positions scanned (scans; ``None`` otherwise)."""
        return self.steps.get("positions_scanned")

    def to_row(self) -> dict:
        """The result as one JSON-serialisable row.

        Returns:
            Every field; ``steps`` as top-level fields (``generations`` always present,
            ``None`` for searches without generations); the pixels as dicts and the first
            pixel's ``x``, ``y``; no adversarial image.
        """
        row = asdict(self)
        row.pop("adversarial")
        steps = row.pop("steps")
        row["generations"] = steps.pop("generations", None)
        row.update(steps)
        row["pixels"] = [asdict(p) for p in self.pixels]
        if self.pixels:
            row["x"], row["y"] = self.pixels[0].x, self.pixels[0].y
        return row


@dataclass
class AttackOutput:
    """Everything one call of :meth:`~pixelprior.search.Attack.run` found.

    Args:
        results: one result per image, in batch order.
        adversarial: float ``[B, C, H, W]`` in [0, 1], the adversarial batch.
        distribution: the prior's distribution over positions for each image.
        seconds: the call's wall time.
    """

    results: list[AttackResult]
    adversarial: torch.Tensor
    distribution: PositionDistribution
    seconds: float

    @property
    def success(self) -> torch.Tensor:
        """bool ``[B]``: which outputs reach the goal — images the attack fooled, and
        images the model got wrong already (``clean_correct`` False; see :attr:`fooled`
        for the attack's own successes)."""
        return torch.tensor([r.success for r in self.results], dtype=torch.bool)

    @property
    def fooled(self) -> torch.Tensor:
        """bool ``[B]``: which images the attack fooled — classified correctly, then
        changed by it (its success rate is ``fooled.sum() / clean_correct.sum()``)."""
        return torch.tensor([r.success and r.clean_correct for r in self.results],
                            dtype=torch.bool)

    @property
    def clean_correct(self) -> torch.Tensor:
        """bool ``[B]``: which images the model classified correctly before the attack."""
        return torch.tensor([r.clean_correct for r in self.results], dtype=torch.bool)

    def rows(self) -> list[dict]:
        """Returns: each result's :meth:`AttackResult.to_row`, in batch order."""
        return [r.to_row() for r in self.results]


@dataclass
class SearchOutcome:
    """What a search found for the images it attacked (rows in attack order).

    Args:
        best: float ``[A, k * (2 + C)]``, the genes of each answer (a success or the best
            effort): ``k`` pixels, each ``(x, y, c_1..c_C)``.
        queries: int64 ``[A]``, the model queries spent per image.
        steps: the search's own per-image record, named as its ``step_fields``: each a
            tensor ``[A]`` or a list of ``A`` JSON values (e.g. words).
    """

    best: torch.Tensor
    queries: torch.Tensor
    steps: dict[str, torch.Tensor | list] = field(default_factory=dict)
