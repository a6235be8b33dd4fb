"""Command-line interface: ``pixelprior attack|explain|reproduce|report|susceptibility|...``.

Every user error ends in one line saying what is wrong and what to do, with exit code 2
for usage errors (options, config files, requests that make no sense) and 1 for runtime
failures (missing data or weights, a busy run folder, I/O); ``--debug`` shows the
traceback instead. SIGINT and SIGTERM end a run between rows with a line saying how much
was kept (exit 130 / 143).
"""

from __future__ import annotations

import contextlib
import re
import traceback
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.console import Console
from typer.core import TyperGroup

from .._format import number
from .._io import (
    EARLY_MESSAGE,
    CorruptResultsError,
    Interrupted,
    Interrupts,
    OutputLocationError,
    RunLockedError,
    atomic_write,
    check_writable_dir,
    early_signals_raise,
    restore_early_signals,
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
_STATE: dict = {"debug": False, "interrupted": None}
MAX_MESSAGE = 600  # characters of an error line; the rest behind --debug

ENGINE_HELP = ("How candidates are scored: " + "; ".join(
    f"{name} ({SCORERS.entry(name).help})" for name in SCORERS) + ".")
DEVICE_HELP = "auto (CUDA when present) | cpu | cuda | cuda:N"
MODEL_HELP = (f"A registered model ({', '.join(sorted(MODELS))}), a TorchScript (.pt) or "
              "ONNX (.onnx) file, module:callable or file.py:callable (with --weights for "
              "a state dict), or a pickled nn.Module (with --allow-pickle).")
CLASSES_OPTION = typer.Option(None, "--classes", help="Class names of your model: a file "
                              "(one per line, or JSON) or a,b,c.")
MEAN_OPTION = typer.Option(None, "--mean", help="Per-channel mean (0.485,0.456,0.406): the "
                           "model is wrapped to take images in [0, 1] (with --std).")
STD_OPTION = typer.Option(None, "--std", help="Per-channel standard deviation (with --mean).")
INPUT_SIZE_OPTION = typer.Option(None, "--input-size", help="Side of the model's square "
                                 "input, for models that do not declare it.")
PICKLE_OPTION = typer.Option(False, "--allow-pickle", help="Load a pickled nn.Module "
                             "(unpickling runs code from the file).")
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


ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")


def _message(exc: BaseException) -> str:
    """One line of ``exc``'s message: ANSI escape codes removed, whitespace folded, and
    a very long message cut (``--debug`` shows all of it)."""
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, WeightsError):
        text = weights_summary(exc)
    return shorten(" ".join(ANSI.sub("", str(text)).split()) or type(exc).__name__)


def shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to about ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return (f"{text[:limit].rstrip()} … ({len(text) - limit} more characters; --debug "
            "shows the whole message)")


def weights_summary(exc: BaseException) -> str:
    """A one-line account of a :class:`WeightsError`: what the file holds and what to do,
    instead of the loader's pages of torch text."""
    text = ANSI.sub("", str(exc))
    cause = ANSI.sub("", str(exc.__cause__)) if exc.__cause__ is not None else ""
    unfit = re.match(r"(?s)(.*?): weights do not fit (\S+):", text)
    if unfit and "Error(s) in loading state_dict" in cause:
        path, name = unfit.groups()
        counts = []
        for label, pattern in (("missing", r"Missing key\(s\) in state_dict: (.*?)\.\s*(?:\n|"
                                            r"Unexpected|size mismatch|$)"),
                               ("unexpected", r"Unexpected key\(s\) in state_dict: (.*?)\."
                                               r"\s*(?:\n|size mismatch|$)")):
            found = re.search(pattern, cause, re.S)
            if found:
                keys = re.findall(r'"([^"]+)"', found.group(1))
                counts.append(f"{len(keys)} {label} (e.g. {keys[0]})" if keys else "")
        shapes = re.findall(r"size mismatch for ([^:]+):", cause)
        if shapes:
            counts.append(f"{len(shapes)} of another shape (e.g. {shapes[0]})")
        found = ", ".join(c for c in counts if c) or "they differ"
        return (f"{path}: these weights are not for {name}: tensors {found}; pass the "
                f"weights of {name}, or the --model these weights belong to")
    unreadable = re.match(r"(?s)(.*?): not a readable PyTorch weights file", text)
    if unreadable:
        path = unreadable.group(1)
        pickled = re.search(r"Unsupported global: GLOBAL (\S+)", cause)
        if pickled:
            return (f"{path}: holds a pickled Python object ({pickled.group(1)}), not a "
                    "state_dict of tensors; safe loading (weights_only) will not run its "
                    "code. Save model.state_dict() with torch.save and pass that file")
        return (f"{path}: not a PyTorch weights file (torch.load cannot read it: damaged, "
                "or another kind of file); pass a state_dict saved with torch.save")
    return text


