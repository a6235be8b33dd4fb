"""Verification as a resumable run on the tiny model: a row per image, verdicts that a
brute force over a color grid never contradicts (with ``exact``, per position), a
resume that verifies nothing twice, and refusals of changed settings, changed pixels
and foreign folders."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from pixelprior._io import OutputLocationError, read_rows
from pixelprior.experiment import (
    VerificationMismatchError,
    exact_ground_truth,
    load_positions,
    package_version,
    run_verification,
    verification,
)
from pixelprior.experiment.verification import ROWS_FILE, SETTINGS_FILE
from pixelprior.scoring import perturb_rows
from pixelprior.search.verify import REVISION

environment_module = importlib.import_module("pixelprior.experiment.environment")


@pytest.fixture
def tiny(tiny_kit, tiny_images):
    """The tiny model and four 6×6 images it classifies as their labels."""
    model = tiny_kit.tiny_model()
    with np.load(tiny_images(count=4, height=6, width=6)) as saved:
        images = torch.from_numpy(saved["images"]).permute(0, 3, 1, 2).float() / 255
        labels = torch.from_numpy(saved["labels"])
    return model, images, labels


@pytest.fixture
def out(tmp_path):
    """An output folder of its own (``tmp_path`` holds the images)."""
    return tmp_path / "verified"


def grid_fools(model, image: torch.Tensor, label: int, levels: int = 4) -> np.ndarray:
    """Brute force: whether some color of a ``levels``-per-channel grid at each position
    changes the label, ``bool [H · W]``."""
    channels, height, width = image.shape
    values = torch.linspace(0, 1, levels)
    colors = torch.cartesian_prod(*[values] * channels)
    fooled = np.zeros(height * width, dtype=bool)
    for p in range(height * width):
        genes = torch.cat([torch.tensor([[p % width, p // width]] * len(colors)).float(),
                           colors], 1)[:, None]
        owner = torch.zeros(len(colors), dtype=torch.long)
        with torch.inference_mode():
            scores = model(perturb_rows(image[None], owner, genes))
        fooled[p] = bool((scores.argmax(1) != label).any())
    return fooled


def test_exact_verdicts_agree_with_a_brute_force_and_resume(tiny, out):
    model, images, labels = tiny
    rows = run_verification(out, model, images, labels, [0, 1, 2, 3], budget=None,
                            exact=True, deterministic=True)
    assert [row["image_index"] for row in rows] == [0, 1, 2, 3]
    for n, row in enumerate(rows):
        positions = load_positions(out / row["positions_file"])
        status = positions["status"].reshape(-1)
        assert (status != 2).all()  # no budget: every position decided
        fooled = grid_fools(model, images[n], int(labels[n]))
        assert not (fooled & (status == 0)).any(), "a position proved robust is fooled"
        for p in np.flatnonzero(status == 1):  # every witness fools the model
            color = torch.as_tensor(positions["witness"].reshape(36, -1)[p]).float()
            genes = torch.cat([torch.tensor([p % 6, p // 6]).float(), color])[None, None]
            with torch.inference_mode():
                assert int(model(perturb_rows(images[n:n + 1], torch.zeros(1, dtype=torch.long),
                                              genes)).argmax(1)) != int(labels[n])
        assert row["verified"] == bool((status == 0).all())
        assert row["positions_vulnerable"] == int((status == 1).sum())
    written = (out / ROWS_FILE).read_bytes()
    again = run_verification(out, model, images, labels, [0, 1, 2, 3], budget=None,
                             exact=True, deterministic=True)
    assert (out / ROWS_FILE).read_bytes() == written  # nothing verified twice
    assert again == rows
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 4
    assert summary["verified"] + summary["fooled"] == 4


def test_an_interrupted_run_verifies_only_what_is_left(tiny, out):
    model, images, labels = tiny
    run_verification(out, model, images[:2], labels[:2], [0, 1], budget=None)
    rows = run_verification(out, model, images, labels, [0, 1, 2, 3], budget=None)
    assert [row["image_index"] for row in read_rows(out / ROWS_FILE)] == [0, 1, 2, 3]
    assert len(rows) == 4


@pytest.mark.parametrize("edit, phrase", [
    ({"fooled": False, "decided_by": "fooled"}, "fooled is False where decided_by is 'fooled'"),
    ({"decided_by": "maybe"}, "decided_by 'maybe' is none of verified, fooled, unknown"),
    ({"verified_volume": 1.5}, "verified_volume must be a share in [0, 1], got 1.5")])
def test_a_row_that_contradicts_itself_is_refused_by_its_line(tiny, out, edit, phrase):
    """A hand-edited row saying "fooled" with fooled false was counted in no category
    (an audit's case)."""
    from pixelprior._io import CorruptResultsError

    model, images, labels = tiny
    run_verification(out, model, images[:2], labels[:2], [0, 1], budget=None)
    lines = (out / ROWS_FILE).read_text().splitlines()
    lines[1] = json.dumps({**json.loads(lines[1]), **edit})
    (out / ROWS_FILE).write_text("\n".join(lines) + "\n")
    with pytest.raises(CorruptResultsError, match=re.escape(f"{ROWS_FILE} line 2: {phrase}")):
        run_verification(out, model, images, labels, [0, 1, 2, 3], budget=None)


def test_rows_and_the_environment_name_the_code_and_another_version_is_said(tiny, out,
                                                                            monkeypatch):
    model, images, labels = tiny
    first = run_verification(out, model, images[:1], labels[:1], [0], budget=None)
    assert first[0]["version"] == package_version()
    environment = json.loads((out / "environment.json").read_text())
    assert environment["pixelprior"] == package_version() and environment["earlier"] == []
    monkeypatch.setattr(verification, "package_version", lambda: "9.9.9+gabcdef0")
    monkeypatch.setattr(environment_module, "package_version", lambda: "9.9.9+gabcdef0")
    said: list[str] = []
    rows = run_verification(out, model, images[:2], labels[:2], [0, 1], budget=None,
                            log=said.append)
    assert [row["version"] for row in rows] == [package_version(), "9.9.9+gabcdef0"]
    assert any(f"written by pixelprior {package_version()}" in line for line in said)
    environment = json.loads((out / "environment.json").read_text())
    assert environment["pixelprior"] == "9.9.9+gabcdef0"
    assert [e["pixelprior"] for e in environment["earlier"]] == [package_version()]


def test_other_settings_are_refused_on_resume(tiny, out):
    model, images, labels = tiny
    run_verification(out, model, images[:1], labels[:1], [0], budget=None)
    with pytest.raises(VerificationMismatchError, match="max_boxes = None, not 5"):
        run_verification(out, model, images[:1], labels[:1], [0], budget=None,
                         max_boxes=5)
    other = type(model)().eval()  # the same weights, each plus one: another fingerprint
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(1.0)
    with pytest.raises(VerificationMismatchError, match="model_fingerprint"):
        run_verification(out, other, images[:1], labels[:1], [0], budget=None)


def test_a_factory_whose_code_changed_is_named_so_on_resume(tiny, out, monkeypatch):
    """A review: the same weights from an edited model file were refused with two
    130-character fingerprints and "give the same settings"; it now says the code
    changed."""
    model, images, labels = tiny
    monkeypatch.setattr(verification, "model_fingerprint", lambda *a: "ab12+code:0001")
    run_verification(out, model, images[:1], labels[:1], [0], budget=None)
    monkeypatch.setattr(verification, "model_fingerprint", lambda *a: "ab12+code:0002")
    with pytest.raises(VerificationMismatchError, match=r"the code of the model's \.py file "
                       r"changed since \(the same weights\); restore it"):
        run_verification(out, model, images[:1], labels[:1], [0], budget=None)


def test_the_verifier_revision_is_recorded_and_another_is_refused(tiny, out, monkeypatch):
    model, images, labels = tiny
    run_verification(out, model, images[:1], labels[:1], [0], budget=None)
    settings = json.loads((out / SETTINGS_FILE).read_text())
    assert settings["verifier"] == REVISION
    monkeypatch.setattr(verification, "REVISION", REVISION + 1)
    with pytest.raises(VerificationMismatchError,
                       match=f"verifier = {REVISION}, not {REVISION + 1}"):
        run_verification(out, model, images[:2], labels[:2], [0, 1], budget=None)
    assert len(read_rows(out / ROWS_FILE)) == 1  # nothing written


def test_a_folder_from_before_the_revision_was_recorded_resumes_with_a_note(tiny, out,
                                                                          monkeypatch):
    model, images, labels = tiny
    run_verification(out, model, images[:1], labels[:1], [0], budget=None)
    settings = json.loads((out / SETTINGS_FILE).read_text())
    del settings["verifier"]
    (out / SETTINGS_FILE).write_text(json.dumps(settings))
    said: list[str] = []
    rows = run_verification(out, model, images[:2], labels[:2], [0, 1], budget=None,
                            log=said.append)
    assert len(rows) == 2
    assert any("does not record the verifier revision" in line for line in said)
    # the folder now says it was resumed by this revision, never that it is all of it
    mark = json.loads((out / SETTINGS_FILE).read_text())["verifier"]
    assert mark == f"unrecorded, resumed by revision {REVISION}"
    said.clear()
    run_verification(out, model, images[:2], labels[:2], [0, 1], budget=None,
                     log=said.append)
    assert any("does not record the verifier revision" in line for line in said)
    monkeypatch.setattr(verification, "REVISION", REVISION + 1)  # a later revision: no
    with pytest.raises(VerificationMismatchError, match="resumed with"):
        run_verification(out, model, images[:3], labels[:3], [0, 1, 2], budget=None)
    assert len(read_rows(out / ROWS_FILE)) == 2


def test_an_index_given_to_other_pixels_is_refused(tiny, out):
    model, images, labels = tiny
    run_verification(out, model, images[:1], labels[:1], [0], budget=None)
    with pytest.raises(VerificationMismatchError, match="image index 0 with other pixels"):
        run_verification(out, model, images[1:2], labels[1:2], [0], budget=None)


def test_an_image_given_with_another_label_is_refused(tiny, out):
    model, images, labels = tiny
    run_verification(out, model, images[:1], labels[:1], [0], budget=None)
    other = (labels[:1] + 1) % 3
    before = read_rows(out / ROWS_FILE)
    with pytest.raises(VerificationMismatchError, match=f"holds image index 0 with label "
                                                        f"{int(labels[0])}; it is given with "
                                                        f"label {int(other[0])} now"):
        run_verification(out, model, images[:1], other, [0], budget=None)
    assert read_rows(out / ROWS_FILE) == before


def test_image_files_resume_and_one_changed_file_is_refused(tiny, out, tmp_path):
    """Files have no index (-1): several given through the API resume like indexed
    images; a folder of one file refuses that file with other pixels."""
    model, images, labels = tiny
    run_verification(out, model, images[:1], labels[:1], [-1], budget=None)
    rows = run_verification(out, model, images[:3], labels[:3], [-1, -1, -1], budget=None)
    assert len(rows) == 3 and len({row["image_key"] for row in rows}) == 3
    assert len(run_verification(out, model, images[:3], labels[:3], [-1] * 3,
                                budget=None)) == 3  # nothing verified twice
    single = tmp_path / "single"
    run_verification(single, model, images[:1], labels[:1], [-1], budget=None,
                     info={"target": "cat.png"})
    with pytest.raises(VerificationMismatchError, match="an image file with other pixels"):
        run_verification(single, model, images[1:2], labels[1:2], [-1], budget=None,
                         info={"target": "cat.png"})
    with pytest.raises(VerificationMismatchError, match="target = 'cat.png', not 'dog.png'"):
        run_verification(single, model, images[:1], labels[:1], [-1], budget=None,
                         info={"target": "dog.png"})


def test_a_folder_of_other_files_and_settings_without_rows_are_refused(tiny, tmp_path):
    model, images, labels = tiny
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputLocationError, match="holds other files"):
        run_verification(tmp_path, model, images[:1], labels[:1], [0])
    folder = Path(tmp_path / "v")
    run_verification(folder, model, images[:1], labels[:1], [0], budget=None)
    (folder / SETTINGS_FILE).write_text("{")
    with pytest.raises(VerificationMismatchError, match="no readable"):
        run_verification(folder, model, images[:1], labels[:1], [0], budget=None)


