"""Bad input at the command line, case by case: one clear line (exit 2 usage, 1 runtime,
130/143 interrupted), no traceback, no files left behind; and what a person sees where
nothing is wrong — the words, the figures, the tables and the cost of the work."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import clean_error, invoke
from PIL import Image

from pixelprior.data import load_cifar10_sample

ROOT = Path(__file__).parents[2]


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((300, 451, 3)) * 255).astype(
        np.uint8)).save(path)
    return path


# ------------------------------------------------------------------ one line each
SMALL = ["--source", "sample", "--images", "2"]
USAGE = {  # (arguments, exit code, phrase); {cat}, {tmp}, {folder}, {photos} filled in
    "empty --modes": (["reproduce", "cifar10", *SMALL, "--modes", "", "--out", "{tmp}/run"],
                      2, "--modes is given an empty value: give one, or leave the option "
                         "out for its default"),
    "empty --mode (was the default mode)": (["attack", "{cat}", "--mode", "", "--out",
                                             "{tmp}/a"], 2, "--mode is given an empty value"),
    "empty --data (was the default data)": (["reproduce", "cifar10", *SMALL, "--data=",
                                             "--out", "{tmp}/run"], 2,
                                            "--data is given an empty value"),
    "empty image argument (was the folder .)": (["attack", "", "--out", "{tmp}/a"], 2,
                                                "an argument is empty: give a value"),
    "--corners with --levels (levels dropped)": (
        ["susceptibility", "{cat}", "--corners", "--levels", "5", "--out", "{tmp}/s"], 2,
        "--corners is the 2-level grid; --levels 5 asks for another"),
    "--levels past 8 bits (a grid of 10^9 colours built first)": (
        ["susceptibility", "{cat}", "--levels", "1000", "--out", "{tmp}/s"], 2,
        "an 8-bit color channel has 256 levels"),
    "--data with the bundled sample (unread)": (
        ["verify", "cifar10", *SMALL, "--data", "{folder}"], 2,
        "is the folder of CIFAR-10's test set, read for cifar10 --source full only"),
    "--ray-address without --workers (unread)": (
        ["verify", "{cat}", "--ray-address", "localhost:6379"], 2,
        "--ray-address is used only with --workers 2 or more"),
    "--source of another dataset (unread, hashed)": (
        ["run", "--data", "{photos}", "--source", "sample", "--out", "{tmp}/run"], 2,
        "chooses CIFAR-10's images; the folder dataset does not read it"),
    "a negative training seed (accepted, where attacks refuse it)": (
        ["train", "cifar10", "--seed", "-1", "--epochs", "1", "--out", "{tmp}/train"], 2,
        "--seed must be >= 0, got -1"),
    "an unknown model in explain (exit 1 there, 2 in attack and run)": (
        ["explain", "{cat}", "--model", "nosuchmodel", "--out", "{tmp}/e"], 2,
        "unknown model 'nosuchmodel'"),
    "an unknown model in eval": (
        ["eval", "cifar10", "--model", "nosuchmodel", "--source", "sample"], 2,
        "unknown model 'nosuchmodel'"),
    "a negative stand-in seed (an internal error, a file left)": (
        ["data", "standin", "--seed", "-1", "--out", "{tmp}/standin"], 2,
        "--seed must be >= 0, got -1"),
    "a CSV URL that is none (an internal error)": (
        ["data", "nips17", "--csv-url", "bogus", "--out", "{tmp}/dev"], 2,
        "--csv-url 'bogus' is no URL"),
    "an unknown scan engine (checked after the scan began, files left)": (
        ["susceptibility", "{cat}", "--engine", "bogus", "--out", "{tmp}/s"], 2,
        "--engine must be one of auto, incremental, full"),
    "--modes of commas": (["reproduce", "cifar10", *SMALL, "--modes", ",,", "--out",
                           "{tmp}/run"], 2, "names no mode; give one or more"),
    "--seeds 0": (["reproduce", "cifar10", *SMALL, "--seeds", "0", "--out", "{tmp}/run"], 2,
                  "a count of 0 seeds; for seed 0 alone write --seeds 0,"),
    "--seeds of commas": (["reproduce", "cifar10", *SMALL, "--seeds", ",", "--out",
                           "{tmp}/run"], 2, "names no seed"),
    "negative --seeds": (["reproduce", "cifar10", *SMALL, "--seeds", "-2", "--out",
                          "{tmp}/run"], 2, "seeds >= 0"),
    "a folder as --weights": (["attack", "{cat}", "--weights", "{folder}", "--out",
                               "{tmp}/o"], 2, "is a folder; give the weights file itself"),
    "missing --weights": (["explain", "{cat}", "--weights", "{tmp}/none.pt", "--out",
                           "{tmp}/o"], 2, "none.pt does not exist"),
    "a folder as --weights of a scan": (["susceptibility", "{cat}", "--weights", "{folder}",
                                         "--out", "{tmp}/o"], 2, "is a folder"),
    "--out with other files (run)": (["reproduce", "cifar10", *SMALL, "--seeds", "1",
                                      "--out", "{photos}"], 2,
                                     "is not empty and holds no pixelprior run"),
    "--out with other files (scan)": (["susceptibility", "{cat}", "--levels", "2", "--out",
                                       "{photos}"], 2, "holds other files (holiday.jpg)"),
    "a setting no mode reads": (["run", *SMALL, "--seeds", "0,", "--modes", "fast",
                                 "--query-budget", "5", "--out", "{tmp}/run"], 2,
                                "no mode of this run (fast) reads --query-budget (read by "
                                "random_search)"),
    "--images of one image file": (["verify", "{cat}", "--images", "3", "--out",
                                    "{tmp}/v"], 2, "{cat} is one image file: drop it"),
    "--source of a data spec": (["susceptibility", "{photos}", "--source", "sample", "--out",
                                 "{tmp}/s"], 2, "--source chooses images of cifar10"),
    "--first-index past the end": (["verify", "cifar10", *SMALL, "--first-index", "500",
                                    "--model", "convsmall-cifar10", "--out", "{tmp}/v"], 2,
                                   "only 0 correctly classified images from index 500"),
    "an engine that cannot serve the model": (
        ["run", *SMALL, "--model", "convsmall-cifar10", "--seeds", "0,", "--modes",
         "unconstrained", "--popsize", "10", "--maxiter", "1", "--engine", "incremental",
         "--out", "{tmp}/run"], 2, "engine='incremental' cannot be used"),
    "more --pixels than the image has": (["attack", "{cat}", "--pixels", "2000", "--popsize",
                                          "10", "--maxiter", "1", "--out", "{tmp}/o"], 2,
                                         "pixel_count=2000 is more than the 1,024 pixels"),
    "train --epochs 0": (["train", "cifar10", "--epochs", "0", "--out", "{tmp}/t"], 2,
                         "epochs must be >= 1, got 0"),
    "train --warmup-epochs 2 --epochs 2": (["train", "cifar10", "--epochs", "2",
                                            "--warmup-epochs", "2", "--out", "{tmp}/t"], 2,
                                           "warmup_epochs (2.0) must be fewer than epochs (2)"),
    "train --limit 0": (["train", "cifar10", "--limit", "0", "--out", "{tmp}/t"], 2,
                        "limit must be >= 1 (images), got 0"),
    "data standin --count 0": (["data", "standin", "--count", "0", "--out", "{tmp}/d"], 2,
                               "--count must be >= 1"),
}


@pytest.mark.parametrize("case", sorted(USAGE))
def test_usage_errors_are_one_line_and_leave_nothing(case, cat_png, tmp_path):
    folder = tmp_path / "weights-folder"
    folder.mkdir()
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"jpeg")
    args, code, phrase = USAGE[case]
    filled = [a.format(cat=cat_png, tmp=tmp_path, folder=folder, photos=photos) for a in args]
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    clean_error(invoke(*filled), code, phrase.format(cat=cat_png))
    after = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert after == before, "files were left behind"


PARSER = {  # the parser's own complaints: click printed them on four lines
    "an unknown option": (["attack", "{cat}", "--bogus"], "No such option: --bogus",
                          "attack"),
    "a missing argument": (["attack"], "Missing argument 'image_file'",
                           "attack"),
    "a number that is none": (["attack", "{cat}", "--tau", "abc"],
                              "Invalid value for '--tau'", "attack"),
    "an unknown command": (["bogus"], "No such command 'bogus'", ""),
    "an unknown option of the app": (["--bogus"], "No such option: --bogus",
                                     ""),
    "a subcommand's option": (["train", "cifar10", "--epochs", "x"],
                              "Invalid value for '--epochs'",
                              "train cifar10"),
}


@pytest.mark.parametrize("case", sorted(PARSER))
def test_parser_errors_are_one_line_naming_the_help(case, cat_png):
    args, phrase, command = PARSER[case]
    result = invoke(*[a.format(cat=cat_png) for a in args])
    line = clean_error(result, 2, phrase)  # the program is 'root' under the test runner
    assert result.output.strip() == line and line.endswith(f"{command} --help'".lstrip())


def test_debug_keeps_the_parsers_own_words(cat_png):
    result = invoke("--debug", "attack", cat_png, "--bogus")
    assert result.exit_code == 2 and "attack [OPTIONS]" in result.output.splitlines()[0]


def test_a_bare_group_still_shows_its_help():
    result = invoke("train")
    assert "train [OPTIONS]" in result.output.splitlines()[0] and "error:" not in result.output


@pytest.mark.parametrize("holds, phrase", [
    ({}, "holds no maps.npz and no verification.jsonl; make a ground truth with "
         "`pixelprior susceptibility IMAGES --out {folder}`"),
    ({"config.json": "{}", "results.jsonl": ""}, "is a run folder"),
    ({"notes.txt": "mine"}, "--out NEW_FOLDER"),
])
def test_evaluate_maps_without_a_ground_truth_names_a_command_that_can_make_one(
        holds, phrase, tmp_path):
    """`susceptibility --out` refuses a run folder or one holding other files: the
    message named the folder being read as the place to make the scan."""
    folder = tmp_path / "scored"
    folder.mkdir()
    for name, text in holds.items():
        (folder / name).write_text(text)
    line = clean_error(invoke("evaluate-maps", folder), 2, phrase.format(folder=folder))
    assert holds == {} or f"--out {folder}`" not in line


# ------------------------------------------------------------------ weights
def _weights(kind: str, path: Path) -> Path:
    from pixelprior.models import SqueezeNet, SqueezeNetCifar

    if kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(2000))
    elif kind == "a text file":
        path.write_text("these are not weights\n")
    elif kind == "a pickled model":
        torch.save(SqueezeNetCifar(), path)
    elif kind == "an ImageNet state dict":
        torch.save(SqueezeNet("1_1").state_dict(), path)
    return path


WEIGHTS = {"random bytes": "not a PyTorch weights file",
           "a text file": "not a PyTorch weights file",
           "a pickled model": "holds a pickled Python object "
                              "(pixelprior.models.squeezenet.SqueezeNetCifar)",
           "an ImageNet state dict": "these weights are not for squeezenet1_1-cifar10: tensors"}


@pytest.mark.parametrize("kind", sorted(WEIGHTS))
def test_bad_weights_are_one_short_line(kind, cat_png, tmp_path):
    weights = _weights(kind, tmp_path / "w.pt")
    line = clean_error(invoke("attack", cat_png, "--weights", weights, "--out", tmp_path / "o"),
                       1, WEIGHTS[kind])
    assert len(line) < 400 and "\x1b" not in line and "weights_only=False" not in line
    assert str(weights) in line and not (tmp_path / "o").exists()


def test_an_imagenet_state_dict_says_how_many_tensors_differ(cat_png, tmp_path):
    weights = _weights("an ImageNet state dict", tmp_path / "w.pt")
    line = clean_error(invoke("explain", cat_png, "--weights", weights, "--out",
                              tmp_path / "o"), 1, "missing (e.g.")
    assert "unexpected" in line and "pass the weights of squeezenet1_1-cifar10" in line


def test_any_long_message_is_cut_and_loses_its_escape_codes(cat_png, tmp_path, monkeypatch):
    from pixelprior.data import DataError

    def loud(*args, **kwargs):
        raise DataError("\x1b[1mbold\x1b[0m start " + "word " * 2000)

    monkeypatch.setattr("pixelprior.models.load_model", loud)
    line = clean_error(invoke("attack", cat_png, "--out", tmp_path / "o"), 1, "bold start")
    assert "\x1b" not in line and len(line) < 800
    assert "more characters; --debug shows the whole message" in line


# ------------------------------------------------------------------ signals
def _handlers_installed(pid: int) -> bool:
    """Whether the process catches SIGTERM (our handler is in place)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(line.split()[1] for line in status.splitlines()
                      if line.startswith("SigCgt:")), 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


