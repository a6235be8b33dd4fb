"""Models checked where they enter (issue 25): each way a model cannot be queried is
refused at load with one line naming the cause and the fix."""

from __future__ import annotations

import sys
import textwrap
import warnings

import pytest
import torch
from torch import nn

from pixelprior.data import ImageSet
from pixelprior.models import (
    ModelLoadError,
    ModelSettingError,
    Normalize,
    accuracy_on,
    copy_module,
    inference_model,
    load_model_spec,
    model_spec_problem,
    predict,
    predict_labels,
)


class Net(nn.Module):
    """Conv, optional BatchNorm and Dropout, global pooling, linear: any size."""

    def __init__(self, channels: int = 3, bn: bool = False, dropout: float = 0.0,
                 track: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(channels, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6, track_running_stats=track) if bn else nn.Identity()
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.relu(self.bn(self.conv(x))).mean((2, 3))))


class Noisy(Net):
    """Adds fresh noise to every forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + torch.randn(x.shape[0], 4)


class StaysInTraining(Net):
    """``train(False)`` is ignored: its dropout stays on."""

    def train(self, mode: bool = True) -> StaysInTraining:
        return super().train(True)


class OneAtATime(nn.Module):
    """Flattens the batch into one row: runs at batch 1 only (at 32×32)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.reshape(1, 3 * 32 * 32))


class NonFiniteOnWhite(Net):
    """Finite scores, except +inf for an image with a pure white pixel (as real images
    have; random probe images never do)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        white = (x.amin(1) >= 1.0).flatten(1).any(1, keepdim=True)
        return super().forward(x) + torch.where(white, float("inf"), 0.0)


class Constant(nn.Module):
    """Returns ``value`` for every image, broadcast to ``[B, K]``."""

    def __init__(self, value: list[float]) -> None:
        super().__init__()
        self.register_buffer("value", torch.tensor(value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value.expand(x.shape[0], -1) + 0 * x.mean()


def error_of(call, *args, error=ModelLoadError, **kwargs) -> str:
    with pytest.raises(error) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 700, message
    return message


# ----------------------------------------------------------------------------- determinism
def test_a_model_drawing_random_numbers_is_refused(pickle_file):
    message = error_of(load_model_spec, pickle_file(Noisy()), allow_pickle=True)
    assert "two forwards on the same images give different scores" in message
    assert "draws random numbers" in message


def test_dropout_traced_in_train_mode_is_named(torchscript_file):
    path = torchscript_file(Net(dropout=0.5).train(), trace=True)
    message = error_of(load_model_spec, path)
    assert "Dropout 'drop'" in message and "saved in train mode" in message
    assert "trace it again after model.eval()" in message


def test_batchnorm_traced_in_train_mode_mixes_the_batch(torchscript_file):
    path = torchscript_file(Net(bn=True).train(), trace=True)
    message = error_of(load_model_spec, path)
    assert "scores change with the other images in its batch" in message
    assert "BatchNorm2d 'bn'" in message and "model.eval()" in message


def test_batchnorm_without_running_statistics_is_refused(pickle_file):
    message = error_of(load_model_spec, pickle_file(Net(bn=True, track=False).eval()),
                       allow_pickle=True)
    assert "other images in its batch" in message and "track_running_stats=False" in message


def test_modules_that_stay_in_train_mode_are_named(pickle_file):
    message = error_of(load_model_spec, pickle_file(StaysInTraining(dropout=0.5)),
                       allow_pickle=True)
    assert "stay in train mode after .eval()" in message and "Dropout 'drop'" in message


def test_a_scripted_model_saved_in_train_mode_is_put_in_eval_mode(torchscript_file, random_images):
    net = Net(bn=True, dropout=0.5)
    loaded = load_model_spec(torchscript_file(net.train()))
    assert not any(module.training for module in loaded.model.modules())
    assert any("came in train mode" in n and "Dropout 'drop'" in n for n in loaded.notes)
    x = random_images()
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), net.eval()(x), atol=1e-6)


# ----------------------------------------------------------------------------- non-finite
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_scores_on_the_probe_are_refused(pickle_file, value):
    message = error_of(load_model_spec, pickle_file(Constant([value, 1.0])), allow_pickle=True,
                       input_size=8)
    assert "NaN or infinite scores" in message


class AllNaN(nn.Module):
    """Takes batches of any size, returns NaN for every image (no input size declared)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 10)

    def forward(self, x):
        return self.head(x.mean((2, 3))) * float("nan")


def test_a_model_returning_nan_everywhere_is_said_so_not_as_a_batch_problem(pickle_file):
    """A new user's report: with no input size given it was "runs on one image at a
    time ... fails on a batch of 2"."""
    for size in (None, 32):
        message = error_of(load_model_spec, pickle_file(AllNaN()), allow_pickle=True,
                           input_size=size)
        assert "NaN or infinite scores" in message and "batch" not in message


def test_non_finite_scores_on_real_images_stop_the_accuracy(pickle_file):
    loaded = load_model_spec(pickle_file(NonFiniteOnWhite()), allow_pickle=True)
    pixels = torch.full((4, 3, 32, 32), 100, dtype=torch.uint8)
    pixels[2, :, 5, 5] = 255
    images = ImageSet(pixels, torch.zeros(4, dtype=torch.long), ("a", "b", "c", "d"), "test")
    message = error_of(accuracy_on, loaded, images)
    assert "NaN or infinite scores for image 2 of the 4" in message
    error_of(predict_labels, loaded, images)
    assert "image 2 of the 4" in error_of(predict, loaded.model, images, "cpu")
    clean = ImageSet(pixels[:2], torch.zeros(2, dtype=torch.long), images.class_names, "test")
    assert 0.0 <= accuracy_on(loaded, clean) <= 1.0


