"""Command-line interface: ``pixelprior attack|explain|reproduce|report|susceptibility|...``.

Every user error ends in one line saying what is wrong and what to do, with exit code 2
for usage errors (options, config files, requests that make no sense) and 1 for runtime
failures (missing data or weights, a busy run folder, I/O); ``--debug`` shows the
traceback instead. SIGINT and SIGTERM end a run between rows with a line saying how much
was kept (exit 130 / 143).
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

console = Console()
err_console = Console(stderr=True, emoji=False)  # ':abc:' in a message stays text
_STATE = {"debug": False}

ENGINE_HELP = ("How candidates are scored: auto (incremental where the model allows it), "
               "incremental, full (PyTorch passes) or onnxruntime (full passes with ONNX "
               "Runtime on the CPU; pip install 'pixelprior[onnx]').")
DEVICE_HELP = "auto (CUDA when present) | cpu | cuda | cuda:N"


# --------------------------------------------------------------------------- errors
class UsageProblem(ValueError):
    """A request the command cannot carry out as given (exit 2)."""


def _usage_errors() -> tuple[type, ...]:
    from .config import ConfigError, ConfigMismatchError
    from .experiment import SelectionError
    from .rundir import OutputLocationError

    return (UsageProblem, ConfigError, ConfigMismatchError, SelectionError,
            OutputLocationError)


def _runtime_errors() -> tuple[type, ...]:
    from .data import DataError
    from .models import WeightsError
    from .rundir import CorruptResultsError, RunLockedError
    from .scoring import ModelOutputError, ScorerMismatchError

    return (DataError, WeightsError, RunLockedError, CorruptResultsError, ModelOutputError,
            ScorerMismatchError, OSError, ImportError)


def _from_pixelprior(exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc`` is pixelprior's own code (a message written
    for users) rather than a library's or Python's (an internal error)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and "/pixelprior/" in frames[-1].filename.replace("\\", "/")


def _message(exc: BaseException) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(text).split()) or type(exc).__name__


class _Commands(TyperGroup):
    """Runs a command and turns its exceptions into one line and an exit code."""

    def invoke(self, ctx):
        from .rundir import Interrupted

        try:
            return super().invoke(ctx)
        except Interrupted as exc:
            raise typer.Exit(_report_error(exc)) from None
        except Exception as exc:  # noqa: BLE001 - every error gets a line and a code
            if type(exc).__module__.split(".")[0] in ("click", "typer"):
                raise  # usage errors of the parser itself, typer.Exit, Abort
            if _STATE["debug"]:
                raise
            raise typer.Exit(_report_error(exc)) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None


def _report_error(exc: BaseException) -> int:
    """Print one line for ``exc``; return the exit code."""
    from .rundir import Interrupted

    if isinstance(exc, Interrupted):
        err_console.print(f"[yellow]interrupted[/yellow] ({exc.args[0]}): {exc.kept}"
                          if hasattr(exc, "kept") else f"interrupted ({exc.args[0]})",
                          soft_wrap=True)
        return exc.exit_code
    if isinstance(exc, _usage_errors()):
        code = 2
    elif isinstance(exc, _runtime_errors()):
        code = 1
    elif isinstance(exc, (ValueError, TypeError, KeyError)) and _from_pixelprior(exc):
        code = 2
    else:
        err_console.print(f"[red]error:[/red] internal error ({type(exc).__name__}: "
                          f"{_message(exc)}); rerun with --debug for the traceback and "
                          "report it", soft_wrap=True, markup=True, highlight=False)
        return 1
    err_console.print(f"[red]error:[/red] {_escape(_message(exc))}", soft_wrap=True,
                      highlight=False)
    return code


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _fail(message: str) -> None:
    raise UsageProblem(message)


def _version(value: bool) -> None:
    if value:
        from . import __version__

        console.print(f"pixelprior {__version__}")
        raise typer.Exit()


app = typer.Typer(cls=_Commands, add_completion=False, no_args_is_help=True,
                  rich_markup_mode=None,  # help is plain text: "pixelprior[onnx]" shows as is
                  help="Interpretability-guided one-pixel attacks (Kumar et al. 2019).")
train_app = typer.Typer(no_args_is_help=True, help="Train models.")
eval_app = typer.Typer(no_args_is_help=True, help="Evaluate models.")
reproduce_app = typer.Typer(no_args_is_help=True, help="Reproduce the paper's experiments.")
data_app = typer.Typer(no_args_is_help=True, help="Fetch or make datasets.")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(reproduce_app, name="reproduce")
app.add_typer(data_app, name="data")


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors."),
         version: bool = typer.Option(False, "--version", callback=_version,
                                      is_eager=True, help="Print the version and exit.")
         ) -> None:
    """Interpretability-guided one-pixel attacks (Kumar et al. 2019)."""
    _STATE["debug"] = debug


def _model_help() -> str:
    from .models import MODELS

    return f"Registered model: {', '.join(sorted(MODELS))}."


def _check_out(out: Path) -> Path:
    from .rundir import check_writable_dir

    check_writable_dir(out)
    return out


def _device(name: str) -> str:
    from .config import device_problem, resolve_device

    if problem := device_problem(name):
        _fail(problem)
    return resolve_device(name)


# --------------------------------------------------------------------------- train/eval
@train_app.command("cifar10")
def train_cifar10_cmd(
    epochs: int = typer.Option(30, help="Training epochs."),
    batch_size: int = typer.Option(256, help="Batch size."),
    lr: float = typer.Option(0.2, help="Peak learning rate (one-cycle)."),
    seed: int = typer.Option(0, help="Random seed."),
    out: Path = typer.Option(Path("checkpoints/cifar10"), help="Checkpoint/weights folder."),
    data: Path | None = typer.Option(None, help="cifar10-jpeg.tar.xz (default: "
                                     "$PIXELPRIOR_DATA or the cache)."),
    limit: int | None = typer.Option(None, help="Train on this many images (smoke tests)."),
    threads: int = typer.Option(0, help="Torch CPU threads (0: default)."),
) -> None:
    """Train the CIFAR-10 SqueezeNet (resumes from OUT/checkpoint.pt)."""
    from .train import TrainConfig, train_cifar10

    _check_out(out)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                         out_dir=str(out), data=str(data) if data else None, limit=limit,
                         threads=threads)
    card = train_cifar10(config, log=console.print,
                         command="pixelprior " + " ".join(sys.argv[1:]))
    console.print(f"weights: {out / 'squeezenet1_1-cifar10.pt'}  test accuracy: "
                  f"{card['test_accuracy']:.4f}")


@eval_app.command("cifar10")
def eval_cifar10_cmd(
    model: str = typer.Option("squeezenet1_1-cifar10", help=_model_help()),
    weights: Path | None = typer.Option(None, help="Weights file (default: bundled)."),
    data: Path | None = typer.Option(None, help="Folder with cifar-10-batches-py."),
    source: str = typer.Option("full", help="full (the exact test set) | sample (the "
                               "bundled first 100 test images)."),
) -> None:
    """Top-1 accuracy on the exact CIFAR-10 test images (all rows present)."""
    from .data import load_cifar10
    from .models import load_model
    from .train import evaluate

    if source not in ("full", "sample"):
        _fail(f"--source must be full or sample, got {source!r}")
    net = load_model(model, weights)
    dataset = load_cifar10(source, data, download=source == "full")
    accuracy = evaluate(net, dataset)
    console.print(f"{model}: top-1 {accuracy:.4f} on {len(dataset)} exact CIFAR-10 test "
                  f"images ({dataset.source})")


# --------------------------------------------------------------------------- one image
def _load_image(path: Path, size: int, resize: bool):
    """A user's image file fitted to the model, saying what was done to it."""
    from .data import DataError, fit_image, read_image_file

    try:
        image = read_image_file(path)
    except DataError as exc:  # the file the user named: a usage error
        raise UsageProblem(str(exc)) from None
    for note in image.notes:
        console.print(f"note: {path.name}: {note}")
    tensor, fitted = fit_image(image, size, resize)
    if fitted is not None:
        console.print(f"note: {path.name} resized from {fitted.original[0]}×"
                      f"{fitted.original[1]} to the model's {size}×{size} (bilinear); "
                      "pixel coordinates are given in both frames")
    return tensor, fitted, image


