"""``pixelprior verify``: a row per image and a table; a resume with other settings, a
model without bound rules and bad options end in one line before anything is written."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from helpers import clean_error, invoke

CUMULATIVE = '''
import torch
import torch.nn.functional as F
from torch import nn


class Cumulative(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        h = F.interpolate(self.conv(x), scale_factor=2, mode="bilinear")
        return self.fc(h.cumsum(-1).cumsum(-2).mean((2, 3)))


def cumulative():
    return Cumulative().eval()


two = cumulative  # (a factory whose name is an emoji code)
'''

# huge values that cancel: margins of 1-9 against a float64 rounding of ~10^4
LOUD = '''
import torch
from torch import nn


class Loud(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3 * 32 * 32, 2)
        self.fc2 = nn.Linear(2, 10)
        with torch.no_grad():
            self.fc1.weight.fill_(1e17 / 3072)
            self.fc1.bias.fill_(1e17)
            self.fc2.weight.zero_()
            self.fc2.weight[:, 0] = 1.0
            self.fc2.weight[:, 1] = -1.0
            self.fc2.bias.copy_(torch.arange(10.0))

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def loud():
    return Loud().eval()
'''


def test_verify_writes_a_row_per_image_and_refuses_other_settings(tmp_path):
    out = tmp_path / "v"
    result = invoke("verify", "cifar10", "--source", "sample", "--model", "convsmall-cifar10",
                    "--images", 1, "--budget", 60, "--out", out)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "verification.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["image_index"] == 0
    assert rows[0]["decided_by"] in ("verified", "fooled", "unknown")
    if rows[0]["fooled"]:
        assert rows[0]["witness_x"] is not None and len(rows[0]["witness_color"]) == 3
    assert "images verified" in " ".join(result.output.split())
    before = (out / "verification.jsonl").read_bytes()
    other = invoke("verify", "cifar10", "--source", "sample", "--model", "convsmall-cifar10",
                   "--images", 1, "--budget", 30, "--out", out)
    clean_error(other, 2, "budget = 60.0, not 30.0")
    assert (out / "verification.jsonl").read_bytes() == before


def test_the_summary_counts_the_images_asked_and_says_the_folders_others(tmp_path):
    """An audit: asked for one image in a folder holding another, the line said "0 of 2
    images verified"."""
    out = tmp_path / "v"
    options = ("--source", "sample", "--model", "convsmall-cifar10", "--images", 1,
               "--budget", 0, "--max-boxes", 200, "--deterministic", "--out", out)
    assert invoke("verify", "cifar10", *options).exit_code == 0
    second = invoke("verify", "cifar10", *options, "--first-index", 5)
    assert second.exit_code == 0, second.output
    text = " ".join(second.output.split())
    assert " of 1 images verified" in text
    assert "also holds the answers of 1 other image(s) from earlier runs" in text


def test_no_screen_is_recorded_and_a_resume_must_keep_it(tmp_path):
    out = tmp_path / "v"
    common = ("verify", "cifar10", "--source", "sample", "--model", "convsmall-cifar10",
              "--budget", 0, "--max-boxes", 5000, "--deterministic", "--out", out)
    result = invoke(*common, "--images", 1, "--no-screen")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "verification.json").read_text())["screen"] is False
    before = (out / "verification.jsonl").read_bytes()
    other = invoke(*common, "--images", 2)  # the screen on (the default)
    clean_error(other, 2, "screen = False, not True")
    assert (out / "verification.jsonl").read_bytes() == before
    settings = json.loads((out / "verification.json").read_text())
    del settings["screen"]  # a folder from before the setting was recorded: not known
    (out / "verification.json").write_text(json.dumps(settings))
    resumed = invoke(*common, "--images", 2)  # resumes, and records no guess
    assert resumed.exit_code == 0, resumed.output
    assert len((out / "verification.jsonl").read_text().splitlines()) == 2
    assert "screen" not in json.loads((out / "verification.json").read_text())


