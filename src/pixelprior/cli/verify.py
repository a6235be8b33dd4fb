"""``pixelprior verify``: prove, per image, that no single pixel of any color changes the
label (or find the pixel that does), with the sound verifier."""

from __future__ import annotations

import math
import tempfile
from functools import partial
from pathlib import Path

import torch
import typer

from .._io import Interrupted, Interrupts
from ..data import dataset_for, to_float
from ..experiment.config import address_problem
from ..experiment.verification import (
    ROWS_FILE,
    check_verification_folder,
    run_verification,
    verification_summary,
    verified_in_float32,
)
from ..scoring.cone.bounds import BoundEngine, OperationSupport
from ..scoring.cone.zonotope import BoundUnsupportedError
from ._app import app, console
from .errors import BEFORE_RUN, fail, on_interrupt
from .options import (
    DEFAULT_MODEL,
    DEVICE_HELP,
    ModelOptions,
    check_out,
    model_options,
    pick_device,
)
from .progress import ProgressBar
from .tables import num, print_table, table
from .targets import recorded_classes, target_count, target_images


@app.command()
@model_options()
def verify(
    target: str = typer.Argument(..., help="'cifar10' (dataset images), an image file, or "
                                 "a data spec: an image folder, an .npz or a CSV of "
                                 "path,label."),
    out: Path | None = typer.Option(None, help="Output folder: verification.jsonl (a row "
                                    "per image), verification.json, summary.json; "
                                    "positions/ with --exact; a run resumes there [none: "
                                    "the answers are printed, nothing is kept]."),
    source: str = typer.Option("full", help="cifar10 images: full (the exact test set) | "
                               "sample (the bundled first 100)."),
    data: Path | None = typer.Option(None, help="Folder with cifar-10-batches-py."),
    images: int | None = typer.Option(None, show_default=False, help="Correctly classified "
                                      "images to verify (of cifar10 or a data spec) [10]."),
    first_index: int = typer.Option(0, help="Start at this test-set index."),
    budget: float = typer.Option(60.0, help="Seconds per image, its corner pass included "
                                 "(the cube's corners at every position, 8 for RGB: a "
                                 "corner that fools is a witness); past it the image is "
                                 "'unknown' (0: no limit)."),
    max_boxes: int | None = typer.Option(None, help="Boxes per image [no limit]."),
    tolerance: float | None = typer.Option(None, help="The margin a bound must exceed "
                                           "[derived per image from float32 rounding]."),
    exact: bool = typer.Option(False, "--exact", help="Decide every position (robust, "
                               "vulnerable or unknown), not only the first witness: the "
                               "exact ground truth of where one pixel fools the model."),
    deterministic: bool = typer.Option(False, "--deterministic", help="Bound calls of "
                                       "fixed size (bit-identical verdicts without a budget)."),
    screen: bool = typer.Option(True, "--screen/--no-screen", help="Bound each position's "
                                "whole color cube with intervals first, where the model's "
                                "operations have interval rules (it proves nothing the "
                                "zonotopes could not, but changes the time each image "
                                "takes; off: zonotopes alone)."),
    search: bool = typer.Option(True, "--search/--no-search", help="Where the bounds "
                                "leave positions open near the end of the budget, search "
                                "them for a witness by gradient steps over the pixel's "
                                "color (the last 10% of --budget; a witness is confirmed "
                                "by the model; off: bounds alone)."),
    model_options: ModelOptions = None,
    device: str = typer.Option("auto", help=DEVICE_HELP),
    no_resize: bool = typer.Option(False, "--no-resize", help="Refuse an image file whose "
                                   "size differs from the model's input."),
    workers: int = typer.Option(1, help="Ray workers verifying images side by side (one "
                                "CPU and one torch thread each, or one GPU); needs "
                                'pip install "pixelprior[ray]".'),
    ray_address: str | None = typer.Option(None, help="A Ray cluster to join [a local "
                                           "one]."),
    check: bool = typer.Option(False, "--check", help="List every operation of the model "
                               "and what the verifier makes of it (bounded, or refused "
                               "and why; the interval screen; float32 error proved or "
                               "estimated), then stop: nothing is verified or written "
                               "(exit 2 where an operation is refused)."),
) -> None:
    """Sound verification over every color of every pixel: 'verified' is a proof that no
    one-pixel change alters the label; 'fooled' comes with a pixel the model confirms;
    'unknown' when the budget runs out.
    \f
    Args:
        target: cifar10, an image file, or a data spec.
        out: the verification folder (resumed when it holds the same settings); ``None``:
            a temporary one, removed after the answers are printed.
        source: CIFAR-10's images: full or sample.
        data: the folder holding cifar-10-batches-py.
        images: correctly classified images verified.
        first_index: the first test-set index.
        budget: seconds per image (0: none).
        max_boxes: boxes per image.
        tolerance: the margin a bound must exceed.
        exact: decide every position.
        deterministic: bound calls of fixed size.
        screen: screen whole color cubes with intervals first.
        search: search the positions left open for witnesses.
        model_options: the model (``--model``, ``--weights``, ``--classes``, ...).
        device: where the model runs.
        no_resize: refuse an image file of another size than the model's input.
        workers: Ray workers.
        ray_address: the Ray cluster to join.
        check: list the model's operations and stop.

    Raises:
        UsageProblem: a bad option or a model the verifier cannot bound (one line, exit 2,
            nothing written).
    """
    on_interrupt(BEFORE_RUN)
    asked = images  # (--check reads one image)
    images = target_count(target, images, first_index, source, data, default=10)
    if check:
        _check_options(images, first_index, budget, max_boxes, tolerance, source)
        unused = [flag for flag, given in (
            ("--out", out is not None), ("--images", asked is not None),
            ("--budget", budget != 60.0),
            ("--max-boxes", max_boxes is not None), ("--tolerance", tolerance is not None),
            ("--exact", exact), ("--deterministic", deterministic),
            ("--no-screen", not screen), ("--no-search", not search),
            ("--workers", workers != 1), ("--ray-address", ray_address is not None))
            if given]
        if unused:  # (nothing is verified: said, not silently dropped)
            console.print(f"note: --check lists the model's operations and verifies "
                          f"nothing: {', '.join(unused)} not used", markup=False)
        check_operations(target, source, data, first_index, model_options, device,
                         no_resize)
        return
    arguments = (source, data, images, first_index, budget, max_boxes, tolerance, exact,
                 deterministic, model_options, device, no_resize, workers, ray_address)
    if exact and out is None:
        fail("--exact writes every position's verdict (positions/): give --out DIR")
    if out is not None:
        verify_into(target, out, *arguments, screen=screen, search=search)
        return
    with tempfile.TemporaryDirectory(prefix="pixelprior-verify-") as folder:
        verify_into(target, Path(folder) / "verification", *arguments, kept=False,
                    screen=screen, search=search)


