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

from pixelprior._io import CorruptResultsError, read_rows
from pixelprior.experiment import (
    ConfigError,
    ConfigMismatchError,
    ExperimentConfig,
    ExperimentRunner,
    append_rows,
    read_results,
)

TIMING = {"seconds", "group_seconds", "finished", "group_size"}


def small_config(out: Path, **overrides) -> ExperimentConfig:
    values = dict(source="sample", images=6, seeds=[0], popsize=12, maxiter=3,
                  n_samples=4, batch_images=2, device="cpu", out=str(out))
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
    assert read_rows(path, repair=True) == [{"a": 1}, {"a": 2}]
    assert path.read_text().count("\n") == 2
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(CorruptResultsError, match="corrupt lines"):
        read_rows(path)


def test_a_complete_last_row_without_its_newline_is_kept_and_completed(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}')  # killed after the row, before its newline
    assert read_rows(path, repair=True) == [{"a": 1}, {"a": 2}]
    assert path.read_text() == '{"a": 1}\n{"a": 2}\n'
    append_rows(path, [{"a": 3}])  # the next row starts on a line of its own
    assert read_rows(path) == [{"a": 1}, {"a": 2}, {"a": 3}]


def test_a_resumed_run_completes_an_unterminated_last_row(tmp_path):
    config = small_config(tmp_path / "run", images=3, modes=["unconstrained"])
    first = ExperimentRunner(small_config(tmp_path / "run", images=2,
                                          modes=["unconstrained"])).run(progress=False)
    assert len(first) == 2
    results = tmp_path / "run" / "results.jsonl"
    results.write_bytes(results.read_bytes().rstrip(b"\n"))  # newline lost
    (tmp_path / "run" / "config.json").unlink()
    (tmp_path / "run" / "selection.json").unlink()
    rows = ExperimentRunner(config).run(progress=False)
    assert len(rows) == 3 and len(read_results(results)) == 3


def test_rows_are_strict_json_and_duplicates_are_refused(tmp_path):
    path = tmp_path / "results.jsonl"
    append_rows(path, [{"seed": 0, "mode": "m", "image_index": 1, "p": float("nan")}])
    assert "NaN" not in path.read_text() and read_rows(path)[0]["p"] is None
    append_rows(path, [{"seed": 0, "mode": "m", "image_index": 1, "p": 0.5}])
    with pytest.raises(CorruptResultsError, match="duplicate row"):
        read_results(path)


