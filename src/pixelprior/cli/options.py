"""Options shared by commands, declared once: the seven model options (one
:class:`ModelOptions`, added to a command by :func:`model_options`, and the one place a
command's model is loaded), the differential evolution's options, and checks of
``--out``, ``--weights`` and ``--device`` made before any work.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .._io import OutputLocationError, check_writable_dir
from ..experiment import device_problem, parse_mode, resolve_device
from ..experiment.modes import SEARCH_FIELDS
from ..models import REGISTRY as MODELS
from ..models import model_spec_problem
from ..scoring import SCORERS
from ._app import console
from .errors import fail
from .inputs import check_classes, parse_floats

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL = "squeezenet1_1-cifar10"
ENGINE_HELP = ("How candidates are scored: " + "; ".join(
    f"{name} ({SCORERS.entry(name).help})" for name in SCORERS) + ".")
DEVICE_HELP = "auto (CUDA when present) | cpu | cuda | cuda:N"
MODEL_HELP = (f"A registered model ({', '.join(sorted(MODELS))}), a TorchScript (.pt) or "
              "ONNX (.onnx) file, module:callable or file.py:callable (with --weights for "
              "a state dict), or a pickled nn.Module (with --allow-pickle).")
ORACLE_HELP = ("Folder of a `pixelprior susceptibility` scan of these images, for the "
               "oracle modes and the vulnerable selection.")
CONFIG_HELP = ("TOML/JSON config: any ExperimentConfig field. Options given on the command "
               "line override it; options not given never do.")

# options several commands take, declared once (typing.Annotated aliases)
AllowPickle = Annotated[bool, typer.Option("--allow-pickle", help="Load a pickled "
                                           "nn.Module (unpickling runs code from the file).")]
Popsize = Annotated[int | None, typer.Option(help="Differential evolution: population "
                                             "[400].")]
Maxiter = Annotated[int | None, typer.Option(help="Differential evolution: most "
                                             "generations [100].")]
Strategy = Annotated[str | None, typer.Option(help="Differential evolution: rand1bin (the "
                                              "paper), best1bin (Su et al.'s code), "
                                              "rand2bin, best2bin, currenttobest1bin, "
                                              "randtobest1bin [rand1bin].")]
Report = Annotated[bool, typer.Option("--report/--no-report", help="Write the report "
                                      "(tables, statistics, figures) after the run.")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help=CONFIG_HELP)]


# --------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class OpenedModel:
    """A command's model, ready to query.

    Attributes:
        net: the model: float ``[B, channels, H, W]`` in [0, 1] -> scores ``[B, K]``,
            with ``class_names``.
        input_size: the side or ``(height, width)`` it takes; ``None``: any size.
        channels: the channels it takes (3, or 1 for a grayscale model).
        name: the model spec it was opened from.
    """

    net: torch.nn.Module
    input_size: int | tuple[int, int] | None
    channels: int
    name: str = DEFAULT_MODEL


@dataclass(frozen=True)
class ModelOptions:
    """The seven model options of a command, as given (``--model``, ``--weights``,
    ``--classes``, ``--mean``, ``--std``, ``--input-size``, ``--allow-pickle``).

    Attributes:
        model: the model spec; ``None``: the run's config decides.
        weights: a state dict file.
        classes: class names: a file (one per line, or JSON) or ``a,b,c``.
        mean: per-channel mean, ``0.485,0.456,0.406`` (with ``std``).
        std: per-channel standard deviation (with ``mean``).
        input_size: side of the model's square input, or ``(height, width)``, for models
            that do not declare it (``--input-size 32`` or ``WIDTHxHEIGHT``).
        allow_pickle: load a pickled ``nn.Module`` (runs code from the file).
    """

    model: str | None = DEFAULT_MODEL
    weights: Path | None = None
    classes: str | None = None
    mean: str | None = None
    std: str | None = None
    input_size: int | tuple[int, int] | None = None
    allow_pickle: bool = False

    def check(self) -> None:
        """Check what can be checked before loading: the weights file, the class names,
        the numbers of ``--mean``/``--std``.

        Raises:
            UsageProblem: one of them is wrong (one line saying which and what to do).
        """
        if self.model is not None and (problem := model_spec_problem(self.model)):
            fail(problem)  # as run and attack refuse it: a usage error in every command
        check_weights(self.weights)
        check_classes(self.classes)
        parse_floats(self.mean, "--mean")
        parse_floats(self.std, "--std")

    def config_values(self) -> dict[str, Any]:
        """The options given, as :class:`~pixelprior.experiment.ExperimentConfig` fields.

        Returns:
            Field -> value for every option given (an option not given is left out, so
            it never overrides a config file).
        """
        self.check()
        values = {"model": self.model, "weights": str(self.weights) if self.weights else None,
                  "classes": self.classes, "mean": parse_floats(self.mean, "--mean"),
                  "std": parse_floats(self.std, "--std"), "input_size": self.input_size,
                  "allow_pickle": self.allow_pickle or None}
        return {key: value for key, value in values.items() if value is not None}

    def open(self, device: str = "cpu") -> OpenedModel:
        """Load the model: a registered model as it always loaded; any other spec through
        :func:`~pixelprior.models.load_model_spec`, its notes printed.

        Args:
            device: where the model runs.

        Returns:
            The model, its input size and its channels.

        Raises:
            UsageProblem: a bad option (see :meth:`check`).
            ModelSettingError: options that contradict the model (mean/std for one that
                normalises inside, weights for a file holding its own).
            WeightsError: the model or its weights do not load.
        """
        from ..models import as_registered, load_model, load_model_spec, model_spec

        self.check()
        spec = self.model or DEFAULT_MODEL
        if as_registered(spec, self.classes, self.mean, self.std, self.input_size):
            notes: list[str] = []  # (a checkpoint's weights entry, ...): said as notes
            net = load_model(spec, self.weights, device=device, notes=notes)
            for note in notes:
                console.print(f"note: {note}")
            return OpenedModel(net, model_spec(spec).input_size, 3, spec)
        loaded = load_model_spec(spec, weights=self.weights, classes=self.classes,
                                 mean=parse_floats(self.mean, "--mean"),
                                 std=parse_floats(self.std, "--std"),
                                 input_size=self.input_size, allow_pickle=self.allow_pickle,
                                 device=device)
        for note in loaded.notes:
            console.print(f"note: {note}")
        return OpenedModel(loaded.model, loaded.input_size, loaded.channels, spec)


_MODEL_OPTION_HELP = {
    "weights": "State dict for the model [the registered model's own weights].",
    "classes": "Class names of your model: a file (one per line, or JSON) or a,b,c "
               "[from the model, or the data].",
    "mean": "Per-channel mean (0.485,0.456,0.406): the model is wrapped to take images in "
            "[0, 1] (with --std) [the model normalises inside].",
    "std": "Per-channel standard deviation (with --mean).",
    "input_size": "The model's input, for models that do not declare it: a side (32), or "
                  "WIDTHxHEIGHT (40x24, as sizes are printed).",
}


def _model_parameters(default: str | None) -> list[inspect.Parameter]:
    """The seven options as parameters typer reads, in :class:`ModelOptions`' order."""
    shown = f" [{DEFAULT_MODEL}]" if default is None else ""
    kinds = {
        "model": (str | None, typer.Option("--model", help=MODEL_HELP + shown), default),
        "weights": (Path | None, typer.Option(help=_MODEL_OPTION_HELP["weights"]), None),
        "classes": (str | None, typer.Option(help=_MODEL_OPTION_HELP["classes"]), None),
        "mean": (str | None, typer.Option(help=_MODEL_OPTION_HELP["mean"]), None),
        "std": (str | None, typer.Option(help=_MODEL_OPTION_HELP["std"]), None),
        "input_size": (str | None, typer.Option(help=_MODEL_OPTION_HELP["input_size"]), None),
    }
    parameters = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    default=value, annotation=Annotated[kind, option])
                  for name, (kind, option, value) in kinds.items()]
    return [*parameters, inspect.Parameter("allow_pickle",
                                           inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                           default=False, annotation=AllowPickle)]


