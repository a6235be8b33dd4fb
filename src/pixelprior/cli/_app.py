"""Command-line interface: ``pixelprior attack|explain|reproduce|report|susceptibility|...``.

Every user error ends in one line saying what is wrong and what to do, with exit code 2
for usage errors (options, config files, requests that make no sense) and 1 for runtime
failures (missing data or weights, a busy run folder, I/O); ``--debug`` shows the
traceback instead. SIGINT and SIGTERM end a run between rows with a line saying how much
was kept (exit 130 / 143).
"""

from __future__ import annotations

import traceback
from pathlib import Path

import typer
from rich.console import Console
from typer.core import TyperGroup

from .._format import number
from .._io import (
    CorruptResultsError,
    Interrupted,
    OutputLocationError,
    RunLockedError,
    atomic_write,
    check_writable_dir,
)
from ..data import DataError, SizeMismatchError, fit_image, read_image_file
from ..experiment import (
    ConfigError,
    ConfigMismatchError,
    SelectionError,
    device_problem,
    resolve_device,
)
from ..models import REGISTRY as MODELS
from ..models import WeightsError
from ..scoring import SCORERS, ModelOutputError, ScorerMismatchError

console = Console()
err_console = Console(stderr=True, emoji=False)  # ':abc:' in a message stays text
_STATE = {"debug": False}

ENGINE_HELP = ("How candidates are scored: " + "; ".join(
    f"{name} ({SCORERS.entry(name).help})" for name in SCORERS) + ".")
DEVICE_HELP = "auto (CUDA when present) | cpu | cuda | cuda:N"
MODEL_HELP = f"Registered model: {', '.join(sorted(MODELS))}."
ORACLE_HELP = ("Folder of a `pixelprior susceptibility` scan of these images, for the "
               "oracle modes and the vulnerable selection.")
CONFIG_HELP = ("TOML/JSON config: any ExperimentConfig field. Options given on the command "
               "line override it; options not given never do.")


# --------------------------------------------------------------------------- errors
class UsageProblem(ValueError):
    """A request the command cannot carry out as given (exit 2)."""


USAGE_ERRORS = (UsageProblem, ConfigError, ConfigMismatchError, SelectionError,
                OutputLocationError)
RUNTIME_ERRORS = (DataError, WeightsError, RunLockedError, CorruptResultsError,
                  ModelOutputError, ScorerMismatchError, OSError, ImportError)


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
    if isinstance(exc, Interrupted):
        err_console.print(f"[yellow]interrupted[/yellow] ({exc.args[0]}): {exc.kept}"
                          if hasattr(exc, "kept") else f"interrupted ({exc.args[0]})",
                          soft_wrap=True)
        return exc.exit_code
    if isinstance(exc, USAGE_ERRORS):
        code = 2
    elif isinstance(exc, RUNTIME_ERRORS):
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
        from .._version import __version__

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



def check_out(out: Path) -> Path:
    """``--out`` can hold results (checked before any work), or a usage error."""
    try:
        check_writable_dir(out)
    except OutputLocationError as exc:
        raise OutputLocationError(f"--out {exc}") from None
    return out


def device(name: str) -> str:
    """A device name checked (one line for a bad one) and ``auto`` resolved."""
    if problem := device_problem(name):
        _fail(problem)
    return resolve_device(name)


def load_image(path: Path, size: int, resize: bool):
    """A user's image file fitted to the model, saying what was done to it."""
    try:
        image = read_image_file(path)
    except DataError as exc:  # the file the user named: a usage error
        raise UsageProblem(str(exc)) from None
    for note in image.notes:
        console.print(f"note: {path.name}: {note}")
    try:
        tensor, fitted = fit_image(image, size, resize)
    except SizeMismatchError:
        _fail(f"the image is {image.size[0]}×{image.size[1]} and the model takes "
              f"{size}×{size}; drop --no-resize to resize it, or give an image of "
              f"{size}×{size}")
    if fitted is not None:
        console.print(f"note: {path.name} resized from {fitted.original[0]}×"
                      f"{fitted.original[1]} to the model's {size}×{size} (bilinear); "
                      "pixel coordinates are given in both frames")
    return tensor, fitted, image


def write_image(tensor, path: Path) -> None:
    import numpy as np
    from PIL import Image

    array = (tensor.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    with atomic_write(path) as f:
        Image.fromarray(np.ascontiguousarray(array)).save(f, format="PNG")


def label_of(value: str | None, names: tuple[str, ...], what: str) -> int | None:
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


def predict_label(net, image, device: str) -> int:
    import torch

    with torch.inference_mode():
        return int(net(image.to(device)).argmax())


def parse_seeds(value: str | None) -> list[int] | None:
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



def num(value, digits: int = 2) -> str:
    """A number for a terminal table (the report's formatter)."""
    return number(value, digits)
