"""Run folders: every row belongs to its run (config hash, seed, mode, image), every field
and every record file is checked by type on read, a folder of other files is not mixed
into, ``--force`` moves only pixelprior's own files, a full disk keeps what was written,
and the committed results still load, report identically and resume."""

from __future__ import annotations

import dataclasses
import errno
import json
import shutil
from pathlib import Path

import pytest
from helpers import clean_error, invoke, without_unread_maps

from pixelprior._io import CorruptResultsError
from pixelprior.experiment import ExperimentConfig, ExperimentRunner, read_results
from pixelprior.experiment.runner import ForeignRowError, read_run, row_problem

ROOT = Path(__file__).parents[2]
COMMITTED = sorted(p.parent for p in (ROOT / "results").glob("**/config.json"))


def tiny_config(out: Path, **overrides) -> ExperimentConfig:
    """The cheapest run that still runs: one image, one mode, a few queries."""
    values = dict(images=1, modes=["unconstrained"], popsize=4, maxiter=1, n_samples=2)
    return small_config(out, **{**values, **overrides})


def small_config(out: Path, **overrides) -> ExperimentConfig:
    values = dict(source="sample", images=2, seeds=[0], popsize=12, maxiter=3, n_samples=4,
                  batch_images=2, device="cpu", out=str(out),
                  modes=["unconstrained", "constrained"])
    values.update(overrides)
    return ExperimentConfig(**without_unread_maps(values))


def write_toml(config: ExperimentConfig, path: Path) -> Path:
    lines = [f"{key} = {json.dumps(value)}" for key, value in config.to_dict().items()
             if value is not None and key != "out"]
    path.write_text("\n".join(lines) + "\n")
    return path


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished tiny run: 2 images, seed 0, unconstrained and constrained."""
    out = tmp_path_factory.mktemp("finished") / "run"
    ExperimentRunner(small_config(out), log=lambda m: None).run(progress=False)
    return out


@pytest.fixture
def run(finished, tmp_path) -> Path:
    """A copy of the finished run, and its config as a TOML file beside it."""
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    write_toml(small_config(copy), tmp_path / "run.toml")
    return copy


def resume(run: Path):
    return invoke("reproduce", "cifar10", "--config", run.parent / "run.toml", "--out", run,
                  "--no-report")


def rows_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


def append(run: Path, text: str) -> int:
    """Append one line to results.jsonl; its line number."""
    path = run / "results.jsonl"
    with open(path, "a") as f:
        f.write(text + "\n")
    return len(path.read_text().splitlines())


# ------------------------------------------------------------------ rows of another run
FOREIGN = {  # how the appended row differs from a row of the run -> the phrase
    "another seed": ({"seed": 99}, "seed 99 is not a seed of this run (seeds [0])"),
    "another config hash, another image": (
        {"config_hash": "0123456789abcdef", "image_index": 500},
        "a row of another run (config hash 0123456789abcdef"),
    "another mode": ({"mode": "weighted"}, "mode 'weighted' is not a mode of this run"),
    "an image outside the selection": ({"image_index": 500},
                                       "image 500 is not one of this run's 2 images"),
}


@pytest.mark.parametrize("case", sorted(FOREIGN))
def test_a_row_of_another_run_is_refused_by_report_and_resume(run, case):
    change, phrase = FOREIGN[case]
    clean = rows_of(run)
    line = append(run, json.dumps({**clean[0], **change}))
    before = listing(run)
    line_text = clean_error(invoke("report", run), 1, phrase)
    assert f"results.jsonl line {line}:" in line_text and "Remove the line" in line_text
    assert listing(run) == before, "the report wrote files from foreign rows"
    with pytest.raises(ForeignRowError, match=f"line {line}"):
        read_run(run)
    clean_error(resume(run), 1, phrase)
    assert listing(run) == before, "a refused resume changed the folder"


def test_the_run_itself_reports_its_own_numbers(run):
    result = invoke("report", run)
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "summary.json").read_text())
    for mode in ("unconstrained", "constrained"):
        wanted = sum(r["success"] for r in rows_of(run) if r["mode"] == mode) / 2
        assert summary["modes"][mode]["success_rate"][0] == pytest.approx(wanted)


def test_a_resume_counts_only_its_own_rows(run):
    """A finished run resumed has nothing to do (not 25/25 from a foreign row, then an
    internal error): every row is the run's."""
    result = resume(run)
    assert result.exit_code == 0, result.output
    assert len(read_results(run / "results.jsonl")) == 4


