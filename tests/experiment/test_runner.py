"""The runner's orchestration on a tiny model: resume skips what is done and attacks
only the rest, groups share (seed, mode) and hold at most ``batch_images``, an
interruption keeps every finished group, rows do not depend on the batching, progress
is told to the reporter given, and the cost is counted from the images' size."""

from __future__ import annotations

import json
import os
import signal

import pytest

from pixelprior._io import Interrupted, Interrupts, read_rows
from pixelprior.experiment import ExperimentRunner
from pixelprior.experiment import runner as runner_module
from pixelprior.experiment.runner import _groups
from pixelprior.search.verify import REVISION

TIMING = {"seconds", "group_seconds", "finished", "group_size"}


def comparable(rows: list[dict]) -> dict:
    """Rows by (seed, mode, image), without the fields that measure time or batching."""
    return {(r["seed"], r["mode"], r["image_index"]): {k: v for k, v in r.items()
                                                       if k not in TIMING} for r in rows}


class Recorder:
    """A progress reporter that remembers what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start(self, label, total, done, successes, what) -> None:
        self.calls.append(("start", label, total, done, successes))

    def advance(self, count, successes) -> None:
        self.calls.append(("advance", count, successes))

    def stop(self) -> None:
        self.calls.append(("stop",))


def quiet(config, **kwargs) -> ExperimentRunner:
    return ExperimentRunner(config, log=lambda note: None, **kwargs)


# ------------------------------------------------------------------ groups
def test_groups_share_seed_and_mode_and_hold_at_most_the_batch():
    work = [(0, "a", p, p) for p in range(5)] + [(0, "b", p, p) for p in range(3)]
    groups = list(_groups(work, 2))
    assert [len(g) for g in groups] == [2, 2, 1, 2, 1]
    assert all(len({item[:2] for item in group}) == 1 for group in groups)
    assert [item for group in groups for item in group] == work  # nothing lost or repeated


def test_a_run_attacks_in_groups_of_its_batch(tiny_run):
    seen: list[list[dict]] = []
    rows = quiet(tiny_run()).run(on_group=seen.append)
    assert len(rows) == 10  # 5 images x 2 modes x 1 seed
    assert [len(group) for group in seen] == [2, 2, 1, 2, 2, 1]
    for group in seen:
        assert len({(r["seed"], r["mode"]) for r in group}) == 1
        assert {r["group_size"] for r in group} == {len(group)}


def test_a_gradcam_layer_the_model_has_no_module_of_is_refused_before_any_work(tiny_run,
                                                                             tmp_path):
    from pixelprior.experiment.config import ConfigError

    with pytest.raises(ConfigError, match="map_options.layer: the GradCAM layer 'features' is "
                                          "no module of the model .its convolutions and "
                                          "stages include conv"):
        quiet(tiny_run(modes=["scan:gradcam"], map_options={"layer": "features"})).run()
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="map_options.layer: the GradCAM layer 'head' "
                                          "outputs .1, 3., not a map"):
        quiet(tiny_run(modes=["scan:gradcam"], map_options={"layer": "head"})).run()
    assert not (tmp_path / "run").exists()
    rows = quiet(tiny_run(modes=["scan:gradcam"], map_options={"layer": "conv"})).run()
    assert len(rows) == 5


# ------------------------------------------------------------------ resume
def test_resume_attacks_only_what_is_missing(tiny_run):
    config = tiny_run()
    first = quiet(config).run()
    again: list[list[dict]] = []
    assert comparable(quiet(config).run(on_group=again.append)) == comparable(first)
    assert again == []  # finished: nothing attacked
    results = os.path.join(config.out, "results.jsonl")
    kept = read_rows(results)[:7]
    with open(results, "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in kept))
    resumed: list[list[dict]] = []
    rows = quiet(config).run(on_group=resumed.append)
    attacked = [(r["mode"], r["image_index"]) for group in resumed for r in group]
    assert attacked == [("fast", 2), ("fast", 3), ("fast", 4)]  # the three removed rows
    assert comparable(rows) == comparable(first)
    assert read_rows(results)[:7] == kept  # earlier rows untouched, in place


def test_progress_is_told_to_the_reporter_given(tiny_run):
    config = tiny_run(modes=["fast"])
    recorder = Recorder()
    rows = quiet(config).run(progress=recorder)
    fooled = sum(r["success"] for r in rows)
    assert recorder.calls[0] == ("start", "attack", 5, 0, 0)
    advances = [call for call in recorder.calls if call[0] == "advance"]
    assert [call[1] for call in advances] == [2, 2, 1]
    assert sum(call[2] for call in advances) == fooled
    assert recorder.calls[-1] == ("stop",)
    resumed = Recorder()
    quiet(config).run(progress=resumed)
    assert resumed.calls == [("start", "attack", 5, 5, fooled), ("stop",)]


def test_the_runner_draws_no_bar_itself(tiny_run):
    with pytest.raises(TypeError, match="ProgressBar"):
        quiet(tiny_run()).run(progress=True)


# ------------------------------------------------------------------ interruption
def test_an_interruption_keeps_the_finished_groups_and_the_run_resumes(tiny_run):
    config = tiny_run()
    reference = quiet(tiny_run("reference")).run()
    runner = quiet(config)

    def stop_after_two_groups(group: list[dict]) -> None:
        if runner.kept == 4:
            raise Interrupted(signal.SIGTERM)

    with pytest.raises(Interrupted):
        runner.run(on_group=stop_after_two_groups)
    assert (runner.kept, runner.total) == (4, 10)
    assert len(read_rows(os.path.join(config.out, "results.jsonl"))) == 4
    assert comparable(quiet(config).run()) == comparable(reference)


def test_a_signal_during_a_write_waits_for_the_row(tiny_run, monkeypatch):
    """SIGTERM arriving while a group's rows are written: the rows are written whole,
    then the run ends (never a torn row, never a row lost)."""
    config = tiny_run(modes=["fast"])
    real = runner_module.append_rows

    def append_then_signal(path, rows):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives inside the critical section
        real(path, rows)

    monkeypatch.setattr(runner_module, "append_rows", append_then_signal)
    runner = quiet(config)
    with Interrupts() as interrupts, pytest.raises(Interrupted):
        runner.run(interrupts=interrupts)
    rows = read_rows(os.path.join(config.out, "results.jsonl"))
    assert len(rows) == runner.kept == 2  # the first group, whole


# ------------------------------------------------------------------ batching
def test_rows_do_not_depend_on_the_batching(tiny_run):
    one = quiet(tiny_run("one", batch_images=1)).run()
    five = quiet(tiny_run("five", batch_images=5)).run()
    assert comparable(one) == comparable(five)
    assert {r["group_size"] for r in one} == {1}
    assert {r["group_size"] for r in five} == {5}


# ------------------------------------------------------------------ cost
def test_the_cost_of_a_model_without_a_declared_size_comes_from_the_images(tiny_run,
                                                                           tiny_images):
    """A user model that runs at any size: the scan's cost is counted from the images
    (12 x 10 pixels x 27 colors), never 'at most 0 model queries'."""
    wide = tiny_images("wide.npz", count=2, height=10, width=12)
    config = tiny_run(data=str(wide), images=2, modes=["scan", "fast"])
    said: list[str] = []
    ExperimentRunner(config, log=said.append).run()
    (cost,) = [line for line in said if line.startswith("cost:")]
    scan, fast = 2 * 120 * 27, 2 * (8 * 120 + 8 * 256)
    assert cost.startswith(f"cost: at most {scan + fast:,} model queries for 4 attacks")
    assert "at most 0 " not in cost
    # the fast mode's verifier (on by default where it fits) is said, not left out
    assert "not counted: the queries of fast's verifier where it runs" in cost


# ------------------------------------------------------------------ the verify stage
def test_a_fast_run_verifies_reports_and_resumes(tiny_run, tmp_path):
    """``fast`` with ``fast_verify="on"``: every row says what the verifier found, the
    report has its section and ``verification.csv``, and a resume attacks nothing."""
    from pixelprior.report import write_report

    config = tiny_run(modes=["fast"], fast_verify="on")
    rows = quiet(config).run()
    assert len(rows) == 5
    for row in rows:
        assert {"verified", "verified_volume", "lowest_bound", "boxes"} <= row.keys()
        assert row["decided_by"] in {"corners", "refine", "certificate", "verified",
                                     "unknown", "budget"}
        if row["decided_by"] == "verified":
            assert not row["success"] and row["verified"] and row["verified_volume"] == 1.0
            assert isinstance(row["float32_proved"], bool)
        else:
            assert row["float32_proved"] is None
        if row["success"]:
            assert not row["verified"]
        ran = row["decided_by"] in {"verified", "unknown"}
        assert row["verifier"] == (REVISION if row["verified_volume"] is not None else None)
        assert not ran or row["verifier"] == REVISION
    assert any(row["decided_by"] == "verified" for row in rows)  # the tiny net is provable
    write_report(config.out)
    report = (tmp_path / "run" / "report.md").read_text()
    assert "### Verified against any color" in report
    assert "of them float32 proved" in report
    assert f"Verifier: revision {REVISION} (" in report
    assert (tmp_path / "run" / "verification.csv").is_file()
    again = quiet(config).run()
    assert comparable(again) == comparable(rows)


def _rewrite_verified_rows(path, change) -> int:
    rows = read_rows(path)
    changed = [change(row) for row in rows if row["verified_volume"] is not None]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return len(changed)


def test_a_fast_run_resumed_by_another_verifier_revision_is_refused(tiny_run, tmp_path):
    """Rows verified by another revision of the verifier are another algorithm's: the
    resume is refused before any work, naming the line and both revisions; ``--force``
    moves them aside."""
    from pixelprior.experiment import ForeignRowError

    config = tiny_run(modes=["fast"], fast_verify="on")
    quiet(config).run()
    path = tmp_path / "run" / "results.jsonl"
    assert _rewrite_verified_rows(path, lambda row: row.update(verifier=REVISION - 1)) > 0
    written = path.read_bytes()
    with pytest.raises(ForeignRowError, match=rf"results.jsonl line \d+: a row verified by "
                       rf"verifier revision {REVISION - 1}; this pixelprior verifies with "
                       rf"revision {REVISION}.*--force"):
        quiet(config).run()
    assert path.read_bytes() == written  # nothing written
    rows = quiet(config, force=True).run()
    assert len(rows) == 5 and {r["verifier"] for r in rows} <= {REVISION, None}


def test_rows_that_do_not_record_the_revision_are_refused_by_a_later_one(tiny_run,
                                                                         tmp_path):
    """Rows that do not record the revision were made by revision 2 or before: a later
    revision refuses them (a folder of such rows is never resumed by two algorithms);
    rows the verifier did not run on, and reading a finished run, are not concerned."""
    from pixelprior.experiment.records import read_record, read_selection
    from pixelprior.experiment.rundir import LAST_UNRECORDED, RunRows

    config = tiny_run(modes=["fast"], fast_verify="on")
    quiet(config).run()
    path = tmp_path / "run" / "results.jsonl"
    _rewrite_verified_rows(path, lambda row: row.pop("verifier"))
    selection, digest = read_selection(tmp_path / "run"), read_record(tmp_path / "run")["hash"]
    rows = read_rows(path)
    verdicts = [RunRows(digest, config, selection, revision).problem(row)
                for row in rows for revision in (None, LAST_UNRECORDED, LAST_UNRECORDED + 1)]
    later = verdicts[2::3]
    assert verdicts[0::3] == verdicts[1::3] == [None] * len(rows)
    assert [v is not None for v in later] == [r["verified_volume"] is not None for r in rows]
    assert any(later) and all(v == (
        f"a row verified before rows recorded the verifier revision (revision "
        f"{LAST_UNRECORDED} or earlier); this pixelprior verifies with revision "
        f"{LAST_UNRECORDED + 1}, and one run's rows are of one algorithm", True)
        for v in later if v is not None)


def test_rows_verified_before_the_revision_was_recorded_resume_with_a_note(
        tiny_run, tmp_path, monkeypatch):
    """Rows that do not record the revision (revision 2 or before) are resumed with a
    note by revision 2, the last that made them, and refused by a later one in one
    line, nothing written (revision 3 counts more in the float32 estimate)."""
    from pixelprior.experiment import ForeignRowError
    from pixelprior.experiment.rundir import LAST_UNRECORDED
    from pixelprior.search import fast

    config = tiny_run(modes=["fast"], fast_verify="on")
    quiet(config).run()
    path = tmp_path / "run" / "results.jsonl"
    _rewrite_verified_rows(path, lambda row: row.pop("verifier"))
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))  # one to do
    count = sum(row["verified_volume"] is not None for row in read_rows(path))
    assert count > 0
    written = path.read_bytes()
    if REVISION > LAST_UNRECORDED:
        with pytest.raises(ForeignRowError, match=f"revision {LAST_UNRECORDED} or earlier"):
            quiet(config).run()
        assert path.read_bytes() == written
    for module in (runner_module, fast):  # as revision 2 ran
        monkeypatch.setattr(module, "REVISION", LAST_UNRECORDED)
    said: list[str] = []
    rows = ExperimentRunner(config, log=said.append).run()
    assert len(rows) == 5
    assert [line for line in said if "before rows recorded its revision" in line] == [
        f"note: {count} row(s) in {tmp_path / 'run'} were decided by the verifier before "
        "rows recorded its revision (each row's version names its commit); new rows are "
        f"verified by revision {LAST_UNRECORDED}"]
