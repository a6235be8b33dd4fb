"""Sensitivity maps: agreement with Captum on the same inputs and noise, and contracts."""

from __future__ import annotations

import pytest
import torch

from pixelprior.maps import (
    CaptumSensitivity,
    GradCAM,
    IntegratedGradients,
    Occlusion,
    SmoothGrad,
    VanillaGradient,
    make_sensitivity,
    normalize_maps,
    reduce_channels,
)

captum = pytest.importorskip("captum.attr")


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(1)
    return torch.rand(3, 3, 12, 12, generator=gen), torch.tensor([0, 2, 4])


def test_smoothgrad_matches_captum_noise_tunnel(tiny_net, batch):
    images, labels = batch
    n, sigma = 8, 0.15
    torch.manual_seed(123)
    expected = captum.NoiseTunnel(captum.Saliency(tiny_net)).attribute(
        images, nt_type="smoothgrad", nt_samples=n, stdevs=sigma, target=labels, abs=False)
    # Captum draws torch.normal(0, σ) over the image-major expanded batch [B·n, C, H, W]
    torch.manual_seed(123)
    noise = torch.normal(0, torch.tensor(sigma).repeat((images.shape[0] * n, 3, 12, 12)))
    noise = noise.view(images.shape[0], n, 3, 12, 12).transpose(0, 1)
    ours = SmoothGrad(tiny_net, n_samples=n, noise_level=sigma).attribute(images, labels, noise)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)


def test_vanilla_gradient_matches_captum_saliency(tiny_net, batch):
    images, labels = batch
    expected = captum.Saliency(tiny_net).attribute(images, target=labels, abs=False)
    torch.testing.assert_close(VanillaGradient(tiny_net).attribute(images, labels), expected)


def test_integrated_gradients_matches_captum(tiny_net, batch):
    images, labels = batch
    expected = captum.IntegratedGradients(tiny_net).attribute(
        images, baselines=0.0, target=labels, n_steps=16, method="gausslegendre")
    ours = IntegratedGradients(tiny_net, steps=16).attribute(images, labels)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-6)


def test_gradcam_matches_captum_layer_gradcam(tiny_net, batch):
    images, labels = batch
    layer = tiny_net.features[-1]
    expected = captum.LayerGradCam(tiny_net, layer).attribute(images, target=labels,
                                                               relu_attributions=True)
    ours = GradCAM(tiny_net).layer_attribute(images, labels)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    assert GradCAM(tiny_net).attribute(images, labels).shape == (3, 1, 12, 12)


@pytest.mark.parametrize("name", ["smoothgrad", "gradient", "integrated_gradients", "gradcam",
                                  "occlusion"])
def test_maps_are_per_pixel_in_unit_interval(tiny_net, batch, name):
    images, labels = batch
    kwargs = {"n_samples": 4} if name == "smoothgrad" else {}
    maps = make_sensitivity(name, tiny_net, **kwargs)(images, labels)
    assert maps.shape == (3, 12, 12)
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1
    assert torch.allclose(maps.flatten(1).amax(1), torch.ones(3))


def test_smoothgrad_is_seeded_and_batch_independent(tiny_net, batch):
    images, labels = batch
    method = SmoothGrad(tiny_net, n_samples=4, seed=7)
    torch.testing.assert_close(method(images, labels), method(images, labels), rtol=0, atol=0)
    assert SmoothGrad(tiny_net, n_samples=4, seed=7, batch_size=2)(images, labels).allclose(
        method(images, labels), atol=1e-6)


def test_reductions_and_normalisation():
    a = torch.tensor([[[[1.0, -3.0]], [[-2.0, 1.0]]]])  # [1, 2, 1, 2]
    assert reduce_channels(a, "max_abs").tolist() == [[[2.0, 3.0]]]
    assert reduce_channels(a, "mean_abs").tolist() == [[[1.5, 2.0]]]
    assert reduce_channels(a, "sum").tolist() == [[[1.0, 2.0]]]
    assert reduce_channels(a, "signed").tolist() == [[[-1.0, -2.0]]]
    with pytest.raises(ValueError, match="unknown reduction"):
        reduce_channels(a, "median")
    assert normalize_maps(torch.ones(1, 2, 2)).eq(0).all()  # constant map: no signal


def test_probability_score_option(tiny_net, batch):
    images, labels = batch
    logit = VanillaGradient(tiny_net).attribute(images, labels)
    prob = VanillaGradient(tiny_net, score="probability").attribute(images, labels)
    assert not torch.allclose(logit, prob)
    with pytest.raises(ValueError, match="unknown score"):
        VanillaGradient(tiny_net, score="energy")