STARTS = {"python -m pixelprior.cli": ["-m", "pixelprior.cli"],
          "the console script": ["-c", "import sys; sys.argv[0] = 'pixelprior'; "
                                       "from pixelprior.cli import app; sys.exit(app())"]}


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc")
@pytest.mark.parametrize("start", sorted(STARTS))
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_in_the_first_moments_is_one_line(start, signum, code, tmp_path):
    """The handlers are in place before the heavy imports: a signal then (about 0.2 s in)
    ends the process with one line and 130 / 143, not a traceback or a bare -15."""
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, *STARTS[start], "reproduce", "cifar10",
                                "--quick", "--out", str(out)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not _handlers_installed(process.pid) and process.poll() is None:
        assert time.time() < deadline, "the handlers were never installed"
        time.sleep(0.005)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert "interrupted before the run started" in stderr and "nothing was written" in stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert not out.exists()


def test_an_interrupt_before_any_write_says_nothing_was_written(capsys):
    from pixelprior._io import Interrupted
    from pixelprior.cli._app import report_error
    from pixelprior.cli.errors import BEFORE_RUN, on_interrupt

    on_interrupt(BEFORE_RUN)  # a run or scan that has not written yet
    assert report_error(Interrupted(signal.SIGTERM)) == 143
    assert "interrupted before the run started (SIGTERM); nothing was written" in (
        capsys.readouterr().err)
    on_interrupt(None)  # any other command (attack, explain, eval) before its writes
    assert report_error(Interrupted(signal.SIGINT)) == 130
    assert "interrupted (SIGINT): nothing was written" in capsys.readouterr().err


