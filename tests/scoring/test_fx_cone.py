"""The torch.fx cone equals the full forward pass on general CNNs (scores, labels), is
chosen by ``make_scorer(engine="auto")`` and falls back with a note where it cannot apply."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import MobileNetish, VGGish, randomised
from torch import nn

from pixelprior.models import SqueezeNetCifar
from pixelprior.scoring import (
    FullPassScorer,
    FxIncrementalForward,
    IncrementalForward,
    IncrementalScorer,
    fx_incremental_forward,
    make_scorer,
    perturb_rows,
)


# ------------------------------------------------------------------ models
class BasicBlock(nn.Module):
    """ResNet basic block: 3×3 conv, BN, ReLU, 3×3 conv, BN, shortcut add, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return self.relu(out)


class ResNet20(nn.Module):
    """CIFAR ResNet-20: 16-32-64 channels, three blocks a stage, 1×1 conv shortcuts."""

    def __init__(self, classes: int = 10, blocks: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU(inplace=True))
        layers, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(blocks):
                layers.append(BasicBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Normalising(nn.Module):
    """Normalises inside with mean/std buffers; functional and method activations."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.49, 0.48, 0.45]))
        self.register_buffer("std", torch.tensor([0.25, 0.24, 0.26]).view(1, 3, 1, 1))
        self.conv1 = nn.Conv2d(3, 24, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(24)
        self.conv2 = nn.Conv2d(24, 24, 3, padding=1)
        self.conv3 = nn.Conv2d(24, 32, 3, stride=2, padding=1)
        self.conv4 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]  # the shape of a windowed value: nothing materialised
        x = (x - self.mean.view(1, -1, 1, 1)) / self.std
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.conv2(x).relu() * 0.5 + 0.1
        x = F.leaky_relu(self.conv3(x), 0.1)
        x = torch.tanh(self.conv4(x)) + torch.sigmoid(x)  # windows of different size
        return self.fc(x.mean((2, 3)).view(batch, -1))


class CatPool(nn.Module):
    """Two branches concatenated (different windows), average pools, mean over space."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.branch3 = nn.Conv2d(16, 16, 3, padding=1)
        self.branch5 = nn.Sequential(nn.Conv2d(16, 8, 1), nn.SiLU(), nn.Conv2d(8, 16, 5,
                                                                            padding=2))
        self.pool = nn.AvgPool2d(2)
        self.conv = nn.Conv2d(32, 32, 3, padding=1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.stem(x))
        x = torch.cat([self.branch3(x), self.branch5(x)], dim=1)
        x = self.pool(F.relu6(x))
        x = F.avg_pool2d(nn.functional.hardswish(self.conv(x)), 3, 2, 1)
        return self.fc(x.mean((2, 3)))


class Geometry(nn.Module):
    """A 5×5 stride-2 conv with padding 2, a dilated conv, a padded max pool, grouped
    convs, functional conv and the rarer activations."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 5, stride=2, padding=2)
        self.bn1 = nn.BatchNorm2d(32)
        self.dilated = nn.Conv2d(32, 32, 3, padding=2, dilation=2)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.grouped = nn.Conv2d(32, 48, 3, padding=(1, 1), groups=4)
        self.weight = nn.Parameter(torch.randn(48, 48, 3, 3) * 0.05)
        self.acts = nn.Sequential(nn.LeakyReLU(0.2), nn.Identity(), nn.Dropout(0.3),
                                  nn.Tanh(), nn.Hardsigmoid())
        self.fc = nn.Linear(48, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.bn1(self.conv1(x)))
        x = self.pool(nn.functional.gelu(self.dilated(x)))
        x = self.acts(self.grouped(x))
        x = F.conv2d(x, self.weight, None, 1, "same")
        return self.fc(x.amax((2, 3)))


class FlipFirst(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = ResNet20(blocks=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flip(-1))


class Branchy(nn.Module):
    """A data-dependent Python branch: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.net = ResNet20(blocks=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0.5:
            x = 1 - x
        return self.net(x)


MODELS = {
    "resnet20": lambda size: ResNet20(),
    "mobilenet": lambda size: MobileNetish(),
    "mobilenet-se": lambda size: MobileNetish(se=True),
    "vgg-bn-after-relu": VGGish,
    "normalising": lambda size: Normalising(),
    "cat-avgpool": lambda size: CatPool(),
    "dilated-stride2-5x5": lambda size: Geometry(),
}
SIZES = [(32, 32), (24, 40)]


# ------------------------------------------------------------------ helpers
def candidates(images: torch.Tensor, count: int, seed: int = 0):
    """Rows at the corners, edge midpoints and centre of every image, plus ``count``
    random ones → ``owner, genes [N, 1, 2 + C]``."""
    generator = torch.Generator().manual_seed(seed)
    n, channels, height, width = images.shape
    spots = [(y, x) for y in (0, height // 2, height - 1) for x in (0, width // 2, width - 1)]
    owner = [i for i in range(n) for _ in spots]
    ys, xs = [y for _ in range(n) for y, _ in spots], [x for _ in range(n) for _, x in spots]
    owner += torch.randint(0, n, (count,), generator=generator).tolist()
    ys += torch.randint(0, height, (count,), generator=generator).tolist()
    xs += torch.randint(0, width, (count,), generator=generator).tolist()
    colour = torch.rand(len(owner), channels, generator=generator)
    xy = torch.tensor([xs, ys], dtype=torch.float32).T
    return torch.tensor(owner), torch.cat([xy, colour], 1)[:, None]


def full_pass(model: nn.Module, images: torch.Tensor, owner, genes) -> torch.Tensor:
    with torch.inference_mode():
        return model(perturb_rows(images, owner, genes))


def assert_same_scores(got: torch.Tensor, expected: torch.Tensor) -> None:
    scale = float(expected.abs().max())
    torch.testing.assert_close(got, expected, atol=1e-4 * max(scale, 1e-6), rtol=0)
    assert torch.equal(got.argmax(1), expected.argmax(1))


def images_of(size: tuple[int, int], count: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.rand(count, 3, *size, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ equality
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", list(MODELS))
def test_auto_uses_the_fx_cone_and_it_equals_the_full_pass(name, size):
    model = randomised(MODELS[name](size), seed=len(name), he=True)
    images = images_of(size)
    scorer = make_scorer(model, images, "auto")
    assert isinstance(scorer, IncrementalScorer), scorer.note
    assert isinstance(scorer.engine, FxIncrementalForward) and scorer.note is None
    cone, full = scorer.engine.macs(images)
    assert 0 < cone < full  # it saves work
    owner, genes = candidates(images, 40)
    expected = full_pass(model, images, owner, genes)
    assert_same_scores(scorer.logits(scorer.prepare(images), owner, genes), expected)


@pytest.mark.parametrize("name", ["resnet20", "cat-avgpool", "mobilenet-se"])
def test_per_image_preparation_gives_the_batch_results(name):
    model = randomised(MODELS[name]((24, 40)), seed=3, he=True)
    images = images_of((24, 40), count=4, seed=2)
    scorer = make_scorer(model, images, "incremental")
    owner, genes = candidates(images, 30, seed=5)
    batch = scorer.logits(scorer.prepare(images), owner, genes)
    per_image = scorer.logits(scorer.prepare(images, per_image=True), owner, genes)
    assert_same_scores(per_image, batch)
    assert_same_scores(per_image, full_pass(model, images, owner, genes))


def test_the_engine_works_on_the_plain_model_too():
    """Not only on the full pass's fast copy: BatchNorm unfolded, channels-first."""
    model = randomised(ResNet20(blocks=1), seed=4, he=True)
    images = images_of((32, 32))
    engine, problem = fx_incremental_forward(model, images)
    assert problem is None
    owner, genes = candidates(images, 30)
    rows = torch.arange(owner.shape[0])
    x, y = genes[rows, 0, 0].long(), genes[rows, 0, 1].long()
    got = engine(engine.prepare(images), owner, y, x, genes[:, 0, 2:])
    assert_same_scores(got, full_pass(model, images, owner, genes))


def test_windows_grow_with_the_receptive_field():
    model = randomised(ResNet20(blocks=1), he=True)
    engine = FxIncrementalForward(model)
    plan = engine.plan(images_of((32, 32), count=1))
    sizes = {node.name: step.box.size for node, step, _ in plan.steps
             if hasattr(step, "box")}
    assert sizes["x"] == (1, 1)
    assert sizes["stem_0"] == (3, 3)  # a 3×3 conv: a 3×3 window
    assert sizes["layers_0_conv1"] == (5, 5)
    # the union of the shortcut's 5×5 and the branch's 7×7 (``out += shortcut``: the
    # engines' tracer names the node iadd; it runs out of place, its value read once)
    assert sizes["iadd"] == (7, 7)


def test_the_squeezenet_cone_keeps_squeezenets():
    model = randomised(SqueezeNetCifar(), he=True)
    scorer = make_scorer(model, images_of((32, 32)), "auto")
    assert isinstance(scorer.engine, IncrementalForward) and scorer.note is None


# ------------------------------------------------------------------ fallbacks
@pytest.mark.parametrize("model, words", [
    (FlipFirst(), "flip"),
    (Branchy(), "torch.fx cannot trace"),
], ids=["flip-first", "data-dependent-branch"])
def test_an_unsupported_model_falls_back_to_full_passes_with_a_note(model, words):
    model = randomised(model, he=True)
    images = images_of((32, 32))
    scorer = make_scorer(model, images, "auto")
    assert isinstance(scorer, FullPassScorer)
    assert scorer.note.startswith("incremental engine not used: ")
    assert words in scorer.note and scorer.note.endswith("; full forward passes")
    with pytest.raises(ValueError, match=words):
        make_scorer(model, images, "incremental")


def test_a_model_that_disagrees_is_not_used(monkeypatch):
    model = randomised(ResNet20(blocks=1), he=True)
    images = images_of((32, 32))
    original = FxIncrementalForward.__call__
    monkeypatch.setattr(FxIncrementalForward, "__call__",
                        lambda self, *args: original(self, *args) + 1.0)
    scorer = make_scorer(model, images, "auto")
    assert isinstance(scorer, FullPassScorer) and "differ" in scorer.note
    with pytest.raises(ValueError, match="differ from the full pass"):
        make_scorer(model, images, "incremental")


def test_full_passes_have_no_note(tiny_net):
    assert make_scorer(tiny_net, torch.rand(1, 3, 8, 8), "full").note is None
    assert make_scorer(randomised(ResNet20(blocks=1), he=True), images_of((32, 32)), "auto",
                       pixels=2).note is None


def test_unsupported_layers_mid_network_run_as_the_model_does():
    """An op it does not know (here an upsample) materialises the maps; results stay
    exact, and the layers before it still save work."""

    class Upsampling(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.early = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), BasicBlock(16, 16, 1))
            self.up = nn.Upsample(scale_factor=2)
            self.late = nn.Sequential(BasicBlock(16, 32, 2), BasicBlock(32, 32, 1))
            self.fc = nn.Linear(32, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.late(self.up(self.early(x))[..., ::2, ::2])
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    model = randomised(Upsampling(), he=True)
    images = images_of((32, 32))
    engine = FxIncrementalForward(model)
    plan = engine.plan(images)
    assert plan.first_unsupported.startswith("Upsample (up)")
    owner, genes = candidates(images, 20)
    rows = torch.arange(owner.shape[0])
    x, y = genes[rows, 0, 0].long(), genes[rows, 0, 1].long()
    got = engine(engine.prepare(images), owner, y, x, genes[:, 0, 2:])
    assert_same_scores(got, full_pass(model, images, owner, genes))


# ------------------------------------------------------------------ inside the attack
def test_the_attack_finds_the_same_pixels_with_either_engine():
    from pixelprior.search import OnePixelAttack

    model = randomised(ResNet20(), seed=7, he=True)
    images = images_of((32, 32), count=3, seed=9)
    with torch.inference_mode():
        labels = model(images).argmax(1)
    runs = {}
    for engine in ("auto", "full"):
        attack = OnePixelAttack(model, popsize=20, maxiter=2, seed=1, engine=engine,
                                batch_invariant=True)
        runs[engine] = attack.run(images, labels).results
        if engine == "auto":
            assert isinstance(attack.scorer(images).engine, FxIncrementalForward)
    for auto, full in zip(runs["auto"], runs["full"], strict=True):
        assert (auto.success, auto.queries) == (full.success, full.queries)
        if full.success:
            assert (auto.pixels, auto.adversarial_label) == (full.pixels,
                                                             full.adversarial_label)
        assert auto.true_probability == pytest.approx(full.true_probability, abs=1e-4)
