"""Sensitivity methods refuse options they do not take, and are bound to one model: built
without one they are bound to the attacked model, bound to another they are refused."""

from __future__ import annotations

import pytest
import torch

from pixelprior.maps import (
    METHODS,
    GradCAM,
    SmoothGrad,
    VanillaGradient,
    accepted_options,
    make_sensitivity,
    sensitivity_from_settings,
)


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 12, 12, generator=gen), torch.tensor([0, 2])


# ------------------------------------------------------------------ options
def test_an_option_the_method_does_not_take_is_refused_naming_the_accepted_ones(tiny_net):
    with pytest.raises(TypeError, match="sensitivity method 'gradient' got an unknown option "
                                        "'n_samples'; sensitivity method 'gradient' takes: "
                                        "batch_size, normalization, percentile, reduction, "
                                        "score"):
        make_sensitivity("gradient", tiny_net, n_samples=4)
    with pytest.raises(TypeError, match="unknown option 'n_sample'.* n_samples"):
        make_sensitivity("smoothgrad", tiny_net, n_sample=4)
    with pytest.raises(ValueError, match="unknown sensitivity method 'smoothgrads'"):
        make_sensitivity("smoothgrads", tiny_net)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_takes_every_option_it_declares(name, tiny_net):
    assert set(accepted_options(name)) >= {"score", "reduction", "batch_size"}
    defaults = {"n_samples": 2, "noise_level": 0.1, "absolute": "before", "seed": 1,
                "steps": 2, "baseline": 0.0, "layer": tiny_net.features[-1],
                "score": "logit", "reduction": "sum", "normalization": "minmax",
                "percentile": 99.0, "batch_size": 64}
    method = make_sensitivity(name, tiny_net, **{k: defaults[k]
                                                 for k in accepted_options(name)})
    assert method.model is tiny_net and method.batch_size == 64


def test_shared_settings_give_each_method_its_own_and_refuse_typos(tiny_net):
    settings = {"score": "logit", "n_samples": 3, "noise_level": 0.1, "absolute": "after"}
    assert sensitivity_from_settings("gradient", tiny_net, **settings).score == "logit"
    assert sensitivity_from_settings("smoothgrad", tiny_net, **settings).n_samples == 3
    with pytest.raises(TypeError, match="unknown map setting 'n_sample'"):
        sensitivity_from_settings("gradient", tiny_net, n_sample=3)


# ------------------------------------------------------------------ binding
def test_a_method_without_a_model_must_be_bound_before_use(tiny_net, batch):
    method = SmoothGrad(n_samples=2)
    with pytest.raises(ValueError, match="SmoothGrad was built without a model: bind it"):
        method(*batch)
    bound = method.bind(tiny_net)
    assert bound is not method and bound.model is tiny_net and method.model is None
    expected = SmoothGrad(tiny_net, n_samples=2)(*batch)
    assert torch.equal(bound(*batch), expected)
    assert bound.bind(tiny_net) is bound


def test_a_method_bound_to_another_model_is_refused(tiny_net):
    other = type(tiny_net)(seed=1).eval()
    with pytest.raises(ValueError, match="the VanillaGradient map was built on another model "
                                         r"\(TinyConvNet\) than the one attacked"):
        VanillaGradient(other).bind(tiny_net)


def test_gradcam_finds_its_layer_when_bound_and_refuses_a_foreign_layer(tiny_net, batch):
    assert GradCAM().bind(tiny_net).layer is tiny_net.features[-1]
    other = type(tiny_net)(seed=1).eval()
    with pytest.raises(ValueError, match="the GradCAM layer .* is not a module of the model"):
        GradCAM(layer=other.features[-1]).bind(tiny_net)
    torch.testing.assert_close(GradCAM().bind(tiny_net)(*batch), GradCAM(tiny_net)(*batch))


