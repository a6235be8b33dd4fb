"""The command line's layout: small modules, the shared parts in one place each."""

from __future__ import annotations

from pathlib import Path

CLI = Path(__file__).parents[2] / "src" / "pixelprior" / "cli"
MOST_LINES = 400


def test_no_cli_module_is_over_400_lines():
    sizes = {path.name: len(path.read_text().splitlines()) for path in CLI.glob("*.py")}
    assert {"errors.py", "options.py", "inputs.py", "tables.py", "_app.py"} <= set(sizes)
    assert {name: n for name, n in sizes.items() if n > MOST_LINES} == {}


def test_the_model_options_are_declared_in_options_only():
    for path in CLI.glob("*.py"):
        if path.name != "options.py":
            text = path.read_text()
            for flag in ('"--allow-pickle"', '"--classes"', '"--input-size"', "help=MODEL_HELP"):
                assert flag not in text, (path.name, flag)
