"""Verified one-pixel robustness: a proof over every color of every pixel, or a witness.

The threat model is one pixel at any position set to **any** color in ``[0, 1]^C``.
:class:`Verifier` decides it per image by branch and bound over each position's color
cube:

0. **Screen** each position's whole color cube with intervals
   (:class:`~pixelprior.scoring.cone.screen.IntervalScreen`: the windows of each
   pixel's cone, batched over :data:`SCREEN_CHUNK` positions, float error inside the
   bounds). A position whose bound exceeds the tolerance is proved in one box; the
   others go on with its bound. On networks trained with intervals
   (``resnet8-ibp-cifar10``) this proves most positions at ~1.2 ms each where a
   zonotope box costs ~90 ms; a screen that proves
   none of its first :data:`SCREEN_TRIES` chunks, its bounds far below the tolerance
   (:data:`SCREEN_HOPELESS` times the clean margin), is dropped for the image — unless
   every position is decided (``stop_at_first=False``): the first positions in the
   corner order are then the most susceptible ones, which no bound proves. (A position
   one of the 8 corner colors fools, the model confirming it, is a witness before any
   box: with ``stop_at_first`` the image is fooled at once.)
1. **Bound** a batch of boxes (position, ``[lo, hi]`` per channel) with
   :class:`~pixelprior.scoring.cone.BoundEngine` (zonotopes through the pixel's cone, in
   float64). A box is **verified** when the lower bound of every margin ``z_y - z_j``
   exceeds the tolerance (below).
2. Where the bound is inconclusive, **score** the box's center and the corner its bound
   points at (the color minimising the worst margin's linear part) with the model. A label
   change there — confirmed by the model itself, not a faster engine — is a **verified
   adversarial** (a witness, wherever it lies in the cube).
3. Otherwise **split** the box in two along its longest side (of those, the channel the
   worst margin depends on most) and go on. Positions are visited in the order given
   (the corner scan's margins, low first, so a vulnerable image stops early), a few at a
   time — only as many as fill a bound call — and breadth first within each: a budget
   decides the first positions (the most susceptible ones) instead of spreading over
   every position and deciding none. A box size that seldom proves on the image (the
   first positions measure it) is halved without a bound call (:class:`_Levels`): on a
   network whose large boxes never prove, their calls were most of a position's time.
4. Where the bounds leave positions open when the budget is nearly spent (the last
   :data:`SEARCH_SHARE` of a time budget begins, or ``max_boxes`` are spent; with boxes
   stuck below :data:`MIN_SIDE` too), **search** them for witnesses
   (:class:`~pixelprior.search.local.LocalSearch`: sign-gradient descent of the margin
   over the pixel's color, from the cube's corners, the centers of the position's
   lowest-bound boxes and the pixel's own color; a label change confirmed by the
   model), lowest bounds first, then (under a time budget) the positions not reached,
   for at most that share of the budget; the bounds go on with what it leaves (the
   positions they open then are not searched again). It turns unknown positions into
   vulnerable ones (of the 196 the bounds left unknown in the interval-trained ResNet8's
   exact ground truth, 16), never into robust ones.

Work is capped by a budget per image (seconds, boxes). A position or image not decided
within it is **unknown** and reports its lowest bound (none where a position was never
reached) — never "verified". A box narrower
than :data:`MIN_SIDE` whose bound stays below its tolerance and whose points do not fool
the model is left unknown too (its margin is within the tolerance, or at a float32-proved
position the float32 error proved over the box, of 0).

**Floating point.** The bounds are computed in float64 and hold for the model in real
arithmetic: the bound engine carries a bound of its own rounding through every
operation, neuron by neuron (stopped by the ReLUs that are off), and takes it off
(:class:`~pixelprior.scoring.cone.bounds.MarginBounds`'s ``rounding``: at most 4.3e-11 of
``1 + max |logit|`` on ConvSmall, 1.1e-7 on ResNet8, 5.2e-3 on the 26-layer SqueezeNet:
``benchmarks/bound_rounding.py``). **The tolerance**
covers the model's own
float32 evaluation. Per image it starts from
:func:`~pixelprior.scoring.cone.rounding.rounding_error` (a first-order bound from the
model's gradients and each operation's rounding radius, times
:data:`~pixelprior.scoring.cone.rounding.SAFETY`: an estimate, not a proof). Where the
screen runs it also **proves** a bound of the float32 error over each position's whole
color cube (:meth:`~pixelprior.scoring.cone.screen.IntervalScreen.bounds`: interval
magnitudes, each operation's rounding with float32's unit, errors passed on by ``|A|``
and stopped by ReLUs that are off): a position whose proved bound is at most
:data:`PROVED_LIMIT` times the estimate takes it as its tolerance (at least a set
tolerance) and counts as **float32 proved** (``Verification.float32_proved``); a box
there whose bound falls below that tolerance is judged against the error proved over its
own colors (``Verifier._box_tolerances``): the intervals' first, then, where the bound is
still within it, the backward bound's, which keeps the signs of the paths from each
rounding to the margin (:mod:`~pixelprior.scoring.cone.backward`; at a single color the
estimate's own sum, and on a small box often below the estimate itself). "Verified"
therefore means: at the float32-proved positions, no color brings the margin of the model
in real arithmetic within a proved bound of its float32 error of 0, so the float32
evaluation cannot change the label (proved, for sums in any order, with or without fused
multiply-adds: direct and GEMM convolutions, not Winograd or FFT ones; so on the CPU
only, not on CUDA, where cuDNN may choose those; IEEE arithmetic, no flush of subnormals
to zero, whose absolute error each value's bound carries as ``UNDERFLOW``; no value that
may reach float32's largest, where its error is unbounded: near the boundary these
assumptions carry the claim alone, without the estimate's spare factor); elsewhere no
color brings the margin in real arithmetic within the tolerance (twice the first-order
estimate, or the set one) of 0 (proved), and the float32 evaluation is covered up to the
first-order estimate. On ConvSmall and the
interval-trained ResNet8 every position is float32 proved; on the normally trained ResNet8
and the SqueezeNet the proved bound is vacuous (tens of logits and more) and the estimate
stands.
"""

from __future__ import annotations

import collections
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..models import WeightsWatch, model_failure
from ..scoring import ModelOutputError, Scorer, check_logits, engine_of, make_scorer
from ..scoring.cone.backward import BackwardErrorBound, BackwardUnsupportedError
from ..scoring.cone.bounds import (
    BoundEngine,
    BoundUnsupportedError,
    MarginBounds,
    OperationSupport,
    OutOfTime,
    TooManySymbols,
)
from ..scoring.cone.rounding import (
    SAFETY,
    UNIT_ROUNDOFF,
    NoGradientError,
    near_overflow,
    rounding_error,
)
from ..scoring.cone.screen import IntervalScreen, IntervalUnsupportedError
from ..scoring.cone.zonotope import TF32
from .checks import (
    check_batch_independent,
    check_channels,
    check_classes,
    check_inputs,
    check_int,
    check_model,
    evaluation_mode,
)
from .local import LocalSearch, confirm_witness, cube_corners

__all__ = ["MIN_SIDE", "REVISION", "BoundUnsupportedError", "PositionVerdicts",
           "UnboundedRoundingError", "Verification", "Verifier", "margin_order",
           "rounding_unit"]

_OVERFLOW_NOTE = (
    "a value of the model at the image (or a square or product a norm, a normalisation "
    "or attention sums inside its kernel) is not finite, or within 2^28 of float32's "
    "largest: at other colors it may overflow to inf, where scores that differ in real "
    "arithmetic tie, and no tolerance covers that; scale the model's values down to "
    "verify it")


class UnboundedRoundingError(ValueError):
    """The model's float32 error at an image is not bounded: a value of the model there is
    not finite, or so near float32's largest that other colors may overflow to ``inf``.
    No tolerance covers it, so the image cannot be verified."""