def _write_image(tensor, path: Path) -> None:
    import numpy as np
    from PIL import Image

    array = (tensor.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    tmp = path.with_name(path.name + ".tmp.png")
    Image.fromarray(np.ascontiguousarray(array)).save(tmp)
    tmp.replace(path)


def _label_of(value: str | None, names: tuple[str, ...], what: str) -> int | None:
    if value is None:
        return None
    if value.isdigit():
        index = int(value)
    elif value in names:
        index = names.index(value)
    else:
        shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
        _fail(f"unknown {what} class {value!r}; use an index 0..{len(names) - 1} or a name "
              f"({shown})")
    if not 0 <= index < len(names):
        _fail(f"{what} class {index} out of range 0..{len(names) - 1}")
    return index


def _predict(net, image, device: str) -> int:
    import torch

    with torch.inference_mode():
        return int(net(image.to(device)).argmax())


@app.command()
def attack(
    image_file: Path = typer.Argument(..., help="Image to attack (PNG, JPEG, ...: any mode "
                                      "PIL reads)."),
    model: str = typer.Option("squeezenet1_1-cifar10", help=_model_help()),
    weights: Path | None = typer.Option(None, help="Weights file."),
    label: str | None = typer.Option(None, help="True class, index or name (default: the "
                                     "model's prediction)."),
    target: str | None = typer.Option(None, help="Target class (a targeted attack)."),
    constrained: bool = typer.Option(False, help="Start in the susceptible set S (the "
                                     "paper's constrained mode)."),
    tau: float | None = typer.Option(None, help="Threshold of S (with --constrained; "
                                     "default 0.5)."),
    mode: str | None = typer.Option(None, help="Any experiment mode instead: e.g. "
                                    "weighted, scan, scan:smoothgrad, scan:occlusion."),
    oracle: Path | None = typer.Option(None, help="Folder of a `pixelprior susceptibility` "
                                       "scan of this image, for --mode oracle / scan:oracle."),
    popsize: int | None = typer.Option(None, help="DE population [400]."),
    maxiter: int | None = typer.Option(None, help="Most DE generations [100]."),
    strategy: str | None = typer.Option(None, help="DE strategy: rand1bin (the paper) or "
                                        "best1bin (Su et al.'s code), ... [rand1bin]."),
    pixels: int = typer.Option(1, help="Pixels changed."),
    seed: int = typer.Option(0, help="Seed of the attack."),
    engine: str = typer.Option("auto", help=ENGINE_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    no_resize: bool = typer.Option(False, "--no-resize", help="Refuse an image whose size "
                                   "differs from the model's input instead of resizing it."),
    out: Path = typer.Option(Path("attack-out"), help="Output folder."),
) -> None:
    """Attack one image; write the adversarial PNG and a JSON result."""
    import torch

    from .config import ExperimentConfig, parse_mode
    from .models import load_model, model_spec

    if tau is not None and not constrained and mode not in ("constrained", "random_set"):
        _fail("--tau sets the threshold of the susceptible set: use it with --constrained")
    if constrained and mode is not None and mode != "constrained":
        _fail(f"--constrained and --mode {mode} ask for two modes; give one")
    chosen = mode or ("constrained" if constrained else "unconstrained")
    search = {"--popsize": popsize, "--maxiter": maxiter, "--strategy": strategy}
    if parse_mode(chosen)[0] == "scan" and any(v is not None for v in search.values()):
        given = ", ".join(k for k, v in search.items() if v is not None)
        _fail(f"{given} set the differential evolution; mode {chosen} scans instead")
    device = _device(device)
    config = ExperimentConfig.build(overrides=dict(
        modes=[chosen], popsize=popsize, maxiter=maxiter, strategy=strategy, pixels=pixels,
        tau=tau, engine=engine, device=device, model=model,
        weights=str(weights) if weights else None, oracle=str(oracle) if oracle else None))
    _check_out(out)
    net = load_model(model, weights, device=device)
    image, fitted, _ = _load_image(image_file, model_spec(model).input_size, not no_resize)
    names = net.class_names
    predicted = _predict(net, image, device)
    true = _label_of(label, names, "true") if label is not None else predicted
    goal = _label_of(target, names, "target")
    if predicted != true:
        _fail(f"the model already classifies this image as {names[predicted]!r}, not "
              f"{names[true]!r}: there is nothing to attack")
    if goal is not None and goal == true:
        _fail(f"the target {names[goal]!r} is the image's own class: a targeted attack needs "
              "another class")
    runner = config.attack(chosen, net, seed, batch_invariant=False,
                           targeted=goal is not None)
    output = runner(image.to(device), torch.tensor([true]),
                    torch.tensor([goal]) if goal is not None else None)
    result = output.results[0]
    where = [_frames(p, fitted) for p in result.pixels]
    row = result.to_row() | {
        "image": str(image_file), "model": model, "mode": chosen,
        "true_name": names[true], "adversarial_name": names[result.adversarial_label],
        "target_name": names[goal] if goal is not None else None,
        "pixels_in_file": where if fitted is not None else None,
        "resized_from": list(fitted.original) if fitted is not None else None,
        "device": device, "engine": runner.scorer(image.to(device)).name}
    out.mkdir(parents=True, exist_ok=True)
    _write_image(output.adversarial[0], out / f"{image_file.stem}-adversarial.png")
    from .rundir import write_json_atomic

    write_json_atomic(out / f"{image_file.stem}-result.json", row)
    _print_attack(result, names, true, goal, fitted, out)


def _frames(pixel, fitted) -> dict:
    x0, y0, x1, y1 = fitted.to_original(pixel.x, pixel.y) if fitted else (
        pixel.x, pixel.y, pixel.x, pixel.y)
    return {"x": pixel.x, "y": pixel.y, "file_box": [x0, y0, x1, y1]}


def _print_attack(result, names, true, goal, fitted, out: Path) -> None:
    spent = (f"{result.positions_scanned} positions" if result.generations is None
             else f"{result.generations} generations")
    where = ", ".join(f"({p.x}, {p.y})" for p in result.pixels)
    if fitted is not None:
        boxes = [fitted.to_original(p.x, p.y) for p in result.pixels]
        where += " in the model's input; " + ", ".join(
            f"x {b[0]}..{b[2]}, y {b[1]}..{b[3]}" for b in boxes) + " in the file"
    goal_text = f" (target {names[goal]})" if goal is not None else ""
    if result.success:
        console.print(f"[green]success[/green]: {names[true]} → "
                      f"{names[result.adversarial_label]}{goal_text} by changing {where}, "
                      f"after {spent}, {result.queries} queries ({result.seconds:.2f} s); "
                      f"written to {out}")
    else:
        console.print(f"[yellow]failed[/yellow]: {names[true]} stays "
                      f"{names[result.adversarial_label]}{goal_text} after {spent}, "
                      f"{result.queries} queries; best try {where} (true-class probability "
                      f"{result.true_probability:.3f}); written to {out}")


@app.command()
def explain(
    image_file: Path = typer.Argument(..., help="Image file."),
    model: str = typer.Option("squeezenet1_1-cifar10", help=_model_help()),
    weights: Path | None = typer.Option(None, help="Weights file."),
    label: str | None = typer.Option(None, help="Class to explain (default: predicted)."),
    method: str = typer.Option("smoothgrad", help="smoothgrad | gradient | "
                               "integrated_gradients | gradcam | occlusion"),
    tau: float = typer.Option(0.5, help="Threshold of S."),
    no_resize: bool = typer.Option(False, "--no-resize", help="Refuse an image whose size "
                                   "differs from the model's input."),
    out: Path = typer.Option(Path("explain-out"), help="Output folder."),
) -> None:
    """Write the sensitivity map (PNG + .npy) and the susceptible set S of an image."""
    import numpy as np
    import torch

    from .models import load_model, model_spec
    from .prior import check_tau
    from .sensitivity import make_sensitivity

    check_tau(tau)
    _check_out(out)
    net = load_model(model, weights)
    sensitivity = make_sensitivity(method, net)
    image, _, _ = _load_image(image_file, model_spec(model).input_size, not no_resize)
    true = (_label_of(label, net.class_names, "explained") if label is not None
            else _predict(net, image, "cpu"))
    smap = sensitivity(image, torch.tensor([true]))[0]
    susceptible = smap > tau
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / f"{image_file.stem}-{method}.npy", smap.numpy())
    _write_image(smap[None].expand(3, -1, -1), out / f"{image_file.stem}-{method}.png")
    _write_image(susceptible[None].float().expand(3, -1, -1),
                 out / f"{image_file.stem}-susceptible.png")
    console.print(f"{method} map for class {net.class_names[true]}: |S| = "
                  f"{int(susceptible.sum())} of {susceptible.numel()} pixels (τ = {tau}); "
                  f"written to {out}")


# --------------------------------------------------------------------------- runs
def _print_report(directory: Path) -> None:
    from .report import load_rows, per_seed_table, write_report

    stats = write_report(directory)
    frame, _ = load_rows(directory)
    table = Table(title=f"{directory} — per seed and mode")
    for column in ("seed", "mode", "images", "success", "total s", "mean s", "gen (all)",
                   "gen (succ.)", "queries"):
        table.add_column(column, justify="right")
    for _, r in per_seed_table(frame).iterrows():
        table.add_row(str(r["seed"]), r["mode"], str(int(r["images"])),
                      f"{r['success_rate']:.0%}", f"{r['total_s']:.1f}", f"{r['mean_s']:.3f}",
                      _num(r["mean_generations_all"]), _num(r["mean_generations_success"]),
                      f"{r['mean_queries']:.0f}")
    console.print(table)
    paired = stats.get("paired")
    if paired:
        ratio, low, high = paired["generation_ratio_both"]
        console.print(f"paired, both succeed ({paired['both_success']} of {paired['pairs']}): "
                      f"generations {paired['a']}/{paired['b']} = {_num(ratio)} "
                      f"[{_num(low)}, {_num(high)}] (images resampled); McNemar p = "
                      f"{_num(paired['mcnemar_p'], 3)}")
    console.print(f"report: {directory / 'report.md'}")


def _num(value, digits: int = 2) -> str:
    import math

    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else (
        f"{value:.{digits}f}")


@app.command()
def report(directory: Path = typer.Argument(..., help="Run directory.")) -> None:
    """Tables (Markdown, CSV), statistics, exports (CSV, Parquet) and figures of a run."""
    if not (directory / "config.json").is_file():
        _fail(f"{directory} is not a run directory (no config.json); give the --out of a "
              "`pixelprior reproduce` run")
    _print_report(directory)


def _seeds(value: str | None) -> list[int] | None:
    """``5`` → seeds 0..4; ``0,2,4`` → those seeds."""
    if value is None:
        return None
    try:
        if "," in value:
            return [int(v) for v in value.split(",") if v.strip()]
        return list(range(int(value)))
    except ValueError:
        _fail(f"--seeds takes a count (5) or a list (0,2,4), got {value!r}")
    return None


def _run(config_file: Path | None, overrides: dict, base: dict, force: bool,
         no_report: bool, dataset: str) -> None:
    """Build the config (defaults < command base < file < options given), run, report."""
    from .config import ExperimentConfig, read_config_file
    from .experiment import ExperimentRunner
    from .rundir import Interrupted, Interrupts

    if config_file is not None:
        in_file = read_config_file(config_file).get("dataset", dataset)
        if in_file != dataset:
            _fail(f"{config_file} is a {in_file} config; use `pixelprior reproduce {in_file}`")
    config = ExperimentConfig.build(config_file, overrides, base)
    runner = ExperimentRunner(config, force=force, log=console.print)
    with Interrupts() as interrupts:
        try:
            runner.run(interrupts=interrupts)
        except Interrupted as exc:
            exc.kept = (f"{runner.kept} of {runner.total} attacks kept; run the same "
                        "command to resume")
            raise
    if not no_report:
        _print_report(Path(config.out))


ORACLE_HELP = ("Folder of a `pixelprior susceptibility` scan of these images, for the "
               "oracle modes and the vulnerable selection.")
CONFIG_HELP = ("TOML/JSON config: any ExperimentConfig field. Options given on the command "
               "line override it; options not given never do.")


@reproduce_app.command("cifar10")
def reproduce_cifar10(
    quick: bool = typer.Option(False, help="10 bundled images, 1 seed (a few minutes on 2 "
                               "cores)."),
    config_file: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
    images: int | None = typer.Option(None, help="Images to attack [100]."),
    seeds: str | None = typer.Option(None, help="Seeds: a count (5 → 0..4) or a list "
                                     "(0,2,4) [5]."),
    modes: str | None = typer.Option(None, help="Comma-separated modes [unconstrained,"
                                     "constrained]; also weighted, topk, random_set, oracle,"
                                     " scan, scan:ORDER."),
    strategy: str | None = typer.Option(None, help="DE strategy [rand1bin]."),
    tau: float | None = typer.Option(None, help="Threshold of S [0.5]."),
    selection: str | None = typer.Option(None, help="first_correct | random_correct | first "
                                         "| random | vulnerable / robust (the images the "
                                         "--oracle scan fools / does not) [first_correct]."),
    oracle: Path | None = typer.Option(None, help=ORACLE_HELP),
    source: str | None = typer.Option(None, help="full (the exact test set; needs it, or "
                                      "downloads it) | sample (the bundled first 100) [full]."),
    data: Path | None = typer.Option(None, help="Folder with cifar-10-batches-py "
                                     "[$PIXELPRIOR_DATA, then the cache]."),
    device: str | None = typer.Option(None, help=DEVICE_HELP + " [auto]."),
    batch_images: int | None = typer.Option(None, help="Images attacked together [10 on "
                                            "the CPU, all on CUDA]."),
    max_batch: int | None = typer.Option(None, help="Rows per scoring call [by device]."),
    engine: str | None = typer.Option(None, help=ENGINE_HELP),
    workers: int | None = typer.Option(None, help="Ray workers (pip install "
                                       "'pixelprior[ray]') [1: this process]."),
    ray_address: str | None = typer.Option(None, help="Join this Ray cluster [start a "
                                           "local one]."),
    out: Path | None = typer.Option(None, help="Run directory [runs/cifar10, "
                                    "runs/cifar10-quick]."),
    force: bool = typer.Option(False, help="Move old results of another config aside "
                               "(kept beside the new run)."),
    no_report: bool = typer.Option(False, help="Skip the report."),
) -> None:
    """Table 1: unconstrained vs constrained one-pixel attacks on CIFAR-10 (resumable)."""
    base = {"out": "runs/cifar10-quick" if quick else "runs/cifar10"}
    quick_preset = {"images": 10, "seeds": [0], "source": "sample"} if quick else {}
    given = {"images": images, "seeds": _seeds(seeds),
             "modes": modes.split(",") if modes else None, "strategy": strategy, "tau": tau,
             "selection": selection, "oracle": str(oracle) if oracle else None,
             "source": source, "data": str(data) if data else None, "device": device,
             "batch_images": batch_images, "max_batch": max_batch, "engine": engine,
             "workers": workers, "ray_address": ray_address, "out": str(out) if out else None}
    _run(config_file, {**quick_preset, **{k: v for k, v in given.items() if v is not None}},
         base, force, no_report, "cifar10")


@reproduce_app.command("nips17")
def reproduce_nips17(
    data: Path | None = typer.Option(None, help="DEV set folder: dev_dataset.csv + images/ "
                                     "(required, here or in --config)."),
    model: str | None = typer.Option(None, help="squeezenet1_1 | squeezenet1_0 "
                                     "[squeezenet1_1]."),
    weights: Path | None = typer.Option(None, help="Weights file [cache, then download]."),
    config_file: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
    images: int | None = typer.Option(None, help="Images chosen at random, recorded [500]."),
    seeds: str | None = typer.Option(None, help="Seeds: a count or a list [5]."),
    modes: str | None = typer.Option(None, help="Comma-separated modes."),
    selection_seed: int | None = typer.Option(None, help="Seed of the random selection [0]."),
    oracle: Path | None = typer.Option(None, help=ORACLE_HELP),
    resize_inside: bool | None = typer.Option(None, "--resize-inside/--no-resize-inside",
                                              help="Attack the 299x299 image and resize "
                                              "inside the model [no]."),
    max_batch: int | None = typer.Option(None, help="Rows per scoring call [by device]."),
    device: str | None = typer.Option(None, help=DEVICE_HELP + " [auto]."),
    batch_images: int | None = typer.Option(None, help="Images attacked together [4 on "
                                            "the CPU, all on CUDA]."),
    engine: str | None = typer.Option(None, help=ENGINE_HELP),
    workers: int | None = typer.Option(None, help="Ray workers [1]."),
    ray_address: str | None = typer.Option(None, help="Join this Ray cluster."),
    out: Path | None = typer.Option(None, help="Run directory [runs/nips17]."),
    force: bool = typer.Option(False, help="Move old results of another config aside."),
    no_report: bool = typer.Option(False, help="Skip the report."),
) -> None:
    """Table 2: unconstrained vs constrained on NIPS 2017 DEV images (ImageNet SqueezeNet)."""

    base = {"dataset": "nips17", "model": "squeezenet1_1", "images": 500,
            "selection": "random_correct", "out": "runs/nips17",
            # a scan of every 224x224 position would cost 1.35 M queries per image: scan
            # modes cover the top 1,024 positions of their order (recorded in config.json)
            "scan_positions": 1024}
    given = {"data": str(data) if data else None, "model": model,
             "weights": str(weights) if weights else None, "images": images,
             "seeds": _seeds(seeds), "modes": modes.split(",") if modes else None,
             "selection_seed": selection_seed, "resize_inside": resize_inside,
             "oracle": str(oracle) if oracle else None,
             "max_batch": max_batch, "device": device, "batch_images": batch_images,
             "engine": engine, "workers": workers, "ray_address": ray_address,
             "out": str(out) if out else None}
    _run(config_file, {k: v for k, v in given.items() if v is not None}, base, force,
         no_report, "nips17")


# --------------------------------------------------------------------------- scans
@app.command()
def susceptibility(
    target: str = typer.Argument(..., help="'cifar10' (dataset images) or an image file."),
    out: Path = typer.Option(..., help="Output folder: maps.npz, summary.json, PNGs."),
    source: str = typer.Option("full", help="cifar10 images: full (the exact test set) | "
                               "sample (the bundled first 100)."),
    data: Path | None = typer.Option(None, help="Folder with cifar-10-batches-py."),
    images: int = typer.Option(100, help="Correctly classified images to scan."),
    first_index: int = typer.Option(0, help="Start at this test-set index."),
    levels: int = typer.Option(3, help="Colours per channel (3: 27 colours)."),
    corners: bool = typer.Option(False, help="Only the 8 corners of the colour cube "
                                 "(the same as --levels 2)."),
    model: str = typer.Option("squeezenet1_1-cifar10", help=_model_help()),
    weights: Path | None = typer.Option(None, help="Weights file."),
    engine: str = typer.Option("auto", help=ENGINE_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    batch_images: int = typer.Option(10, help="Images scanned together."),
    no_resize: bool = typer.Option(False, "--no-resize", help="Refuse an image file whose "
                                   "size differs from the model's input."),
) -> None:
    """Exhaustive one-pixel scan: every position x every grid colour. Where can one pixel
    fool the model? Writes the oracle map, the vulnerable mask and a summary."""
    import torch

    from .data import to_float
    from .models import load_model, model_spec
    from .rundir import Interrupted, Interrupts
    from .susceptibility import colour_grid, run_scan

    levels = 2 if corners else levels
    colour_grid(levels)
    if images < 1 or batch_images < 1 or first_index < 0:
        _fail("--images and --batch-images must be >= 1, --first-index >= 0")
    if source not in ("full", "sample"):
        _fail(f"--source must be full or sample, got {source!r}")
    device = _device(device)
    _check_out(out)
    net = load_model(model, weights, device=device)
    if target == "cifar10":
        batch, labels, indices, shown = _scan_images(net, source, data, images, first_index,
                                                     device)
    else:
        batch, _, _ = _load_image(Path(target), model_spec(model).input_size, not no_resize)
        labels = torch.tensor([_predict(net, batch, device)])
        indices, shown = [-1], None
    info = {"model": model, "weights": str(weights) if weights else None, "target": target,
            "source": source if target == "cifar10" else None, "engine": engine,
            "device": device}
    with Interrupts() as interrupts:
        try:
            maps = run_scan(out, net, to_float(batch) if batch.dtype == torch.uint8 else batch,
                            labels, indices, levels, engine, batch_images, device, info=info,
                            interrupts=interrupts)
        except Interrupted as exc:
            exc.kept = "the images finished so far are kept; run the same command to resume"
            raise
    from .figures import oracle_figure

    shown = shown if shown is not None else batch
    rows = maps.rows_of(to_float(shown) if shown.dtype == torch.uint8 else shown)
    oracle_figure(out, maps, shown, net.class_names, rows)
    fooled = int(maps.vulnerable[rows].reshape(len(rows), -1).any(1).sum())
    extra = len(maps.labels) - len(rows)
    console.print(f"{fooled} of {len(rows)} images have a one-pixel adversarial on the "
                  f"{levels}-level grid ({levels ** 3} colours × every position); written "
                  f"to {out}" + (f" (which holds {extra} more images from earlier scans)"
                                 if extra else ""))


@app.command("evaluate-maps")
def evaluate_maps_cmd(
    directory: Path = typer.Argument(..., help="A susceptibility folder (maps.npz)."),
    more_methods: list[str] | None = typer.Argument(None, hidden=True),
    methods: str = typer.Option("smoothgrad,gradient,integrated_gradients,gradcam,occlusion,"
                                "random,oracle", help="Maps to score, space or comma "
                                "separated: smoothgrad gradient integrated_gradients gradcam "
                                "occlusion random oracle."),
    tau: float = typer.Option(0.5, help="Threshold of S for the precision."),
    top_k: str = typer.Option("10,50,100", help="k for the lift of the top k positions."),
    score: str = typer.Option("logit", help="Class score: logit | probability | "
                              "log_probability."),
    absolute: str = typer.Option("after", help="SmoothGrad: |.| after averaging (the "
                                 "paper) or before."),
    normalization: str = typer.Option("minmax", help="minmax | percentile."),
    n_samples: int = typer.Option(50, help="SmoothGrad noisy copies (n)."),
    noise_level: float = typer.Option(0.15, help="SmoothGrad σ (fraction of the range)."),
    data: Path | None = typer.Option(None, help="Folder with cifar-10-batches-py."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    out: Path | None = typer.Option(None, help="Output folder [the scan's folder]."),
) -> None:
    """Score sensitivity maps against an exhaustive scan: ROC AUC, precision of S, lift of
    the top k, Spearman vs the oracle map, queries of a scan ranked by each map."""
    from .mapeval import run_map_evaluation

    chosen = [m for part in [methods, *(more_methods or [])] for m in part.split(",") if m]
    if not chosen:
        _fail("--methods names no method; give one or more of smoothgrad, gradient, "
              "integrated_gradients, gradcam, occlusion, random, oracle")
    try:
        ks = tuple(int(k) for k in top_k.split(","))
    except ValueError:
        _fail(f"--top-k takes comma-separated integers, got {top_k!r}")
    if min(ks) < 1:
        _fail(f"--top-k takes positive integers (positions), got {top_k!r}")
    if not (directory / "maps.npz").is_file():
        _fail(f"{directory} holds no maps.npz; make it with `pixelprior susceptibility ... "
              f"--out {directory}`")
    settings = {"score": score, "absolute": absolute, "normalization": normalization,
                "n_samples": n_samples, "noise_level": noise_level}
    summary = run_map_evaluation(directory, chosen, out, tau, ks, settings,
                                 str(data) if data else None, _device(device))
    table = Table(title=f"maps vs the oracle of {directory}")
    for column in ("method", "AUC", "precision of S", "base rate", f"lift top-{ks[0]}",
                   "queries to first"):
        table.add_column(column, justify="right")
    for s in summary:
        table.add_row(s["method"], _num(s["auc_mean"], 3), _num(s["precision_at_tau"], 3),
                      _num(s["base_rate"], 3), _num(s[f"lift_top{ks[0]}"]),
                      _num(s["mean_queries_to_first"], 0))
    console.print(table)
    console.print(f"written to {out or directory}: map_metrics.csv, map_metrics.md, roc.png, "
                  "maps_compared.png, ranked_scans.png")


def _scan_images(net, source, data, count, first_index, device):
    from .data import load_cifar10
    from .experiment import correctly_classified

    dataset = load_cifar10(source, data, download=source == "full")
    subset = dataset.subset((dataset.official_indices >= first_index).nonzero().flatten())
    pick = correctly_classified(net, subset, count, device)
    if len(pick) < count:
        _fail(f"only {len(pick)} correctly classified images from index {first_index} in "
              f"{subset.source}; lower --images or --first-index")
    return (subset.images[pick], subset.labels[pick], subset.official_indices[pick].tolist(),
            subset.images[pick])


# --------------------------------------------------------------------------- data
@data_app.command("nips17")
def data_nips17(out: Path = typer.Option(..., help="Target folder (published layout)."),
                csv_url: str = typer.Option(None, help="Override the CSV's URL.")) -> None:
    """Download the NIPS 2017 DEV set (CSV + cropped 299x299 PNGs); resumable."""
    from .nips17 import DEV_CSV_SHA256, DEV_CSV_URL, download_nips17

    _check_out(out)
    # the published CSV's checksum applies only to the published URL
    report = download_nips17(out, csv_url or DEV_CSV_URL,
                             csv_sha256=None if csv_url else DEV_CSV_SHA256)
    console.print(f"downloaded {report['downloaded']}, already there {report['existing']}, "
                  f"failed {len(report['failed'])} (listed in {out / 'failed.txt'})")


@data_app.command("standin")
def data_standin(out: Path = typer.Option(..., help="Target folder."),
                 count: int = typer.Option(8, help="Images."),
                 seed: int = typer.Option(0, help="Seed of the random images and weights.")
                 ) -> None:
    """Write a small stand-in of the DEV set and random SqueezeNet 1.1 weights."""
    import torch

    from .models import SqueezeNet
    from .nips17 import make_standin

    _check_out(out)
    torch.manual_seed(seed)
    model = SqueezeNet("1_1").eval()
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "squeezenet1_1-standin.pth")
    make_standin(out, count, seed, label_model=model)
    console.print(f"stand-in DEV set with {count} images and random weights in {out}")


if __name__ == "__main__":  # pragma: no cover
    app()
