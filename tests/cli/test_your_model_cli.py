"""Every command on a user's own model and images: TorchScript and ONNX exports of
small networks of other architectures, an ImageFolder and an .npz of the bundled images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import MobileNetish, VGGish, clean_error, invoke
from PIL import Image
from torch import nn

from pixelprior.data import load_cifar10_sample


class ResNetish(nn.Module):
    """Stem, a residual block with BatchNorm, a strided conv, global pooling, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x - 0.5))
        x = torch.relu(x + self.bn(self.conv(x)))
        return self.head(torch.relu(self.down(x)).mean((2, 3)))


@pytest.fixture(scope="module", params=[ResNetish, MobileNetish, VGGish])
def user(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param.__name__)
    torch.manual_seed(0)
    model = request.param().eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_var.data.uniform_(0.5, 1.5)
    torch.jit.trace(model, torch.rand(1, 3, 32, 32)).save(str(root / "model.pt"))
    # unfolded: onnx2torch cannot read the conv biases that constant folding makes of
    # bias-free convolutions before BatchNorm (MobileNetish); such a graph is query-only
    torch.onnx.export(model, torch.rand(1, 3, 32, 32), str(root / "model.onnx"),
                      input_names=["images"], dynamic_axes={"images": {0: "batch"}},
                      dynamo=False, opset_version=17, do_constant_folding=False)
    data = load_cifar10_sample()
    images = data.images[:6]
    with torch.inference_mode():
        labels = model(images.float() / 255).argmax(1)  # the model is right on every image
    for n, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / "folder" / f"c{int(label)}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{n}.png")
    np.savez(root / "images.npz", images=images.numpy(), labels=labels.numpy())
    (root / "classes.txt").write_text("\n".join(f"c{k}" for k in range(10)) + "\n")
    Image.fromarray(images[0].permute(1, 2, 0).numpy()).save(root / "one.png")
    return root


def test_run_report_and_eval_on_a_torchscript_model_and_an_image_folder(user, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("popsize = 20\nmaxiter = 2\nselection = \"first\"\n")
    result = invoke("run", "--model", user / "model.pt", "--data", user / "folder",
                    "--classes", user / "classes.txt", "--modes", "fast,unconstrained",
                    "--images", 2, "--seeds", "0,", "--config", config,
                    "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "torchscript" in result.output and "accuracy of the model on the 6 images" in \
        result.output
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").open()]
    assert len(rows) == 4 and {r["mode"] for r in rows} == {"fast", "unconstrained"}
    assert (tmp_path / "run" / "report.md").is_file()
    again = invoke("report", tmp_path / "run")
    assert again.exit_code == 0, again.output
    evaluated = invoke("eval", "data", user / "images.npz", "--model", user / "model.pt",
                       "--classes", user / "classes.txt")
    assert evaluated.exit_code == 0 and "accuracy of the model on the 6 images given: " \
        "100.0%" in evaluated.output, evaluated.output


@pytest.mark.parametrize("file", ["model.pt", "model.onnx"])
def test_attack_and_explain_a_user_model(user, tmp_path, file):
    result = invoke("attack", user / "one.png", "--model", user / file, "--mode", "fast",
                    "--classes", user / "classes.txt", "--out", tmp_path / "a")
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "a" / "one-result.json").read_text())
    assert row["decided_by"] in ("corners", "certificate")
    method = "occlusion" if file.endswith(".onnx") else "gradient"
    explained = invoke("explain", user / "one.png", "--model", user / file, "--method",
                       method, "--out", tmp_path / "e")
    assert explained.exit_code == 0, explained.output


def test_susceptibility_and_map_evaluation_of_user_images(user, tmp_path):
    scanned = invoke("susceptibility", user / "folder", "--model", user / "model.pt",
                     "--classes", user / "classes.txt", "--corners", "--images", 1,
                     "--out", tmp_path / "s")
    assert scanned.exit_code == 0, scanned.output
    evaluated = invoke("evaluate-maps", tmp_path / "s", "--methods", "gradient,random")
    assert evaluated.exit_code == 0, evaluated.output
    fast = invoke("susceptibility", user / "images.npz", "--model", user / "model.pt",
                  "--fast", "--images", 2, "--out", tmp_path / "f")
    assert fast.exit_code == 0, fast.output
    answers = json.loads((tmp_path / "f" / "fast.json").read_text())["images"]
    assert len(answers) == 2 and all(a["decided_by"] in ("corners", "certificate")
                                     for a in answers)


