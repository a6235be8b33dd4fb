"""The bounds are of the model itself, not of a traced graph that computes something else.

An audit found models whose eager forward differs from what ``torch.fx`` records, and
the verifier called them verified where a color fooled them: an in-place activation
writing into a value read again, ``x += 1`` on such a value, forward hooks, a submodule
left in training mode under a model in eval mode, ``nn.ReLU6`` with its limits changed.
Each is now refused in one line (or bounded as the model computes it), and the engines'
clean pass is checked against the model's own scores before any bound."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_bounds import box_margins, randomised, scores
from torch import nn

from pixelprior.scoring import ModelOutputError
from pixelprior.scoring.cone.bounds import BoundEngine, BoundUnsupportedError
from pixelprior.scoring.cone.screen import IntervalScreen, IntervalUnsupportedError
from pixelprior.search import Verifier

IMAGE = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(3))


class ConvHead(nn.Module):
    """A 3×3 convolution of 4 channels and a linear head of 3 classes for 6×6 images
    (the test networks' layers); each subclass says what lies between them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 36, 3)


class Skip(ConvHead):
    """conv, an activation, and the conv's output added again: ``act(h) + h``."""

    def __init__(self, activation: nn.Module | None = None, functional=None) -> None:
        super().__init__()
        self.act = activation
        self.functional = functional

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        a = self.act(h) if self.act is not None else self.functional(h)
        return self.fc((a + h).flatten(1))


class Chain(nn.Module):
    """In-place activations on values read once (SqueezeNet's form): out of place in the
    engines, the same function."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(inplace=True)
        self.fc = nn.Linear(4 * 36, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.bn(self.conv(x)))
        return self.fc(F.relu(self.drop(h).flatten(1), inplace=True))


class AddInPlace(ConvHead):
    """``a += 1`` where ``a`` is also kept as ``b``: torch.fx records ``a + 1``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.conv(x))
        b = a
        a += 1
        return self.fc((a + b).flatten(1))


def assert_exact(bound: torch.Tensor, exact: torch.Tensor, label: int) -> None:
    """A box of width 0 bounds each margin at its exact value, less the bounds' own
    float error allowance (far below 1e-6 here)."""
    others = [k for k in range(len(exact)) if k != label]
    margins = (exact[label] - exact)[others]
    assert bool((bound[others] <= margins).all()), (bound, margins)
    assert bool((bound[others] >= margins - 1e-6).all()), (bound, margins)


def label_of(model: nn.Module) -> int:
    with torch.no_grad():
        return int(model(IMAGE).argmax())


@pytest.mark.parametrize("make", [
    lambda: Skip(nn.ReLU(inplace=True)), lambda: Skip(nn.SiLU(inplace=True)),
    lambda: Skip(nn.Hardtanh(inplace=True)),
    lambda: Skip(functional=lambda h: F.relu(h, inplace=True)),
    lambda: Skip(functional=lambda h: F.leaky_relu(h, 0.1, True)),
], ids=["ReLU", "SiLU", "Hardtanh", "F.relu", "F.leaky_relu"])
def test_an_inplace_activation_on_a_value_read_again_is_refused(make):
    model = randomised(make(), 0)
    with pytest.raises(BoundUnsupportedError, match="in-place operation .* changes a value "
                                                    "used again .*conv is read again"):
        BoundEngine(model)
    with pytest.raises(IntervalUnsupportedError, match="changes a value used again"):
        IntervalScreen(model)


def test_inplace_activations_on_values_read_once_are_bounded_as_the_model_computes():
    model = randomised(Chain(), 1)
    engine = BoundEngine(model)
    color = [0.2, 0.6, 0.9]
    label = label_of(model)
    exact = scores(randomised(Chain(), 1), IMAGE, 2, 3, torch.tensor([color]))[0]
    bound = box_margins(engine, IMAGE, 2, 3, color, color, label).lower[0]
    assert_exact(bound, exact, label)


def test_an_update_in_place_that_tracing_loses_is_refused_before_any_bound():
    """``a += 1`` with ``a`` kept as ``b``: torch.fx alone records ``a + 1``; the
    engines' tracer records it as itself."""
    model = randomised(AddInPlace(), 2)
    with pytest.raises(BoundUnsupportedError, match="in-place operation iadd"):
        BoundEngine(model)
    with pytest.raises(BoundUnsupportedError, match="in-place operation iadd"):
        Verifier(model, budget=None, max_boxes=50).verify(IMAGE, torch.tensor([
            label_of(model)]))


