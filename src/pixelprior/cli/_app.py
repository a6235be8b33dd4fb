"""The ``pixelprior`` app: its consoles, its command groups, and the one place a command's
exceptions become one line and an exit code (see :mod:`pixelprior.cli.errors`).

``--debug`` shows the traceback instead. SIGINT and SIGTERM end a run between rows with a
line saying how much was kept (exit 130 / 143).
"""

from __future__ import annotations

import typer
from rich.console import Console
from typer.core import TyperGroup

try:  # typer 0.2x carries its own copy of click's parser; before, click itself
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - the typer of the day bundles it
    from click.exceptions import UsageError

from .._io import Interrupted, early_signals_raise, restore_early_signals
from .errors import BEFORE_RUN, STATE, UsageProblem, error_line

console = Console(emoji=False)  # a path or model spec with ":two:" stays text
err_console = Console(stderr=True, emoji=False)  # ':abc:' in a message stays text


def report_error(exc: BaseException) -> int:
    """Print the one line for ``exc`` on stderr.

    Args:
        exc: the exception a command raised.

    Returns:
        The exit code.
    """
    code, line = error_line(exc)
    err_console.print(line, soft_wrap=True, highlight=False)
    return code


def _usage_line(exc: UsageError) -> int:
    """Print the parser's complaint as one ``error:`` line naming the command's help (click
    prints usage, a hint and the error on four lines), and return its exit code."""
    where = exc.ctx.command_path if exc.ctx is not None else "pixelprior"
    err_console.print(f"error: {exc.format_message().rstrip('.')}; see '{where} --help'",
                      soft_wrap=True, highlight=False, markup=False)
    return exc.exit_code


def _shows_help(exc: UsageError) -> bool:
    """Whether ``exc`` is click's way of showing the help of a group called bare."""
    return type(exc).__name__ == "NoArgsIsHelpError"


class _Commands(TyperGroup):
    """Runs a command and turns its exceptions into one line and an exit code."""

    def parse_args(self, ctx, args):
        try:
            return super().parse_args(ctx, args)
        except UsageError as exc:  # the app's own options: `pixelprior --bogus`
            if _shows_help(exc) or "--debug" in args:  # parsed before --debug is read
                raise
            raise typer.Exit(_usage_line(exc)) from None

    def invoke(self, ctx):
        early_signals_raise(True)  # from here a signal is this command's to report
        STATE["interrupted"] = None
        try:
            before = getattr(ctx, "_protected_args", None)  # click 8.2 on; 8.1: public
            empty = _empty_value([*(before if before is not None
                                    else getattr(ctx, "protected_args", [])), *ctx.args])
            if empty is not None:
                raise UsageProblem(empty)
            return super().invoke(ctx)
        except Interrupted as exc:
            raise typer.Exit(report_error(exc)) from None
        except UsageError as exc:  # a command's options, parsed inside this call
            if _shows_help(exc) or STATE["debug"]:
                raise
            raise typer.Exit(_usage_line(exc)) from None
        except Exception as exc:  # noqa: BLE001 - every error gets a line and a code
            if type(exc).__module__.split(".")[0] in ("click", "typer"):
                raise  # usage errors of the parser itself, typer.Exit, Abort
            if STATE["debug"]:
                raise
            raise typer.Exit(report_error(exc)) from None
        except KeyboardInterrupt:  # no handler of ours was installed (an embedding program)
            note = STATE.get("interrupted")
            err_console.print("interrupted" + (f": {note}" if note and note != BEFORE_RUN
                                               else ""), soft_wrap=True, highlight=False)
            raise typer.Exit(130) from None
        finally:
            restore_early_signals()


def _empty_value(args: list[str]) -> str | None:
    """Why the command line holds an empty value (``--data ''``, ``--mode=``), or
    ``None``: an empty text was read as the option's default or as the folder ``.``
    (an attack of the default mode, a run on the default data), unsaid."""
    for i, arg in enumerate(args):
        option = args[i - 1] if arg == "" and i and args[i - 1].startswith("-") else None
        if arg.startswith("--") and arg.endswith("="):
            option = arg[:-1]
        if option is not None:
            return (f"{option} is given an empty value: give one, or leave the option out "
                    "for its default")
        if arg == "":
            return "an argument is empty: give a value"
    return None


def _version(value: bool) -> None:
    if value:  # as rows and environment.json name it (a checkout's commit, .dirty-...)
        from ..experiment.environment import package_version

        console.print(f"pixelprior {package_version()}")
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
    """Interpretability-guided one-pixel attacks (Kumar et al. 2019).
    \f
    Args:
        debug: show tracebacks of errors.
        version: print the version and exit (handled by its callback).
    """
    STATE["debug"] = debug