def test_rows_of_the_same_config_with_another_image_count_are_kept(run):
    """A run whose config.json was lost and is run again with more images keeps its rows
    (the same attacks on the same images); any other hash is refused."""
    (run / "config.json").unlink()
    (run / "selection.json").unlink()
    bigger = small_config(run, images=3)
    toml = write_toml(bigger, run.parent / "bigger.toml")
    result = invoke("reproduce", "cifar10", "--config", toml, "--out", run, "--no-report")
    assert result.exit_code == 0, result.output
    rows = read_results(run / "results.jsonl")
    assert len(rows) == 6 and {r["config_hash"] for r in rows[:4]} == {
        small_config(run).digest()}


# ------------------------------------------------------------------ damaged rows
DAMAGED = {  # line appended -> phrase
    "success is a word": (lambda r: {**r, "success": "yes"},
                          "success must be true or false, got \"yes\""),
    "a JSON list as a row": (lambda r: [r["seed"], r["mode"]], "a JSON list, not a row"),
    "no seed": (lambda r: {k: v for k, v in r.items() if k != "seed"},
                "the field 'seed' is missing"),
    "queries are text": (lambda r: {**r, "queries": "many"}, "queries must be an integer"),
    "seconds are null": (lambda r: {**r, "seconds": None}, "seconds must be a finite number"),
    "image index is a float": (lambda r: {**r, "image_index": 1.5},
                               "image_index must be an integer"),
    "mode is a number": (lambda r: {**r, "mode": 3}, "mode must be a string"),
    "pixels without colours": (lambda r: {**r, "pixels": [{"x": 1, "y": 2}]},
                               "pixels[0] must be an object with x, y, old and new"),
    "a negative pixel": (lambda r: {**r, "pixels": [{"x": -1, "y": 2, "old": [0, 0, 0],
                                                     "new": [1, 1, 1]}]},
                         "pixels[0].x must be an integer >= 0"),
    "pixels is a string": (lambda r: {**r, "pixels": "(3, 4)"}, "pixels must be a list"),
    "a success without a pixel": (lambda r: {**r, "success": True, "pixels": []},
                                  "a success that changed no pixel"),
    "seed is a bool": (lambda r: {**r, "seed": True}, "seed must be an integer"),
    # impossible values (issue 25): never reach the report or an IndexError
    "a color outside [0, 1]": (lambda r: {**r, "pixels": [{**r["pixels"][0],
                                                           "new": [7.0, -2.0, 0.5]}]},
                               "pixels[0].new must be a color of 3 values in [0, 1]"),
    "a color of another channel count": (lambda r: {**r, "pixels": [{**r["pixels"][0],
                                                                     "old": [0.5, 0.5]}]},
                                         "pixels[0].old must be a color of 3 values"),
    "a probability of 7.5": (lambda r: {**r, "true_probability": 7.5},
                             "true_probability must lie in [0, 1] (a probability), got 7.5"),
    "a pixel outside the image": (lambda r: {**r, "pixels": [{**r["pixels"][0], "x": 99}]},
                                  "pixels[0] at (99, "),
    "a label outside the model's classes": (lambda r: {**r, "true_label": 99},
                                            "true_label 99 is not a class of the model "
                                            "(classes 0..9)"),
    "an adversarial label outside the classes": (lambda r: {**r, "adversarial_label": 10},
                                                 "adversarial_label 10 is not a class"),
    # hand edits the report read as they were (an audit: 150% verified, a stage of none)
    "a stage that is none": (lambda r: {**r, "decided_by": "bogus"},
                             'decided_by "bogus" is none of corners, refine'),
    "a verified share of 2": (lambda r: {**r, "verified_volume": 2.0},
                              "verified_volume must lie in [0, 1] (a share)"),
    "generations past maxiter": (lambda r: {**r, "generations": 500},
                                 "generations 500 is past the run's maxiter (3)"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_a_damaged_row_is_one_line_naming_its_line(run, case):
    make, phrase = DAMAGED[case]
    rows = rows_of(run)
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[1:]))
    line = append(run, json.dumps(make(rows[0])))
    before = listing(run)
    text = clean_error(invoke("report", run), 1, phrase)
    assert f"line {line}" in text
    clean_error(resume(run), 1, phrase)
    assert listing(run) == before