# What this code's verdicts are, as the number a verification folder records (its
# ``verifier`` setting; `verify` and `susceptibility --exact` folders) and each ``fast``
# row the verifier ran on (its ``verifier`` field, since 17f5bce: rows without it are of
# revision 2 or before, pixelprior.experiment.rundir.LAST_UNRECORDED), and what Ray
# workers must run the same of as the process that writes their rows: raised
# with every change that decides positions or images otherwise under the same settings
# without a time budget (a timed verdict depends on the machine's pace anyway), so that
# a resume refuses a folder of another revision's rows instead of mixing them (both
# sound, but a count over the folder would not say whose it is). 1: up to 309714c
# (folders did not record it); 2: d554b39, a corner color the model confirms is a
# witness before any box is bounded (more positions decided; the corner pass counted in
# the budget, and under a time budget a30a4b5 and 1fb3930 changed when it stops).
# Not raised for TF32's count (e48982e, 773f034: a sum of n TF32
# products as (1 + 2^-10)^2 (1 + gamma_n(2^-23)) - 1): before it, every derived tolerance
# on CUDA crashed (a CPU sum beside CUDA gradients), so no folder holds rows of the old
# count to be mixed with; CPU verdicts are unchanged. 3: 4fa9c63, the first-order float32
# estimate (the tolerance where no float32 error is proved) counts the numbers written in
# a model's code that float32 cannot hold (x - 0.1, a clamp at 0.7): a larger tolerance
# for such models (the bundled ones' estimates are unchanged bit for bit).
REVISION = 3
MIN_SIDE = 2.0**-16  # boxes are not split below this side (~1/65,536 of the color range)
DEFAULT_BATCH = {"cpu": 64, "cuda": 1024}  # the most boxes per bound call
# positions per call of the interval screen: about 0.08 s of ResNet8 on 2 CPU cores in the
# pixel's cone (an image the corner order meets a witness in early pays little for it;
# 128 a call would be ~3% faster a position), one batch on CUDA
SCREEN_CHUNK = {"cpu": 64, "cuda": 1024}
# boxes per call of the backward float32 error bound (whole images, every margin's rows:
# ConvSmall ~9 ms a box at 16)
SIGNED_CHUNK = 16
# ... only for boxes this small (longest side): a larger one near the boundary is cheaper
# split (its children's bounds rise) than bounded again on whole images
SIGNED_SIDE = 1 / 16
SCREEN_TRIES = 2  # chunks the screen may prove nothing in before it is dropped for an image
# ... when its highest bound is still below the tolerance minus this many times the clean
# image's margin (the normally trained ResNet8: ~400 times, the SqueezeNet ~10^8; the
# interval-trained ResNet8 where it fails: under 1, and it proves later positions)
SCREEN_HOPELESS = 10.0
# A position's proved float32 error bound is its tolerance (never below a set tolerance)
# if it is at most this many times the estimate: ConvSmall's are 1-4.2 times it over whole
# color cubes (50 images), the interval-trained ResNet8's about 2-3; the normally trained
# ResNet8's ~10^3 (where taking it would prove nothing)
PROVED_LIMIT = 8.0
# A box's own float32 error is not bounded again (intervals, or backward) where the box's
# margin bound is below this share of the least that bound has proved over a box of the
# image no larger (its level or deeper: the error shrinks with the box): it is unlikely to
# prove (the backward bound's are within 0.71-0.87 of the first-order estimate near the
# boundary of ConvSmall's image 0, the intervals' within 2.4-3.9), and such boxes are the
# most numerous near the boundary. Sound: a box skipped is split as unproved
ERROR_SKIP = 0.9
LEVELS = 64  # box levels (-log2 of the volume) the least errors are kept for; deeper share
# deciding every position (exact), a position takes at most this many boxes before the
# next ones enter; once every position has had its share, the share grows (x QUOTA_GROWTH)
# so the easy positions are decided before a budget is spent on the hardest (which come
# first in the corner order, and near the decision boundary split down to MIN_SIDE); within
# a stage the positions that have taken the fewest boxes go first (ConvSmall test images
# 0, 31 and 62 in exact mode at 30,000 boxes: 21, 198 and 139 positions unknown, against
# 25, 207 and 175 in the corner order)
EXACT_QUOTA = 16
QUOTA_GROWTH = 4
CALL_SECONDS = 2.0  # the batch adapts so that one bound call takes about this long
ROWS_PER_CALL = 32_768  # boxes × (1 + symbols) per call, bounding its memory
# On the CPU a call's largest tensors (boxes × (1 + symbols) × the widest relaxed value's
# neurons, in float64) are kept about this small: float64 convolutions are bound by memory
# traffic there, and a ResNet8 box costs 1.1-1.75× less alone (what this gives it) than
# in the 8-16 box calls of 2 s; ConvSmall keeps 15-60 boxes per call, where it is fastest
# (benchmarks/verify_call_size.py, 2-core AVX2 EPYC, benchmarks/RESULTS.md)
CPU_CALL_BYTES = 4 * 2**20
# A box size (level: -log2 of the volume) whose boxes proved in fewer than SKIP_RATE of
# at least SKIP_TRIES bound calls on this image is split without a call, but for one box
# in EXPLORE (which keeps the rate current): on a network whose large boxes never prove
# (ResNet8's boxes larger than 1/4 × 1/4 × 1/4) their calls were most of a position's time
SKIP_RATE, SKIP_TRIES, EXPLORE = 1 / 32, 16, 32
# a box past this many symbols is cut unbounded (in 2^C): its bound would be loose
# (SqueezeNet's whole-cube boxes carry tens of thousands, bounds of -1e4), its call gigabytes
MAX_BOX_SYMBOLS = 8_192
# With the local search on, the bound loop stops when the time budget has this share
# left while positions are open; the search takes at most this share (lowest bounds
# first), and what it leaves goes back to the bound loop. Its cost, 10 steps from each of
# 10 starts: ~0.01 s a position on ConvSmall, 0.06-0.2 s on ResNet8-IBP (2-core AVX2 CPU,
# benchmarks/local_search.py)
SEARCH_SHARE = 0.1
SEARCH_BOX_STARTS = 2  # a position's lowest-bound open boxes whose centers start a search

ROBUST, VULNERABLE, UNKNOWN = "robust", "vulnerable", "unknown"


@dataclass
class PositionVerdicts:
    """What the verifier found at each position of one image (flat index ``y · W + x``).

    Args:
        status: ``"robust"`` (proved over every color), ``"vulnerable"`` (a witness) or
            ``"unknown"`` (the budget ran out first, or not visited), per position.
        verified_volume: float64 ``[H · W]``, the share of each color cube proved.
        lowest_bound: float64 ``[H · W]``, the lowest margin bound over what is not
            proved (``nan`` where everything is proved or a witness was found; ``-inf``
            where no box was bounded: no bound known).
        witness: float ``[H · W, C]``, the adversarial color (``nan`` where none).
        boxes: long ``[H · W]``, boxes bounded per position.
    """

    status: list[str]
    verified_volume: torch.Tensor
    lowest_bound: torch.Tensor
    witness: torch.Tensor
    boxes: torch.Tensor


@dataclass
class Verification:
    """The verifier's answer for one image.

    Args:
        verified: every color at every position is proved not to change the label.
        fooled: a witness was found (and confirmed by the model).
        decided_by: ``"verified"``, ``"fooled"`` or ``"unknown"`` (budget exhausted).
        witness: ``(x, y, color)`` of the adversarial pixel, or ``None``.
        verified_volume: the share of the threat space (positions × colors) proved.
        lowest_bound: the lowest margin bound over what is not proved (``None`` when
            verified, fooled, or when some position was never bounded: no bound known).
        boxes: boxes bounded (by the interval screen or zonotopes).
        queries: model queries spent on candidate points.
        seconds: wall time.
        tolerance: the margin a box's bound had to exceed: the estimate (or the set
            tolerance). A float32-proved position's is the float32 error proved over its
            whole cube instead (``tolerance_max``: the largest), and a box of it near the
            boundary had to exceed the error proved over its own colors where that is
            smaller: with the derived tolerance that may be below the estimate (the
            proof covers the float32 model by itself); never below a set tolerance.
        positions: per-position verdicts.
        screened: positions the interval screen proved whole (one box each).
        float32_proved: positions whose tolerance covers a proved bound of the model's
            float32 error over their whole color cube (all of them: a verified image's
            float32 evaluation is proved not to change the label either).
        tolerance_max: the largest tolerance any position had.
        searched: positions the local search ran at (left open by the bounds, or not
            reached), lowest bounds first.
        search_witnesses: the witnesses it found (each confirmed by the model).
        unit: the unit roundoff of the device it was verified on (the derived tolerance
            and the float32 proof assume it: 2^-24 on the CPU, 2^-11 on CUDA's TF32).
    """

    verified: bool
    fooled: bool
    decided_by: str
    witness: tuple[int, int, list[float]] | None
    verified_volume: float
    lowest_bound: float | None
    boxes: int
    queries: int
    seconds: float
    tolerance: float
    positions: PositionVerdicts = field(repr=False)
    screened: int = 0
    float32_proved: int = 0
    tolerance_max: float = 0.0
    searched: int = 0
    search_witnesses: int = 0
    unit: float | None = None

    @property
    def verified_in_float32(self) -> bool:
        """Verified, and at every position the tolerance covers the proved float32
        error: the model as it runs in float32 cannot be fooled either."""
        return self.verified and self.float32_proved == len(self.positions.status)