def test_exact_verdicts_are_a_ground_truth_for_map_evaluation(tiny, out, tmp_path):
    model, images, labels = tiny
    rows = run_verification(out, model, images[:2], labels[:2], [5, 6], budget=None,
                            exact=True, deterministic=True)
    truth = exact_ground_truth(out)
    assert truth.exact and truth.image_indices.tolist() == [5, 6]
    assert truth.image_keys.tolist() == [row["image_key"] for row in rows]
    for n, row in enumerate(rows):
        status = load_positions(out / row["positions_file"])["status"]
        assert (truth.vulnerable[n] == (status == 1)).all()
        assert (truth.unknown[n] == (status == 2)).all()
        assert truth.vulnerable[n].sum() == row["positions_vulnerable"]
    per_image = tmp_path / "per-image"
    run_verification(per_image, model, images[:1], labels[:1], [5], budget=None)
    with pytest.raises(ValueError, match="without --exact"):
        exact_ground_truth(per_image)
    with pytest.raises(FileNotFoundError, match="verify ... --exact"):
        exact_ground_truth(tmp_path / "nothing")


def test_unreadable_exact_verdicts_are_refused_in_one_message(tiny, out):
    model, images, labels = tiny
    rows = run_verification(out, model, images[:1], labels[:1], [5], budget=None,
                            exact=True, deterministic=True)
    (out / rows[0]["positions_file"]).write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match="missing or unreadable"):
        exact_ground_truth(out)
    (out / SETTINGS_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="missing or unreadable"):
        exact_ground_truth(out)


