"""Models: torchvision-identical keys, strict loading, output shapes, registry errors."""

from __future__ import annotations

import pytest
import torch

from pixelprior.models import (
    SqueezeNet,
    SqueezeNetCifar,
    WeightsError,
    imagenet_class_names,
    load_model,
    model_card,
)

# torchvision's SqueezeNet layout, written out independently of our implementation:
# (index in `features`, inplanes, squeeze, expand1x1, expand3x3)
FIRES = {
    "1_0": [(3, 96, 16, 64, 64), (4, 128, 16, 64, 64), (5, 128, 32, 128, 128),
            (7, 256, 32, 128, 128), (8, 256, 48, 192, 192), (9, 384, 48, 192, 192),
            (10, 384, 64, 256, 256), (12, 512, 64, 256, 256)],
    "1_1": [(3, 64, 16, 64, 64), (4, 128, 16, 64, 64), (6, 128, 32, 128, 128),
            (7, 256, 32, 128, 128), (9, 256, 48, 192, 192), (10, 384, 48, 192, 192),
            (11, 384, 64, 256, 256), (12, 512, 64, 256, 256)],
}
STEM = {"1_0": (96, 3, 7, 7), "1_1": (64, 3, 3, 3)}


def torchvision_state_dict(version: str) -> dict[str, torch.Tensor]:
    """A state dict with exactly torchvision's keys and shapes (random values)."""
    gen = torch.Generator().manual_seed(0)
    shapes = {"features.0.weight": STEM[version], "features.0.bias": (STEM[version][0],)}
    for index, inplanes, squeeze, e1, e3 in FIRES[version]:
        p = f"features.{index}."
        shapes |= {p + "squeeze.weight": (squeeze, inplanes, 1, 1), p + "squeeze.bias": (squeeze,),
                   p + "expand1x1.weight": (e1, squeeze, 1, 1), p + "expand1x1.bias": (e1,),
                   p + "expand3x3.weight": (e3, squeeze, 3, 3), p + "expand3x3.bias": (e3,)}
    shapes |= {"classifier.1.weight": (1000, 512, 1, 1), "classifier.1.bias": (1000,)}
    return {k: torch.randn(v, generator=gen) * 0.01 for k, v in shapes.items()}


@pytest.mark.parametrize("version", ["1_0", "1_1"])
def test_torchvision_keys_load_strictly(version):
    state = torchvision_state_dict(version)
    model = SqueezeNet(version)
    assert set(model.state_dict()) == set(state)
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.features[3].squeeze.weight, state["features.3.squeeze.weight"])


@pytest.mark.parametrize("version", ["1_0", "1_1"])
def test_imagenet_output_shape_and_normalisation(version):
    model = SqueezeNet(version).eval()
    with torch.inference_mode():
        out = model(torch.rand(2, 3, 224, 224))
    assert out.shape == (2, 1000)
    assert "mean" not in model.state_dict()  # normalisation is not a weight


def test_cifar_output_shape():
    model = SqueezeNetCifar().eval()
    with torch.inference_mode():
        assert model(torch.rand(5, 3, 32, 32)).shape == (5, 10)


def test_bundled_cifar_model_loads_in_eval_mode():
    model = load_model("squeezenet1_1-cifar10")
    assert not model.training
    assert model.class_names[3] == "cat"
    card = model_card("squeezenet1_1-cifar10")
    assert card == {} or card["model"] == "squeezenet1_1-cifar10"


@pytest.mark.parametrize("name", ["convsmall-cifar10", "resnet8-cifar10",
                                  "resnet8-ibp-cifar10"])
def test_bundled_verification_nets_load_and_classify(name):
    from pixelprior import load_cifar10, to_float

    model = load_model(name)
    assert not model.training
    data = load_cifar10("sample")
    with torch.inference_mode():
        predicted = model(to_float(data.images)).argmax(1)
    assert float((predicted == data.labels).float().mean()) >= 0.4  # cards: 49-75% on tests