class _Frontier:
    """The boxes still to bound, kept per position and handed out in the positions'
    visiting order (breadth first within a position). Positions enter one at a time
    (:meth:`fill`, the whole color cube each), only as many as keep a bound call full: a
    budget decides the first positions of the order instead of spreading over all of
    them. With a ``quota`` (deciding every position), a position that has taken that
    many boxes waits while the next ones enter, and the quota grows once every position
    has had it: easy positions are decided before the hardest spend the budget. Boxes
    are ``lo``, ``hi`` ``[M, C]`` and the parent's lower bound ``[M]`` (float64, numpy)."""

    def __init__(self, order: np.ndarray, channels: int,
                 screen: Callable[[np.ndarray], np.ndarray] | None = None,
                 chunk: int = 64, hopeless: float = math.inf,
                 quota: float = math.inf) -> None:
        self.quota = quota  # boxes a position may take before the next ones enter
        self.spent: collections.Counter = collections.Counter()  # boxes handed out
        self.parked = 0  # boxes waiting at positions past their quota
        self.order = order
        self.screen, self.chunk, self.hopeless = screen, chunk, hopeless
        self.screen_calls = self.screen_proved = 0
        self.screen_best = -math.inf  # the highest bound the screen has returned
        self.rank = {int(p): r for r, p in enumerate(order.tolist())}
        self.channels = channels
        self.admitted = 0  # positions of ``order`` entered so far
        self.open: dict[int, collections.deque] = {}  # position → chunks (lo, hi, bound)
        self.size = 0
        self.decided: set[int] = set()  # positions with a witness: never entered

    def fill(self, target: int, room: int | None = None) -> None:
        """Enter the next positions (their whole cube) until ``target`` boxes wait or
        every position has entered. With a ``screen``, at most one ``chunk`` of
        positions is screened per call (so that the budget is checked between chunks);
        only those it does not prove enter, with its bound. A screen that proved none of
        its first :data:`SCREEN_TRIES` chunks (the hardest positions, in the corner
        order) with bounds all below ``hopeless`` is dropped for the image: on networks
        not trained for intervals its bounds are hundreds of times the margin below 0,
        it never proves, and its pass would be all it adds. ``room``: the boxes the
        budget has left (each screened position is one box).
        """
        if self.screen is not None:
            chunk = self.chunk if room is None else min(self.chunk, room)
            if self.active < target and self.admitted < self.order.size and chunk > 0:
                positions = self.order[self.admitted:self.admitted + chunk]
                self.admitted += positions.size
                positions = positions[~np.isin(positions, list(self.decided))]
                if not positions.size:  # every one decided (by the local search)
                    return
                bounds = self.screen(positions)  # -inf where nothing is known, +inf proved
                for position, bound in zip(positions.tolist(), bounds.tolist(), strict=True):
                    if bound != math.inf:
                        self._put(position, self._cube(bound), front=False)
                self.screen_calls += 1
                self.screen_proved += int(np.isposinf(bounds).sum())
                if bounds.size:
                    self.screen_best = max(self.screen_best, float(bounds.max()))
                if (self.screen_calls >= SCREEN_TRIES and not self.screen_proved
                        and self.screen_best < self.hopeless):
                    self.screen = None
            self._grow_quota()
            return
        while self.active < target and self.admitted < self.order.size:
            position = int(self.order[self.admitted])
            self.admitted += 1
            if position not in self.decided:
                self._put(position, self._cube(-math.inf), front=False)
        self._grow_quota()

    @property
    def active(self) -> int:
        """Boxes waiting at positions still within their quota."""
        return self.size - self.parked

    def _waiting(self, position: int) -> int:
        return sum(chunk[2].size for chunk in self.open.get(position, ()))

    def _grow_quota(self) -> None:
        """Once every position has entered and each that waits has spent its quota, the
        quota grows until one may go on."""
        if self.admitted < self.order.size or not self.size or self.active:
            return
        least = min(self.spent[p] for p in self.open)
        while self.quota <= least:
            self.quota *= QUOTA_GROWTH
        self.parked = sum(self._waiting(p) for p in self.open if self.spent[p] >= self.quota)

    @property
    def exhausted(self) -> bool:
        """No box waits and every position has entered."""
        return not self.size and self.admitted >= self.order.size

    def _cube(self, bound: float) -> tuple[np.ndarray, ...]:
        """The whole color cube as one box with a known lower bound."""
        return (np.zeros((1, self.channels)), np.ones((1, self.channels)),
                np.full(1, bound))

    def push(self, lo: np.ndarray, hi: np.ndarray, position: np.ndarray,
             bound: np.ndarray, front: bool = False) -> None:
        """Boxes of any entered positions (``front``: before that position's others)."""
        for p in np.unique(position).tolist():
            mask = position == p
            self._put(p, (lo[mask], hi[mask], bound[mask]), front)

    def _put(self, position: int, chunk: tuple[np.ndarray, ...], front: bool) -> None:
        chunks = self.open.setdefault(position, collections.deque())
        if front:
            chunks.appendleft(chunk)
        else:
            chunks.append(chunk)
        self.size += chunk[2].size
        if self.spent[position] >= self.quota:
            self.parked += chunk[2].size

    def pop(self, count: int) -> tuple[np.ndarray, ...]:
        """Up to ``count`` boxes, the first positions' first (none past its quota; with a
        quota, the positions that have taken the fewest boxes first, ties in the order:
        within a quota's stage a position that needs a few more boxes is decided before
        the hardest take their share): ``lo, hi, position, bound``."""
        parts = []
        if self.quota < math.inf:  # deciding every position: the fewest boxes spent first
            visiting = sorted(self.open, key=lambda p: (self.spent[p], self.rank[p]))
        else:
            visiting = sorted(self.open, key=self.rank.__getitem__)
        for p in visiting:
            chunks = self.open[p]
            share = min(count, self.quota - self.spent[p])  # inf: no quota
            if share <= 0:
                continue  # past its quota (already counted in ``parked``)
            while chunks and share > 0:
                lo, hi, bound = chunks.popleft()
                if bound.size > share:
                    take = int(share)
                    chunks.appendleft((lo[take:], hi[take:], bound[take:]))
                    lo, hi, bound = lo[:take], hi[:take], bound[:take]
                parts.append((lo, hi, np.full(bound.size, p, dtype=np.int64), bound))
                count -= bound.size
                share -= bound.size
                self.size -= bound.size
                self.spent[p] += bound.size
            if not chunks:
                del self.open[p]
            elif self.spent[p] >= self.quota:  # its quota reached: the rest waits
                self.parked += self._waiting(p)
            if count <= 0:
                break
        return tuple(np.concatenate(part) for part in zip(*parts, strict=True))

    def drop(self, positions: np.ndarray) -> None:
        """Forget the boxes of ``positions`` (decided: they never enter again)."""
        for p in positions.tolist():
            self.decided.add(int(p))
            dropped = sum(chunk[2].size for chunk in self.open.pop(int(p), ()))
            self.size -= dropped
            if self.spent[int(p)] >= self.quota:
                self.parked -= dropped

    def lowest(self) -> dict[int, float]:
        """The lowest parent bound of each position with boxes left."""
        return {p: min(float(chunk[2].min()) for chunk in chunks)
                for p, chunks in self.open.items() if chunks}

    def lowest_centers(self, position: int, count: int) -> np.ndarray:
        """The centers of a position's ``count`` waiting boxes of the lowest parent
        bounds, ``[≤ count, C]``."""
        chunks = self.open.get(position)
        if not chunks:
            return np.zeros((0, self.channels))
        lo, hi, bound = (np.concatenate(part) for part in zip(*chunks, strict=True))
        first = np.argsort(bound, kind="stable")[:count]
        return (lo[first] + hi[first]) / 2

    def not_entered(self) -> np.ndarray:
        """The positions of the order not entered yet (none decided), in order."""
        later = self.order[self.admitted:]
        return later[~np.isin(later, list(self.decided))]