def test_verdicts_under_a_tolerance_derived_for_another_unit_are_refused(tiny, out):
    """A derived tolerance depends on the unit roundoff where it runs (CUDA's TF32 rounds
    2^13 times coarser): a resume under another unit is refused; folders from before it
    was recorded resume; a given tolerance records none."""
    model, images, labels = tiny
    run_verification(out, model, images[:1], labels[:1], [0], budget=None)
    recorded = json.loads((out / SETTINGS_FILE).read_text())
    assert recorded["tolerance_unit"] == 2.0**-24
    (out / SETTINGS_FILE).write_text(json.dumps({**recorded, "tolerance_unit": 2.0**-11}))
    with pytest.raises(VerificationMismatchError, match="tolerance_unit = 0.00048828125"):
        run_verification(out, model, images[:2], labels[:2], [0, 1], budget=None)
    del recorded["tolerance_unit"]
    (out / SETTINGS_FILE).write_text(json.dumps(recorded))
    rows = run_verification(out, model, images[:2], labels[:2], [0, 1], budget=None)
    assert len(rows) == 2
    given = out.with_name("given")  # a set tolerance: the float32 proof still uses it
    assert run_verification(given, model, images[:1], labels[:1], [0], budget=None,
                            tolerance=1e-4)
    recorded = json.loads((given / SETTINGS_FILE).read_text())
    assert recorded["tolerance_unit"] == 2.0**-24
    (given / SETTINGS_FILE).write_text(json.dumps({**recorded, "tolerance_unit": 2.0**-11}))
    with pytest.raises(VerificationMismatchError, match="tolerance_unit = 0.00048828125"):
        run_verification(given, model, images[:2], labels[:2], [0, 1], budget=None,
                         tolerance=1e-4)
    (given / SETTINGS_FILE).write_text(json.dumps({**recorded, "tolerance_unit": None}))
    assert len(run_verification(given, model, images[:2], labels[:2], [0, 1], budget=None,
                                tolerance=1e-4)) == 2  # from before a set one was recorded