def test_a_model_whose_classes_do_not_fit_the_data_is_one_clear_line(user, tmp_path):
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    result = invoke("run", "--model", user / "model.pt", "--data", user / "folder",
                    "--classes", tmp_path / "three.txt", "--out", tmp_path / "r")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.output.count("error:") == 1 and "3" in result.output


def test_attack_options_of_another_search_are_refused_not_ignored(tmp_path):
    from pixelprior.data import load_cifar10_sample

    image = tmp_path / "ship.png"  # random search fools it in under a second
    Image.fromarray(load_cifar10_sample().images[1].permute(1, 2, 0).numpy()).save(image)
    refused = invoke("attack", image, "--mode", "fast", "--popsize", 10, "--out",
                     tmp_path / "a")
    assert refused.exit_code == 2 and "--popsize set the differential evolution" in \
        refused.output
    taken = invoke("attack", image, "--mode", "random_search:constrained", "--tau", 0.3,
                   "--out", tmp_path / "b")
    assert taken.exit_code == 0, taken.output
    row = json.loads((tmp_path / "b" / "ship-result.json").read_text())
    assert row["mode"] == "random_search:constrained" and row["tau"] == 0.3, row


REVERSED = '''
import torch
from pixelprior import load_model


class Reversed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = load_model("convsmall-cifar10")

    def forward(self, x):
        return self.inner(x).flip(1)


def make():
    return Reversed().eval()
'''


@pytest.fixture
def reversed_model(tmp_path) -> str:
    """The bundled ConvSmall with its outputs in reverse order (class 0 = truck)."""
    (tmp_path / "reversed_net.py").write_text(REVERSED)
    return f"{tmp_path / 'reversed_net.py'}:make"


def test_cifar10_labels_are_mapped_to_a_models_class_order_by_name(reversed_model):
    """A model whose classes are CIFAR-10's in another order, named with --classes: the
    test set's labels used to be read as its indices (4% top-1)."""
    names = ",".join(load_cifar10_sample().class_names[::-1])
    plain = invoke("eval", "cifar10", "--source", "sample", "--model", "convsmall-cifar10")
    mapped = invoke("eval", "cifar10", "--source", "sample", "--model", reversed_model,
                    "--classes", names)
    assert mapped.exit_code == 0, mapped.output
    assert "labels mapped to the model's classes by name" in mapped.output
    top1 = [line.split("top-1 ")[1].split()[0] for line in (plain.output, mapped.output)]
    assert top1[0] == top1[1]


def test_a_folder_of_two_classes_is_refused_for_a_ten_class_model_without_names(tmp_path):
    """susceptibility and verify on a folder numbered its classes 0 and 1 and read a ship
    as class 1 of the model (an automobile) without a word."""
    sample = load_cifar10_sample()
    for name in ("airplane", "ship"):
        (tmp_path / "folder" / name).mkdir(parents=True)
    for index in range(12):
        name = sample.class_names[int(sample.labels[index])]
        if name in ("airplane", "ship"):
            Image.fromarray(sample.images[index].permute(1, 2, 0).numpy()).save(
                tmp_path / "folder" / name / f"{index}.png")
    (tmp_path / "nameless.py").write_text(REVERSED.replace(".flip(1)", ""))
    scripted = f"{tmp_path / 'nameless.py'}:make"  # no class names: numbered 0..9
    for command in (("susceptibility", tmp_path / "folder", "--fast", "--out",
                     tmp_path / "scan"),
                    ("verify", tmp_path / "folder", "--budget", "1")):
        result = invoke(*command, "--model", scripted, "--images", "2")
        assert result.exit_code == 2, result.output
        assert "the model has 10 classes but the data names 2 (airplane, ship)" in (
            result.output)