def test_no_search_is_recorded_a_resume_must_keep_it_and_an_older_folder_resumes(
        tmp_path):
    """Rows say how many positions the local search ran at and what it found; the
    setting is part of the folder's, and a folder from before it resumes."""
    out = tmp_path / "v"
    common = ("verify", "cifar10", "--source", "sample", "--model", "convsmall-cifar10",
              "--budget", 0, "--max-boxes", 300, "--deterministic", "--first-index", 4,
              "--out", out)  # images 4 and 5: unknown in 300 boxes
    result = invoke(*common, "--images", 1, "--no-search")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "verification.json").read_text())["search"] is False
    (row,) = [json.loads(line) for line in (out / "verification.jsonl").read_text()
              .splitlines()]
    assert row["positions_searched"] == 0 and row["search_witnesses"] == 0
    other = invoke(*common, "--images", 2)  # the search on (the default)
    clean_error(other, 2, "search = False, not True")
    settings = json.loads((out / "verification.json").read_text())
    del settings["search"]  # a folder from before the setting was recorded
    (out / "verification.json").write_text(json.dumps(settings))
    resumed = invoke(*common, "--images", 2)
    assert resumed.exit_code == 0, resumed.output
    rows = [json.loads(line) for line in (out / "verification.jsonl").read_text()
            .splitlines()]
    assert len(rows) == 2 and "search" not in json.loads(
        (out / "verification.json").read_text())
    assert rows[1]["decided_by"] == "unknown"  # cut by its boxes: the open positions
    assert rows[1]["positions_searched"] > 0  # searched (none fooled by it here)


def test_the_float32_proof_is_recorded_and_an_older_folder_resumes(tmp_path):
    """New folders say their tolerances include the float32 proof, and each row how many
    positions it covered; a folder from before it resumes without a guess recorded, its
    earlier rows counted as not float32 proved."""
    out = tmp_path / "v"
    common = ("verify", "cifar10", "--source", "sample", "--model", "convsmall-cifar10",
              "--budget", 0, "--max-boxes", 20000, "--deterministic", "--out", out)
    result = invoke(*common, "--images", 5)  # the sample's fifth image is verified
    assert result.exit_code == 0, result.output
    assert json.loads((out / "verification.json").read_text())["float32_proof"] is True
    rows = [json.loads(line) for line in (out / "verification.jsonl").read_text()
            .splitlines()]
    verified = [row for row in rows if row["verified"]]
    assert verified and all(row["float32_proved"] == 1024 for row in verified)
    # a float32-proved position's tolerance is its proved error: above or below the
    # estimate's
    assert all(row["tolerance_max"] > 0 and row["tolerance"] > 0 for row in rows)
    assert (f"{len(verified)} of them with the float32 evaluation proved"
            in " ".join(result.output.split()))
    assert "float32" in result.output and "proved" in result.output  # the table's column
    settings = json.loads((out / "verification.json").read_text())
    del settings["float32_proof"]  # a folder from before the setting was recorded
    (out / "verification.json").write_text(json.dumps(settings))
    resumed = invoke(*common, "--images", 6)
    assert resumed.exit_code == 0, resumed.output
    assert len((out / "verification.jsonl").read_text().splitlines()) == 6
    assert "float32_proof" not in json.loads((out / "verification.json").read_text())


def test_an_image_file_is_verified_named_and_not_mixed_with_another(tmp_path, monkeypatch):
    from PIL import Image

    from pixelprior.data import load_cifar10_sample

    images = load_cifar10_sample().images
    for n, name in ((4, "robust.png"), (0, "other.png")):
        Image.fromarray(images[n].permute(1, 2, 0).numpy()).save(tmp_path / name)
    out = tmp_path / "v"
    result = invoke("verify", tmp_path / "robust.png", "--model", "convsmall-cifar10",
                    "--budget", 0, "--max-boxes", 5000, "--deterministic", "--out", out)
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in (out / "verification.jsonl").open()]
    assert row["decided_by"] == "verified" and row["verified_volume"] == 1.0
    assert any(line.split()[:2] == ["robust.png", "verified"]  # the row named, no -1
               for line in result.output.splitlines()), result.output
    settings = json.loads((out / "verification.json").read_text())
    assert settings["target"] == str(tmp_path / "robust.png")
    other = invoke("verify", tmp_path / "other.png", "--model", "convsmall-cifar10",
                   "--budget", 0, "--max-boxes", 5000, "--deterministic", "--out", out)
    clean_error(other, 2, "holds verdicts made with target")  # not mixed under index -1
    assert len((out / "verification.jsonl").read_text().splitlines()) == 1
    monkeypatch.chdir(tmp_path)
    again = invoke("verify", "robust.png", "--model", "convsmall-cifar10",
                   "--budget", 0, "--max-boxes", 5000, "--deterministic", "--out", out)
    assert again.exit_code == 0, again.output  # the same file, named another way: resumed
    assert len((out / "verification.jsonl").read_text().splitlines()) == 1
    Image.fromarray(images[0].permute(1, 2, 0).numpy()).save(tmp_path / "robust.png")
    changed = invoke("verify", "robust.png", "--model", "convsmall-cifar10",
                     "--budget", 0, "--max-boxes", 5000, "--deterministic", "--out", out)
    clean_error(changed, 2, "an image file with other pixels")  # same path, new pixels
    assert len((out / "verification.jsonl").read_text().splitlines()) == 1


