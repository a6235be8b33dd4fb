"""The layout keeps its layers: every import (function-level ones and modules imported
by name, ``importlib.import_module("pixelprior...")``, included) points down
the stack of stages or sideways within a package, and no import closes a cycle.

    helpers (_streams, _io, _format, _registry) < data < models < maps < priors < scoring
    < search < experiment < report < cli

Optional extras (ray, onnxruntime, captum, matplotlib, ...) are not pixelprior modules,
so they are never counted. The top-level namespace (``pixelprior/__init__.py``) sits
outside the stack: nothing inside pixelprior may import it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1] / "src" / "pixelprior"
LAYERS = ["_version", "_streams", "_io", "_format", "_registry", "_checks", "data", "models",
          "maps", "priors", "scoring", "search", "experiment", "report", "cli"]
HELPERS = {"_version", "_streams", "_io", "_format", "_registry", "_checks"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """The pixelprior modules ``name`` imports (submodules resolved where named)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in MODULES else stem
                       for a in node.names]
        elif _imports_by_name(node):  # importlib.import_module("pixelprior.cli.progress")
            targets = [node.args[0].value]
        else:
            continue
        out.update(t for t in targets if t.split(".")[0] == "pixelprior")
    return {t for t in out if t in MODULES and (name, t) not in DEPRECATED_PATHS}


# an old path kept for one release, resolved at access with a DeprecationWarning (not
# imported when the package is): pixelprior.experiment.Progress → cli.progress
DEPRECATED_PATHS = {("pixelprior.experiment", "pixelprior.cli.progress")}


def _imports_by_name(node: ast.AST) -> bool:
    """Whether ``node`` imports a module named by a string (``import_module("...")``,
    ``__import__("...")``), which ``import`` statements do not show."""
    if not isinstance(node, ast.Call) or not node.args:
        return False
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    first = node.args[0]
    return (called in ("import_module", "__import__") and isinstance(first, ast.Constant)
            and isinstance(first.value, str))


def stage(name: str) -> str | None:
    """The stage of a module (``None`` for the top-level API and ``python -m pixelprior``,
    the command line's entry point)."""
    parts = name.split(".")
    return None if len(parts) == 1 or parts[1:] == ["__main__"] else parts[1]


INTERNAL = [name for name in MODULES if stage(name) is not None]


@pytest.mark.parametrize("name", sorted(INTERNAL))
def test_imports_point_down_the_layers(name):
    mine = LAYERS.index(stage(name))
    for target in imports_of(name):
        assert stage(target) is not None, f"{name} imports {target}, the top-level API"
        theirs = LAYERS.index(stage(target))
        same_package = stage(target) == stage(name)
        if stage(name) in HELPERS:  # the helpers import nothing of pixelprior
            assert same_package, f"{name} (a shared helper) imports {target}"
        assert theirs <= mine, f"{name} ({stage(name)}) imports {target} ({stage(target)}), " \
                               "a layer above it"


def test_no_import_closes_a_cycle():
    graph = {name: imports_of(name) for name in MODULES}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_the_layer_test_sees_every_module_and_real_imports():
    """Guards against a test that cannot fail: the stages are all there, and the graph
    holds the edges we know exist. A module outside the stages (such as the removed
    top-level shims of 0.2, ``pixelprior/attack.py``) fails here."""
    assert {stage(n) for n in INTERNAL} == set(LAYERS)
    assert "pixelprior.priors.base" in imports_of("pixelprior.priors.oracle")
    assert "pixelprior.data" in imports_of("pixelprior.priors.oracle")
    # a function-level import counts too
    assert "pixelprior.report" in imports_of("pixelprior.cli.runs")
