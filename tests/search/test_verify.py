"""The verifier: a witness off the corner grid where one exists, a proof where none does,
"unknown" (never "verified") when the budget runs out; every verified image survives a
dense sample of colors at every position, every witness fools the model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pixelprior.scoring import perturb_rows
from pixelprior.search import FastAttack
from pixelprior.search.verify import BoundUnsupportedError, UnboundedRoundingError, Verifier

TARGET = (0.3, 0.7, 0.45)


class GreyPixel(nn.Module):
    """Class 1 iff pixel (y0, x0) is within 0.1 (L1) of :data:`TARGET`: no corner of the
    color cube fools it (nor the cube's center), only colors near the target; every other
    pixel does nothing."""

    def __init__(self, size: int = 6, y0: int = 2, x0: int = 3) -> None:
        super().__init__()
        self.pick = nn.Linear(3 * size * size, 6)
        with torch.no_grad():
            self.pick.weight.zero_()
            for c in range(3):
                flat = c * size * size + y0 * size + x0
                self.pick.weight[2 * c, flat], self.pick.weight[2 * c + 1, flat] = 1.0, -1.0
                self.pick.bias[2 * c] = -TARGET[c]
                self.pick.bias[2 * c + 1] = TARGET[c]
        self.score = nn.Linear(6, 2)
        with torch.no_grad():
            self.score.weight.zero_()
            self.score.weight[1] = -10.0  # class 1: 1 - 10 · Σ |x_c - target_c|
            self.score.bias.copy_(torch.tensor([0.0, 1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(torch.relu(self.pick(x.flatten(1))))


def calm_net(seed: int = 0) -> nn.Module:
    """A small CNN whose class 0 wins by far wherever a pixel is: robust everywhere."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 3 * 3, 3))
    with torch.no_grad():
        model[-1].bias.copy_(torch.tensor([4.0, 0.0, 0.0]))
        model[-1].weight.mul_(0.1)
    return model.eval()


def grey_image(size: int = 6) -> torch.Tensor:
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    image[0, :, 2, 3] = torch.tensor([0.05, 0.95, 0.1])  # far from grey: class 0
    return image


def test_finds_the_witness_inside_the_cube_that_no_corner_reaches():
    model = GreyPixel().eval()
    image = grey_image()
    corners = torch.tensor([[a, b, c] for a in (0.0, 1.0) for b in (0.0, 1.0)
                            for c in (0.0, 1.0)])
    genes = torch.cat([torch.tensor([[3.0, 2.0]]).expand(8, 2), corners], 1)[:, None]
    assert (model(perturb_rows(image, torch.zeros(8, dtype=torch.long), genes))
            .argmax(1) == 0).all()  # no corner fools it
    (result,) = Verifier(model, budget=None, max_boxes=5000).verify(image, torch.tensor([0]))
    assert result.fooled and not result.verified and result.decided_by == "fooled"
    x, y, color = result.witness
    assert (x, y) == (3, 2)
    assert sum(abs(c - t) for c, t in zip(color, TARGET, strict=True)) < 0.1
    genes = torch.tensor([[[float(x), float(y), *color]]])
    assert int(model(perturb_rows(image, torch.zeros(1, dtype=torch.long), genes))
               .argmax()) == 1
    assert result.positions.status[2 * 6 + 3] == "vulnerable"


def test_proves_a_robust_image_over_every_position_and_color():
    model = calm_net()
    image = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    (result,) = Verifier(model, budget=None).verify(image, torch.tensor([0]))
    assert result.verified and result.decided_by == "verified"
    assert result.verified_volume == 1.0 and result.lowest_bound is None
    assert result.positions.status == ["robust"] * 36
    assert result.boxes >= 36 and result.tolerance > 0


def test_the_budget_leaves_unknown_with_the_lowest_bound_never_verified():
    model = GreyPixel().eval()
    grey_last = torch.tensor([p for p in range(36) if p != 15] + [15])
    (result,) = Verifier(model, budget=None, max_boxes=40, batch_boxes=8,
                         search=False).verify(grey_image(), torch.tensor([0]),
                                              orders=grey_last[None])
    assert result.decided_by == "unknown" and not result.verified and not result.fooled
    assert 0 < result.verified_volume < 1
    assert result.lowest_bound is not None and result.lowest_bound <= result.tolerance
    assert "unknown" in result.positions.status
    assert result.boxes == 40  # the last bound call is cut to the boxes left


def test_a_budget_decides_the_first_positions_of_the_order_not_a_little_of_each(
        monkeypatch):
    """Positions need several boxes here (the symbol bound cuts whole cubes): a box
    budget decides a prefix of the order, where breadth first over every position would
    have spent it on a little of each."""
    from pixelprior.search import verify as verify_module

    monkeypatch.setattr(verify_module, "MAX_BOX_SYMBOLS", 25)
    model = calm_net()
    image = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    order = torch.randperm(36, generator=torch.Generator().manual_seed(2))
    (result,) = Verifier(model, budget=None, max_boxes=300, batch_boxes=8,
                         screen=False).verify(image, torch.tensor([0]), orders=order[None])
    assert not result.fooled  # so the first witness never stops it
    status = [result.positions.status[p] for p in order.tolist()]
    decided = status.count("robust")
    assert 3 < decided < 36 and status[:decided] == ["robust"] * decided
    assert (result.positions.boxes[order[:decided]] >= 8).sum() >= 3  # cut, several boxes
    assert set(status[decided:]) == {"unknown"}
    reached = result.positions.boxes[order[decided:]] > 0
    lowest = result.positions.lowest_bound[order[decided:]]
    assert (~reached).any() and (lowest[~reached] == -math.inf).all()  # no bound known
    assert result.lowest_bound is None  # some position has no bound at all
    (exact,) = Verifier(model, budget=None, max_boxes=300, batch_boxes=8,
                        screen=False).verify(image, torch.tensor([0]), orders=order[None],
                                             stop_at_first=False)
    quota = verify_module.EXACT_QUOTA  # deciding every position: none takes more first
    assert exact.positions.status.count("robust") >= decided
    assert (exact.positions.boxes <= quota).sum() > (result.positions.boxes <= quota).sum()


def test_a_fooled_image_leaves_its_unfinished_positions_unknown_not_robust():
    """With a tolerance no bound can reach, nothing is proved: when the witness ends the
    image, the positions bounded but not finished are unknown."""
    grey_first = torch.tensor([15] + [p for p in range(36) if p != 15])
    (result,) = Verifier(GreyPixel().eval(), budget=None, max_boxes=5000,
                         tolerance=1e6).verify(grey_image(), torch.tensor([0]),
                                               orders=grey_first[None])
    assert result.fooled
    assert "robust" not in result.positions.status
    assert result.positions.status[2 * 6 + 3] == "vulnerable"
    assert int((result.positions.boxes > 0).sum()) > 1  # other positions were bounded


def test_every_position_is_decided_when_asked():
    model = GreyPixel().eval()
    (result,) = Verifier(model, budget=None).verify(grey_image(), torch.tensor([0]),
                                                    stop_at_first=False)
    status = result.positions.status
    assert status[2 * 6 + 3] == "vulnerable"
    assert status.count("robust") == 35
    witness = result.positions.witness
    assert torch.isnan(witness[0]).all() and not torch.isnan(witness[2 * 6 + 3]).any()
    assert result.positions.verified_volume[0] == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_verified_image_survives_a_dense_sample_of_colors(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, 2, 1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(36, 3)).eval()
    image = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(seed))
    label = int(model(image).argmax())
    (result,) = Verifier(model, budget=None, max_boxes=20_000).verify(
        image, torch.tensor([label]), stop_at_first=False)
    colors = torch.rand(300, 3, generator=torch.Generator().manual_seed(seed))
    for p, status in enumerate(result.positions.status):
        if status != "robust":
            continue
        genes = torch.cat([torch.tensor([[float(p % 6), float(p // 6)]]).expand(300, 2),
                           colors], 1)[:, None]
        predicted = model(perturb_rows(image, torch.zeros(300, dtype=torch.long), genes))
        assert (predicted.argmax(1) == label).all()
    for p, status in enumerate(result.positions.status):
        if status == "vulnerable":
            genes = torch.tensor([[[float(p % 6), float(p // 6),
                                    *result.positions.witness[p].tolist()]]])
            assert int(model(perturb_rows(image, torch.zeros(1, dtype=torch.long), genes))
                       .argmax()) != label


class SqueezeExcite(nn.Module):
    """A squeeze-and-excitation block (a gate of the whole image times every pixel's
    features), then a strided convolution and a global average."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.squeeze, self.excite = nn.Conv2d(4, 2, 1), nn.Conv2d(2, 4, 1)
        self.down = nn.Conv2d(4, 4, 3, 2, 1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.hardswish(self.conv(x))
        gate = torch.sigmoid(self.excite(torch.relu(self.squeeze(h.mean((2, 3),
                                                                       keepdim=True)))))
        return self.fc(torch.relu(self.down(gate * h)).mean((2, 3)))


@pytest.mark.parametrize("seed, margin", [(0, 0.001), (1, 0.003), (2, 0.01)])
def test_a_gated_network_is_decided_and_every_verdict_holds(seed, margin):
    """Products of two varying values (a squeeze-and-excitation gate): with the clean
    margin set small, positions come out robust and vulnerable; no robust one is fooled
    by a dense grid and random colors, every witness fools the model."""
    torch.manual_seed(seed)
    model = SqueezeExcite().eval()
    # single pixels matter: 11, 5 and 36 positions robust
    image, label, result = decided_with_a_small_margin(model, model.conv, model.fc, seed,
                                                       margin)
    status = result.positions.status
    assert "unknown" not in status and "robust" in status
    assert seed == 2 or "vulnerable" in status
    assert_verdicts_hold(model, image, label, result, seed)


def decided_with_a_small_margin(model: nn.Module, first: nn.Module, last: nn.Module,
                                seed: int, margin: float) -> tuple:
    """A random 6 × 6 image, its label and every position decided, the first layer's
    weights tripled (single pixels matter) and the last layer's bias set so that the
    clean margin is ``margin``."""
    image = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        first.weight.mul_(3)
        scores = model(image)[0]
        label = int(scores.argmax())
        last.bias[label] -= float(scores[label] - scores.topk(2).values[1]) - margin
    (result,) = Verifier(model, budget=None, max_boxes=20_000).verify(
        image, torch.tensor([label]), stop_at_first=False)
    return image, label, result


def assert_verdicts_hold(model: nn.Module, image: torch.Tensor, label: int, result,
                         seed: int) -> None:
    """No position proved robust is fooled by a dense grid of colors and random ones;
    every witness fools the model."""
    width = image.shape[-1]
    grid = torch.linspace(0, 1, 9)
    colors = torch.cat([torch.cartesian_prod(grid, grid, grid),
                        torch.rand(200, 3, generator=torch.Generator().manual_seed(seed))])
    for p, verdict in enumerate(result.positions.status):
        if verdict == "robust":
            genes = torch.cat([torch.tensor([[float(p % width), float(p // width)]]).expand(
                len(colors), 2), colors], 1)[:, None]
            with torch.no_grad():
                predicted = model(perturb_rows(image, torch.zeros(len(colors),
                                                                  dtype=torch.long), genes))
            assert (predicted.argmax(1) == label).all(), p
        elif verdict == "vulnerable":
            genes = torch.tensor([[[float(p % width), float(p // width),
                                    *result.positions.witness[p].tolist()]]])
            with torch.no_grad():
                assert int(model(perturb_rows(image, torch.zeros(1, dtype=torch.long),
                                              genes)).argmax()) != label


class SelfAttention(nn.Module):
    """Self-attention over the pixels' features (``F.scaled_dot_product_attention``: a
    softmax, products of two varying values), a residual, the tokens averaged and a
    final log-softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 4, 3, padding=1)
        self.q, self.k, self.v = (nn.Linear(4, 4) for _ in range(3))
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = t + torch.nn.functional.scaled_dot_product_attention(self.q(t), self.k(t),
                                                                 self.v(t))
        return torch.log_softmax(self.fc(t.mean(1)), dim=1)


class TimmSelfAttention(nn.Module):
    """timm's attention layout: one ``qkv`` projection reshaped to ``[B, N, 3, H, d]``,
    permuted ``(2, 0, 3, 1, 4)`` (the batch axis second) and unbound; the tokens
    averaged, ``F.normalize``-d and scaled by a learned temperature (a cosine head)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 4, 3, 2, 1)  # 9 tokens of 4 features, 2 heads
        self.qkv, self.proj = nn.Linear(4, 12), nn.Linear(4, 4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)
        b, n, c = t.shape
        q, k, v = self.qkv(t).reshape(b, n, 3, 2, 2).permute(2, 0, 3, 1, 4).unbind(0)
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        t = t + self.proj(o.transpose(1, 2).reshape(b, n, c))
        return self.fc(4 * torch.nn.functional.normalize(t.mean(1), dim=-1))


@pytest.mark.parametrize("net, seed, margin", [(SelfAttention, 0, 0.02),
                                               (SelfAttention, 1, 0.01),
                                               (TimmSelfAttention, 0, 0.02)],
                         ids=["attention-0", "attention-1", "timm"])
def test_an_attention_network_is_decided_and_every_verdict_holds(net, seed, margin):
    """Self-attention (softmax, products of queries and keys, of weights and values) and
    a final log-softmax, or timm's layout (a permutation that moves the batch axis, then
    unbound) and a normalised head: with the clean margin set small, every position is
    decided over its whole color cube, robust or vulnerable, and each verdict holds."""
    torch.manual_seed(seed)
    model = net().eval()
    image, label, result = decided_with_a_small_margin(model, model.embed, model.fc, seed,
                                                       margin)
    status = result.positions.status
    assert "unknown" not in status and "robust" in status and "vulnerable" in status
    assert_verdicts_hold(model, image, label, result, seed)


class _ConstantBeside(nn.Module):
    """A constant laid out as a varying value (``p.expand_as(h)``), stacked beside it (a
    review: a raw size mismatch in the bounds, and the screen refused it as moving the
    batch axis)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.p = nn.Parameter(torch.randn(1, 4, 4, 4))
        self.fc = nn.Linear(128, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        return self.fc(torch.stack([self.p.expand_as(h), h], 2).flatten(1))


@pytest.mark.parametrize("screen", [None, False], ids=["screened", "bounds"])
def test_a_constant_stacked_beside_a_varying_value_is_verified(screen):
    torch.manual_seed(0)
    model, image = _ConstantBeside().eval(), torch.rand(1, 3, 4, 4)
    label = model(image).argmax(1)
    (result,) = Verifier(model, budget=None, screen=screen).verify(image, label,
                                                                  stop_at_first=False)
    assert "unknown" not in result.positions.status
    assert_verdicts_hold(model, image, int(label), result, 0)


class _OneImageOnly(nn.Module):
    """Scores times their mean over the classes, broadcast as ``[B, K] * [B]``: right for a
    batch of one image only (a review: the verifier raised the model's own error)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.fc(x.flatten(1))
        return z * z.mean(1)


def test_a_model_that_runs_on_one_image_only_is_refused_in_one_line():
    model, image = _OneImageOnly().eval(), torch.rand(1, 3, 4, 4)
    label = model(image).argmax(1)
    with pytest.raises(ValueError, match="runs on one image but fails on a batch of 2 .*"
                       "as if the batch held one image"):
        Verifier(model, budget=5).verify(image, label)
    with pytest.raises(ValueError, match="runs on one image but fails on a batch of 9"):
        FastAttack(model, verify="off").run(image, label)


def test_bad_settings_and_inputs_are_refused():
    model = calm_net()
    with pytest.raises(ValueError, match="budget"):
        Verifier(model, budget=0)
    with pytest.raises(ValueError, match=r"finite number of seconds > 0 \(None: no limit\)"):
        Verifier(model, budget=math.inf)  # "no limit" is None (it was an OverflowError)
    with pytest.raises(ValueError, match="tolerance"):
        Verifier(model, tolerance=math.nan)
    # batch_boxes=-5 looped forever; 0 meant the default; 2.5 and True were boxes
    for name, value, error in (("batch_boxes", -5, ValueError), ("batch_boxes", 0, ValueError),
                               ("max_boxes", 2.5, TypeError), ("max_boxes", True, TypeError)):
        with pytest.raises(error, match=name):
            Verifier(model, **{name: value})
    image = torch.rand(1, 3, 6, 6)
    with pytest.raises(ValueError, match="nothing to verify"):
        Verifier(model).verify(image, torch.tensor([2]))

    class Sorted(nn.Module):
        def forward(self, x):
            return x.flatten(1).sort(1).values[:, :3]

    with pytest.raises(BoundUnsupportedError, match="sort"):
        Verifier(Sorted().eval()).verify(image, torch.tensor([0]))


@pytest.mark.parametrize(("orders", "message"), [
    (torch.arange(36), r"orders must be integer \[1, K\]"),
    (torch.arange(37)[None], r"K <= 36"),
    (torch.arange(36.0)[None], r"orders must be integer"),
    (torch.arange(36)[None] - 1, r"positions 0\.\.35"),
    (torch.arange(36)[None] + 1, r"positions 0\.\.35"),
    (torch.tensor([[0, 1, 1]]), "must not repeat a position"),
])
def test_orders_that_are_not_distinct_positions_are_refused(orders, message):
    model = calm_net()
    image = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match=message):
        Verifier(model).verify(image, torch.tensor([0]), orders=orders)


def test_a_subset_of_positions_is_decided_and_the_rest_left_unknown():
    model = calm_net()
    image = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    (result,) = Verifier(model, budget=None).verify(image, torch.tensor([0]),
                                                    orders=torch.tensor([[7, 30, 2]]))
    status = result.positions.status
    assert [status[p] for p in (7, 30, 2)] == ["robust"] * 3
    assert status.count("unknown") == 33 and not result.verified
    assert result.decided_by == "unknown" and result.lowest_bound is None
    assert result.verified_volume == pytest.approx(3 / 36)


# ------------------------------------------------------------------ in the fast attack
def test_fast_verify_proves_what_the_corners_certify_and_finds_what_they_miss():
    from pixelprior.search import FastAttack

    calm, grey = calm_net(), GreyPixel().eval()
    image = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    (row,) = FastAttack(calm, engine="full", verify="on").run(image, torch.tensor([0])).rows()
    assert row["decided_by"] == "verified" and row["verified"] and row["corner_certified"]
    assert row["verified_volume"] == 1.0 and row["lowest_bound"] is None and row["boxes"] >= 36
    out = FastAttack(grey, engine="full", verify="on").run(grey_image(), torch.tensor([0]))
    (row,) = out.rows()
    assert row["success"] and row["decided_by"] == "refine" and row["corner_certified"]
    assert not row["verified"] and (row["x"], row["y"]) == (3, 2)
    assert int(grey(out.adversarial).argmax()) == 1  # the witness fools the model
    (row,) = FastAttack(calm, engine="full").run(image, torch.tensor([0])).rows()
    assert row["decided_by"] == "verified"  # "auto" by default: a cheap box, verified
    (row,) = FastAttack(calm, engine="full", verify="off").run(image, torch.tensor([0])).rows()
    assert row["decided_by"] == "certificate" and not row["verified"]


def test_fast_verify_auto_skips_with_a_note_where_it_does_not_apply():
    from pixelprior.search import FastAttack

    class Sorted(nn.Module):
        def forward(self, x):
            return x.flatten(1).sort(1).values[:, :3] * 0 + torch.tensor([0.0, 0.0, 1.0])

    attack = FastAttack(Sorted().eval(), engine="full", verify="auto")
    image = torch.rand(1, 3, 4, 4) * 0.5
    (row,) = attack.run(image, torch.tensor([2])).rows()
    assert row["decided_by"] == "certificate" and not row["verified"]
    assert attack.note.startswith("verification skipped") and "sort" in attack.note
    with pytest.raises(BoundUnsupportedError):
        FastAttack(Sorted().eval(), engine="full", verify="on").run(image, torch.tensor([2]))
    with pytest.raises(ValueError, match="verify must be one of"):
        FastAttack(calm_net(), verify="sometimes")
    with pytest.raises(ValueError, match="targeted"):
        FastAttack(calm_net(), verify="on", targeted=True)


def test_fast_verify_is_the_same_bit_for_bit_on_a_second_run():
    from pixelprior.search import FastAttack

    image = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    make = lambda: FastAttack(calm_net(), engine="full", verify="on",  # noqa: E731
                              batch_invariant=True)
    strip = lambda rows: [{k: v for k, v in r.items() if "seconds" not in k}  # noqa: E731
                          for r in rows]
    assert strip(make().run(image, torch.tensor([0, 0])).rows()) == strip(
        make().run(image, torch.tensor([0, 0])).rows())


def test_boxes_past_the_symbol_bound_are_cut_unbounded_not_given_up(monkeypatch):
    """With room for fewer symbols than a whole-cube box of the calm net carries (35),
    those boxes are cut in 2^C unbounded until their pieces fit, and the image is still
    proved (the verdict without the bound); with room for none, the box budget ends it
    as unknown, never verified."""
    from pixelprior.search import verify as verify_module

    image = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    model = calm_net()
    label = torch.tensor([int(model(image).argmax(1))])
    free = Verifier(model, budget=None, deterministic=True, screen=False).verify(
        image, label)[0]
    monkeypatch.setattr(verify_module, "MAX_BOX_SYMBOLS", 20)
    tight = Verifier(model, budget=None, deterministic=True, screen=False).verify(
        image, label)[0]
    assert free.decided_by == tight.decided_by == "verified"
    assert tight.boxes > free.boxes  # more, smaller boxes
    monkeypatch.setattr(verify_module, "MAX_BOX_SYMBOLS", 0)
    (none,) = Verifier(model, budget=None, max_boxes=500, screen=False).verify(image, label)
    assert none.decided_by == "unknown" and not none.verified and none.boxes == 0


def test_boxes_as_large_as_one_past_the_symbol_bound_are_cut_without_a_call(monkeypatch):
    """Once a box alone is found past the symbol bound, the other boxes of its position
    as large as it are cut without a failed call each: one failed call of a single box
    per position and side, not one per box."""
    from pixelprior.search import verify as verify_module

    image = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    model = calm_net()
    label = torch.tensor([int(model(image).argmax(1))])
    monkeypatch.setattr(verify_module, "MAX_BOX_SYMBOLS", 20)
    verifier = Verifier(model, budget=None, deterministic=True, screen=False)
    failed = []
    margins = verifier.bounds.margins

    def counted(cache, owner, y, x, lo, hi, *args, **kwargs):
        try:
            return margins(cache, owner, y, x, lo, hi, *args, **kwargs)
        except verify_module.TooManySymbols:
            if len(y) == 1:
                failed.append((int(y[0]) * 6 + int(x[0]), float((hi - lo).max())))
            raise

    monkeypatch.setattr(verifier.bounds, "margins", counted)
    (result,) = verifier.verify(image, label)
    assert result.decided_by == "verified"
    assert failed and len(failed) == len(set(failed))


def test_box_levels_seldom_proved_are_halved_without_a_call_but_explored():
    from pixelprior.search.verify import EXPLORE, SKIP_TRIES, _Levels

    levels = _Levels()
    lo, hi = torch.zeros(3, 3).numpy(), torch.tensor([[1.0, 1, 1], [0.5, 1, 1],
                                                      [0.25, 0.5, 1]]).numpy()
    assert _Levels.of(lo, hi).tolist() == [0, 1, 3]
    small = torch.zeros(1, dtype=torch.bool).numpy()
    zero = torch.tensor([0]).numpy()
    assert not levels.skip(zero, small).any()  # no evidence yet
    levels.record(torch.zeros(SKIP_TRIES, dtype=torch.long).numpy(),
                  torch.zeros(SKIP_TRIES, dtype=torch.bool).numpy())
    decisions = [bool(levels.skip(zero, small)[0]) for _ in range(2 * EXPLORE)]
    assert decisions.count(False) == 2  # one in EXPLORE still bounded
    assert not levels.skip(zero, ~small).any()  # a box too small to halve: bounded
    assert not levels.skip(torch.tensor([1]).numpy(), small).any()  # other levels
    levels.record(zero, ~small)  # one proof in 17 tries: above the rate
    assert not levels.skip(zero, small).any()


def test_a_level_that_never_proves_is_skipped_and_the_verdict_is_unchanged(monkeypatch):
    """With an engine whose whole-cube bounds never prove (made looser: -inf, still
    sound), the whole cubes of the later positions are halved without a call, and the
    image is still proved: the same verdict as bounding every box, in fewer calls."""
    from pixelprior.search import verify as verify_module

    image = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    model = calm_net()
    label = torch.tensor([int(model(image).argmax(1))])

    def run(skip_tries: int) -> tuple:
        monkeypatch.setattr(verify_module, "SKIP_TRIES", skip_tries)
        whole_cubes = []
        verifier = Verifier(model, budget=None, deterministic=True, batch_boxes=4,
                            screen=False)
        margins = verifier.bounds.margins

        def loose(cache, owner, y, x, lo, hi, *args, **kwargs):
            bounds = margins(cache, owner, y, x, lo, hi, *args, **kwargs)
            whole = (hi - lo).prod(1) == 1
            whole_cubes.extend(whole.tolist())
            bounds.lower[whole] = -math.inf
            return bounds

        monkeypatch.setattr(verifier.bounds, "margins", loose)
        return verifier.verify(image, label)[0], whole_cubes

    skipping, calls = run(16)
    bounding, every = run(10**9)
    assert bounding.decided_by == skipping.decided_by == "verified"
    assert sum(every) == 36 and 16 <= sum(calls) < 36  # whole cubes bounded
    assert len(calls) < len(every)


def test_no_call_begins_that_one_box_would_carry_past_the_budget():
    """A box that takes seconds (a deep network's) is not begun where the time left
    before the budget's end (less the local search's share) is shorter than the last
    call's pace: the search gets its share, and the image ends on time."""
    import time
    from types import SimpleNamespace

    verifier = Verifier(calm_net(), budget=10.0)
    narrow = SimpleNamespace(symbols=30, row_elements=288)
    began = time.perf_counter() - 6.0  # 6 s spent, 5 s a box
    assert verifier._next_batch(1, 5.0, narrow, 64, began, cpu=True) == 0
    assert verifier._next_batch(1, 5.0, narrow, 64, began, cpu=True, reserve=0.1) == 0
    assert verifier._next_batch(1, 3.0, narrow, 64, began, cpu=True) == 1
    assert verifier._next_batch(1, 3.5, narrow, 64, began, cpu=True, reserve=0.1) == 0


def test_a_bound_call_past_the_images_deadline_stops_and_bounds_nothing(monkeypatch):
    """A call still running at the budget's end (less the search's share) stops between
    two operations (``OutOfTime``); its boxes go back unbounded, counted nowhere, and
    the image ends unknown on time with the local search run."""
    import time

    from pixelprior.scoring.cone.bounds import OutOfTime

    model = calm_net()
    image, label = grey_image(), torch.tensor([0])
    engine = Verifier(model, budget=None).bounds
    cache = engine.prepare(image)
    color = torch.full((1, 3), 0.5)
    with pytest.raises(OutOfTime):
        engine.margins(cache, torch.tensor([0]), torch.tensor([1]), torch.tensor([1]),
                       color, color, label, deadline=time.perf_counter() - 1)
    verifier = Verifier(model, budget=2.0, order="raster", screen=False)
    seen: list[float | None] = []

    def too_slow(run, lo, hi, position, deadline=None):
        seen.append(deadline)
        raise OutOfTime("past the deadline")

    monkeypatch.setattr(verifier, "_bound", too_slow)
    result = verifier.verify(image, label)[0]
    assert seen and all(d is not None for d in seen)
    assert result.decided_by == "unknown" and result.boxes == 0
    assert result.verified_volume == 0.0 and result.seconds < 3.0


def test_cpu_calls_are_sized_by_their_largest_tensors():
    """On the CPU a call's boxes keep its largest float64 tensors near CPU_CALL_BYTES
    (memory traffic bounds float64 convolutions there); elsewhere only the rows bound
    holds."""
    from types import SimpleNamespace

    from pixelprior.search.verify import CPU_CALL_BYTES, ROWS_PER_CALL

    image = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    model = calm_net()
    verifier = Verifier(model, budget=None, deterministic=True)
    cache = verifier.bounds.prepare(image)
    bounds = verifier.bounds.margins(cache, torch.zeros(2, dtype=torch.long),
                                     torch.tensor([1, 2]), torch.tensor([3, 4]),
                                     torch.zeros(2, 3), torch.ones(2, 3),
                                     torch.tensor([0, 0]))
    assert 0 < bounds.row_elements <= 4 * 6 * 6  # the widest relaxed value, per row
    wide = SimpleNamespace(symbols=424, row_elements=3136)
    assert verifier._next_batch(1, 0.1, wide, 64, 0.0, cpu=True) == max(
        1, CPU_CALL_BYTES // (8 * 425 * 3136))
    assert verifier._next_batch(1, 0.1, wide, 64, 0.0, cpu=False) == min(
        64, ROWS_PER_CALL // 425)
    narrow = SimpleNamespace(symbols=30, row_elements=288)
    assert verifier._next_batch(1, 0.1, narrow, 64, 0.0, cpu=True) == min(
        64, CPU_CALL_BYTES // (8 * 31 * 288))


def test_a_nan_bound_never_proves_a_position(monkeypatch):
    """An engine returning NaN (a model gone numerically wrong) proves nothing: boxes
    split to the smallest side stay unknown, never robust."""
    from pixelprior.search import verify as verify_module

    image = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    model = calm_net()
    label = torch.tensor([int(model(image).argmax(1))])
    monkeypatch.setattr(verify_module, "MIN_SIDE", 0.6)  # the whole cube's halves: stuck
    verifier = Verifier(model, budget=None, deterministic=True, screen=False)
    margins = verifier.bounds.margins

    def broken(*args, **kwargs):
        bounds = margins(*args, **kwargs)
        bounds.lower[:] = math.nan
        return bounds

    monkeypatch.setattr(verifier.bounds, "margins", broken)
    (result,) = verifier.verify(image, label, stop_at_first=False)
    assert result.decided_by == "unknown" and not result.verified
    assert set(result.positions.status) == {"unknown"}
    assert result.verified_volume == 0


def test_deciding_every_position_a_position_past_its_quota_waits_for_the_others():
    import numpy as np

    from pixelprior.search.verify import _Frontier

    frontier = _Frontier(np.arange(3), channels=1, quota=2)
    frontier.fill(10)
    assert frontier.active == 3
    assert frontier.pop(10)[2].tolist() == [0, 1, 2]  # every position's whole cube
    halves = np.array([[0.0], [0.25], [0.5], [0.75]])
    frontier.push(halves, halves + 0.25, np.zeros(4, dtype=np.int64), np.zeros(4))
    frontier.push(halves[:1], halves[:1] + 0.25, np.array([2]), np.zeros(1))
    assert frontier.pop(10)[2].tolist() == [0, 2]  # position 0 has 1 box of its quota left
    assert frontier.active == 0 and frontier.size == 3  # its 3 others wait
    frontier.fill(10)  # every position has had its share: the quota grows
    assert frontier.quota == 8 and frontier.pop(10)[2].tolist() == [0, 0, 0]
    unlimited = _Frontier(np.arange(1), channels=1)
    unlimited.fill(10)
    unlimited.pop(10)
    unlimited.push(halves, halves + 0.25, np.zeros(4, dtype=np.int64), np.zeros(4))
    assert unlimited.pop(10)[2].tolist() == [0, 0, 0, 0]  # stopping at the first witness


def test_the_frontiers_count_of_boxes_within_their_quota_stays_exact():
    """``active`` is kept as boxes come and go (pushed, popped, parked, dropped, the quota
    grown); it must equal a recount after every step."""
    import numpy as np

    from pixelprior.search.verify import _Frontier

    rng = np.random.default_rng(0)
    frontier = _Frontier(np.arange(6), channels=1, quota=3)

    def recount() -> int:
        return sum(sum(c[2].size for c in chunks) for p, chunks in frontier.open.items()
                   if frontier.spent[p] < frontier.quota)

    for _ in range(200):
        step = rng.integers(4)
        if step == 0:
            frontier.fill(int(rng.integers(1, 8)))
        elif step == 1 and frontier.active:
            frontier.pop(int(rng.integers(1, 6)))
        elif step == 2 and frontier.open:
            p = int(rng.choice(list(frontier.open)))
            n = int(rng.integers(1, 5))
            frontier.push(np.zeros((n, 1)), np.ones((n, 1)), np.full(n, p), np.zeros(n))
        elif step == 3 and frontier.open and rng.random() < 0.2:
            frontier.drop(np.array([int(rng.choice(list(frontier.open)))]))
        assert frontier.active == recount()
        assert frontier.size == sum(sum(c[2].size for c in ch) for ch in frontier.open.values())
    assert frontier.quota > 3 and frontier.admitted == 6  # every event happened


def test_deciding_every_position_the_fewest_boxes_spent_go_first():
    """Within a quota's stage the positions that have taken the fewest boxes are bound
    first (ties in the visiting order); stopping at the first witness, the order alone."""
    import numpy as np

    from pixelprior.search.verify import _Frontier

    def two_boxes(p: int) -> tuple:
        halves = np.array([[0.0], [0.5]])
        return halves, halves + 0.5, np.full(2, p, dtype=np.int64), np.zeros(2)

    frontier = _Frontier(np.array([2, 0, 1]), channels=1, quota=100)
    frontier.fill(10)
    frontier.pop(10)  # each whole cube: one box each
    frontier.push(*two_boxes(2))
    assert frontier.pop(2)[2].tolist() == [2, 2]  # position 2 has now taken 3
    for p in (2, 0, 1):
        frontier.push(*two_boxes(p))
    assert frontier.pop(4)[2].tolist() == [0, 0, 1, 1]  # 1 box each so far, in order
    assert frontier.pop(4)[2].tolist() == [2, 2]
    unlimited = _Frontier(np.array([2, 0, 1]), channels=1)
    unlimited.fill(10)
    unlimited.pop(10)
    unlimited.push(*two_boxes(2))
    unlimited.pop(2)
    for p in (2, 0, 1):
        unlimited.push(*two_boxes(p))
    assert unlimited.pop(4)[2].tolist() == [2, 2, 0, 0]  # the visiting order alone


class RedPixel(nn.Module):
    """Class 1 iff the red of pixel (y0, x0) exceeds 0.95: the red corners of the color
    cube fool it there, and nothing fools it anywhere else."""

    def __init__(self, size: int = 6, y0: int = 2, x0: int = 3) -> None:
        super().__init__()
        self.score = nn.Linear(3 * size * size, 2)
        with torch.no_grad():
            self.score.weight.zero_()
            self.score.weight[1, y0 * size + x0] = 10.0
            self.score.bias.copy_(torch.tensor([0.0, -9.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(x.flatten(1))


def test_a_corner_that_fools_is_a_witness_before_any_box():
    model, image = RedPixel().eval(), grey_image()
    first = Verifier(model, budget=None, max_boxes=1).verify(image, torch.tensor([0]))[0]
    assert first.decided_by == "fooled" and first.boxes == 0
    x, y, color = first.witness
    assert (x, y) == (3, 2) and color[0] == 1.0
    changed = perturb_rows(image, torch.zeros(1, dtype=torch.long),
                           torch.tensor([[[x, y, *color]]]))
    assert int(model(changed).argmax()) == 1  # the model confirms it
    exact = Verifier(model, budget=None).verify(image, torch.tensor([0]),
                                                stop_at_first=False)[0]
    status = exact.positions.status
    assert status[2 * 6 + 3] == "vulnerable" and exact.positions.boxes[2 * 6 + 3] == 0
    assert all(s == "robust" for p, s in enumerate(status) if p != 2 * 6 + 3)


def test_the_corner_pass_counts_in_the_budget():
    model, image = calm_net(), torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    verifier = Verifier(model, budget=1.0)
    original = verifier._corner_pass

    def slow(*args, **kwargs):  # a corner pass that takes the whole budget
        import time

        time.sleep(1.05)
        return original(*args, **kwargs)

    verifier._corner_pass = slow
    result = verifier.verify(image, torch.tensor([0]))[0]
    assert result.decided_by == "unknown" and result.boxes == 0 and result.seconds >= 1.05


@pytest.mark.parametrize(("images", "labels", "error", "message"), [
    (torch.rand(2, 3, 6, 6), torch.tensor([3, 0]), ValueError, r"labels must lie in 0\.\.2"),
    (torch.rand(2, 3, 6, 6), torch.tensor([-1, 0]), ValueError, r"labels must lie in 0\.\.2"),
    (torch.rand(2, 3, 6, 6), torch.tensor([0]), ValueError, r"labels must have shape \[2\]"),
    (torch.rand(1, 3, 6, 6).double(), torch.tensor([0]), TypeError, "must be float32"),
    (torch.rand(1, 6, 6, 3), torch.tensor([0]), ValueError, r"channels first\?"),
    (torch.rand(1, 3, 6, 6) + 1, torch.tensor([0]), ValueError, r"\[0, 1\]"),
])
def test_bad_images_and_labels_are_refused_before_any_work(images, labels, error, message):
    with pytest.raises(error, match=message):
        Verifier(calm_net()).verify(images, labels)


def test_a_half_precision_model_is_named_not_the_images_layout():
    with pytest.raises(ValueError, match=r"parameters are float16 and the images float32"):
        Verifier(calm_net().half()).verify(torch.rand(1, 3, 6, 6), torch.tensor([0]))


def test_a_corner_the_model_does_not_confirm_is_no_witness(monkeypatch):
    """The scan's engine may say a corner fools; only the model's own forward decides."""
    import pixelprior.search.verify as verify

    monkeypatch.setattr(verify, "confirm_witness", lambda *args: False)
    model, image = RedPixel().eval(), grey_image()
    result = Verifier(model, budget=None, max_boxes=4, search=False).verify(
        image, torch.tensor([0]))[0]
    assert not result.fooled and result.decided_by == "unknown"
    assert result.positions.status[2 * 6 + 3] == "unknown"  # never robust, never fooled


def test_the_first_corner_witness_leaves_the_other_positions_unknown():
    model, image = RedPixel().eval(), grey_image()
    result = Verifier(model, budget=None).verify(image, torch.tensor([0]))[0]
    status = result.positions.status
    assert status.count("vulnerable") == 1 and status.count("unknown") == 35
    assert "robust" not in status and result.verified_volume == 0


def test_an_image_the_model_gets_wrong_is_refused_before_the_corner_pass(monkeypatch):
    verifier = Verifier(RedPixel().eval())

    def never(*args, **kwargs):
        raise AssertionError("the corner pass ran")

    monkeypatch.setattr(verifier, "_corner_pass", never)
    with pytest.raises(ValueError, match="nothing to verify"):
        verifier.verify(grey_image(), torch.tensor([1]))


def test_exact_mode_with_orders_given_finds_the_witness_by_its_boxes():
    model, image = RedPixel().eval(), grey_image()
    order = torch.arange(36)[None]
    result = Verifier(model, budget=None).verify(image, torch.tensor([0]), orders=order,
                                                 stop_at_first=False)[0]
    assert result.positions.status[2 * 6 + 3] == "vulnerable"
    assert result.positions.boxes[2 * 6 + 3] > 0  # no corner pass: found by a box


def test_a_corner_pass_past_the_budget_still_confirms_its_first_witness(monkeypatch):
    model, image = RedPixel().eval(), grey_image()
    verifier = Verifier(model, budget=0.5)
    original = verifier._corner_scan

    def slow(*args, **kwargs):  # a corner scan that takes the whole budget
        import time

        time.sleep(0.6)
        return original(*args, **kwargs)

    monkeypatch.setattr(verifier, "_corner_scan", slow)
    result = verifier.verify(image, torch.tensor([0]))[0]
    assert result.decided_by == "fooled" and result.witness[:2] == (3, 2)


class _ScaledScores(nn.Module):
    """Class 1 leads class 0 in real arithmetic at every color of pixel (0, 0) (by 0.2
    at red 1/2, by 1.2 elsewhere), and the scores are scaled by ``scale``: by 2^-149 both
    round to float32's least subnormal near red 1/2 and tie (argmax: class 0); by 1e38
    both overflow to inf there (an audit's models: both were "verified")."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale
        self.pick = nn.Conv2d(3, 2, 1)
        self.head = nn.Linear(2 * 16, 2)
        with torch.no_grad():
            self.pick.weight.zero_()
            self.pick.bias.zero_()
            self.pick.weight[:, 0] = 1.0
            self.pick.bias[1] = -0.5
            self.head.weight.zero_()
            if scale < 1:  # 2.2 - 2 relu(r) + 4 relu(r - 1/2) against 1
                self.head.bias[:] = torch.tensor([1.0, 2.2])
                self.head.weight[1, 0], self.head.weight[1, 16] = -2.0, 4.0
            else:  # 4 relu(r) - 8 relu(r - 1/2) added to both: 2 and 3 apart by 1
                self.head.bias[:] = torch.tensor([2.0, 3.0])
                self.head.weight[:, 0], self.head.weight[:, 16] = 4.0, -8.0

    def forward(self, x):
        return self.head(torch.relu(self.pick(x)).flatten(1)) * self.scale


def test_scores_in_the_subnormal_range_are_not_verified():
    model = _ScaledScores(2.0**-149).eval()
    image = torch.zeros(1, 3, 4, 4)
    red = image.clone()
    red[0, 0, 0, 0] = 0.5
    assert model(image).argmax(1).item() == 1 and model(red).argmax(1).item() == 0
    (result,) = Verifier(model, budget=None, max_boxes=2000).verify(image, torch.tensor([1]))
    assert not result.verified
    if result.fooled:  # the witness is real
        x, y, color = result.witness
        genes = torch.tensor([[[float(x), float(y), *color]]])
        assert model(perturb_rows(image, torch.zeros(1, dtype=torch.long), genes)
                     ).argmax().item() == 0


def test_scores_that_may_overflow_are_refused():
    model = _ScaledScores(1e38).eval()
    image = torch.zeros(1, 3, 4, 4)
    red = image.clone()
    red[0, 0, 0, 0] = 0.5
    assert torch.isinf(model(red)).all() and model(red).argmax(1).item() == 0
    with pytest.raises(UnboundedRoundingError, match="within 2\\^28 of float32's largest"):
        Verifier(model, budget=None, max_boxes=2000).verify(image, torch.tensor([1]))


class _LargeNormed(nn.Module):
    """Features near 3·10¹⁸ normalised (``F.normalize``), or LayerNorm-ed: the kernels'
    squares overflow float32 at about 1.8·10¹⁹ where the values themselves do not (a
    review: ``F.normalize`` returned 0 at a color of the cube, a unit vector in real
    arithmetic, and the position was "verified")."""

    def __init__(self, layer_norm: bool = False) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 3, 1), nn.Linear(48, 2)
        self.norm = nn.LayerNorm(48) if layer_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = (1.0 + torch.relu(self.conv(x))).flatten(1) * 3e18
        return self.fc(self.norm(h) if self.norm is not None
                       else torch.nn.functional.normalize(h, dim=1))


@pytest.mark.parametrize("layer_norm", [False, True], ids=["normalize", "layer_norm"])
def test_norms_whose_squares_may_overflow_are_refused(layer_norm):
    torch.manual_seed(0)
    model, image = _LargeNormed(layer_norm).eval(), torch.rand(1, 3, 4, 4)
    assert torch.isfinite(model(image)).all()
    with pytest.raises(UnboundedRoundingError, match="a square or product a norm"):
        Verifier(model, budget=None, max_boxes=2000).verify(image, model(image).argmax(1))


def test_a_set_tolerance_does_not_verify_scores_that_may_overflow():
    """With ``tolerance=`` the float32 estimate was skipped, and the model above was
    "verified" at every position its screen did not float32-prove (a review's case)."""
    model, image = _ScaledScores(1e38).eval(), torch.zeros(1, 3, 4, 4)
    with pytest.raises(UnboundedRoundingError, match="no tolerance covers that"):
        Verifier(model, budget=None, max_boxes=2000, tolerance=1.0).verify(
            image, torch.tensor([1]))


class _TanhThenInplaceReLU(nn.Module):
    """tanh keeps its output for its backward pass, and the in-place ReLU after it writes
    into that output: autograd refuses the model's gradients, the bound engine runs the
    ReLU out of place."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act, self.relu = nn.Tanh(), nn.ReLU(inplace=True)
        self.head = nn.Linear(64, 3)
        with torch.no_grad():
            self.head.bias[0] += 20.0  # class 0 wherever the pixel goes

    def forward(self, x):
        return self.head(self.relu(self.act(self.conv(x))).flatten(1))


@pytest.mark.parametrize("tolerance", [None, 1e-3])
def test_an_in_place_activation_after_tanh_is_verified(tolerance):
    """The float32 estimate took gradients of the model as written: a RuntimeError from
    autograd ended the verifier (with a set tolerance too, once the overflow check ran
    there: a review's case). It now runs the in-place ReLU out of place."""
    model, image = _TanhThenInplaceReLU().eval(), torch.rand(1, 3, 4, 4)
    (result,) = Verifier(model, budget=None, max_boxes=300, tolerance=tolerance).verify(
        image, torch.tensor([0]))
    assert result.verified


def test_fast_skips_the_verifier_on_scores_that_may_overflow_unless_told_to_verify():
    model, image = _ScaledScores(1e38).eval(), torch.zeros(1, 3, 4, 4)
    attack = FastAttack(model, seed=0, verify="auto")
    steps = attack.run(image, torch.tensor([1])).results[0].steps
    assert steps["verified"] is False and steps["decided_by"] != "verified"
    assert attack.note.startswith("verification skipped for an image (verify='auto')")
    with pytest.raises(UnboundedRoundingError):
        FastAttack(model, seed=0, verify="on").run(image, torch.tensor([1]))


def test_the_screens_proof_counts_underflow_and_refuses_overflow():
    from pixelprior.scoring.cone.intervals import UNDERFLOW, Interval
    from pixelprior.scoring.cone.screen import IntervalScreen

    model = _ScaledScores(1.0).eval()
    screen = IntervalScreen(model)
    node = next(n for n in screen.graph.nodes if n.op == "call_module")
    error = torch.tensor([0.0, 1e-3, 0.0])
    out = Interval(torch.tensor([0.0, -1.0, 2.0**127]), torch.tensor([1e-40, 1.0, 2.0**127]))
    proved = screen.proved(node, error, 2.0**-24, out)
    assert proved[0] == UNDERFLOW and proved[1] > 1e-3 and math.isinf(proved[2])
    # without the value's bounds (the head, folded into the margins) its rounding's own
    # magnitude says how large the sums were: 2^110 of error is of sums past 2^127
    assert math.isinf(screen.proved(node, torch.tensor([2.0**110]), 2.0**-24)[0])
    # the float64 engine's own errors: float64's range, no float32 overflow or underflow
    assert screen.proved(node, torch.tensor([2.0**110]), 2.0**-53)[0] < math.inf
    assert screen.proved(node, torch.tensor([0.0]), 2.0**-53)[0] == 0


class _TestTimeCopies(nn.Module):
    """The mean of the scores of an image and a brightened copy, stacked on the batch
    axis: one image a row only at its ends (an audit's model: a RuntimeError deep in the
    bound engine)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                  nn.Linear(4 * 16, 3))

    def forward(self, x):
        both = torch.cat([x, 0.5 * x + 0.5], 0)
        return self.body(both).view(2, -1, 3).mean(0)


class _Centred(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(48, 3)

    def forward(self, x):
        return self.linear((x - x.mean()).flatten(1))


@pytest.mark.parametrize("model, error, phrase", [
    (_TestTimeCopies, BoundUnsupportedError, "cat.*computes across the batch axis"),
    (_Centred, ValueError, "change with the other images in its batch")])
def test_values_across_the_batch_axis_are_refused_naming_the_operation(model, error, phrase):
    """Test-time copies stacked on the batch axis keep each image's scores its own, and
    the bound engine refuses the concatenation; a mean over the whole batch does not,
    and the model is refused as batch-dependent first."""
    net, image = model().eval(), torch.rand(1, 3, 4, 4)
    label = net(image).argmax(1)
    with pytest.raises(error, match=phrase):
        Verifier(net, budget=None, max_boxes=100).verify(image, label)


def test_a_data_parallel_wrapper_is_named_with_what_to_give():
    """It was torch.fx's "Proxy object cannot be iterated" (an audit's case)."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(48, 3)).eval()
    image = torch.rand(1, 3, 4, 4)
    with pytest.raises(BoundUnsupportedError, match="wrapped in DataParallel.*give its .module"):
        Verifier(nn.DataParallel(net).eval(), budget=None).verify(image, net(image).argmax(1))


class _ChannelsOnTheBatchAxis(nn.Module):
    """Each channel as an image of its own (folded into the batch axis and back): each
    image's rows stay together, and the verifier bounds it (a review's case: refused)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.head = nn.Linear(3 * 2 * 16, 3)

    def forward(self, x):
        b = x.shape[0]
        return self.head(torch.relu(self.conv(x.reshape(b * 3, 1, 4, 4))).reshape(b, -1))


def test_channels_folded_into_the_batch_axis_and_back_are_bounded():
    net, image = _ChannelsOnTheBatchAxis().eval(), torch.rand(1, 3, 4, 4)
    (result,) = Verifier(net, budget=None, max_boxes=3000).verify(image, net(image).argmax(1))
    assert result.decided_by in ("verified", "fooled")


def test_the_verifier_lists_a_models_operations():
    """``Verifier.operations``: what ``verify --check`` prints, from the API (a model it
    bounds: no refusal, each operation's float32 column)."""
    from pixelprior.models import load_model

    listed = Verifier(load_model("convsmall-cifar10")).operations(torch.rand(1, 3, 32, 32))
    assert listed and all(o.refused is None for o in listed)
    assert {o.operation for o in listed} >= {"conv2d", "relu", "linear"}
    assert {o.float32 for o in listed} <= {"proved", "exact"}