def model_options(default: str | None = DEFAULT_MODEL) -> Callable[[Callable], Callable]:
    """Give a command the seven model options, collected into one :class:`ModelOptions`.

    The command declares a parameter ``model_options: ModelOptions``; the decorated
    command takes ``--model``, ``--weights``, ``--classes``, ``--mean``, ``--std``,
    ``--input-size`` and ``--allow-pickle`` in its place (typer reads the rewritten
    signature) and receives them as that one object.

    Args:
        default: the default ``--model``; ``None``: the run's config decides.

    Returns:
        The decorator.
    """
    names = [f.name for f in fields(ModelOptions)]

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        params = list(signature.parameters.values())
        if "model_options" not in signature.parameters:
            raise TypeError(f"{command.__name__} takes no model_options parameter")
        at = list(signature.parameters).index("model_options")
        parameters = [*params[:at], *_model_parameters(default), *params[at + 1:]]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in names}
            given["input_size"] = parse_input_size(given["input_size"])
            options = ModelOptions(**given)
            return command(model_options=options, **kwargs)

        del wrapper.__wrapped__  # typer reads the signature below, not the command's
        wrapper.__signature__ = signature.replace(parameters=parameters)
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper

    return decorate


# --------------------------------------------------------------------------- DE options
def check_de_options(given: dict[str, Any], modes: Sequence[str]) -> None:
    """Refuse options of the differential evolution for modes that run another search,
    as the attack does; say which modes they apply to when only some run it.

    Args:
        given: option name (``--popsize``) -> value, ``None`` when not given.
        modes: the modes that will run (unknown ones are left to the config's check).

    Raises:
        UsageProblem: options were given and no mode runs the differential evolution.
    """
    named = ", ".join(flag for flag, value in given.items() if value is not None)
    kinds = {mode: parse_mode(mode)[0] for mode in modes}
    others = [mode for mode, kind in kinds.items() if kind not in (None, "de")]
    evolving = [mode for mode, kind in kinds.items() if kind == "de"]
    if not named or not others:
        return
    what = (f"{others[0]} runs another search" if len(others) == 1 else
            f"{', '.join(others)} run other searches")
    if not evolving:
        own = sorted({field for mode in others
                      for field in SEARCH_FIELDS.get(kinds[mode] or "", ())})
        fail(f"{named} set the differential evolution; mode{'s' * (len(others) > 1)} "
             f"{what}, whose settings are {', '.join(own) or 'none'}")
    verb = "does" if len(others) == 1 else "do"
    console.print(f"note: {named} set the differential evolution of {', '.join(evolving)}; "
                  f"{what} and {verb} not use them")