def test_gradcam_takes_its_layer_by_name(tiny_net, batch):
    """A module's name (what a config's ``[map_options]`` and the command line give), a
    wrapped model's layer by its own name; a name no module (or several) has, and a
    layer that is neither a module nor a name, refused naming what to give."""
    named = GradCAM(layer="features.2").bind(tiny_net)
    assert named.layer is tiny_net.features[2]
    torch.testing.assert_close(named(*batch), GradCAM(tiny_net, layer=tiny_net.features[2])(
        *batch))
    wrapped = torch.nn.Sequential(tiny_net)
    assert GradCAM(wrapped, layer="features.0").layer is tiny_net.features[0]
    assert GradCAM(wrapped, layer="0.features.0").layer is tiny_net.features[0]
    with pytest.raises(ValueError, match="the GradCAM layer 'features.9' is no module of the "
                                         "model .its convolutions and stages include "
                                         "features, features.0, features.2"):
        GradCAM(tiny_net, layer="features.9")
    twice = torch.nn.ModuleDict({"a": tiny_net, "b": type(tiny_net)()})
    with pytest.raises(ValueError, match="several modules' names end with 'features.0'"):
        GradCAM(twice, layer="features.0")
    for bad in (3, ""):
        with pytest.raises(ValueError, match="one of the model's modules or its name"):
            GradCAM(layer=bad)
    tiny_net.alias = tiny_net.features[2]  # a module held twice: by either name
    assert GradCAM(tiny_net, layer="alias").layer is tiny_net.features[2]
    # a layer that outputs no map, or that forward never calls: one line, not IndexError
    with pytest.raises(ValueError, match="the GradCAM layer 'head' outputs .2, 5., not a map"):
        GradCAM(tiny_net, layer="head")(*batch)
    tiny_net.unused = torch.nn.Conv2d(3, 3, 1)
    with pytest.raises(ValueError, match="'unused' is not run by the model's forward"):
        GradCAM(tiny_net, layer="unused")(*batch)


def test_a_captum_method_is_bound_to_its_forward_module(tiny_net):
    captum = pytest.importorskip("captum.attr")
    from pixelprior.maps import CaptumSensitivity

    method = CaptumSensitivity(captum.Saliency(tiny_net))
    assert method.bind(tiny_net) is method
    with pytest.raises(ValueError, match="built on another model"):
        method.bind(type(tiny_net)(seed=1))
    wrapped = CaptumSensitivity(captum.Saliency(lambda x: tiny_net(x).softmax(1)))
    assert wrapped.bind(tiny_net) is wrapped  # a function cannot be compared: as given


class _Decisions(torch.nn.Module):
    """Returns one-hot decisions, detached (a black-box wrapper's way)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = torch.stack([x.mean((1, 2, 3)), 1 - x.mean((1, 2, 3))], 1)
        return torch.nn.functional.one_hot(scores.argmax(1), 2).float().detach()


@pytest.mark.parametrize("method", ["gradient", "smoothgrad"])
def test_a_model_without_gradients_is_named_not_an_internal_error(method):
    """autograd's 'element 0 of tensors does not require grad' reached users as an
    internal error."""
    from pixelprior.models import GradientsUnavailableError
    sensitivity = METHODS.get(method)(_Decisions().eval())
    with pytest.raises(GradientsUnavailableError, match="carry no gradient of its input"):
        sensitivity(torch.rand(2, 3, 4, 4), torch.zeros(2, dtype=torch.long))


class _DetachedInput(torch.nn.Module):
    """Weights that require grad, an input detached: scores with a graph, none to x."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(48, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.detach().flatten(1))


class _InPlaceSum(torch.nn.Module):
    """ReLU(inplace=True) then ``y += h``: inference runs, its backward pass cannot."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)
        self.relu = torch.nn.ReLU(inplace=True)
        self.head = torch.nn.Linear(48, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        y = self.relu(h)
        y += h
        return self.head(torch.sigmoid(y).flatten(1))


@pytest.mark.parametrize("model, phrase", [
    (_DetachedInput, "carry no gradient of its input"),
    (_InPlaceSum, "an in-place operation overwrites a value its backward pass needs")])
def test_gradients_autograd_refuses_are_named(model, phrase):
    """Both reached users as internal errors (autograd's RuntimeError): 'not used in the
    graph', 'modified by an inplace operation' (an audit's cases)."""
    from pixelprior.models import GradientsUnavailableError, gradient_problem

    net, images = model().eval(), torch.rand(2, 3, 4, 4)
    with pytest.raises(GradientsUnavailableError, match=phrase):
        METHODS.get("gradient")(net)(images, torch.zeros(2, dtype=torch.long))
    assert phrase.split(":")[0][:20] in gradient_problem(net, images)