def test_changed_config_refuses_to_mix_and_force_keeps_the_old_run(tmp_path):
    runner = ExperimentRunner(small_config(tmp_path / "run", images=2, modes=["unconstrained"]))
    runner.run(progress=False)
    changed = small_config(tmp_path / "run", images=2, modes=["unconstrained"], tau=0.3)
    with pytest.raises(ConfigMismatchError, match="another config"):
        ExperimentRunner(changed).run(progress=False)
    from pixelprior.report import write_report

    write_report(tmp_path / "run", figures=False)
    bad = small_config(tmp_path / "run", images=95, modes=["unconstrained"], tau=0.3)
    with pytest.raises(ValueError, match="only 91 images qualify"):  # fails before moving
        ExperimentRunner(bad, force=True, log=lambda m: None).run(progress=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["tau"] == 0.5
    rows = ExperimentRunner(changed, force=True, log=lambda m: None).run(progress=False)
    assert len(rows) == 2
    (aside,) = (tmp_path / "run").glob("old-*")
    for name in ("results.jsonl", "config.json", "environment.json", "selection.json",
                 "report.md", "summary.json"):
        assert (aside / name).is_file(), name
    assert not (tmp_path / "run" / "report.md").exists()  # no stale report beside the new run
    kept = json.loads((aside / "config.json").read_text())
    assert kept["config"]["tau"] == 0.5


def test_selection_is_recorded_and_batching_does_not_change_results(tmp_path):
    one = ExperimentRunner(small_config(tmp_path / "a", images=3, batch_images=1)).run(
        progress=False)
    three = ExperimentRunner(small_config(tmp_path / "b", images=3, batch_images=3)).run(
        progress=False)
    assert comparable(one) == comparable(three)
    selection = json.loads((tmp_path / "a" / "selection.json").read_text())
    assert selection["rule"] == "first_correct" and len(selection["indices"]) == 3
    assert json.loads((tmp_path / "a" / "config.json").read_text())["hash"]
    environment = json.loads((tmp_path / "a" / "environment.json").read_text())
    assert "torch" in environment and environment["device"] == "cpu"


def test_config_checks(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('images = 3\npopulation = 7\n')
    with pytest.raises(ConfigError, match="unknown config keys"):
        ExperimentConfig.build(path)
    with pytest.raises(ConfigError, match="engine must be one of"):
        small_config(tmp_path, engine="onnx").validate()
    problems = ExperimentConfig.from_dict({"tau": 2.0, "images": 0, "modes": []}).problems()
    assert any("tau" in p for p in problems) and any("images" in p for p in problems)
    assert any("modes must not be empty" in p for p in problems)
    with pytest.raises(ConfigError, match="popsize must be an integer"):
        ExperimentConfig.from_dict({"popsize": "forty"})
    with pytest.raises(ConfigError, match="'auto' was removed"):
        ExperimentConfig.build(overrides={"source": "auto"})


def test_the_engine_is_part_of_the_configuration(tmp_path):
    auto, full = small_config(tmp_path), small_config(tmp_path, engine="full")
    assert auto.engine == "auto" and auto.digest() != full.digest()  # float bits may differ
    assert small_config(tmp_path, batch_images=5).digest() == auto.digest()
    assert small_config(tmp_path, device="cpu").digest() == auto.digest()


@pytest.mark.checkout
def test_committed_runs_keep_their_hash():
    """Fields added later leave the hash of earlier runs alone while at their defaults,
    so those runs still resume; a prior whose meaning changed hashes anew."""
    root = Path(__file__).parents[2] / "results"
    saved = json.loads((root / "cifar10" / "config.json").read_text())
    assert ExperimentConfig.from_dict(saved["config"]).digest() == saved["hash"]
    random_set = ExperimentConfig(modes=["unconstrained", "random_set"])
    legacy = {k: v for k, v in random_set.to_dict().items()}
    assert random_set.digest() != ExperimentConfig(modes=["unconstrained", "weighted"]).digest()
    assert "random_set_version" not in legacy


def test_config_precedence_file_then_given_options(tmp_path):
    from typer.testing import CliRunner

    from pixelprior.cli import app

    path = tmp_path / "f.toml"
    path.write_text('source = "sample"\nbatch_images = 1\npopsize = 12\nmaxiter = 2\n'
                    'images = 5\nseeds = [0]\nmodes = ["unconstrained"]\ndevice = "cpu"\n')
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["reproduce", "cifar10", "--config", str(path),
                                      "--images", "2", "--out", str(out), "--no-report"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["source"] == "sample" and saved["batch_images"] == 1  # file values kept
    assert saved["popsize"] == 12 and saved["device"] == "cpu"
    assert saved["images"] == 2  # the option given wins
    assert len(read_results(out / "results.jsonl")) == 2


def test_one_run_per_folder(tmp_path):
    from pixelprior._io import RunLock, RunLockedError

    config = small_config(tmp_path / "run", images=2, modes=["unconstrained"])
    with RunLock(tmp_path / "run", command="pixelprior reproduce (other)"):
        with pytest.raises(RunLockedError, match=r"in use by another run \(pid \d+"):
            ExperimentRunner(config).run(progress=False)
    assert len(ExperimentRunner(config).run(progress=False)) == 2  # released: runs


def test_two_processes_on_one_folder(tmp_path):
    """A second run on a folder in use stops at once (exit 1, naming the holder); the
    first finishes; every row is there once."""
    config = small_config(tmp_path / "run")
    toml = tmp_path / "config.toml"
    write_toml(config, toml)
    command = [sys.executable, "-m", "pixelprior.cli", "reproduce", "cifar10", "--config",
               str(toml), "--out", config.out, "--no-report"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    lock = Path(config.out) / ".lock"
    deadline = time.time() + 120
    while time.time() < deadline and not (lock.is_file() and lock.read_text()):
        time.sleep(0.05)
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert first.wait(timeout=600) == 0
    assert second.returncode == 1 and "in use by another run" in second.stderr
    assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
    rows = read_results(Path(config.out) / "results.jsonl")
    assert len(rows) == 12 and len({(r["seed"], r["mode"], r["image_index"])
                                    for r in rows}) == 12


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupts_keep_finished_rows_and_say_how_to_resume(tmp_path, signum, code):
    config = small_config(tmp_path / "run")
    toml = tmp_path / "config.toml"
    write_toml(config, toml)
    command = [sys.executable, "-m", "pixelprior.cli", "reproduce", "cifar10", "--config",
               str(toml), "--out", config.out, "--no-report"]
    process = subprocess.Popen(command, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = Path(config.out) / "results.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if results.is_file() and results.read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == code, stderr
    kept = len(read_results(results))
    assert f"interrupted ({signal.Signals(signum).name}): {kept} of 12 attacks kept; run the " \
           "same command to resume" in " ".join(stderr.split())
    assert "Traceback" not in stderr
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    assert len(read_results(results)) == 12


def test_figures_draw_saved_maps_without_the_model(tmp_path, monkeypatch):
    """Maps saved by the run (on one device) are drawn on another without recomputing a
    map (the report loads the model only to check its fingerprint, on the CPU)."""
    from pixelprior import experiment
    from pixelprior.report import write_report

    config = small_config(tmp_path / "run", images=3, maxiter=30, popsize=40)
    ExperimentRunner(config).run(progress=False)
    maps = experiment.load_maps(tmp_path / "run")
    assert {key[1] for key in maps} == {"constrained"} and len(maps) == 3
    results = tmp_path / "run" / "results.jsonl"
    rows = [dict(r, device="cuda:0") for r in read_results(results)]
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))  # as if made on a GPU

    def no_map(*args, **kwargs):
        raise AssertionError("the report recomputed a map")

    monkeypatch.setattr("pixelprior.maps.SmoothGrad.attribute", no_map)
    write_report(tmp_path / "run")
    assert (tmp_path / "run" / "pipeline.png").is_file()
    assert (tmp_path / "run" / "examples.png").is_file()
    assert "cuda:0" in (tmp_path / "run" / "report.md").read_text()


def test_an_unreadable_map_file_counts_as_missing_and_is_written_again(tmp_path):
    from pixelprior import experiment

    config = small_config(tmp_path / "run", images=2, modes=["constrained"])
    ExperimentRunner(config).run(progress=False)
    (path,) = (tmp_path / "run" / "maps" / "constrained").glob("seed*.npz")
    path.write_bytes(path.read_bytes()[:50])  # a write cut short
    (path.parent / ".seed0-9.npz.tmp").write_bytes(b"half")  # a temp file left behind
    assert experiment.load_maps(tmp_path / "run") == {}
    ExperimentRunner(config, log=lambda m: None).run(progress=False)  # resume: backfills
    assert len(experiment.load_maps(tmp_path / "run")) == 2


def _fake_scan(dataset, positions, vulnerable_rows, path: Path) -> None:
    """A saved scan of ``positions`` of ``dataset`` where only ``vulnerable_rows`` have a
    vulnerable pixel (what `selection = "vulnerable"` reads)."""
    import numpy as np

    from pixelprior._streams import pixel_keys as image_keys
    from pixelprior.data import SusceptibilityMaps, to_float

    images = to_float(dataset.images[positions])
    count, _, height, width = images.shape
    vulnerable = np.zeros((count, height, width), dtype=bool)
    for row in vulnerable_rows:
        vulnerable[row, 1, 2] = True
    margin = np.where(vulnerable, -0.1, 0.2).astype(np.float32)
    SusceptibilityMaps(np.array(image_keys(images)),
                       dataset.official_indices[positions].numpy().astype(np.int64),
                       dataset.labels[positions].numpy().astype(np.int64), margin.copy(),
                       margin, vulnerable, np.zeros((count, height, width, 3), np.float32),
                       3).save(path / "maps.npz")


def test_vulnerable_selection_attacks_what_the_scan_found_with_the_same_rows(tmp_path):
    from pixelprior.experiment import SelectionError, load_dataset

    everything = ExperimentRunner(small_config(tmp_path / "all", images=4)).run(progress=False)
    chosen = json.loads((tmp_path / "all" / "selection.json").read_text())["positions"]
    dataset = load_dataset(small_config(tmp_path / "x"))
    scan = tmp_path / "scan"
    scan.mkdir()
    _fake_scan(dataset, chosen, [1, 3], scan)
    config = small_config(tmp_path / "v", images=2, selection="vulnerable", oracle=str(scan))
    rows = ExperimentRunner(config).run(progress=False)
    selection = json.loads((tmp_path / "v" / "selection.json").read_text())
    assert selection["rule"] == "vulnerable" and selection["positions"] == [chosen[1], chosen[3]]
    # each image's random stream is keyed by its pixels: the same rows as in the larger run
    wanted = {k: v for k, v in comparable(everything).items()
              if k[2] in selection["indices"]}
    strip = ("config_hash",)
    assert ({k: {f: x for f, x in v.items() if f not in strip} for k, v in wanted.items()}
            == {k: {f: x for f, x in v.items() if f not in strip}
                for k, v in comparable(rows).items()})
    with pytest.raises(SelectionError, match="only 2 images qualify"):
        ExperimentRunner(small_config(tmp_path / "w", images=3, selection="vulnerable",
                                      oracle=str(scan))).run(progress=False)
    assert not (tmp_path / "w").exists()
    robust = ExperimentRunner(small_config(tmp_path / "r", images=2, selection="robust",
                                           oracle=str(scan))).run(progress=False)
    assert {r["image_index"] for r in robust} | set(selection["indices"]) == {
        r["image_index"] for r in everything}
    with pytest.raises(ConfigError, match="needs oracle"):
        small_config(tmp_path / "n", selection="vulnerable").validate()


def test_a_scan_of_other_images_is_refused_for_the_vulnerable_selection(tmp_path):
    from pixelprior.data import ImageSet
    from pixelprior.experiment import SelectionError, load_dataset, scanned_positions

    dataset = load_dataset(small_config(tmp_path / "x"))
    scan = tmp_path / "scan"
    scan.mkdir()
    brighter = ImageSet(dataset.images[:2] // 2, dataset.labels[:2], dataset.class_names,
                        "altered", dataset.official_indices[:2])
    _fake_scan(brighter, [0, 1], [0], scan)
    with pytest.raises(SelectionError, match="not in"):
        scanned_positions(str(scan), dataset)


def test_images_attacked_together_follow_the_device_and_the_dataset():
    assert ExperimentConfig(device="cpu").images_per_group() == 10
    assert ExperimentConfig(device="cpu", dataset="nips17").images_per_group() == 4
    assert ExperimentConfig(device="cpu", batch_images=3).images_per_group() == 3


def test_oracle_modes_on_images_the_scan_lacks_are_refused_before_anything_is_written(
        tmp_path):
    """(A CLI audit's case.) The run stopped at its first group with its records written,
    and the corrected command in the same folder was then refused as another config."""
    from pixelprior.experiment import load_dataset

    dataset = load_dataset(small_config(tmp_path / "x"))
    scan = tmp_path / "scan"
    scan.mkdir()
    _fake_scan(dataset, [0], [], scan)  # the first image only
    config = small_config(tmp_path / "o", images=2, modes=["oracle"], oracle=str(scan))
    with pytest.raises(ConfigError, match="is not in the susceptibility scan.*the oracle "
                                          "modes attack images of this run"):
        ExperimentRunner(config).run(progress=False)
    assert not (tmp_path / "o").exists()