# --------------------------------------------------------------------------- checks
def check_out(out: Path) -> Path:
    """``--out`` can hold results (checked before any work).

    Args:
        out: the folder.

    Returns:
        ``out``.

    Raises:
        OutputLocationError: it is a file, under a file, or not writable (a usage error).
    """
    try:
        check_writable_dir(out)
    except OutputLocationError as exc:
        raise OutputLocationError(f"--out {exc}") from None
    return out


def pick_device(name: str) -> str:
    """A device name checked (one line for a bad one) and ``auto`` resolved.

    Args:
        name: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Returns:
        The device to use.

    Raises:
        UsageProblem: an unknown device, or one this machine lacks.
    """
    if problem := device_problem(name):
        fail(problem)
    return resolve_device(name)


def check_weights(weights: Path | None) -> None:
    """``--weights`` names a file (a folder, or a path that is not there, is said so).

    Args:
        weights: the path given, or ``None``.

    Raises:
        UsageProblem: a folder, or a path that does not exist.
    """
    if weights is None:
        return
    path = Path(weights).expanduser()
    if path.is_dir():
        fail(f"--weights {weights} is a folder; give the weights file itself (a state_dict "
             "saved with torch.save, e.g. a .pt or .pth file)")
    if not path.exists():
        fail(f"--weights {weights} does not exist; give the path of a weights file")


def parse_input_size(text: str | int | None) -> int | tuple[int, int] | None:
    """``--input-size``: a side (``32``) or ``WIDTHxHEIGHT`` (``40x24``, the order every
    size is printed in), as a side or ``(height, width)``.

    Args:
        text: the option as given.

    Returns:
        The side, ``(height, width)`` (a square as its side), or ``None``.

    Raises:
        UsageProblem: not a positive side or two of them.
    """
    if text is None or isinstance(text, int):
        return text
    parts = text.strip().lower().replace("×", "x").split("x")
    values = [int(part) for part in parts if part.strip().isascii() and part.strip().isdigit()]
    if len(values) != len(parts) or len(values) not in (1, 2) or min(values) < 1:
        fail(f"--input-size takes a side (32) or WIDTHxHEIGHT (40x24), got {text!r}")
    if len(values) == 1 or values[0] == values[1]:
        return values[0]
    width, height = values
    return height, width
