"""A model without input gradients (an ONNX graph onnx2torch cannot convert): every
command that would need a gradient map says so before any work, and those that can do
without one do."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from helpers import clean_error, invoke
from PIL import Image
from torch import nn

from pixelprior.data import load_cifar10_sample
from pixelprior.models.formats import onnx as onnx_format

NO_COPY = "no converter for the ONNX operation Shrink"


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.fixture(scope="module")
def onnx_user(tmp_path_factory):
    """An ONNX model, an .npz of 4 images it classifies as labelled, and one of them as
    a PNG."""
    root = tmp_path_factory.mktemp("query-only")
    torch.manual_seed(0)
    model = Small().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.rand(1, 3, 32, 32), str(root / "model.onnx"),
                          input_names=["images"], dynamic_axes={"images": {0: "batch"}},
                          dynamo=False, opset_version=17)
    images = load_cifar10_sample().images[:4]
    with torch.inference_mode():
        labels = model(images.float() / 255).argmax(1)
    np.savez(root / "images.npz", images=images.numpy(), labels=labels.numpy())
    Image.fromarray(images[0].permute(1, 2, 0).numpy()).save(root / "one.png")
    return root


@pytest.fixture
def query_only(monkeypatch):
    """ONNX files load without a PyTorch copy (as one onnx2torch cannot convert)."""
    monkeypatch.setattr(onnx_format, "onnx_twin",
                        lambda path: (None, f"onnx2torch has {NO_COPY}"))


def test_a_run_needing_a_gradient_map_is_refused_before_it_writes(onnx_user, query_only,
                                                                   tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "--model", onnx_user / "model.onnx", "--data",
                    onnx_user / "images.npz", "--modes", "unconstrained,fast",
                    "--images", 2, "--seeds", "0,", "--out", out)
    line = clean_error(result, 2, NO_COPY)
    assert "fast (gradient map)" in line and "fast:occlusion" in line
    assert "unconstrained (" not in line  # reads no map
    assert not out.exists()


def test_a_run_on_the_occlusion_map_goes_on(onnx_user, query_only, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("popsize = 20\nmaxiter = 2\nselection = \"first\"\n"
                      "sensitivity = \"occlusion\"\n")
    result = invoke("run", "--model", onnx_user / "model.onnx", "--data",
                    onnx_user / "images.npz", "--modes",
                    "constrained,fast:occlusion", "--images", 2, "--seeds", "0,",
                    "--config", config, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    assert len(rows) == 4


def test_attack_with_a_gradient_map_is_refused(onnx_user, query_only, tmp_path):
    result = invoke("attack", onnx_user / "one.png", "--model", onnx_user / "model.onnx",
                    "--mode", "constrained", "--out", tmp_path / "a")
    assert "constrained (smoothgrad map)" in clean_error(result, 2, NO_COPY)
    assert not (tmp_path / "a").exists()


def test_map_evaluation_refuses_gradient_maps_and_names_the_others(onnx_user, query_only,
                                                                   tmp_path):
    scanned = invoke("susceptibility", onnx_user / "images.npz", "--model",
                     onnx_user / "model.onnx", "--corners", "--images", 1,
                     "--out", tmp_path / "s")
    assert scanned.exit_code == 0, scanned.output
    refused = invoke("evaluate-maps", tmp_path / "s", "--methods", "gradient,occlusion")
    line = clean_error(refused, 2, NO_COPY)
    assert "(gradient)" in line and "--methods occlusion" in line
    assert not (tmp_path / "s" / "map_metrics.csv").exists()
    scored = invoke("evaluate-maps", tmp_path / "s", "--methods", "occlusion,random")
    assert scored.exit_code == 0, scored.output


def test_fast_answers_rank_by_occlusion_and_say_so(onnx_user, query_only, tmp_path):
    result = invoke("susceptibility", onnx_user / "images.npz", "--model",
                    onnx_user / "model.onnx", "--fast", "--images", 2, "--out", tmp_path / "f")
    assert result.exit_code == 0, result.output
    assert "ranked by the occlusion map" in " ".join(result.output.split())
    written = json.loads((tmp_path / "f" / "fast.json").read_text())
    assert written["settings"]["order"] == "occlusion" and len(written["images"]) == 2
