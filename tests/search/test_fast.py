"""FastAttack: a ranked corner scan to the first success or a certificate on the corner
grid, with an optional search off the corners."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pixelprior.priors import PositionDistribution, Prior
from pixelprior.search import FastAttack, OnePixelAttack, RandomSearchAttack
from pixelprior.search.scan import colour_grid


class FixedMapPrior(Prior):
    """Ranks positions by a given map (the same for every image)."""

    name = "fixed"
    needs_sensitivity = False

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.scores = scores

    def distribution(self, model, images, labels, *, seed=0, keys=None):
        batch, height, width = images.shape[0], *images.shape[-2:]
        maps = self.scores.expand(batch, height, width).clone()
        flat = torch.ones(batch, height * width, dtype=torch.float64) / (height * width)
        return PositionDistribution(flat, height, width, torch.zeros(batch, dtype=torch.bool),
                                    torch.full((batch,), height * width), maps, None)

    def from_sensitivity(self, maps, height, width, **_):  # pragma: no cover - not used
        raise NotImplementedError


class RedAtModel(nn.Module):
    """Class 1 iff some pixel of ``spots`` is pure red (1, 0, 0): the vulnerable
    positions are known exactly."""

    def __init__(self, spots: list[tuple[int, int]]) -> None:
        super().__init__()
        self.spots = spots

    def forward(self, x):
        hits = torch.stack([x[:, 0, y, xx] - x[:, 1, y, xx] - x[:, 2, y, xx]
                            for xx, y in self.spots], 1).amax(1)
        logit = 20.0 * (hits - 0.9)
        return torch.stack([torch.zeros_like(logit), logit], 1)


def dark(count: int = 2, size: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 0.3


def test_finds_the_first_vulnerable_position_in_rank_order_and_counts_its_queries():
    spots = [(1, 4), (3, 2), (5, 5)]
    model = RedAtModel(spots).eval()
    scores = torch.arange(36, dtype=torch.float32).flip(0).view(6, 6)  # raster order
    out = FastAttack(model, FixedMapPrior(scores), engine="full").run(dark(),
                                                                  torch.zeros(2, dtype=torch.long))
    first_rank = min(y * 6 + x for x, y in spots)  # (3, 2) comes first in raster order
    for result in out.results:
        assert result.success and result.steps["decided_by"] == "corners"
        assert (result.pixels[0].x, result.pixels[0].y) == (3, 2)
        assert result.pixels[0].new == [1.0, 0.0, 0.0]
        assert result.steps["positions_scanned"] == first_rank + 1
        assert result.queries == (first_rank + 1) * 8
        assert not result.steps["corner_certified"]


class Never(nn.Module):
    """Always class 0, whatever the pixels."""

    def forward(self, x):
        zero = x.mean((1, 2, 3)) * 0
        return torch.stack([zero + 1.0, zero], 1)


def test_an_image_nothing_fools_is_certified_after_every_position_and_corner():
    out = FastAttack(Never().eval(), engine="full", verify="off").run(
        dark(), torch.zeros(2, dtype=torch.long))
    for result in out.results:
        assert not result.success and result.steps["corner_certified"]
        assert result.steps["decided_by"] == "certificate"
        assert result.queries == 36 * 8 and result.steps["positions_scanned"] == 36
    # the verifier (on where a box is cheap) proves it over every color
    out = FastAttack(Never().eval(), engine="full").run(dark(), torch.zeros(2, dtype=torch.long))
    assert all(r.steps["decided_by"] == "verified" and r.steps["corner_certified"]
               for r in out.results)


def test_a_scan_cut_short_certifies_nothing():
    out = FastAttack(Never().eval(), engine="full", max_positions=5).run(
        dark(), torch.zeros(2, dtype=torch.long))
    assert all(r.steps["decided_by"] == "budget" and not r.steps["corner_certified"]
               for r in out.results)


class LinearModel(nn.Module):
    """Logits linear in the pixels: the most adversarial colour of one pixel is always a
    corner of the colour cube, so a corner certificate is exact for it."""

    def __init__(self, size: int, classes: int, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(classes, 3 * size * size, generator=g) * 0.6
        self.bias = torch.randn(classes, generator=g)

    def forward(self, x):
        return x.flatten(1) @ self.weight.T + self.bias


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_certificate_is_never_given_for_an_image_a_peer_fools(seed):
    model = LinearModel(5, 3, seed).eval()
    images = torch.rand(6, 3, 5, 5, generator=torch.Generator().manual_seed(seed))
    labels = model(images).argmax(1)
    fast = FastAttack(model, engine="full").run(images, labels)
    de = OnePixelAttack(model, popsize=60, maxiter=30, engine="full", seed=seed).run(images, labels)
    rs = RandomSearchAttack(model, budget=400, engine="full", seed=seed).run(images, labels)
    for f, d, r in zip(fast.results, de.results, rs.results, strict=True):
        if d.success or r.success:
            assert f.success and not f.steps["corner_certified"]
        if f.steps["corner_certified"]:
            assert not d.success and not r.success
    # every claimed success is a real one-pixel adversarial under the model
    flips = model(fast.adversarial).argmax(1) != labels
    assert flips.tolist() == [r.success for r in fast.results]
    assert all(len(r.pixels) == 1 for r in fast.results if r.success)


class GreyAtModel(nn.Module):
    """Class 1 iff pixel (x=1, y=2) is close to mid grey: no corner fools it."""

    def forward(self, x):
        distance = (x[:, :, 2, 1] - 0.5).pow(2).sum(1).sqrt()
        logit = 30.0 * (0.12 - distance)
        return torch.stack([torch.zeros_like(logit), logit], 1)


def test_the_refine_stage_finds_a_planted_adversarial_off_the_corners():
    images = dark(2, size=4)
    labels = torch.zeros(2, dtype=torch.long)
    corners_only = FastAttack(GreyAtModel().eval(), engine="full").run(images, labels)
    assert all(r.steps["decided_by"] == "certificate" for r in corners_only.results)
    out = FastAttack(GreyAtModel().eval(), engine="full", refine="de", refine_budget=3000,
                     refine_positions=16).run(images, labels)
    for result in out.results:
        assert result.success and result.steps["decided_by"] == "refine"
        assert result.steps["corner_certified"]  # still true: no corner fools it
        assert (result.pixels[0].x, result.pixels[0].y) == (1, 2)
        assert 0 < result.steps["refine_queries"] <= 3000
        assert result.queries == 16 * 8 + result.steps["refine_queries"]


def test_same_seed_same_results_and_batch_invariance(random_cifar):
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    labels = random_cifar(images).argmax(1)
    make = lambda: FastAttack(random_cifar, batch_invariant=True, seed=2,  # noqa: E731
                              max_positions=40)
    together = make().run(images, labels)
    again = make().run(images, labels)
    assert [r.to_row() | {"seconds": 0} for r in together.results] == [
        r.to_row() | {"seconds": 0} for r in again.results]
    alone = make().run(images[1:2], labels[1:2]).results[0]
    assert alone.pixels == together.results[1].pixels
    assert alone.queries == together.results[1].queries


def test_bad_settings_are_refused():
    model = GreyAtModel().eval()
    with pytest.raises(ValueError, match="refine must be one of"):
        FastAttack(model, refine="cmaes")
    with pytest.raises(ValueError, match="refine_budget must be >= 8, got 2"):
        FastAttack(model, refine="de", refine_budget=2)
    with pytest.raises(TypeError, match="refine_budget must be an integer"):
        FastAttack(model, refine="de", refine_budget=100.5)
    with pytest.raises(ValueError, match="verify_seconds must be a finite number > 0"):
        FastAttack(model, verify="on", verify_seconds=float("inf"))
    with pytest.raises(ValueError, match="FastAttack changes 1 pixel"):
        FastAttack(model, pixel_count=2)


def test_the_old_refine_queries_name_is_the_refine_budget_with_a_deprecation():
    model = GreyAtModel().eval()
    with pytest.warns(DeprecationWarning, match=r"FastAttack\(refine_queries=...\).*"
                      "use refine_budget="):
        attack = FastAttack(model, refine="de", refine_queries=300)
    assert attack.refine_budget == 300
    with pytest.warns(DeprecationWarning, match=r"FastAttack.refine_queries .*refine_budget"):
        assert attack.refine_queries == 300


def test_an_image_already_misclassified_is_not_attacked_and_says_so():
    out = FastAttack(Never().eval(), engine="full").run(dark(1), torch.ones(1, dtype=torch.long))
    result = out.results[0]
    assert not result.clean_correct and result.queries == 0
    assert result.steps["decided_by"] is None and result.steps["corner_certified"] is False


def test_a_raster_tie_break_scans_a_uniform_prior_row_by_row():
    """``fast:raster`` is a raster scan, as ``scan:raster`` is (it scanned in random order,
    the same attack as ``fast:random``, before)."""
    from pixelprior.priors import UniformPrior

    model = RedAtModel([(5, 2)]).eval()  # position 2 · 6 + 5 = 17: the 18th in raster order
    labels = torch.zeros(3, dtype=torch.long)
    raster = FastAttack(model, UniformPrior(), engine="full", tie_break="raster",
                        verify="off").run(dark(3), labels)
    assert [r.steps["positions_scanned"] for r in raster.results] == [18, 18, 18]
    shuffled = FastAttack(model, UniformPrior(), engine="full", verify="off").run(dark(3),
                                                                                 labels)
    assert [r.steps["positions_scanned"] for r in shuffled.results] != [18, 18, 18]
    with pytest.raises(ValueError, match="tie_break"):
        FastAttack(model, tie_break="rows")


def test_the_fast_modes_raster_order_reaches_the_attack():
    from pixelprior.experiment import ExperimentConfig
    from pixelprior.experiment.modes import build_attack

    config = ExperimentConfig(modes=["fast:raster", "fast:random"], engine="full")
    assert build_attack(config, "fast:raster", RedAtModel([(0, 0)]), seed=0).tie_break == "raster"
    assert build_attack(config, "fast:random", RedAtModel([(0, 0)]), seed=0).tie_break == "random"


class TieAtBlack(nn.Module):
    """Class 0's score is a BatchNorm of a 1×1 convolution at pixel (2, 1); class 1's a
    constant equal to class 0's score at black in the model itself. At black the two
    tie exactly (argmax: class 0, a label change), while the scan's copy, the BatchNorm
    folded into the convolution, rounds class 0 a little lower (no change)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 1, 1), nn.BatchNorm2d(1))
        with torch.no_grad():  # weights found by search: folded, class 0 rounds lower
            self.features[0].weight.copy_(torch.tensor([-0.02, -0.56, -0.1]).view(1, 3, 1, 1))
            self.features[0].bias.fill_(0.62)
            bn = self.features[1]
            bn.weight.fill_(3.63)
            bn.bias.fill_(0.62)
            bn.running_mean.fill_(-0.62)
            bn.running_var.fill_(1.1)
        self.register_buffer("tie", torch.zeros(()))
        black = torch.zeros(1, 3, 4, 4)
        with torch.no_grad():
            self.tie.fill_(float(self.eval().features(black)[0, 0, 1, 2]))

    def forward(self, x):
        z0 = self.features(x)[:, 0, 1, 2]
        return torch.stack([z0, self.tie.expand_as(z0)], 1)


