"""The command line: eval, attack, explain, report, and their errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pixelprior.cli import app
from pixelprior.data import load_cifar10_sample

runner = CliRunner()


@pytest.fixture
def cat_png(tmp_path):
    sample = load_cifar10_sample()
    path = tmp_path / "cat.png"
    Image.fromarray(sample.images[0].permute(1, 2, 0).numpy()).save(path)
    return path


def test_eval_on_bundled_sample():
    result = runner.invoke(app, ["eval", "cifar10", "--source", "sample"])
    assert result.exit_code == 0, result.output
    assert "top-1" in result.output and "100 exact" in result.output


def test_attack_writes_image_and_json(cat_png, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["attack", str(cat_png), "--constrained", "--popsize", "20",
                                 "--maxiter", "3", "--label", "cat", "--out", str(out)])
    assert result.exit_code == 0, result.output
    row = json.loads((out / "cat-result.json").read_text())
    assert row["true_name"] == "cat" and row["prior"] == "susceptible"
    adversarial = np.asarray(Image.open(out / "cat-adversarial.png"))
    assert adversarial.shape == (32, 32, 3)


def test_targeted_attack_and_bad_class(cat_png, tmp_path):
    result = runner.invoke(app, ["attack", str(cat_png), "--target", "dog", "--popsize", "8",
                                 "--maxiter", "1", "--out", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    bad = runner.invoke(app, ["attack", str(cat_png), "--target", "unicorn"])
    assert bad.exit_code == 2 and "unknown class" in bad.output


def test_attack_rejects_unreadable_image(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    result = runner.invoke(app, ["attack", str(broken)])
    assert result.exit_code == 2 and "cannot read image" in result.output


def test_explain_writes_map_and_set(cat_png, tmp_path):
    result = runner.invoke(app, ["explain", str(cat_png), "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    smap = np.load(tmp_path / "e" / "cat-smoothgrad.npy")
    assert smap.shape == (32, 32) and 0 <= smap.min() and smap.max() <= 1
    assert (tmp_path / "e" / "cat-susceptible.png").is_file()
    bad = runner.invoke(app, ["explain", str(cat_png), "--tau", "1.5"])
    assert bad.exit_code == 2 and "tau" in bad.output


def test_report_of_missing_directory(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not a run directory" in result.output
