"""Attacks, scans and verifiers made once and called again after the model's weights
changed in place (a training step between calls): every call is of the model as it is,
never of the copies made of its old weights."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_fooled_after
from torch import nn

from pixelprior import FastAttack, OnePixelAttack, SusceptibilityScan, Verifier
from pixelprior.models import WeightsWatch, weights_version
from pixelprior.scoring import make_scorer


class SmallBN(nn.Module):
    """Conv, BatchNorm (folded into the scorer's copy), ReLU, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.head = nn.Linear(6 * 36, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))).flatten(1))


def net_and_images(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = SmallBN().eval()
    images = torch.rand(6, 3, 6, 6)
    with torch.no_grad():
        labels = model(images).argmax(1)
    return model, images, labels


def step(model: nn.Module) -> torch.Tensor:
    """A "training step": the conv's weights and the BatchNorm's statistics changed in
    place."""
    torch.manual_seed(1)
    with torch.no_grad():
        model.conv.weight.mul_(6.0)
        model.bn.running_mean.add_(0.3 * torch.randn(6))


def test_the_watch_sees_in_place_changes_and_replaced_tensors():
    model = SmallBN()
    watch = WeightsWatch(model)
    assert not watch.changed() and weights_version(model) == watch.version
    with torch.no_grad():
        model.head.bias.add_(1.0)
    assert watch.changed()
    watch.renew()
    model.load_state_dict(SmallBN().state_dict())
    assert watch.changed()
    watch.renew()
    model.head.weight = nn.Parameter(model.head.weight.detach().clone())
    assert watch.changed()


@pytest.mark.parametrize("optimize", [True, False])
def test_a_reused_attack_attacks_the_changed_model(optimize):
    model, images, _ = net_and_images()
    attack = OnePixelAttack(model, popsize=20, maxiter=3, seed=0, optimize=optimize)
    with torch.no_grad():
        attack.run(images, model(images).argmax(1))
    step(model)
    with torch.no_grad():
        labels = model(images).argmax(1)
    reused = attack.run(images, labels)
    fresh = OnePixelAttack(model, popsize=20, maxiter=3, seed=0, optimize=optimize).run(
        images, labels)
    assert [(r.success, r.queries, r.true_probability) for r in reused.results] == [
        (r.success, r.queries, r.true_probability) for r in fresh.results]


def test_a_reused_fast_attack_and_verifier_prove_the_changed_model():
    model, images, labels = net_and_images()
    fast = FastAttack(model, verify="on", verify_boxes=2000)
    verifier = Verifier(model, budget=None, max_boxes=2000, deterministic=True)
    fast.run(images, labels)
    verifier.verify(images, labels)
    step(model)
    with torch.no_grad():
        labels = model(images).argmax(1)
    rows = [(r.success, r.steps["decided_by"], r.steps["verified"])
            for r in fast.run(images, labels).results]
    assert rows == [(r.success, r.steps["decided_by"], r.steps["verified"])
                    for r in FastAttack(model, verify="on", verify_boxes=2000).run(
                        images, labels).results]
    verdicts = [(v.decided_by, v.verified) for v in verifier.verify(images, labels)]
    assert verdicts == [(v.decided_by, v.verified) for v in Verifier(
        model, budget=None, max_boxes=2000, deterministic=True).verify(images, labels)]


def test_a_reused_scan_scans_the_changed_model():
    model, images, labels = net_and_images()
    scan = SusceptibilityScan(model, levels=2)
    scan(images, labels)
    step(model)
    with torch.no_grad():
        labels = model(images).argmax(1)
    assert torch.equal(scan(images, labels).min_margin,
                       SusceptibilityScan(model, levels=2)(images, labels).min_margin)


def test_a_given_scorer_of_the_old_weights_is_made_again_by_its_engine():
    model, images, labels = net_and_images()
    attack = OnePixelAttack(model, popsize=20, maxiter=2, seed=0,
                            engine=make_scorer(model, images, "full"))
    scan = SusceptibilityScan(model, levels=2, engine=make_scorer(model, images, "full"))
    attack.run(images, labels)
    scan(images, labels)
    step(model)
    with torch.no_grad():
        labels = model(images).argmax(1)
    rows = [(r.success, r.queries) for r in attack.run(images, labels).results]
    assert rows == [(r.success, r.queries) for r in OnePixelAttack(
        model, popsize=20, maxiter=2, seed=0, engine="full").run(images, labels).results]
    assert attack.engine == "full"
    assert torch.equal(scan(images, labels).min_margin, SusceptibilityScan(
        model, levels=2, engine="full")(images, labels).min_margin)


def test_a_write_through_data_is_a_change_and_the_models_own_writes_are_not():
    model, images, labels = net_and_images()
    watch = WeightsWatch(model)
    with torch.no_grad():
        model.conv.weight.data.add_(0.5)  # no version counter sees it
    assert watch.changed()

    class Counting(SmallBN):  # an observer's way: a buffer written by every forward
        def __init__(self):
            super().__init__()
            self.register_buffer("calls", torch.zeros(()))

        def forward(self, x):
            self.calls += 1
            return super().forward(x)

    torch.manual_seed(0)
    counting = Counting().eval()
    scorer = make_scorer(counting, images, "full")
    attack = OnePixelAttack(counting, popsize=20, maxiter=2, engine=scorer)
    with torch.no_grad():
        labels = counting(images).argmax(1)
    attack.run(images, labels)
    attack.run(images, labels)  # its own writes: not refused as changed weights


def test_the_scorer_asked_for_between_calls_is_of_the_changed_model():
    model, images, labels = net_and_images()
    attack = OnePixelAttack(model, popsize=20, maxiter=3, seed=0)
    attack.run(images, labels)
    before = attack.scorer(images)
    step(model)
    after = attack.scorer(images)
    assert after is not before
    with torch.no_grad():
        expected = model(images)
    assert torch.allclose(after.image_logits(images), expected, atol=1e-4)


def test_the_scorer_remade_between_calls_leaves_a_train_mode_model_as_it_was():
    """Remade outside a call, the scorer's checks run the model in eval mode as a call
    does: a model left in train mode keeps its BatchNorm statistics."""
    model, images, labels = net_and_images()
    attack = OnePixelAttack(model, popsize=20, maxiter=3, seed=0)
    attack.run(images, labels)
    step(model)
    model.train()
    before = (model.bn.running_mean.clone(), int(model.bn.num_batches_tracked))
    attack.scorer(images)
    assert torch.equal(model.bn.running_mean, before[0])
    assert int(model.bn.num_batches_tracked) == before[1] and model.training


class Clipped(nn.Module):
    """A score through a Hardtanh whose limits the clean image never reaches: changing
    them leaves the clean scores (the traced copy's check) as they were."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3 * 4 * 4, 1)
        with torch.no_grad():
            self.lin.weight.zero_()
            self.lin.weight[0, 0] = 2.0  # h = 2 red(0, 0) - 1
            self.lin.bias.fill_(-1.0)
        self.clip = nn.Hardtanh(-2.0, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x.flatten(1))
        score = 0.5 + 3 * h - 3 * self.clip(h)
        return torch.cat([score, 0 * score], 1)


def test_the_watch_sees_a_changed_setting_a_replaced_submodule_and_a_held_tensor():
    model = Clipped()
    watch = WeightsWatch(model)
    model.clip.max_val = 0.2
    assert watch.changed()
    watch.renew()
    model.clip = nn.Hardtanh(-2.0, 2.0)  # the same settings, another module
    assert watch.changed()
    watch.renew()
    model.scale = torch.ones(2)  # a tensor held as a plain attribute
    watch.renew()
    with torch.no_grad():
        model.scale.add_(1.0)
    assert watch.changed()
    watch.renew()
    model.forward = lambda x: Clipped.forward(model, x)  # a forward of the instance
    assert watch.changed()
    watch.renew()
    model.threshold = float("nan")
    watch.renew()
    assert not watch.changed()  # a NaN setting equals itself
    model.eval()
    assert not watch.changed()  # the mode is not a setting: every call switches it


@pytest.mark.parametrize("change", ["limits", "replaced"])
def test_a_reused_verifier_proves_the_model_with_its_changed_settings(change):
    """An audit: with the limits narrowed after the verifier was made, red 0 at (0, 0)
    gives label 1, but the bounds of the old limits said verified."""
    model = Clipped().eval()
    image = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    image[0, 0, 0, 0] = 0.5

    def narrowed():
        if change == "limits":
            model.clip.min_val, model.clip.max_val = -0.2, 0.2
        else:
            model.clip = nn.Hardtanh(-0.2, 0.2)

    assert_fooled_after(model, image, narrowed)


def test_an_attack_leaves_the_models_weights_and_settings_as_they_were():
    """No call changes what the watch sees (else every later call would make its copies
    again): the in-place activations the engines run out of place, the evaluation mode."""
    from pixelprior.models import load_model

    model = load_model("squeezenet1_1-cifar10").train()
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        labels = model.eval()(images).argmax(1)
    model.train()
    before = weights_version(model)
    FastAttack(model, verify="off").run(images, labels)
    SusceptibilityScan(model, levels=2)(images[:1], labels[:1])
    Verifier(model, budget=1.0).verify(images[:1], labels[:1])
    assert weights_version(model) == before and model.training


def test_a_hook_or_a_private_setting_added_after_the_verifier_is_seen():
    """A review: hooks and ``_``-named attributes were not watched, so a clamp hooked on
    after the verifier was made was bounded without it."""
    model = Clipped().eval()
    image = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    image[0, 0, 0, 0] = 0.5
    verifier = Verifier(model, budget=None, max_boxes=2000)
    assert verifier.verify(image, torch.tensor([0]))[0].verified
    handle = model.clip.register_forward_hook(lambda module, args, out: out.clamp(-0.2, 0.2))
    for _ in range(2):  # refused, and again: a refused change is not taken as followed
        with pytest.raises(Exception, match="forward hook"):
            verifier.verify(image, torch.tensor([0]))
    handle.remove()
    watch = WeightsWatch(model)
    model.clip._limit = 0.2
    assert watch.changed()


def test_storage_less_tensors_held_as_attributes_are_watched_without_their_pointer():
    model = Clipped()
    model.sparse = torch.eye(3).to_sparse()
    model.meta = torch.empty(2, device="meta")
    OnePixelAttack(model.eval(), popsize=4, maxiter=1)  # made (a sparse tensor has no
    watch = WeightsWatch(model)  # data pointer: it was an error)
    model.sparse = torch.eye(3).to_sparse()
    assert watch.changed()


def test_a_setting_the_forward_writes_and_the_user_changes_after_is_followed():
    """A review: a watch that left out what a call's own forward had written (a call
    counter; here a limit set on the first call) missed the user's later edit of it,
    and the reused verifier said verified where a color fools the model."""
    class Lazy(Clipped):
        def forward(self, x):
            if not getattr(self, "ready", False):
                self.clip.max_val, self.ready = 2.0, True
            return super().forward(x)

    model = Lazy().eval()
    image = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    image[0, 0, 0, 0] = 0.5
    verifier = Verifier(model, budget=None, max_boxes=2000)
    assert verifier.verify(image, torch.tensor([0]))[0].verified
    verifier.verify(image, torch.tensor([0]))
    model.clip.min_val, model.clip.max_val = -0.2, 0.2
    (answer,) = verifier.verify(image, torch.tensor([0]))
    assert answer.fooled and not answer.verified


def test_settings_inside_a_dict_or_a_namespace_and_lazy_modules_are_watched():
    """A review: a limit read from ``self.cfg["limit"]`` was watched by the dict's
    identity alone, and an uninitialised ``LazyLinear`` made the watch raise."""
    from types import SimpleNamespace

    model = Clipped()
    model.cfg, model.ns = {"limit": 0.2}, SimpleNamespace(limit=0.2)
    watch = WeightsWatch(model)
    model.cfg["limit"] = 1.0
    assert watch.changed()
    watch.renew()
    model.ns.limit = 1.0
    assert watch.changed()
    lazy = nn.Sequential(nn.Flatten(), nn.LazyLinear(3))
    watch = WeightsWatch(lazy)
    lazy(torch.rand(1, 3, 4, 4))  # materialised: a change
    assert watch.changed()


def test_values_moved_through_data_are_a_change():
    """A review: two rows of a weight swapped through ``.data`` kept its version counter
    and its sum, and the reused verifier said verified where a fresh one was fooled."""
    model = Clipped()
    watch = WeightsWatch(model)
    with torch.no_grad():
        model.lin.weight.data[0, [0, 5]] = model.lin.weight.data[0, [5, 0]].clone()
    assert watch.changed()