def test_a_row_never_says_a_stage_fooled_the_model_where_the_model_is_not_fooled():
    """The verdicts are the model's own (not the scan's faster copy's), and ``decided_by``
    agrees with them: ``corners`` or ``refine`` only with a success."""
    from pixelprior.priors import UniformPrior

    model = TieAtBlack().eval()
    image = torch.full((1, 3, 4, 4), 0.5)
    label = model(image).argmax(1)
    assert int(label) == 1
    out = FastAttack(model, UniformPrior(), engine="full", verify="off").run(image, label)
    (result,) = out.results
    fooled = bool(model(out.adversarial).argmax(1) != label)
    assert result.success == fooled
    assert result.success and (result.pixels[0].x, result.pixels[0].y) == (2, 1)  # the tie
    if result.steps["decided_by"] in ("corners", "refine"):
        assert result.success


class ManyClassesLowConfidence(nn.Module):
    """100 classes, all near 0.01: class 0 ahead by a logit gap of 0.05 (probabilities
    ~4.5e-4 apart), which no one-pixel change can close (the pixel moves the logits by
    at most 0.04 / 576)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(1, 100)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.zero_()
            self.head.weight[0, 0], self.head.bias[0] = 0.04, 0.05

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean((1, 2, 3), keepdim=True).flatten(1))


def test_many_classes_of_small_probabilities_are_no_near_ties():
    """Every corner is within 1e-3 in probability, but 0.05 apart in logits: a
    certificate, and with the verifier a proof (every position was once a near tie,
    the image left as "budget", the verifier never run)."""
    images = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    labels = torch.zeros(1, dtype=torch.long)  # 576 positions: past MAX_RECHECKED
    model = ManyClassesLowConfidence()
    out = FastAttack(model, verify="off").run(images, labels)
    assert out.results[0].steps["decided_by"] == "certificate"
    verified = FastAttack(model, verify="on", verify_seconds=60).run(images, labels)
    assert verified.results[0].steps["decided_by"] == "verified"


def quantised_logits_net(seed: int) -> nn.Module:
    """100 classes whose logits the model computes through a cancellation (a bias of
    2^18 taken off again by its BatchNorm: steps of 2^-6), which the scorer's folded copy
    does not: the two part by ~0.02 in logits, within the scorer check's tolerance."""
    generator = torch.Generator().manual_seed(seed)
    conv, bn = nn.Conv2d(3, 100, 6), nn.BatchNorm2d(100)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(100, 3, 6, 6, generator=generator) * 0.05)
        conv.bias.fill_(2.0 ** 18)
        bn.running_mean.fill_(2.0 ** 18)
        bn.running_var.fill_(1 - bn.eps)
        bn.bias.copy_(100 + torch.randn(100, generator=generator) * 0.05)
    return nn.Sequential(conv, bn, nn.Flatten()).eval()


