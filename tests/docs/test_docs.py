"""The documentation site (``mkdocs.yml``, ``docs/``): every tutorial's Python code runs,
the site builds with ``mkdocs build --strict``, and each API reference page documents
exactly its package's public names (a new public name without docs fails here)."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))
PACKAGES = ("data", "models", "maps", "priors", "scoring", "search", "experiment", "report")
DIRECTIVE = re.compile(r"^::: (pixelprior(?:\.\w+)*)\s*$", re.M)


# ------------------------------------------------------------------ tutorial code
@dataclass
class CodeBlock:
    """One fenced ```python block of a page: its code and the line of its opening fence."""

    code: str
    line: int


def python_blocks(text: str) -> list[CodeBlock]:
    """The ```python blocks of a Markdown page, in order.

    Hand-written (a dozen lines) rather than a dependency such as sybil: the pages use
    only top-level fences, and a block must run exactly as a reader copies it.

    Args:
        text: the page's Markdown.

    Returns:
        Each block's code and the 1-based line of its opening fence.
    """
    blocks, code, start = [], None, 0
    for number, line in enumerate(text.splitlines(), 1):
        if code is None and line.rstrip() == "```python":
            code, start = [], number
        elif code is not None and line.rstrip() == "```":
            blocks.append(CodeBlock("\n".join(code) + "\n", start))
            code = None
        elif code is not None:
            code.append(line)
    if code is not None:
        raise ValueError(f"the ```python block at line {start} is never closed")
    return blocks


def run_page(page: Path, name: str) -> None:
    """Run a page's ```python blocks in order, in one namespace.

    Args:
        page: the Markdown file.
        name: how failures name the page (its path in the repository).

    Raises:
        AssertionError: a block failed; the message names the page, the block's line and
            the traceback (line numbers are the page's own).
    """
    namespace: dict = {"__name__": "__docs__"}
    for block in python_blocks(page.read_text(encoding="utf-8")):
        # padded so that the traceback's line numbers are the page's
        compiled = compile("\n" * block.line + block.code, name, "exec")
        try:
            exec(compiled, namespace)
        except Exception:
            raise AssertionError(f"{name}: the ```python block at line {block.line} "
                                 f"failed:\n{traceback.format_exc()}") from None


@pytest.fixture
def docs_environment(tmp_path, monkeypatch):
    """What a reader has: no data folder (bundled data only), no display, a fresh working
    folder; one torch thread (the pages' budgets are sized for one core)."""
    monkeypatch.delenv("PIXELPRIOR_DATA", raising=False)
    monkeypatch.setenv("PIXELPRIOR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(threads)


def test_there_are_four_tutorials():
    assert [p.name for p in TUTORIALS] == ["attack.md", "maps-vs-ground-truth.md",
                                           "verify.md", "your-model.md"]
    assert all(python_blocks(p.read_text(encoding="utf-8")) for p in TUTORIALS)


@pytest.mark.parametrize("page", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_code_runs(page, docs_environment):
    run_page(page, str(page.relative_to(ROOT)))


def test_a_failing_block_names_the_page_and_its_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A page\n\n```python\nx = 1\n```\n\ntext\n\n```python\n"
                    "y = x + 1\nassert y == 3, 'y is not 3'\n```\n", encoding="utf-8")
    with pytest.raises(AssertionError) as failed:
        run_page(page, "docs/page.md")
    message = str(failed.value)
    assert "docs/page.md: the ```python block at line 9 failed" in message
    assert 'File "docs/page.md", line 11' in message and "y is not 3" in message


def test_blocks_are_read_in_order_and_bash_blocks_are_not_run():
    text = "```bash\nrm -rf /\n```\n```python\na = 1\n```\n```python\nb = a\n```\n"
    assert python_blocks(text) == [CodeBlock("a = 1\n", 4), CodeBlock("b = a\n", 7)]
    with pytest.raises(ValueError, match="line 1 is never closed"):
        python_blocks("```python\nx = 1\n")


# ------------------------------------------------------------------ the site
def test_site_builds_strict(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
         str(tmp_path / "site"), "--config-file", str(ROOT / "mkdocs.yml")],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-6000:]
    assert (tmp_path / "site" / "reference" / "search" / "index.html").is_file()
    verifier = (tmp_path / "site" / "reference" / "search" / "index.html").read_text()
    assert 'id="pixelprior.search.Verifier"' in verifier


# ------------------------------------------------------------------ the reference
def documented(page: Path) -> list[str]:
    """The objects a reference page renders (its ``::: NAME`` lines), in order."""
    return DIRECTIVE.findall(page.read_text(encoding="utf-8"))


@pytest.mark.parametrize("package", PACKAGES)
def test_reference_page_documents_every_public_name(package):
    public = importlib.import_module(f"pixelprior.{package}").__all__
    names = documented(DOCS / "reference" / f"{package}.md")
    missing = [n for n in public if f"pixelprior.{package}.{n}" not in names]
    assert not missing, (f"docs/reference/{package}.md documents no "
                         + ", ".join(missing) + " (public in pixelprior."
                         f"{package}.__all__): add a line '::: pixelprior.{package}.NAME'")
    stale = [n for n in names if n.split(".")[-1] not in public
             and n != f"pixelprior.{package}"]
    assert not stale, f"docs/reference/{package}.md documents names not public: {stale}"
    assert len(names) == len(set(names)), f"docs/reference/{package}.md repeats a name"


def test_top_level_page_links_every_public_name():
    stub = ast.parse((ROOT / "src" / "pixelprior" / "__init__.pyi").read_text())
    where = {alias.asname or alias.name: node.module for node in stub.body
             if isinstance(node, ast.ImportFrom) for alias in node.names}
    where.pop("__version__")
    text = (DOCS / "reference" / "index.md").read_text(encoding="utf-8")
    import pixelprior

    assert set(where) == set(pixelprior.__all__) - {"__version__"}
    missing = [f"[`{n}`][pixelprior.{m}.{n}]" for n, m in where.items()
               if f"[`{n}`][pixelprior.{m}.{n}]" not in text]
    assert not missing, f"docs/reference/index.md links none of: {', '.join(missing)}"


def test_the_dev_extra_installs_what_the_docs_tests_need():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert extras["docs"], "pyproject.toml has no docs extra"
    missing = set(extras["docs"]) - set(extras["dev"])
    assert not missing, f"the dev extra (what CI installs) lacks {sorted(missing)}"


def test_the_operations_page_is_the_tables_own():
    """``docs/guide/operations.md`` is what ``python docs/operations.py`` writes from the
    operation table: an operation registered (or changed) without rewriting the page
    fails here."""
    import runpy

    page = runpy.run_path(str(DOCS / "operations.py"))["page"]()
    assert (DOCS / "guide" / "operations.md").read_text(encoding="utf-8") == page, (
        "docs/guide/operations.md is stale: run python docs/operations.py")