# ------------------------------------------------------------------ images
def test_a_gif_of_two_frames_is_said_to_use_its_first(tmp_path):
    sample = load_cifar10_sample()
    frames = [Image.fromarray(sample.images[i].permute(1, 2, 0).numpy()) for i in (0, 1)]
    gif = tmp_path / "two.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    result = invoke("explain", gif, "--out", tmp_path / "e")
    assert result.exit_code == 0, result.output
    assert "two.gif: holds 2 frames" in " ".join(result.output.split())
    assert "only the first is read" in " ".join(result.output.split())


def test_a_failed_targeted_attack_says_the_target_was_not_reached(capsys):
    from pixelprior.cli.attack import _print_attack

    names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck")
    result = SimpleNamespace(success=False, adversarial_label=5, generations=3,
                             positions_scanned=None, steps={"generations": 3},
                             pixels=[SimpleNamespace(x=1, y=2)],
                             queries=64, true_probability=0.4, target_probability=0.01,
                             seconds=0.1)
    _print_attack(result, names, 3, 8, None, Path("o"))
    said = " ".join(capsys.readouterr().out.split())
    assert "failed: cat → not ship (the model says dog" in said and "stays" not in said
    assert "target probability 0.010" in said
    result.adversarial_label = 3
    _print_attack(result, names, 3, None, None, Path("o"))
    assert "failed: cat stays cat" in " ".join(capsys.readouterr().out.split())