def test_without_out_the_answer_is_printed_and_nothing_kept(tmp_path, monkeypatch):
    from PIL import Image

    from pixelprior.data import load_cifar10_sample

    image = load_cifar10_sample().images[4]
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp_path / "robust.png")
    monkeypatch.chdir(tmp_path)
    created, temporary = [], tempfile.TemporaryDirectory

    def spied(*args, **kwargs):
        folder = temporary(*args, **kwargs)
        created.append(Path(folder.name))
        return folder

    monkeypatch.setattr(tempfile, "TemporaryDirectory", spied)
    result = invoke("verify", "robust.png", "--model", "convsmall-cifar10",
                    "--budget", 0, "--max-boxes", 5000, "--deterministic")
    assert result.exit_code == 0, result.output
    assert any(line.split()[:2] == ["robust.png", "verified"]
               for line in result.output.splitlines()), result.output
    assert "not kept (give --out DIR" in " ".join(result.output.split())
    assert [p.name for p in tmp_path.iterdir()] == ["robust.png"]  # nothing written here
    assert len(created) == 1 and not created[0].exists()  # the run's folder, removed
    exact = invoke("verify", "robust.png", "--model", "convsmall-cifar10", "--exact")
    clean_error(exact, 2, "give --out DIR")  # its positions would be thrown away


# values of a few units through 32 orthogonal linear layers with ReLUs between: the
# proved float64 rounding grows by the absolute weights' row sums per layer (~10^24 at
# the margins; with signs ~10^19: past the values, every ReLU after is in doubt). (17
# such layers without ReLUs were ~10^5 forward, 6·10^-7 with signs: proved.)
DEEP = '''
import torch
from torch import nn


def deep():
    torch.manual_seed(0)
    layers = [nn.Flatten(), nn.Linear(3 * 32 * 32, 256)]
    for _ in range(30):
        layer = nn.Linear(256, 256)
        nn.init.orthogonal_(layer.weight, gain=2 ** 0.5)
        nn.init.zeros_(layer.bias)
        layers += [nn.ReLU(), layer]
    return nn.Sequential(*layers, nn.Linear(256, 10)).eval()
'''


def test_a_model_whose_float_error_defeats_every_proof_is_said_so(tmp_path):
    """A model of huge values that cancel: its bounds' proved float64 rounding (~10^4)
    exceeds its margins, and the command says so before the work; so does a stack of 32
    linear layers (orthogonal, ReLUs between), whose values are a few units (a review: a
    20-layer ResNet was said to have values too large for float64; with signs the bound
    is still ~10^19 there); the bundled 26-layer SqueezeNet's (~10^-2 per neuron, 10^-5
    with signs) does not."""
    (tmp_path / "nets.py").write_text(LOUD)
    loud = invoke("verify", "cifar10", "--source", "sample", "--model",
                  f"{tmp_path / 'nets.py'}:loud", "--input-size", 32, "--images", 1,
                  "--budget", 1, "--max-boxes", 1, "--out", tmp_path / "loud")
    # (said before the work; the image is then refused: the model does not classify it)
    assert "no box can be proved" in " ".join(loud.output.split())
    (tmp_path / "deep.py").write_text(DEEP)  # values of a few units, 32 linear layers
    stacked = invoke("verify", "cifar10", "--source", "sample", "--model",
                     f"{tmp_path / 'deep.py'}:deep", "--input-size", 32, "--images", 1,
                     "--budget", 1, "--max-boxes", 1)
    said = " ".join(stacked.output.split())
    assert "no box can be proved" in said and "a deep network whose |weights| multiply" in said
    deep = invoke("verify", "cifar10", "--source", "sample", "--images", 1, "--budget", 1,
                  "--max-boxes", 1, "--out", tmp_path / "deep")
    assert deep.exit_code == 0, deep.output
    assert "no box can be proved" not in " ".join(deep.output.split())