@pytest.mark.parametrize("hook", ["forward", "pre", "global"])
def test_a_forward_hook_is_refused(hook):
    model = randomised(Skip(nn.ReLU()), 3)
    if hook == "forward":
        handle = model.act.register_forward_hook(lambda m, i, o: 2 * o)
    elif hook == "pre":
        handle = model.fc.register_forward_pre_hook(lambda m, i: (i[0] * 2,))
    else:
        handle = nn.modules.module.register_module_forward_hook(lambda m, i, o: o)
    try:
        with pytest.raises(BoundUnsupportedError, match="hook"):
            BoundEngine(model)
    finally:
        handle.remove()
    BoundEngine(model)  # without it, accepted


def test_weight_norm_is_bounded_with_the_weight_its_hook_computes():
    model = randomised(Skip(nn.ReLU()), 4)
    model.fc = nn.utils.weight_norm(model.fc)
    with torch.no_grad():  # g changed after the last forward: the stored weight is stale
        model.fc.weight_g.mul_(1.5)
    label = label_of(model)  # (a forward refreshes the model's own; the copy is refreshed too)
    with torch.no_grad():
        model.fc.weight_g.mul_(1.5)
    color = [0.3, 0.3, 0.3]
    bound = box_margins(BoundEngine(model), IMAGE, 1, 4, color, color, label).lower[0]
    exact = scores(model, IMAGE, 1, 4, torch.tensor([color]))[0]
    assert_exact(bound, exact, label)


@pytest.mark.parametrize("child", ["bn", "drop"])
def test_a_submodule_in_training_mode_is_refused(child):
    model = randomised(Chain(), 5)
    getattr(model, child).train()
    with pytest.raises(BoundUnsupportedError, match=f"\\({child}\\) is in training mode"):
        BoundEngine(model)
    with pytest.raises(IntervalUnsupportedError, match="is in training mode"):
        IntervalScreen(model)


def test_relu6_with_its_limits_changed_is_bounded_with_them():
    act = nn.ReLU6()
    act.min_val, act.max_val = -0.2, 0.3
    model = randomised(Skip(act), 6)
    label = label_of(model)
    color = [0.9, 0.1, 0.5]
    bound = box_margins(BoundEngine(model), IMAGE, 3, 3, color, color, label).lower[0]
    exact = scores(model, IMAGE, 3, 3, torch.tensor([color]))[0]
    assert_exact(bound, exact, label)


def test_a_model_returning_a_tuple_is_refused_in_one_line():
    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = randomised(Skip(nn.ReLU()), 7)

        def forward(self, x):
            out = self.inner(x)
            return out, out

    with pytest.raises(BoundUnsupportedError, match="returns a tuple, not class scores"):
        BoundEngine(Pair().eval()).prepare(IMAGE)
    with pytest.raises(ModelOutputError, match="returns a tuple, not class scores"):
        Verifier(Pair().eval(), budget=None).verify(IMAGE, torch.tensor([0]))


def test_a_view_the_screens_layout_does_not_allow_is_run_as_a_reshape():
    """``h.view(h.size(0), -1)`` after a ReLU: the model's tensor allows the view, the
    interval screen's channels-last bounds did not (a raw RuntimeError)."""
    class Viewed(ConvHead):
        def __init__(self) -> None:
            super().__init__()
            self.act = nn.ReLU()

        def forward(self, x):
            h = self.act(self.conv(x))
            return self.fc(h.view(h.size(0), -1))

    model = randomised(Viewed(), 8)
    label = label_of(model)
    lower = IntervalScreen(model).margins(IMAGE, torch.tensor([7]),
                                          torch.zeros(1, 3, dtype=torch.float64),
                                          torch.ones(1, 3, dtype=torch.float64), label)
    corners = torch.tensor([[r, g, b] for r in (0.0, 1.0) for g in (0.0, 1.0)
                            for b in (0.0, 1.0)])
    exact = scores(model, IMAGE, 1, 1, corners)
    least = (exact[:, label:label + 1] - exact).amin(0)
    others = [k for k in range(3) if k != label]
    assert bool((lower[0, others] <= least[others]).all())


