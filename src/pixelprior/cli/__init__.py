"""The command line: ``pixelprior attack|explain|reproduce|report|susceptibility|...``.

One module per group of commands, each a thin shell over library calls; every user
error ends in one line and an exit code (2 usage, 1 runtime, 130/143 interrupted), with
``--debug`` for the traceback (:mod:`pixelprior.cli._app`).
"""

from . import attack, runs, scans, setup  # noqa: F401  (registers the commands)
from ._app import app

__all__ = ["app"]

if __name__ == "__main__":  # pragma: no cover
    app()