def test_committed_row_fields_all_pass():
    for folder in COMMITTED:
        for row in read_results(folder / "results.jsonl"):
            assert row_problem(row) is None, (folder, row)


def test_a_pixel_outside_the_image_says_where_and_the_size(run):
    rows = rows_of(run)
    bad = {**rows[0], "pixels": [{**rows[0]["pixels"][0], "x": 99, "y": 4}]}
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [bad, *rows[1:]]))
    clean_error(invoke("report", run), 1, "line 1: damaged row: pixels[0] at (99, 4) lies "
                "outside the 32×32 image (x 0..31, y 0..31)")


@pytest.mark.checkout
def test_committed_runs_are_checked_against_their_model_without_a_record(tmp_path):
    """Folders of earlier versions record no image shape or classes: a registered model
    gives them, so their rows are checked by value too."""
    folder = tmp_path / "cifar10"
    shutil.copytree(ROOT / "results" / "cifar10", folder)
    assert "image_shape" not in json.loads((folder / "selection.json").read_text())
    rows = rows_of(folder)
    rows[3]["adversarial_label"] = 10
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(CorruptResultsError, match="line 4: damaged row: adversarial_label 10 "
                                                  "is not a class of the model"):
        read_run(folder)


# ------------------------------------------------------------------ damaged records
RECORDS = {  # file, text -> phrase
    "config.json is not JSON": ("config.json", "{garbage", "config.json: not valid JSON"),
    "config.json is a list": ("config.json", "[1, 2]", "not a run's config.json"),
    "config.json without a hash": ("config.json", '{"config": {}}', '"hash" must be'),
    "config.json with a wrong type": ("config.json",
                                      '{"hash": "x", "config": {"popsize": "forty"}}',
                                      "popsize must be an integer"),
    "selection.json is not JSON": ("selection.json", "not json",
                                   "selection.json: not valid JSON"),
    "selection.json with text indices": ("selection.json",
                                         '{"indices": "0,1", "positions": [0, 1]}',
                                         "indices must be a list of integers"),
    "selection.json of unequal lists": ("selection.json",
                                        '{"indices": [0, 1], "positions": [0]}',
                                        "differ in length"),
}


@pytest.mark.parametrize("case", sorted(RECORDS))
def test_a_damaged_record_is_one_line(run, case):
    name, text, phrase = RECORDS[case]
    (run / name).write_text(text)
    before = listing(run)
    clean_error(invoke("report", run), 1, phrase)
    clean_error(resume(run), 1, phrase)
    assert listing(run) == before


def test_a_missing_selection_is_said_by_the_report(run):
    (run / "selection.json").unlink()
    clean_error(invoke("report", run), 1, "selection.json is missing")


def test_a_damaged_record_with_force_moves_the_old_run_aside(run):
    (run / "config.json").write_text("{garbage")
    toml = write_toml(tiny_config(run), run.parent / "tiny.toml")
    result = invoke("reproduce", "cifar10", "--config", toml, "--out", run, "--no-report",
                    "--force")
    assert result.exit_code == 0, result.output
    (aside,) = run.glob("old-*")
    assert (aside / "config.json").read_text() == "{garbage"
    assert len(read_results(aside / "results.jsonl")) == 4
    assert len(read_results(run / "results.jsonl")) == 1