# ----------------------------------------------------------------------------- batch, dtype
def test_a_batch_of_one_model_gets_the_real_reason(pickle_file):
    path = pickle_file(OneAtATime())
    for size in (None, 32):
        message = error_of(load_model_spec, path, allow_pickle=True, input_size=size)
        assert "runs on one image at a time ([1, 3, 32, 32])" in message
        assert "fails on a batch of 2" in message and "--input-size" not in message


def test_a_float64_model_gets_the_real_reason(pickle_file):
    path = pickle_file(Net().double())
    for size in (None, 32):
        message = error_of(load_model_spec, path, allow_pickle=True, input_size=size)
        assert "parameters are float64" in message and "float32 images" in message
        assert "model.float()" in message and "input_size" not in message


def test_a_first_convolution_of_four_channels_is_named(pickle_file):
    message = error_of(load_model_spec, pickle_file(Net(channels=4)), allow_pickle=True)
    assert "first convolution takes 4 channels" in message


# ----------------------------------------------------------------------------- channels
@pytest.mark.parametrize("trace", [False, True])
def test_a_one_channel_torchscript_model_reports_one_channel(torchscript_file, trace,
                                                            random_images):
    path = torchscript_file(Net(channels=1).eval(), trace=trace,
                            example=random_images(1, channels=1))
    loaded = load_model_spec(path)
    assert loaded.channels == 1 and loaded.kind == "torchscript"


class FirstChannelOnly(Net):
    """A 1-channel stem that also runs on RGB images (it reads the first channel)."""

    def __init__(self) -> None:
        super().__init__(channels=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x[:, :1])


def test_the_first_convolution_decides_between_channel_counts_that_both_run(pickle_file):
    loaded = load_model_spec(pickle_file(FirstChannelOnly()), allow_pickle=True)
    assert loaded.channels == 1


def test_a_one_channel_onnx_graph_reports_one_channel(tmp_path, random_images):
    pytest.importorskip("onnxruntime")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Net(channels=1).eval(), random_images(1, 16, 1),
                          tmp_path / "gray.onnx", input_names=["images"],
                          dynamic_axes={"images": {0: "batch"}}, dynamo=False,
                          opset_version=17)
    loaded = load_model_spec(tmp_path / "gray.onnx")
    assert (loaded.channels, loaded.input_size) == (1, 16)


# ----------------------------------------------------------------------------- specs
def test_an_existing_file_named_like_module_callable_is_a_file(torchscript_file, tmp_path,
                                                              monkeypatch):
    torchscript_file(Net().eval(), name="sq:v2.pt")
    monkeypatch.chdir(tmp_path)
    assert model_spec_problem("sq:v2.pt") is None
    assert load_model_spec("sq:v2.pt").kind == "torchscript"
    assert "no module named 'sq'" in model_spec_problem("sq:v3.pt")


# ----------------------------------------------------------------------------- mean/std
@pytest.mark.parametrize("mean, std, message", [
    ((0.5, 0.5, 0.5), (float("inf"),) * 3, "finite numbers"),
    ((0.5, float("nan"), 0.5), (0.2,) * 3, "finite numbers"),
    ((0.5,) * 3, (0.2, 0.0, 0.2), "std must be positive"),
    ((0.5,) * 3, (0.2, -0.1, 0.2), "std must be positive"),
    ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375),
     "0–255 scale.*divide by 255 \\(mean \\(0.485, 0.456, 0.406\\), std \\(0.229, 0.224, "
     "0.225\\)\\)"),
    ((0.5,) * 3, (2.0,) * 3, "0–255 scale"),
    ((-0.5,) * 3, (0.2,) * 3, "mean must lie in \\[0, 1\\]"),
    ((), (), "name no value"),
])
def test_impossible_mean_std_are_refused_before_loading(mean, std, message):
    text = error_of(load_model_spec, "no-such-model.pt", mean=mean, std=std,
                    error=ModelSettingError)
    assert "no-such-model" not in text  # said before the model is looked for
    with pytest.raises(ModelSettingError, match=message):
        Normalize(nn.Identity(), mean, std)


# ----------------------------------------------------------------------------- warnings
def test_copies_of_torchscript_models_keep_leaf_parameters(torchscript_file, random_images):
    scripted = torch.jit.load(str(torchscript_file(Net(bn=True).eval())))
    copied = copy_module(scripted)
    assert all(p.is_leaf and p.requires_grad for p in copied.parameters())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = inference_model(scripted, random_images(2))
    assert fast is not scripted  # the channels-last copy agreed and is used
    assert not [w for w in caught if "not a leaf Tensor" in str(w.message)]


FAST_ATTACK = textwrap.dedent("""
    import sys, warnings, torch
    from pixelprior import FastAttack
    from pixelprior.models import load_model_spec
    loaded = load_model_spec(sys.argv[1])
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    FastAttack(loaded.model).run(x, loaded.model(x).argmax(1))
""")


def test_an_attack_on_a_torchscript_model_prints_no_grad_warning(torchscript_file, tmp_path):
    import subprocess

    path = torchscript_file(Net(bn=True).eval())
    run = subprocess.run([sys.executable, "-W", "default", "-c", FAST_ATTACK, str(path)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "not a leaf Tensor" not in run.stderr


def test_the_verifier_says_what_to_give_instead_of_a_torchscript_file(torchscript_file):
    from pixelprior.models import load_model_spec
    from pixelprior.scoring.cone.zonotope import BoundUnsupportedError
    from pixelprior.search import Verifier

    loaded = load_model_spec(str(torchscript_file(Net(bn=True).eval())))
    with pytest.raises(BoundUnsupportedError, match="give the model as its Python code"):
        Verifier(loaded.model)
