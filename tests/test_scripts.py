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


@pytest.mark.checkout
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


# The smallest run of each benchmark that finishes in seconds (the others, minutes even
# at their smallest, are left out: crown_resnet8, inference_variants, verify_call_size,
# all, and train_verification_nets, which writes the bundled assets): four of them had
# stopped running after API changes, unnoticed until an audit ran them.
SMOKE_RUNS = {
    "peers": "--images 1 --maxiter 1 --rs-queries 100",
    "precision": "--images 1 --rows 10 --attacks 1",
    "verify_positions": "--model convsmall-cifar10 --positions 1",
    "verify_routes": "--boxes 1 --steps 1",
    "affine_output": "--side 0.01 --positions 1 --repeats 1",
    "bound_rounding": "--models convsmall-cifar10 --images 1 --positions 1 --sides 1 0",
    "box_profile": "--model convsmall-cifar10 --sides 0.0625 --top 2",
    "box_tolerance": "--fooled 0 --verified 4 --budget 2 --error-models convsmall-cifar10 "
                     "--error-images 1",
    "engines": "--seconds 0.2",
    "float32_bound": "--models convsmall-cifar10 --images 1 --positions 1",
    "fx_engine": "--quick --skip-imagenet",
    "gpu": "",  # without CUDA it says so and stops (the CPU sections: gpu.py --device cpu)
    "lipschitz_grid": "--model convsmall-cifar10 --sides 0.0625 --grids 3 --zonotope --layers",
    "local_search": "--boxes 200 --images 0 --ibp-boxes 10 --ibp-images 25",
    "memory": "--batches 16",
    "prepare_cost": "--models convsmall-cifar10 --images 1 --repeats 1",
    "proved_floor": "--boxes 20 --images 0 --verified 4",
    "refined_error": "--models convsmall-cifar10 --sides 0 0.25 --images 1",
    "screen_cost": "--models convsmall-cifar10 --images 1 --positions 4 --chunk 4 --repeats 1",
    "signed_error": "--boxes 20 --verified 4 --error-images 1",
    "softplus_rule": "--ranges 100",
    "fast_band": "--images 2 --repeats 1 --models resnet8-cifar10",
    "throughput": "--images 1 --maxiter 1 --scaling 1",
    "tolerance": "--models convsmall-cifar10 --images 1 --samples 16",
    "unstable_profile": "--model convsmall-cifar10 --sides 0.0625 --grid 3 --interval",
    "verify": "--models convsmall-cifar10 --images 2 --budget 5",
    "verify_box_sizes": "--models convsmall-cifar10 --images 1 --positions 1",
    "watch_cost": "--models convsmall-cifar10 --repeats 1",
    "verify_gates": "--images 1 --candidates 3 --budget 5",
    "matrix_products": "--boxes 2 --repeats 1",
    "signed_rounding": "--models convsmall-cifar10 --budget 2 --indices 4",
}


def test_every_benchmark_has_a_smoke_run_or_a_reason():
    left_out = {"all", "crown_resnet8", "inference_variants", "verify_call_size",
                "train_verification_nets", "_setup"}
    scripts = {p.stem for p in ROOT.glob("benchmarks/*.py")}
    assert scripts == set(SMOKE_RUNS) | left_out


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMOKE_RUNS))
def test_the_benchmark_runs(name, tmp_path, shared_data):
    """Each benchmark's smallest run ends without an error (not a timing: its figures
    are not checked), from another folder so that it writes nothing into the checkout."""
    import os
    import subprocess
    import sys

    command = [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"),
               *SMOKE_RUNS[name].split()]
    env = {**os.environ, "PIXELPRIOR_DATA": str(shared_data.resolve())}  # (CI's is relative)
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
