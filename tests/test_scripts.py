"""The benchmark and results scripts import only public pixelprior names that exist.

The scripts are not run (they are benchmarks): their ``from pixelprior... import ...``
lines, function-level ones included, are read and resolved, so a moved or removed name
fails here rather than when someone next runs the script.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SCRIPTS = sorted([*ROOT.glob("benchmarks/*.py"), *ROOT.glob("results/*/*.py")])


def pixelprior_imports(path: Path) -> list[tuple[str, str | None]]:
    """``(module, name)`` of every pixelprior import in ``path`` (``name`` None for
    ``import pixelprior.x``)."""
    out: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pixelprior":
            out.extend((node.module, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            out.extend((alias.name, None) for alias in node.names
                       if alias.name.split(".")[0] == "pixelprior")
    return out


def test_the_scripts_are_found_and_import_pixelprior():
    names = {p.name for p in SCRIPTS}
    assert {"engines.py", "throughput.py", "inference_variants.py", "compare_modes.py"} <= names
    assert ("pixelprior.scoring", "perturb_rows") in pixelprior_imports(
        ROOT / "benchmarks" / "engines.py")
    # a function-level import is read too
    assert ("pixelprior.scoring", "OnnxRuntimeModel") in pixelprior_imports(
        ROOT / "benchmarks" / "inference_variants.py")


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_script_imports_public_names_that_exist(path):
    for module, name in pixelprior_imports(path):
        where = f"{path.relative_to(ROOT)}: {module}" + (f".{name}" if name else "")
        assert not any(part.startswith("_") for part in module.split(".")), \
            f"{where}: a private module; use the package's public name"
        imported = importlib.import_module(module)
        if name is not None:
            assert not name.startswith("_"), f"{where}: a private name"
            assert hasattr(imported, name), f"{where} does not exist"
