"""The command line: every user error is one clear line with the right exit code, no
traceback and no files left behind; images of every mode; meaningful requests only."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from helpers import clean_error, invoke
from PIL import Image

from pixelprior.cli import app
from pixelprior.data import load_cifar10_sample


def test_eval_on_bundled_sample():
    result = invoke("eval", "cifar10", "--source", "sample")
    assert result.exit_code == 0, result.output
    assert "top-1" in result.output and "100 exact" in result.output


def test_eval_names_the_weights_and_refuses_options_it_would_not_read(tmp_path):
    from pixelprior.models import bundled_weights_path, model_spec

    weights = bundled_weights_path(model_spec("squeezenet1_1-cifar10"))
    named = invoke("eval", "cifar10", "--source", "sample", "--weights", weights)
    assert named.exit_code == 0, named.output
    assert f"with weights {weights}" in " ".join(named.output.split())
    clean_error(invoke("eval", "cifar10", "--source", "sample", "--data", tmp_path), 2,
                "is not read with --source sample")
    np.savez(tmp_path / "set.npz", images=load_cifar10_sample().images[:2].numpy(),
             labels=np.array([3, 8]))
    clean_error(invoke("eval", "data", tmp_path / "set.npz", "--source", "sample"), 2,
                "drop --source")


def test_attack_writes_image_and_json(cat_png, tmp_path):
    out = tmp_path / "out"
    result = invoke("attack", cat_png, "--constrained", "--popsize", "20", "--maxiter", "3",
                    "--label", "cat", "--out", out)
    assert result.exit_code == 0, result.output
    row = json.loads((out / "cat-result.json").read_text())
    assert row["true_name"] == "cat" and row["prior"] == "susceptible"
    assert row["resized_from"] is None
    # the settings the search ran with are in the row (τ: the default, as none was given)
    assert (row["tau"], row["popsize"], row["maxiter"], row["strategy"]) == (
        0.5, 20, 3, "rand1bin")
    # the adversarial image where the attack fooled the model, none where it did not
    assert (out / "cat-adversarial.png").exists() is row["success"]
    if row["success"]:
        assert np.asarray(Image.open(out / "cat-adversarial.png")).shape == (32, 32, 3)
    # what the model says of the PNG as written (8 bits), beside the float result
    assert row["png_name"] == row["adversarial_name"] or row["png_fools"] is False
    assert row["png_fools"] is (None if not row["success"] else row["png_fools"])


def test_the_adversarial_is_judged_as_its_8_bit_png_holds_it_too():
    """A colour between two 8-bit levels can fool where its rounding does not: the row
    says what the model makes of the PNG (it was not checked before)."""
    from types import SimpleNamespace

    import torch

    from pixelprior.cli.attack import _as_written

    class Between(torch.nn.Module):  # class 1 iff red at (0, 0) lies in (0.499, 0.501)
        def forward(self, x):
            red = x[:, 0, 0, 0]
            inside = ((red > 0.499) & (red < 0.501)).float()
            return torch.stack([1 - inside, inside], 1)

    image = torch.zeros(3, 2, 2)
    image[0, 0, 0] = 0.5  # fools; its 8-bit level, 128/255 = 0.502, does not
    fooled = SimpleNamespace(success=True, target=None, true_label=0)
    row = _as_written(image, fooled, Between(), "cpu", ["a", "b"])
    assert row == {"png_label": 0, "png_name": "a", "png_fools": False}
    image[0, 0, 0] = 0.0
    failed = SimpleNamespace(success=False, target=None, true_label=0)
    assert _as_written(image, failed, Between(), "cpu", ["a", "b"])["png_fools"] is None


def test_attack_refuses_to_replace_another_images_result(cat_png, tmp_path):
    """Two pictures of one file name into one folder: the second used to replace the
    first's PNG and JSON without a word (an audit); the same picture again replaces."""
    out = tmp_path / "out"
    options = ("--popsize", "8", "--maxiter", "1", "--out", out)
    assert invoke("attack", cat_png, *options).exit_code == 0
    other = tmp_path / "b" / "cat.png"
    other.parent.mkdir()
    other.write_bytes(open(cat_png, "rb").read())
    before = (out / "cat-result.json").read_bytes()
    line = clean_error(invoke("attack", other, *options), 2, "holds the result of another "
                       "image named cat")
    assert "choose another --out" in line
    assert (out / "cat-result.json").read_bytes() == before
    assert invoke("attack", cat_png, *options).exit_code == 0  # the same image: rerun


