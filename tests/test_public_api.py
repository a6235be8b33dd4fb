"""The flat public namespace: one list (``__init__.pyi``), every name resolves, nothing
heavy is imported by ``import pixelprior``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import pixelprior

STUB = Path(pixelprior.__file__).with_name("__init__.pyi")
BASE_CLASSES = ("Attack", "Prior", "SensitivityMethod", "Scorer", "AttackOutput",
                "AttackResult", "PositionDistribution", "SearchOutcome", "ScanResult")


def test_import_pixelprior_loads_no_torch():
    code = ("import sys, pixelprior; names = dir(pixelprior); "
            "assert 'Attack' in names and pixelprior.__version__; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", pixelprior.__all__)
def test_every_public_name_resolves_to_its_package_object(name):
    package, attribute = pixelprior._PUBLIC[name]
    home = __import__(f"pixelprior.{package}", fromlist=[attribute])
    assert getattr(pixelprior, name) is getattr(home, attribute)


def test_dir_lists_every_public_name_and_the_base_classes():
    assert set(pixelprior.__all__) <= set(dir(pixelprior))
    assert set(BASE_CLASSES) <= set(pixelprior.__all__)
    assert {"OnePixelAttack", "FastAttack", "SmoothGrad", "make_scorer", "__version__",
            "build_attack"} <= set(pixelprior.__all__)


def test_the_stub_is_plain_imports_that_run():
    """What type checkers read is what runs: executing the stub gives the same objects."""
    namespace = {"__name__": "pixelprior._stub_check", "__package__": "pixelprior"}
    exec(compile(STUB.read_text(), str(STUB), "exec"), namespace)
    for name in pixelprior.__all__:
        assert namespace[name] is getattr(pixelprior, name), name
    public = {k for k in namespace if not k.startswith("__") or k == "__version__"}
    assert public == set(pixelprior.__all__)


def test_star_import_and_unknown_names():
    namespace: dict = {}
    exec("from pixelprior import *", namespace)
    assert namespace["Attack"] is pixelprior.Attack
    with pytest.raises(AttributeError, match="no attribute 'attack'"):
        pixelprior.attack  # noqa: B018  (the module of 0.2 is gone)


def test_a_stub_line_of_another_kind_is_refused(tmp_path):
    stub = tmp_path / "__init__.pyi"
    stub.write_text('"""doc"""\nfrom .search import Attack as Attack\nimport torch\n')
    with pytest.raises(ValueError, match="line 3: only 'from .package import name as name'"):
        pixelprior._read_stub(stub)
    stub.write_text('"""doc"""\n# a comment\nfrom .search import Attack as Attack\n')
    assert pixelprior._read_stub(stub) == {"Attack": ("search", "Attack")}


def test_the_package_says_it_is_typed():
    """PEP 561: type checkers read pixelprior's hints (and ``__init__.pyi``) only where
    the package holds ``py.typed``."""
    import pixelprior

    assert (Path(pixelprior.__file__).parent / "py.typed").is_file()