def test_a_model_without_bound_rules_is_refused_before_writing(tmp_path):
    (tmp_path / "nets.py").write_text(CUMULATIVE)
    out = tmp_path / "v"
    result = invoke("verify", "cifar10", "--source", "sample", "--model",
                    f"{tmp_path / 'nets.py'}:cumulative", "--input-size", 32, "--images", 1,
                    "--out", out)
    clean_error(result, 2, "no bound rule for Tensor.cumsum()")
    assert not out.exists()


def test_check_lists_every_operation_and_every_refusal(tmp_path):
    """``--check`` lists the model's operations as the verifier runs them, each refusal
    on a line (both cumsums, where a run names only the first), and ends in one line with
    exit 2; on a model it bounds, exit 0 and what it estimates; nothing is written."""
    (tmp_path / "nets.py").write_text(CUMULATIVE)
    result = invoke("verify", "cifar10", "--source", "sample", "--model",
                    f"{tmp_path / 'nets.py'}:two", "--input-size", 32, "--check")
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "the operations the verifier bounds" in output
    assert "\u20e3" not in output  # ':two:' in the title stays text, not the emoji 2️⃣
    assert output.count("refused: the verifier has no bound rule for Tensor.cumsum()") == 2
    assert "resample (writing interpolate)" in output and "estimated" in output
    assert "cannot bound 2 of the model's" in output and "Traceback" not in output
    bounded = invoke("verify", "cifar10", "--source", "sample", "--model",
                     "convsmall-cifar10", "--check", "--out", tmp_path / "v", "--exact")
    assert bounded.exit_code == 0, bounded.output
    assert "the verifier bounds all 10 operations" in " ".join(bounded.output.split())
    assert "verifies nothing: --out, --exact not used" in " ".join(bounded.output.split())
    assert not (tmp_path / "v").exists()
    clean_error(invoke("verify", "cifar10", "--source", "sample", "--model",
                       "convsmall-cifar10", "--check", "--max-boxes", -5), 2,
                "--max-boxes must be >= 1")  # (options are checked as a run checks them)


def test_bad_options_are_one_line(tmp_path):
    for option, value, phrase in [("--budget", -1, "--budget must be a finite number of "
                                   "seconds >= 0"),
                                  ("--budget", "inf", "(0: no limit), got inf"),
                                  ("--max-boxes", 0, "--max-boxes must be >= 1"),
                                  ("--tolerance", -0.5, "--tolerance must be >= 0"),
                                  ("--workers", 0, "--workers must be >= 1")]:
        result = invoke("verify", "cifar10", "--source", "sample", "--model",
                        "convsmall-cifar10", option, value, "--out", tmp_path / "v")
        clean_error(result, 2, phrase)
    assert not (tmp_path / "v").exists()


def test_workers_with_device_auto_let_the_ray_cluster_choose(tmp_path, monkeypatch):
    """``--device auto`` resolves here for the model check, but the Ray workers are asked
    for ``auto`` (the cluster's GPUs if it has any), recorded as such; an explicit device
    is passed on as it is."""
    pytest.importorskip("ray")
    from pixelprior.cli import verify as verify_cli

    asked = []

    def fake_run(out, *args, **kwargs):
        asked.append((kwargs["worker_device"], kwargs["info"].get("worker_device")))
        return []

    monkeypatch.setattr(verify_cli, "run_verification", fake_run)
    monkeypatch.setattr(verify_cli, "_print_rows", lambda *args: None)
    for device in ("auto", "cpu"):
        result = invoke("verify", "cifar10", "--source", "sample", "--model",
                        "convsmall-cifar10", "--images", 2, "--workers", 2, "--device", device,
                        "--out", tmp_path / device)
        assert result.exit_code == 0, result.output
    assert asked == [("auto", "auto"), ("cpu", "cpu")]


