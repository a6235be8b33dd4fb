"""LocalResponseNorm (``nn.LocalResponseNorm``, ``F.local_response_norm``; Caffe's and
the TensorFlow CIFAR-10 tutorial's networks): the verifier's copies made for the
images' shape write it as ``x · (k + α · (W ⋆ x²) / n)^-β`` (a 1×1 convolution of ones
over each channel's window); the form computes the model's function, the bound engine
and the interval screen are sound on it, and the verifier decides such a network."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_computed_settings import engines_of, scores_of
from torch import nn

from pixelprior import Verifier
from pixelprior.scoring.cone.bounds import BoundEngine, BoundUnsupportedError
from pixelprior.scoring.cone.graph import TracedGraph
from pixelprior.scoring.cone.rounding import rounding_error


class Normalised(nn.Module):
    """A convolution, an ``nn.LocalResponseNorm``, a second one by ``F.local_response_norm``
    (the square root's exponent), a head."""

    def __init__(self, channels: int = 6, size: int = 3, alpha: float = 0.5,
                 beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.lrn = nn.LocalResponseNorm(size, alpha=alpha, beta=beta, k=k)
        self.fc = nn.Linear(channels * 64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lrn(torch.relu(self.conv(x)))
        h = F.local_response_norm(h, 4, alpha=0.3, beta=0.5, k=2.0)
        return self.fc(h.flatten(1))


def _model(seed: int = 0, **settings) -> nn.Module:
    torch.manual_seed(seed)
    model = Normalised(**settings).eval()
    with torch.no_grad():
        model.conv.weight.mul_(3.0)  # values of a few units: the norm matters
    return model


def _image(seed: int = 1, size: int = 8) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("settings", [
    {}, {"channels": 2, "size": 5}, {"size": 1}, {"size": 2, "beta": 1.0, "k": 0.5},
    {"channels": 7, "size": 6, "alpha": 2.0, "beta": 0.25}, {"beta": -0.5}, {"beta": 0.0}],
    ids=["caffe", "window-past-channels", "size-1", "even-size", "odd-channels",
         "negative-beta", "beta-0"])
def test_the_written_form_computes_the_model(settings):
    model = _model(**settings)
    copied = copy.deepcopy(model).double()
    graph = TracedGraph(copied, fold=False, float_as=torch.float64, decompose=True,
                        shape=(3, 8, 8))
    assert graph.shape == (3, 8, 8) and not graph.unsettled
    names = {getattr(n.target, "__name__", str(n.target)) for n in graph.nodes}
    assert "local_response_norm" not in names and "LocalResponseNorm" not in str(
        graph.graph_module.code)
    images = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(graph.run(images), copied(images), rtol=1e-12, atol=1e-12)


def test_without_the_shape_it_is_refused_with_what_to_do():
    with pytest.raises(BoundUnsupportedError, match=r"writes LocalResponseNorm out for values "
                       r"\[N, C, H, W\] and one image shape.*shape=\(C, H, W\)"):
        BoundEngine(_model()).plan(_image())


def test_a_box_of_width_zero_gives_the_exactscores_of():
    model = _model()
    engine = BoundEngine(model, shape=(3, 8, 8))
    image = _image()
    color = torch.tensor([[0.1, 0.8, 0.45], [0.9, 0.0, 1.0]], dtype=torch.float64)
    logits = engine.logits(engine.prepare(image), torch.tensor([0, 0]), torch.tensor([2, 7]),
                           torch.tensor([5, 0]), color, color)
    expected = torch.cat([scores_of(model, image, 2, 5, color[:1]),
                          scores_of(model, image, 7, 0, color[1:])])
    torch.testing.assert_close(logits[:, 0], expected, atol=1e-9, rtol=1e-9)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), y=st.integers(0, 7), x=st.integers(0, 7),
       width=st.sampled_from([0.0, 0.02, 0.2, 1.0]),
       corner=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3))
