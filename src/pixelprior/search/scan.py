"""Scans: every position × a colour grid, exhaustively or in the order of a map.

For a small image the question has an exact answer on a colour grid: set every position
to every colour of ``{0, 1/(L-1), ..., 1}^C`` (``levels`` = L; 27 colours for L = 3) and
ask the model. :class:`SusceptibilityScan` does that for any model and image size, batched
over positions, colours and images through the fastest scorer (the incremental engine
where it applies), and returns per position the lowest true-class probability, the
lowest *margin* (true class minus the best other class; negative means the label changes)
and whether some colour changes the label — the **oracle map** of one-pixel
vulnerability that sensitivity maps can be scored against (:mod:`pixelprior.report.mapeval`).

:class:`RankedScanAttack` turns the scan into an attack: positions are visited in the
order of a prior's map (a sensitivity method, the oracle, or random) until the first
success, and the result is an ordinary :class:`~pixelprior.search.AttackResult`, so the
experiment runner lists scans beside DE modes. Queries are counted as a sequential scan
would spend them: all colours of every position up to and including the first vulnerable
one. (The batched implementation may evaluate a few more positions in the same step; they
are not counted and do not change the answer.)

A full CIFAR-10 scan costs 1,024 × 27 = 27,648 queries per image — less than one failed
DE run (40,400) — and also *certifies* the images it does not fool, on its grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..maps import METHODS
from ..models import WeightsWatch
from ..priors import OraclePrior, PositionDistribution, Prior, UniformPrior, WeightedPrior
from ..scoring import Scored, Scorer, check_logits, engine_of, make_scorer
from ._options import Renamed, keyword_options
from .base import Attack, SearchOutcome
from .checks import (
    check_batch_independent,
    check_channels,
    check_classes,
    check_inputs,
    check_int,
    check_model,
    check_order,
    evaluation_mode,
)

TIE_BREAKS = ("random", "raster")
# the orders a ranked scan can follow: no map (random, raster), the oracle, or a map
ORDERS = ("random", "raster", "oracle", *METHODS)


def colour_grid(levels: int, channels: int = 3) -> torch.Tensor:
    """Every color of the grid ``{0, 1/(levels-1), ..., 1}^channels``.

    Args:
        levels: values per channel (2: the corners of the color cube).
        channels: ``C``.

    Returns:
        float32 ``[levels**C, C]`` in [0, 1].

    Raises:
        ValueError: ``levels < 2``.
    """
    if levels < 2:
        raise ValueError(f"levels must be >= 2 (2: the corners of the colour cube), got "
                         f"{levels}")
    values = torch.linspace(0.0, 1.0, levels)
    return torch.cartesian_prod(*[values] * channels).reshape(-1, channels)


@dataclass
class ScanResult:
    """What a scan found per image and position (NaN / False where not scanned).

    Args:
        min_fitness: float ``[B, H, W]``, the lowest true-class probability over the
            grid (targeted: one minus the target's).
        min_margin: float ``[B, H, W]``, the lowest goal margin; < 0: the label changes.
        vulnerable: bool ``[B, H, W]``, some color of the grid reaches the goal.
        best_colour: float ``[B, H, W, C]``, the color of the lowest margin.
        scanned: bool ``[B, H, W]``, positions evaluated and counted.
        first: int64 ``[B]``, the flat position of the first success in order, or -1.
        positions_scanned: int64 ``[B]``, positions counted.
        queries: int64 ``[B]``, positions counted × colors.
        min_log_margin: float ``[B, H, W]``, the lowest goal margin in log-probabilities
            (logits: ``z_goal - z_best other``, untargeted), where probabilities of many
            classes are all small; ``None`` where not recorded.
    """

    min_fitness: torch.Tensor
    min_margin: torch.Tensor
    vulnerable: torch.Tensor
    best_colour: torch.Tensor
    scanned: torch.Tensor
    first: torch.Tensor
    positions_scanned: torch.Tensor
    queries: torch.Tensor
    min_log_margin: torch.Tensor | None = None


def ranking_scores(distribution: PositionDistribution, rows) -> torch.Tensor:
    """``float [B, P]``: what a scan ranks positions by. The prior's map where it has one
    (else its probabilities); for a set-based prior (susceptible set, top-k, a random
    set) its set first, each part in the map's order: the set is what defines such a
    prior, and scanning by the map alone ignored it (every set prior of one map scanned
    alike, a random-set control in the map's order).

    Args:
        distribution: the prior's distribution of every image.
        rows: the images of this batch (an index into the distribution).

    Returns:
        The scores, higher first.
    """
    if distribution.sensitivity is None:
        scores = distribution.probabilities.double()
    else:
        scores = distribution.sensitivity.flatten(1).double()
    if distribution.susceptible is not None:  # the set (all of the image if it was empty)
        within = torch.nan_to_num(scores.clamp(0, 1), nan=0.0)  # a map lies in [0, 1]
        scores = within + 2.0 * (distribution.probabilities > 0)
    return scores[rows]


def rank_positions(scores: torch.Tensor, generators: list[torch.Generator] | None
                   ) -> torch.Tensor:
    """Positions by descending score.

    Args:
        scores: float ``[B, P]``, a score per flat position.
        generators: one random stream per image to order ties at random, or ``None`` to
            keep ties in raster order.

    Returns:
        int64 ``[B, P]``, the flat positions of each image, highest score first.
    """
    batch, positions = scores.shape
    if generators is None:
        base = torch.arange(positions).expand(batch, positions)
    else:
        base = torch.stack([torch.randperm(positions, generator=g) for g in generators])
    ranked = torch.argsort(-scores.double().gather(1, base), dim=1, stable=True)
    return base.gather(1, ranked)


def scan_positions(query, images: torch.Tensor, labels: torch.Tensor,
                   targets: torch.Tensor | None, orders: torch.Tensor, colours: torch.Tensor,
                   stop_at_first: bool, step_rows: int, max_positions: int | None = None,
                   first_step_rows: int | None = None) -> ScanResult:
    """Scan images position by position in an order, every color of a grid at each.

    Args:
        query: ``query(owner int64 [N], genes [N, 1, 2 + C])`` ->
            :class:`~pixelprior.scoring.Scored` (probabilities ``[N, K]`` and the labels,
            the argmax of the scores, that decide success), or probabilities alone (then
            their argmax decides, and a tie goes to the first class).
        images: float32 ``[B, C, H, W]`` in [0, 1].
        labels: int64 ``[B]``.
        targets: int64 ``[B]`` (targeted), else ``None``.
        orders: int64 ``[B, P]``, each image's flat positions in scan order.
        colours: float ``[Q, C]``, the grid.
        stop_at_first: an image stops after its first successful position in order.
        step_rows: rows (positions × colors × active images) evaluated per step.
        max_positions: scan at most this many positions per image (the top of the order).
        first_step_rows: the first step's rows (default ``step_rows``); steps then double
            up to ``step_rows``, so an early success wastes few rows past it.

    Returns:
        What the scan found per image and position, and the queries it counts.
    """
    batch, channels, height, width = images.shape
    device = images.device
    palette = colours.to(device=device, dtype=images.dtype)
    n_colours = palette.shape[0]
    limit = min(orders.shape[1], max_positions or orders.shape[1])
    shape = (batch, height * width)
    min_fitness = torch.full(shape, float("nan"))
    min_margin = torch.full(shape, float("nan"))
    min_log_margin = torch.full(shape, float("nan"))
    vulnerable = torch.zeros(shape, dtype=torch.bool)
    best_colour = torch.full((*shape, channels), float("nan"))
    scanned = torch.zeros(shape, dtype=torch.bool)
    first = torch.full((batch,), -1, dtype=torch.long)
    done = 0
    active = torch.arange(batch)
    rows_now = first_step_rows or step_rows
    while done < limit and active.numel():
        step = max(1, min(limit - done, rows_now // (n_colours * active.numel())))
        rows_now = min(step_rows, 2 * rows_now)
        positions = orders[active, done:done + step]  # [A, s] flat positions
        owner = active.to(device).repeat_interleave(step * n_colours)
        flat = positions.reshape(-1).repeat_interleave(n_colours).to(device)
        genes = torch.cat([(flat % width)[:, None].to(images.dtype),
                           (flat // width)[:, None].to(images.dtype),
                           palette.repeat(positions.numel(), 1)], 1)[:, None]
        probs, predicted = _scored(query(owner, genes))
        probs = probs.view(active.numel(), step, n_colours, -1)
        here = active.to(device)
        fitness, margin, success, log_margin = _goal(
            probs, predicted.view(active.numel(), step, n_colours), labels[here],
            None if targets is None else targets[here])
        lowest = margin.argmin(2)  # [A, s]: the most adversarial colour at each position
        ids = active[:, None].expand(-1, step)
        min_fitness[ids, positions] = fitness.min(2).values.cpu()
        min_margin[ids, positions] = margin.gather(2, lowest[..., None]).squeeze(2).cpu()
        min_log_margin[ids, positions] = log_margin.min(2).values.cpu()
        hit = success.any(2).cpu()
        vulnerable[ids, positions] = hit
        best_colour[ids, positions] = palette[lowest.reshape(-1)].view(
            active.numel(), step, channels).cpu().float()
        scanned[ids, positions] = True
        found = hit.any(1) & (first[active] < 0)
        offset = hit.float().argmax(1)  # first success within the step, in order
        first[active[found]] = positions[found, offset[found]]
        if stop_at_first:  # a sequential scan stops at the first success: count so
            counted = torch.where(found, offset + 1, torch.full_like(offset, step))
            after = torch.arange(step)[None, :] >= counted[:, None]
            scanned[ids[after], positions[after]] = False
            active = active[first[active] < 0]
        done += step
    min_fitness[~scanned] = float("nan")
    min_margin[~scanned] = float("nan")
    min_log_margin[~scanned] = float("nan")
    best_colour[~scanned] = float("nan")
    positions_scanned = scanned.sum(1)
    return ScanResult(min_fitness.view(batch, height, width),
                      min_margin.view(batch, height, width),
                      (vulnerable & scanned).view(batch, height, width),
                      best_colour.view(batch, height, width, channels),
                      scanned.view(batch, height, width), first, positions_scanned,
                      positions_scanned * n_colours, min_log_margin.view(batch, height, width))


def _scored(answer: Scored | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A query's probabilities and labels (a bare tensor of probabilities: its argmax)."""
    if isinstance(answer, Scored):
        return answer.probabilities, answer.labels
    return answer, answer.argmax(1)


def _goal(probs: torch.Tensor, predicted: torch.Tensor, labels: torch.Tensor,
          targets: torch.Tensor | None):
    """Fitness (minimised), margin (< 0: goal reached by the argmax), success (by the
    labels ``predicted [A, s, Q]``) and the margin in log-probabilities of rows
    ``probs [A, s, Q, K]``."""
    others = probs.clone()
    goal = labels if targets is None else targets
    index = goal.view(-1, 1, 1, 1).expand(-1, *probs.shape[1:3], 1)
    p_goal = probs.gather(3, index).squeeze(3)
    others.scatter_(3, index, float("-inf"))
    runner_up = others.max(3).values
    logs = p_goal.log() - runner_up.log()  # the logits' gap (a probability of 0: ±inf)
    if targets is None:
        success = predicted != goal[:, None, None]
        return p_goal, _signed(p_goal - runner_up, success), success, _signed(logs, success)
    success = predicted == goal[:, None, None]
    return 1.0 - p_goal, _signed(runner_up - p_goal, success), success, _signed(-logs, success)


def _signed(margin: torch.Tensor, success: torch.Tensor) -> torch.Tensor:
    """``margin`` with a success's tie (two probabilities equal, the scores' argmax
    deciding) made the least negative normal float, so that a margin is negative exactly
    where the label changes and the lowest margin at a position is a success's."""
    tie = success & (margin >= 0)
    return torch.where(tie, torch.full_like(margin, -torch.finfo(margin.dtype).tiny), margin)


class RankedScanAttack(Attack):
    """Scan positions × a color grid in the order of a prior's map until the first
    success (untargeted or targeted; one pixel).

    >>> RankedScanAttack(model, WeightedPrior(sensitivity="smoothgrad"))(images, labels)

    Args:
        model: the model (see :class:`~pixelprior.search.Attack`).
        prior: ranks positions: its sensitivity map when it has one (e.g.
            ``WeightedPrior(sensitivity="smoothgrad")``,
            :class:`~pixelprior.priors.OraclePrior`), else its probabilities
            (``UniformPrior``, the default: all equal, so the order is the tie-break);
            a set-based prior's set first (:func:`ranking_scores`).
        levels: colors per channel of the grid (3: 27 colors; 2: the corners).
        tie_break: ``"random"`` (per image and seed) or ``"raster"`` (row by row: the
            plain exhaustive scan with ``UniformPrior``).
        max_positions: scan only the top of the order (for large images).
        **shared: the options of every attack (see :class:`~pixelprior.search.Attack`;
            ``pixel_count`` is 1).

    Raises:
        TypeError: an unknown option, or an integer option that is not an integer.
        ValueError: ``levels < 2``, an unknown ``tie_break``, ``max_positions < 1``.
    """

    name = "scan"
    argument = "order"  # what follows "scan:" in a mode name
    default_argument = "raster"
    max_pixels = 1
    step_fields = {"positions_scanned": "int"}
    colours = Renamed("colors")  # 0.2's spelling (deprecated)

    @keyword_options(positional=("levels", "tie_break", "max_positions", "targeted", "seed",
                                 "max_batch", "batch_invariant", "engine", "optimize",
                                 "precision"))
    def __init__(self, model: nn.Module, prior: Prior | str | None = None, *,
                 levels: int = 3, tie_break: str = "random",
                 max_positions: int | None = None, **shared: Any) -> None:
        super().__init__(model, prior, **shared)
        check_int("levels", levels, 2)
        if tie_break not in TIE_BREAKS:
            raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
        if max_positions is not None:
            check_int("max_positions", max_positions, 1)
        self.levels = levels
        self.colors = colour_grid(levels)
        self.tie_break = tie_break
        self.max_positions = max_positions

    def _search(self, images, labels, targets, distribution: PositionDistribution, rows,
                generators) -> SearchOutcome:
        if self.colors.shape[1] != images.shape[1]:
            self.colors = colour_grid(self.levels, images.shape[1])
        orders = rank_positions(ranking_scores(distribution, rows),
                                generators if self.tie_break == "random" else None)
        scorer = self.scorer(images)
        state = scorer.prepare(images, per_image=self.batch_invariant)
        chunk = self._chunk(state, images)
        found = scan_positions(lambda owner, genes: self._query(state, images, owner, genes),
                               images, labels, targets, orders, self.colors,
                               stop_at_first=True, step_rows=8 * chunk,
                               max_positions=self.max_positions)
        return SearchOutcome(_answers(found, images.shape[-1]), found.queries,
                             {"positions_scanned": found.positions_scanned})


def _answers(found: ScanResult, width: int) -> torch.Tensor:
    """Genes ``[B, 2 + C]`` of each image's answer: the first successful position in
    order with its lowest-margin colour, else the scanned position of lowest margin."""
    margin = found.min_margin.flatten(1).nan_to_num(float("inf"))
    position = torch.where(found.first >= 0, found.first, margin.argmin(1))
    colour = found.best_colour.flatten(1, 2)[torch.arange(len(position)), position]
    return torch.cat([(position % width)[:, None].float(),
                      (position // width)[:, None].float(), colour.nan_to_num(0.0)], 1)


class SusceptibilityScan:
    """The exhaustive one-pixel scan of images: every position × every grid color.

    Not an attack (it takes no prior and finds every answer, not one): the ground truth
    that maps and attacks are measured against.

    >>> result = SusceptibilityScan(model, levels=3)(images, labels)
    >>> result.vulnerable      # bool [B, H, W]: some color there changes the label

    Args:
        model: any ``nn.Module`` mapping float32 images ``[B, C, H, W]`` in [0, 1] to
            class scores ``[B, K]``; in eval mode during each call (restored after).
        levels: colors per channel of the grid (3: 27 colors).
        engine: an engine name or a shared :class:`~pixelprior.scoring.Scorer`, as for
            :class:`~pixelprior.search.Attack`.
        max_batch: rows per scoring call (default: measured).
        batch_invariant: results independent of the batch (see
            :class:`~pixelprior.search.Attack`).
        optimize: query a verified faster copy of the model.

    Raises:
        TypeError: ``levels`` not an integer.
        ValueError: ``levels < 2``.
    """

    def __init__(self, model: nn.Module, levels: int = 3, engine: str | Scorer = "auto",
                 max_batch: int | None = None, batch_invariant: bool = False,
                 optimize: bool = True) -> None:
        check_int("levels", levels, 2)
        self.model = check_model(model, "SusceptibilityScan")
        self.levels = levels
        self.engine = engine
        self.max_batch = max_batch
        self.batch_invariant = batch_invariant
        self.optimize = optimize
        self._scorer: Scorer | None = engine if isinstance(engine, Scorer) else None
        self._weights = WeightsWatch(model)  # the scorer's copy follows the weights
        self._batch_checked = False  # scores of an image independent of its batch
        self.queries = 0  # model queries spent, over all calls

    def __call__(self, images: torch.Tensor, labels: torch.Tensor,
                 order: torch.Tensor | None = None, stop_at_first: bool = False
                 ) -> ScanResult:
        """Scan every image.

        Args:
            images: float32 ``[B, C, H, W]`` in [0, 1].
            labels: the true classes, integer ``[B]``.
            order: int64 ``[B, H*W]``, the flat positions in scan order (default raster).
            stop_at_first: stop each image at its first vulnerable position in order.

        Returns:
            Per image and position the lowest fitness and margin, whether some color
            changes the label, and the queries spent.

        Raises:
            TypeError: images that are not float32, labels that are not integers.
            ValueError: images outside [0, 1] or of the wrong shape, labels of the wrong
                shape.
        """
        labels, _ = check_inputs(images, labels, None, targeted=False)
        if order is not None:
            check_order(order, images.shape)
        if self._weights.changed():  # a weight changed in place since the scorer was made:
            self.engine = engine_of(self.engine)  # made again (a given one by its name)
            self._scorer = None
            self._batch_checked = False
            self._weights.renew()  # the point the new scorer's copy is made at
        check_channels(self.model, images)
        with evaluation_mode(self.model):
            return self._scan(images, labels, order, stop_at_first)

    def _scan(self, images: torch.Tensor, labels: torch.Tensor, order: torch.Tensor | None,
              stop_at_first: bool) -> ScanResult:
        positions = images.shape[-2] * images.shape[-1]
        if order is None:
            order = torch.arange(positions).expand(images.shape[0], positions)
        colors = colour_grid(self.levels, images.shape[1])
        if images.shape[0] == 0:  # an empty batch: an empty result, no model
            return scan_positions(None, images, labels, None, order.cpu(), colors,
                                  stop_at_first, 1)
        if self._scorer is None:
            self._scorer = make_scorer(self.model, images[:8], self.engine, 1, self.optimize)
        scorer = self._scorer
        with torch.inference_mode():  # labels of the model's classes (one image's pass)
            check_classes(check_logits(scorer.image_logits(images[:1]), 1), labels, None)
            if not self._batch_checked:  # the first call, or the weights changed
                check_batch_independent(self.model, images)
                self._batch_checked = True
        state = scorer.prepare(images, per_image=self.batch_invariant)
        chunk = self.max_batch or scorer.chunk_rows(state, images, self.batch_invariant)
        result = scan_positions(
            lambda owner, genes: scorer.scored(state, images, owner, genes, chunk,
                                               self.batch_invariant),
            images, labels, None, order.cpu(), colors, stop_at_first, 8 * chunk)
        self.queries += int(result.queries.sum())
        return result


def ranked_prior(name: str, sensitivity_kwargs: dict | None = None,
                 scan: str | Path | None = None) -> Prior:
    """The prior that orders a ranked scan.

    Args:
        name: an order of :data:`ORDERS`: ``random``/``raster`` (no map), ``oracle`` (from
            ``scan``), or a sensitivity method's name.
        sensitivity_kwargs: the method's options.
        scan: a susceptibility scan (folder or ``maps.npz``), for ``oracle``.

    Returns:
        ``UniformPrior``, ``OraclePrior`` or ``WeightedPrior`` on the method's map.

    Raises:
        ValueError: ``oracle`` without a scan, an unknown method.
        TypeError: an option the method does not take.
    """
    if name in ("random", "raster"):
        return UniformPrior()
    if name == "oracle":
        if scan is None:
            raise ValueError("the oracle order needs a susceptibility scan (`oracle` in the "
                             "config: a folder made by `pixelprior susceptibility`)")
        return OraclePrior(scan)
    return WeightedPrior(sensitivity=name, **(sensitivity_kwargs or {}))

