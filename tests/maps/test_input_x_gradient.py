"""Input × gradient: registered by name everywhere maps are named, and equal to Captum's."""

from __future__ import annotations

import torch

from pixelprior.experiment import parse_mode
from pixelprior.maps import METHODS, InputXGradient, make_sensitivity, reduce_channels


def test_matches_captum_input_x_gradient(tiny_net):
    from captum.attr import InputXGradient as CaptumInputXGradient

    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 2, 4])
    ours = InputXGradient(tiny_net).attribute(images, labels)
    theirs = CaptumInputXGradient(tiny_net).attribute(images.clone().requires_grad_(),
                                                      target=labels)
    assert torch.allclose(ours, theirs.detach(), atol=1e-6)
    maps = make_sensitivity("input_x_gradient", tiny_net)(images, labels)
    expected = reduce_channels(ours).flatten(1)
    low, high = expected.amin(1, keepdim=True), expected.amax(1, keepdim=True)
    assert torch.allclose(maps.flatten(1), (expected - low) / (high - low), atol=1e-6)


def test_one_registration_names_it_for_priors_scans_and_the_fast_mode():
    assert "input_x_gradient" in METHODS
    assert parse_mode("scan:input_x_gradient") == ("scan", "input_x_gradient")
    assert parse_mode("fast:input_x_gradient") == ("fast", "input_x_gradient")


def test_a_model_returning_probabilities_is_not_soft_maxed_twice(tiny_net):
    from torch import nn

    from pixelprior.maps import VanillaGradient, class_scores

    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([1, 3])
    probs_model = nn.Sequential(tiny_net, nn.Softmax(1)).eval()
    p = probs_model(images)
    assert torch.allclose(class_scores(p, labels, "probability"), p[[0, 1], labels])
    assert torch.allclose(class_scores(tiny_net(images), labels, "probability"),
                          p[[0, 1], labels], atol=1e-6)
    # the probability map of the wrapped model equals that of the logits model
    ours = VanillaGradient(probs_model, score="probability")(images, labels)
    plain = VanillaGradient(tiny_net, score="probability")(images, labels)
    assert torch.allclose(ours, plain, atol=1e-5)