def test_imagenet_weights_from_explicit_path_and_cache(tmp_path, monkeypatch):
    path = tmp_path / "stand-in.pth"
    torch.save(torchvision_state_dict("1_1"), path)
    model = load_model("squeezenet1_1", weights=path)
    assert model.class_names[0] == "tench" and len(model.class_names) == 1000
    # in the cache under the canonical file name the published hash is checked
    cached = tmp_path / "cache" / "weights" / "squeezenet1_1-b8a52dc0.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    with pytest.raises(WeightsError, match="SHA-256"):
        load_model("squeezenet1_1", download=False)


def test_bad_weights_are_clear_errors(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_model("squeezenet1_1", weights=tmp_path / "missing.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x00garbage")
    with pytest.raises(WeightsError, match="not a readable"):
        load_model("squeezenet1_1", weights=corrupt)
    wrong = tmp_path / "wrong.pth"
    torch.save(torchvision_state_dict("1_0"), wrong)
    with pytest.raises(WeightsError, match="do not fit"):
        load_model("squeezenet1_1", weights=wrong)


def test_missing_imagenet_weights_without_download(monkeypatch):
    with pytest.raises(WeightsError, match="squeezenet1_0-b66bff10.pth"):
        load_model("squeezenet1_0", download=False)


def test_unknown_model_name():
    with pytest.raises(KeyError, match="known"):
        load_model("resnet9000")


def test_imagenet_class_names():
    names = imagenet_class_names()
    assert len(names) == 1000 and names[0] == "tench" and names[999] == "toilet_tissue"


def test_inference_model_folds_batchnorm_and_matches():
    from pixelprior.models import ChannelsLast, fold_batchnorm, inference_model

    torch.manual_seed(0)
    model = SqueezeNetCifar()
    for module in model.modules():  # non-trivial running statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    model.eval()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(6, 3, 32, 32)
    fast = inference_model(model, x)
    assert isinstance(fast, ChannelsLast)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # untouched


def test_inference_model_keeps_models_it_cannot_reproduce():
    from pixelprior.models import inference_model

    class Odd(torch.nn.Module):  # output depends on memory layout: the check must catch it
        def forward(self, x):
            return x.flatten(1)[:, :3] if x.is_contiguous() else -x.reshape(x.shape[0], -1)[:, :3]

    odd = Odd()
    assert inference_model(odd, torch.rand(2, 3, 4, 4)) is odd


def test_weights_download_from_local_server_checks_hash(tmp_path, monkeypatch):
    import dataclasses
    import hashlib
    import http.server
    import threading

    from pixelprior import models

    www = tmp_path / "www"
    www.mkdir()
    staging = tmp_path / "weights.pth"
    torch.save(torchvision_state_dict("1_1"), staging)
    prefix = hashlib.sha256(staging.read_bytes()).hexdigest()[:8]
    (www / f"squeezenet1_1-{prefix}.pth").write_bytes(staging.read_bytes())
    (www / "squeezenet1_1-deadbeef.pth").write_bytes(staging.read_bytes())  # wrong hash
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(www), **k)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        good = dataclasses.replace(models.MODELS["squeezenet1_1"],
                                   url=f"{base}/squeezenet1_1-{prefix}.pth",
                                   sha256_prefix=prefix)
        monkeypatch.setitem(models.MODELS, "squeezenet1_1", good)
        model = load_model("squeezenet1_1")
        assert (tmp_path / "cache" / "weights" / good.filename).is_file()
        assert model.features[0].weight.shape == (64, 3, 3, 3)
        bad = dataclasses.replace(good, url=f"{base}/squeezenet1_1-deadbeef.pth",
                                  sha256_prefix="deadbeef")
        monkeypatch.setitem(models.MODELS, "squeezenet1_1", bad)
        with pytest.raises(WeightsError, match="SHA-256 mismatch"):
            load_model("squeezenet1_1")
        assert not (tmp_path / "cache" / "weights" / bad.filename).exists()
        dead = dataclasses.replace(good, url=f"{base}/missing.pth", sha256_prefix="00000000")
        monkeypatch.setitem(models.MODELS, "squeezenet1_1", dead)
        with pytest.raises(WeightsError, match="could not download"):
            load_model("squeezenet1_1")
    finally:
        server.shutdown()