def verify_into(target: str, out: Path, source: str, data: Path | None, images: int,
                first_index: int, budget: float, max_boxes: int | None,
                tolerance: float | None, exact: bool, deterministic: bool,
                model_options: ModelOptions, device: str, no_resize: bool, workers: int = 1,
                ray_address: str | None = None, kept: bool = True,
                screen: bool = True, search: bool = True) -> None:
    """The command's run (``susceptibility --exact`` runs it too); arguments as the
    command's options (``kept``: ``out`` is the user's folder, not a temporary one)."""
    _check_options(images, first_index, budget, max_boxes, tolerance, source)
    if workers < 1:
        fail(f"--workers must be >= 1, got {workers}")
    if workers > 1:
        try:
            import ray  # noqa: F401
        except ImportError:
            fail('--workers > 1 runs on Ray: pip install "pixelprior[ray]"')
    if ray_address is not None and workers < 2:
        fail("--ray-address is used only with --workers 2 or more")
    if problem := address_problem(ray_address):
        fail(problem)
    requested, device = device, pick_device(device)
    model_options.check()
    check_out(out)
    check_verification_folder(out)
    opened = model_options.open(device)
    net = opened.net
    if opened.input_size is not None:  # else: checked on the first image, once loaded
        _check_bounds(net, _blank(opened.input_size, opened.channels, device),
                      model_options.model)
    batch, labels, indices, _, names = target_images(opened, target, source, data, images,
                                                 first_index, model_options.classes,
                                                 device, no_resize)
    floats = to_float(batch) if batch.dtype == torch.uint8 else batch
    _check_bounds(net, floats[:1].to(device), model_options.model)
    _note_float_error(net, floats[:1].to(device), model_options.model)
    if exact and budget:
        console.print("note: --exact under a time budget: which positions are left unknown "
                      "depends on this machine's pace; for a ground truth that reruns bit "
                      "for bit, give --budget 0 --max-boxes N --deterministic")
    weights = model_options.weights
    info = {"model": model_options.model,
            "weights": str(Path(weights).resolve()) if weights else None,
            "target": target, "source": source if target == "cifar10" else None,
            "dataset": None if target == "cifar10" or names is not None else (
                dataset_for(target)[0]),
            "classes": recorded_classes(model_options.model or DEFAULT_MODEL, target,
                                        model_options.classes), "mean": model_options.mean,
            "std": model_options.std, "input_size": model_options.input_size,
            "image_size": list(floats.shape[-2:]),  # compared with --input-size on a resume
            "allow_pickle": model_options.allow_pickle, "device": device}
    if workers > 1:  # where the Ray workers run (auto: the cluster's GPUs, if any)
        info["worker_device"] = requested  # pick_device resolved only "auto"
    with Interrupts() as interrupts:
        try:
            rows = run_verification(out, net, floats, labels, indices,
                                    budget=budget or None, max_boxes=max_boxes,
                                    tolerance=tolerance, exact=exact,
                                    deterministic=deterministic, screen=screen,
                                    search=search,
                                    device=device, info=info,
                                    progress=ProgressBar(), interrupts=interrupts,
                                    log=console.print, workers=workers,
                                    ray_address=ray_address,
                                    model_factory=partial(_open_net, model_options),
                                    worker_device=info.get("worker_device"))
        except Interrupted as exc:
            exc.kept = ("the images finished so far are kept; run the same command to "
                        "resume" if kept else "nothing is kept (no --out)")
            raise
    asked = set(indices)  # the folder may hold earlier answers of other images
    _print_rows([row for row in rows if row["image_index"] in asked], out if kept else None,
                exact, names[0] if names else None)
    others = sum(row["image_index"] not in asked for row in rows)
    if others:
        console.print(f"({out} also holds the answers of {others} other image(s) from "
                      f"earlier runs; its summary.json counts all {len(rows)})")