class _Levels:
    """Which box sizes are worth a bound call on one image.

    A box's level is ``-log2`` of its volume (boxes are halved: whole numbers). A level
    whose boxes proved in fewer than :data:`SKIP_RATE` of :data:`SKIP_TRIES` or more calls
    is *skipped*: its boxes are halved without a call (one in :data:`EXPLORE` is still
    bounded, so that the rate follows the positions). Sound: a box halved unbounded claims
    nothing; its halves are bounded, or halved, in turn.
    """

    def __init__(self) -> None:
        self.bounded: collections.Counter = collections.Counter()
        self.proved: collections.Counter = collections.Counter()
        self.skipped: collections.Counter = collections.Counter()

    @staticmethod
    def of(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """The level of each box ``[M, C]``."""
        return np.rint(-np.log2(np.prod(hi - lo, axis=1))).astype(np.int64)

    def record(self, levels: np.ndarray, proved: np.ndarray) -> None:
        """Count bound calls and proofs per level."""
        self.bounded.update(levels.tolist())
        self.proved.update(levels[proved].tolist())

    def skip(self, levels: np.ndarray, small: np.ndarray) -> np.ndarray:
        """A mask of the boxes to halve without a call (never a box too ``small``
        to halve)."""
        mask = np.zeros(levels.size, dtype=bool)
        for n, level in enumerate(levels.tolist()):
            tries = self.bounded[level]
            if (small[n] or tries < SKIP_TRIES
                    or self.proved[level] >= SKIP_RATE * tries):
                continue
            self.skipped[level] += 1
            mask[n] = self.skipped[level] % EXPLORE != 0
        return mask


@dataclass(eq=False)
class _ImageRun:
    """What verifying one image keeps between bound calls (per position: flat
    ``y · W + x``)."""

    image: torch.Tensor  # [1, C, H, W]
    label: int
    width: int
    tolerance: float  # the image's: the estimate (or the set tolerance)
    tolerances: np.ndarray  # per position: the proved float32 error's, where proved
    cache: object  # the bound engine's, of this image
    scorer: Scorer
    state: object  # the scorer's, of this image
    began: float  # time.perf_counter() at the start
    frontier: _Frontier | None = None  # set by Verifier._start (its screen needs the run)
    unbounded: int = 0  # boxes in calls past the symbol bound, and boxes cut without a call
    queries: int = 0
    levels: _Levels = field(default_factory=_Levels)
    unit: float | None = None  # the float32 unit roundoff where the screen proves errors
    searched: int = 0  # positions the local search ran at
    search_witnesses: int = 0  # witnesses it found
    # the least tolerance of a float32-proved position or box: 0 with the derived
    # tolerance (the proved error alone decides), else the set tolerance (the default)
    floor: float | None = None

    def __post_init__(self) -> None:
        positions = self.tolerances.size
        self.channels = self.image.shape[1]
        self.cpu = self.image.device.type == "cpu"
        self.float32_proved = np.zeros(positions, dtype=bool)
        self.volume = np.zeros(positions)  # the share of the cube proved
        self.boxes = np.zeros(positions, dtype=np.int64)  # bounded
        self.screened = np.zeros(positions, dtype=bool)  # proved whole by the screen
        self.stuck = np.full(positions, math.inf)  # lowest bound of boxes too small to split
        self.stuck_point = np.full((positions, self.channels), np.nan)  # ... its box's center
        # the smallest side of a box found past the symbol bound (its cone decides them)
        self.too_big = np.full(positions, math.inf)
        self.witness = np.full((positions, self.channels), np.nan)
        if self.floor is None:
            self.floor = self.tolerance
        # per box level, the least float32 error each bound has proved over a box
        self.least_error = {"intervals": np.full(LEVELS, np.inf),
                            "signed": np.full(LEVELS, np.inf)}

    @property
    def spent(self) -> int:
        """Boxes counted against ``max_boxes``: bounded, or cut without a bound."""
        return int(self.boxes.sum()) + self.unbounded


def rounding_unit(device: torch.device | str) -> float:
    """The unit roundoff of the model's float32 evaluation on ``device``.

    Args:
        device: where the model runs.

    Returns:
        ``2^-24``, or :data:`~pixelprior.scoring.cone.zonotope.TF32` where convolutions
        (CUDA, cuDNN's default) or matrix products (``torch.set_float32_matmul_precision
        ("high")``, or torch's per-backend ``fp32_precision = "tf32"``) run in TF32.

    Raises:
        ValueError: float32 products set to run in bfloat16 (``"medium"``, or a backend's
            ``fp32_precision = "bf16"``), which the float32 error count does not cover,
            or settings torch cannot read.
    """
    cuda = torch.device(device).type == "cuda"
    try:
        matmul = torch.get_float32_matmul_precision()
        tf32 = (cuda and torch.backends.cudnn.allow_tf32) or matmul == "high"
    except RuntimeError as exc:  # torch's older and newer precision settings mixed
        raise ValueError(f"torch's float32 precision settings cannot be read ({exc}): "
                         "set them one way (the older or the newer API)") from None
    backends = _fp32_precisions(cuda)
    if matmul == "medium" or "bf16" in backends.values():
        raise ValueError("float32 products are set to run in bfloat16 (float32 matmul "
                         f"precision {matmul!r}, {backends}), which the verifier's float32 "
                         "error count does not cover: set them to 'highest' / 'ieee' (or "
                         "'high' / 'tf32') to verify")
    return TF32 if tf32 or "tf32" in backends.values() else UNIT_ROUNDOFF


def _fp32_precisions(cuda: bool) -> dict[str, str]:
    """torch's per-backend ``fp32_precision`` settings (torch 2.9 and later) of the
    device's convolutions and matrix products, where set (``"none"``: the default)."""
    backends = torch.backends
    where = ({"cudnn.conv": getattr(backends.cudnn, "conv", None),
              "cuda.matmul": getattr(backends.cuda, "matmul", None)} if cuda else
             {"mkldnn": backends.mkldnn, "mkldnn.conv": getattr(backends.mkldnn, "conv", None),
              "mkldnn.matmul": getattr(backends.mkldnn, "matmul", None)})
    found = {}
    for name, holder in where.items():
        value = getattr(holder, "fp32_precision", None)
        if isinstance(value, str) and value not in ("none", "ieee"):
            found[name] = value
    return found


def margin_order(min_margin: torch.Tensor) -> torch.Tensor:
    """Positions by a scan's lowest margin, low first (ties, and positions not scanned,
    in raster order after them).

    Args:
        min_margin: float ``[B, H, W]`` (NaN where not scanned).

    Returns:
        long ``[B, H · W]`` on the CPU.
    """
    margins = min_margin.flatten(1).nan_to_num(float("inf"))
    return torch.argsort(margins.cpu(), dim=1, stable=True)


class Verifier:
    """Branch and bound over each pixel's color cube (see the module docstring).

    >>> verifier = Verifier(model, budget=60.0)
    >>> [v.decided_by for v in verifier.verify(images, labels)]   # verified | fooled | unknown

    Args:
        model: any ``nn.Module`` ``torch.fx`` can trace whose operations have bound rules
            (convolutions, BatchNorm, ReLU and other activations, pooling, residual
            additions, concatenations, linear layers); images in [0, 1] → class scores.
        budget: seconds per image, the corner pass of ``order="corners"`` included
            (it always runs whole; ``None``: no limit).
        max_boxes: boxes per image (``None``: no limit).
        batch_boxes: the most boxes per bound call (default: 64 on the CPU, 1,024 on
            CUDA); calls are smaller where the rows bound, :data:`CPU_CALL_BYTES` on the
            CPU or (unless ``deterministic``) :data:`CALL_SECONDS` ask for it.
        tolerance: the margin a bound must exceed (default: derived per image, see the
            module docstring).
        engine: the scorer of candidate points (``"auto"``: the incremental engine where
            it applies).
        deterministic: bound calls of a size that does not depend on timing (the same
            boxes in the same calls on every run: bit-identical results on one machine
            with ``budget=None``); otherwise calls are sized to about
            :data:`CALL_SECONDS`.
        order: the positions' default order: ``"corners"`` (the lowest margin any of
            the 8 corner colors reaches there, low first: a vulnerable image meets its
            witness early; 8 queries per position; a corner color the model confirms as
            a label change is a witness before any box) or ``"raster"``.
        screen: bound each position's whole color cube with intervals first
            (:class:`~pixelprior.scoring.cone.screen.IntervalScreen`, batched over
            :data:`SCREEN_CHUNK` positions); only the positions it does not prove are
            bounded with zonotopes. ``None`` (default): where every operation of the
            model has an interval rule (else :attr:`screen_skipped` says why); ``True``:
            required; ``False``: off. Sound either way; it saves time where intervals
            prove (networks trained with them: ``resnet8-ibp-cifar10``) and costs about
            one batched forward pass per position where they do not.
        prove_float32: with the screen, also prove a bound of the model's float32 error
            over each position's color cube and take it as the tolerance where it is
            usable (:data:`PROVED_LIMIT`; ``Verification.float32_proved``). It costs the
            screen ~1.5 times its time (ResNet8: ~0.5 s an image); ``False``: the
            first-order estimate alone. On the CPU only (on CUDA cuDNN may choose
            Winograd or FFT convolutions, which the proof does not cover).
        search: where the bounds leave positions open (the budget nearly spent, boxes
            stuck below :data:`MIN_SIDE`), run a local search for witnesses there
            (:class:`~pixelprior.search.local.LocalSearch`: sign-gradient descent of the
            margin over the pixel's color from the cube's corners, the centers of the
            position's lowest-bound boxes and the pixel's own color), then, under a
            time budget, at the positions not reached. A time budget keeps
            :data:`SEARCH_SHARE` of itself for it (the search takes no more), handed
            back to the bounds when it is done; with ``max_boxes`` alone it runs after
            the boxes, at the positions they reached. Sound either way (a
            witness is confirmed by the model); it turns unknown positions into
            vulnerable ones, never into robust ones. Where no gradient reaches the
            color (a model that detaches its input), its starting colors are scored.

    Raises:
        BoundUnsupportedError: the model has an operation without a bound rule (named),
            or ``screen=True`` and one without an interval rule.
        TypeError: a box count that is not an integer.
        ValueError: a bad budget, box count, tolerance or order.
    """

    def __init__(self, model: nn.Module, *, budget: float | None = 60.0,
                 max_boxes: int | None = None, batch_boxes: int | None = None,
                 tolerance: float | None = None, engine: str | Scorer = "auto",
                 deterministic: bool = False, order: str = "corners",
                 screen: bool | None = None, prove_float32: bool = True,
                 search: bool = True) -> None:
        check_model(model, "Verifier")
        if order not in ("corners", "raster"):
            raise ValueError(f"order must be 'corners' or 'raster', got {order!r}")
        self.order = order
        if budget is not None and not 0 < budget < math.inf:
            raise ValueError(f"budget must be a finite number of seconds > 0 (None: no "
                             f"limit), got {budget!r}")
        for name, count in (("max_boxes", max_boxes), ("batch_boxes", batch_boxes)):
            if count is not None:  # None: no limit / the default batch
                check_int(name, count, 1)
        if tolerance is not None and not (tolerance >= 0 and math.isfinite(tolerance)):
            raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
        self.model = model
        self.budget, self.max_boxes, self.batch_boxes = budget, max_boxes, batch_boxes
        self.tolerance = tolerance
        self.engine_name = engine
        self.deterministic = deterministic
        self._scorer: Scorer | None = engine if isinstance(engine, Scorer) else None
        self._batch_checked = False  # scores of an image independent of its batch
        self.screen_mode = screen  # as given (what a Ray worker's verifier is made with)
        self.prove_float32 = prove_float32
        self.search = search
        self.local = LocalSearch(model) if search else None
        self._weights = WeightsWatch(model)
        self._shape: tuple[int, ...] | None = None  # the images' shape the copies read
        with evaluation_mode(model):  # as every call runs it (a model in train mode too)
            self._make_copies()

    def _make_copies(self) -> None:
        """The bound engines (each holds a float64 copy of the model), made anew when
        the model's weights change (:meth:`_follow_weights`) or, where the model
        computes a setting from a value's size, for each new image shape
        (:meth:`_follow_shape`)."""
        screen = self.screen_mode
        self.bounds = BoundEngine(self.model, shape=self._shape)
        self.screen: IntervalScreen | None = None
        self.screen_skipped: str | None = None if screen is not False else "screen=False"
        if screen is not False and self._shape is None and self.bounds.graph.unsettled:
            # made for the images' shape at the first call (_follow_shape), with the rest
            screen, self.screen_skipped = False, "made for the images' shape at the first call"
        self.signed: BackwardErrorBound | None = None  # the band's second, tighter proof
        self.signed_skipped: str | None = None  # why it is not used, when it is not
        if screen is not False:
            try:
                self.screen = IntervalScreen(self.model, shape=self._shape)
            except IntervalUnsupportedError as exc:
                if screen:
                    raise BoundUnsupportedError(str(exc)) from None
                self.screen_skipped = str(exc)
        if self.screen is not None and self.prove_float32:
            try:
                self.signed = BackwardErrorBound(self.screen)
            except BackwardUnsupportedError as exc:
                self.signed_skipped = str(exc)  # the interval proof alone

    def _follow_shape(self, images: torch.Tensor) -> None:
        """Where the model computes a setting from a value's size (``F.avg_pool2d(out,
        out.size()[3])``), make the bound engines for the images' shape: the copies
        read that setting as the number it is on such images, the function the model
        computes on them."""
        shape = tuple(images.shape[1:])
        graph = self.bounds.graph
        if (graph.unsettled or graph.shape is not None) and shape != self._shape:
            previous, self._shape = self._shape, shape
            try:
                self._make_copies()
            except Exception:
                self._shape = previous  # (made again at the next call, or refused again)
                raise

    def _follow_weights(self) -> None:
        """Verify the model as it is: where a weight changed in place since the bound
        engines copied it (a training step between two calls), make them again (the
        scores' check against the traced copy would refuse the stale ones), and the
        scorer too (a given one by its engine's name)."""
        if not self._weights.changed():
            return
        self.engine_name = engine_of(self.engine_name)
        self._scorer = None
        self._batch_checked = False
        self._make_copies()
        self._weights.renew()

    # ------------------------------------------------------------------ public API
    def operations(self, images: torch.Tensor) -> list[OperationSupport]:
        """Every operation of the model as the verifier's copy runs it on images of this
        shape: bounded, or refused and why; the interval screen; the float32 error
        proved, estimated or nothing to round (``pixelprior verify --check``; see
        :meth:`~pixelprior.scoring.cone.bounds.BoundEngine.operations`).

        Args:
            images: float ``[B, C, H, W]`` (only the shape counts).

        Returns:
            One :class:`~pixelprior.scoring.cone.bounds.OperationSupport` per operation
            that computes from the image, in the graph's order.

        Raises:
            BoundUnsupportedError: the verifier's copy does not run on such images.
            ValueError: the model itself does not (its error, in one line).
        """
        with evaluation_mode(self.model):
            self._clean_scores(images[:1])  # (images the model does not take: its line)
            self._follow_shape(images)
            return self.bounds.operations(images)

    def verify(self, images: torch.Tensor, labels: torch.Tensor,
               orders: torch.Tensor | None = None, stop_at_first: bool = True
               ) -> list[Verification]:
        """Verify each image (or find a witness).

        Args:
            images: float ``[B, C, H, W]`` in [0, 1], each classified as its label.
            labels: long ``[B]``.
            orders: long ``[B, K]``, the positions (flat ``y · W + x``) to visit, in
                order: each row distinct positions of the image, every one of them
                (``K = H · W``) or a subset (the others are left unknown, so the image
                is never verified). Default: the verifier's ``order``.
            stop_at_first: stop an image at its first witness (else every position is
                decided, as ``susceptibility --exact`` needs).

        Returns:
            One :class:`Verification` per image.

        Raises:
            TypeError: images that are not float32, labels that are not integers.
            ValueError: images outside [0, 1] or of a shape the model does not take,
                labels of the wrong shape or outside the model's classes, an image not
                classified as its label, or ``orders`` that are not rows of distinct
                positions of the image.
            UnboundedRoundingError: a model whose float32 error at an image is not
                bounded (a value near float32's overflow): no tolerance covers it.
        """
        labels, _ = check_inputs(images, labels, None, False)
        if images.shape[0] == 0:
            return []
        with evaluation_mode(self.model):
            self._follow_weights()  # (what the model's forward writes is a change too)
            self._follow_shape(images)
            return self._verify(images, labels, orders, stop_at_first)

    def _verify(self, images: torch.Tensor, labels: torch.Tensor,
                orders: torch.Tensor | None, stop_at_first: bool) -> list[Verification]:
        check_channels(self.model, images)
        check_classes(self._clean_scores(images[:1]), labels, None)
        if not self._batch_checked:  # the first call, or the weights changed
            check_batch_independent(self.model, images)
            self._batch_checked = True
        if orders is not None:
            _check_orders(orders, images.shape)
        self.bounds.plan(images[:1])
        results = []
        for i in range(images.shape[0]):
            began, scanned, found = time.perf_counter(), 0, {}
            logits = self._labelled_scores(images[i:i + 1], int(labels[i]))  # before any pass
            if orders is not None:
                order = orders[i]
            elif self.order == "corners":  # counted in the image's budget and queries
                deadline = None if self.budget is None else began + self.budget
                order, found, scanned = self._corner_pass(images[i:i + 1], int(labels[i]),
                                                          stop_at_first, deadline)
            else:
                order = None
            result = self._verify_one(images[i:i + 1], int(labels[i]), logits, order,
                                      stop_at_first, began, found)
            result.queries += scanned
            results.append(result)
        return results

    def _clean_scores(self, image: torch.Tensor) -> torch.Tensor:
        """The model's scores of one image, or a ValueError naming the images' shape."""
        try:
            with torch.inference_mode():
                scores = self.model(image)
        except RuntimeError as exc:
            if "out of memory" in str(exc):
                raise
            raise ValueError(model_failure(self.model, image, exc)) from None
        if not isinstance(scores, torch.Tensor):
            raise ModelOutputError(f"the model returns a {type(scores).__name__}, not "
                                   "class scores [B, K]: wrap it to return them")
        check_logits(scores, image.shape[0])  # [B, K] of K >= 2 classes, finite
        return scores

    def _labelled_scores(self, image: torch.Tensor, label: int) -> torch.Tensor:
        """The model's float64 scores ``[K]`` of one image, refused before any work
        where they do not classify it as its label."""
        logits = self._clean_scores(image)[0].double()
        predicted = int(logits.argmax())
        if predicted != label:
            raise ValueError(f"the model classifies the image as {predicted}, not its label "
                             f"{label}: there is nothing to verify")
        return logits

    def corner_order(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The positions of each image by the lowest margin the 8 corner colors reach
        there, low first (ties in raster order).

        Args:
            images: float ``[B, C, H, W]`` in [0, 1].
            labels: long ``[B]``.

        Returns:
            long ``[B, H · W]``.
        """
        with evaluation_mode(self.model):
            self._follow_weights()
            return margin_order(self._corner_scan(images, labels).min_margin)

    def _corner_scan(self, images: torch.Tensor, labels: torch.Tensor):
        """The 8 corner colors at every position of each image (a ``ScanResult``)."""
        from .scan import SusceptibilityScan  # the same layer; imported where used

        scan = SusceptibilityScan(self.model, 2, self._scorer_for(images[:1]),
                                  batch_invariant=True)
        return scan(images, labels)

    def _corner_pass(self, image: torch.Tensor, label: int, stop_at_first: bool,
                     deadline: float | None = None
                     ) -> tuple[torch.Tensor, dict[int, list[float]], int]:
        """The corner order of one image, and the witnesses its 8 corner colors already
        are (each confirmed by the model; with ``stop_at_first`` the first in the order
        only): a position a corner fools is decided before any box. Past ``deadline``
        (the budget's end) no more are confirmed after the first: their positions are
        left to the boxes.

        Returns:
            ``(order [H · W], {position: color}, queries)``.
        """
        result = self._corner_scan(image, torch.tensor([label], device=image.device))
        order = margin_order(result.min_margin)[0]
        queries = 2 ** image.shape[1] * image.shape[-2] * image.shape[-1]
        width = image.shape[-1]
        vulnerable = result.vulnerable[0].flatten().cpu()
        colours = result.best_colour[0].flatten(0, 1)
        found: dict[int, list[float]] = {}
        for p in order[vulnerable[order]].tolist():
            genes = torch.cat([torch.tensor([p % width, p // width], dtype=image.dtype,
                                            device=image.device), colours[p].to(image)])[None]
            queries += 1
            if confirm_witness(self.model, image, label, genes):
                found[p] = colours[p].tolist()
                if stop_at_first:
                    break
            if deadline is not None and time.perf_counter() > deadline:
                break  # (the first candidate is always confirmed: one forward pass)
        return order, found, queries

    def probe(self, image: torch.Tensor, label: int, limit: int | None = None) -> int | None:
        """The symbols one box of the whole color cube at the image's center needs: a
        deterministic measure of what a box costs (each symbol is one more pass through
        the pixel's cone).

        Args:
            image: float ``[1, C, H, W]`` in [0, 1].
            label: its class.
            limit: stop counting past this many symbols.

        Returns:
            The symbol count, or ``None`` past ``limit``.
        """
        with evaluation_mode(self.model):
            return self._probe(image, label, limit)

    def _probe(self, image: torch.Tensor, label: int, limit: int | None) -> int | None:
        self._follow_weights()
        self._clean_scores(image)  # (images the model does not take: one line, as verify's)
        self._follow_shape(image)
        channels, height, width = image.shape[1:]
        cache = self.bounds.prepare(image)
        device = image.device
        try:
            bounds = self.bounds.margins(
                cache, torch.zeros(1, dtype=torch.long, device=device),
                torch.tensor([height // 2], device=device),
                torch.tensor([width // 2], device=device),
                torch.zeros(1, channels, device=device), torch.ones(1, channels, device=device),
                torch.tensor([label], device=device), max_symbols=limit)
        except TooManySymbols:
            return None
        return bounds.symbols

    def tolerance_of(self, image: torch.Tensor, label: int) -> float:
        """The margin a box's lower bound must exceed to count as proved at a position
        whose float32 error is not proved (at one where it is, that proved error: the
        module docstring).

        The set ``tolerance``, or: twice the first-order float32 rounding bound of the
        model at ``image`` (TF32's unit where convolutions or matrix products use it). The
        bounds' own float64 rounding is proved and taken off by the bound engine. A model
        with a value at ``image`` near float32's overflow (within 2^28 of its largest) or
        not finite is refused with a set tolerance too (checked in one forward pass):
        other colors may overflow to ``inf``, and no tolerance covers that.

        Args:
            image: the clean image ``[1, C, H, W]``.
            label: its label.

        Returns:
            The tolerance (a margin, in logits).

        Raises:
            UnboundedRoundingError: the model's float32 error at ``image`` is not
                bounded (a value not finite or near float32's overflow), whether the
                tolerance is set or derived; or, derived, it has no estimate (scores
                without a gradient).
        """
        if self.tolerance is not None:  # it does not cover scores that overflow to inf
            if near_overflow(self.model, image):  # (1e38 apart, they tie): checked alone,
                raise UnboundedRoundingError(_OVERFLOW_NOTE)  # one forward pass
            return self.tolerance
        unit = rounding_unit(image.device)
        try:
            error = float(rounding_error(self.model, image, torch.tensor([label]), unit)[0])
        except NoGradientError as exc:
            raise UnboundedRoundingError(str(exc)) from None
        if not math.isfinite(error):  # a proof resting on it would prove nothing
            raise UnboundedRoundingError(_OVERFLOW_NOTE)
        return SAFETY * error

    # ------------------------------------------------------------------ one image
    def _scorer_for(self, image: torch.Tensor) -> Scorer:
        if self._scorer is None:
            self._scorer = make_scorer(self.model, image, self.engine_name, 1)
        return self._scorer

    def _verify_one(self, image: torch.Tensor, label: int, logits: torch.Tensor,
                    order: torch.Tensor | None, stop_at_first: bool,
                    began: float | None = None,
                    found: dict[int, list[float]] | None = None) -> Verification:
        """Bound, judge and split one image's boxes until every position is decided, a
        witness is found (``stop_at_first``) or the budget is spent; with the local
        search, it runs where the bounds leave positions open before the budget's last
        :data:`SEARCH_SHARE`, and the bounds go on with what it leaves of the budget.
        ``began``: when the image's budget started (default: now); ``found``: witnesses
        known before (the corner pass's), their positions decided; ``logits``: the
        model's float64 scores of the image (:meth:`_labelled_scores`)."""
        run = self._start(image, label, logits, order, stop_at_first, began)
        if found:
            self._record_witnesses(run, found)
            if stop_at_first:
                return self._finish(run)
        reserve = SEARCH_SHARE if self.local is not None else 0.0
        done = self._bound_boxes(run, stop_at_first, reserve)
        if not done and self.local is not None:
            done = self._search_open(run, stop_at_first)
            if not done and reserve and not self._out_of_budget(run.began, run.spent):
                self._bound_boxes(run, stop_at_first, 0.0)
        return self._finish(run)

    def _bound_boxes(self, run: _ImageRun, stop_at_first: bool, reserve: float) -> bool:
        """The bound loop, until every position is decided, a witness is found
        (``stop_at_first``) or the budget less its ``reserve`` share is spent.

        Returns:
            Whether the image is done (a witness found with ``stop_at_first``).
        """
        most = self.batch_boxes or DEFAULT_BATCH.get(run.image.device.type, 64)
        # the first call: one box on the CPU (its size unknown yet); grows once timed
        batch = most if self.deterministic else min(most, 1 if run.cpu else 8)
        while not self._out_of_budget(run.began, run.spent, reserve):
            run.frontier.fill(most, None if self.max_boxes is None
                              else self.max_boxes - run.spent)
            if run.frontier.exhausted or self._out_of_budget(run.began, run.spent, reserve):
                break  # (the screen may have spent the budget)
            if not run.frontier.active:  # a chunk the screen proved whole: the next one
                continue
            called = time.perf_counter()
            if self.max_boxes is not None:  # never past max_boxes, even in one call
                batch = min(batch, self.max_boxes - run.spent)
            lo, hi, position, parent, level = self._without_call(run,
                                                                 *run.frontier.pop(batch))
            if not position.size:
                continue
            try:
                bounds = self._bound(run, lo, hi, position, None if self.budget is None
                                     else run.began + self.budget * (1 - reserve))
            except OutOfTime:  # (a deep network's whole cube: seconds a box) not bounded:
                run.frontier.push(lo, hi, position, parent, front=True)  # back, and the
                break  # search's turn, or the image's end
            except TooManySymbols:  # past the memory bound of one call: smaller calls,
                run.unbounded += position.size  # (counted against max_boxes: no endless
                batch = self._too_many_symbols(run.frontier, lo, hi, position, parent,
                                               run.stuck, run.too_big)  # halving)
                continue  # or, for a single box, cut unbounded
            np.add.at(run.boxes, position, 1)
            batch = self._next_batch(len(position), time.perf_counter() - called,
                                     bounds, most, run.began, run.cpu, reserve)
            if self._settle(run, lo, hi, position, level, bounds, stop_at_first):
                return True
            if not batch:  # not one more box before the budget (less the search's share)
                break  # ends: the search's turn, or the image's end
        return False

    def _search_open(self, run: _ImageRun, stop_at_first: bool) -> bool:
        """The local search at the positions the bounds left open (lowest bound first),
        then, under a time budget, at those not reached (in the visiting order), until
        the budget is spent.

        Starts: the cube's corners and the centers of a position's lowest-bound open
        boxes (or of its lowest stuck box), the cube's center in their place where a
        position has none.

        Returns:
            Whether the image is done (a witness found with ``stop_at_first``).
        """
        lowest = run.frontier.lowest()
        for p in np.flatnonzero(run.stuck < math.inf).tolist():  # -inf: cut unbounded
            lowest[p] = min(lowest.get(p, math.inf), float(run.stuck[p]))
        open_ = sorted(lowest, key=lambda p: (lowest[p], run.frontier.rank[p]))
        # not reached: only under a time budget (else the search would have no bound
        # but the image's positions: with max_boxes alone it covers what the boxes reached)
        later = (run.frontier.not_entered() if self.budget is not None
                 else np.zeros(0, dtype=np.int64))
        positions = np.concatenate([np.array(open_, dtype=np.int64), later])
        if not positions.size:
            return False
        starts = self._search_starts(run, positions, len(open_))
        # at most the reserved share, also where max_boxes ended the bounds early
        deadline = None if self.budget is None else min(
            run.began + self.budget, time.perf_counter() + SEARCH_SHARE * self.budget)
        found = self.local(run.image, run.label, positions, starts, deadline, stop_at_first)
        run.queries += found.queries
        run.searched += found.searched
        run.search_witnesses += len(found.witnesses)
        if found.witnesses:
            self._record_witnesses(run, found.witnesses)
        return stop_at_first and bool(found.witnesses)

    @staticmethod
    def _record_witnesses(run: _ImageRun, found: dict[int, list[float]]) -> np.ndarray:
        """Keep the witnesses ``{position: color}``: their positions are decided (their
        boxes forgotten, none stuck) and never enter again. Returns the positions."""
        hit = np.array(sorted(found), dtype=np.int64)
        for p, color in found.items():
            run.witness[p] = color
        run.frontier.drop(hit)
        run.stuck[hit] = math.inf
        return hit

    @staticmethod
    def _search_starts(run: _ImageRun, positions: np.ndarray, bounded: int) -> np.ndarray:
        """The local search's starting colors ``[K, 2^C + SEARCH_BOX_STARTS, C]`` at
        ``positions`` (the first ``bounded`` of them have boxes): the cube's corners, then
        the centers of the position's lowest stuck box and lowest-bound waiting boxes; in
        the slots left, the pixel's own color and the cube's center."""
        channels = run.channels
        pixels = run.image[0].flatten(1).T.double().cpu().numpy()  # [H · W, C]
        starts = np.empty((positions.size, 2 ** channels + SEARCH_BOX_STARTS, channels))
        starts[:, :2 ** channels] = cube_corners(channels)
        for row, p in enumerate(positions.tolist()):
            centers = np.zeros((0, channels))
            if row < bounded:
                centers = run.frontier.lowest_centers(p, SEARCH_BOX_STARTS)
                if not np.isnan(run.stuck_point[p, 0]):
                    centers = np.concatenate([run.stuck_point[p:p + 1], centers])
            filler = np.stack([pixels[p], np.full(channels, 0.5)])
            starts[row, 2 ** channels:] = np.concatenate([centers, filler])[:SEARCH_BOX_STARTS]
        return starts

    def _start(self, image: torch.Tensor, label: int, logits: torch.Tensor,
               order: torch.Tensor | None, stop_at_first: bool,
               began: float | None = None) -> _ImageRun:
        """One image's state before its first box: the tolerances, the caches of the
        bound engine and the scorer, and the frontier of its positions in ``order``
        (``logits``: the image's float64 scores, its label checked)."""
        began = time.perf_counter() if began is None else began
        channels, height, width = image.shape[1:]
        positions = height * width
        tolerance = self.tolerance_of(image, label)
        cache = self.bounds.prepare(image)  # the model's scores checked against its trace
        if self.screen is not None:  # made with the engine, of the same model: checked
            self.screen.agreed(image)
        scorer = self._scorer_for(image)
        run = _ImageRun(image=image, label=label, width=width, tolerance=tolerance,
                        tolerances=np.full(positions, tolerance), cache=cache,
                        scorer=scorer, state=scorer.prepare(image), began=began,
                        floor=0.0 if self.tolerance is None else self.tolerance)
        screen = None if self.screen is None else self._screening(run)
        margin = float((logits[label] - logits).sort().values[1]) if logits.numel() > 1 else 0.0
        # deciding every position, the first in the corner order are the vulnerable ones:
        # no bound proves them, so they say nothing of the screen elsewhere; it is kept
        hopeless = tolerance - SCREEN_HOPELESS * abs(margin) if stop_at_first else -math.inf
        order = order.cpu().numpy() if order is not None else np.arange(positions)
        run.frontier = _Frontier(order.astype(np.int64), channels, screen,
                                 SCREEN_CHUNK.get(image.device.type, 64), hopeless,
                                 math.inf if stop_at_first else EXACT_QUOTA)
        return run

    def _without_call(self, run: _ImageRun, lo: np.ndarray, hi: np.ndarray,
                      position: np.ndarray, parent: np.ndarray) -> tuple[np.ndarray, ...]:
        """Of boxes just popped, those to bound, with their levels. The others are halved
        unbounded: boxes as large as one found past the symbol bound at their position
        (cut in ``2^C``, as a failed call would be) and boxes of a level seldom proved."""
        side = (hi - lo).max(1)  # as large as a box past the symbol bound: cut without
        big = (side >= run.too_big[position]) & (side >= MIN_SIDE)  # a failed call
        if big.any():
            run.unbounded += int(big.sum())
            _cut(run.frontier, lo[big], hi[big], position[big], parent[big], run.stuck)
            lo, hi, position, parent = lo[~big], hi[~big], position[~big], parent[~big]
        level = _Levels.of(lo, hi)
        skip = run.levels.skip(level, (hi - lo).max(1) < 2 * MIN_SIDE)
        if skip.any():
            self._split(run.frontier, lo[skip], hi[skip], position[skip], parent[skip],
                        np.zeros(lo[skip].shape))
            lo, hi, position, parent, level = (lo[~skip], hi[~skip], position[~skip],
                                               parent[~skip], level[~skip])
        return lo, hi, position, parent, level

    def _bound(self, run: _ImageRun, lo: np.ndarray, hi: np.ndarray, position: np.ndarray,
               deadline: float | None = None) -> MarginBounds:
        """The bound engine's margin bounds of boxes ``[M, C]`` at their positions
        (stopped past ``deadline``: :class:`~pixelprior.scoring.cone.bounds.OutOfTime`)."""
        device = run.image.device
        return self.bounds.margins(
            run.cache, torch.zeros(len(position), dtype=torch.long, device=device),
            torch.as_tensor(position // run.width, device=device),
            torch.as_tensor(position % run.width, device=device),
            torch.as_tensor(lo, device=device), torch.as_tensor(hi, device=device),
            torch.full((len(position),), run.label, dtype=torch.long, device=device),
            max_symbols=min(MAX_BOX_SYMBOLS,
                            max(ROWS_PER_CALL // len(position) - 1, run.channels)),
            deadline=deadline)

    def _settle(self, run: _ImageRun, lo: np.ndarray, hi: np.ndarray, position: np.ndarray,
                level: np.ndarray, bounds: MarginBounds, stop_at_first: bool) -> bool:
        """Judge bounded boxes: the proved ones count in the volume; the candidate points
        of the others are scored (a confirmed label change makes its position
        vulnerable); the rest are split, or left stuck below :data:`MIN_SIDE`.

        Returns:
            Whether the image is done: a witness found with ``stop_at_first`` (the boxes
            still open are put back, to be reported unknown).
        """
        # a NaN bound proves nothing and must not hide the box (a NaN in ``stuck`` would
        # read as "no stuck box"): it counts as the lowest bound there is
        lower = bounds.lower.cpu().numpy()
        lower = np.where(np.isnan(lower), -np.inf, lower)
        worst = lower.min(1)
        proved = worst > self._box_tolerances(run, lo, hi, position, worst, lower)
        run.levels.record(level, proved)
        np.add.at(run.volume, position[proved], np.prod(hi[proved] - lo[proved], axis=1))
        open_ = ~proved
        if not open_.any():
            return False
        lo, hi, position, worst = lo[open_], hi[open_], position[open_], worst[open_]
        slopes = _worst_slopes(bounds, open_)
        fooled, spent = self._witnesses(run.image, run.label, run.scorer, run.state, lo, hi,
                                        position, slopes, run.width)
        run.queries += spent
        if fooled:
            hit = self._record_witnesses(run, fooled)
            keep = ~np.isin(position, hit)
            lo, hi, position, worst, slopes = (lo[keep], hi[keep], position[keep],
                                               worst[keep], slopes[keep])
            if stop_at_first:  # what is left open stays open: unknown, not robust
                run.frontier.push(lo, hi, position, worst, front=True)
                return True
        small = (hi - lo).max(1) < MIN_SIDE
        for p, bound, center in zip(position[small].tolist(), worst[small].tolist(),
                                    ((lo[small] + hi[small]) / 2), strict=True):
            if bound < run.stuck[p]:
                run.stuck[p], run.stuck_point[p] = bound, center
        self._split(run.frontier, lo[~small], hi[~small], position[~small], worst[~small],
                    slopes[~small])
        return False

    def _finish(self, run: _ImageRun) -> Verification:
        verdicts = self._verdicts(run.frontier, run.volume, run.boxes, run.stuck,
                                  run.witness)
        result = self._summary(verdicts, run.queries, time.perf_counter() - run.began,
                               run.tolerance, run.width)
        result.screened = int(run.screened.sum())
        result.float32_proved = int(run.float32_proved.sum())
        result.tolerance_max = float(run.tolerances.max())
        result.searched, result.search_witnesses = run.searched, run.search_witnesses
        result.unit = rounding_unit(run.image.device)
        return result

    def _screening(self, run: _ImageRun) -> Callable[[np.ndarray], np.ndarray]:
        """The frontier's screen: positions → the interval bound of their whole cube
        (``+inf`` where it proves it: counted proved in the run's ``volume`` and
        ``screened``; one box each). It also proves a bound of the model's float32 error
        over each cube, which sets the position's tolerance (:data:`PROVED_LIMIT`, in
        ``tolerances`` and ``float32_proved``) before any of its boxes is judged."""
        image, label, channels = run.image, run.label, run.channels
        tolerances, float32_proved = run.tolerances, run.float32_proved
        volume, boxes, screened = run.volume, run.boxes, run.screened
        # on the CPU only: cuDNN may pick Winograd or FFT convolutions, which round
        # otherwise than a sum in any order, and TF32 may truncate its inputs
        proving = self.prove_float32 and image.device.type == "cpu"
        unit = run.unit = rounding_unit(image.device) if proving else None

        def screen(positions: np.ndarray) -> np.ndarray:
            count = positions.size
            cube = torch.zeros(count, channels, dtype=torch.float64, device=image.device)
            bounds = self.screen.bounds(image, torch.as_tensor(positions), cube, cube + 1,
                                        label, unit)
            if bounds.error is not None:
                error = bounds.error.max(1).values.cpu().numpy()  # NaN compares False
                initial = tolerances[positions]  # the image's tolerance
                covered = error <= PROVED_LIMIT * initial
                tolerances[positions] = np.where(covered, np.maximum(run.floor, error),
                                                 initial)
                float32_proved[positions] = covered
            worst = bounds.lower.min(1).values.cpu().numpy()
            worst = np.where(np.isnan(worst), -np.inf, worst)
            proved = worst > tolerances[positions]
            boxes[positions] += 1
            volume[positions[proved]] += 1.0
            screened[positions[proved]] = True
            return np.where(proved, np.inf, worst)

        return screen

    def _box_tolerances(self, run: _ImageRun, lo: np.ndarray, hi: np.ndarray,
                        position: np.ndarray, worst: np.ndarray,
                        lower: np.ndarray | None = None) -> np.ndarray:
        """The margin each box's bound must exceed: its position's tolerance, or, for a
        box of a float32-proved position whose bound lies between the run's ``floor``
        and that tolerance, the float32 error proved over the box alone if that is
        smaller (at least the ``floor``: 0 with the derived tolerance, else the set one).

        The screen's error bound of the box's colors with the run's ``unit`` (the one
        the position's proof used) comes first: ConvSmall's are ~2.75 times the
        first-order estimate at side 0.05 against ~4.4 over the cube, so boxes near the
        decision boundary prove without splitting down to :data:`MIN_SIDE`. Where the
        box's bound is still within that, the backward bound's (``signed``: the
        roundings' paths to the margin with their signs, 0.7-1.1 times the first-order
        estimate on a small box), in chunks of :data:`SIGNED_CHUNK`. A bound is not
        computed for a box whose margin bound is below :data:`ERROR_SKIP` of the least
        it has proved over a box of the image as small or smaller. With each margin's
        bound (``lower``, ``[N, K]``) only the margins bounded at or below the position's
        tolerance count (the others exceed it, and so the error over the cube, already)
        and only theirs are computed. Still a proof for the float32 model: the box's
        bound exceeds a bound of the float32 error at every one of its colors, so its
        float32 margins are positive. The run's ``tolerances`` are not changed."""
        floor = run.floor
        needed = run.tolerances[position]  # (a copy: advanced indexing)
        band = run.float32_proved[position] & (worst > floor) & (worst <= needed)
        if self.screen is None or run.unit is None or not band.any():
            return needed
        near = None if lower is None else lower <= needed[:, None]  # the margins that count

        def boxes(rows: np.ndarray) -> tuple:
            """The error bounds' arguments for the boxes at ``rows``."""
            return (run.image, torch.as_tensor(position[rows]), torch.as_tensor(lo[rows]),
                    torch.as_tensor(hi[rows]), run.label, run.unit)

        level = np.clip(_Levels.of(lo, hi), 0, LEVELS - 1)
        self._lower_to(needed, band, worst, level, run.least_error["intervals"], near,
                       floor, SCREEN_CHUNK.get(run.image.device.type, 64),
                       lambda rows: self.screen.bounds(*boxes(rows)).error)
        small = (hi - lo).max(1) <= SIGNED_SIDE
        if self.signed is not None:  # what the intervals' error left in the band
            try:
                self._lower_to(needed, band & small & (worst <= needed), worst, level,
                               run.least_error["signed"], near, floor, SIGNED_CHUNK,
                               lambda rows: self.signed.errors(
                                   *boxes(rows),
                                   None if near is None else torch.as_tensor(near[rows])))
            except (BackwardUnsupportedError, RuntimeError) as exc:
                # an operation it cannot pull as the model calls it (a product whose
                # varying factor broadcasts, a reshape across the batch): the intervals'
                # proof alone from here on, as for a model it refused when made
                self.signed, self.signed_skipped = None, str(exc)
                warnings.warn(f"the backward float32 error bound is off for this model "
                              f"({exc}); the interval proof alone judges its boxes",
                              stacklevel=2)
        return needed

    @staticmethod
    def _lower_to(needed: np.ndarray, rows: np.ndarray, worst: np.ndarray,
                  level: np.ndarray, least: np.ndarray, near: np.ndarray | None,
                  floor: float, chunk: int,
                  errors: Callable[[np.ndarray], torch.Tensor]) -> None:
        """Lower ``needed`` at ``rows`` (a mask) to the larger of ``floor`` and the
        float32 error ``errors(rows)`` proves over each box (``[R, K]``; its largest over
        the margins ``near`` marks, or all), where that is smaller; chunks of ``chunk``
        boxes. Boxes whose bound ``worst`` is below :data:`ERROR_SKIP` of the ``least``
        error proved at their ``level`` or deeper are left out; ``least`` is lowered to
        each finite error proved."""
        picked = np.flatnonzero(rows & _worth_bounding(worst, level, least))
        for start in range(0, picked.size, chunk):
            part = picked[start:start + chunk]
            error = errors(part).cpu().numpy()
            if near is not None:  # the margins that do not count: 0 (NaN stays NaN)
                error = np.where(near[part], error, 0.0)
            error = error.max(1)
            finite = np.isfinite(error)
            np.minimum.at(least, level[part][finite], error[finite])
            # never above the position's (a NaN error compares False: the position's)
            needed[part] = np.where(error < needed[part], np.maximum(floor, error),
                                    needed[part])

    def _too_many_symbols(self, frontier: _Frontier, lo: np.ndarray, hi: np.ndarray,
                          position: np.ndarray, parent: np.ndarray, stuck: np.ndarray,
                          too_big: np.ndarray) -> int:
        """Boxes whose call would pass :data:`ROWS_PER_CALL` rows or
        :data:`MAX_BOX_SYMBOLS` symbols: put back for calls of half as many boxes; a single
        such box is cut unbounded (:func:`_cut`), and so are the boxes of its position as
        large as it, without a call (``too_big``, per position, updated here; the symbols
        grow with the side; a box is only counted, and only proved, once bounded).

        Returns:
            The next call's boxes.
        """
        if position.size > 1:
            frontier.push(lo, hi, position, parent, front=True)
            return max(1, position.size // 2)
        too_big[position] = np.minimum(too_big[position], (hi - lo).max())
        _cut(frontier, lo, hi, position, parent, stuck)
        return 1

    def _next_batch(self, done: int, seconds: float, bounds: MarginBounds, most: int,
                    began: float, cpu: bool, reserve: float = 0.0) -> int:
        """Boxes for the next bound call: about :data:`CALL_SECONDS` of work, within the
        rows bound (on the CPU :data:`CPU_CALL_BYTES`, from the last call's symbols and
        widest value) and the budget left, less its ``reserve`` share (at least 1, at
        most ``most``; 0 where the time left would not bound one box at the last call's
        pace: a call of seconds a box, begun just before the reserve, took the local
        search's share, and one begun just before the end ran past the budget)."""
        per_box = max(seconds / done, 1e-6)
        rows = 1 + bounds.symbols
        most = min(most, ROWS_PER_CALL // rows)
        if cpu:
            most = min(most, CPU_CALL_BYTES // (8 * rows * max(bounds.row_elements, 1)))
        if self.deterministic:
            return max(1, most)
        batch = min(most, int(CALL_SECONDS / per_box))
        if self.budget is not None:
            left = self.budget * (1 - reserve) - (time.perf_counter() - began)
            if left < per_box:
                return 0
            batch = min(batch, int(left / per_box))
        return max(1, batch)

    def _out_of_budget(self, began: float, boxes: int, reserve: float = 0.0) -> bool:
        """Whether the budget less its ``reserve`` share (of the time) is spent."""
        if self.budget is not None and (time.perf_counter() - began
                                        > self.budget * (1 - reserve)):
            return True
        return self.max_boxes is not None and boxes >= self.max_boxes

    def _witnesses(self, image: torch.Tensor, label: int, scorer: Scorer, state,
                   lo: np.ndarray, hi: np.ndarray, position: np.ndarray, slopes: np.ndarray,
                   width: int) -> tuple[dict[int, list[float]], int]:
        """Candidate points of the open boxes (centers and the corners their bounds point
        at) scored by the scorer; label changes confirmed by the model itself.

        Returns:
            ``({position: color}, model queries)``.
        """
        center = (lo + hi) / 2
        corner = np.where(slopes > 0, lo, np.where(slopes < 0, hi, center))
        colors = np.concatenate([center, corner])
        where = np.concatenate([position, position])
        genes = torch.as_tensor(np.concatenate([
            np.stack([where % width, where // width], 1), colors], 1),
            dtype=image.dtype, device=image.device)[:, None]
        owner = torch.zeros(len(where), dtype=torch.long, device=image.device)
        with torch.inference_mode():
            logits = scorer.logits(state, owner, genes)
        flips = (logits.argmax(1) != label).nonzero().flatten().tolist()
        found: dict[int, list[float]] = {}
        checked = 0
        for row in flips:
            p = int(where[row])
            if p in found:
                continue
            checked += 1
            if confirm_witness(self.model, image, label, genes[row]):
                found[p] = genes[row, 0, 2:].tolist()
        return found, len(where) + checked

    @staticmethod
    def _split(frontier: _Frontier, lo: np.ndarray, hi: np.ndarray, position: np.ndarray,
               worst: np.ndarray, slopes: np.ndarray) -> None:
        """Halve each box along its longest side (of those, the channel the worst
        margin's bound depends on most); children of the lowest bounds first."""
        if not position.size:
            return
        side = hi - lo
        longest = np.isclose(side, side.max(1, keepdims=True), rtol=0, atol=0)
        weight = np.where(longest, np.abs(slopes) + 1e-300, -1.0)
        axis = weight.argmax(1)
        rows = np.arange(position.size)
        middle = (lo[rows, axis] + hi[rows, axis]) / 2
        first_hi, second_lo = hi.copy(), lo.copy()
        first_hi[rows, axis] = middle
        second_lo[rows, axis] = middle
        order = np.argsort(worst, kind="stable")
        frontier.push(np.concatenate([lo, second_lo])[np.r_[order, order + position.size]],
                      np.concatenate([first_hi, hi])[np.r_[order, order + position.size]],
                      np.concatenate([position, position])[np.r_[order, order + position.size]],
                      np.concatenate([worst, worst])[np.r_[order, order + position.size]])

    @staticmethod
    def _verdicts(frontier: _Frontier, volume: np.ndarray, boxes: np.ndarray,
                  stuck: np.ndarray, witness: np.ndarray) -> PositionVerdicts:
        pending = frontier.lowest()
        status, lowest = [], np.full(volume.shape, np.nan)
        for p in range(volume.size):
            if not np.isnan(witness[p, 0]):
                status.append(VULNERABLE)
            elif p in pending or stuck[p] < math.inf or boxes[p] == 0:
                status.append(UNKNOWN)  # never bounded (not reached): no bound, -inf
                lowest[p] = min(pending.get(p, -math.inf if boxes[p] == 0 else math.inf),
                                stuck[p])
            else:
                status.append(ROBUST)
        return PositionVerdicts(status, torch.from_numpy(np.minimum(volume, 1.0)),
                                torch.from_numpy(lowest), torch.from_numpy(witness),
                                torch.from_numpy(boxes))

    @staticmethod
    def _summary(verdicts: PositionVerdicts, queries: int, seconds: float,
                 tolerance: float, width: int) -> Verification:
        status = verdicts.status
        vulnerable = [p for p, s in enumerate(status) if s == VULNERABLE]
        verified = all(s == ROBUST for s in status)
        witness = None
        if vulnerable:
            p = vulnerable[0]
            witness = (p % width, p // width, verdicts.witness[p].tolist())
        unknown = verdicts.lowest_bound[~torch.isnan(verdicts.lowest_bound)]
        lowest = None if verified or vulnerable else (
            float(unknown.min()) if unknown.numel() else None)
        if lowest is not None and not math.isfinite(lowest):
            lowest = None  # positions never bounded: no bound known
        decided = "verified" if verified else "fooled" if vulnerable else "unknown"
        return Verification(verified, bool(vulnerable), decided, witness,
                            float(verdicts.verified_volume.mean()), lowest,
                            int(verdicts.boxes.sum()), queries, seconds, tolerance, verdicts)


def _check_orders(orders: torch.Tensor, shape: torch.Size) -> None:
    """Refuse orders that are not ``[B, K]`` rows of distinct positions of the images."""
    count, positions = shape[0], shape[-2] * shape[-1]
    if (orders.dim() != 2 or orders.shape[0] != count or orders.shape[1] > positions
            or orders.dtype.is_floating_point or orders.dtype == torch.bool):
        raise ValueError(f"orders must be integer [{count}, K] with K <= {positions} "
                         f"(positions of each image), got {orders.dtype} "
                         f"{list(orders.shape)}")
    if orders.numel() and (int(orders.min()) < 0 or int(orders.max()) >= positions):
        raise ValueError(f"orders must hold positions 0..{positions - 1} (y · W + x)")
    ordered = orders.sort(1).values
    if bool((ordered[:, 1:] == ordered[:, :-1]).any()):
        raise ValueError("orders must not repeat a position within an image")


def _cut(frontier: _Frontier, lo: np.ndarray, hi: np.ndarray, position: np.ndarray,
         parent: np.ndarray, stuck: np.ndarray) -> None:
    """Boxes ``[M, C]`` past the symbol bound, halved along every channel unbounded
    (``2^C`` boxes each, put first: one failed call per halving of the side, not one per
    channel). A box too small to halve (:data:`MIN_SIDE`) is left unknown with no bound
    (``stuck`` at ``-inf``)."""
    small = (hi - lo).max(1) < MIN_SIDE
    stuck[position[small]] = -math.inf
    lo, hi, position, parent = lo[~small], hi[~small], position[~small], parent[~small]
    if not position.size:
        return
    pieces = 2 ** lo.shape[1]
    upper = np.array(list(np.ndindex(*(2,) * lo.shape[1])), dtype=bool)  # [2^C, C]: halves
    middle = (lo + hi) / 2
    cut_lo = np.where(upper, middle[:, None], lo[:, None]).reshape(-1, lo.shape[1])
    cut_hi = np.where(upper, hi[:, None], middle[:, None]).reshape(-1, lo.shape[1])
    frontier.push(cut_lo, cut_hi, np.repeat(position, pieces), np.repeat(parent, pieces),
                  front=True)


def _worth_bounding(worst: np.ndarray, level: np.ndarray, least: np.ndarray) -> np.ndarray:
    """Boxes whose margin bound ``worst`` is at least :data:`ERROR_SKIP` of the least
    float32 error a bound has proved over a box of their ``level`` or deeper (``least``,
    per level: ``inf`` where none; every box where none is known)."""
    deeper = np.minimum.accumulate(least[::-1])[::-1]  # per level, its own and deeper
    threshold = deeper[level]
    known = np.isfinite(threshold)
    return worst >= np.where(known, ERROR_SKIP * np.where(known, threshold, 0.0), -np.inf)


def _worst_slopes(bounds, rows: np.ndarray) -> np.ndarray:
    """The color coefficients of each open box's worst margin ``[n, C]``."""
    worst = bounds.lower.argmin(1)
    slopes = bounds.inputs[torch.arange(bounds.inputs.shape[0]), worst]
    return slopes.cpu().numpy()[rows]