def test_attack_reruns_the_same_image_given_from_another_folder(cat_png, tmp_path,
                                                                 monkeypatch):
    """The same picture by a relative path from another working folder is the same image
    (the row records its absolute path), not another one refused."""
    import pathlib
    picture = pathlib.Path(cat_png)
    out = tmp_path / "out"
    options = ("--popsize", "8", "--maxiter", "1", "--out", out)
    monkeypatch.chdir(picture.parent)
    assert invoke("attack", picture.name, *options).exit_code == 0
    assert json.loads((out / "cat-result.json").read_text())["image_path"] == str(
        picture.resolve())
    monkeypatch.chdir(picture.parent.parent)
    result = invoke("attack", f"{picture.parent.name}/{picture.name}", *options)
    assert result.exit_code == 0, result.output


def test_targeted_attack_and_a_scan_mode(cat_png, tmp_path):
    result = invoke("attack", cat_png, "--target", "dog", "--popsize", "8", "--maxiter", "1",
                    "--out", tmp_path / "t")
    assert result.exit_code == 0, result.output
    scan = invoke("attack", cat_png, "--mode", "scan:occlusion", "--out", tmp_path / "s")
    assert scan.exit_code == 0, scan.output
    row = json.loads((tmp_path / "s" / "cat-result.json").read_text())
    assert row["generations"] is None and row["positions_scanned"] >= 1
    assert row["tau"] is row["popsize"] is row["maxiter"] is row["strategy"] is None
    assert "positions" in scan.output


def test_explain_writes_map_and_set(cat_png, tmp_path):
    result = invoke("explain", cat_png, "--out", tmp_path / "e")
    assert result.exit_code == 0, result.output
    smap = np.load(tmp_path / "e" / "cat-smoothgrad.npy")
    assert smap.shape == (32, 32) and 0 <= smap.min() and smap.max() <= 1
    assert (tmp_path / "e" / "cat-smoothgrad-susceptible.png").is_file()
    record = json.loads((tmp_path / "e" / "cat-smoothgrad.json").read_text())
    assert record["image_path"] == str(cat_png.resolve()) and record["tau"] == 0.5


def test_explain_takes_gradcams_layer_by_name(cat_png, tmp_path):
    out = tmp_path / "e"
    result = invoke("explain", cat_png, "--method", "gradcam", "--layer", "features.3",
                    "--out", out)
    assert result.exit_code == 0, result.output
    assert np.load(out / "cat-gradcam.npy").shape == (32, 32)
    clean_error(invoke("explain", cat_png, "--method", "gradcam", "--layer", "features.99",
                       "--out", tmp_path / "f"), 2,
                "the GradCAM layer 'features.99' is no module of the model")
    clean_error(invoke("explain", cat_png, "--layer", "features.3", "--out", tmp_path / "g"),
                2, "--layer is GradCAM's layer and --method is smoothgrad")
    assert not (tmp_path / "f").exists() and not (tmp_path / "g").exists()


