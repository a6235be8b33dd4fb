"""The command line: ``pixelprior run|attack|explain|reproduce|report|susceptibility|...``.

One module per group of commands, each a thin shell over library calls; every user
error ends in one line and an exit code (2 usage, 1 runtime, 130/143 interrupted), with
``--debug`` for the traceback (:mod:`pixelprior.cli.errors`, :mod:`pixelprior.cli._app`).
Shared options are declared once (:mod:`pixelprior.cli.options`); image and value
parsing live in :mod:`pixelprior.cli.inputs`, terminal tables in :mod:`pixelprior.cli.tables`.

SIGINT and SIGTERM are handled from the first moment: the handlers are installed here,
before the command modules import torch and the rest (about a second), so a signal then
ends the process with one line (``interrupted before the run started ...; nothing was
written``) and exit 130 / 143, never a traceback or a bare -15.
"""

import sys as _sys
from pathlib import Path as _Path


def _is_the_command_line() -> bool:
    """Whether this process is the ``pixelprior`` command (the console script, or
    ``python -m pixelprior.cli`` while it imports), not a program importing the CLI."""
    first = _sys.argv[0] if _sys.argv else ""
    return first == "-m" or _Path(first).stem == "pixelprior"


if _is_the_command_line():
    from .._io import install_early_signals as _install

    _install()

from . import attack, explain, run, runs, scans, setup, verify  # noqa: E402, F401  (registers the commands)
from ._app import app  # noqa: E402

__all__ = ["app"]

if __name__ == "__main__":  # pragma: no cover
    app()
