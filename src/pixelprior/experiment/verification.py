"""Verification as a resumable run: one row per image in ``verification.jsonl`` (appended
after each image), the settings in ``verification.json``, and with ``exact`` the verdict
of every position in ``positions/IMAGE.npz``.

A folder records what its verdicts were made with: the model (its spec and fingerprint)
and every setting that changes a verdict (budget, boxes, tolerance, exact). A resume
compares them and refuses another (a verdict reached in 60 s never sits beside one
reached in 600 s); images are matched by their pixels, so an image already verified is
not verified again, and an index given to other pixels is refused.
"""

from __future__ import annotations

import json
import math
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import closing, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .._io import (
    CorruptResultsError,
    Interrupts,
    RunLock,
    append_rows,
    check_own_folder,
    check_writable_dir,
    read_rows,
    save_npz_atomic,
    write_json_atomic,
)
from .._streams import pixel_keys
from ..data import SusceptibilityMaps
from ..models import code_changed, model_fingerprint, same_model
from ..search import Verification, Verifier
from ..search.verify import REVISION, rounding_unit
from .environment import package_version, write_environment
from .progress import ProgressReporter, as_reporter, reporting
from .scans import check_same_labels, check_same_pixels, same_setting

if TYPE_CHECKING:  # Ray's pool loads only where workers are asked for
    from .distributed import ActorPool

ROWS_FILE = "verification.jsonl"
SETTINGS_FILE = "verification.json"
POSITIONS_DIR = "positions"
# what a verification folder holds (anything else there is someone's other files)
OWN_FILES = frozenset({ROWS_FILE, SETTINGS_FILE, POSITIONS_DIR, ".lock", "summary.json",
                       "environment.json",
                       "map_metrics.csv", "map_metrics.md", "map_metrics.json",
                       "method_maps.npz"} | {
    f"{name}.{ext}" for name in ("roc", "maps_compared", "ranked_scans")
    for ext in ("png", "pdf")})  # with what `evaluate-maps` writes beside exact verdicts
# the settings that change a verdict: a resume must be given the same ones (the engine
# that scores candidate points changes float bits at most; where the tolerance is
# derived, the unit roundoff it assumes does: TF32 on CUDA rounds 2^13 times coarser)
VERDICT_SETTINGS = ("target", "model", "weights", "model_fingerprint", "mean", "std",
                    "input_size", "classes", "budget", "max_boxes", "tolerance", "exact",
                    "deterministic", "tolerance_unit", "screen", "float32_proof", "search",
                    "verifier")
# "target" (what the images are): a folder holds one target's verdicts (two image files
# would share index -1, and the settings would name only the last); the Python API
# records it only where ``info`` gives it. (CIFAR-10's source is not compared: the sample
# is the test set's first 100 images, and the pixels under each index are checked.)
# "screen" decides nothing a proof could not, but under a budget it changes which images
# are decided in time (as "deterministic" does). "float32_proof": the screen also proves
# the model's float32 error and makes it a position's tolerance (the rows'
# ``float32_proved``); folders from before it are resumed without it recorded. Rows made
# before 3808673 judged a float32-proved box against at least the tolerance (now: the
# error proved over it, which may be below): sound either way, and the rows' ``version``
# says which; a resumed folder is not refused for it. "search": the local search for
# witnesses where the bounds leave positions open (a later addition too: folders from
# before it are resumed without it recorded; their rows have no ``positions_searched``).
# "verifier": the verifier's revision (:data:`~pixelprior.search.verify.REVISION`), so
# that rows of two algorithms never share a folder; a folder from before it was recorded
# is resumed with a note (its rows' ``version`` names the commit that made each) and
# marked, so that only this revision resumes it again. Runs' ``fast`` verification stage
# writes into run folders, whose rows record the revision each (``verifier``; a resume
# refuses another: pixelprior.experiment.rundir.RunRows).
UNRECORDED_PREFIX = "unrecorded, resumed by revision "
STATUS_CODES = {"robust": 0, "vulnerable": 1, "unknown": 2}