class _Commands(TyperGroup):
    """Runs a command and turns its exceptions into one line and an exit code."""

    def invoke(self, ctx):
        early_signals_raise(True)  # from here a signal is this command's to report
        _STATE["interrupted"] = None
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
        except KeyboardInterrupt:  # no handler of ours was installed (an embedding program)
            note = _STATE.get("interrupted")
            err_console.print("interrupted" + (f": {note}" if note and note != BEFORE_RUN
                                               else ""), soft_wrap=True, highlight=False)
            raise typer.Exit(130) from None
        finally:
            restore_early_signals()


BEFORE_RUN = "before the run started"  # on_interrupt(BEFORE_RUN): the early message


def on_interrupt(note: str | None) -> None:
    """What an interrupt of the running command leaves behind, in words: ``None`` (the
    default) says nothing was written; :data:`BEFORE_RUN` says the run had not started
    and nothing was written (a run or scan, until it writes)."""
    _STATE["interrupted"] = note


@contextlib.contextmanager
def finishing(done: str) -> Iterator[None]:
    """The last writes of a command: a signal during them waits until every file is
    written whole, then ends the command saying ``done``."""
    with Interrupts() as interrupts:
        try:
            with interrupts.critical():
                yield
        except Interrupted as exc:
            exc.kept = done
            raise


def _report_error(exc: BaseException) -> int:
    """Print one line for ``exc``; return the exit code."""
    if isinstance(exc, Interrupted):
        kept = getattr(exc, "kept", None) or _STATE.get("interrupted")
        if kept == BEFORE_RUN:
            err_console.print(_escape(EARLY_MESSAGE.format(name=exc.args[0])), soft_wrap=True,
                              highlight=False)
        else:
            err_console.print(f"[yellow]interrupted[/yellow] ({_escape(exc.args[0])}): "
                              f"{_escape(kept or 'nothing was written')}", soft_wrap=True,
                              highlight=False)
        return exc.exit_code
    if isinstance(exc, USAGE_ERRORS):
        code = 2
    elif isinstance(exc, RUNTIME_ERRORS):
        code = 1
    elif isinstance(exc, (ValueError, TypeError, KeyError)) and _from_pixelprior(exc):
        code = 2
    else:
        err_console.print(f"[red]error:[/red] internal error ({type(exc).__name__}: "
                          f"{_escape(_message(exc))}); rerun with --debug for the traceback "
                          "and report it", soft_wrap=True, markup=True, highlight=False)
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


def parse_floats(value: str | None, name: str) -> list[float] | None:
    """``0.5,0.5,0.5`` → floats (a usage error otherwise)."""
    if value is None:
        return None
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        _fail(f"{name} takes comma-separated numbers (0.485,0.456,0.406), got {value!r}")
    return None


def open_model(model: str, weights: Path | None = None, classes: str | None = None,
               mean: str | None = None, std: str | None = None,
               input_size: int | None = None, allow_pickle: bool = False,
               device: str = "cpu"):
    """``(net, input size)`` for a command: a registered model as it always loaded; any
    other spec through :func:`~pixelprior.models.load_model_spec`, its notes printed."""
    from ..models import as_registered, load_model, load_model_spec, model_spec

    if as_registered(model, classes, mean, std, input_size):
        return load_model(model, weights, device=device), model_spec(model).input_size
    loaded = load_model_spec(model, weights=weights, classes=classes,
                             mean=parse_floats(mean, "--mean"), std=parse_floats(std, "--std"),
                             input_size=input_size, allow_pickle=allow_pickle, device=device)
    for note in loaded.notes:
        console.print(f"note: {note}")
    return loaded.model, loaded.input_size


