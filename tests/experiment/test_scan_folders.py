"""Susceptibility folders know what their maps were made with: a resume compares every
option that changes the map (normalisation, grid, input size, classes, target) and the
model's fingerprint, and refuses an index already scanned with other pixels (an image
file changed at its path too); a scan of an earlier version (no fingerprint) says so and
goes on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pixelprior.cli import app
from pixelprior.data import SusceptibilityMaps, sha256sum, to_float
from pixelprior.experiment import ScanMismatchError, package_version, run_scan
from pixelprior.models import model_fingerprint, state_dict_digest


def images_of(path, count: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(path) as npz:
        images = torch.from_numpy(npz["images"][:count]).permute(0, 3, 1, 2)
        labels = torch.from_numpy(npz["labels"][:count])
    return to_float(images), labels


@pytest.fixture
def scanned(tmp_path, tiny_kit):
    """A finished scan of two tiny images (2 levels), normalised with mean 0.5."""
    spec = tiny_kit.write_tiny_net(tmp_path)
    images, labels = images_of(tiny_kit.write_images(tmp_path / "images.npz"))
    info = {"model": spec, "target": "images.npz", "mean": "0.5,0.5,0.5",
            "std": "0.25,0.25,0.25"}
    out = tmp_path / "scan"
    run_scan(out, tiny_kit.tiny_model(), images[:1], labels[:1], [0], levels=2, info=info)
    return out, spec, images, labels, info, tiny_kit.tiny_model


def test_a_scan_records_the_model_fingerprint_and_its_options(scanned):
    out, spec, _, _, info, tiny_model = scanned
    recorded = SusceptibilityMaps.load(out).info
    code = sha256sum(Path(spec.rsplit(":", 1)[0]))  # a file.py:callable factory: its code too
    assert recorded["model_fingerprint"] == f"{state_dict_digest(tiny_model())}+code:{code}"
    assert {key: recorded[key] for key in info} == info


def test_a_scan_of_a_factory_whose_code_changed_is_refused(scanned):
    out, spec, images, labels, info, tiny_model = scanned
    path = Path(spec.rsplit(":", 1)[0])
    path.write_text(path.read_text() + "\n# the code changed, the weights did not\n")
    with pytest.raises(ScanMismatchError, match="holds a scan of another model"):
        run_scan(out, tiny_model(), images, labels, [0, 1], levels=2, info=info)


def test_a_scan_recorded_before_the_code_was_fingerprinted_resumes(scanned):
    out, spec, images, labels, info, tiny_model = scanned
    maps = SusceptibilityMaps.load(out)
    maps.info["model_fingerprint"] = state_dict_digest(tiny_model())  # the earlier form
    maps.save(out / "maps.npz")
    assert len(run_scan(out, tiny_model(), images, labels, [0, 1], levels=2,
                        info=info).labels) == 2


def test_a_scan_records_the_machine_and_the_code_of_each_run(scanned):
    out, _, images, labels, info, tiny_model = scanned
    first = json.loads((out / "environment.json").read_text())
    assert first["pixelprior"] == package_version() and first["earlier"] == []
    run_scan(out, tiny_model(), images, labels, [0, 1], levels=2, info=info)
    again = json.loads((out / "environment.json").read_text())
    assert [e["started"] for e in again["earlier"]] == [first["started"]]
    assert again["cpu_count"] and again["device"] == "cpu"


@pytest.mark.parametrize("key, value", [("mean", "0.4,0.4,0.4"), ("std", "0.3,0.3,0.3"),
                                        ("input_size", 8), ("classes", "x,y,z")])
def test_a_resume_with_another_option_that_changes_the_map_is_refused(scanned, key, value):
    out, _, images, labels, info, tiny_model = scanned
    before = (out / "maps.npz").read_bytes()
    with pytest.raises(ScanMismatchError, match=f"holds a scan with {key} = "):
        run_scan(out, tiny_model(), images, labels, [0, 1], levels=2,
                 info={**info, key: value})
    assert (out / "maps.npz").read_bytes() == before


def test_the_same_numbers_written_another_way_are_the_same_option(scanned):
    out, _, images, labels, info, tiny_model = scanned
    maps = run_scan(out, tiny_model(), images, labels, [0, 1], levels=2,
                    info={**info, "mean": "0.50,0.5,0.5", "std": [0.25, 0.25, 0.25]})
    assert len(maps.labels) == 2  # resumed: the second image added


def test_another_model_under_the_same_spec_is_refused(scanned):
    out, spec, images, labels, info, tiny_model = scanned
    with pytest.raises(ScanMismatchError, match="holds a scan of another model: .*nets.py:tiny "
                                                "changed since it was scanned"):
        run_scan(out, tiny_model(seed=1), images, labels, [0, 1], levels=2, info=info)


def test_an_index_scanned_with_other_pixels_is_refused(scanned):
    out, _, images, labels, info, tiny_model = scanned
    other = 1 - images[:1]
    with pytest.raises(ScanMismatchError, match="holds image index 0 with other pixels"):
        run_scan(out, tiny_model(), other, labels[:1], [0], levels=2, info=info)


def test_an_image_scanned_under_another_label_is_refused(scanned):
    out, _, images, labels, info, tiny_model = scanned
    other = (labels[:1] + 1) % 3
    with pytest.raises(ScanMismatchError, match=f"holds image index 0 with label "
                                                f"{int(labels[0])}; it is given with label"):
        run_scan(out, tiny_model(), images[:1], other, [0], levels=2, info=info)


def test_an_earlier_scan_without_a_fingerprint_says_so_and_goes_on(scanned):
    out, _, images, labels, info, tiny_model = scanned
    old = SusceptibilityMaps.load(out)
    old.info.pop("model_fingerprint")
    old.save(out / "maps.npz")
    said: list[str] = []
    maps = run_scan(out, tiny_model(seed=1), images, labels, [0, 1], levels=2, info=info,
                    log=said.append)
    assert len(maps.labels) == 2
    assert any("does not record its model's fingerprint" in note for note in said)
    assert "model_fingerprint" not in maps.info  # never claimed for the earlier image


def test_an_earlier_form_of_fingerprint_is_not_compared_and_not_claimed(scanned):
    out, _, images, labels, info, tiny_model = scanned
    old = SusceptibilityMaps.load(out)
    old.info["model_fingerprint"] = "state:0123456789abcdef"  # development builds' form
    old.save(out / "maps.npz")
    said: list[str] = []
    maps = run_scan(out, tiny_model(), images, labels, [0, 1], levels=2, info=info,
                    log=said.append)
    assert len(maps.labels) == 2
    assert any("does not record its model's fingerprint" in note for note in said)
    assert "model_fingerprint" not in maps.info


def test_the_command_refuses_to_resume_across_another_mean(tmp_path, tiny_kit):
    spec = tiny_kit.write_tiny_net(tmp_path)
    data = tiny_kit.write_images(tmp_path / "images.npz", count=2)
    command = ["susceptibility", str(data), "--model", spec, "--levels", "2", "--images", "1",
               "--out", str(tmp_path / "scan"), "--std", "1,1,1"]
    first = CliRunner().invoke(app, [*command, "--mean", "0,0,0"])
    assert first.exit_code == 0, first.output
    summary = json.loads((tmp_path / "scan" / "summary.json").read_text())
    assert summary["mean"] == "0,0,0" and summary["model_fingerprint"]
    again = CliRunner().invoke(app, [*command, "--mean", "0.1,0.1,0.1"])
    assert again.exit_code == 2, again.output
    assert "Traceback" not in again.output
    said = " ".join(again.output.split())
    assert "error: " in said and "holds a scan with mean = '0,0,0', not '0.1,0.1,0.1'" in said


def test_an_image_file_that_changed_at_its_path_is_refused(tmp_path, tiny_kit, monkeypatch):
    """Image files scan under index -1, one target a folder: other pixels at the same path
    are another image, not a second one to add under the same index; the same path
    written another way is the same target."""
    spec = tiny_kit.write_tiny_net(tmp_path)
    images, labels = images_of(tiny_kit.write_images(tmp_path / "images.npz"))
    (tmp_path / "cat.png").write_bytes(b"")  # a path that exists (only its name is read)
    info = {"model": spec, "target": str(tmp_path / "cat.png")}
    out = tmp_path / "scan"
    run_scan(out, tiny_kit.tiny_model(), images[:1], labels[:1], [-1], levels=2, info=info)
    before = (out / "maps.npz").read_bytes()
    with pytest.raises(ScanMismatchError, match="holds an image file with other pixels"):
        run_scan(out, tiny_kit.tiny_model(), 1 - images[:1], labels[:1], [-1], levels=2,
                 info=info)
    assert (out / "maps.npz").read_bytes() == before
    monkeypatch.chdir(tmp_path)
    again = run_scan(out, tiny_kit.tiny_model(), images[:1], labels[:1], [-1], levels=2,
                     info={**info, "target": "cat.png"})
    assert len(again.labels) == 1  # the same file resumes: nothing to add


def test_an_oracle_is_checked_against_the_model_that_uses_it(scanned, tmp_path):
    from pixelprior.experiment import ConfigError, check_scan_model

    out, spec, _, _, _, tiny_model = scanned
    mine = model_fingerprint(tiny_model(), spec)
    assert check_scan_model(out, spec, mine) is None
    with pytest.raises(ConfigError, match="is a scan of another model"):
        check_scan_model(out, spec, model_fingerprint(tiny_model(seed=1), spec))
    older = SusceptibilityMaps.load(out)  # an earlier version: no fingerprint recorded
    older.info.pop("model_fingerprint")
    older.save(tmp_path / "older.npz")
    assert check_scan_model(tmp_path / "older.npz", spec, "any") is None  # same spec
    with pytest.raises(ConfigError, match="is a scan of another model"):
        check_scan_model(tmp_path / "older.npz", "convsmall-cifar10", "any")
    older.info.pop("model")
    older.save(tmp_path / "unnamed.npz")
    assert "does not record the model" in check_scan_model(tmp_path / "unnamed.npz", spec,
                                                           "any")


def test_a_ground_truth_of_changed_factory_code_says_so_with_fingerprints_that_differ():
    """Only the code part of a factory's fingerprint differed: the line named two equal
    12-digit prefixes (the weights' part) and "its weights or code"."""
    from types import SimpleNamespace

    from pixelprior.experiment import ConfigError
    from pixelprior.experiment.scans import check_ground_truth_model

    tensors = "a" * 64
    was, now = f"{tensors}+code:{'1' * 64}", f"{tensors}+code:{'2' * 64}"
    maps = SimpleNamespace(info={"model_fingerprint": was, "model": "nets.py:make"})
    with pytest.raises(ConfigError, match=r"aaaaaaaaaaaa\+code:111111111111.*"
                       r"aaaaaaaaaaaa\+code:222222222222: the code of nets.py"):
        check_ground_truth_model(maps, "scan/", now)