@pytest.mark.parametrize("flatten", [
    lambda h: h.view(h.shape[0], -1), lambda h: h.reshape(h.shape[0], -1),
    lambda h: h.view(h.size(0), h.shape[1] * h.shape[2] * h.shape[3]),
], ids=["view-shape", "reshape-shape", "sizes-multiplied"])
def test_flattening_by_the_values_own_sizes_is_bounded(flatten):
    """``x.shape[0]`` and arithmetic of sizes run as they are (they were refused: "no
    bound rule for getitem"); the bounds hold and a box of width 0 is exact."""
    class Net(ConvHead):

        def forward(self, x):
            return self.fc(flatten(torch.relu(self.conv(x))))

    model = randomised(Net(), 9)
    assert_bounded_at_pixel_2_2(model, lambda: randomised(Net(), 9))
    IntervalScreen(model)  # the screen takes it too


def assert_bounded_at_pixel_2_2(model: nn.Module, fresh) -> None:
    """A box of width 0 at pixel (2, 2) is exact and the whole cube's bound lies below
    the model's margins at 27 colors (``fresh()``: an unchanged copy scoring them)."""
    label = label_of(model)
    engine = BoundEngine(model)
    color = [0.4, 0.7, 0.1]
    assert_exact(box_margins(engine, IMAGE, 2, 2, color, color, label).lower[0],
                 scores(fresh(), IMAGE, 2, 2, torch.tensor([color]))[0], label)
    lower = box_margins(engine, IMAGE, 2, 2, [0.0] * 3, [1.0] * 3, label).lower[0]
    grid = torch.tensor([[r, g, b] for r in (0.0, 0.5, 1.0) for g in (0.0, 0.5, 1.0)
                         for b in (0.0, 0.5, 1.0)])
    exact = scores(fresh(), IMAGE, 2, 2, grid)
    least = (exact[:, label:label + 1] - exact).amin(0)
    others = [k for k in range(3) if k != label]
    assert bool((lower[others] <= least[others]).all())


class Accumulate(nn.Module):
    """``h += d``: read again (``kept``) or not (a torchvision BasicBlock's form)."""

    def __init__(self, kept: bool) -> None:
        super().__init__()
        self.kept = kept
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.spike = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 36, 3)

    def forward(self, x):
        h = self.conv(x)
        g = h
        h += torch.relu(self.spike(x) - 3.0)  # 0 at most colors, the clean image's too
        return self.fc(((h + g) if self.kept else torch.relu(h)).flatten(1))


def test_an_update_in_place_of_a_value_read_again_is_refused_even_where_it_adds_0():
    """A second review: ``h += d`` with d = 0 at the clean image passed the scores'
    check; torch.fx records it as h + d, now it is recorded as itself and checked."""
    with pytest.raises(BoundUnsupportedError, match="in-place operation iadd .* changes a "
                                                    "value used again"):
        BoundEngine(randomised(Accumulate(kept=True), 10))
    model = randomised(Accumulate(kept=False), 10)  # read once: the same as h = h + d
    label = label_of(model)
    color = [0.5, 0.5, 0.5]
    assert_exact(box_margins(BoundEngine(model), IMAGE, 1, 1, color, color, label).lower[0],
                 scores(randomised(Accumulate(kept=False), 10), IMAGE, 1, 1,
                        torch.tensor([color]))[0], label)


def test_out_keywords_and_forwards_replaced_on_an_instance_are_refused():
    class Out(ConvHead):

        def forward(self, x):
            h = self.conv(x)
            torch.add(h, 1.0, out=h)
            return self.fc(h.flatten(1))

    with pytest.raises(BoundUnsupportedError, match="writes into out="):
        BoundEngine(randomised(Out(), 11))
    model = randomised(Skip(nn.ReLU()), 12)
    model.act.forward = lambda t: torch.relu(t) + 1.0
    with pytest.raises(BoundUnsupportedError, match="forward replaced on the instance"):
        BoundEngine(model)


def test_a_model_changed_after_the_engine_was_made_is_refused():
    model = randomised(Skip(nn.ReLU()), 13)
    engine = BoundEngine(model)
    with torch.no_grad():
        model.fc.weight.mul_(-1)  # new weights: the engine holds the old copy
    with pytest.raises(BoundUnsupportedError, match="changed since the verifier was made"):
        engine.prepare(IMAGE)


def test_spectral_norm_by_its_hook_is_bounded_with_the_weight_it_computes():
    model = Skip(nn.ReLU())
    model.fc = nn.utils.spectral_norm(model.fc)
    model = randomised(model, 14)
    label = label_of(model)
    color = [0.75, 0.25, 0.5]
    bound = box_margins(BoundEngine(model), IMAGE, 0, 5, color, color, label).lower[0]
    assert_exact(bound, scores(model, IMAGE, 0, 5, torch.tensor([color]))[0], label)


