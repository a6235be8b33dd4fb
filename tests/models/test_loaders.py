"""Models from anywhere: every spec form, the probe, and a clear error for every bad input."""

from __future__ import annotations

import copy
import json
import pickle
import sys
import textwrap
import warnings

import pytest
import torch
from torch import nn

from pixelprior.data import CIFAR10_CLASSES, ImageSet, load_cifar10_sample
from pixelprior.models import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    GradientsUnavailableError,
    ModelInputError,
    ModelLoadError,
    ModelSettingError,
    Normalize,
    OnnxModel,
    WeightsError,
    accuracy_on,
    gradient_problem,
    load_model_spec,
    model_spec_problem,
    one_class_warning,
    output_kind,
    predict_labels,
    short_reason,
    to_model_channels,
)
from pixelprior.models.formats import onnx as onnx_format


class AnySizeNet(nn.Module):
    """Conv, BN, global pooling, linear: runs at any input size."""

    def __init__(self, classes: int = 5, channels: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(channels, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


class FixedNet(nn.Module):
    """Flattens its feature map into a linear layer: runs at ``side`` × ``side`` only."""

    def __init__(self, side: int = 32, classes: int = 4, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.fc = nn.Linear(2 * (side // 4) ** 2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.max_pool2d(torch.relu(self.conv(x)), 4)
        return self.fc(x.flatten(1))


class ChannelsLastInput(nn.Module):
    """Takes NHWC images (as a TensorFlow export would)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = AnySizeNet()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.permute(0, 3, 1, 2))


class Reshaped(nn.Module):
    """Returns scores of shape [B, K, 1, 1] (a missing flatten)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True).repeat(1, 2, 1, 1)


class BatchFlattened(nn.Module):
    """``fc(x.reshape(-1, 3 * 32 * 32))``: runs at any size whose pixels are a multiple
    of 32×32's, but gives one row per image only at 32×32."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.reshape(-1, 3 * 32 * 32))


class Mnistish(nn.Module):
    """``fc(x.view(-1, 28 * 28))``, one channel: 28×28 is the one size of one row per
    image, tried after 32 and 224 (where the view runs and gives more rows)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.fc = nn.Linear(28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).view(-1, 28 * 28))


def test_the_first_probe_size_too_must_give_one_row_per_image(tmp_path):
    """Its [384, 10] at 224×224 was kept as the first size that runs, and loading failed
    instead of going on to 28×28."""
    torch.save(Mnistish().eval(), tmp_path / "mnist.pt")
    loaded = load_model_spec(tmp_path / "mnist.pt", allow_pickle=True)
    assert (loaded.input_size, loaded.channels) == (28, 1)


def test_a_size_that_gives_not_one_row_per_image_is_not_a_size_the_model_takes(tmp_path):
    """At 224×224 it returned 49 rows per image, and the model was said to take any size;
    accuracies were then read from rows broadcast against labels."""
    torch.save(BatchFlattened().eval(), tmp_path / "flat.pt")
    loaded = load_model_spec(tmp_path / "flat.pt", allow_pickle=True)
    assert loaded.input_size == 32 and not any("any size" in n for n in loaded.notes)


class InPlaceNormalized(nn.Module):
    """Normalises its input in place: the caller's images change under it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.sub_(0.5).div_(0.25)
        return self.fc(x.mean((2, 3)))


def test_a_model_writing_into_its_input_is_named(tmp_path):
    """It was said to draw random numbers in forward (two forwards differed)."""
    torch.save(InPlaceNormalized().eval(), tmp_path / "inplace.pt")
    with pytest.raises(ModelLoadError, match="writes into the images it is given"):
        load_model_spec(tmp_path / "inplace.pt", allow_pickle=True, input_size=8)


class Constant(nn.Module):
    """Returns ``value`` for every image, broadcast to ``[B, K]`` (NaN, one class...)."""

    def __init__(self, value: list[float]) -> None:
        super().__init__()
        self.register_buffer("value", torch.tensor(value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value.expand(x.shape[0], -1) + 0 * x.mean()


def images(count=3, side=32, channels=3, seed=1):
    return torch.rand(count, channels, side, side, generator=torch.Generator().manual_seed(seed))


def needs_onnx2torch() -> None:
    """Skip where onnx2torch is not installed (optional: ``pip install --no-deps
    onnx2torch``). Found, not imported: a plain import pulls torchvision, which is not
    installed beside it, so ``pytest.importorskip`` skipped these tests everywhere."""
    import importlib.util
    if importlib.util.find_spec("onnx2torch") is None:
        pytest.skip("onnx2torch is not installed")


def export_onnx(model: nn.Module, path, example: torch.Tensor, dynamic: dict | None = None):
    axes = {"images": {0: "batch"}, "scores": {0: "batch"}} if dynamic is None else dynamic
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), example, path, input_names=["images"],
                          output_names=["scores"], dynamic_axes=axes, dynamo=False,
                          opset_version=17)
    return path


def script(model: nn.Module, path, trace: bool = False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = (torch.jit.trace(model.eval(), images(1)) if trace
                    else torch.jit.script(model.eval()))
    exported.save(str(path))
    return path


def one_line(message: str) -> None:
    assert "\n" not in message and "\x1b" not in message and len(message) < 700, message


# ----------------------------------------------------------------------------- registered
def test_registered_name_loads_as_load_model_does():
    loaded = load_model_spec("squeezenet1_1-cifar10")
    assert (loaded.kind, loaded.input_size, loaded.channels, loaded.num_classes) == (
        "registered", 32, 3, 10)
    assert loaded.output == "logits" and loaded.gradients
    assert loaded.class_names == CIFAR10_CLASSES == loaded.model.class_names
    assert not loaded.model.training and loaded.has_class_names
    assert any("logits" in note for note in loaded.notes)


def test_registered_model_refuses_mean_std_and_another_size():
    with pytest.raises(ModelSettingError, match="normalises inside"):
        load_model_spec("squeezenet1_1-cifar10", mean=CIFAR10_MEAN, std=CIFAR10_STD)
    with pytest.raises(ModelLoadError, match="takes 32×32"):
        load_model_spec("squeezenet1_1-cifar10", input_size=64)


def test_accuracy_and_predictions_on_the_bundled_sample():
    loaded = load_model_spec("squeezenet1_1-cifar10")
    sample = load_cifar10_sample()
    assert accuracy_on(loaded, sample) > 0.7
    predicted = predict_labels(loaded, sample)
    assert predicted.shape == (100,) and one_class_warning(predicted, CIFAR10_CLASSES) is None
    big = ImageSet(torch.zeros(2, 3, 40, 40, dtype=torch.uint8), torch.zeros(2, dtype=torch.long),
                   CIFAR10_CLASSES, "test")
    with pytest.raises(ModelInputError, match="40×40 but .* takes 32×32"):
        accuracy_on(loaded, big)
    many = ImageSet(sample.images[:2], torch.tensor([0, 12]), CIFAR10_CLASSES, "test")
    with pytest.raises(ModelInputError, match="labels go up to 12"):
        accuracy_on(loaded, many)


def test_one_class_warning():
    message = one_class_warning(torch.tensor([3] * 19 + [1]), CIFAR10_CLASSES)
    assert "19 of 20" in message and "'cat'" in message and "normalisation" in message
    assert one_class_warning(torch.arange(20) % 4, 4) is None
    assert one_class_warning(torch.tensor([2, 2, 2]), 4) is None  # too few to tell


# ----------------------------------------------------------------------------- TorchScript
@pytest.mark.parametrize("trace", [False, True])
def test_torchscript_any_size(tmp_path, trace):
    net = AnySizeNet().eval()
    loaded = load_model_spec(str(script(net, tmp_path / "net.pt", trace)))
    assert (loaded.kind, loaded.input_size, loaded.channels, loaded.num_classes) == (
        "torchscript", None, 3, 5)
    assert any("any size" in note for note in loaded.notes)
    assert any("normalise inside" in note for note in loaded.notes)
    assert any("numbered 0..4" in note for note in loaded.notes)
    assert loaded.class_names == ("0", "1", "2", "3", "4") and not loaded.has_class_names
    x = images()
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), net(x), atol=1e-6)


def test_torchscript_fixed_size_is_inferred_or_given(tmp_path):
    path = script(FixedNet(32), tmp_path / "fixed.ts")
    inferred = load_model_spec(path)
    assert inferred.input_size == 32 and any("inferred" in n for n in inferred.notes)
    given = load_model_spec(path, input_size=(32, 32))
    assert given.input_size == 32 and any("(given)" in n for n in given.notes)
    odd = script(FixedNet(16), tmp_path / "odd.pt")  # 16 is no probe size
    with pytest.raises(ModelLoadError, match="input_size") as error:
        load_model_spec(odd)
    one_line(str(error.value))
    assert load_model_spec(odd, input_size=16).size_hw == (16, 16)


def test_one_channel_model_is_probed(tmp_path):
    loaded = load_model_spec(str(script(AnySizeNet(channels=1), tmp_path / "gray.pt")))
    assert loaded.channels == 1 and any("1-channel" in n for n in loaded.notes)
    gray = to_model_channels(images(2), 1)
    assert gray.shape == (2, 1, 32, 32)
    same = torch.full((1, 3, 2, 2), 0.25)
    assert torch.allclose(to_model_channels(same, 1), torch.full((1, 1, 2, 2), 0.25))
    with pytest.raises(ModelInputError):
        to_model_channels(images(1, channels=1), 3)


# ----------------------------------------------------------------------------- ONNX
def test_onnx_queries_ort_and_gradients_through_a_pytorch_copy(tmp_path):
    needs_onnx2torch()
    net = AnySizeNet().eval()
    path = export_onnx(net, tmp_path / "net.onnx", images(1))
    loaded = load_model_spec(path)
    assert (loaded.kind, loaded.input_size, loaded.channels, loaded.num_classes) == (
        "onnx", 32, 3, 5)
    assert loaded.gradients and any("onnx2torch" in n for n in loaded.notes)
    assert "torchvision" not in sys.modules  # onnx2torch imported without it
    x = images()
    model = loaded.model
    with torch.inference_mode():
        assert torch.allclose(model(x), net(x), atol=1e-5)
    leaf = x.clone().requires_grad_(True)
    model(leaf)[:, 0].sum().backward()
    reference = x.clone().requires_grad_(True)
    net(reference)[:, 0].sum().backward()
    assert torch.allclose(leaf.grad, reference.grad, atol=1e-5)


def test_onnx_loads_in_a_fresh_process_with_onnx2torch(tmp_path):
    """A user's first command loads the ONNX file before torch.onnx was ever imported:
    onnx2torch then imports torch.onnx under the torchvision stand-in, whose made-up
    ``__file__`` broke ``inspect`` (every ONNX model failed to load; the tests, which
    export first, never saw it)."""
    needs_onnx2torch()
    import subprocess
    path = export_onnx(AnySizeNet().eval(), tmp_path / "net.onnx", images(1))
    code = ("import sys; from pixelprior.models import load_model_spec; "
            f"m = load_model_spec({str(path)!r}); "
            "assert 'torch.onnx' not in sys.modules or m.gradients; "
            "print(m.kind, m.gradients)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["onnx", "True"]


def test_onnx_model_copies_and_pickles(tmp_path):
    loaded = load_model_spec(export_onnx(AnySizeNet(), tmp_path / "net.onnx", images(1)))
    x = images()
    with torch.no_grad():
        expected = loaded.model(x)
        clone = copy.deepcopy(loaded.model)
        assert isinstance(clone, OnnxModel) and clone.session is loaded.model.session
        assert torch.equal(clone(x), expected)
        assert torch.equal(pickle.loads(pickle.dumps(loaded.model))(x), expected)


def test_onnx_declared_size_symbolic_size_and_fixed_batch(tmp_path):
    dynamic = {"images": {0: "batch", 2: "height", 3: "width"}, "scores": {0: "batch"}}
    free = load_model_spec(export_onnx(AnySizeNet(), tmp_path / "free.onnx", images(1),
                                       dynamic))
    assert free.input_size is None
    net = AnySizeNet().eval()
    fixed = load_model_spec(export_onnx(net, tmp_path / "one.onnx", images(1, 24), {}))
    assert fixed.input_size == 24 and any("fixed batch of 1" in n for n in fixed.notes)
    x = images(3, 24)
    with torch.no_grad():
        assert torch.allclose(fixed.model(x), net(x), atol=1e-5)
    with pytest.raises(ModelLoadError, match="takes 24×24"):
        load_model_spec(tmp_path / "one.onnx", input_size=32)


def test_onnx_without_a_pytorch_copy_is_query_only(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_format, "onnx_twin", lambda path: (None, "no converter"))
    loaded = load_model_spec(export_onnx(AnySizeNet(), tmp_path / "net.onnx", images(1)))
    assert not loaded.gradients
    assert any("except occlusion" in n and "no converter" in n for n in loaded.notes)
    with torch.no_grad():
        assert loaded.model(images()).shape == (3, 5)
    with pytest.raises(GradientsUnavailableError, match="occlusion"):
        loaded.model(images().requires_grad_(True))


def test_gradient_problem_says_why_a_model_has_no_input_gradient(tmp_path, monkeypatch):
    assert gradient_problem(AnySizeNet().eval(), images()) is None

    class Detached(nn.Module):
        def forward(self, x):
            return AnySizeNet().eval()(x.detach())

    assert "carry no gradient" in gradient_problem(Detached(), images())
    monkeypatch.setattr(onnx_format, "onnx_twin", lambda path: (None, "no converter"))
    loaded = load_model_spec(export_onnx(AnySizeNet(), tmp_path / "net.onnx", images(1)))
    assert gradient_problem(loaded.model, images()) == (
        "no PyTorch copy of this ONNX graph (no converter)")


def test_a_graph_of_a_newer_opset_gets_its_gradients_through_an_older_one(tmp_path):
    """Opset 19 changed Constant, which onnx2torch knows only in its older form: the
    graph is taken to opset 17 by onnx's version converter, and the copy is checked
    against ONNX Runtime like any copy."""
    needs_onnx2torch()
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Hardshrink(0.1), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 5)).eval()  # Hardshrink: Constants
    path = tmp_path / "new.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, images(1), path, input_names=["images"],
                          dynamic_axes={"images": {0: "batch"}}, dynamo=False,
                          opset_version=20)
    loaded = load_model_spec(path)
    assert loaded.gradients
    assert any("from opset 20 to 17" in note for note in loaded.notes), loaded.notes
    x = images(2).requires_grad_(True)
    loaded.model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_an_unconvertible_operation_is_named_with_the_opset_to_export_at():
    needs_onnx2torch()
    newer = NotImplementedError("Converter is not implemented (OperationDescription("
                                "domain='', operation_type='Constant', version=19))")
    assert onnx_format._conversion_failure(newer) == (
        "onnx2torch has no converter for the ONNX operation Constant of opset 19 (it "
        "converts the form of opsets up to 18: export the model with opset_version=18 or "
        "lower)")
    unknown = NotImplementedError("Converter is not implemented (OperationDescription("
                                  "domain='', operation_type='Shrink', version=9))")
    assert onnx_format._conversion_failure(unknown).endswith("operation Shrink of opset 9")
    other = RuntimeError("x" * 300)
    assert onnx_format._conversion_failure(other).startswith(
        "onnx2torch cannot convert it: RuntimeError: x")


def test_onnx_nhwc_is_refused(tmp_path):
    path = export_onnx(ChannelsLastInput(), tmp_path / "nhwc.onnx", torch.rand(1, 32, 32, 3))
    with pytest.raises(ModelLoadError, match="NHWC") as error:
        load_model_spec(path)
    assert "[batch, 32, 32, 3]" in str(error.value) and "NCHW" in str(error.value)
    one_line(str(error.value))


def test_onnx_attack_runs_through_the_scorers(tmp_path):
    from pixelprior.search import OnePixelAttack

    net = AnySizeNet().eval()
    loaded = load_model_spec(export_onnx(net, tmp_path / "net.onnx", images(1, 8)))
    x, labels = images(2, 8), torch.tensor([0, 1])
    out = OnePixelAttack(loaded.model, popsize=8, maxiter=2, seed=0).run(x, labels)
    with torch.no_grad():
        expected = net(out.adversarial).softmax(1)
    for i, result in enumerate(out.results):
        assert result.true_probability == pytest.approx(float(expected[i, labels[i]]),
                                                         abs=1e-5)


# ----------------------------------------------------------------------------- factories
FACTORY = textwrap.dedent("""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, classes=3):
            super().__init__()
            self.fc = nn.Linear(3, classes)
            self.class_names = ("cat", "dog", "eel")[:classes]

        def forward(self, x):
            return self.fc(x.mean((2, 3)))

    def make():
        return Net()

    def make_two():
        return Net(2)

    def not_a_model():
        return 42
""")


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "usernets.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "usernets", raising=False)
    yield tmp_path
    sys.modules.pop("usernets", None)


def test_module_callable_with_strict_weights(user_module):
    import usernets

    reference = usernets.make()
    torch.save(reference.state_dict(), user_module / "w.pt")
    loaded = load_model_spec("usernets:make", weights=user_module / "w.pt")
    assert loaded.kind == "module" and loaded.class_names == ("cat", "dog", "eel")
    assert any("loaded strictly" in n for n in loaded.notes)
    x = images()
    with torch.no_grad():
        assert torch.equal(loaded.model(x), reference(x))
    without = load_model_spec("usernets:make")
    assert any("no weights given" in n for n in without.notes)


def test_module_callable_weights_that_do_not_fit(user_module):
    import usernets

    torch.save(usernets.make_two().state_dict(), user_module / "two.pt")
    with pytest.raises(WeightsError, match="size mismatch for fc.weight") as error:
        load_model_spec("usernets:make", weights=user_module / "two.pt")
    one_line(str(error.value))
    torch.save({"other.weight": torch.zeros(1)}, user_module / "other.pt")
    with pytest.raises(WeightsError, match="missing key.*unexpected key"):
        load_model_spec("usernets:make", weights=user_module / "other.pt")


def test_module_callable_dataparallel_prefix_is_removed(user_module):
    import usernets

    state = {f"module.{k}": v for k, v in usernets.make().state_dict().items()}
    torch.save(state, user_module / "dp.pt")
    loaded = load_model_spec("usernets:make", weights=user_module / "dp.pt")
    assert any("'module.' prefix removed" in n for n in loaded.notes)


def test_module_callable_errors(user_module):
    with pytest.raises(ModelLoadError, match="has no 'missing'.*make"):
        load_model_spec("usernets:missing")
    with pytest.raises(ModelLoadError, match="returned int, not an nn.Module"):
        load_model_spec("usernets:not_a_model")
    with pytest.raises(ModelLoadError, match="cannot import nosuchpackage_xyz"):
        load_model_spec("nosuchpackage_xyz.nets:make")


def test_python_file_factory(tmp_path):
    (tmp_path / "my_nets.py").write_text(FACTORY)
    loaded = load_model_spec(f"{tmp_path / 'my_nets.py'}:make_two", classes=["a", "b"])
    assert loaded.num_classes == 2 and loaded.class_names == ("a", "b")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model_spec(f"{tmp_path / 'gone.py'}:make")
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ModelLoadError, match="importing .*broken.py failed: RuntimeError: boom"):
        load_model_spec(f"{tmp_path / 'broken.py'}:make")


# ----------------------------------------------------------------------------- pickles
def test_pickled_module_needs_allow_pickle(tmp_path):
    net = AnySizeNet().eval()
    torch.save(net, tmp_path / "full.pt")
    with pytest.raises(ModelLoadError, match="runs code from the file.*allow_pickle") as error:
        load_model_spec(tmp_path / "full.pt")
    assert "AnySizeNet" in str(error.value)
    one_line(str(error.value))
    loaded = load_model_spec(tmp_path / "full.pt", allow_pickle=True)
    assert loaded.kind == "pickle" and loaded.input_size is None
    x = images()
    with torch.no_grad():
        assert torch.equal(loaded.model(x), net(x))


def test_state_dict_file_says_it_lacks_an_architecture(tmp_path):
    torch.save(AnySizeNet().state_dict(), tmp_path / "weights.pth")
    with pytest.raises(ModelLoadError, match="state dict .* no architecture.*module:callable"):
        load_model_spec(tmp_path / "weights.pth")


@pytest.mark.parametrize("name", ["junk.pt", "junk.onnx", "junk.bin"])
def test_a_file_of_no_kind_lists_what_was_tried(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x1b[1mnot a model at all\x00" * 50)
    with pytest.raises(ModelLoadError) as error:
        load_model_spec(tmp_path / name)
    message = str(error.value)
    one_line(message)
    for kind in ("TorchScript:", "ONNX:", "PyTorch file:"):
        assert kind in message


def test_unknown_specs():
    with pytest.raises(ModelLoadError, match="unknown model 'nope'.*registered name"):
        load_model_spec("nope")
    assert "squeezenet1_1-cifar10" in model_spec_problem("nope")


def test_model_spec_problem(tmp_path, user_module):
    (tmp_path / "m.onnx").write_bytes(b"x")
    assert model_spec_problem("squeezenet1_1-cifar10") is None
    assert model_spec_problem(tmp_path / "m.onnx") is None
    assert model_spec_problem("usernets:make") is None
    assert "does not exist" in model_spec_problem(f"{tmp_path / 'gone.py'}:make")
    assert "no module named" in model_spec_problem("nosuchpackage_xyz:make")
    assert "folder" in model_spec_problem(tmp_path)
    assert "usernets" not in sys.modules  # checked, not imported


# ----------------------------------------------------------------------------- the probe
def test_probabilities_or_logits_are_detected(tmp_path):
    net = AnySizeNet().eval()
    torch.save(nn.Sequential(net, nn.Softmax(1)), tmp_path / "soft.pt")
    soft = load_model_spec(tmp_path / "soft.pt", allow_pickle=True)
    assert soft.output == "probabilities" and any("never soft-maxed" in n for n in soft.notes)
    torch.save(net, tmp_path / "net.pt")
    assert load_model_spec(tmp_path / "net.pt", allow_pickle=True).output == "logits"
    assert output_kind(torch.tensor([[0.2, 0.8], [1.0, 0.0]])) == "probabilities"
    assert output_kind(torch.tensor([[0.2, 0.7], [1.0, 0.0]])) == "logits"
    assert output_kind(torch.tensor([[1.5, -0.5]])) == "logits"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_half_precision_softmax_is_probabilities_cast_or_not(dtype):
    """Its rows sum to 1 only within the half format's rounding (2e-3 for 10 classes),
    over the float32 tolerance: such a model was taken to return logits and its
    probabilities were soft-maxed again."""
    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(0)) * 3
    probabilities = logits.to(dtype).softmax(1)
    assert float((probabilities.double().sum(1) - 1).abs().max()) > 1e-4
    assert output_kind(probabilities) == output_kind(probabilities.float()) == "probabilities"
    assert output_kind(logits.to(dtype).float()) == "logits"


def test_bfloat16_logits_of_many_classes_stay_logits():
    """A tolerance of K epsilons (7.8 for 1000 bfloat16 classes) took them for
    probabilities."""
    torch.manual_seed(1)
    head = nn.Linear(64, 1000)
    for seed in range(6):
        features = torch.rand(8, 64, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            logits = head(features)
        for scores in (logits, logits - logits.mean(1, keepdim=True)):
            assert output_kind(scores.to(torch.bfloat16)) == "logits"


@pytest.mark.parametrize("model, message", [
    (Reshaped(), r"shape \[2, 6, 1, 1\]"),
    (Constant([3.0]), "1 score per image"),
    (Constant([float("nan"), 1.0]), "NaN"),
])
def test_unusable_outputs_are_named(tmp_path, model, message):
    torch.save(model, tmp_path / "bad.pt")
    with pytest.raises(ModelLoadError, match=message) as error:
        load_model_spec(tmp_path / "bad.pt", allow_pickle=True, input_size=8)
    one_line(str(error.value))


def test_mean_std_wrapping_equals_normalising_by_hand(tmp_path):
    net = AnySizeNet().eval()
    loaded = load_model_spec(script(net, tmp_path / "net.pt"), mean=CIFAR10_MEAN,
                             std=CIFAR10_STD)
    assert isinstance(loaded.model, Normalize)
    assert list(loaded.model.state_dict()) == [f"model.{k}" for k in
                                               torch.jit.script(net).state_dict()]
    x = images()
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), net((x - mean) / std), atol=1e-6)
    assert any("normalise inside (mean" in n for n in loaded.notes)


@pytest.mark.parametrize("mean, std, message", [
    ((0.5, 0.5, 0.5), None, "both mean and std"),
    ((0.5,), (0.0,), "std must be positive"),
    ((0.5, 0.5), (0.2, 0.2), "mean has 2 values"),
])
def test_bad_mean_std(tmp_path, mean, std, message):
    with pytest.raises(ModelSettingError, match=message):
        load_model_spec(script(AnySizeNet(), tmp_path / "net.pt"), mean=mean, std=std)


def test_class_names_from_a_list_a_file_or_json(tmp_path):
    path = script(AnySizeNet(), tmp_path / "net.pt")
    names = ["a", "b", "c", "d", "e"]
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n\n")
    (tmp_path / "names.json").write_text(json.dumps(names))
    (tmp_path / "index.json").write_text(json.dumps({str(i): [f"n{i}", n]
                                                     for i, n in enumerate(names)}))
    for classes in (names, tmp_path / "names.txt", str(tmp_path / "names.json"),
                    tmp_path / "index.json", "a,b,c,d,e"):
        loaded = load_model_spec(path, classes=classes)
        assert loaded.class_names == tuple(names) == loaded.model.class_names
    with pytest.raises(ModelSettingError, match="3 class names given for a model with 5"):
        load_model_spec(path, classes=["a", "b", "c"])


def test_short_reasons():
    long = RuntimeError("\x1b[1mfirst sentence is here. " + "x" * 500 + "\nsecond line")
    assert short_reason(long) == "RuntimeError: first sentence is here"
    assert len(short_reason("y" * 500)) == 120



def test_an_onnx_file_without_onnxruntime_says_what_to_install(tmp_path, monkeypatch):
    """The line named the missing module only; the other missing extras say their
    install command."""
    from pixelprior.models import ModelLoadError, formats

    def missing(path, allow_pickle, device):
        raise ModuleNotFoundError("No module named 'onnxruntime'")

    monkeypatch.setattr(formats, "FILE_FORMATS", tuple(
        formats.FileFormat(f.label, missing, f.suffixes) if f.label == "ONNX" else f
        for f in formats.FILE_FORMATS))
    path = tmp_path / "net.onnx"
    path.write_bytes(b"not read")
    with pytest.raises(ModelLoadError, match=r'ONNX: .*onnxruntime.* \(pip install '
                                             r'"pixelprior\[onnx\]"\)'):
        formats.load_file(path, False, torch.device("cpu"))


@pytest.mark.parametrize("attribute", [(3, 20, 20), "20x20", (0, 20)])
def test_an_input_size_attribute_that_is_no_size_is_said_to_be_ignored(tmp_path, attribute):
    """timm's (C, H, W) was ignored without a word, and the image attacked at its own
    size (an audit's case)."""
    net = AnySizeNet().eval()
    net.input_size = attribute
    torch.save(net, tmp_path / "net.pt")
    loaded = load_model_spec(tmp_path / "net.pt", allow_pickle=True)
    assert any(f"input_size attribute {attribute!r} is no side" in note
               for note in loaded.notes), loaded.notes


def test_a_factory_file_imports_its_sibling_modules(tmp_path):
    """``import layers`` beside net.py failed with "No module named 'layers'": the
    file's folder is on sys.path while it is imported and its factory called, as
    ``python net.py`` has it, and not after."""
    import sys

    (tmp_path / "siblinglayers.py").write_text(
        "import torch\n"
        "def block():\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))\n")
    (tmp_path / "net.py").write_text(
        "import siblinglayers\n"
        "def make():\n"
        "    return siblinglayers.block().eval()\n")
    loaded = load_model_spec(f"{tmp_path / 'net.py'}:make", input_size=4)
    assert loaded.num_classes == 3 and str(tmp_path) not in sys.path