def test_a_run_attacks_with_the_labels_it_says_it_mapped(tmp_path):
    """A model declaring CIFAR-10's names reversed: `run` said the labels were mapped by
    name, but its workers loaded them unmapped (a dog attacked as a deer)."""
    sample = load_cifar10_sample()
    (tmp_path / "named_net.py").write_text(REVERSED.replace(
        "        self.inner = load_model(\"convsmall-cifar10\")",
        "        self.inner = load_model(\"convsmall-cifar10\")\n"
        f"        self.class_names = {tuple(sample.class_names[::-1])!r}"))
    out = tmp_path / "run"
    result = invoke("run", "--model", f"{tmp_path / 'named_net.py'}:make", "--source",
                    "sample", "--images", "3", "--modes", "scan", "--out", out, "--no-report")
    assert result.exit_code == 0, result.output
    assert "labels mapped to the model's classes by name" in result.output
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert rows and all(row["true_label"] == 9 - int(sample.labels[row["image_index"]])
                        for row in rows)


@pytest.fixture
def small_folder(tmp_path):
    """Six bundled images in folders named by their CIFAR-10 classes."""
    from pixelprior.data import CIFAR10_CLASSES

    data = load_cifar10_sample()
    for n in range(6):
        folder = tmp_path / "photos" / CIFAR10_CLASSES[int(data.labels[n])]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.images[n].permute(1, 2, 0).numpy()).save(folder / f"{n}.png")
    config = tmp_path / "c.toml"
    config.write_text("popsize = 20\nmaxiter = 2\nmodes = [\"unconstrained\"]\n")
    return tmp_path / "photos", config


def test_a_small_folder_is_attacked_whole_when_images_is_not_given(small_folder, tmp_path):
    photos, config = small_folder
    command = ("run", "--data", photos, "--seeds", "0,", "--config", config,
               "--out", tmp_path / "r")
    first = invoke(*command)
    assert first.exit_code == 0, first.output
    said = " ".join(first.output.split())
    assert "qualify for selection 'first_correct' (--images is 100 by default)" in said
    rows = (tmp_path / "r" / "results.jsonl").read_text().splitlines()
    assert 1 <= len(rows) <= 6
    again = invoke(*command)  # the same command resumes it, adding nothing
    assert again.exit_code == 0 and "resuming the run of" in " ".join(again.output.split())
    assert (tmp_path / "r" / "results.jsonl").read_text().splitlines() == rows
    asked = invoke("run", "--data", photos, "--images", 100, "--config", config,
                   "--out", tmp_path / "asked")
    clean_error(asked, 2, "lower --images")
    assert len(rows) >= 2  # (5 of the 6 qualify): a run of one image given on purpose
    one = ("run", "--data", photos, "--seeds", "0,", "--config", config, "--out",
           tmp_path / "one")
    assert invoke(*one, "--images", 1).exit_code == 0
    clean_error(invoke(*one), 2, "another config")  # not resumed as "all that qualified"


def test_a_model_that_gets_no_image_right_is_told_to_check_its_input_range(tmp_path):
    """A model audit: a model taking [0, 255] was told "nothing to scan", no more."""
    (tmp_path / "net.py").write_text(
        "import torch\nfrom torch import nn\n\n\ndef make():\n"
        "    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))\n"
        "    with torch.no_grad():\n"
        "        net[1].weight.zero_()\n"
        "        net[1].bias.copy_((torch.arange(10) == 9).float())\n"
        "    return net\n")
    data = load_cifar10_sample()
    keep = data.labels != 9  # every image is called class 9: none right
    np.savez(tmp_path / "d.npz", images=data.images[keep][:24].numpy(),
             labels=data.labels[keep][:24].numpy())
    model = f"{tmp_path / 'net.py'}:make"
    scanned = invoke("susceptibility", tmp_path / "d.npz", "--model", model, "--corners",
                     "--images", 1, "--out", tmp_path / "s")
    clean_error(scanned, 2, "needs --mean 0.5 --std 0.5")  # a usage problem
    ran = invoke("run", "--model", model, "--data", tmp_path / "d.npz", "--modes", "fast",
                 "--images", 1, "--out", tmp_path / "r")
    assert "half as many images right as chance would; check the input range" in \
        " ".join(ran.output.split())