def test_the_interval_screen_alone_refuses_a_model_changed_after_it_was_made():
    """The screen checks the model's scores against its traced copy too (once per image),
    not only where the verifier's bound engine checked them first."""
    model = randomised(Skip(nn.ReLU()), 13)
    screen = IntervalScreen(model)
    cube = torch.zeros(1, 3, dtype=torch.float64)
    label = label_of(model)
    before = screen.margins(IMAGE, torch.tensor([7]), cube, cube + 1, label)
    assert before.shape == (1, 3)
    with torch.no_grad():
        model.fc.weight.mul_(-1)  # new weights: the screen holds the old copy
    with pytest.raises(IntervalUnsupportedError, match="changed since the verifier was made"):
        screen.margins(IMAGE.flip(-1), torch.tensor([7]), cube, cube + 1, label)


class ScaledOutsideForward(ConvHead):
    """Scores scaled by a factor applied in ``__call__``, which ``torch.fx`` never sees."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))

    def __call__(self, x):  # noqa: D401 - what the user's model computes
        return -super().__call__(x)


def test_the_interval_screen_alone_refuses_code_outside_forward():
    model = randomised(ScaledOutsideForward(), 4)
    cube = torch.zeros(1, 3, dtype=torch.float64)
    with pytest.raises(IntervalUnsupportedError, match="differ from its traced graph"):
        IntervalScreen(model).margins(IMAGE, torch.tensor([7]), cube, cube + 1, 0)


class PlainTensorHead(nn.Module):
    """A linear head held as a plain tensor attribute (neither a parameter nor a buffer):
    ``model.to(torch.float64)`` leaves it float32, and the float64 copy multiplied a
    float64 value by it (a raw dtype error before)."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(6)
        self.weight = torch.randn(3, 3 * 36, generator=generator)
        self.bias = torch.randn(3, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(torch.relu(x).flatten(1), self.weight, self.bias)


def test_plain_tensor_attributes_are_bounded_in_float64():
    model = PlainTensorHead().eval()
    label = label_of(model)
    color = [0.3, 0.9, 0.1]
    with torch.no_grad():
        image = IMAGE.double()
        image[0, :, 2, 3] = torch.tensor(color, dtype=torch.float64)
        exact = (torch.relu(image).flatten(1) @ model.weight.double().T
                 + model.bias.double())[0]
    bound = box_margins(BoundEngine(model), IMAGE, 2, 3, color, color, label).lower[0]
    assert_exact(bound, exact, label)
    cube = torch.zeros(1, 3, dtype=torch.float64)
    assert IntervalScreen(model).margins(IMAGE, torch.tensor([15]), cube, cube + 1,
                                         label).isfinite().sum() == 2


class Cast(nn.Module):
    """A linear head behind a cast of the input (to bfloat16 and back, or to float32)."""

    def __init__(self, cast) -> None:
        super().__init__()
        self.cast = cast
        self.fc = nn.Linear(3 * 36, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.cast(x).flatten(1))


@pytest.mark.parametrize("cast", [lambda x: x.to(torch.bfloat16).to(torch.float32),
                                  lambda x: x.half().float(),
                                  lambda x: x.to(dtype=torch.float16).float()])
def test_a_cast_to_fewer_bits_than_float32_is_refused(cast):
    """Its rounding (8 or 11 bits) is no part of the bounds: refused in one line, naming
    the cast (it was a dtype clash deep in the plan: an internal error)."""
    torch.manual_seed(0)
    model = Cast(cast).eval()
    image = torch.rand(1, 3, 6, 6)
    with pytest.raises(BoundUnsupportedError, match="casts to torch.(bfloat16|float16|half)"):
        Verifier(model, budget=5).verify(image, model(image).argmax(1))


class _HalfWay(nn.Module):
    """Two convolutions whose outputs go through float16 and bfloat16 and back."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 64, 3, padding=1), nn.Conv2d(64, 64, 3, padding=1)
        self.fc = nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.c1(x)).half().float()
        h = torch.relu(self.c2(h).to(torch.bfloat16).to(torch.float32))
        return self.fc(h.mean((2, 3)))


def test_the_cone_engine_runs_casts_to_fewer_bits_as_the_model_does():
    """The operation table's narrowing casts run on windows (the verifier refuses them,
    above); before they were in the table the cone engine refused ``.half()``."""
    from pixelprior.scoring import make_scorer

    torch.manual_seed(0)
    model, images = _HalfWay().eval(), torch.rand(2, 3, 64, 64)
    scorer = make_scorer(model, images, "incremental", 1)
    assert scorer.name == "incremental" and scorer.agreement < 1e-5


class _HalfWeight(nn.Module):
    """A head whose weight is cast to float16 in forward (-1000.8 rounds to -1001), after
    a tent of the red channel that is 0 at the corners and 0.02 at red 0.3: only colors
    near red 0.3 at a pixel change the label, and only with the rounded weight."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([[-1000.8], [0.0]]))
        self.b = nn.Parameter(torch.tensor([0.31281, 0.0]))
        self.pick = nn.Conv2d(3, 1, 1, bias=False)
        with torch.no_grad():
            self.pick.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = self.pick(x)
        tent = F.relu(red - 0.28) - 2 * F.relu(red - 0.3) + F.relu(red - 0.32)
        return F.linear(tent.mean((2, 3)), self.w.to(torch.float16).float(), self.b)


