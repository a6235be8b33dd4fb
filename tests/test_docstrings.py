"""Google-style docstrings on the public API of the packages listed (issue 24, item 4):
every public class and function has one; a function that takes arguments says so under
``Args:``, one that returns a value under ``Returns:`` (or ``Yields:``), one that raises
under ``Raises:``. A class documents its constructor (``Args:``) when it takes arguments.
An override may send the reader to its base class ("see base class").

Packages join the list as their docstrings are brought to this style.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1] / "src" / "pixelprior"
PACKAGES = ("search", "priors", "maps")


def _arguments(node: ast.FunctionDef) -> list[str]:
    args = node.args
    names = [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]]
    names += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    return [n for n in names if n not in ("self", "cls", "_")]


def _function_problems(node: ast.FunctionDef, where: str) -> list[str]:
    doc = ast.get_docstring(node) or ""
    if not doc:
        return [f"{where}: no docstring"]
    if "see base class" in doc.lower():
        return []
    problems = []
    if _arguments(node) and "Args:" not in doc:
        problems.append(f"{where}: no Args:")
    is_property = any(isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list)
    returns = any(isinstance(n, ast.Return) and n.value is not None for n in ast.walk(node))
    if returns and not is_property and "Returns:" not in doc and "Yields:" not in doc:
        problems.append(f"{where}: no Returns:")
    raises = [n for n in ast.walk(node) if isinstance(n, ast.Raise)
              and "NotImplementedError" not in ast.unparse(n)]
    if raises and "Raises:" not in doc:
        problems.append(f"{where}: no Raises:")
    return problems


def _class_problems(node: ast.ClassDef, where: str) -> list[str]:
    doc = ast.get_docstring(node) or ""
    if not doc:
        return [f"{where}: no docstring"]
    init = next((n for n in node.body if isinstance(n, ast.FunctionDef)
                 and n.name == "__init__"), None)
    fields = [n for n in node.body if isinstance(n, ast.AnnAssign)]
    dataclass = any("dataclass" in ast.unparse(d) for d in node.decorator_list)
    takes = (init is not None and _arguments(init)) or (dataclass and fields)
    if takes and "Args:" not in doc:
        return [f"{where}: no Args: for its constructor"]
    return []


def problems_of(path: Path) -> list[str]:
    """Every docstring problem of the public classes and functions in ``path``."""
    out: list[str] = []

    def visit(node: ast.AST, owner: str = "") -> None:
        for child in ast.iter_child_nodes(node):
            where = f"{path.relative_to(ROOT)}:{getattr(child, 'lineno', 0)} {owner}"
            if isinstance(child, ast.ClassDef) and not child.name.startswith("_"):
                out.extend(_class_problems(child, where + child.name))
                visit(child, f"{owner}{child.name}.")
            elif (isinstance(child, ast.FunctionDef) and child.name != "__init__"
                  and (not child.name.startswith("_") or child.name == "__call__")):
                out.extend(_function_problems(child, where + child.name))

    visit(ast.parse(path.read_text()))
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_public_docstrings_follow_google_style(package):
    problems = [p for path in sorted((ROOT / package).glob("*.py")) for p in problems_of(path)]
    assert not problems, "\n".join(problems)


def test_the_check_finds_what_it_looks_for(tmp_path, monkeypatch):
    """A function without Args/Returns/Raises and an undocumented class are found."""
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    source = tmp_path / "bad.py"
    source.write_text('def f(x):\n    """Prose only."""\n    if x:\n        raise ValueError\n'
                      '    return x\n\n\nclass C:\n    def __init__(self, a):\n        pass\n')
    found = problems_of(source)
    assert any("f: no Args:" in p for p in found)
    assert any("f: no Returns:" in p for p in found)
    assert any("f: no Raises:" in p for p in found)
    assert any("C: no docstring" in p for p in found)
