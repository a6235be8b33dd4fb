"""The local search for witnesses: it finds a witness inside the cube that no corner
reaches, every witness it returns fools the model alone, and it proves nothing: a
deadline past, a model without a witness or one returning NaN give none; the verifier
runs it where its bounds leave positions open, and only under a time budget where they
never reached."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from test_verify import TARGET, GreyPixel, calm_net, grey_image
from torch import nn

from pixelprior.scoring import perturb_rows
from pixelprior.search.local import LocalSearch, confirm_witness, cube_corners
from pixelprior.search.verify import Verifier

GREY = 2 * 6 + 3  # GreyPixel's position


def corner_starts(count: int) -> np.ndarray:
    return np.repeat(cube_corners(3)[None], count, 0)


def fools(model: nn.Module, image: torch.Tensor, position: int, color: list[float]) -> bool:
    genes = torch.tensor([[float(position % 6), float(position // 6), *color]])
    return confirm_witness(model, image, 0, genes)


def test_the_corners_of_the_cube():
    corners = cube_corners(3)
    assert corners.shape == (8, 3)
    assert {tuple(c) for c in corners.tolist()} == {
        (a, b, c) for a in (0.0, 1.0) for b in (0.0, 1.0) for c in (0.0, 1.0)}
    assert cube_corners(1).tolist() == [[0.0], [1.0]]


def test_finds_the_witness_inside_the_cube_from_its_corners_and_only_there():
    model, image = GreyPixel().eval(), grey_image()
    positions = np.array([0, GREY, 35])
    found = LocalSearch(model)(image, 0, positions, corner_starts(3))
    assert set(found.witnesses) == {GREY}
    color = found.witnesses[GREY]
    assert sum(abs(c - t) for c, t in zip(color, TARGET, strict=True)) < 0.1
    assert fools(model, image, GREY, color)
    assert found.searched == 3 and found.queries > 3 * 8


def test_every_witness_fools_the_model_alone():
    """A random small CNN with many witnesses: each one returned is confirmed."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 36, 3)).eval()
    image = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(4))
    label = int(model(image).argmax())
    found = LocalSearch(model, rows=40)(image, label, np.arange(36), corner_starts(36))
    assert found.witnesses  # this net is fragile
    owner = torch.zeros(1, dtype=torch.long)
    for position, color in found.witnesses.items():
        genes = torch.tensor([[[float(position % 6), float(position // 6), *color]]])
        assert int(model(perturb_rows(image, owner, genes)).argmax()) != label
    first = LocalSearch(model, rows=40)(image, label, np.arange(36), corner_starts(36),
                                        stop_at_first=True)
    assert 1 <= len(first.witnesses) <= len(found.witnesses) and first.searched < 36


def test_a_past_deadline_a_robust_net_or_nan_scores_give_no_witness():
    model, image = GreyPixel().eval(), grey_image()
    past = LocalSearch(model)(image, 0, np.array([GREY]), corner_starts(1),
                              deadline=time.perf_counter() - 1)
    assert past.witnesses == {} and past.searched == 0 and past.queries == 0
    calm = calm_net()
    robust = LocalSearch(calm)(image, 0, np.arange(36), corner_starts(36))
    assert robust.witnesses == {} and robust.searched == 36

    class Broken(nn.Module):
        def forward(self, x):
            return model(x) * torch.nan

    broken = LocalSearch(Broken())(image, 0, np.array([GREY]), corner_starts(1))
    assert broken.witnesses == {}


def test_runs_inside_inference_mode_and_refuses_no_steps():
    model = GreyPixel().eval()
    with torch.inference_mode():
        image = grey_image()
        found = LocalSearch(model)(image, 0, np.array([GREY]), corner_starts(1))
    assert set(found.witnesses) == {GREY}
    with pytest.raises(ValueError, match="steps"):
        LocalSearch(model, steps=0)


def test_the_verifier_searches_the_positions_its_budget_left_open():
    """Cut by its boxes before it splits the grey position down to its witness, the
    verifier searches the positions left open: the image is fooled, not unknown."""
    grey_last = torch.tensor([p for p in range(36) if p != GREY] + [GREY])[None]
    model, image, label = GreyPixel().eval(), grey_image(), torch.tensor([0])
    settings = dict(budget=None, max_boxes=40, batch_boxes=8)
    (bounds_only,) = Verifier(model, search=False, **settings).verify(
        image, label, orders=grey_last)
    assert bounds_only.decided_by == "unknown" and bounds_only.searched == 0
    assert bounds_only.positions.boxes[GREY] > 0  # reached, not decided
    (searched,) = Verifier(model, **settings).verify(image, label, orders=grey_last)
    assert searched.decided_by == "fooled" and searched.search_witnesses == 1
    assert searched.witness[:2] == (3, 2) and fools(model, image, GREY, searched.witness[2])
    assert searched.positions.status[GREY] == "vulnerable"
    assert searched.boxes == bounds_only.boxes  # the search bounds nothing


def test_positions_never_reached_are_searched_only_under_a_time_budget():
    grey_last = torch.tensor([p for p in range(36) if p != GREY] + [GREY])[None]
    model, image, label = GreyPixel().eval(), grey_image(), torch.tensor([0])
    (boxes_only,) = Verifier(model, budget=None, max_boxes=8, batch_boxes=8).verify(
        image, label, orders=grey_last, stop_at_first=False)
    assert boxes_only.positions.boxes[GREY] == 0
    assert boxes_only.positions.status[GREY] == "unknown"
    (timed,) = Verifier(model, budget=600.0, max_boxes=8, batch_boxes=8).verify(
        image, label, orders=grey_last, stop_at_first=False)
    assert timed.positions.boxes[GREY] == 0  # never bounded, yet fooled
    assert timed.positions.status[GREY] == "vulnerable"
    assert timed.search_witnesses == 1 and timed.searched > boxes_only.searched


def test_a_model_that_detaches_its_input_has_its_starts_scored_without_an_error():
    """No gradient reaches the color: the search scores its starts and moves nowhere."""
    model = GreyPixel().eval()

    class Detached(nn.Module):
        def forward(self, x):
            return model(x.detach())

    image = grey_image()
    found = LocalSearch(Detached())(image, 0, np.array([GREY]), corner_starts(1))
    assert found.witnesses == {} and found.searched == 1  # no corner fools it
    target = np.array([[TARGET]])
    hit = LocalSearch(Detached())(image, 0, np.array([GREY]), target)
    assert set(hit.witnesses) == {GREY}


def test_scores_that_are_not_finite_confirm_no_witness():
    """A NaN would win the argmax: a label "changed" by NaN scores is no witness."""
    model = GreyPixel().eval()

    class HalfNaN(nn.Module):
        def forward(self, x):
            scores = model(x).clone()
            scores[:, 1] = torch.nan
            return scores

    genes = torch.tensor([[3.0, 2.0, *TARGET]])
    assert confirm_witness(model, grey_image(), 0, genes)  # the real witness
    assert not confirm_witness(HalfNaN(), grey_image(), 0, genes)
    assert not confirm_witness(HalfNaN(), grey_image(), 0, torch.tensor([[0.0, 0.0, 0, 0, 0]]))


def test_a_time_budget_hands_the_bounds_what_the_search_leaves(monkeypatch):
    """Under a time budget the bounds stop when its reserved share is left (here almost
    all of it), the search finds the grey pixel's witness, and the bounds go on with
    the rest: every other position is proved, the grey one never bounded."""
    from pixelprior.search import verify as verify_module

    monkeypatch.setattr(verify_module, "SEARCH_SHARE", 0.99999)
    grey_last = torch.tensor([p for p in range(36) if p != GREY] + [GREY])[None]
    model, image = GreyPixel().eval(), grey_image()
    (result,) = Verifier(model, budget=120.0).verify(image, torch.tensor([0]),
                                                      orders=grey_last, stop_at_first=False)
    assert result.search_witnesses == 1 and result.searched >= 1
    assert result.positions.status[GREY] == "vulnerable"
    assert result.positions.boxes[GREY] == 0  # decided by the search: never entered after
    assert result.positions.status.count("robust") == 35  # the bounds went on
    assert result.seconds < 120.0
