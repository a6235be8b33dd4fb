"""Commands on scans: ``susceptibility`` (exhaustive one-pixel scans) and
``evaluate-maps`` (maps scored against a scan)."""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from .._io import Interrupted, Interrupts
from ..data import dataset_for, to_float
from ..experiment import run_scan
from ..experiment.scans import check_scan_folder, cost_lines
from ..maps import METHODS, REDUCTIONS
from ..models import GradientsUnavailableError
from ..scoring import ENGINES
from ..search import colour_grid
from ._app import app, console
from .errors import BEFORE_RUN, fail, on_interrupt
from .fast_answers import check_fast_folder, fast_answers
from .options import (
    DEFAULT_MODEL,
    DEVICE_HELP,
    ENGINE_HELP,
    AllowPickle,
    ModelOptions,
    check_out,
    model_options,
    pick_device,
)
from .progress import ProgressBar
from .tables import num, print_table, table
from .targets import is_image_file, recorded_classes, target_count, target_images
from .verify import verify_into

MAX_LEVELS = 256  # levels per color channel: an 8-bit channel has no more


@app.command()
@model_options()
def susceptibility(
    target: str = typer.Argument(..., help="'cifar10' (dataset images), an image file, or "
                                 "a data spec: an image folder, an .npz or a CSV of "
                                 "path,label."),
    out: Path = typer.Option(..., help="Output folder: maps.npz, summary.json, PNGs."),
    source: str = typer.Option("full", help="cifar10 images: full (the exact test set) | "
                               "sample (the bundled first 100)."),
    data: Path | None = typer.Option(None, help="Folder with cifar-10-batches-py."),
    images: int | None = typer.Option(None, show_default=False, help="Correctly "
                                      "classified images to scan (of cifar10 or a data "
                                      "spec) [100]."),
    first_index: int = typer.Option(0, help="Start at this test-set index."),
    levels: int = typer.Option(3, help="Colours per channel (3: 27 colours)."),
    corners: bool = typer.Option(False, help="Only the 8 corners of the colour cube "
                                 "(the same as --levels 2)."),
    fast: bool = typer.Option(False, "--fast", help="The fast answer instead of the full "
                              "map: the corners in the gradient's order, per image the first "
                              "success or a certificate on the corner grid (fast.json)."),
    exact: bool = typer.Option(False, "--exact", help="Every color, not a grid: the sound "
                               "verifier decides each position (vulnerable with a witness, "
                               "robust by proof, or unknown past --budget); the same as "
                               "`pixelprior verify --exact`."),
    budget: float | None = typer.Option(None, help="With --exact: seconds per image [60] "
                                        "(0: no limit)."),
    max_boxes: int | None = typer.Option(None, help="With --exact: boxes per image [no "
                                         "limit] (with --budget 0 and --deterministic: "
                                         "verdicts that rerun bit for bit)."),
    deterministic: bool = typer.Option(False, "--deterministic", help="With --exact: bound "
                                       "calls of fixed size (bit-identical verdicts "
                                       "without a time budget)."),
    screen: bool | None = typer.Option(None, "--screen/--no-screen", help="With --exact: "
                                       "screen each position's color cube with intervals "
                                       "first [on] (as `pixelprior verify`)."),
    search: bool | None = typer.Option(None, "--search/--no-search", help="With --exact: "
                                       "search the positions the bounds leave open for "
                                       "witnesses [on] (as `pixelprior verify`)."),
    model_options: ModelOptions = None,
    engine: str = typer.Option("auto", help=ENGINE_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    batch_images: int = typer.Option(10, help="Images scanned together."),
    no_resize: bool = typer.Option(False, "--no-resize", help="Refuse an image file whose "
                                   "size differs from the model's input."),
) -> None:
    """Exhaustive one-pixel scan: every position x every grid colour. Where can one pixel
    fool the model? Writes the oracle map, the vulnerable mask and a summary.
    \f
    Args:
        target: cifar10, an image file, or a data spec.
        out: the scan's folder (resumed when it holds this scan).
        source: CIFAR-10's images: full or sample.
        data: the folder holding cifar-10-batches-py.
        images: correctly classified images scanned.
        first_index: the first test-set index.
        levels: colours per channel.
        corners: the 8 corners of the colour cube only.
        fast: the fast answer per image instead of the full map.
        exact: the verifier's verdict at every position over every color.
        budget: with ``exact``, seconds per image.
        max_boxes: with ``exact``, boxes per image.
        deterministic: with ``exact``, bound calls sized without timing.
        screen: with ``exact``, the verifier's interval screen (``None``: on).
        search: with ``exact``, the verifier's local search (``None``: on).
        model_options: the model (``--model``, ``--weights``, ``--classes``, ...).
        engine: how candidates are scored.
        device: where the model runs.
        batch_images: images scanned together.
        no_resize: refuse an image file of another size than the model's input.

    Raises:
        UsageProblem: a bad option (one line, exit 2, nothing written).
    """
    on_interrupt(BEFORE_RUN)
    images = target_count(target, images, first_index, source, data, default=100)
    if exact:
        if fast or corners or levels != 3:
            fail("--exact decides every color of the cube; --fast, --levels and --corners "
                 "choose a grid of colors instead")
        if engine != "auto" or batch_images != 10:
            fail("--engine and --batch-images set the grid scan; --exact runs the verifier "
                 "(one image at a time, its own bound engine)")
        verify_into(target, out, source, data, images, first_index,
                    60.0 if budget is None else budget, max_boxes, None, True,
                    deterministic, model_options, device, no_resize,
                    screen=screen is not False, search=search is not False)
        return
    if screen is not None:
        fail("--screen/--no-screen set the verifier's interval screen: they need --exact")
    if search is not None:
        fail("--search/--no-search set the verifier's local search: they need --exact")
    if budget is not None:
        fail("--budget is the verifier's time per image; give it with --exact")
    if max_boxes is not None or deterministic:
        fail("--max-boxes and --deterministic set the verifier: give them with --exact")
    if fast and (corners or levels != 3):
        fail("--fast tries the 8 corners of the colour cube; --levels and --corners "
             "set the grid of the exhaustive scan instead")
    if engine not in ENGINES:
        fail(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if corners and levels not in (2, 3):
        fail(f"--corners is the 2-level grid; --levels {levels} asks for another: give "
             "one of them")
    if levels > MAX_LEVELS:
        fail(f"--levels {levels}: an 8-bit color channel has {MAX_LEVELS} levels; give "
             f"at most {MAX_LEVELS} (3: 27 colours)")
    levels = 2 if corners else levels
    colour_grid(levels)
    if images < 1 or batch_images < 1 or first_index < 0:
        fail("--images and --batch-images must be >= 1, --first-index >= 0")
    if source not in ("full", "sample"):
        fail(f"--source must be full or sample, got {source!r}")
    device = pick_device(device)
    model_options.check()
    check_out(out)
    weights = model_options.weights
    is_file = is_image_file(target)
    info = {"model": model_options.model,
            "weights": str(Path(weights).resolve()) if weights else None,
            "target": target,
            "source": source if target == "cifar10" else None, "engine": engine,
            "device": device, "dataset": None if target == "cifar10" or is_file else (
                dataset_for(target)[0]),
            "classes": recorded_classes(model_options.model or DEFAULT_MODEL, target,
                                        model_options.classes), "mean": model_options.mean,
            "std": model_options.std, "input_size": model_options.input_size,
            "allow_pickle": model_options.allow_pickle}
    if fast:
        check_fast_folder(out, info)
    else:
        check_scan_folder(out)
    opened = model_options.open(device)
    net = opened.net
    batch, labels, indices, shown, names = target_images(
        opened, target, source, data, images, first_index, model_options.classes, device,
        no_resize)
    info["image_size"] = list(batch.shape[-2:])  # compared with --input-size on a resume
    if fast:
        check_fast_folder(out, info)
        fast_answers(out, net, batch, labels, indices, device, engine, batch_images, info)
        return
    positions = batch.shape[-2] * batch.shape[-1]
    for line in cost_lines([(len(labels) * positions * levels ** 3, "scan")],
                           model_options.model, device,
                           f"{len(labels)} image(s) × {positions:,} positions × "
                           f"{levels ** 3:,} colours ({levels} levels per channel)",
                           exact=True, advice="lower --levels (3: 27 colours) or --images"):
        console.print(line)
    with Interrupts() as interrupts:
        try:
            maps = run_scan(out, net, to_float(batch) if batch.dtype == torch.uint8 else batch,
                            labels, indices, levels, engine, batch_images, device, info=info,
                            interrupts=interrupts, progress=ProgressBar(), log=console.print)
        except Interrupted as exc:
            exc.kept = "the images finished so far are kept; run the same command to resume"
            raise
    from ..report.figures import oracle_figure  # matplotlib only where a figure is drawn

    on_interrupt(f"the scan is kept in {out}; the figure is unfinished: run the same command "
                 "to draw it")
    shown = shown if shown is not None else batch
    rows = maps.rows_of(to_float(shown) if shown.dtype == torch.uint8 else shown)
    oracle_figure(out, maps, shown, net.class_names, rows, names=names)
    fooled = int(maps.vulnerable[rows].reshape(len(rows), -1).any(1).sum())
    extra = len(maps.labels) - len(rows)
    console.print(f"{fooled} of {len(rows)} images have a one-pixel adversarial on the "
                  f"{levels}-level grid ({levels ** 3} colours × every position); written "
                  f"to {out}" + (f" (which holds {extra} more images from earlier scans)"
                                 if extra else ""))


# every registered map, uniform noise (the chance line) and the scan's own map
ALL_MAPS = ",".join((*METHODS, "random", "oracle"))


@app.command("evaluate-maps")
def evaluate_maps_cmd(
    directory: Path = typer.Argument(..., help="A susceptibility folder: maps.npz (a scan) "
                                     "or verification.jsonl (exact verdicts, --exact)."),
    more_methods: list[str] | None = typer.Argument(None, hidden=True),
    methods: str | None = typer.Option(None, show_default="all of them", help="Maps to score, "
                                       "space or comma separated: "
                                       f"{ALL_MAPS.replace(',', ' ')}."),
    tau: float = typer.Option(0.5, help="Threshold of S for the precision."),
    top_k: str | None = typer.Option(None, show_default=False,
                                     help="k for the lift of the top k positions [10,50,100:"
                                     " those below an image's positions]."),
    score: str = typer.Option("logit", help="Class score: logit | probability | "
                              "log_probability."),
    absolute: str = typer.Option("after", help="SmoothGrad: |.| after averaging (the "
                                 "paper) or before."),
    normalization: str = typer.Option("minmax", help="minmax | percentile."),
    reduction: str = typer.Option("max_abs", help="Channels to a pixel: max_abs | mean_abs | "
                                  "sum | signed (the sum with its sign: occlusion's drop, "
                                  "not its size)."),
    n_samples: int = typer.Option(50, help="SmoothGrad noisy copies (n)."),
    noise_level: float = typer.Option(0.15, help="SmoothGrad σ (fraction of the range)."),
    gradcam_layer: str | None = typer.Option(None, help="GradCAM's layer, by its module's "
                                             "name (features.12) [the last of features, "
                                             "else the last convolutional stage]."),
    data: Path | None = typer.Option(None, help="Folder with cifar-10-batches-py."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    allow_pickle: AllowPickle = False,
    out: Path | None = typer.Option(None, help="Output folder [the scan's folder]."),
) -> None:
    """Score sensitivity maps against an exhaustive scan, or against the exact verdicts of
    `susceptibility --exact`: ROC AUC, precision of S, lift of the top k, Spearman vs the
    oracle map, queries (positions) of a scan ranked by each map.
    \f
    Args:
        directory: a susceptibility folder.
        more_methods: methods given after the folder (space separated).
        methods: the maps scored.
        tau: the threshold of S.
        top_k: the k of the lift.
        score: the class score maps differentiate.
        absolute: SmoothGrad's absolute value, after or before averaging.
        normalization: minmax or percentile.
        reduction: how a pixel's channels are reduced (max_abs, mean_abs, sum or signed).
        n_samples: SmoothGrad's noisy copies.
        noise_level: SmoothGrad's σ.
        gradcam_layer: GradCAM's layer, by name.
        data: the folder holding cifar-10-batches-py.
        device: where the model runs.
        allow_pickle: the scan's model is a pickled module.
        out: the output folder (the scan's by default).

    Raises:
        UsageProblem: a bad option, or a folder with no scan.
    """
    from ..report.mapeval import run_map_evaluation  # pandas, SciPy, matplotlib

    given = [methods] if methods is not None else []
    parts = [*given, *(more_methods or [])] or [ALL_MAPS]  # after the folder: in place
    chosen = [m for part in parts for m in part.split(",") if m]  # of the default
    if not chosen:
        fail(f"--methods names no method; give one or more of {ALL_MAPS.replace(',', ', ')}")
    ks = None
    if top_k is not None:
        try:
            ks = tuple(int(k) for k in top_k.split(","))
        except ValueError:
            fail(f"--top-k takes comma-separated integers, got {top_k!r}")
        if min(ks) < 1:
            fail(f"--top-k takes positive integers (positions), got {top_k!r}")
    _check_options_read(chosen, {"absolute": (absolute, "after"),
                                 "n_samples": (n_samples, 50),
                                 "noise_level": (noise_level, 0.15)})
    if gradcam_layer is not None and "gradcam" not in chosen:
        fail("--gradcam-layer sets GradCAM's layer, and gradcam is not among the maps "
             "scored; add it to --methods, or drop --gradcam-layer")
    if reduction not in REDUCTIONS:
        fail(f"--reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    map_settings = {"--score": (score, "logit"), "--normalization": (normalization, "minmax"),
                    "--reduction": (reduction, "max_abs")}
    unread = [flag for flag, (value, default) in map_settings.items() if value != default]
    if unread and set(chosen) <= {"oracle", "random"}:
        fail(f"{', '.join(unread)} set(s) the attribution maps, and only "
             f"{', '.join(chosen)} (no attribution) are scored; drop "
             f"{'it' if len(unread) == 1 else 'them'}, or add a map to --methods")
    if not ((directory / "maps.npz").is_file()
            or (directory / "verification.jsonl").is_file()):
        fail(_no_ground_truth(directory))
    if data is not None and not data.is_dir():
        fail(f"--data {data} is no folder (the one holding cifar-10-batches-py, read where "
             "the scan is of CIFAR-10's full test set)")
    settings = {"score": score, "absolute": absolute, "normalization": normalization,
                "reduction": reduction, "n_samples": n_samples, "noise_level": noise_level}
    if gradcam_layer is not None:  # (recorded where set: earlier results keep their settings)
        settings["layer"] = gradcam_layer
    on_interrupt(f"the map evaluation is unfinished (the scan in {directory} is untouched); "
                 "run the same command again")
    try:
        summary = run_map_evaluation(directory, chosen, out, tau, ks, settings,
                                     str(data) if data else None, pick_device(device),
                                     allow_pickle=allow_pickle)
    except GradientsUnavailableError as exc:  # maps asked of the wrong model: usage
        fail(str(exc))
    exact = not (directory / "maps.npz").is_file()
    first = next((int(key.removeprefix("lift_top")) for key in (summary[:1] or [{}])[0]
                  if key.startswith("lift_top")), ks[0] if ks else 10)  # the first lift
    shown = table(f"maps vs the {'exact verdicts' if exact else 'oracle'} of {directory}", [
        "method", "AUC", "precision of S", "base rate", f"lift top-{first}",
        "positions to first" if exact else "queries to first"])
    for s in summary:
        shown.add_row(s["method"], num(s["auc_mean"], 3), num(s["precision_at_tau"], 3),
                      num(s["base_rate"], 3), num(s[f"lift_top{first}"]),
                      num(s["mean_queries_to_first"], 0))
    print_table(shown)
    if summary and all(s["auc_mean"] != s["auc_mean"] for s in summary):  # all NaN
        console.print("note: no image has both vulnerable and robust positions among those "
                      "decided, so no AUC is defined" + (
                          " (the verifier left the others unknown: give it more --budget)"
                          if exact else ""))
    elif any(s["auc_images"] < s["images_with_vulnerable"] for s in summary):
        first = summary[0]
        console.print(f"note: the AUC is over {first['auc_images']} of the "
                      f"{first['images_with_vulnerable']} images with a vulnerable position: "
                      "on the others every position decided is vulnerable (nothing robust "
                      "to rank below)" + (" or the verifier left the rest unknown"
                                          if exact else ""))
    console.print(f"written to {out or directory}: map_metrics.csv, map_metrics.md, roc.png, "
                  "maps_compared.png, ranked_scans.png")


def _no_ground_truth(directory: Path) -> str:
    """Why ``directory`` cannot be scored against, with a command that can make a ground
    truth there: a run folder or one holding other files is no place for a scan
    (``susceptibility`` refuses it), so another folder is named."""
    what = ("is a run folder (`pixelprior run`, `reproduce`), not a scan's: it holds"
            if (directory / "config.json").is_file() else "holds")
    place = (directory if not directory.exists()
             or (directory.is_dir() and not any(directory.iterdir())) else "NEW_FOLDER")
    return (f"{directory} {what} no maps.npz and no verification.jsonl; make a ground "
            f"truth with `pixelprior susceptibility IMAGES --out {place}` (a scan of a "
            "color grid) or `... --exact` (the verifier's verdicts over every color), and "
            "score the maps there")


def _check_options_read(chosen: list[str], options: dict[str, tuple]) -> None:
    """Refuse a map option set away from its default that no map scored reads (the
    methods' registry says which read it).

    Raises:
        UsageProblem: such an option.
    """
    for name, (value, default) in options.items():
        readers = [m for m in METHODS if name in METHODS.entry(m).options]
        if value != default and not set(readers) & set(chosen):
            flag = "--" + name.replace("_", "-")
            fail(f"{flag} is an option of {', '.join(readers)}, none of them among the "
                 f"maps scored ({', '.join(chosen)}); drop it, or add "
                 f"{readers[0]} to --methods")