def test_no_corner_certificate_where_a_scorer_agreeing_less_hides_a_flip():
    """(A review's case.) At one corner the copy's logit gap is 0.021 and the model's is
    −0.016: the logits' near-tie rule, made for scorers that agree to ~1e-5, would not
    re-score it and certified an image the model itself calls fooled there."""
    model = quantised_logits_net(246)
    image = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(246))
    with torch.no_grad():
        label = model(image).argmax(1)
    result = FastAttack(model, verify="off", tie_break="raster").run(image, label).results[0]
    assert result.success and not result.steps["corner_certified"]
    assert result.steps["decided_by"] == "corners"


class ManyClassesLowConfidenceProbabilities(ManyClassesLowConfidence):
    """The same, returning its softmax: near ties are judged in the logarithms of the
    probabilities (the logits' gap) where the scorer was measured to agree in them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).softmax(1)


def test_many_classes_of_small_probabilities_returned_as_probabilities_are_no_near_ties():
    images = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    labels = torch.zeros(1, dtype=torch.long)
    attack = FastAttack(ManyClassesLowConfidenceProbabilities(), verify="off")
    out = attack.run(images, labels)
    scorer = attack.scorer(images)
    assert scorer.output_kind == "probabilities" and scorer.log_agreement is not None
    assert scorer.log_agreement <= 1e-4
    assert out.results[0].steps["decided_by"] == "certificate"


def test_the_log_gap_of_probabilities_never_agrees_where_one_side_is_zero_or_negative():
    from pixelprior.scoring.registry import _log_gap

    same = torch.tensor([[0.0, 0.25, 0.75]])
    assert _log_gap(same, same.clone()) == 0.0  # both 0: equal
    assert _log_gap(same, torch.tensor([[1e-30, 0.25, 0.75]])) == math.inf
    assert math.isnan(_log_gap(same, torch.tensor([[-1e-9, 0.25, 0.75]])))


def test_no_corner_certificate_where_a_probability_scorer_agreeing_less_hides_a_flip():
    """The review's case with the softmax inside the model: its logarithms part from the
    copy's as the logits did, so the probability rule alone decides the re-check."""
    model = nn.Sequential(quantised_logits_net(246), nn.Softmax(1)).eval()
    image = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(246))
    with torch.no_grad():
        label = model(image).argmax(1)
    attack = FastAttack(model, verify="off", tie_break="raster")
    result = attack.run(image, label).results[0]
    assert attack.scorer(image).log_agreement > 1e-4
    assert result.success and not result.steps["corner_certified"]