def test_explain_writes_a_figure_and_says_no_coordinates(photo, tmp_path):
    out = tmp_path / "e"
    result = invoke("explain", photo, "--out", out)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "both frames" not in said and "what is written is of the 32×32 image" in said
    figure = Image.open(out / "photo-smoothgrad-figure.png")
    assert figure.size[0] > 600 and figure.size[1] > 200  # image, map + colour bar, S
    assert np.load(out / "photo-smoothgrad.npy").shape == (32, 32)
    assert Image.open(out / "photo-smoothgrad.png").size == (32, 32)  # the raw PNGs stay
    assert (out / "photo-smoothgrad-susceptible.png").is_file()


def test_an_attack_on_a_photo_is_written_at_its_own_resolution(photo, tmp_path):
    out = tmp_path / "o"
    result = invoke("attack", photo, "--popsize", "8", "--maxiter", "1", "--out", out)
    assert result.exit_code == 0, result.output
    row = json.loads((out / "photo-result.json").read_text())
    original = np.asarray(Image.open(photo))
    full = np.asarray(Image.open(out / "photo-adversarial-full.png"))
    assert full.shape == original.shape == (300, 451, 3)
    x0, y0, x1, y1 = row["pixels_in_file"][0]["file_box"]
    changed = (full != original).any(2)
    assert not changed[:y0].any() and not changed[y1 + 1:].any()
    assert not changed[:, :x0].any() and not changed[:, x1 + 1:].any()
    new = np.round(np.asarray(row["pixels"][0]["new"]) * 255).astype(np.uint8)
    assert (full[y0:y1 + 1, x0:x1 + 1] == new).all()
    assert Image.open(out / "photo-adversarial-marked.png").size[0] > 451
    assert row["file_copy_name"] in row["true_name"] + row["adversarial_name"] or (
        isinstance(row["file_copy_label"], int))
    said = " ".join(result.output.split())
    assert "photo-adversarial-full.png" in said and "the file-resolution copy is" in said
    assert Image.open(out / "photo-adversarial.png").size == (32, 32)