class VerificationMismatchError(ValueError):
    """The folder holds verdicts made with other settings, another model or other
    images under the same indices."""


def run_verification(out: str | Path, model: nn.Module, images: torch.Tensor,
                     labels: torch.Tensor, indices: list[int], *, budget: float | None = 60.0,
                     max_boxes: int | None = None, tolerance: float | None = None,
                     exact: bool = False, deterministic: bool = False, screen: bool = True,
                     search: bool = True,
                     device: str = "cpu", info: dict | None = None,
                     progress: ProgressReporter | bool | None = None,
                     interrupts: Interrupts | None = None,
                     log: Callable[[str], None] | None = None, workers: int = 1,
                     ray_address: str | None = None,
                     model_factory: Callable[[], nn.Module] | None = None,
                     worker_device: str | None = None) -> list[dict]:
    """Verify ``images`` one by one into ``out``, resuming what an earlier run left.

    Args:
        out: the verification folder.
        model: the model (images in [0, 1] → scores), with bound rules for its operations.
        images: float ``[N, C, H, W]`` in [0, 1], each classified as its label.
        labels: long ``[N]``.
        indices: the images' dataset indices (``-1`` for a file).
        budget: seconds per image (``None``: none).
        max_boxes: boxes per image (``None``: none).
        tolerance: the margin a bound must exceed (``None``: derived per image).
        exact: decide every position (the exact ground truth of where one pixel of any
            color fools the model) instead of stopping at the first witness.
        deterministic: bound calls sized independently of timing (bit-identical
            verdicts on one machine when no ``budget`` cuts them).
        screen: bound each position's whole color cube with intervals first where the
            model has interval rules (:class:`~pixelprior.search.Verifier`'s ``screen``:
            ``True`` is its ``None``); ``False``: zonotopes alone.
        search: the verifier's local search for witnesses at the positions its bounds
            leave open (:class:`~pixelprior.search.Verifier`'s ``search``).
        device: where the model runs.
        info: what the verdicts are made with (model spec, weights, ...), recorded.
        progress: told the progress (``None``/``False``: nothing is told).
        interrupts: signals end the run between images, never inside a write.
        log: told notes.
        workers: Ray workers verifying images side by side (``1``: this process). Each
            takes one CPU and one torch thread (or one GPU with ``device`` cuda), so a
            time ``budget`` buys each image less work than one process on every core
            does; ``max_boxes`` or ``deterministic`` keep verdicts comparable. Rows are
            written as images finish (a resume matches them by their pixels).
        ray_address: the Ray cluster to join (``None``: a local one for this call).
        model_factory: a picklable callable that returns ``model`` in a worker's
            process (default: ``model`` itself is sent).
        worker_device: where Ray workers run: ``auto`` (one GPU each when the cluster
            has GPUs, else one CPU), ``cpu`` or ``cuda`` (default: ``device``'s kind).

    Returns:
        Every row of the folder, in the order written.

    Raises:
        OutputLocationError: the folder holds other files and no verification.
        VerificationMismatchError: the folder holds verdicts made with other settings,
            another model, or other pixels under one of these indices.
        BoundUnsupportedError: the model has an operation without a bound rule.
        WorkerMismatchError: a Ray worker runs other code than this process (before
            anything is written).
    """
    out = Path(out)
    check_verification_folder(out)
    check_writable_dir(out)
    settings = {**(info or {}), "budget": budget, "max_boxes": max_boxes,
                "tolerance": tolerance, "exact": exact, "deterministic": deterministic,
                "screen": screen, "float32_proof": True, "search": search,
                "verifier": REVISION,
                "tolerance_unit": _tolerance_unit(device, workers, worker_device),
                "model_fingerprint": model_fingerprint(model, (info or {}).get("model"))}
    verifier = Verifier(model, budget=budget, max_boxes=max_boxes, tolerance=tolerance,
                        deterministic=deterministic, screen=None if screen else False,
                        search=search)
    keys = pixel_keys(images)
    # Ray workers on "auto" take a GPU each where the cluster has GPUs, which this machine
    # cannot tell: their unit is checked on each answer instead (the first one of a new
    # folder records it)
    unit_known = not (workers > 1 and (worker_device or device) == "auto")
    with RunLock(out):
        rows = _earlier_rows(out, settings, unit_known, log or (lambda _: None))
        check_same_pixels(out, [(row["image_index"], row["image_key"]) for row in rows],
                          keys, indices, VerificationMismatchError)
        check_same_labels(out, [(row["image_key"], row["label"]) for row in rows], keys,
                          [int(label) for label in labels], indices,
                          VerificationMismatchError)
        done = {row["image_key"] for row in rows}
        todo = _first_of_each(keys, [int(label) for label in labels], done,
                              log or (lambda _: None))
        if rows and log is not None and todo:
            log(f"note: {out} holds the answers of {len(rows)} image(s); verifying the "
                f"{len(todo)} left")
        pool = _worker_pool(verifier, len(todo), workers, ray_address, device, worker_device,
                            model_factory or _Shipped(model), log or (lambda _: None),
                            interrupts)
        with pool if pool is not None else nullcontext():  # its workers checked first
            write_json_atomic(out / SETTINGS_FILE, settings)
            write_environment(out, device, log or (lambda _: None))
            guard = interrupts.critical if interrupts is not None else nullcontext
            given = set(keys)
            fooled = sum(row["fooled"] for row in rows if row["image_key"] in given)
            with reporting(as_reporter(progress), "verify", len(given),
                           len(given) - len(todo), fooled, what="fooled") as bar:
                answers = _answers(verifier, images, labels, todo, exact, device, pool)
                with closing(answers):
                    for n, answer in answers:
                        row = verification_row(answer, indices[n], keys[n], int(labels[n]))
                        with guard():
                            _check_unit(out, settings, answer.unit, bool(rows))
                            if exact:
                                row["positions_file"] = _save_positions(
                                    out, answer, keys[n], images.shape[-2:])
                            append_rows(out / ROWS_FILE, [row])
                            rows.append(row)  # the summary counts what the rows hold
                            write_json_atomic(out / "summary.json",
                                              verification_summary(rows))
                        bar.advance(1, int(answer.fooled))
            write_json_atomic(out / "summary.json", verification_summary(rows))
    return rows