def test_a_weight_cast_to_fewer_bits_is_bounded_with_its_rounding():
    """Its node computes from the weights alone (a constant), which no bound rule sees:
    with the graph-level refusal gone, the float64 copy ran it as a cast to float64, a
    model with -1000.8 where the model computes with -1001 (a review's case; only the
    interval screen's refusal of the cast, leaving the clean errors unbounded, kept the
    image from being verified). It now rounds as the model does."""
    import copy

    from pixelprior.scoring.cone.graph import TracedGraph

    model, image = _HalfWeight().eval(), torch.zeros(1, 3, 8, 8)
    fooled = image.clone()
    fooled[0, 0, 3, 3] = 0.3
    assert model(image).argmax() == 0 and model(fooled).argmax() == 1
    wide = TracedGraph(copy.deepcopy(model).double(), fold=False, float_as=torch.float64)
    with torch.no_grad():  # the bounds' copy: -1001, as the model
        scores = wide.run(fooled.double())[0]
    assert scores.dtype == torch.float64 and float(scores[0] - scores[1]) < 0
    (result,) = Verifier(model, budget=None, max_boxes=200).verify(image, torch.tensor([0]))
    assert not result.verified


class _BfloatWeight(nn.Module):
    """A review's model: a tent of the red channel (0.02 at red 0.3) times a weight cast to
    bfloat16 in forward (-65,920 rounds to -66,048): red 0.3 at any pixel fools it, only
    with the rounded weight."""

    def __init__(self) -> None:
        super().__init__()
        self.pick, self.mix = nn.Conv2d(3, 2, 1), nn.Conv2d(2, 1, 1, bias=False)
        with torch.no_grad():
            self.pick.weight.copy_(torch.tensor([[1.0, 0, 0], [1.0, 0, 0]]).view(2, 3, 1, 1))
            self.pick.bias.copy_(torch.tensor([-0.28, -0.30]))
            self.mix.weight.copy_(torch.tensor([1.0, -1.0]).view(1, 2, 1, 1))
        self.w = nn.Parameter(torch.tensor([[-65920.0], [0.0]]))
        self.b = nn.Parameter(torch.tensor([5.155, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tent = self.mix(torch.clamp(self.pick(x), 0, 0.02)).mean((2, 3))
        return F.linear(tent, self.w.to(torch.bfloat16).float(), self.b)


def test_a_model_fooled_only_through_its_rounded_weight_is_not_verified():
    """At 08d81c2 it was verified over every position and color (a review's case)."""
    model, image = _BfloatWeight().eval(), torch.zeros(1, 3, 16, 16)
    fooled = image.clone()
    fooled[0, 0, 5, 5] = 0.3
    assert model(image).argmax() == 0 and model(fooled).argmax() == 1
    (result,) = Verifier(model, budget=None, max_boxes=300).verify(image, torch.tensor([0]))
    assert not result.verified


@pytest.mark.parametrize("cast", [lambda x: x.to(torch.float32), lambda x: x.type(torch.float32),
                                  lambda x: x.to(dtype=torch.float32)])
def test_a_cast_to_float32_is_bounded_in_float64(cast):
    """The model's own float32 casts are no-ops on float32 inputs: bounded as the model
    without them (the float64 copy stays float64)."""
    torch.manual_seed(0)
    model = Cast(cast).eval()
    label = int(model(IMAGE[:, :, :6, :6]).argmax())
    color = [0.3, 0.9, 0.1]
    with torch.no_grad():
        image = IMAGE[:, :, :6, :6].double().clone()
        image[0, :, 2, 3] = torch.tensor(color, dtype=torch.float64)
        exact = (image.flatten(1) @ model.fc.weight.double().T + model.fc.bias.double())[0]
    bound = box_margins(BoundEngine(model), IMAGE[:, :, :6, :6].contiguous(), 2, 3, color,
                        color, label).lower[0]
    assert_exact(bound, exact, label)


@pytest.mark.parametrize("uses", [
    lambda h, x: h + (x.shape[0] > 2) * 100.0,  # an audit's: 0 for 1 or 2 rows
    lambda h, x: h + (x.size(0) > 5) * 100.0,  # the same at 1 and 3 rows, read from them
    # a review: an item of a tensor made from it, the same at 1 and 3 rows
    lambda h, x: h + (torch.ones(x.shape[0]).sum() > 3).reshape(1)[0] * 100.0,
], ids=["more-than-2", "more-than-5", "item-of-a-tensor"])
def test_a_model_computing_with_its_batch_size_is_refused(uses):
    """The bounds run many boxes (or symbols) as the rows of one call where the model
    scores one image: a score read from the batch size is another function there (the
    audit's model was verified where one color fooled it alone)."""
    class Net(ConvHead):

        def forward(self, x):
            return uses(self.fc(torch.relu(self.conv(x)).flatten(1)), x)

    model = randomised(Net(), 9)
    label = label_of(model)
    for make in (BoundEngine, IntervalScreen):
        with pytest.raises((BoundUnsupportedError, IntervalUnsupportedError),
                           match="computes with its batch size"):
            engine = make(model)
            if make is BoundEngine:
                box_margins(engine, IMAGE, 2, 2, [0.0] * 3, [1.0] * 3, label)
            else:
                engine.margins(IMAGE, torch.tensor([14]), torch.zeros(1, 3, dtype=torch.float64),
                               torch.ones(1, 3, dtype=torch.float64), label)


@pytest.mark.parametrize(("uses", "exact_at_width_0"), [
    (lambda h: h.view(h.shape[0], -1), True),
    # a product with a size has no tight rule: sound, loose
    (lambda h: h.view(h.shape[0], -1) * (h.shape[1] > 2), False),
], ids=["view", "channels"])
def test_sizes_used_to_reshape_or_as_other_dimensions_are_bounded(uses, exact_at_width_0):
    """``x.view(n, -1)`` and ``x.shape[1]`` (the channels, the same at any batch size,
    though read from a shape holding it) as a value: not refused. (A constant expanded
    to the batch size, ``w.expand(n, -1)``, is a value of the batch size: refused.)"""
    class Net(ConvHead):

        def forward(self, x):
            return self.fc(uses(torch.relu(self.conv(x))))

    model = randomised(Net(), 9)
    label = label_of(model)
    color = [0.4, 0.7, 0.1]
    exact = scores(randomised(Net(), 9), IMAGE, 2, 2, torch.tensor([color]))[0]
    lower = box_margins(BoundEngine(model), IMAGE, 2, 2, color, color, label).lower[0]
    others = [k for k in range(3) if k != label]
    assert bool((lower[others] <= (exact[label] - exact)[others]).all())
    if exact_at_width_0:
        assert_exact(lower, exact, label)


@pytest.mark.parametrize("flatten", [
    lambda h: h.view(h.size(0), -1), lambda h: torch.reshape(h, (h.shape[0], -1)),
], ids=["view-size", "torch-reshape"])
def test_flattening_by_sizes_after_a_max_pool_is_bounded(flatten):
    """VGG's and LeNet's ``x.view(x.size(0), -1)`` after a max pool: the size of a value
    the bounds hold whole (a zonotope, not a window) raised TypeError / AttributeError
    (a review)."""
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(4 * 9, 3)

        def forward(self, x):
            return self.fc(flatten(self.pool(torch.relu(self.conv(x)))))

    model = randomised(Net(), 9)
    assert_bounded_at_pixel_2_2(model, lambda: randomised(Net(), 9))
    answer = Verifier(model, budget=None, max_boxes=3000).verify(
        IMAGE, torch.tensor([label_of(model)]))
    assert answer[0].decided_by in ("verified", "fooled")
