"""``python -m pixelprior``: the command line, as ``pixelprior``."""

from .cli import app

app()