CANCELLATION = 2.0 ** 22  # conv(x) + 2^22 rounds to steps of 0.5: its BatchNorm takes it off


def cancelling_body(blue_weight: float = 0.26) -> nn.Sequential:
    """A 1×1 convolution reading blue whose bias of 2^22 its BatchNorm takes off again: the
    model rounds ``0.26 · blue`` to 0 or 0.5, the BatchNorm-folded copy the scan queries
    does not (an audit's construction)."""
    conv, bn = nn.Conv2d(3, 1, 1), nn.BatchNorm2d(1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 2] = blue_weight
        conv.bias.fill_(CANCELLATION)
        bn.running_mean.fill_(CANCELLATION)
        bn.running_var.fill_(1.0 - bn.eps)
    return nn.Sequential(conv, bn)


class CancellationAtOnePosition(nn.Module):
    """Class 1 reads the cancellation at (3, 3) only, none of the scorer check's nine
    places, plus a decoy at (6, 6) that holds the scan's lowest margin."""

    def __init__(self) -> None:
        super().__init__()
        self.body = cancelling_body()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 4.0 * self.body(x)[:, 0, 3, 3] + 1.5 * x[:, 0, 6, 6]
        return torch.stack([torch.full_like(score, 1.6), score], 1)


class CancellationEverywhereLogSoftmax(nn.Module):
    """Log-probabilities of a 3-class head, one class at -1000 (the scorer check's scale:
    a scorer about 1 logit off passes it)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = cancelling_body()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 4.0 * self.body(x).flatten(1).sum(1)
        rest = torch.full_like(score, 1.6)
        return torch.stack([rest, score, rest - 1001.6], 1).log_softmax(1)


def _corner_flips(model: nn.Module, image: torch.Tensor, label: int) -> int:
    """Corner colors at any position the model itself labels otherwise (every one)."""
    corners = colour_grid(2, 3)
    flips = 0
    with torch.no_grad():
        for y in range(image.shape[-2]):
            for x in range(image.shape[-1]):
                batch = image.repeat(8, 1, 1, 1)
                batch[:, :, y, x] = corners
                flips += int((model(batch).argmax(1) != label).sum())
    return flips


@pytest.mark.parametrize("model_class", [CancellationAtOnePosition,
                                         CancellationEverywhereLogSoftmax])
def test_no_corner_certificate_where_the_models_own_rounding_flips_a_corner(model_class):
    """(An audit's cases.) The scan's folded copy keeps 0.26 · blue where the model rounds
    it to 0.5: a corner flips the model's label at margins the copy puts far from a tie.
    The positions within twice the model's rounding estimate are re-scored by the model
    itself: the image is fooled, at a corner, never certified."""
    model = model_class().eval()
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    image[:, 2] = 0.0
    image[0, 0, 6, 6] = 0.0
    assert _corner_flips(model, image, 0) > 0
    attack = FastAttack(model, verify="off")
    result = attack.run(image, torch.tensor([0])).results[0]
    assert result.success and result.steps["decided_by"] == "corners"
    assert not result.steps["corner_certified"]
    assert attack._rounding_band(image, attack.scorer(image)) > 1.0  # steps of 0.5, × 4


class HardLabels(nn.Module):
    """One-hot scores of a linear head's argmax: no gradients anywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.one_hot(self.head(x.flatten(1)).argmax(1), 2).float()


def test_a_model_the_band_cannot_be_estimated_for_keeps_the_measured_gap_and_says_so():
    """(A review's case.) A hard-label model (no gradients) with the uniform prior, run
    under inference mode: the estimate failed and took the attack with it."""
    from pixelprior.priors import UniformPrior

    torch.manual_seed(0)
    model = HardLabels().eval()
    images = torch.rand(1, 3, 4, 4)
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([50.0, 0.0]))  # class 0 everywhere
    attack = FastAttack(model, UniformPrior(), verify="off")
    with torch.inference_mode():
        result = attack.run(images, torch.tensor([0])).results[0]
    assert result.steps["decided_by"] == "certificate"
    assert "the model's float32 rounding could not be estimated" in attack.note


def test_a_pick_the_model_calls_fooled_ends_the_corner_certificate(monkeypatch):
    """Without the rounding band the copy certifies the log-softmax model, and the final
    verdict (the model itself, at the lowest-margin corner) says fooled: the row says the
    corners decided it, with no certificate (it said both)."""
    monkeypatch.setattr(FastAttack, "_rounding_band", lambda self, images, scorer: 0.0)
    model = CancellationEverywhereLogSoftmax().eval()
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    image[:, 2] = 0.0
    result = FastAttack(model, verify="off").run(image, torch.tensor([0])).results[0]
    assert result.success and all(v in (0.0, 1.0) for v in result.pixels[0].new)
    assert result.steps["decided_by"] == "corners" and not result.steps["corner_certified"]
