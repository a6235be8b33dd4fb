"""A run knows what it ran on (issue 25): ``config.json`` records the model's fingerprint
and a hash per field, ``selection.json`` a fingerprint per image. A resume and a report
refuse a folder whose model file, images or config fields changed, naming what changed
(``--force`` starts afresh; a report says to restore the file); folders made before
these were recorded say "not recorded" and are read as before; data that gives one index
to two images is refused before anything is written, and an old selection with such a
repeat says what to do rather than send the user in a circle."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pixelprior.cli import app
from pixelprior.data import ImageSet, sha256sum
from pixelprior.experiment import (
    ExperimentConfig,
    ExperimentRunner,
    InputsChangedError,
    SelectionError,
    select_images,
)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def clean_error(result, code: int, *phrases: str) -> str:
    """Exit ``code``, one error line holding every phrase, no traceback; the line."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    errors = [part for part in text.split("error: ")[1:]]
    assert len(errors) == 1, result.output
    for phrase in phrases:
        assert phrase in errors[0], result.output
    return errors[0]


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def write_toml(config: ExperimentConfig, path: Path) -> Path:
    lines = [f"{key} = {json.dumps(value)}" for key, value in config.to_dict().items()
             if value is not None and key != "out"]
    path.write_text("\n".join(lines) + "\n")
    return path


def resume(config: ExperimentConfig, *extra: str):
    toml = write_toml(config, Path(config.out).parent / "run.toml")
    return invoke("run", "--config", toml, "--out", config.out, "--no-report", *extra)


@pytest.fixture
def script_run(tmp_path, tiny_run, tiny_kit):
    """A finished run of a TorchScript model file on five tiny images."""
    model = tiny_kit.write_tiny_script(tmp_path / "model.pt")
    config = tiny_run(model=str(model), modes=["fast"])
    ExperimentRunner(config, log=lambda note: None).run()
    return config


# ------------------------------------------------------------------ what is recorded
def test_a_run_records_its_model_images_and_field_hashes(script_run):
    out = Path(script_run.out)
    record = json.loads((out / "config.json").read_text())
    assert record["model_fingerprint"] == sha256sum(Path(script_run.model))  # the file's bytes
    assert record["field_hashes"] == script_run.field_hashes()
    assert "maxiter" in record["field_hashes"] and "out" not in record["field_hashes"]
    selection = json.loads((out / "selection.json").read_text())
    assert len(selection["fingerprints"]) == len(set(selection["fingerprints"])) == 5
    assert selection["image_shape"] == [3, 8, 8] and selection["num_classes"] == 3
    with np.load(script_run.data) as npz:
        assert selection["labels"] == npz["labels"][selection["positions"]].tolist()


# ------------------------------------------------------------------ the model
def test_a_changed_model_file_is_named_by_resume_and_report(script_run, tiny_kit):
    out = Path(script_run.out)
    tiny_kit.write_tiny_script(Path(script_run.model), seed=1)  # another model under the same name
    before = listing(out)
    line = clean_error(resume(script_run), 1, f"the model file {script_run.model} changed",
                       "--force")
    assert "start afresh" in line
    clean_error(invoke("report", out), 1, f"the model file {script_run.model} changed",
                "restore it")
    assert listing(out) == before


def test_a_changed_factory_model_is_named(tmp_path, tiny_run, tiny_kit):
    config = tiny_run(modes=["fast"])
    ExperimentRunner(config, log=lambda note: None).run()
    tiny_kit.write_tiny_net(tmp_path, seed=1)  # the factory now draws other weights
    with pytest.raises(InputsChangedError, match=r"the model .*nets.py:tiny \(its weights\) "
                                                 "changed"):
        ExperimentRunner(config, log=lambda note: None).run()


def test_force_starts_afresh_after_the_model_changed(script_run, tiny_kit):
    out = Path(script_run.out)
    tiny_kit.write_tiny_script(Path(script_run.model), seed=1)
    result = resume(script_run, "--force")
    assert result.exit_code == 0, result.output
    (aside,) = out.glob("old-*")
    old = json.loads((aside / "config.json").read_text())["model_fingerprint"]
    new = json.loads((out / "config.json").read_text())["model_fingerprint"]
    assert old != new and len((out / "results.jsonl").read_text().splitlines()) == 5


# ------------------------------------------------------------------ the images
def test_a_changed_image_is_named_by_its_place_in_the_selection(script_run):
    out = Path(script_run.out)
    with np.load(script_run.data) as npz:
        arrays = {name: npz[name].copy() for name in npz.files}
    arrays["images"][2] = 255 - arrays["images"][2]  # the third image is another now
    np.savez(script_run.data, **arrays)
    before = listing(out)
    clean_error(resume(script_run), 1, "image 3 of the selection (index 2) changed",
                "--force")
    clean_error(invoke("report", out), 1, "image 3 of the selection (index 2) changed",
                "restore the data")
    assert listing(out) == before