def test_the_unit_each_image_was_verified_with_is_the_folders(tiny, out, monkeypatch):
    """Where the workers' device is a guess (Ray on ``auto``), the answers say: a new
    folder records their unit, and a folder of another unit refuses them before a row is
    written."""
    model, images, labels = tiny
    verification_module = importlib.import_module("pixelprior.experiment.verification")
    monkeypatch.setattr(verification_module, "_tolerance_unit", lambda *_: 2.0**-11)
    run_verification(out, model, images[:1], labels[:1], [0], budget=None)  # a wrong guess
    assert json.loads((out / SETTINGS_FILE).read_text())["tolerance_unit"] == 2.0**-24
    monkeypatch.undo()
    verify_module = importlib.import_module("pixelprior.search.verify")
    monkeypatch.setattr(verify_module, "rounding_unit", lambda _: 2.0**-11)  # a TF32 worker
    with pytest.raises(VerificationMismatchError, match="verifies with 0.00048828125"):
        run_verification(out, model, images[:2], labels[:2], [0, 1], budget=None)
    assert len(read_rows(out / ROWS_FILE)) == 1


def test_the_summary_counts_every_row_written_even_when_a_run_stops(tiny, out, monkeypatch):
    model, images, labels = tiny
    verification_module = importlib.import_module("pixelprior.experiment.verification")
    made = verification_module.verification_row

    def second_fails(answer, index, *rest):
        if index == 1:
            raise KeyboardInterrupt
        return made(answer, index, *rest)

    monkeypatch.setattr(verification_module, "verification_row", second_fails)
    with pytest.raises(KeyboardInterrupt):
        run_verification(out, model, images[:3], labels[:3], [0, 1, 2], budget=None)
    assert len(read_rows(out / ROWS_FILE)) == 1
    assert json.loads((out / "summary.json").read_text())["images"] == 1