def test_susceptibility_exact_gives_verdicts_that_evaluate_maps_scores(tmp_path):
    out = tmp_path / "exact"
    result = invoke("susceptibility", "cifar10", "--source", "sample", "--model",
                    "convsmall-cifar10", "--images", 1, "--first-index", 1, "--exact",
                    "--budget", 60, "--out", out)
    assert result.exit_code == 0, result.output
    assert "note: --exact under a time budget" in " ".join(result.output.split())
    settings = json.loads((out / "verification.json").read_text())
    assert settings["exact"] is True and settings["budget"] == 60.0
    row = json.loads((out / "verification.jsonl").read_text())
    assert (out / row["positions_file"]).is_file()
    scored = invoke("evaluate-maps", out, "--methods", "gradient,random,oracle")
    assert scored.exit_code == 0, scored.output
    assert "exact verdicts" in (out / "map_metrics.md").read_text()
    oracle = json.loads((out / "map_metrics.json").read_text())["methods"][-1]
    assert oracle["method"] == "oracle"
    if row["positions_vulnerable"]:
        assert oracle["auc_mean"] == 1.0 and oracle["mean_queries_to_first"] == 1
    again = invoke("susceptibility", "cifar10", "--source", "sample", "--model",
                   "convsmall-cifar10", "--images", 1, "--first-index", 1, "--exact",
                   "--budget", 60, "--out", out)  # the map files beside it are its own
    assert again.exit_code == 0, again.output
    boxed = invoke("susceptibility", "cifar10", "--source", "sample", "--model",
                   "convsmall-cifar10", "--images", 1, "--first-index", 1, "--exact",
                   "--budget", 0, "--max-boxes", 20000, "--deterministic",
                   "--out", tmp_path / "boxed")
    assert boxed.exit_code == 0, boxed.output
    assert "time budget" not in boxed.output
    settings = json.loads((tmp_path / "boxed" / "verification.json").read_text())
    assert (settings["budget"], settings["max_boxes"], settings["deterministic"]) == (
        None, 20000, True)


def test_exact_options_that_belong_elsewhere_are_refused(tmp_path):
    for options, phrase in [(["--budget", 5], "give it with --exact"),
                            (["--no-screen"], "they need --exact"),
                            (["--no-search"], "they need --exact"),
                            (["--max-boxes", 9], "give them with --exact"),
                            (["--deterministic"], "give them with --exact"),
                            (["--exact", "--levels", 4], "choose a grid of colors"),
                            (["--exact", "--batch-images", 2], "set the grid scan")]:
        result = invoke("susceptibility", "cifar10", "--source", "sample", "--model",
                        "convsmall-cifar10", *options, "--out", tmp_path / "s")
        clean_error(result, 2, phrase)
    per_image = tmp_path / "v"
    invoke("verify", "cifar10", "--source", "sample", "--model", "convsmall-cifar10",
           "--images", 1, "--first-index", 1, "--out", per_image)
    clean_error(invoke("evaluate-maps", per_image), 2, "made without --exact")
    assert not (tmp_path / "s").exists()


def test_an_input_size_flag_equal_to_the_models_own_resumes_and_another_is_refused(tmp_path):
    """``--input-size 32`` for a 32-pixel model is the size the folder's images ran at:
    a resume with it (or without it) continues; a folder from before the size was
    recorded still compares the flag as given."""
    out = tmp_path / "v"
    common = ("verify", "cifar10", "--source", "sample", "--model", "convsmall-cifar10",
              "--budget", 0, "--max-boxes", 2000, "--deterministic", "--out", out)
    assert invoke(*common, "--images", 1).exit_code == 0
    settings = json.loads((out / "verification.json").read_text())
    assert settings["input_size"] is None and settings["image_size"] == [32, 32]
    resumed = invoke(*common, "--images", 2, "--input-size", 32)
    assert resumed.exit_code == 0, resumed.output
    assert len((out / "verification.jsonl").read_text().splitlines()) == 2
    del settings["image_size"]  # a folder from before it was recorded
    (out / "verification.json").write_text(json.dumps(settings))
    clean_error(invoke(*common, "--images", 3, "--input-size", 32), 2,
                "input_size = None, not 32")