def test_a_corrupt_maps_file_is_noted_not_silently_dropped(run, monkeypatch):
    monkeypatch.setattr("pixelprior.report.figures.examples_figure", lambda *a, **k: None)
    (path,) = (run / "maps" / "constrained").glob("seed*.npz")
    path.write_bytes(b"PK\x03\x04 not a zip")
    result = invoke("report", run)
    assert result.exit_code == 0, result.output
    relative = f"maps/constrained/{path.name}"
    assert f"note: {relative} could not be used" in " ".join(result.output.split())
    assert f"{relative} could not be used" in (run / "report.md").read_text()


def test_a_maps_file_of_the_wrong_shape_is_noted(run, monkeypatch):
    import numpy as np

    monkeypatch.setattr("pixelprior.report.figures.examples_figure", lambda *a, **k: None)
    (path,) = (run / "maps" / "constrained").glob("seed*.npz")
    np.savez(path, image_index=np.array([0, 1]), sensitivity=np.zeros((1, 32, 32), "f4"))
    result = invoke("report", run)
    assert result.exit_code == 0, result.output
    assert "sensitivity must be float [2, H, W]" in " ".join(result.output.split())


def test_a_damaged_environment_record_is_kept_aside_and_the_run_resumes(run):
    (run / "environment.json").write_text("{half")
    result = resume(run)
    assert result.exit_code == 0, result.output
    (kept,) = run.glob("environment-unreadable-*.json")
    assert kept.read_text() == "{half"
    assert json.loads((run / "environment.json").read_text())["pixelprior"]


# ------------------------------------------------------------------ --out
def test_out_refuses_a_folder_of_other_files(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"jpeg")
    toml = write_toml(small_config(folder), tmp_path / "c.toml")
    clean_error(invoke("reproduce", "cifar10", "--config", toml, "--out", folder,
                       "--no-report"), 2, "is not empty and holds no pixelprior run")
    assert sorted(p.name for p in folder.iterdir()) == ["holiday.jpg"]


def test_a_folder_holding_only_the_config_file_of_the_run_is_not_someone_elses(tmp_path):
    folder = tmp_path / "new-run"
    folder.mkdir()
    toml = write_toml(tiny_config(folder), folder / "config.toml")
    (folder / ".gitignore").write_text("*.pdf\n")
    result = invoke("reproduce", "cifar10", "--config", toml, "--out", folder, "--no-report")
    assert result.exit_code == 0, result.output
    assert len(read_results(folder / "results.jsonl")) == 1


def test_a_setting_no_mode_reads_is_refused_unless_the_folder_records_it(tmp_path):
    """A config file setting n_samples for unconstrained DE alone is refused; a folder an
    earlier version made with it still resumes with the same file (a review)."""
    config = dataclasses.replace(tiny_config(tmp_path / "run"), n_samples=7)
    toml = write_toml(config, tmp_path / "run.toml")
    fresh = invoke("reproduce", "cifar10", "--config", toml, "--out", tmp_path / "other",
                   "--no-report")
    clean_error(fresh, 2, "reads n_samples")
    ExperimentRunner(config, log=lambda note: None).run()  # as an earlier version made it
    resumed = invoke("reproduce", "cifar10", "--config", toml, "--out", config.out,
                     "--no-report")
    assert resumed.exit_code == 0, resumed.output


def test_a_foreign_results_file_is_refused_and_nothing_is_left_behind(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "results.jsonl").write_text('{"a": 1}\n{"a": 2}\n')
    toml = write_toml(small_config(folder), tmp_path / "c.toml")
    before = listing(folder)
    clean_error(invoke("reproduce", "cifar10", "--config", toml, "--out", folder,
                       "--no-report"), 1, "line 1: damaged row: the field 'seed' is missing")
    assert listing(folder) == before and sorted(p.name for p in folder.iterdir()) == [
        "results.jsonl"]


