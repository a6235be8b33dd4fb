"""The fastest one-pixel answer: fooled, or certified on the corners of the colour cube.

Stage 1 (**corners**) scans positions in the order of a cheap map (the input gradient by
default: one backward pass) and tries the 8 corners of the colour cube at each, stopping
at the first success. An image the scan does not fool after every position is
**certified on the corner grid**: no corner colour at any position changes its label
(in a targeted attack: none reaches the target class; another label change is then
possible, and the certificate says nothing of it). The certificate is checked: every
position whose scanned margin lies within :data:`CERTIFY_TOLERANCE` of a label change is
scored again by the model itself (not the faster engine), so a near-tie cannot be
certified by rounding (where the engine was measured to agree with the model within
:data:`AGREED` in logits, or in the logarithms of the probabilities a model returns, only
those within :data:`LOG_TOLERANCE` in logits too; and, whatever the engine, every
position within twice the model's own float32 rounding estimate of a label change, so
that a model computing through a cancellation its faster copy does not make is re-scored
where it rounds otherwise: :meth:`FastAttack._rounding_band`; more than
:data:`MAX_RECHECKED` such positions: no certificate). An exhaustive corner scan
costs ``8 · H · W`` queries (8,192 for CIFAR-10), a fifth of one failed DE run.

Stage 2 (**refine**, optional) searches off the corners for images the corners do not
fool: a short differential evolution (DE/rand/1, colours from N(0.5, 0.5)) started at
the positions of lowest margin, within its own query budget. A success there is an
adversarial off the corner grid; the corner certificate still holds for it.

Stage 3 (**verify**, optional) proves the images the corners did not fool after a
complete scan (certified, or left uncertified by too many near ties: such a row may say
``corner_certified = False`` and ``decided_by = verified``) over the whole threat
model — one pixel, any color in ``[0, 1]^C`` — by branch and bound
(:class:`~pixelprior.search.verify.Verifier`), positions in the order of the corner
scan's margins (low first); where its boxes run out with positions open, its local
search looks for a witness there (gradient steps over the pixel's color, counted in
``queries``; a witness found makes the row ``refine``). ``verify="auto"`` runs it
where the model's operations have bound rules and one box of the whole color cube needs
at most :data:`AUTO_MAX_SYMBOLS` symbols (a deterministic measure of its cost; the CIFAR
SqueezeNet needs tens of thousands, ResNet8 4,446, ConvSmall 127), and says why not
otherwise (:attr:`FastAttack.note`).

Each row says which stage decided it (``decided_by``: ``corners``, ``refine`` (an
adversarial off the corners, by differential evolution or found by the verifier),
``certificate`` (certified on the corners, not verified), ``verified``, ``unknown`` (the
verifier's budget ran out) or ``budget`` when the scan was cut short by
``max_positions`` or a near-tie could not be resolved), whether the image is certified
on the corner grid (``corner_certified``) and verified (``verified``), the share of the
threat space proved (``verified_volume``), the lowest margin bound over the rest
(``lowest_bound``), the boxes bounded (``boxes``) and, for a verified image, whether
its float32 evaluation is proved too at every position (``float32_proved``; ``None``
where the image is not verified) and the revision of the verifier that ran on it
(``verifier``: :data:`~pixelprior.search.verify.REVISION`, ``None`` where it did not run),
so that a run resumed by another revision does not mix the rows of two algorithms.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..priors import PositionDistribution, Prior, WeightedPrior
from ..scoring import perturb_rows
from ..scoring.cone.rounding import SAFETY, UNIT_ROUNDOFF, rounding_error, traced_copy
from ._options import Renamed, keyword_options
from .base import Attack, SearchOutcome, _spread
from .checks import check_int
from .evolution import DifferentialEvolution, EvolutionConfig
from .results import AttackResult
from .scan import (
    TIE_BREAKS,
    ScanResult,
    _answers,
    colour_grid,
    rank_positions,
    ranking_scores,
    scan_positions,
)
from .verify import (
    REVISION,
    BoundUnsupportedError,
    UnboundedRoundingError,
    Verification,
    Verifier,
    margin_order,
)

__all__ = ["AUTO_MAX_SYMBOLS", "CERTIFY_TOLERANCE", "DECISIONS", "REFINES", "VERIFY_MODES",
           "FastAttack"]

# what a row's decided_by may say (the module docstring says what each means)
DECISIONS = ("corners", "refine", "certificate", "verified", "unknown", "budget")

REFINES = ("none", "de")
VERIFY_MODES = ("off", "auto", "on")
# verify="auto" runs where one whole-cube box needs at most this many symbols: ConvSmall
# (127) does, and decides an image in seconds, and so does the ResNet8 fine-tuned for one
# pixel (218; a median of ~4 s an image with the interval screen, complete); the
# normally trained ResNet8 (4,446) and SqueezeNet (tens of thousands) would take hours to
# months per image and prove a fraction of a percent, so a run asks for them (verify="on")
AUTO_MAX_SYMBOLS = 1024
# margins (true-class probability minus the best other) this close to 0 are re-scored by
# the model itself before a certificate is given; the engines agree to ~1e-5
CERTIFY_TOLERANCE = 1e-3
# ... and, where the scorer was measured to agree with the model's full pass within
# AGREED in logits (check_scorer; for a model returning probabilities: in their
# logarithms), only where the logits' gap is within LOG_TOLERANCE too: with many classes
# of small probabilities (100 near 0.01 each) every corner is within 1e-3 in
# probability, every position a near tie. A scorer agreeing
# less well (a BatchNorm whose folding removes a cancellation: gaps of 0.02 measured)
# keeps the probability rule alone
LOG_TOLERANCE = 1e-2
AGREED = 1e-4
# ... and, on every scorer, positions within twice the model's float32 rounding estimate
# (at a noise image: FastAttack._rounding_band) times BAND_SPREAD: images' own estimates
# reach 1.8 times the noise image's on the CIFAR SqueezeNet (benchmarks/fast_band.py);
# over the BAND_CLASSES highest other classes there (all 999 of an ImageNet model took
# tens of GB)
BAND_SPREAD = 2.0
BAND_CLASSES = 9
# bf16 moves probabilities by up to ~2e-2 (benchmarks/precision.py): a wider band
BF16_TOLERANCE = 5e-2
MAX_RECHECKED = 256  # near-tie positions re-scored per image; beyond: no certificate
RECHECK_ROWS = 256  # whole images per forward of the re-check


class FastAttack(Attack):
    """A corner scan ranked by a map, to the first success or a certificate; optionally a
    short continuous search for the images the corners do not fool.

    >>> out = FastAttack(model).run(images, labels)
    >>> [r.steps["decided_by"] for r in out.results]   # corners | refine | certificate

    Args:
        model: the model (see :class:`~pixelprior.search.Attack`).
        prior: ranks positions by its sensitivity map (default
            ``WeightedPrior(sensitivity="gradient")``; any prior, e.g. an oracle).
        refine: ``"none"`` or ``"de"`` (a differential evolution off the corners).
        refine_budget: the refine stage's most queries per image (>= 8; 0.2's
            ``refine_queries=``); rows record what it spent as ``refine_queries``.
        refine_positions: the refine stage starts at this many lowest-margin positions.
        max_positions: scan only the top of the order (no certificate then).
        tie_break: positions of equal score in ``"random"`` order (per image and seed) or
            ``"raster"`` order (row by row: with a uniform prior, a raster scan).
        verify: ``"auto"`` (the default: where it applies and fits, see the module
            docstring; off for a targeted attack), ``"on"`` (prove every image certified
            on the corners, or find a witness; untargeted attacks only), ``"off"``;
            ``True``/``False`` for ``"on"``/``"off"``.
        verify_boxes: the verifier's most boxes per image.
        verify_seconds: the verifier's most seconds per image (``None``: no limit; a
            limit in seconds makes results depend on the machine's speed).
        verify_tolerance: the margin a box's bound must exceed (``None``: derived per
            image from float32 rounding, see :mod:`~pixelprior.search.verify`).
        **shared: the options of every attack (see :class:`~pixelprior.search.Attack`;
            ``pixel_count`` is 1).

    Raises:
        TypeError: an unknown option, or an integer option that is not an integer.
        ValueError: an unknown ``refine``, or an option out of range.
    """

    name = "fast"
    argument = "order"
    default_argument = "gradient"
    max_pixels = 1
    step_fields = {"positions_scanned": "int", "refine_queries": "int",
                   "corner_certified": "bool", "decided_by": "str?", "verified": "bool",
                   "verified_volume": "number?", "lowest_bound": "number?", "boxes": "int",
                   "float32_proved": "bool?", "verifier": "int?"}
    refine_queries = Renamed("refine_budget")  # 0.2's name (deprecated)

    @keyword_options(renamed={"refine_queries": "refine_budget"})
    def __init__(self, model: nn.Module, prior: Prior | str | None = None, *, refine: str = "none",
                 refine_budget: int = 4000, refine_positions: int = 10,
                 max_positions: int | None = None, tie_break: str = "random",
                 verify: str | bool = "auto",
                 verify_boxes: int = 20_000, verify_seconds: float | None = None,
                 verify_tolerance: float | None = None, **shared: Any) -> None:
        super().__init__(model, prior if prior is not None else WeightedPrior(
            sensitivity="gradient"), **shared)
        if refine not in REFINES:
            raise ValueError(f"refine must be one of {REFINES}, got {refine!r}")
        check_int("refine_budget", refine_budget, 8 if refine != "none" else 0)
        check_int("refine_positions", refine_positions, 1)
        if max_positions is not None:
            check_int("max_positions", max_positions, 1)
        if tie_break not in TIE_BREAKS:
            raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
        self.tie_break = tie_break
        self.refine = refine
        self.refine_budget = refine_budget
        self.refine_positions = refine_positions
        self.max_positions = max_positions
        if isinstance(verify, bool):
            verify = "on" if verify else "off"
        if verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {VERIFY_MODES} (or a bool), got "
                             f"{verify!r}")
        if verify == "on" and self.targeted:
            raise ValueError("verify proves that no pixel changes the label (untargeted); "
                             "use verify='off' for a targeted attack")
        if self.targeted:
            verify = "off"  # "auto": nothing to prove for a target class
        check_int("verify_boxes", verify_boxes, 1)
        if verify_seconds is not None and not 0 < verify_seconds < float("inf"):
            raise ValueError(f"verify_seconds must be a finite number > 0 (None: no limit), "
                             f"got {verify_seconds!r}")
        self.verify = verify
        self.verify_boxes, self.verify_seconds = verify_boxes, verify_seconds
        self.verify_tolerance = verify_tolerance
        self.note: str | None = None  # why verify="auto" did not verify (one line)
        self._verifier: Verifier | None = None
        self._verify_decided: dict[tuple, bool] = {}

    # ----------------------------------------------------------------- the search
    def _search(self, images, labels, targets, distribution: PositionDistribution, rows,
                generators) -> SearchOutcome:
        orders = rank_positions(ranking_scores(distribution, rows),
                                generators if self.tie_break == "random" else None)
        state = self.scorer(images).prepare(images, per_image=self.batch_invariant)
        chunk = self._chunk(state, images)
        corners = colour_grid(2, images.shape[1])
        found = scan_positions(lambda owner, genes: self._query(state, images, owner, genes),
                               images, labels, targets, orders, corners,
                               stop_at_first=True, step_rows=8 * chunk,
                               max_positions=self.max_positions, first_step_rows=chunk)
        best = _answers(found, images.shape[-1])
        queries = found.queries.clone()
        fooled = found.first >= 0
        complete = found.positions_scanned == images.shape[-2] * images.shape[-1]
        certified, flipped, extra = self._certify(images, labels, targets, found,
                                                  ~fooled & complete, corners)
        queries += extra
        for row, genes in flipped.items():  # a near tie the model itself calls a success
            best[row], fooled[row] = genes.to(best.device, best.dtype), True
        refined = torch.zeros(len(rows), dtype=torch.long)
        won = torch.zeros(len(rows), dtype=torch.bool)
        todo = (~fooled).nonzero().flatten()
        if self.refine == "de" and todo.numel():
            refined, won, genes = self._refine(images, labels, targets, found, todo,
                                               [generators[i] for i in todo.tolist()])
            best[todo[won]] = genes[won].to(best.device, best.dtype)
            queries[todo] += refined
            refined = _spread(refined.long(), todo.tolist(), len(rows))
            won = _spread(won.bool(), todo.tolist(), len(rows))
        # every complete scan not fooled: certified, or left open by too many near ties
        verdicts = self._verify_images(images, labels, found, complete & ~fooled & ~won)
        for row, verdict in verdicts.items():
            queries[row] += verdict.queries
            if verdict.fooled:
                x, y, color = verdict.witness
                best[row] = torch.tensor([x, y, *color], dtype=best.dtype)
        decided = [_decision(bool(fooled[i]), bool(won[i]), bool(certified[i]),
                             verdicts.get(i)) for i in range(len(rows))]
        return SearchOutcome(best, queries, {
            "positions_scanned": found.positions_scanned, "refine_queries": refined,
            "corner_certified": certified, "decided_by": decided,
            "verified": torch.tensor([i in verdicts and verdicts[i].verified
                                      for i in range(len(rows))], dtype=torch.bool),
            "verified_volume": [verdicts[i].verified_volume if i in verdicts else None
                                for i in range(len(rows))],
            "lowest_bound": [verdicts[i].lowest_bound if i in verdicts else None
                             for i in range(len(rows))],
            "boxes": torch.tensor([verdicts[i].boxes if i in verdicts else 0
                                   for i in range(len(rows))], dtype=torch.long),
            "float32_proved": [verdicts[i].verified_in_float32
                               if i in verdicts and verdicts[i].verified else None
                               for i in range(len(rows))],
            "verifier": [REVISION if i in verdicts else None for i in range(len(rows))]})

    def _forget_copies(self) -> None:
        """The verifier (its bound engines copy the model) is made again, and whether it
        fits decided again."""
        self._verifier = None
        self._verify_decided = {}

    def _settle(self, results: list[AttackResult]) -> None:
        """Rows made to agree with the model's own verdict (the scan's faster copy may part
        from it by a rounding): a stage that found a label change the model does not
        confirm decided nothing (``budget``); a corner color the model confirms fooling
        it ends any corner certificate (the row's pick, or the verifier's witness), and
        a row no later stage decided is then decided by the ``corners``."""
        for result in results:
            decided = result.steps.get("decided_by")
            if not result.success and decided in ("corners", "refine"):
                result.steps["decided_by"] = "budget"
            elif (result.success and result.steps.get("corner_certified")
                  and result.pixels and all(value in (0.0, 1.0) for pixel in result.pixels
                                            for value in pixel.new)):
                result.steps["corner_certified"] = False
                if decided not in ("corners", "refine"):
                    result.steps["decided_by"] = "corners"
                    result.steps["verified"] = False

    # ----------------------------------------------------------------- verification
    def _verify_images(self, images, labels, found: ScanResult, todo: torch.Tensor
                       ) -> dict[int, Verification]:
        """The verifier's answers for the rows ``todo`` (scanned completely, not fooled),
        positions in the order of their corner margins (low first)."""
        rows = todo.nonzero().flatten().tolist()
        if self.verify == "off" or not rows or not self._verify_applies(images, labels, rows):
            return {}
        orders = margin_order(found.min_margin)  # the corner scan's, already made
        out = {}
        for row in rows:
            try:
                (out[row],) = self._verifier.verify(images[row:row + 1], labels[row:row + 1],
                                                    orders=orders[row:row + 1])
            except UnboundedRoundingError as exc:  # that image is not verified: said
                if self.verify == "on":
                    raise
                self.note = f"verification skipped for an image (verify='auto'): {exc}"
        return out

    def _verify_applies(self, images, labels, rows: list[int]) -> bool:
        """Whether to verify (``"on"``: always, so an unsupported model is an error;
        ``"auto"``: where the bound engine applies and a whole-cube box needs at most
        :data:`AUTO_MAX_SYMBOLS` symbols, decided once per image size and said in
        :attr:`note` when not)."""
        if self._verifier is None:
            try:
                self._verifier = Verifier(
                    self.model, budget=self.verify_seconds, max_boxes=self.verify_boxes,
                    tolerance=self.verify_tolerance, deterministic=True,
                    engine=self._scorer if self._scorer is not None else self.engine)
            except BoundUnsupportedError as exc:
                if self.verify == "on":
                    raise
                self.note = f"verification skipped: {exc}"
                return False
        if self.verify == "on":
            return True
        key = tuple(images.shape[1:])
        if key not in self._verify_decided:
            row = rows[0]
            try:
                fits = self._verifier.probe(images[row:row + 1], int(labels[row]),
                                            limit=AUTO_MAX_SYMBOLS) is not None
                if not fits:
                    self.note = (f"verification skipped (verify='auto'): one box of the "
                                 f"whole color cube needs more than {AUTO_MAX_SYMBOLS:,} "
                                 "symbols, each a pass through the pixel's cone; use "
                                 "verify='on' to verify anyway")
            except BoundUnsupportedError as exc:
                self.note, fits = f"verification skipped: {exc}", False
            self._verify_decided[key] = fits
        return self._verify_decided[key]

    def _certify(self, images, labels, targets, found: ScanResult, candidates: torch.Tensor,
                 corners: torch.Tensor) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """Which complete, unfooled scans are certificates: positions within
        :data:`CERTIFY_TOLERANCE` of a label change (see the module docstring: the logits'
        rule, the rounding band) re-scored by the model itself.
        Returns (certified [A], {row: genes of a success found so}, queries [A])."""
        count = images.shape[0]
        certified = torch.zeros(count, dtype=torch.bool)
        extra = torch.zeros(count, dtype=torch.long)
        flipped: dict[int, torch.Tensor] = {}
        ties = found.min_margin.flatten(1) < (CERTIFY_TOLERANCE if self.precision == "fp32"
                                              else BF16_TOLERANCE)
        scorer = self.scorer(images)
        # the scorer's measured gap from the model in logits (for probabilities: in their
        # logarithms, the logits up to a constant per row)
        log_gap = scorer.agreement if scorer.output_kind == "logits" else scorer.log_agreement
        if (self.precision == "fp32" and found.min_log_margin is not None
                and log_gap is not None and log_gap <= AGREED):
            ties &= found.min_log_margin.flatten(1) < LOG_TOLERANCE
        ties |= self._rounding_ties(images, found, candidates, scorer)
        for row in candidates.nonzero().flatten().tolist():
            close = ties[row].nonzero().flatten()
            if close.numel() > MAX_RECHECKED:  # too many near ties to re-score: no
                self.note = (f"no corner certificate where more than {MAX_RECHECKED} "
                             "positions come within a near tie of a label change at a "
                             "corner color (the scan's copy and the model could part "
                             "there): such images are verified where the verifier runs, "
                             "else left as budget")
                continue
            if not close.numel():
                certified[row] = True
                continue
            genes = _position_genes(close, corners, images.shape[-1]).to(images.device,
                                                                           images.dtype)
            owner = torch.full((genes.shape[0],), row, dtype=torch.long, device=images.device)
            step = self.max_batch or RECHECK_ROWS
            with torch.inference_mode(), self._model_bits(images):  # the model itself,
                # in chunks (memory bounded)
                logits = torch.cat([self.model(perturb_rows(images, owner[i:i + step],
                                                            genes[i:i + step]))
                                    for i in range(0, genes.shape[0], step)])
            extra[row] = genes.shape[0]
            predicted = logits.argmax(1).cpu()
            goal = int((targets if targets is not None else labels)[row])
            hit = (predicted == goal) if targets is not None else (predicted != goal)
            if hit.any():
                flipped[row] = genes[int(hit.float().argmax()), 0].cpu()
            else:
                certified[row] = True
        return certified, flipped, extra

    def _rounding_ties(self, images, found: ScanResult, candidates: torch.Tensor,
                       scorer) -> torch.Tensor:
        """Positions ``[A, H·W]`` of the ``candidates`` whose scanned margin (in the
        model's own units: logits, or probabilities) lies within what float32 rounding
        can move it (:meth:`_rounding_band`): re-scored by the model itself."""
        ties = torch.zeros(found.min_margin.flatten(1).shape, dtype=torch.bool)
        rows = candidates.nonzero().flatten()
        margins = (found.min_log_margin if scorer.output_kind == "logits"
                   else found.min_margin)
        if not rows.numel() or margins is None:
            return ties
        ties[rows] = margins.flatten(1)[rows].double() < self._rounding_band(images, scorer)
        return ties

    def _rounding_band(self, images: torch.Tensor, scorer) -> float:
        """Twice the model's first-order float32 rounding estimate
        (:func:`~pixelprior.scoring.cone.rounding.rounding_error` times ``SAFETY``, the
        verifier's tolerance, times :data:`BAND_SPREAD`) plus twice the scorer's measured
        gap from the model. A model computing through a cancellation (a bias of 2^22 its
        BatchNorm takes off again) rounds to steps the scan's folded or incremental copy
        does not take, and its estimate is that large.

        Estimated once per scorer (one model's weights) and image size, at a fixed image
        of uniform noise (seed 0), over the :data:`BAND_CLASSES` margins of the highest
        other classes there, with float32's unit (on CUDA too: TF32's parting of the copy
        from the model is what the measured gap holds): the model's structure, not one
        image, makes it large, and the band so stays the same whichever images a batch
        holds. A model the estimate cannot be made for (``torch.fx`` cannot trace it, it
        has no gradients) keeps the measured gap alone, said in :attr:`note`; an estimate
        that is not finite re-scores every position."""
        key = (tuple(images.shape[1:]), images.device.type)
        bands = scorer.rounding_bands
        if key not in bands:
            try:
                with torch.inference_mode(False), self._model_bits(images):
                    noise = torch.rand(images[:1].shape, dtype=images.dtype,
                                       generator=torch.Generator().manual_seed(0))
                    noise = noise.to(images.device)
                    traced = traced_copy(self.model)
                    label = traced(noise).argmax(1)
                    estimate = float(rounding_error(self.model, noise, label, UNIT_ROUNDOFF,
                                                    traced, others=BAND_CLASSES)[0])
            except Exception as exc:  # noqa: BLE001  (any model: one it fails on has none)
                estimate = 0.0
                self.note = self.note or (
                    f"near ties re-checked by the scorer's measured gap alone: the model's "
                    f"float32 rounding could not be estimated ({type(exc).__name__}: "
                    f"{str(exc)[:120]})")
            bands[key] = (math.inf if math.isnan(estimate)
                          else SAFETY * BAND_SPREAD * estimate)
        return bands[key] + 2 * (scorer.agreement or 0.0)

    def _refine(self, images, labels, targets, found: ScanResult, todo: torch.Tensor,
                generators: list[torch.Generator]):
        """Differential evolution off the corners for the images ``todo``, started at
        their lowest-margin positions. Returns (queries, success, genes) per image."""
        popsize = min(100, self.refine_budget)
        config = EvolutionConfig(popsize=popsize, maxiter=max(0, self.refine_budget
                                                              // popsize - 1))
        sub = images[todo]
        channels, height, width = sub.shape[1:]
        fitness = self._fitness(sub, labels[todo],
                                       targets[todo] if targets is not None else None)
        margins = found.min_margin.flatten(1)[todo].nan_to_num(float("inf"))
        starts = margins.topk(min(self.refine_positions, margins.shape[1]), largest=False,
                              dim=1).indices
        initial = []
        for n, generator in enumerate(generators):
            pick = starts[n][torch.randint(0, starts.shape[1], (popsize,), generator=generator)]
            colour = (torch.randn(popsize, channels, generator=generator, dtype=torch.float64)
                      * 0.5 + 0.5).clamp(0, 1)
            initial.append(torch.cat([(pick % width)[:, None].double(),
                                      (pick // width)[:, None].double(), colour], 1))
        lower = torch.zeros(2 + channels, device=sub.device)
        upper = torch.tensor([width - 1, height - 1] + [1.0] * channels, device=sub.device)
        solved = DifferentialEvolution(fitness, lower, upper, config).solve(
            torch.stack(initial).float().to(sub.device), generators)
        return solved.evaluations.cpu(), solved.success.cpu(), solved.best


def _position_genes(positions: torch.Tensor, corners: torch.Tensor, width: int
                    ) -> torch.Tensor:
    """Genes ``[P·8, 1, 2 + C]``: every corner at each flat position."""
    flat = positions.repeat_interleave(corners.shape[0])
    xy = torch.stack([flat % width, flat // width], 1).to(corners.dtype)
    return torch.cat([xy, corners.repeat(positions.numel(), 1)], 1)[:, None]


def _decision(fooled: bool, refined: bool, certified: bool,
              verdict: Verification | None = None) -> str:
    if refined or (verdict is not None and verdict.fooled):
        return "refine"
    if fooled:
        return "corners"
    if verdict is not None:
        return "verified" if verdict.verified else "unknown"
    return "certificate" if certified else "budget"