def load_image(path: Path, size, resize: bool, coordinates: bool = False):
    """A user's image file fitted to the model, saying what was done to it.

    Args:
        path: the image file.
        size: the model's input side, ``(height, width)``, or ``None`` (any size).
        resize: resize an image of another size (else refuse it).
        coordinates: the command gives pixel coordinates (said in the resize note).
    """
    try:
        image = read_image_file(path)
    except DataError as exc:  # the file the user named: a usage error
        raise UsageProblem(str(exc)) from None
    frames = _frames_in(path)
    if frames > 1:
        console.print(f"note: {path.name} holds {frames} frames (an animation or a "
                      "multi-page file); only the first frame is used")
    for note in image.notes:
        console.print(f"note: {path.name}: {note}")
    side = f"{size}×{size}" if isinstance(size, int) else (
        f"{size[1]}×{size[0]}" if size else "")
    try:
        tensor, fitted = fit_image(image, size, resize)
    except SizeMismatchError:
        _fail(f"the image is {image.size[0]}×{image.size[1]} and the model takes {side}; "
              f"drop --no-resize to resize it, or give an image of {side}")
    if fitted is not None:
        where = ("pixel coordinates are given in both frames (the model's pixel and the box "
                 "of file pixels it covers)" if coordinates else
                 f"what is written is of the {side} image")
        console.print(f"note: {path.name} resized from {fitted.original[0]}×"
                      f"{fitted.original[1]} to the model's {side} (bilinear); {where}")
    return tensor, fitted, image


def _frames_in(path: Path) -> int:
    """Frames (or pages) of an image file; 1 when it has one or cannot say."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return int(getattr(image, "n_frames", 1) or 1)
    except Exception:  # noqa: BLE001 - read_image_file already read it; no count is no note
        return 1


def check_weights(weights: Path | None) -> None:
    """``--weights`` names a file (a folder, or a path that is not there, is said so)."""
    if weights is None:
        return
    path = Path(weights).expanduser()
    if path.is_dir():
        _fail(f"--weights {weights} is a folder; give the weights file itself (a state_dict "
              "saved with torch.save, e.g. a .pt or .pth file)")
    if not path.exists():
        _fail(f"--weights {weights} does not exist; give the path of a weights file")


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
    """``5`` → seeds 0..4; ``0,2,4`` → those seeds; ``0,`` → seed 0 alone."""
    if value is None:
        return None
    try:
        seeds = [int(v) for v in value.split(",") if v.strip()] if "," in value else None
        count = int(value) if seeds is None else len(seeds)
    except ValueError:
        _fail(f"--seeds takes a count (5) or a list (0,2,4), got {value!r}")
    if seeds is not None:
        if not seeds:
            _fail(f"--seeds {value!r} names no seed; give a count (5) or a list (0,2,4)")
        return seeds
    if count == 0:
        _fail("--seeds 0: a count of 0 seeds; for seed 0 alone write --seeds 0, (a list of "
              "one seed)")
    if count < 0:
        _fail(f"--seeds takes a count (5) or a list (0,2,4) of seeds >= 0, got {value!r}")
    return list(range(count))


def parse_modes(value: str | None) -> list[str] | None:
    """``a,b`` → modes a and b (spaces and empty items dropped); an option given but
    naming no mode is an error, never the default modes."""
    if value is None:
        return None
    modes = [m.strip() for m in value.split(",") if m.strip()]
    if not modes:
        from ..experiment import modes_help

        _fail(f"--modes {value!r} names no mode; give one or more, comma-separated: "
              f"{modes_help()}")
    return modes


def table(title: str, columns: list[str], fold: int = 0):
    """A terminal table that fits 80 columns: short headers never cut, no outer border,
    one space between columns; column ``fold`` (names) folds when it must.

    Args:
        title: the table's title.
        columns: the headers.
        fold: the column of names (left-aligned, folded when too long).
    """
    from rich import box
    from rich.table import Table

    out = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=0,
                title_justify="left")
    for n, column in enumerate(columns):
        out.add_column(column, justify="left" if n == fold else "right",
                       no_wrap=n != fold, min_width=max(len(column), 8 if n == fold else 1),
                       overflow="fold" if n == fold else "ellipsis")
    return out


def print_table(shown) -> None:
    """Print a :func:`table`, at least 80 columns wide (a narrower terminal wraps the
    lines rather than lose columns)."""
    if console.width >= 80:
        console.print(shown)
        return
    wide = Console(file=console.file, width=80, force_terminal=console.is_terminal,
                   color_system=console.color_system, emoji=False)
    wide.print(shown)


def num(value, digits: int = 2) -> str:
    """A number for a terminal table (the report's formatter)."""
    return number(value, digits)
