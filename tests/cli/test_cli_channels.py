"""A 1-channel (grayscale) model at the command line: every command converts the images
to the model's channels (PIL's 8-bit "L"), says so once, and attacks; the runner too,
from the run to its report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import invoke
from PIL import Image
from torch import nn

from pixelprior.data import load_cifar10_sample

CONVERTED = "converted to 8-bit luminance"


def luma(images: torch.Tensor) -> torch.Tensor:
    """PIL's own ``convert("L")`` of uint8 ``[N, 3, H, W]`` images, ``[N, 1, H, W]``."""
    return torch.stack([torch.from_numpy(np.asarray(
        Image.fromarray(image.permute(1, 2, 0).numpy()).convert("L")))[None]
        for image in images])


@pytest.fixture(scope="module")
def gray(tmp_path_factory):
    """A TorchScript model taking ``[B, 1, H, W]`` (any size), an .npz of six bundled
    images labelled by it (from their luminance), and a 50×40 photo."""
    root = tmp_path_factory.mktemp("gray")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 10)).eval()
    torch.jit.trace(model, torch.rand(1, 1, 32, 32)).save(str(root / "gray.pt"))
    images = load_cifar10_sample().images[:6]
    with torch.inference_mode():
        labels = model(luma(images).float() / 255).argmax(1)
    np.savez(root / "gray.npz", images=images.numpy(), labels=labels.numpy())
    Image.fromarray(images[0].permute(1, 2, 0).numpy()).save(root / "cat.png")
    Image.fromarray(images[1].permute(1, 2, 0).numpy()).resize((50, 40)).save(
        root / "photo.png")
    return root


def said_once(output: str) -> bool:
    return " ".join(output.split()).count(CONVERTED) == 1


# ------------------------------------------------------------------ the conversion
def test_the_conversion_is_pils_luminance(gray):
    from pixelprior.data import load_image_source

    dataset, notes = load_image_source(str(gray / "gray.npz"), channels=1,
                                       classes=list("abcdefghij"))
    assert torch.equal(dataset.images, luma(load_cifar10_sample().images[:6]))
    assert any("luminance" in note for note in notes)


def test_a_model_of_other_channels_is_refused_in_words(gray):
    from pixelprior.data import load_image_source

    with pytest.raises(ValueError, match="4"):
        load_image_source(str(gray / "gray.npz"), channels=4, classes=list("abcdefghij"))


# ------------------------------------------------------------------ the commands
def test_attack_converts_the_image_and_writes_a_gray_adversarial(gray, tmp_path):
    result = invoke("attack", gray / "cat.png", "--model", gray / "gray.pt", "--mode", "fast",
                    "--out", tmp_path / "a")
    assert result.exit_code == 0, result.output
    assert said_once(result.output) and "cat.png" in result.output
    row = json.loads((tmp_path / "a" / "cat-result.json").read_text())
    assert row["decided_by"] in ("corners", "certificate")
    assert len(row["pixels"][0]["new"]) == 1  # one channel changed: a gray level
    # certified: no adversarial image is written (an audit: a robust image's was)
    assert not (tmp_path / "a" / "cat-adversarial.png").exists()
    from pixelprior.cli.inputs import write_image

    write_image(torch.rand(1, 32, 32), tmp_path / "gray.png")  # what a success writes
    written = Image.open(tmp_path / "gray.png")
    assert written.mode == "L" and written.size == (32, 32)


def test_attack_of_a_photo_resized_and_converted(gray, tmp_path):
    result = invoke("attack", gray / "photo.png", "--model", gray / "gray.pt", "--input-size",
                    32, "--popsize", 8, "--maxiter", 1, "--out", tmp_path / "p")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert said_once(result.output) and "resized from 50×40" in said
    full = tmp_path / "p" / "photo-adversarial-full.png"
    if json.loads((tmp_path / "p" / "photo-result.json").read_text())["success"]:
        assert Image.open(full).size == (50, 40)
        assert "the file-resolution copy is classified" in said
    else:  # no adversarial image where the attack did not fool the model
        assert not full.exists() and "photo-adversarial-full.png" not in said


def test_explain_a_1_channel_model(gray, tmp_path):
    result = invoke("explain", gray / "cat.png", "--model", gray / "gray.pt", "--method",
                    "gradient", "--out", tmp_path / "e")
    assert result.exit_code == 0, result.output
    assert said_once(result.output)
    assert np.load(tmp_path / "e" / "cat-gradient.npy").shape == (32, 32)
    assert (tmp_path / "e" / "cat-gradient-figure.png").is_file()


def test_susceptibility_of_a_file_and_of_an_npz(gray, tmp_path):
    scanned = invoke("susceptibility", gray / "cat.png", "--model", gray / "gray.pt",
                     "--levels", 2, "--out", tmp_path / "s")
    assert scanned.exit_code == 0, scanned.output
    assert said_once(scanned.output) and (tmp_path / "s" / "maps.npz").is_file()
    fast = invoke("susceptibility", gray / "gray.npz", "--model", gray / "gray.pt", "--fast",
                  "--images", 3, "--out", tmp_path / "f")
    assert fast.exit_code == 0, fast.output
    assert said_once(fast.output)
    answers = json.loads((tmp_path / "f" / "fast.json").read_text())["images"]
    assert len(answers) == 3


def test_maps_of_a_1_channel_models_scan_are_scored(gray, tmp_path):
    """evaluate-maps reloaded the scanned image as RGB and refused every scan of a
    1-channel model, blaming the data (an audit's case)."""
    scanned = invoke("susceptibility", gray / "cat.png", "--model", gray / "gray.pt",
                     "--levels", 2, "--out", tmp_path / "s")
    assert scanned.exit_code == 0, scanned.output
    scored = invoke("evaluate-maps", tmp_path / "s", "--methods", "gradient,random")
    assert scored.exit_code == 0, scored.output
    assert (tmp_path / "s" / "map_metrics.csv").is_file()


def test_eval_cifar10_converts_the_test_images(gray):
    result = invoke("eval", "cifar10", "--source", "sample", "--model", gray / "gray.pt")
    assert result.exit_code == 0, result.output
    assert said_once(result.output) and "top-1" in result.output


# ------------------------------------------------------------------ the runner
def test_run_attacks_a_1_channel_model_and_reports(gray, tmp_path):
    result = invoke("run", "--model", gray / "gray.pt", "--data", gray / "gray.npz",
                    "--classes", ",".join("abcdefghij"), "--modes", "fast", "--seeds", "0,",
                    "--images", 2, "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in
            (tmp_path / "r" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    assert all(len(pixel["new"]) == 1 for row in rows for pixel in row["pixels"])
    assert (tmp_path / "r" / "report.md").is_file()
