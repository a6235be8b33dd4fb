"""What a command reads of its target and its inputs: a data spec's classes numbered as
the model numbers them, options its target does not read refused, a scan used as an
oracle only with the model it was made of, fast answers rerun in their own folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import clean_error, invoke
from PIL import Image

from pixelprior.data import load_cifar10_sample, to_float
from pixelprior.models import load_model


def _save(index: int, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(load_cifar10_sample().images[index].permute(1, 2, 0).numpy()).save(path)
    return path


def _right(model_name: str, label: int) -> int:
    """A sample image of class ``label`` the model classifies right."""
    sample, model = load_cifar10_sample(), load_model(model_name)
    with torch.inference_mode():
        predicted = model(to_float(sample.images)).argmax(1)
    return int(((sample.labels == label) & (predicted == label)).nonzero()[0])


def test_a_folders_classes_are_numbered_as_the_model_numbers_them(tmp_path):
    """airplane/ and ship/ alone are the model's classes 0 and 8, not 0 and 1: a car filed
    under ship/ is misclassified, not taken for a correct 'automobile' (class 1)."""
    photos = tmp_path / "photos"
    _save(_right("convsmall-cifar10", 0), photos / "airplane" / "a.png")
    _save(_right("convsmall-cifar10", 1), photos / "ship" / "car.png")
    out = tmp_path / "fast"
    result = invoke("susceptibility", photos, "--model", "convsmall-cifar10", "--fast",
                    "--images", "2", "--out", out)
    assert result.exit_code == 0, result.output
    assert "1 correctly classified images in" in " ".join(result.output.split())
    rows = json.loads((out / "fast.json").read_text())["images"]
    assert [row["true_label"] for row in rows] == [0]
    # the corners' answer (ConvSmall is cheap to verify, which FastAttack does by default:
    # this command does not; `verify` proves)
    assert all(row.get("decided_by") != "verified" and not row.get("verified")
               for row in rows)


def test_a_scan_of_another_model_is_no_oracle(cat_png, tmp_path):
    scan = tmp_path / "scan"
    made = invoke("susceptibility", cat_png, "--model", "convsmall-cifar10", "--levels", "2",
                  "--out", scan)
    assert made.exit_code == 0, made.output
    clean_error(invoke("attack", cat_png, "--mode", "scan:oracle", "--oracle", scan, "--out",
                       tmp_path / "a"), 2, "is a scan of another model (convsmall-cifar10")
    clean_error(invoke("run", "--source", "sample", "--images", "1", "--seeds", "0,",
                       "--modes", "oracle", "--popsize", "10", "--maxiter", "1", "--oracle",
                       scan, "--out", tmp_path / "r"), 2, "is a scan of another model")
    assert not (tmp_path / "a").exists() and not (tmp_path / "r").exists()
    clean_error(invoke("attack", cat_png, "--model", "convsmall-cifar10", "--mode", "fast",
                       "--oracle", scan, "--out", tmp_path / "a"), 2,
                "mode fast does not read --oracle")
    used = invoke("attack", cat_png, "--model", "convsmall-cifar10", "--mode", "scan:oracle",
                  "--oracle", scan, "--out", tmp_path / "a")
    assert used.exit_code == 0, used.output


def test_fast_answers_rerun_in_their_folder_and_refuse_another_model(cat_png, tmp_path):
    out = tmp_path / "fast"
    for _ in range(2):
        result = invoke("susceptibility", cat_png, "--model", "convsmall-cifar10", "--fast",
                        "--out", out)
        assert result.exit_code == 0, result.output
    settings = json.loads((out / "fast.json").read_text())["settings"]
    assert settings["model"] == "convsmall-cifar10" and settings["target"] == str(cat_png)
    clean_error(invoke("susceptibility", cat_png, "--fast", "--out", out), 2,
                "holds fast answers made with model 'convsmall-cifar10' (now "
                "'squeezenet1_1-cifar10')")
    clean_error(invoke("susceptibility", cat_png, "--levels", "2", "--out", out), 2,
                "holds other files (fast.json) and no scan")


def test_fast_answers_of_other_images_are_kept_beside_the_new_ones(tmp_path):
    """--first-index 50 in the folder of images 0 and 1 rewrote fast.json with 50 and 51
    alone: the earlier answers were lost without a word."""
    out = tmp_path / "fast"
    for first in ("0", "50", "0"):
        result = invoke("susceptibility", "cifar10", "--source", "sample", "--model",
                        "convsmall-cifar10", "--images", "2", "--first-index", first,
                        "--fast", "--out", out)
        assert result.exit_code == 0, result.output
    held = json.loads((out / "fast.json").read_text())["images"]
    assert [row["image_index"] for row in held] == [0, 1, 50, 51]  # the rerun replaced 0, 1
    assert "also holds the answers of 2 other image(s)" in " ".join(result.output.split())


def test_a_run_never_takes_over_another_commands_folder(cat_png, tmp_path):
    scan = tmp_path / "scan"
    assert invoke("susceptibility", cat_png, "--model", "convsmall-cifar10", "--levels", "2",
                  "--out", scan).exit_code == 0
    before = sorted(p.name for p in scan.iterdir())
    clean_error(invoke("run", "--source", "sample", "--images", "1", "--seeds", "0,",
                       "--modes", "fast", "--model", "convsmall-cifar10", "--force", "--out",
                       scan), 2, "holds a susceptibility scan (maps.npz); a run cannot share")
    assert sorted(p.name for p in scan.iterdir()) == before


def test_another_config_names_the_fields_that_changed(tmp_path):
    out = tmp_path / "run"
    words = ["run", "--source", "sample", "--seeds", "0,", "--modes", "fast", "--model",
             "convsmall-cifar10", "--out", out]
    assert invoke(*words, "--images", "1").exit_code == 0
    clean_error(invoke(*words, "--images", "2"), 2,
                "holds results of another config (images 1 → 2)")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_an_out_nobody_can_write_is_refused_before_the_work(cat_png):
    clean_error(invoke("attack", cat_png, "--model", "convsmall-cifar10", "--out",
                       "/proc/pixelprior-out"), 2, "cannot write into /proc")


def test_fast_answers_of_an_earlier_version_are_not_replaced_blindly(cat_png, tmp_path):
    out = tmp_path / "fast"
    out.mkdir()
    (out / "fast.json").write_text(json.dumps({"model_queries": 8, "images": []}))
    clean_error(invoke("susceptibility", cat_png, "--fast", "--out", out), 2,
                "does not say what it answered")


def test_a_config_file_may_write_out_defaults_no_mode_reads(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('modes = ["fast"]\ntau = 0.5\nlevels = 3\nquery_budget = 5\n')
    clean_error(invoke("run", "--config", config, "--source", "sample", "--images", "1",
                       "--seeds", "0,", "--model", "convsmall-cifar10", "--out",
                       tmp_path / "r"), 2,
                "reads query_budget in the config file (read by random_search)")
    config.write_text('modes = ["fast"]\ntau = 0.5\nlevels = 3\n')  # the defaults: fine
    result = invoke("run", "--config", config, "--source", "sample", "--images", "1",
                    "--seeds", "0,", "--model", "convsmall-cifar10", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output


def test_a_targeted_certificate_names_the_target_it_never_reaches(tmp_path):
    """Bright red at (0, 0) turns a into c, never into b: `attack --target b --mode fast`
    said "no corner ... changes a", which a corner does (an audit's case)."""
    (tmp_path / "net.py").write_text(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.gain = torch.nn.Parameter(torch.tensor(20.0))\n"
        "    def forward(self, x):\n"
        "        red = x[:, 0, 0, 0]\n"
        "        return torch.stack([torch.ones_like(red), torch.zeros_like(red),\n"
        "                            self.gain * red - 10], 1)\n"
        "def make():\n"
        "    return Net().eval()\n")
    Image.fromarray(torch.zeros(8, 8, 3, dtype=torch.uint8).numpy()).save(tmp_path / "x.png")
    result = invoke("attack", tmp_path / "x.png", "--model", f"{tmp_path / 'net.py'}:make",
                    "--input-size", 8, "--classes", "a,b,c", "--target", "b", "--mode",
                    "fast", "--out", tmp_path / "out")
    said = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert "positions turns a into b" in said and "changes a" not in said
