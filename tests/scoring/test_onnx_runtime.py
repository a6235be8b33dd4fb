"""ONNX Runtime engine: same scores and labels as PyTorch, same attack outcomes, clear errors."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from pixelprior import OnePixelAttack, load_cifar10, load_model, to_float

ort = pytest.importorskip("onnxruntime")
from pixelprior.scoring import OnnxRuntimeModel  # noqa: E402


def test_scores_match_pytorch_for_any_batch_size(random_cifar):
    model = random_cifar
    images = torch.rand(9, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    runtime = OnnxRuntimeModel(model, images[:2])
    with torch.inference_mode():
        expected = model(images)
    for rows in (1, 4, 9):
        got = runtime(images[:rows])
        assert got.dtype == torch.float32 and got.shape == expected[:rows].shape
        torch.testing.assert_close(got, expected[:rows], atol=1e-4, rtol=1e-4)
        assert torch.equal(got.argmax(1), expected[:rows].argmax(1))


def test_a_generic_model_works_too(tiny_net):
    images = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        torch.testing.assert_close(OnnxRuntimeModel(tiny_net, images)(images), tiny_net(images),
                                   atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("invariant", [False, True])
def test_the_attack_scores_the_same_candidates_as_with_pytorch(invariant):
    """One generation: the same candidates, so the same best pixel and probability. (Over
    many generations float differences of 1e-7 may steer the search elsewhere.)"""
    model = load_model("squeezenet1_1-cifar10")  # trained: scores that tell pixels apart
    sample = load_cifar10("sample")
    images, labels = to_float(sample.images[:4]), sample.labels[:4]
    runs = {engine: OnePixelAttack(model, popsize=24, maxiter=1, seed=3, engine=engine,
                                   batch_invariant=invariant).run(images, labels)
            for engine in ("full", "onnxruntime")}
    for torch_result, ort_result in zip(runs["full"].results, runs["onnxruntime"].results,
                                        strict=True):
        assert (torch_result.success, torch_result.queries, torch_result.pixels,
                torch_result.adversarial_label) == (
            ort_result.success, ort_result.queries, ort_result.pixels,
            ort_result.adversarial_label)
        assert ort_result.true_probability == pytest.approx(torch_result.true_probability,
                                                            abs=1e-5)


def test_the_attack_finds_the_known_pixel(bright_model):
    image = torch.full((1, 3, 8, 8), 0.2)
    out = OnePixelAttack(bright_model, popsize=40, maxiter=60, seed=0,
                         engine="onnxruntime").run(image, torch.tensor([0]))
    assert out.results[0].success


def test_same_seed_same_results_bit_for_bit(tiny_net):
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    labels = tiny_net(images).argmax(1)
    runs = [OnePixelAttack(tiny_net, popsize=16, maxiter=4, seed=7,
                           engine="onnxruntime").run(images, labels) for _ in range(2)]
    assert torch.equal(runs[0].adversarial, runs[1].adversarial)
    assert [r.true_probability for r in runs[0].results] == [
        r.true_probability for r in runs[1].results]


class Unexportable(nn.Module):
    """Scores computed through NumPy: the ONNX exporter cannot trace it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(x.mean((2, 3)).detach().numpy().copy())


class Flaky(nn.Module):
    """Scores that differ between calls: an export cannot reproduce them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3)) + torch.rand(x.shape[0], x.shape[1])


def test_models_it_cannot_serve_are_refused_clearly(tiny_net):
    image = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="does not read the images"):
        OnnxRuntimeModel(Unexportable(), image)
    with pytest.raises(ValueError, match="differ from the PyTorch"):
        OnnxRuntimeModel(Flaky(), image)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="CPU"):
            OnnxRuntimeModel(tiny_net.cuda(), image.cuda())


def test_a_model_returning_nan_gets_the_attacks_error():
    from pixelprior.scoring import ModelOutputError

    class NaNModel(nn.Module):
        def forward(self, x):
            return x.mean((2, 3)) * float("nan")

    images = torch.rand(2, 3, 8, 8)
    with pytest.raises(ModelOutputError, match="NaN"):
        OnePixelAttack(NaNModel().eval(), popsize=8, maxiter=1, engine="onnxruntime")(
            images, torch.zeros(2, dtype=torch.long))


def test_a_missing_onnxruntime_names_what_to_install(monkeypatch, tiny_net):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    image = torch.rand(1, 3, 8, 8)
    with pytest.raises(ImportError, match=r"pixelprior\[onnx\]"):
        OnePixelAttack(tiny_net, popsize=8, maxiter=1, engine="onnxruntime")(
            image, tiny_net(image).argmax(1))
