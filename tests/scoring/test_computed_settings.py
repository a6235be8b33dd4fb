"""Settings a model computes from a value's size (``F.avg_pool2d(out, out.size()[3])``,
the end of akamaster's CIFAR ResNet; ``F.interpolate(h, size=x.shape[-2:])``): the
verifier's copies read them as the numbers they are on the images' shape, bound the
function the model computes on such images soundly, refuse images of another shape,
and :class:`~pixelprior.Verifier` makes its copies anew for each shape."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from pixelprior import Verifier
from pixelprior.scoring import perturb_rows
from pixelprior.scoring.cone.backward import BackwardErrorBound, BackwardUnsupportedError
from pixelprior.scoring.cone.bounds import BoundEngine, BoundUnsupportedError
from pixelprior.scoring.cone.graph import TracedGraph
from pixelprior.scoring.cone.screen import IntervalScreen, IntervalUnsupportedError


class SizedByMaps(nn.Module):
    """Pooling and interpolation whose sizes the model reads from its values."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.down = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.linear = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv(x))
        small = F.relu(self.down(h))
        h = h + F.interpolate(small, size=h.shape[-2:], mode="bilinear",
                              align_corners=False)
        h = F.max_pool2d(h, h.size(-1) // 2)  # a window of half the map
        out = F.avg_pool2d(h, h.size()[3])  # akamaster's CIFAR ResNet's last pooling
        return self.linear(out.view(out.size(0), -1))


class PooledByBatch(nn.Module):
    """A pooling window read from the batch size: another function for every batch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(self.conv(x), x.shape[0] + 3)
        return h.flatten(1)


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return SizedByMaps().eval()


def _image(size: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def scores_of(model: nn.Module, image: torch.Tensor, y: int, x: int,
              colors: torch.Tensor) -> torch.Tensor:
    """The model's float64 scores of ``image`` with pixel (y, x) set to each color (a
    float64 copy of it: the model is left as it is)."""
    genes = torch.cat([torch.tensor([[float(x), float(y)]]).expand(len(colors), 2),
                       colors.double()], 1)[:, None]
    owner = torch.zeros(len(colors), dtype=torch.long)
    with torch.no_grad():
        return copy.deepcopy(model).double()(perturb_rows(image.double(), owner, genes))


def test_a_graph_given_the_shape_holds_the_numbers_and_computes_the_same():
    model = _model()
    unsettled = TracedGraph(model, fold=False)
    assert unsettled.unsettled and unsettled.shape is None
    settled = TracedGraph(model, fold=False, shape=(3, 8, 8))
    assert settled.shape == (3, 8, 8) and not settled.unsettled
    pools = [n for n in settled.nodes if n.target in (F.avg_pool2d, F.max_pool2d)
             or getattr(n.target, "__name__", "") in ("avg_pool2d", "max_pool2d",
                                                       "boolean_dispatch")]
    assert pools and all(not n.all_input_nodes[1:] for n in pools)  # numbers, no nodes
    image = _image(8)
    torch.testing.assert_close(settled.run(image), model(image))


def test_an_engine_without_the_shape_says_how_to_give_it():
    with pytest.raises(BoundUnsupportedError, match=r"shape=\(C, H, W\)"):
        BoundEngine(_model()).plan(_image(8))


@pytest.mark.parametrize("size", [8, 6])
def test_a_box_of_width_zero_gives_the_exactscores_of(size):
    model = _model()
    engine = BoundEngine(model, shape=(3, size, size))
    image = _image(size)
    cache = engine.prepare(image)
    owner, y, x = torch.tensor([0, 0]), torch.tensor([0, size - 1]), torch.tensor([2, 1])
    color = torch.rand(2, 3, generator=torch.Generator().manual_seed(3)).double()
    logits = engine.logits(cache, owner, y, x, color, color)
    expected = torch.cat([scores_of(model, image, int(y[i]), int(x[i]), color[i:i + 1])
                          for i in range(2)])
    torch.testing.assert_close(logits[:, 0], expected, atol=1e-9, rtol=1e-9)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), y=st.integers(0, 7), x=st.integers(0, 7),
       width=st.floats(0.0, 1.0), corner=st.lists(st.floats(0.0, 1.0), min_size=3,
                                                   max_size=3))
def test_bounds_and_intervals_hold_every_sampled_color(seed, y, x, width, corner):
    model, image = _model(seed % 3), _image(8, seed)
    lo = torch.tensor([[min(c, 1 - width) for c in corner]], dtype=torch.float64)
    hi = lo + width
    colors = torch.cat([lo + torch.rand(300, 3, generator=torch.Generator().manual_seed(seed),
                                        dtype=torch.float64) * width,
                        torch.stack([torch.where(torch.tensor([i >> d & 1 for d in range(3)],
                                                              dtype=torch.bool), hi[0], lo[0])
                                     for i in range(8)])])
    values = scores_of(model, image, y, x, colors)
    label = int(values[0].argmax())
    margins = values[:, label:label + 1] - values
    slack = 1e-9 * (1 + float(values.abs().max()))
    engine, screen = engines_of(_model, seed % 3)
    bounds = engine.margins(engine.prepare(image), torch.tensor([0]), torch.tensor([y]),
                            torch.tensor([x]), lo, hi, torch.tensor([label]))
    others = [j for j in range(values.shape[1]) if j != label]
    assert (bounds.lower[0, others] <= margins[:, others].min(0).values + slack).all()
    lower = screen.margins(image, torch.tensor([y * 8 + x]), lo, hi, label)
    assert (lower[0, others] <= margins[:, others].min(0).values + slack).all()


_ENGINES: dict[tuple, tuple[BoundEngine, IntervalScreen]] = {}


def engines_of(make, seed: int) -> tuple[BoundEngine, IntervalScreen]:
    """The bound engine and the interval screen of ``make(seed)`` on 8×8 images, made
    once per model (the sampled tests draw a few)."""
    if (make, seed) not in _ENGINES:
        model = make(seed)
        _ENGINES[make, seed] = (BoundEngine(model, shape=(3, 8, 8)),
                                IntervalScreen(model, shape=(3, 8, 8)))
    return _ENGINES[make, seed]


def test_images_of_another_shape_are_refused_in_one_line():
    model = _model()
    with pytest.raises(BoundUnsupportedError, match=r"shape \[3, 8, 8\], not \[3, 6, 6\]"):
        BoundEngine(model, shape=(3, 8, 8)).prepare(_image(6))
    screen = IntervalScreen(model, shape=(3, 8, 8))
    with pytest.raises(IntervalUnsupportedError, match="not \\[3, 6, 6\\]"):
        screen.margins(_image(6), torch.tensor([0]), torch.zeros(1, 3), torch.ones(1, 3), 0)


def test_the_verifier_makes_its_copies_for_each_shape():
    model = _model()
    verifier = Verifier(model, budget=30)
    for size in (8, 6, 8):
        image = _image(size)
        assert not any(op.refused for op in verifier.operations(image))
        assert verifier.bounds.shape == (3, size, size)
        assert verifier.screen is not None and verifier.screen.shape == (3, size, size)
        label = int(model(image).argmax())
        result = verifier.verify(image, torch.tensor([label]))[0]
        assert result.decided_by in ("verified", "fooled")
        if result.fooled:  # a witness the model itself confirms
            x, y, color = result.witness
            fooled = scores_of(model, image, y, x, torch.tensor([color]))
            assert int(fooled.argmax()) != label
        else:  # no color of a grid at any position changes the label
            grid = torch.cartesian_prod(*[torch.linspace(0, 1, 3)] * 3)
            assert all(int(c) == label for y in range(size) for x in range(size)
                       for c in scores_of(model, image, y, x, grid).argmax(1))


def test_a_model_without_computed_settings_keeps_one_copy_for_every_shape():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(2, 3)).eval()
    verifier = Verifier(model, budget=5)
    bounds = verifier.bounds
    verifier.operations(_image(8))
    verifier.operations(_image(6))
    assert verifier.bounds is bounds and bounds.shape is None


def test_a_setting_read_from_the_batch_size_stays_refused():
    model = PooledByBatch().eval()
    graph = TracedGraph(model, fold=False, shape=(3, 8, 8))
    assert graph.unsettled and graph.shape is None
    with pytest.raises(BoundUnsupportedError):
        engine = BoundEngine(model, shape=(3, 8, 8))
        engine.check_agrees(_image(8))
        engine.plan(_image(8))


class _Computed(nn.Module):
    """A convolution, then ``form`` of its map (settings read from sizes), then a head."""

    def __init__(self, form) -> None:
        super().__init__()
        self.form = form
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.LazyLinear(3)
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.form(self, torch.tanh(self.conv(x))).flatten(1))


@pytest.mark.parametrize("form", [
    lambda net, h: torch.norm(h, dim=h.dim() - 1, keepdim=True) * h,
    lambda net, h: F.interpolate(h, size=h.shape[-1] * 2, mode="bilinear"),
    lambda net, h: F.interpolate(h, scale_factor=h.shape[-1] / 4),
    lambda net, h: F.pad(h, (h.shape[3] // 2, 0)),
    lambda net, h: F.layer_norm(h, h.shape[1:]),
    lambda net, h: F.group_norm(h, h.shape[1] // 2, net.scale),
    lambda net, h: F.adaptive_avg_pool2d(h, h.shape[-1] // 2),
    lambda net, h: F.max_pool2d(h, (h.shape[2] // 2, h.size(3) // 4), stride=h.shape[-1] // 4),
    lambda net, h: F.avg_pool2d(h, (h.size(2), h.size(3))),
    lambda net, h: F.max_pool2d(h, (h.size(2) // 4, h.size(3) // 4)),
    lambda net, h: F.adaptive_max_pool2d(h, (h.shape[2] // 3, h.shape[3] // 2)),
    lambda net, h: h[:, :, :h.shape[-2] // 2],
    lambda net, h: torch.narrow(h, 3, 1, h.shape[3] // 2),
    lambda net, h: torch.softmax(h, h.dim() - 1),
    lambda net, h: h.sum(h.dim() - 2, keepdim=True) * h,
    lambda net, h: h.clamp(max=h.shape[-1] / 16),
    lambda net, h: h ** (h.shape[1] // 2 + 1),
    lambda net, h: h.sum((-2, -1)) / (h.shape[-1] * h.shape[-2]),
    lambda net, h: h * torch.arange(h.shape[-1]) / 8,
], ids=["norm-dim", "interpolate-size", "interpolate-scale", "pad", "layer-norm",
        "group-norm", "adaptive-pool", "max-pool", "pool-size-tuple", "max-pool-tuple",
        "adaptive-max-pool", "crop", "narrow", "softmax-axis", "sum-axis", "clamp-limit",
        "power", "mean-by-sizes", "arange"])
def test_settings_read_from_sizes_are_bounded_in_every_form(form):
    """Each such setting is read as its number on the images' shape: no refusal, the
    interval screen runs, and a box of width zero gives the model's scores (a review:
    a pooling size of ``(h.size(2), h.size(3))`` raised TypeError; an axis, a crop, a
    limit or an exponent read from sizes were refused with other reasons; the screen
    took ``h.sum(...) / (H * W)`` for a division by a value that varies)."""
    torch.manual_seed(0)
    model = _Computed(form)
    model(_image(8))  # (the lazy head's size)
    model.eval()
    verifier = Verifier(model, budget=5, screen=True)
    assert [op.refused for op in verifier.operations(_image(8)) if op.refused] == []
    assert verifier.screen is not None
    engine = verifier.bounds
    image = _image(8, 4)
    color = torch.tensor([[0.2, 0.9, 0.4]], dtype=torch.float64)
    logits = engine.logits(engine.prepare(image), torch.tensor([0]), torch.tensor([3]),
                           torch.tensor([5]), color, color)
    torch.testing.assert_close(logits[:, 0], scores_of(model, image, 3, 5, color),
                               atol=1e-9, rtol=1e-9)


def test_the_backward_float32_bound_refuses_images_of_another_shape():
    """A review: the screen refused them, the backward bound made with it returned the
    errors of the copy settled for 8×8 at a 6×6 image."""
    screen = IntervalScreen(_model(), shape=(3, 8, 8))
    signed = BackwardErrorBound(screen)
    with pytest.raises(BackwardUnsupportedError, match=r"not \[3, 6, 6\]"):
        signed.errors(_image(6), torch.tensor([0]), torch.zeros(1, 3), torch.ones(1, 3), 0,
                      2.0**-24)


def test_images_the_model_cannot_run_are_named_by_its_own_error():
    """A review: ``probe`` raised the model's raw error, and ``operations`` blamed an
    operation the verifier writes out; both now say what ``verify`` says."""
    verifier = Verifier(_model(), budget=5)
    tiny = _image(1)
    for call in (lambda: verifier.operations(tiny), lambda: verifier.probe(tiny, 0),
                 lambda: verifier.verify(tiny, torch.tensor([0]))):
        with pytest.raises(ValueError, match=r"^the model fails on images of shape"):
            call()


def test_a_constant_made_from_sizes_is_not_taken_as_the_models_own():
    """``torch.arange(n).float() * 0.1`` is computed in float64 in the verifier's copy
    (its ``.float()`` runs as the copy's dtype) and in float32 in the model: the float32
    proof counts its error as unbounded, and an integer one made so no longer raises (a
    review: a RuntimeError filling an integer tensor with inf)."""
    def form(net, h):
        return h * (torch.arange(h.shape[-1]).float() * 0.1) + h * torch.arange(h.shape[-1])

    torch.manual_seed(0)
    model = _Computed(form)
    model(_image(8))
    model.eval()
    screen = IntervalScreen(model, shape=(3, 8, 8))
    errors = screen.clean_errors(_image(8).double(), 2.0**-24)
    assert math.isinf(float(errors["mul_1"].max())), errors  # (h times the float one)