def _check_unit(out: Path, settings: dict, unit: float | None, written: bool) -> None:
    """Refuse an answer made with another unit roundoff than the folder's verdicts (a
    device whose derived tolerance and float32 proof differ), before its row is written;
    the first answer of a new folder records its own (Ray workers on ``auto``)."""
    recorded = settings.get("tolerance_unit")
    if unit is None or unit == recorded or (recorded is None and written):
        return  # (a folder from before the unit was recorded says none)
    if written:
        raise VerificationMismatchError(
            f"{out} holds verdicts made with tolerance_unit = {recorded!r}, but this run "
            f"verifies with {unit!r} (another device: CUDA's TF32 or the CPU); resume on "
            "the device the folder was made on, or choose another output folder")
    settings["tolerance_unit"] = unit
    write_json_atomic(out / SETTINGS_FILE, settings)


class _Shipped:
    """A model factory that returns the model it was made with (sent to Ray workers by
    pickling)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __call__(self) -> nn.Module:
        return self.model


def _worker_pool(verifier: Verifier, count: int, workers: int, ray_address: str | None,
                 device: str, worker_device: str | None,
                 model_factory: Callable[[], nn.Module], log: Callable[[str], None],
                 interrupts: Interrupts | None) -> ActorPool | None:
    """The Ray workers that verify ``count`` images (``None``: this process does),
    each with a verifier made as ``verifier`` is, on ``worker_device`` (default:
    ``device``'s kind; ``auto`` lets the cluster choose)."""
    if count == 0 or workers <= 1 or (count <= 1 and worker_device is None):
        return None
    from .distributed import verify_pool

    settings = {"budget": verifier.budget, "max_boxes": verifier.max_boxes,
                "tolerance": verifier.tolerance, "deterministic": verifier.deterministic,
                "screen": verifier.screen_mode, "search": verifier.search}
    if worker_device is None:
        worker_device = "cuda" if device.startswith("cuda") else "cpu"
    return verify_pool(model_factory, settings, workers, ray_address, worker_device, log,
                       interrupts, count)


def _answers(verifier: Verifier, images: torch.Tensor, labels: torch.Tensor,
             todo: list[int], exact: bool, device: str, pool: ActorPool | None
             ) -> Iterator[tuple[int, Verification]]:
    """``(n, answer)`` of each image to verify: here, one after another, or on the
    pool's Ray workers as they finish (each written as it arrives: an interrupt loses
    none)."""
    if pool is None:  # here, on ``device``
        for n in todo:
            yield n, verifier.verify(images[n:n + 1].to(device), labels[n:n + 1].to(device),
                                     stop_at_first=not exact)[0]
        return
    jobs = [(n, images[n:n + 1].cpu(), labels[n:n + 1].cpu(), not exact) for n in todo]
    yield from pool.map("verify", jobs)


def verification_row(answer: Verification, index: int, key: str, label: int) -> dict:
    """One image's row: the verdict and what it took.

    Args:
        answer: the verifier's answer.
        index: the image's dataset index (``-1`` for a file).
        key: the image's pixel key.
        label: its label.

    Returns:
        A JSON-ready dict.
    """
    witness = answer.witness
    statuses = answer.positions.status
    return {
        "image_index": index, "image_key": key, "label": label,
        "decided_by": answer.decided_by, "verified": answer.verified,
        "fooled": answer.fooled,
        "witness_x": witness[0] if witness else None,
        "witness_y": witness[1] if witness else None,
        "witness_color": witness[2] if witness else None,
        "verified_volume": answer.verified_volume,
        "lowest_bound": _finite(answer.lowest_bound),
        "positions_robust": statuses.count("robust"),
        "positions_vulnerable": statuses.count("vulnerable"),
        "positions_unknown": statuses.count("unknown"),
        "boxes": answer.boxes, "queries": answer.queries, "seconds": answer.seconds,
        "tolerance": answer.tolerance, "tolerance_max": answer.tolerance_max,
        "float32_proved": answer.float32_proved,
        "positions_searched": answer.searched, "search_witnesses": answer.search_witnesses,
        "finished": time.time(),
        "version": package_version(),
    }


def verification_summary(rows: list[dict]) -> dict:
    """The counts and times of a folder's rows.

    Args:
        rows: the rows.

    Returns:
        Images, verified, fooled and unknown counts, the images verified with their
        float32 error proved at every position, the verified share of the threat space
        (``mean_verified_volume``: the mean over every image, fooled ones too, whose
        share is of the boxes proved before their witness;
        ``mean_verified_volume_not_fooled``: over the images verified or unknown, the
        figure the report's per-mode column gives), and the median and largest seconds
        per image.
    """
    seconds = [row["seconds"] for row in rows]
    not_fooled = [row["verified_volume"] for row in rows if not row["fooled"]]
    return {
        "images": len(rows),
        "verified": sum(row["verified"] for row in rows),
        "fooled": sum(row["fooled"] for row in rows),
        "unknown": sum(row["decided_by"] == "unknown" for row in rows),
        # verified with the float32 error proved at every position (rows from before it
        # was recorded count as not proved)
        "verified_float32_proved": sum(verified_in_float32(row) for row in rows),
        "mean_verified_volume": (float(np.mean([row["verified_volume"] for row in rows]))
                                 if rows else None),
        "mean_verified_volume_not_fooled": (float(np.mean(not_fooled)) if not_fooled
                                            else None),
        "median_seconds": float(np.median(seconds)) if rows else None,
        "max_seconds": max(seconds) if rows else None,
    }


def verified_in_float32(row: dict) -> bool:
    """Whether a row's image is verified with its float32 error proved at every position
    (:attr:`~pixelprior.search.verify.Verification.verified_in_float32`; rows from before
    it was recorded: not proved).

    Args:
        row: one image's row.

    Returns:
        ``True`` when both hold.
    """
    positions = (row["positions_robust"] + row["positions_vulnerable"]
                 + row["positions_unknown"])
    return bool(row["verified"]) and row.get("float32_proved") == positions


def load_positions(path: str | Path) -> dict[str, np.ndarray]:
    """One image's per-position verdicts written by an ``exact`` run.

    Args:
        path: ``positions/IMAGE.npz``.

    Returns:
        ``status`` (int8 ``[H, W]``: 0 robust, 1 vulnerable, 2 unknown; see
        :data:`STATUS_CODES`), ``verified_volume`` and ``lowest_bound`` (float64
        ``[H, W]``), ``witness`` (float ``[H, W, C]``, ``nan`` where none).
    """
    with np.load(path) as saved:
        return {name: saved[name] for name in saved.files}


def exact_ground_truth(folder: str | Path) -> SusceptibilityMaps:
    """The per-position verdicts of an ``exact`` verification folder as the ground truth
    map evaluation reads: ``vulnerable`` where a color of the cube fools the model (a
    witness the model confirmed), ``unknown`` where the budget ran out first (left out of
    the metrics), every other position proved robust over every color.

    The result's ``levels`` is 0 (every color, not a grid); ``min_margin`` is -1 / 0 / 1
    for vulnerable / unknown / robust (the verifier proves verdicts, not margins, so the
    oracle map ranks the verdicts themselves); ``best_colour`` is the witness (``nan``
    where none); ``min_true_probability`` is ``nan``.

    Args:
        folder: a folder of ``pixelprior verify --exact`` (or ``susceptibility --exact``).

    Returns:
        The ground truth, images in the folder's order.

    Raises:
        FileNotFoundError: no verification in ``folder``.
        ValueError: the folder's verdicts are not exact (made without ``--exact``), or a
            positions file is missing or unreadable.
    """
    folder = Path(folder)
    if not (folder / ROWS_FILE).is_file():
        raise FileNotFoundError(f"{folder} holds no {ROWS_FILE}; make it with `pixelprior "
                                f"verify ... --exact --out {folder}`")
    try:
        info = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{folder}/{SETTINGS_FILE} is missing or unreadable ({exc}); what "
                         "the verdicts were made with is unknown") from None
    if not info.get("exact"):
        raise ValueError(f"{folder} holds per-image verdicts only (made without --exact); "
                         "map evaluation needs every position's: run `pixelprior verify "
                         "... --exact` into another folder")
    rows = checked_rows(folder / ROWS_FILE)
    if not rows:
        raise ValueError(f"{folder} holds no answered image yet")
    statuses, witnesses = [], []
    for row in rows:
        try:
            saved = load_positions(folder / row["positions_file"])
        except (KeyError, OSError, ValueError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{folder}: the positions of image {row['image_index']} are "
                             f"missing or unreadable ({exc}); run the same `pixelprior "
                             "verify --exact` command again into a new folder") from None
        statuses.append(saved["status"])
        witnesses.append(saved["witness"].astype(np.float32))
    status = np.stack(statuses)
    margin = np.select([status == STATUS_CODES["vulnerable"], status == STATUS_CODES["unknown"]],
                       [-1.0, 0.0], 1.0).astype(np.float32)
    return SusceptibilityMaps(
        np.array([row["image_key"] for row in rows]),
        np.array([row["image_index"] for row in rows], dtype=np.int64),
        np.array([row["label"] for row in rows], dtype=np.int64),
        np.full(status.shape, np.nan, dtype=np.float32), margin,
        status == STATUS_CODES["vulnerable"], np.stack(witnesses), 0, str(folder / ROWS_FILE),
        info, status == STATUS_CODES["unknown"])


