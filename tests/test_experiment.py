"""Experiment runner: resume after SIGKILL, torn lines, config mismatch, selection."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pixelprior.experiment import (
    ConfigMismatchError,
    ExperimentConfig,
    ExperimentRunner,
    append_rows,
    read_results,
)

TIMING = {"seconds", "group_seconds", "finished", "group_size"}


def small_config(out: Path, **overrides) -> ExperimentConfig:
    values = dict(source="sample", images=6, seeds=[0], popsize=12, maxiter=3,
                  n_samples=4, batch_images=2, out=str(out))
    values.update(overrides)
    return ExperimentConfig(**values)


def comparable(rows: list[dict]) -> dict:
    return {(r["seed"], r["mode"], r["image_index"]): {k: v for k, v in r.items()
                                                       if k not in TIMING} for r in rows}


def write_toml(config: ExperimentConfig, path: Path) -> None:
    lines = []
    for key, value in config.to_dict().items():
        if value is None or key == "out":
            continue
        lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")


def test_killed_run_resumes_without_duplicates(tmp_path):
    reference = ExperimentRunner(small_config(tmp_path / "ref")).run(progress=False)
    config = small_config(tmp_path / "killed")
    toml = tmp_path / "config.toml"
    write_toml(config, toml)
    command = [sys.executable, "-m", "pixelprior.cli", "reproduce", "cifar10", "--config",
               str(toml), "--out", config.out, "--source", "sample", "--batch-images", "2",
               "--no-report"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    results = Path(config.out) / "results.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:
        if results.is_file() and len(results.read_text().splitlines()) >= 2:
            break
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = read_results(results)
    assert 0 < len(partial) < 12, "the run should have been killed part way"
    with open(results, "a") as f:  # simulate a torn write of the next line
        f.write('{"seed": 0, "mode": "constr')
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    rows = read_results(results)
    keys = [(r["seed"], r["mode"], r["image_index"]) for r in rows]
    assert len(keys) == len(set(keys)) == 12  # every image exactly once
    assert comparable(rows) == comparable(reference)


def test_torn_tail_is_dropped_but_corruption_inside_is_an_error(tmp_path):
    path = tmp_path / "results.jsonl"
    append_rows(path, [{"a": 1}, {"a": 2}])
    with open(path, "a") as f:
        f.write('{"a": 3')
    assert read_results(path, repair=True) == [{"a": 1}, {"a": 2}]
    assert path.read_text().count("\n") == 2
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(ValueError, match="corrupt lines"):
        read_results(path)


def test_changed_config_refuses_to_mix(tmp_path):
    runner = ExperimentRunner(small_config(tmp_path / "run", images=2, modes=["unconstrained"]))
    runner.run(progress=False)
    changed = small_config(tmp_path / "run", images=2, modes=["unconstrained"], tau=0.3)
    with pytest.raises(ConfigMismatchError, match="another config"):
        ExperimentRunner(changed).run(progress=False)
    rows = ExperimentRunner(changed, force=True).run(progress=False)
    assert len(rows) == 2
    assert list((tmp_path / "run").glob("results.jsonl.old-*"))


def test_selection_is_recorded_and_batching_does_not_change_results(tmp_path):
    one = ExperimentRunner(small_config(tmp_path / "a", images=3, batch_images=1)).run(
        progress=False)
    three = ExperimentRunner(small_config(tmp_path / "b", images=3, batch_images=3)).run(
        progress=False)
    assert comparable(one) == comparable(three)
    selection = json.loads((tmp_path / "a" / "selection.json").read_text())
    assert selection["rule"] == "first_correct" and len(selection["indices"]) == 3
    assert json.loads((tmp_path / "a" / "config.json").read_text())["hash"]
    assert "torch" in json.loads((tmp_path / "a" / "environment.json").read_text())


def test_config_file_rejects_unknown_keys(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('images = 3\npopulation = 7\n')
    with pytest.raises(ValueError, match="unknown config keys"):
        ExperimentConfig.from_file(path)


def test_the_engine_is_part_of_the_configuration(tmp_path):
    auto, full = small_config(tmp_path), small_config(tmp_path, engine="full")
    assert auto.engine == "auto" and auto.digest() != full.digest()  # float bits may differ
    assert small_config(tmp_path, batch_images=5).digest() == auto.digest()
    with pytest.raises(ValueError, match="engine must be one of"):
        small_config(tmp_path, engine="onnx")