def check_operations(target: str, source: str, data: Path | None, first_index: int,
                     model_options: ModelOptions, device: str, no_resize: bool) -> None:
    """``verify --check``: the model's operations as the verifier's copy runs them, on
    the first image of ``target`` (or a blank of the model's declared input size), one
    row per kind; each refusal on a line of its own."""
    device = pick_device(device)
    model_options.check()
    opened = model_options.open(device)
    if opened.input_size is not None:
        image = _blank(opened.input_size, opened.channels, device)
    else:
        batch = target_images(opened, target, source, data, 1, first_index,
                              model_options.classes, device, no_resize)[0]
        image = (to_float(batch) if batch.dtype == torch.uint8 else batch)[:1].to(device)
    model = model_options.model or DEFAULT_MODEL
    try:
        operations = BoundEngine(opened.net, shape=tuple(image.shape[1:])).operations(image)
    except BoundUnsupportedError as exc:
        fail(f"{model}: the verifier cannot bound this model: {exc}")
    _print_operations(operations, model, tuple(image.shape[1:]))


def _operation_kind(support: OperationSupport) -> str:
    """A row's name: the table's operation, with what a rewrite wrote it from."""
    name = support.operation or support.node
    written = support.node.partition(" of what the verifier writes ")[2]
    return f"{name} (writing {written.removesuffix(' as')})" if written else name


def _print_operations(operations: list[OperationSupport], model: str,
                      shape: tuple[int, ...]) -> None:
    """The check's table, its refusals and its one-line verdict (exit 2 on a refusal)."""
    counts: dict[tuple, int] = {}
    for support in operations:
        if support.refused is None:
            key = (_operation_kind(support), support.screened, support.float32)
            counts[key] = counts.get(key, 0) + 1
    shown = table(f"{model}: the operations the verifier bounds, on images of shape "
                  f"{list(shape)}", ["operation", "nodes", "interval screen", "float32 error"])
    for (kind, screened, float32), count in counts.items():
        shown.add_row(kind, str(count), "yes" if screened else "no", float32 or "")
    print_table(shown)
    refused = [support for support in operations if support.refused is not None]
    for support in refused:
        console.print(f"refused: {support.refused}", markup=False)
    estimated = sum(support.float32 == "estimated" for support in operations)
    screen = ("the interval screen runs" if all(s.screened for s in operations)
              else "no interval screen (an operation without an interval rule)")
    if refused:
        fail(f"{model}: the verifier cannot bound {len(refused)} of the model's "
             f"{len(operations)} operations (listed above)")
    console.print(f"{model}: the verifier bounds all {len(operations)} operations; {screen}; "
                  + (f"{estimated} compute their float32 error otherwise than the bounds' "
                     "copy (estimated, not proved, through them)" if estimated
                     else "the float32 error is proved through each where intervals are "
                     "tight"), markup=False)


def _open_net(options: ModelOptions) -> torch.nn.Module:
    """The command's model, opened on the CPU in a Ray worker's process."""
    return options.open("cpu").net