def test_one_picture_given_twice_in_a_call_is_verified_once(tiny, out):
    """Two rows of one picture made the folder unreadable on every later call (an
    audit); two labels for it are refused before anything is written."""
    model, images, labels = tiny
    twice, notes = torch.cat([images[:1], images[:1]]), []
    rows = run_verification(out, model, twice, labels[:1].repeat(2), [-1, -1], budget=None,
                            log=notes.append)
    assert len(rows) == 1 and any("verified once" in note for note in notes)
    again = run_verification(out, model, twice, labels[:1].repeat(2), [-1, -1], budget=None)
    assert again == rows  # resumes: nothing left to do
    other = torch.stack([labels[0], (labels[0] + 1) % 3])
    with pytest.raises(VerificationMismatchError, match="same pixels under labels"):
        run_verification(out.with_name("other"), model, twice, other, [-1, -1], budget=None)
    assert not (out.with_name("other") / ROWS_FILE).exists()


def test_the_summary_gives_the_reports_verified_volume_beside_the_mean_over_every_image():
    from pixelprior.experiment.verification import verification_summary

    def row(decided_by, volume):
        return {"verified": decided_by == "verified", "fooled": decided_by == "fooled",
                "decided_by": decided_by, "verified_volume": volume, "seconds": 1.0,
                "positions_robust": 0, "positions_vulnerable": 0, "positions_unknown": 0}

    rows = [row("verified", 1.0), row("unknown", 0.5), row("fooled", 0.0)]
    summary = verification_summary(rows)
    assert summary["mean_verified_volume"] == pytest.approx(0.5)
    assert summary["mean_verified_volume_not_fooled"] == pytest.approx(0.75)
    assert verification_summary([row("fooled", 0.2)])["mean_verified_volume_not_fooled"] is None