def test_bounds_and_intervals_hold_every_sampled_color(seed, y, x, width, corner):
    model, image = _model(seed % 3), _image(seed)
    lo = torch.tensor([[min(c, 1 - width) for c in corner]], dtype=torch.float64)
    hi = lo + width
    grid = torch.cartesian_prod(*[torch.tensor([0.0, 1.0], dtype=torch.float64)] * 3)
    colors = torch.cat([lo + torch.rand(300, 3, generator=torch.Generator().manual_seed(seed),
                                        dtype=torch.float64) * width, lo + grid * width])
    values = scores_of(model, image, y, x, colors)
    label = int(values[0].argmax())
    margins = values[:, label:label + 1] - values
    others = [j for j in range(values.shape[1]) if j != label]
    slack = 1e-9 * (1 + float(values.abs().max()))
    engine, screen = engines_of(_model, seed % 3)
    bounds = engine.margins(engine.prepare(image), torch.tensor([0]), torch.tensor([y]),
                            torch.tensor([x]), lo, hi, torch.tensor([label]))
    assert (bounds.lower[0, others] <= margins[:, others].min(0).values + slack).all()
    assert (bounds.upper[0, others] >= margins[:, others].max(0).values - slack).all()
    lower = screen.margins(image, torch.tensor([y * 8 + x]), lo, hi, label)
    assert (lower[0, others] <= margins[:, others].min(0).values + slack).all()


def test_small_boxes_are_proved():
    """Not vacuous: a box of side 0.01 about the pixel's own color is proved (the
    margins are far from 0 there)."""
    model, image = _model(), _image()
    engine = BoundEngine(model, shape=(3, 8, 8))
    label = int(model(image).argmax())
    lo = image[0, :, 4, 4].double()[None] - 0.005
    bounds = engine.margins(engine.prepare(image), torch.tensor([0]), torch.tensor([4]),
                            torch.tensor([4]), lo, lo + 0.01, torch.tensor([label]))
    assert float(bounds.worst[0]) > 0


def test_the_verifier_decides_such_a_network():
    model = _model()
    verifier = Verifier(model, budget=60)
    image = _image()
    assert not [op.refused for op in verifier.operations(image) if op.refused]
    label = int(model(image).argmax())
    result = verifier.verify(image, torch.tensor([label]))[0]
    assert result.decided_by in ("verified", "fooled"), result
    if result.fooled:
        x, y, color = result.witness
        assert int(scores_of(model, image, y, x, torch.tensor([color])).argmax()) != label
    else:
        grid = torch.cartesian_prod(*[torch.linspace(0, 1, 3)] * 3)
        assert all(int(c) == label for y in range(8) for x in range(8)
                   for c in scores_of(model, image, y, x, grid).argmax(1))


def test_the_float32_estimate_covers_the_models_own_error():
    """The first-order estimate, LocalResponseNorm's roundings counted (its squares, sum,
    power and division), lies above the float32 model's distance from float64 at the
    images."""
    model = _model(2, size=5, alpha=1.0)
    images = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    labels = model(images).argmax(1)
    estimate = rounding_error(model, images, labels)
    with torch.no_grad():
        single, double = model(images).double(), copy.deepcopy(model).double()(
            images.double())
    margins = lambda s: s.gather(1, labels[:, None]) - s  # noqa: E731
    actual = (margins(single) - margins(double)).abs().amax(1)
    assert (actual <= estimate).all(), (actual, estimate)


@pytest.mark.parametrize("layer, message", [
    (lambda h: F.local_response_norm(h.flatten(2), 3), r"out for values \[N, C, H, W\]"),
    (lambda h: F.local_response_norm(h, 3, alpha=-0.1), "alpha, k >= 0"),
], ids=["three-axes", "negative-alpha"])
def test_what_is_not_written_out_is_refused_in_one_line(layer, message):
    class Other(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return layer(self.conv(x)).flatten(1)[:, :3]

    with pytest.raises(BoundUnsupportedError, match=message):
        BoundEngine(Other().eval(), shape=(3, 8, 8)).plan(_image())