def _check_options(images: int, first_index: int, budget: float, max_boxes: int | None,
                   tolerance: float | None, source: str) -> None:
    if images < 1 or first_index < 0:
        fail("--images must be >= 1 and --first-index >= 0")
    if not 0 <= budget < math.inf:
        fail(f"--budget must be a finite number of seconds >= 0 (0: no limit), got {budget}")
    if max_boxes is not None and max_boxes < 1:
        fail(f"--max-boxes must be >= 1, got {max_boxes}")
    if tolerance is not None and not tolerance >= 0:
        fail(f"--tolerance must be >= 0, got {tolerance}")
    if source not in ("full", "sample"):
        fail(f"--source must be full or sample, got {source!r}")


def _blank(size: int | tuple[int, int], channels: int, device: str) -> torch.Tensor:
    """A gray image of the model's input size (the bound plan needs only its shape)."""
    height, width = (size, size) if isinstance(size, int) else size
    return torch.full((1, channels, height, width), 0.5, device=device)


def _share(volume: float | None) -> str:
    """A verified share to 4 places, never shown as whole when it is not (0.9999995 reads
    ``>0.9999``, not ``1.0000``)."""
    shown = num(volume, 4)
    return ">0.9999" if volume is not None and volume < 1 and shown == "1.0000" else shown


def _check_bounds(net, image: torch.Tensor, model: str) -> None:
    """Refuse, before anything is written, a model with an operation without a bound
    rule (named)."""
    try:
        BoundEngine(net, shape=tuple(image.shape[1:])).plan(image)
    except BoundUnsupportedError as exc:
        fail(f"{model}: the verifier cannot bound this model: {exc}")


def _note_float_error(net, image: torch.Tensor, model: str) -> None:
    """Say so, before the work, when the bounds' proved float64 rounding exceeds the
    model's margins at a single color (the first image's center, its own color): then no
    box can be proved, and every answer is fooled or unknown."""
    engine = BoundEngine(net, shape=tuple(image.shape[1:]))
    height, width = image.shape[-2:]
    with torch.inference_mode():
        label = net(image).argmax(1)
    color = image[0, :, height // 2, width // 2][None].double()
    at = torch.tensor([height // 2], device=image.device), torch.tensor(
        [width // 2], device=image.device)
    bounds = engine.margins(engine.prepare(image), torch.zeros(1, dtype=torch.long,
                                                               device=image.device),
                            *at, color, color, label)
    finite = torch.isfinite(bounds.lower)
    if not bool(finite.any()):
        return
    rounding = float(bounds.rounding[finite].min())
    if rounding >= float(bounds.computed[finite].max()):
        console.print(f"note: {model}: the bounds' proved float64 rounding error (at least "
                      f"{rounding:.3g} in a margin) exceeds every margin even at a single "
                      "color, so no box can be proved; each image will be fooled or "
                      "unknown (the proof scales each rounding by the size of the values "
                      "and carries it through the absolute values of the weights after "
                      "it, with signs only where those errors stay below the values: "
                      "huge values that cancel, or a deep network whose |weights| "
                      "multiply)")


def _float32(row: dict) -> str:
    """What a verified row says of the model's float32 evaluation: ``proved`` (at every
    position), ``estimated`` (a first-order estimate somewhere), or nothing."""
    if not row["verified"]:
        return ""
    return "proved" if verified_in_float32(row) else "estimated"


def _print_rows(rows: list[dict], out: Path | None, exact: bool, file_name: str | None
                ) -> None:
    """The verdicts as a table (an image file's row named by the file), and the summary
    (``out``: where the rows were written; ``None``: nowhere kept)."""
    shown = table("verification" + (f" in {out}" if out else ""),
                  ["image", "verdict", "witness (x, y)", "verified share", "float32",
                   "boxes", "seconds"])
    for row in rows:
        witness = (f"({row['witness_x']}, {row['witness_y']})"
                   if row["witness_x"] is not None else "")
        image = file_name if file_name and row["image_index"] < 0 else str(row["image_index"])
        shown.add_row(image, row["decided_by"], witness,
                      _share(row["verified_volume"]), _float32(row), f"{row['boxes']:,}",
                      num(row["seconds"], 1))
    print_table(shown)
    summary = verification_summary(rows)
    proved = summary["verified_float32_proved"]
    float32 = (f" ({proved} of them with the float32 evaluation proved too)"
               if summary["verified"] else "")
    console.print(f"{summary['verified']} of {summary['images']} images verified (no pixel "
                  f"of any color changes the label){float32}, {summary['fooled']} fooled, "
                  f"{summary['unknown']} unknown (the budget spent, or boxes of the "
                  "smallest side left unproved); "
                  + (f"written to {out / ROWS_FILE}" + (" and positions/" if exact else "")
                     if out else "not kept (give --out DIR to keep the rows and resume)"))