def test_force_on_a_folder_of_other_files_moves_only_pixelprior_files(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "results.jsonl").write_text('{"a": 1}\n')  # a stale file of pixelprior's name
    toml = write_toml(tiny_config(folder), tmp_path / "c.toml")
    result = invoke("reproduce", "cifar10", "--config", toml, "--out", folder, "--no-report",
                    "--force")
    assert result.exit_code == 0, result.output
    assert (folder / "notes.txt").read_text() == "mine"
    (aside,) = folder.glob("old-*")
    assert (aside / "results.jsonl").read_text() == '{"a": 1}\n'
    said = "".join(result.output.split())
    assert "movedinto" in said and aside.name in said
    assert len(read_results(folder / "results.jsonl")) == 1


def test_force_with_another_config_leaves_the_users_files_in_place(run):
    (run / "config.toml").write_text("# my notes\n")
    changed = write_toml(tiny_config(run, popsize=5), run.parent / "changed.toml")
    result = invoke("reproduce", "cifar10", "--config", changed, "--out", run, "--no-report",
                    "--force")
    assert result.exit_code == 0, result.output
    (aside,) = run.glob("old-*")
    assert (run / "config.toml").read_text() == "# my notes\n"
    assert not (aside / "config.toml").exists()
    assert {p.name for p in aside.iterdir()} >= {"results.jsonl", "config.json", "maps",
                                                  "selection.json", "environment.json"}


def test_the_cost_is_said_before_a_run(tmp_path):
    toml = write_toml(tiny_config(tmp_path / "r", images=2), tmp_path / "c.toml")
    result = invoke("reproduce", "cifar10", "--config", toml, "--out", tmp_path / "r",
                    "--no-report")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "cost: at most 16 model queries for 2 attacks" in text  # 2 × 4 × (1 + 1)
    assert "queries/s (an estimate" in text and "warning:" not in text


def test_a_large_run_is_warned_about():
    from pixelprior.experiment.runner import max_queries
    from pixelprior.experiment.scans import cost_lines

    config = ExperimentConfig(images=1000, device="cpu")
    assert max_queries(config, "unconstrained") == 400 * 101
    assert max_queries(config, "scan") == 1024 * 27
    lines = cost_lines([(10**7 * 3, "search")], config.model, "cpu", "10,000 attacks",
                       advice="lower --images")
    assert lines[0].startswith("cost: at most 30,000,000 model queries for 10,000 attacks")
    assert lines[1].startswith("warning: this is a large job") and "lower --images" in lines[1]
    assert "not estimated on cuda" in cost_lines([(10, "scan")], config.model, "cuda", "x")[0]