def test_explain_refuses_to_replace_another_images_map(cat_png, tmp_path):
    other = tmp_path / "other" / "cat.png"
    other.parent.mkdir()
    other.write_bytes(cat_png.read_bytes())
    out = tmp_path / "e"
    assert invoke("explain", cat_png, "--method", "gradient", "--out", out).exit_code == 0
    again = invoke("explain", cat_png, "--method", "gradient", "--tau", 0.3, "--out", out)
    assert again.exit_code == 0, again.output  # the same image: replaced, τ recorded
    assert json.loads((out / "cat-gradient.json").read_text())["tau"] == 0.3
    clean_error(invoke("explain", other, "--method", "gradient", "--out", out), 2,
                "holds the gradient map of another image named cat")


@pytest.fixture
def broken_png(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not a png")
    return path


def toml(tmp_path, text: str):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


SMALL = ["--images", "2", "--seeds", "1"]


# (arguments, exit code, phrase); ``{cat}``, ``{broken}``, ``{tmp}`` are filled in
CASES = {
    "target is the true class": (["attack", "{cat}", "--target", "cat"], 2, "own class"),
    "image already misclassified": (["attack", "{cat}", "--label", "dog"], 2,
                                    "already classifies this image as 'cat'"),
    "tau without constrained": (["attack", "{cat}", "--tau", "0.3"], 2, "with --constrained"),
    "unknown class": (["attack", "{cat}", "--target", "unicorn"], 2, "unknown target class"),
    "unknown model": (["attack", "{cat}", "--model", "resnet"], 2, "unknown model 'resnet'"),
    "unreadable image": (["attack", "{broken}"], 2, "cannot read image"),
    "missing image": (["attack", "{tmp}/none.png"], 2, "does not exist"),
    "out is a file": (["attack", "{cat}", "--out", "{cat}"], 2, "is a file"),
    "out under a file": (["reproduce", "cifar10", "--source", "sample", *SMALL, "--out",
                          "{cat}/run"], 2, "is a file, not a folder"),
    "no resize": (["attack", "{big}", "--no-resize", "--out", "{tmp}/o"], 2,
                  "drop --no-resize"),
    "cuda without a GPU": (["reproduce", "cifar10", "--device", "cuda", *SMALL,
                            "--out", "{tmp}/run"], 2, "no CUDA device"),
    "wrong type in config": (["reproduce", "cifar10", "--config", "{toml:popsize = 'forty'}",
                              "--out", "{tmp}/run"], 2, "popsize must be an integer"),
    "toml syntax error": (["reproduce", "cifar10", "--config", "{toml:popsize = = 3}",
                           "--out", "{tmp}/run"], 2, "not valid TOML"),
    "tau out of range in config": (["reproduce", "cifar10", "--config", "{toml:tau = 2.0}",
                                    "--out", "{tmp}/run"], 2, "tau must lie in (0, 1)"),
    "unknown config key": (["reproduce", "cifar10", "--config", "{toml:population = 7}",
                            "--out", "{tmp}/run"], 2, "unknown config keys"),
    "missing config file": (["reproduce", "cifar10", "--config", "{tmp}/none.toml",
                             "--out", "{tmp}/run"], 2, "does not exist"),
    "unknown mode": (["reproduce", "cifar10", "--modes", "psychic", *SMALL,
                      "--out", "{tmp}/run"], 2, "unknown mode 'psychic'"),
    "bad seeds": (["reproduce", "cifar10", "--seeds", "x", "--out", "{tmp}/run"], 2,
                  "--seeds takes"),
    "too many bundled images": (["reproduce", "cifar10", "--source", "sample", "--images",
                                 "95", "--out", "{tmp}/run"], 2, "only 91 images qualify"),
    "nips17 data missing": (["reproduce", "nips17", "--data", "/nonexistent", "--out",
                             "{tmp}/run"], 2, "data folder /nonexistent does not exist"),
    "nips17 without data": (["reproduce", "nips17", "--out", "{tmp}/run"], 2,
                            "needs `data`"),
    "full test set missing": (["reproduce", "cifar10", *SMALL, "--out", "{tmp}/run"], 1,
                              "CIFAR-10 not found"),
    "report of a non-run": (["report", "{tmp}"], 2, "not a run directory"),
    "evaluate no methods": (["evaluate-maps", "{tmp}", "--methods", ","], 2,
                            "--methods names no method"),
    "evaluate top-k zero": (["evaluate-maps", "{tmp}", "--top-k", "0"], 2,
                            "--top-k takes positive integers"),
    "SmoothGrad options without it": (["evaluate-maps", "{tmp}", "--methods", "gradient",
                                       "--noise-level", "0.3"], 2,
                                      "--noise-level is an option of smoothgrad, none"),
    "map options without a map": (["evaluate-maps", "{tmp}", "--methods", "oracle,random",
                                   "--reduction", "signed"], 2,
                                  "--reduction set(s) the attribution maps, and only"),
    "unknown reduction": (["evaluate-maps", "{tmp}", "--reduction", "median"], 2,
                          "--reduction must be one of max_abs, mean_abs, sum, signed"),
    "DE options with a scan": (["attack", "{cat}", "--mode", "scan", "--popsize", "20",
                                "--out", "{tmp}/o"], 2, "--popsize set the differential"),
    "oracle attack without a scan": (["attack", "{cat}", "--mode", "scan:oracle", "--out",
                                      "{tmp}/o"], 2, "need oracle (--oracle DIR"),
    "bad device name": (["attack", "{cat}", "--device", "cuda:abc", "--out", "{tmp}/o"], 2,
                        "device must be auto, cpu, cuda or cuda:N, got 'cuda:abc'"),
    "vulnerable selection without a scan": (["reproduce", "cifar10", "--selection",
                                             "vulnerable", *SMALL, "--out", "{tmp}/run"], 2,
                                            "needs oracle (--oracle DIR"),
    "oracle folder without a scan": (["reproduce", "cifar10", "--modes", "oracle", "--oracle",
                                      "{tmp}", *SMALL, "--out", "{tmp}/run"], 2,
                                     "holds no maps.npz"),
    "scan with bad levels": (["susceptibility", "{cat}", "--levels", "1", "--out",
                              "{tmp}/scan"], 2, "levels must be >= 2"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_user_error_is_one_clear_line(case, cat_png, broken_png, tmp_path, monkeypatch):
    monkeypatch.delenv("PIXELPRIOR_DATA", raising=False)  # no test set: 'full' must stop
    monkeypatch.setattr("pixelprior.data.cifar10.CIFAR10_URL", "http://127.0.0.1:9/cifar.tar.gz")
    big = tmp_path / "big.png"
    Image.new("RGB", (50, 40), (90, 120, 40)).save(big)
    args, code, phrase = CASES[case]
    filled = []
    for arg in args:
        if arg.startswith("{toml:"):
            filled.append(str(toml(tmp_path, arg[6:-1])))
        else:
            filled.append(arg.format(cat=cat_png, broken=broken_png, tmp=tmp_path, big=big))
    before = sorted(p.name for p in tmp_path.iterdir())
    result = invoke(*filled)
    clean_error(result, code, phrase)
    after = sorted(p.name for p in tmp_path.iterdir())
    assert after == before or after == sorted(before + ["c.toml"]), "files were left behind"


def test_missing_extras_name_the_install_line(cat_png, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("onnxruntime", "ray") else real(
                            name, *a))
    clean_error(invoke("attack", cat_png, "--engine", "onnxruntime", "--out", tmp_path / "o"),
                2, 'pip install "pixelprior[onnx]"')
    clean_error(invoke("reproduce", "cifar10", "--source", "sample", "--workers", "2",
                       "--out", tmp_path / "r"), 2, 'pip install "pixelprior[ray]"')


def test_debug_shows_the_traceback(cat_png):
    result = invoke("--debug", "attack", cat_png, "--target", "cat")
    assert result.exit_code != 0 and result.exception is not None


def test_an_internal_error_says_so_and_points_at_debug(cat_png, monkeypatch):
    def broken(*args, **kwargs):
        raise IndexError("list index out of range")

    monkeypatch.setattr("pixelprior.models.load_model", broken)
    result = invoke("attack", cat_png)
    clean_error(result, 1, "internal error (IndexError")
    assert "--debug" in result.output


# ------------------------------------------------------------------ images
def test_a_16_bit_png_is_attacked_as_its_8_bit_copy(tmp_path):
    sample = load_cifar10_sample()
    gray8 = np.asarray(Image.fromarray(sample.images[3].permute(1, 2, 0).numpy()).convert("L"))
    Image.fromarray(gray8).save(tmp_path / "g8.png")
    Image.fromarray(gray8.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    rows = []
    for name in ("g8", "g16"):
        result = invoke("attack", tmp_path / f"{name}.png", "--popsize", "20", "--maxiter",
                        "2", "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
        row = json.loads((tmp_path / name / f"{name}-result.json").read_text())
        rows.append({k: row[k] for k in ("true_label", "adversarial_label", "pixels",
                                          "true_probability", "queries")})
    assert rows[0] == rows[1]
    assert "16-bit grayscale" in result.output


@pytest.mark.parametrize("mode", ["RGB", "L", "1", "P", "RGBA", "LA", "CMYK", "I;16", "I",
                                  "F", "YCbCr", "PA"])
def test_every_pil_mode_reads_as_8_bit_rgb(mode, tmp_path):
    from pixelprior.data import read_image_file

    base = Image.fromarray(load_cifar10_sample().images[5].permute(1, 2, 0).numpy())
    if mode == "I;16":
        image = Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257)
    elif mode == "I":
        image = Image.fromarray(np.asarray(base.convert("L")).astype(np.int32) * 257)
    elif mode == "F":
        image = Image.fromarray(np.asarray(base.convert("L")).astype(np.float32) / 255)
    elif mode == "PA":
        image = base.convert("P").convert("PA")
    else:
        image = base.convert(mode)
    path = tmp_path / ("x.tiff" if mode in ("I", "F", "CMYK", "YCbCr", "PA") else "x.png")
    image.save(path)
    read = read_image_file(path)
    assert read.pixels.dtype == np.uint8 and read.pixels.shape == (32, 32, 3)
    gray = np.asarray(base.convert("L"), dtype=np.int32)
    if mode in ("L", "I;16", "I", "F"):  # the same gray values, exactly
        assert (read.pixels[..., 0].astype(np.int32) == gray).all()
    if mode in ("RGB", "RGBA"):
        assert (read.pixels == np.asarray(base)).all()
    if mode not in ("RGB",):
        assert read.notes or mode in ("L", "1", "CMYK", "YCbCr")


def test_transparent_pixels_are_composited_onto_white_and_said_so(tmp_path):
    from pixelprior.data import read_image_file

    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[0, 0] = (10, 20, 30, 0)  # fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    read = read_image_file(tmp_path / "a.png")
    assert tuple(read.pixels[0, 0]) == (255, 255, 255) and tuple(read.pixels[1, 1]) == (0, 0, 0)
    assert "1 of 16 pixels not opaque, composited onto white" in read.notes[0]


def test_a_resize_is_announced_and_coordinates_come_in_both_frames(tmp_path):
    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((375, 500, 3)) * 255).astype(
        np.uint8)).save(photo)
    result = invoke("attack", photo, "--popsize", "8", "--maxiter", "1", "--out",
                    tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "resized from 500×375 to the model's 32×32" in result.output
    row = json.loads((tmp_path / "o" / "photo-result.json").read_text())
    assert row["resized_from"] == [500, 375]
    box = row["pixels_in_file"][0]
    x0, y0, x1, y1 = box["file_box"]
    assert x0 == int(box["x"] * 500 / 32) and y0 == int(box["y"] * 375 / 32)
    assert 14 <= x1 - x0 + 1 <= 17 and 11 <= y1 - y0 + 1 <= 13
    assert "in the file" in result.output


def test_susceptibility_of_a_file_then_map_evaluation(cat_png, tmp_path):
    out = tmp_path / "scan"
    result = invoke("susceptibility", cat_png, "--levels", "2", "--out", out)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["colours"] == 8 and summary["queries_per_image"] == 8 * 1024
    assert [set(i) for i in summary["images"]] == [{"image_index", "vulnerable_positions",
                                                    "fooled"}]
    assert (out / "oracle_maps.png").is_file()
    again = invoke("susceptibility", cat_png, "--levels", "2", "--out", out)
    assert again.exit_code == 0  # finished: resumes with nothing to do
    other = invoke("susceptibility", cat_png, "--levels", "3", "--out", out)
    clean_error(other, 2, "holds a scan with levels = 2")
    dog = tmp_path / "dog.png"
    Image.fromarray(load_cifar10_sample().images[12].permute(1, 2, 0).numpy()).save(dog)
    clean_error(invoke("susceptibility", dog, "--levels", "2", "--out", out), 2,
                "holds a scan with target")
    evaluated = invoke("evaluate-maps", out, "--methods", "gradient", "random", "oracle")
    assert evaluated.exit_code == 0, evaluated.output
    for name in ("map_metrics.csv", "map_metrics.md", "map_metrics.json", "roc.png",
                 "ranked_scans.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "map_metrics.json").read_text())
    assert [m["method"] for m in metrics["methods"]] == ["gradient", "random", "oracle"]
    alone = invoke("evaluate-maps", out, "random")  # after the folder: instead of all maps
    assert alone.exit_code == 0, alone.output
    metrics = json.loads((out / "map_metrics.json").read_text())
    assert [m["method"] for m in metrics["methods"]] == ["random"]
    clean_error(invoke("evaluate-maps", tmp_path, "--methods", "gradient"), 2,
                "holds no maps.npz")


def test_every_option_has_help_and_the_help_names_models_and_extras():
    import typer

    from pixelprior.models import MODELS

    def commands(group, path=()):
        for name, sub in getattr(group, "commands", {}).items():
            if hasattr(sub, "commands"):
                yield from commands(sub, (*path, name))
            else:
                yield (*path, name), sub

    found = list(commands(typer.main.get_command(app)))
    assert len(found) >= 11
    for path, command in found:
        for param in command.params:
            if not getattr(param, "hidden", False):
                assert getattr(param, "help", None), f"{' '.join(path)} {param.name}"
    text = invoke("attack", "--help").output
    assert all(name in " ".join(text.split()) for name in MODELS)
    assert "pixelprior[onnx]" in " ".join(text.split())


def test_the_exif_orientation_is_applied_and_said(tmp_path):
    from pixelprior.data import read_image_file

    pixels = np.zeros((4, 6, 3), dtype=np.uint8)
    pixels[0, 0] = 255  # top-left marker
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # rotated 90° clockwise when shown
    image.save(tmp_path / "r.jpg", exif=exif, quality=100)
    read = read_image_file(tmp_path / "r.jpg")
    assert read.pixels.shape == (6, 4, 3)
    assert "EXIF orientation 6 applied" in read.notes[0]


def test_quick_is_a_preset_a_config_files_values_win_over(tmp_path):
    """--quick used to override the file's images, seeds and modes without a word (a
    different experiment than the file asked for); an option not given never does."""
    config = tmp_path / "q.toml"
    config.write_text('images = 1\nseeds = [3]\nmodes = ["fast"]\n')
    out = tmp_path / "run"
    result = invoke("reproduce", "cifar10", "--quick", "--config", config, "--out", out,
                    "--no-report")
    assert result.exit_code == 0, result.output
    recorded = json.loads((out / "config.json").read_text())
    recorded = recorded.get("config", recorded)
    assert (recorded["images"], recorded["seeds"], recorded["modes"], recorded["source"]) == (
        1, [3], ["fast"], "sample")


def test_evaluate_maps_refuses_a_scan_whose_weights_changed_since(cat_png, tmp_path,
                                                                  monkeypatch):
    """It reloaded the model from the recorded weights path and scored maps of other
    weights without a word (and the path was recorded as typed, read from the working
    folder); resumes refused the same change."""
    import torch

    from pixelprior import load_model
    model = load_model("convsmall-cifar10")
    monkeypatch.chdir(tmp_path)
    torch.save(model.state_dict(), "w.pt")
    out = tmp_path / "scan"
    made = invoke("susceptibility", cat_png, "--model", "convsmall-cifar10", "--weights",
                  "w.pt", "--levels", "2", "--out", out)
    assert made.exit_code == 0, made.output
    assert json.loads((out / "summary.json").read_text()) is not None
    assert invoke("evaluate-maps", out, "--methods", "gradient").exit_code == 0
    with torch.no_grad():
        next(model.parameters()).add_(0.02)
    torch.save(model.state_dict(), "w.pt")
    clean_error(invoke("evaluate-maps", out, "--methods", "gradient"), 2,
                "its weights or code changed since")


def test_attack_fast_says_verified_where_the_verifier_proved_the_image(tmp_path):
    """The verifier runs by default where it is cheap (ConvSmall): the command said only
    "certified on the corner grid" while its JSON said verified."""
    sample = load_cifar10_sample()
    image = np.asarray(sample.images[4])  # a frog ConvSmall's corners do not fool
    image = image.transpose(1, 2, 0) if image.shape[0] == 3 else image
    Image.fromarray(np.ascontiguousarray(image.astype(np.uint8))).save(tmp_path / "frog.png")
    out = tmp_path / "out"
    result = invoke("attack", tmp_path / "frog.png", "--model", "convsmall-cifar10",
                    "--mode", "fast", "--out", out)
    assert result.exit_code == 0, result.output
    row = json.loads((out / "frog-result.json").read_text())
    assert row["decided_by"] == "verified"
    assert "verified: no colour at any of the 1024 positions" in " ".join(result.output.split())


def test_data_that_does_not_exist_is_a_usage_error_in_every_command(tmp_path):
    """Exit 2, as the README's bad-input table says (``verify`` and ``run`` gave 1)."""
    missing = tmp_path / "nosuch.png"
    clean_error(invoke("verify", missing, "--model", "convsmall-cifar10"), 2,
                "no file or folder")
    clean_error(invoke("run", "--data", tmp_path / "nosuch", "--model", "convsmall-cifar10",
                       "--out", tmp_path / "r"), 2, "not a dataset name")
    clean_error(invoke("attack", missing), 2, "does not exist")


def test_run_takes_tau_and_the_verifiers_seconds_and_records_them(tmp_path):
    """A new user: `run` had no --tau (reproduce has), nor --verify-seconds."""
    out = tmp_path / "run"
    result = invoke("run", "--source", "sample", "--images", 1, "--seeds", "0,",
                    "--modes", "constrained,fast", "--popsize", 4, "--maxiter", 1,
                    "--tau", 0.3, "--verify-seconds", 5, "--no-report", "--out", out)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["tau"] == 0.3 and config["verify_seconds"] == 5.0
    assert "at most 5 s;" in " ".join(result.output.split())


def test_the_version_is_the_one_rows_record():
    from pixelprior.experiment import package_version

    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"pixelprior {package_version()}"


def test_evaluate_maps_scores_every_registered_map_by_default():
    """A contributor's audit: the default list was written out and left out
    input_x_gradient (and any map added since)."""
    from pixelprior.cli.scans import ALL_MAPS
    from pixelprior.maps import METHODS

    assert set(ALL_MAPS.split(",")) == {*METHODS, "random", "oracle"}