@pytest.mark.parametrize("images, error", [
    (torch.rand(2, 3, 8, 8) * 2, "in \\[0, 1\\]"),
    (torch.rand(3, 8, 8), "\\[B, C, H, W\\]"),
    ((torch.rand(2, 3, 8, 8) * 255).byte(), "float tensor"),
    (torch.full((2, 3, 8, 8), float("nan")), "NaN"),
])
def test_bad_images_are_rejected(tiny_net, images, error):
    with pytest.raises((ValueError, TypeError), match=error):
        VanillaGradient(tiny_net)(images, torch.tensor([0, 1]))


def test_bad_labels_are_rejected(tiny_net):
    with pytest.raises(ValueError, match="labels must have shape"):
        VanillaGradient(tiny_net)(torch.rand(2, 3, 8, 8), torch.tensor([0]))
    with pytest.raises(TypeError, match="integer"):
        VanillaGradient(tiny_net)(torch.rand(2, 3, 8, 8), torch.tensor([0.0, 1.0]))


def test_smoothgrad_absolute_before_matches_captum_default_saliency(tiny_net, batch):
    images, labels = batch
    n, sigma = 6, 0.1
    torch.manual_seed(5)
    expected = captum.NoiseTunnel(captum.Saliency(tiny_net)).attribute(
        images, nt_type="smoothgrad", nt_samples=n, stdevs=sigma, target=labels)  # abs=True
    torch.manual_seed(5)
    noise = torch.normal(0, torch.tensor(sigma).repeat((images.shape[0] * n, 3, 12, 12)))
    noise = noise.view(images.shape[0], n, 3, 12, 12).transpose(0, 1)
    ours = SmoothGrad(tiny_net, n_samples=n, noise_level=sigma, absolute="before").attribute(
        images, labels, noise)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    after = SmoothGrad(tiny_net, n_samples=n, noise_level=sigma).attribute(images, labels,
                                                                            noise)
    assert (after.abs() <= ours + 1e-7).all()  # |mean| <= mean |.|


def test_occlusion_matches_captum_with_a_one_pixel_window(tiny_net, batch):
    images, labels = batch
    expected = captum.Occlusion(tiny_net).attribute(
        images, sliding_window_shapes=(3, 1, 1), strides=1, baselines=0.0, target=labels)
    ours = Occlusion(tiny_net, batch_size=50).attribute(images, labels)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("make, kwargs", [
    (lambda m: captum.Saliency(m), {}),
    (lambda m: captum.Occlusion(m), {"sliding_window_shapes": (3, 1, 1)}),
    (lambda m: captum.ShapleyValueSampling(m),
     {"feature_mask": torch.arange(144).view(1, 1, 12, 12).repeat(1, 3, 1, 1),
      "n_samples": 2}),
    (lambda m: captum.LayerGradCam(m, m.features[-1]), {}),
])
def test_any_captum_attribution_is_a_sensitivity_method(tiny_net, batch, make, kwargs):
    from pixelprior.priors import SusceptibleSetPrior

    images, labels = batch
    method = CaptumSensitivity(make(tiny_net), **kwargs)
    torch.manual_seed(0)
    raw = make(tiny_net).attribute(images, target=labels, **kwargs)
    torch.manual_seed(0)
    maps = method(images, labels)
    assert maps.shape == (3, 12, 12) and float(maps.max()) == 1.0
    if raw.shape[-1] == 12:  # an input attribution: the map is its normalised max |.|
        torch.testing.assert_close(maps, normalize_maps(reduce_channels(raw.detach())))
    prior = SusceptibleSetPrior(0.5, sensitivity=method)
    torch.manual_seed(0)  # sampling methods draw from torch's global stream
    dist = prior.distribution(tiny_net, images, labels)
    assert (dist.susceptible == (maps > 0.5)).all()
    assert prior.config()["sensitivity"]["method"].startswith("captum:")


def test_captum_adapter_refuses_other_objects(tiny_net):
    with pytest.raises(TypeError, match="not a Captum attribution"):
        CaptumSensitivity(tiny_net)


def test_percentile_normalisation_clips_the_extremes():
    maps = torch.linspace(0, 1, 100).view(1, 10, 10).clone()
    maps[0, 0, 0] = 50.0  # one extreme pixel
    minmax = normalize_maps(maps)
    pct = normalize_maps(maps, "percentile", 90.0)
    assert (minmax > 0.5).sum() == 1  # the outlier squashes everything else
    assert (pct > 0.5).sum() > 30 and float(pct.max()) == 1.0
    assert normalize_maps(torch.ones(1, 3, 3), "percentile").eq(0).all()
    with pytest.raises(ValueError, match="normalization"):
        normalize_maps(maps, "zscore")


