"""What a report checks of the folder before it writes: a run still writing there makes
the report partial (said in the terminal, marked in report.md and summary.json, exit 0);
a folder that cannot be written is named, never a temporary file."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pixelprior._io import RunLock
from pixelprior.cli import app
from pixelprior.experiment import ExperimentConfig, ExperimentRunner
from pixelprior.report import write_report


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished tiny run: 2 bundled images, seed 0, two modes (4 attacks)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    config = ExperimentConfig(source="sample", images=2, seeds=[0], popsize=8, maxiter=2,
                              n_samples=2, batch_images=2, device="cpu", out=str(out))
    ExperimentRunner(config, log=lambda note: None).run()
    return out


@pytest.fixture
def run(finished, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def keep_rows(run: Path, count: int) -> None:
    """Leave the first ``count`` rows, as a run part way through has written."""
    lines = (run / "results.jsonl").read_text().splitlines()[:count]
    (run / "results.jsonl").write_text("".join(line + "\n" for line in lines))


# ------------------------------------------------------------------ a run in progress
def test_a_report_of_a_run_in_progress_is_partial_and_says_so(run):
    keep_rows(run, 2)
    with RunLock(run, command="pixelprior reproduce cifar10 (still running)"):
        result = invoke("report", run)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert f"Partial report: the run in {run} is in progress (pid {os.getpid()}" in said
    assert "(still running)" in said and "the 2 of 4 attacks finished so far" in said
    text = (run / "report.md").read_text()
    assert text.splitlines()[2].startswith("**Partial report: the run in")
    assert "2 of 4 attacks finished so far" in text
    partial = json.loads((run / "summary.json").read_text())["partial"]
    assert (partial["finished"], partial["of"]) == (2, 4)


def test_a_report_of_an_interrupted_run_is_partial_and_names_uneven_modes(run):
    """A run killed part way and not resumed was reported as if finished, its modes
    compared on different images."""
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    kept = [row for row in rows if not (row["mode"] == "constrained"
                                        and row["image_index"] == rows[-1]["image_index"])]
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    result = invoke("report", run)
    assert result.exit_code == 0, result.output
    text = " ".join((run / "report.md").read_text().split())
    assert f"the run in {run} stopped after 3 of its 4 attacks" in text
    assert "The modes reached different attacks (constrained 1, unconstrained 2)" in text
    partial = json.loads((run / "summary.json").read_text())["partial"]
    assert (partial["finished"], partial["of"], partial["run"]) == (3, 4, None)


def test_the_exports_hold_every_row_the_misclassified_too(run):
    """results.csv and .parquet dropped the rows of images the model misclassified before
    any attack (the tables leave them out, counted; the exports are the rows)."""
    import pandas as pd
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    first = rows[0]["image_index"]
    for row in rows:
        if row["image_index"] == first:  # as a run writes an image it already gets wrong
            wrong = (row["true_label"] + 1) % 10
            row.update(clean_correct=False, success=True, original_label=wrong,
                       adversarial_label=wrong, pixels=[], queries=0, generations=None)
            row.pop("x", None), row.pop("y", None)
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = invoke("report", run)
    assert result.exit_code == 0, result.output
    for exported in (pd.read_csv(run / "results.csv"), pd.read_parquet(run / "results.parquet")):
        assert len(exported) == len(rows) and (~exported["clean_correct"]).sum() == 2
    assert "2 (seed, mode, image) rows were left out" in (run / "report.md").read_text()


def test_a_report_of_a_finished_run_is_not_partial(run):
    assert (run / ".lock").exists()  # left by the finished run, held by no one
    result = invoke("report", run)
    assert result.exit_code == 0, result.output
    assert "Partial" not in result.output and "Partial" not in (run / "report.md").read_text()
    assert "partial" not in json.loads((run / "summary.json").read_text())


def test_a_run_in_progress_without_a_finished_attack_says_so(run):
    keep_rows(run, 0)
    with RunLock(run, command="pixelprior reproduce cifar10"):
        result = invoke("report", run)
    assert result.exit_code == 2 and "Traceback" not in result.output
    said = " ".join(result.output.split())
    assert "error: " in said and "has finished no attack yet; report when it has" in said


# ------------------------------------------------------------------ a folder not writable
def test_a_folder_that_is_not_writable_is_named_before_any_work(run, monkeypatch):
    real = os.access

    def access(path, mode, *args, **kwargs):  # the folder refuses writes (as for a user)
        if Path(path) == run and mode & os.W_OK:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    before = sorted(p.name for p in run.iterdir())
    result = invoke("report", run)
    assert result.exit_code == 2 and "Traceback" not in result.output
    said = " ".join(result.output.split())
    assert f"error: {run} is not writable: the report writes report.md" in said
    assert ".tmp" not in said
    assert sorted(p.name for p in run.iterdir()) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_named(run):  # pragma: no cover - runs as a normal user
    run.chmod(0o555)
    try:
        result = invoke("report", run)
    finally:
        run.chmod(0o755)
    assert result.exit_code == 2 and f"{run} is not writable" in result.output


def test_a_write_refused_by_the_folder_names_the_folder_not_a_temp_file(run, monkeypatch):
    """A folder that refuses the write itself (a read-only mount passes the access check
    of some systems): the line names the folder and says it is not writable."""
    import errno

    from pixelprior._io import OutputLocationError
    from pixelprior._io import atomic as atomic_module

    def refused(path, mode="r", *args, **kwargs):
        if str(path).endswith(".tmp"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(atomic_module, "open", refused, raising=False)
    with pytest.raises(OutputLocationError) as caught:
        write_report(run, figures=False, exports=False)
    message = str(caught.value)
    assert message.startswith(f"{run} is not writable (read-only file system)")
    assert ".tmp" not in message
