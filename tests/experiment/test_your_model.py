"""The runner on a user's own model and images: a TorchScript ResNet-style network and
an ONNX export of it, on an ImageFolder and an .npz written from the bundled images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from pixelprior.data import load_cifar10_sample
from pixelprior.experiment import ExperimentConfig, ExperimentRunner, read_results
from pixelprior.report import write_report


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x):
        return torch.relu(x + self.bn(self.conv(x)))


class TinyResNet(nn.Module):
    """Normalises inside (mean/std buffers), a stem, a residual block, a strided conv,
    global pooling and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = Block(8)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.stem((x - self.mean) / 0.25))
        x = torch.relu(self.down(self.block(x)))
        return self.head(x.mean((2, 3)))


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("user")
    torch.manual_seed(0)
    model = TinyResNet().eval()
    with torch.no_grad():
        model.block.bn.running_var.uniform_(0.5, 1.5)
    scripted = torch.jit.trace(model, torch.rand(1, 3, 32, 32))
    scripted.save(str(root / "resnet.pt"))
    data = load_cifar10_sample()
    images = data.images[:12]
    # "correct" labels for this random model: its own predictions on the images
    with torch.inference_mode():
        predicted = model(images.float() / 255).argmax(1)
    names = [f"class{k}" for k in range(10)]
    for n, (image, label) in enumerate(zip(images, predicted, strict=True)):
        folder = root / "folder" / names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{n:03d}.png")
    np.savez(root / "images.npz", images=images.permute(0, 2, 3, 1).numpy(),
             labels=predicted.numpy())
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    return root, model


@pytest.mark.parametrize("dataset", ["folder", "npz"])
def test_runner_attacks_a_torchscript_model_on_user_images(user_files, tmp_path, dataset):
    root, model = user_files
    data = root / ("folder" if dataset == "folder" else "images.npz")
    config = ExperimentConfig.build(overrides=dict(
        model=str(root / "resnet.pt"), dataset=dataset, data=str(data),
        classes=str(root / "classes.txt"), images=3, seeds=[0], selection="first",
        modes=["fast", "unconstrained"], popsize=20, maxiter=3, out=str(tmp_path / "run")))
    rows = ExperimentRunner(config, log=lambda *_: None).run(progress=False)
    assert len(rows) == 6 and {r["mode"] for r in rows} == {"fast", "unconstrained"}
    fast = [r for r in rows if r["mode"] == "fast"]
    assert all(r["decided_by"] in ("corners", "certificate") for r in fast)
    # every success is real under the user's model
    from pixelprior.experiment import load_dataset
    images = load_dataset(config)
    for row in rows:
        if row["success"]:
            position = images.official_indices.tolist().index(row["image_index"])
            x = images.images[position].float()[None] / 255
            pixel = row["pixels"][0]
            x[0, :, pixel["y"], pixel["x"]] = torch.tensor(pixel["new"])
            with torch.inference_mode():
                assert int(model(x).argmax()) != row["true_label"]
    stats = write_report(tmp_path / "run", figures=False)
    assert set(stats["modes"]) == {"fast", "unconstrained"}
    assert read_results(tmp_path / "run" / "results.jsonl") == rows