def test_a_sparse_map_keeps_its_signal_under_percentile_normalisation():
    """Fewer positive pixels than the top 1%: the 99th percentile is 0, and the map is
    scaled by its largest value (it was all zeros, read as "no signal")."""
    maps = torch.zeros(1, 32, 32)
    maps[0, 0, :10] = torch.linspace(0.1, 1.0, 10)
    out = normalize_maps(maps, "percentile", 99.0)
    assert float(out.max()) == 1.0 and int((out > 0.5).sum()) == 5


class SqrtNet(torch.nn.Module):
    """sqrt of a value that a pixel's colour can make negative: NaN gradients there."""

    def forward(self, x):
        value = (x[:, 0] - 0.5).flatten(1)
        return torch.stack([value.sum(1), value.clamp_min(0).sqrt().sum(1)], 1)


def test_nan_attributions_are_refused_naming_the_method():
    images = torch.full((2, 3, 4, 4), 0.5)
    with pytest.raises(ValueError, match="gradient map has NaN or infinite attributions"):
        VanillaGradient(SqrtNet())(images, torch.tensor([1, 1]))


class BatchStatsNet(torch.nn.Module):
    """A BatchNorm between a convolution and the head: in training mode an image's
    scores depend on the batch, and every call moves the running statistics."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4 * 36, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


@pytest.mark.parametrize("make", [VanillaGradient, lambda m: SmoothGrad(m, n_samples=4),
                                  Occlusion, lambda m: GradCAM(m, layer=m.conv)],
                         ids=["gradient", "smoothgrad", "occlusion", "gradcam"])
def test_maps_of_a_model_in_training_mode_are_its_eval_mode_maps(make):
    """As attacks do: the map is computed in eval mode (the same for an image alone or in
    a batch), the running statistics untouched, the model's modes restored."""
    model = BatchStatsNet()
    images = torch.rand(4, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 1, 2, 0])
    expected = make(model.eval())(images, labels)
    model.train()
    running = model.bn.running_mean.clone()
    together = make(model)(images, labels)
    alone = make(model)(images[:1], labels[:1])
    assert model.training and model.bn.training
    assert torch.equal(model.bn.running_mean, running)
    torch.testing.assert_close(together, expected)
    torch.testing.assert_close(alone[0], expected[0], atol=1e-5, rtol=1e-5)


def test_a_signed_occlusion_map_ranks_a_pixel_that_raises_the_score_last(tiny_net, batch):
    images, labels = batch
    drops = Occlusion(tiny_net).attribute(images, labels)[:, 0]
    signed = Occlusion(tiny_net, reduction="signed")(images, labels)
    size = Occlusion(tiny_net)(images, labels)
    for row in range(len(images)):
        order = drops[row].flatten().argsort(descending=True)
        assert torch.equal(signed[row].flatten().argsort(descending=True, stable=True)[:1],
                           order[:1])
        assert torch.equal(size[row].flatten().argmax(), drops[row].abs().flatten().argmax())


def test_gradcam_takes_a_wrapped_features_block_else_the_last_convolution(tiny_net):
    """A model without ``.features`` (a plain CNN, or one wrapped by ``--mean/--std``)
    stopped evaluate-maps' default methods; now the wrapped block's last module, else the
    last convolution."""
    from pixelprior.models import Normalize

    wrapped = Normalize(tiny_net, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    assert GradCAM(wrapped).layer is tiny_net.features[-1]
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                torch.nn.Conv2d(4, 5, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(5 * 4 * 4, 2))
    cam = GradCAM(plain)
    cam(torch.rand(2, 3, 8, 8), torch.tensor([0, 1]))  # found on the first images:
    assert cam.layer is plain[3]  # the last map of more than one position


def test_gradcam_of_a_resnet_takes_its_last_block_not_a_skip_convolution():
    """ResNet8's last registered convolution is its last block's 1x1 shortcut: a skip
    branch, not the block's output (a review's finding)."""
    from pixelprior import load_model

    model = load_model("resnet8-cifar10")
    cam = GradCAM(model)
    cam(torch.rand(2, 3, 32, 32), torch.tensor([0, 1]))
    assert cam.layer is model.layers


def test_gradcam_without_a_convolution_says_what_to_do_on_both_interfaces():
    flat = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2))
    with pytest.raises(ValueError, match="pass GradCAM.model, layer=.... in Python, or "
                                         "leave gradcam out"):
        GradCAM(flat)
