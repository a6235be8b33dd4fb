"""The version a row records names the code that made it: the release, and the commit
where pixelprior runs from a git checkout (changed files said), never the commit of a
checkout that merely holds an installed copy."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pixelprior.experiment.environment import source_revision

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c",
                           "user.email=t@t", *args], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git checkout tracking a package folder ``src/pkg`` at one commit."""
    package = tmp_path / "src" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("X = 1\n")
    (tmp_path / "README").write_text("hi\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "one")
    return tmp_path


def test_a_tracked_package_names_its_commit_and_changes(checkout: Path):
    package = checkout / "src" / "pkg"
    short = git(checkout, "rev-parse", "--short=7", "HEAD")
    assert source_revision(package) == f"g{short}"
    (checkout / "README").write_text("changed outside the package\n")
    assert source_revision(package) == f"g{short}"  # only the package's files count
    (package / "__init__.py").write_text("X = 2\n")
    one = source_revision(package)
    assert one.startswith(f"g{short}.dirty-") and len(one) == len(f"g{short}.dirty-") + 8
    (package / "__init__.py").write_text("X = 3\n")  # another edit: another version
    assert source_revision(package) not in (one, f"g{short}")
    (package / "__init__.py").write_text("X = 2\n")
    assert source_revision(package) == one


def test_the_version_covers_every_stage_of_the_package():
    """Only experiment/ was looked at: a changed search/verify.py gave a clean version
    (an audit's case)."""
    import importlib

    environment = importlib.import_module("pixelprior.experiment.environment")
    root = Path(environment.__file__).resolve().parent.parent
    assert (root / "search").is_dir() and (root / "__init__.py").is_file()
    seen = []
    original = environment.source_revision
    environment.package_version.cache_clear()
    try:
        environment.source_revision = lambda directory: seen.append(directory) or "g0"
        environment.package_version()
    finally:
        environment.source_revision = original
        environment.package_version.cache_clear()
    assert seen == [root]


def test_an_untracked_copy_inside_a_checkout_names_no_commit(checkout: Path, tmp_path: Path):
    copy = checkout / ".venv" / "site-packages" / "pkg"
    copy.mkdir(parents=True)
    (copy / "__init__.py").write_text("X = 1\n")
    (checkout / ".gitignore").write_text(".venv/\n")
    assert source_revision(copy) is None
    outside = tmp_path.parent / f"{tmp_path.name}-plain"
    outside.mkdir()
    (outside / "__init__.py").write_text("X = 1\n")
    assert source_revision(outside) is None