def test_the_oracle_figure_of_a_file_is_titled_by_its_name(cat_png, tmp_path, monkeypatch):
    from pixelprior.report import figures

    titles = []
    real = figures._show
    monkeypatch.setattr(figures, "_show", lambda ax, image, title: (
        titles.append(title), real(ax, image, title)))
    result = invoke("susceptibility", cat_png, "--levels", "2", "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output
    assert titles == ["cat.png: cat"]


# ------------------------------------------------------------------ cost and tables
def test_a_scan_says_its_cost_and_warns_before_it_starts(cat_png, tmp_path, monkeypatch):
    started = []

    def run_scan(*args, **kwargs):
        started.append(True)
        raise RuntimeError("stopped here by the test")

    monkeypatch.setattr("pixelprior.cli.scans.run_scan", run_scan)
    result = invoke("susceptibility", cat_png, "--levels", "100", "--out", tmp_path / "s")
    said = " ".join(result.output.split())
    assert started and said.index("cost:") < said.index("stopped here")
    assert "cost: 1,024,000,000 model queries for 1 image(s) × 1,024 positions × " \
           "1,000,000 colours" in said
    assert "warning: this is a large job (1.0e+09 queries" in said
    assert "lower --levels" in said and "estimate" in said


def test_a_small_scan_says_its_cost_without_a_warning(cat_png, tmp_path):
    result = invoke("susceptibility", cat_png, "--levels", "2", "--out", tmp_path / "s")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "cost: 8,192 model queries" in said and "warning" not in said


@pytest.mark.checkout
def test_report_tables_fit_80_columns(tmp_path, monkeypatch):
    from pixelprior.cli._app import console

    copy = tmp_path / "ranked"
    shutil.copytree(ROOT / "results" / "cifar10-ranked", copy)
    monkeypatch.setattr("pixelprior.report.tables.write_figures", lambda *a, **k: [])
    monkeypatch.setattr(console, "width", 80)
    monkeypatch.setenv("COLUMNS", "80")
    result = invoke("report", copy)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "…" not in result.output and max(len(line) for line in lines) <= 80
    header = next(line for line in lines if "success" in line)
    assert header.split() == ["seed", "mode", "images", "success", "total", "s", "mean", "s",
                              "gen", "all", "gen", "succ", "queries"]
    assert any(line.split()[1:2] == ["scan:smoothgrad"] for line in lines if line.strip())


@pytest.mark.checkout
def test_a_narrow_terminal_keeps_every_column(tmp_path, monkeypatch):
    from pixelprior.cli._app import console

    copy = tmp_path / "run"
    shutil.copytree(ROOT / "results" / "cifar10", copy)
    monkeypatch.setattr("pixelprior.report.tables.write_figures", lambda *a, **k: [])
    monkeypatch.setattr(console, "width", 50)
    result = invoke("report", copy)
    assert result.exit_code == 0, result.output
    assert any("unconstrained" in line for line in result.output.splitlines())


@pytest.mark.skipif(os.name != "posix", reason="posix paths")
def test_the_readme_lists_every_case_of_this_file():
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Bad input: what you see"):]
    table = table[:table.index("\n## ", 5)]
    for phrase in ("--modes ''", "--seeds 0", "is a folder", "pickled", "not for",
                   "2 frames", "line N", "no space left on device", "before the run started",
                   "old-STAMP", "cost:", "warning:", "not ship", "-adversarial-full.png",
                   "80 columns", "could not be used", "config.json", "selection.json"):
        assert phrase in table, phrase


def test_a_python_file_without_its_function_says_how_to_name_it(cat_png, tmp_path):
    (tmp_path / "net.py").write_text("def make():\n    pass\n")
    line = clean_error(invoke("attack", cat_png, "--model", tmp_path / "net.py", "--out",
                              tmp_path / "o"), 1, "is Python code, not a model file")
    assert "net.py:make_model" in line


def test_a_digit_that_is_no_ascii_number_is_an_unknown_class(cat_png, tmp_path):
    """'²' passed isdigit() and ended in int()'s own message."""
    clean_error(invoke("attack", cat_png, "--target", "²", "--out", tmp_path / "o"), 2,
                "unknown target class '²'")


def test_an_exif_orientation_that_is_none_is_not_said_applied(tmp_path):
    from pixelprior.data import read_image_file
    exif = Image.Exif()
    exif[0x0112] = 9
    Image.new("RGB", (4, 3), (10, 20, 30)).save(tmp_path / "o9.jpg", exif=exif.tobytes())
    assert not any("EXIF" in note for note in read_image_file(tmp_path / "o9.jpg").notes)


@pytest.mark.parametrize("failure", [
    MemoryError(),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate "
                 "memory: you tried to allocate 8000000000000 bytes"),
    RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")])
def test_a_request_too_large_for_the_machine_is_one_line_of_what_to_lower(failure):
    """--popsize 10^12 or --input-size 99999999 was an internal error to report."""
    from pixelprior.cli.errors import error_line

    code, line = error_line(failure)
    assert code == 1 and "internal error" not in line
    assert "out of memory" in line and "ask for less at once" in line