def check_verification_folder(out: Path | str) -> None:
    """Refuse a folder that holds other files and no verification.

    Args:
        out: the verification folder.

    Raises:
        OutputLocationError: other files, and no ``verification.jsonl``.
    """
    check_own_folder(out, ROWS_FILE, OWN_FILES, "verification")


def _earlier_rows(out: Path, settings: dict, unit_known: bool = True,
                  log: Callable[[str], None] = lambda _: None) -> list[dict]:
    """The rows an earlier run left in ``out``, after checking it used these settings.

    Where the unit roundoff is not ``unit_known`` here (Ray workers on ``auto``), the
    folder's is kept in ``settings``, and each answer is checked against it
    (:func:`_check_unit`). A folder made with a set tolerance before its unit was
    recorded says none; so does the resume.

    ``screen``, ``float32_proof`` and ``search`` from before they were recorded are not
    known (they came in later, on by default): they are compared with nothing and taken
    out of ``settings``, so that the folder keeps saying nothing of them rather than what
    this run uses (its rows say per image: ``float32_proved``, ``positions_searched``).
    A folder from before the ``verifier`` revision was recorded is resumed by this
    revision alone, with a note (its rows may be of revision 1: each row's ``version``
    names its commit), and marked so (:func:`_resumed_unrecorded`)."""
    if not (out / ROWS_FILE).is_file():
        return []
    try:
        earlier = json.loads((out / SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise VerificationMismatchError(
            f"{out} holds verdicts but no readable {SETTINGS_FILE}: what they were made "
            "with is unknown; choose another output folder") from None
    for name in VERDICT_SETTINGS:
        if name == "tolerance_unit" and (earlier.get(name) is None or not unit_known):
            # a folder from before it was recorded (those ran on the CPU), or from before
            # it was recorded with a set tolerance (on any device)
            settings[name] = earlier.get(name)
            continue
        if name == "verifier" and _unrecorded_revision(earlier.get(name)):
            settings[name] = _resumed_unrecorded(out, earlier.get(name), log)
            continue
        if name in ("screen", "float32_proof", "search") and name not in earlier:
            settings.pop(name, None)
            continue
        if name == "target" and name not in settings:
            continue  # the caller does not say (the Python API without info)
        if name == "model_fingerprint" and isinstance(earlier.get(name), str) and isinstance(
                settings.get(name), str) and same_model(earlier[name], settings[name]):
            continue  # the same model (recorded before a factory's code was, maybe)
        if not same_setting(name, earlier, settings):
            if name == "model_fingerprint" and isinstance(earlier.get(name), str) and (
                    isinstance(settings.get(name), str)
                    and code_changed(earlier[name], settings[name])):
                raise VerificationMismatchError(
                    f"{out} holds verdicts of the model as its factory's code was then: "
                    "the code of the model's .py file changed since (the same weights); "
                    "restore it to resume, or choose another output folder")
            raise VerificationMismatchError(
                f"{out} holds verdicts made with {name} = {earlier.get(name)!r}, not "
                f"{settings.get(name)!r}; give the same settings to resume, or choose "
                "another output folder")
    return checked_rows(out / ROWS_FILE, repair=True)


DECISIONS = ("verified", "fooled", "unknown")  # a Verification's decided_by


def checked_rows(path: Path, repair: bool = False) -> list[dict]:
    """A ``verification.jsonl``'s rows, each checked to agree with itself (a hand edit
    or a damaged file is refused, not counted in no category or two).

    Args:
        path: the file.
        repair: complete a last row cut short by an interrupt (a resume's read).

    Returns:
        The rows.

    Raises:
        CorruptResultsError: a row whose verdict contradicts itself, named by its line.
    """
    rows = read_rows(path, repair=repair, key=("image_key",))
    for line, row in enumerate(rows, 1):
        problem = _verdict_problem(row)
        if problem is not None:
            raise CorruptResultsError(f"{path} line {line}: {problem}; remove the line to "
                                      "verify that image again")
    return rows


def _verdict_problem(row: dict) -> str | None:
    decided = row.get("decided_by")
    if decided not in DECISIONS:
        return f"decided_by {decided!r} is none of {', '.join(DECISIONS)}"
    for flag, meaning in (("fooled", "fooled"), ("verified", "verified")):
        if row.get(flag) is not (decided == meaning):
            return f"{flag} is {row.get(flag)!r} where decided_by is {decided!r}"
    volume = row.get("verified_volume")
    if volume is not None and (not isinstance(volume, (int, float)) or isinstance(
            volume, bool) or not 0 <= volume <= 1 + 1e-9):
        return f"verified_volume must be a share in [0, 1], got {volume!r}"
    return None


def _first_of_each(keys: list[str], labels: list[int], done: set[str],
                   log: Callable[[str], None]) -> list[int]:
    """The images to verify: those the folder does not hold, each picture once (a row
    per picture: two rows of one key would make the folder unreadable); one picture given
    twice under two labels is refused."""
    first: dict[str, int] = {}
    for n, key in enumerate(keys):
        if key in first and labels[first[key]] != labels[n]:
            raise VerificationMismatchError(
                f"images {first[key]} and {n} hold the same pixels under labels "
                f"{labels[first[key]]} and {labels[n]}; a picture has one label")
        first.setdefault(key, n)
    repeated = len(keys) - len(first)
    if repeated:
        log(f"note: {repeated} image(s) repeat an earlier one (identical pixels): each "
            "picture is verified once, with one row")
    return [n for key, n in first.items() if key not in done]


def _unrecorded_revision(recorded: object) -> bool:
    """A folder from before the verifier's revision was recorded (none), or one such
    folder that a run has resumed since (:func:`_resumed_unrecorded`'s mark)."""
    return recorded is None or (isinstance(recorded, str)
                                and recorded.startswith(UNRECORDED_PREFIX))


def _resumed_unrecorded(out: Path, recorded: str | None, log: Callable[[str], None]) -> str:
    """The ``verifier`` a folder from before it was recorded is resumed with: a mark that
    names this revision, so that another revision refuses it later (a note says what
    is mixed)."""
    mark = f"{UNRECORDED_PREFIX}{REVISION}"
    if recorded is not None and recorded != mark:
        raise VerificationMismatchError(
            f"{out} holds verdicts of unrecorded verifier revisions resumed with {recorded!r}"
            f", not revision {REVISION}; choose another output folder")
    log(f"note: {out} does not record the verifier revision of its first rows (made before "
        f"it was recorded: rows of commits before d554b39 decide fewer positions; each "
        f"row's version names its commit); this run adds rows of revision {REVISION} and "
        "the folder is now kept to it: choose another output folder to keep them apart")
    return mark


def _tolerance_unit(device: str, workers: int, worker_device: str | None) -> float:
    """The unit roundoff of where the images are verified (as :func:`_answers` sends
    them; ``auto`` workers: a guess, CUDA where this machine has it, checked on each
    answer): a derived tolerance assumes it, and the float32 proof (on the CPU) raises a
    set tolerance where it needs more."""
    where = device
    if workers > 1 and worker_device is not None:
        where = worker_device
        if worker_device == "auto":
            where = "cuda" if torch.cuda.is_available() else "cpu"
    return rounding_unit(where)


def _save_positions(out: Path, answer: Verification, key: str, size: torch.Size) -> str:
    """Write one image's per-position verdicts; their path relative to ``out``."""
    height, width = size
    verdicts = answer.positions
    status = np.array([STATUS_CODES[s] for s in verdicts.status], dtype=np.int8)
    name = f"{POSITIONS_DIR}/{key}.npz"
    (out / POSITIONS_DIR).mkdir(exist_ok=True)
    save_npz_atomic(out / name, status=status.reshape(height, width),
                    verified_volume=verdicts.verified_volume.cpu().numpy().reshape(
                        height, width),
                    lowest_bound=verdicts.lowest_bound.cpu().numpy().reshape(height, width),
                    witness=verdicts.witness.cpu().numpy().reshape(height, width, -1))
    return name


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value