# ------------------------------------------------------------------ a full disk
def test_a_full_disk_names_the_file_keeps_the_rows_and_resumes(tmp_path, monkeypatch):
    import numpy as np

    folder = tmp_path / "run"
    toml = write_toml(tiny_config(folder, images=2, modes=["constrained"], batch_images=1),
                      tmp_path / "c.toml")
    real = np.savez_compressed
    calls = {"n": 0}

    def full_on_the_second(f, **arrays):
        calls["n"] += 1
        if calls["n"] == 2:
            f.write(b"PK partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(f, **arrays)

    monkeypatch.setattr(np, "savez_compressed", full_on_the_second)
    command = ["reproduce", "cifar10", "--config", toml, "--out", folder, "--no-report"]
    line = clean_error(invoke(*command), 1, "no space left on device writing")
    assert str(folder / "maps" / "constrained") in line
    assert "rows written so far are kept; free space and run the same command to resume" in line
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
    assert len(read_results(folder / "results.jsonl")) == 1
    monkeypatch.setattr(np, "savez_compressed", real)
    assert invoke(*command).exit_code == 0
    assert len(read_results(folder / "results.jsonl")) == 2


# ------------------------------------------------------------------ committed results
@pytest.mark.parametrize("folder", COMMITTED, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_results_load_with_every_row_their_own(folder):
    rows, config, selection = read_run(folder)
    assert len(rows) == len(read_results(folder / "results.jsonl")) > 0
    assert {r["config_hash"] for r in rows} == {
        json.loads((folder / "config.json").read_text())["hash"]}


@pytest.mark.parametrize("folder", COMMITTED, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_results_report_identically(folder, tmp_path, request):
    from pixelprior.report import write_report

    committed = (folder / "report.md").read_text()
    figures = "No pipeline figure" in committed or "No example" in committed
    if figures:  # their notes come from drawing the figures: the images are needed
        request.getfixturevalue("shared_data")
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    write_report(copy, figures=figures, exports=False)
    assert (copy / "report.md").read_text() == committed


@pytest.mark.checkout
def test_a_committed_run_resumes_with_nothing_to_do(shared_data, tmp_path):
    copy = tmp_path / "cifar10"
    shutil.copytree(ROOT / "results" / "cifar10", copy)
    saved = json.loads((copy / "config.json").read_text())["config"]
    config = ExperimentConfig.from_dict({**saved, "out": str(copy), "device": "cpu"})
    rows = ExperimentRunner(config, log=lambda m: None).run(progress=False)
    assert len(rows) == 1000
    assert (copy / "results.jsonl").read_bytes() == (
        ROOT / "results" / "cifar10" / "results.jsonl").read_bytes()


def test_corrupt_results_error_is_the_base_of_foreign_rows():
    assert issubclass(ForeignRowError, CorruptResultsError)


def test_a_names_file_read_again_from_another_folder_is_checked_and_the_report_uses_the_runs(
        tmp_path, monkeypatch):
    """--classes names.txt by a relative path: a resume from another folder read another
    names.txt (the classes renamed, or labels mapped otherwise) without a word, and the
    report could only show indices. The run now records the names it read."""
    from pixelprior.experiment.records import read_record
    from pixelprior.experiment.rundir import InputsChangedError
    from pixelprior.report import write_report

    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
             "ship", "truck"]
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    (first / "names.txt").write_text("\n".join(names) + "\n")
    (second / "names.txt").write_text("\n".join([*names[:3], "kitten", *names[4:]]) + "\n")
    config = tiny_config(tmp_path / "run", classes="names.txt", images=2)
    monkeypatch.chdir(first)
    ExperimentRunner(config).run(progress=False)
    assert read_record(tmp_path / "run")["class_names"] == names
    monkeypatch.chdir(second)
    with pytest.raises(InputsChangedError,
                       match="names.txt call class 3 'kitten' now, where the run read 'cat'"):
        ExperimentRunner(config).run(progress=False)
    from pixelprior.report.figures import class_names_of
    assert class_names_of(config, tmp_path / "run") == tuple(names)
    write_report(tmp_path / "run", figures=False, exports=False)
    monkeypatch.chdir(first)  # the same file: resumed
    ExperimentRunner(config).run(progress=False)


def test_a_folder_of_an_earlier_version_records_no_class_names_on_a_resume(
        tmp_path, monkeypatch):
    """A review: resumed from another folder, an earlier version's run recorded the
    names read there, and the report named the old rows by them."""
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
             "ship", "truck"]
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    config = tiny_config(tmp_path / "run", classes="names.txt")
    monkeypatch.chdir(tmp_path)
    ExperimentRunner(config).run(progress=False)
    record_path = tmp_path / "run" / "config.json"
    record = json.loads(record_path.read_text())
    del record["class_names"]  # as an earlier version wrote it
    record_path.write_text(json.dumps(record))
    said = []
    ExperimentRunner(config, log=said.append).run(progress=False)
    assert "class_names" not in json.loads(record_path.read_text())
    assert any("does not record the class names" in line for line in said)