def test_a_changed_label_is_named_by_resume_and_report(script_run):
    """The same pixels under another label were attacked as another question: the rows
    of the old label must not be mixed with new ones (found by an audit: a label edit
    used to resume silently, its new rows 0-query "successes")."""
    out = Path(script_run.out)
    with np.load(script_run.data) as npz:
        arrays = {name: npz[name].copy() for name in npz.files}
    arrays["labels"][1] = (arrays["labels"][1] + 1) % 3
    np.savez(script_run.data, **arrays)
    before = listing(out)
    clean_error(resume(script_run), 1, "image 2 of the selection (index 1) has label "
                f"{arrays['labels'][1]}", "--force")
    clean_error(invoke("report", out), 1, "image 2 of the selection (index 1) has label",
                "restore the data")
    assert listing(out) == before


# ------------------------------------------------------------------ rows that outlive
def test_each_row_names_its_model_and_image(script_run):
    out = Path(script_run.out)
    selection = json.loads((out / "selection.json").read_text())
    prints = dict(zip(selection["indices"], selection["fingerprints"], strict=True))
    for line in (out / "results.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert row["model_fingerprint"] == sha256sum(Path(script_run.model))
        assert row["image_fingerprint"] == prints[row["image_index"]]


def test_rows_kept_from_a_lost_config_with_another_model_are_refused(script_run, tiny_kit):
    """config.json lost and the model file swapped: the resume checked nothing of the
    model and attacked the rest with the new one, writing a fresh config.json over the
    mix (an audit's case)."""
    out = Path(script_run.out)
    (out / "config.json").unlink()
    tiny_kit.write_tiny_script(Path(script_run.model), seed=1)
    before = listing(out)
    clean_error(resume(script_run), 1, "a row made with another model", "--force")
    assert listing(out) == before


def test_rows_kept_from_a_lost_selection_on_other_data_are_refused(script_run):
    """selection.json lost and the data replaced: the kept rows said true label 3 for an
    image that is a 9 now (an audit's case)."""
    out = Path(script_run.out)
    with np.load(script_run.data) as npz:
        arrays = {name: npz[name].copy() for name in npz.files}
    arrays["images"][0] = 255 - arrays["images"][0]
    np.savez(script_run.data, **arrays)
    (out / "selection.json").unlink()
    before = listing(out)
    clean_error(resume(script_run), 1, "a row made on another image at index 0", "--force")
    assert listing(out) == before


def test_a_row_whose_label_is_not_the_selections_is_refused(script_run):
    out = Path(script_run.out)
    lines = (out / "results.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    row["true_label"] = (row["true_label"] + 1) % 3
    (out / "results.jsonl").write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")
    clean_error(invoke("report", out), 1, f"a row whose true label {row['true_label']} is "
                f"not the label")


def test_a_lost_config_with_another_image_count_is_refused(script_run):
    """config.json gone, selection.json kept: a resume asking for other images used to
    run the old selection under the new config (found by an audit)."""
    out = Path(script_run.out)
    (out / "config.json").unlink()
    before = listing(out)
    fewer = dataclasses.replace(script_run, images=3)
    clean_error(resume(fewer), 2, "selection.json holds 5 images, not the 3 the config "
                "asks for", "restore config.json", "--force")
    assert listing(out) == before
    assert resume(script_run).exit_code == 0  # the run's own settings resume it


def test_a_selection_beyond_the_data_is_said(script_run):
    with np.load(script_run.data) as npz:
        arrays = {name: npz[name] for name in npz.files}
    np.savez(script_run.data, class_names=arrays["class_names"], images=arrays["images"][:3],
             labels=arrays["labels"][:3])
    clean_error(resume(script_run), 1, "image 4 of the selection (position 3) is not in the "
                "data any more (it holds 3 images)")


# ------------------------------------------------------------------ the config
def test_an_edited_config_field_with_its_hash_left_alone_is_refused(script_run):
    out = Path(script_run.out)
    record = json.loads((out / "config.json").read_text())
    record["config"]["maxiter"] = 7
    (out / "config.json").write_text(json.dumps(record))
    before = listing(out)
    clean_error(invoke("report", out), 1, "the config field `maxiter` was changed after the "
                "run", "restore the file")
    clean_error(resume(script_run), 1, "the config field `maxiter` was changed", "--force")
    assert listing(out) == before


def test_an_edit_of_an_earlier_record_without_field_hashes_is_still_refused(script_run):
    out = Path(script_run.out)
    record = json.loads((out / "config.json").read_text())
    del record["field_hashes"]
    record["config"]["tau"] = 0.25
    (out / "config.json").write_text(json.dumps(record))
    clean_error(invoke("report", out), 1, "a field of the config was changed after the run")


# ------------------------------------------------------------------ earlier versions
def test_a_folder_without_fingerprints_says_not_recorded_and_goes_on(script_run):
    out = Path(script_run.out)
    record = json.loads((out / "config.json").read_text())
    del record["model_fingerprint"]
    (out / "config.json").write_text(json.dumps(record))
    selection = json.loads((out / "selection.json").read_text())
    del selection["fingerprints"]
    (out / "selection.json").write_text(json.dumps(selection))
    report = invoke("report", out)
    assert report.exit_code == 0, report.output
    said = " ".join(report.output.split())
    assert "does not record the model's fingerprint or the images' fingerprints" in said
    assert "not checked" in said
    resumed = resume(script_run)
    assert resumed.exit_code == 0, resumed.output
    assert "recorded from now on" in " ".join(resumed.output.split())
    assert "fingerprints" in json.loads((out / "selection.json").read_text())


def test_fingerprints_of_the_earlier_form_are_read_as_not_recorded_then_replaced(script_run):
    """Development builds recorded 16 hex digits ("file:..." for the model): not
    comparable with today's 64, so not checked (said), and recorded anew on resume."""
    out = Path(script_run.out)
    record = json.loads((out / "config.json").read_text())
    record["model_fingerprint"] = "file:0123456789abcdef"
    (out / "config.json").write_text(json.dumps(record))
    selection = json.loads((out / "selection.json").read_text())
    selection["fingerprints"] = [f"{n:016x}" for n in range(len(selection["indices"]))]
    (out / "selection.json").write_text(json.dumps(selection))
    report = invoke("report", out)
    assert report.exit_code == 0, report.output
    said = " ".join(report.output.split())
    assert "does not record the model's fingerprint or the images' fingerprints" in said
    resumed = resume(script_run)
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((out / "config.json").read_text())["model_fingerprint"] == sha256sum(
        Path(script_run.model))
    prints = json.loads((out / "selection.json").read_text())["fingerprints"]
    assert len(prints) == 5 and all(len(p) == 64 for p in prints)


def test_a_fingerprint_of_another_form_is_still_compared(script_run):
    """Only the earlier form is let through: any other recorded value is a change."""
    out = Path(script_run.out)
    record = json.loads((out / "config.json").read_text())
    record["model_fingerprint"] = "file:0123"
    (out / "config.json").write_text(json.dumps(record))
    # the rows name the model they were made with, which is not the one recorded now
    clean_error(invoke("report", out), 1, "a row made with another model", "file:0123")
    for line in (out / "results.jsonl").read_text().splitlines():  # rows of before
        row = json.loads(line)
        row.pop("model_fingerprint")
        row.pop("image_fingerprint")
        with (out / "old.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
    (out / "old.jsonl").replace(out / "results.jsonl")
    clean_error(invoke("report", out), 1, f"the model file {script_run.model} changed")


# ------------------------------------------------------------------ one index per image
def test_data_giving_one_index_to_two_images_is_refused_before_any_file(tiny_run,
                                                                        tiny_images):
    data = tiny_images("repeated.npz", indices=[0, 0, 1, 2, 3])
    config = tiny_run(data=str(data), images=3)
    result = resume(config)
    clean_error(result, 1, "repeated.npz: index 0 is given to 2 rows (0, 1)",
                "each image needs its own index")  # the data layer refuses it as it loads
    assert not Path(config.out).exists()


def test_an_image_set_giving_one_index_to_two_images_is_refused_by_the_selection(
        tiny_run, tiny_kit):
    """The data files refuse a repeated index as they load; an image set built in
    Python is checked where the images are chosen."""
    images = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    dataset = ImageSet(images, torch.zeros(3, dtype=torch.long), ("a", "b", "c"),
                       "hand-built", indices=torch.tensor([4, 4, 5]))
    with pytest.raises(SelectionError, match=r"hand-built gives index 4 to 2 images "
                                             r"\(rows 0, 1\)"):
        select_images(tiny_run(), tiny_kit.tiny_model(), dataset)


def test_a_selection_repeating_an_index_says_what_to_do(script_run):
    out = Path(script_run.out)
    selection = json.loads((out / "selection.json").read_text())
    selection["indices"][1] = selection["indices"][0]
    (out / "selection.json").write_text(json.dumps(selection))
    line = clean_error(invoke("report", out), 1, "index 0 is given to more than one image",
                       "Give each image its own index in the data")
    assert "delete the file" not in line  # the old advice sent the user in a circle


def test_a_resume_on_data_that_now_repeats_an_index_is_refused(script_run):
    out = Path(script_run.out)
    with np.load(script_run.data) as npz:
        arrays = {name: npz[name] for name in npz.files}
    np.savez(script_run.data, **arrays, indices=np.array([0, 1, 2, 3, 3]))
    before = listing(out)
    clean_error(resume(script_run), 1, "index 3 is given to 2 rows (3, 4)")
    assert listing(out) == before
