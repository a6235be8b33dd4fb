"""pixelprior: interpretability-guided sparse adversarial attacks.

Data flows one way through packages named after its stages, each importing only from
the ones before it::

    data → models → maps → priors → scoring → search → experiment → report → cli

(with small shared helpers below them all: ``_streams``, ``_io``, ``_format``,
``_registry``). This namespace is the flat public API.

The one list of public names is ``__init__.pyi`` next to this file: plain imports that
type checkers read. Here the same imports are performed on first use (PEP 562):
``import pixelprior`` alone loads no torch, so the command line installs its signal
handlers before the heavy imports. ``from pixelprior import X`` and ``pixelprior.X``
work as plain imports would.

This is what ``lazy_loader.attach_stub`` (Scientific Python) does; it is written out here
(a few lines) rather than added as a dependency of the package.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from ._version import __version__ as __version__


def _read_stub(path: Path) -> dict[str, tuple[str, str]]:
    """The public names of the stub at ``path``.

    Args:
        path: an ``__init__.pyi`` made only of ``from .package import name as name``
            lines (and a docstring and comments).

    Returns:
        Each public name mapped to ``(package, attribute)``, e.g. ``"Attack"`` to
        ``("search", "Attack")``.

    Raises:
        ValueError: the stub holds a statement of another kind (it must stay a plain
            list, so that what type checkers read is what runs).
    """
    table: dict[str, tuple[str, str]] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if not (isinstance(node, ast.ImportFrom) and node.level == 1 and node.module):
            raise ValueError(f"{path.name} line {node.lineno}: only 'from .package import "
                             "name as name' lines belong in the list of public names")
        for alias in node.names:
            table[alias.asname or alias.name] = (node.module, alias.name)
    return table


_PUBLIC = _read_stub(Path(__file__).with_name("__init__.pyi"))

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    """Import a public name on first access (and keep it, so later accesses are plain).

    Args:
        name: a name of :data:`__all__`.

    Returns:
        The object the stub's import names.

    Raises:
        AttributeError: ``name`` is not a public name of pixelprior.
    """
    if name not in _PUBLIC:
        raise AttributeError(f"module 'pixelprior' has no attribute {name!r}")
    package, attribute = _PUBLIC[name]
    value = getattr(importlib.import_module(f".{package}", __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's own names and every public name (imported or not yet)."""
    return sorted(set(globals()) | set(__all__))
