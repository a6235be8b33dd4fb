"""The watch over what a model's code reads beside its weights: class attributes, the
globals of its classes' functions (and of the functions they call in the same
package), closures; a change to any of them makes a verifier's copies anew."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from pixelprior import Verifier
from pixelprior.models import WeightsWatch

LIMIT = 2.0  # read by _clip, a helper forward calls: a global setting of the model
SHIFT = torch.zeros(1)  # a global tensor forward adds
SHARED = nn.Linear(1, 1)  # a module held globally, used in forward


def _clip(h: torch.Tensor) -> torch.Tensor:
    return h.clamp(-LIMIT, LIMIT)


class ClassLimited(nn.Module):
    """``score = 0.5 - 3 g + 3 clip(g)``, ``g = relu(1 - |4 red(0, 0) - 2|)`` a tent 0 at
    the clean red (0) and at the corners (0, 1): the clip's limits are reached only
    inside the color cube, so changing them leaves the clean scores (the traced copy's
    check) and every corner (the scorer's) as they were."""

    limit = 2.0  # a class attribute

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3 * 4 * 4, 1)
        with torch.no_grad():
            self.lin.weight.zero_()
            self.lin.weight[0, 0] = 4.0
            self.lin.bias.fill_(-2.0)

    def clipped(self, h: torch.Tensor) -> torch.Tensor:
        return h.clamp(-type(self).limit, type(self).limit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x.flatten(1))
        g = torch.relu(1 - torch.relu(h) - torch.relu(-h))
        score = 0.5 - 3 * g + 3 * self.clipped(g)
        return torch.cat([score, 0 * score], 1)


class GlobalLimited(ClassLimited):
    """The same, its limit the module's global ``LIMIT``, read by a helper function."""

    def clipped(self, h: torch.Tensor) -> torch.Tensor:
        return _clip(h)


def clean_image() -> torch.Tensor:
    image = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    image[0, 0, 0, 0] = 0.0
    return image


def assert_fooled_after(model: nn.Module, change) -> None:
    """Verified as made; fooled (by a real witness) once ``change`` ran."""
    image = clean_image()
    verifier = Verifier(model.eval(), budget=None, max_boxes=2000)
    assert verifier.verify(image, torch.tensor([0]))[0].verified
    change()
    (answer,) = verifier.verify(image, torch.tensor([0]))
    assert answer.fooled and not answer.verified
    x, y, color = answer.witness
    changed = image.clone()
    changed[0, :, y, x] = torch.tensor(color)
    with torch.no_grad():
        assert int(model(changed).argmax(1)) == 1


def test_a_reused_verifier_follows_a_changed_class_attribute(monkeypatch):
    assert_fooled_after(ClassLimited(),
                        lambda: monkeypatch.setattr(ClassLimited, "limit", 0.2))


def test_a_reused_verifier_follows_a_global_a_helper_function_reads(monkeypatch):
    assert_fooled_after(GlobalLimited(),
                        lambda: monkeypatch.setattr(sys.modules[__name__], "LIMIT", 0.2))


def test_the_watch_sees_methods_globals_closures_and_global_weights(monkeypatch):
    model = ClassLimited()
    watch = WeightsWatch(model)
    monkeypatch.setattr(ClassLimited, "clipped", lambda self, h: h)  # a method replaced
    assert watch.changed()
    watch.renew()

    class Shifted(ClassLimited):
        def forward(self, x):
            return super().forward(x) + SHIFT + 0 * SHARED(SHIFT[None]).sum()

    model = Shifted()
    watch = WeightsWatch(model)
    with torch.no_grad():
        SHIFT.data[0] = 1.0  # a global tensor written through .data
    assert watch.changed()
    watch.renew()
    with torch.no_grad():
        SHARED.weight.mul_(2.0)  # a module held globally: its weights
    assert watch.changed()
    watch.renew()
    scale = [1.0]

    class Closed(ClassLimited):
        def forward(self, x):
            return super().forward(x) * scale[0]

    model = Closed()
    watch = WeightsWatch(model)
    scale[0] = 2.0  # a value its closure holds
    assert watch.changed()


@pytest.mark.parametrize("module", [nn.ReLU(), nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU())])
def test_torchs_own_classes_are_not_followed(module):
    """torch's classes' attributes are read as the instances' settings; their code and
    globals are torch's, not the model's (and following them would cost every call)."""
    from pixelprior.models.watch import _code_reads

    settings, held = _code_reads(module)
    assert not settings and not held


clamp = ["an attribute's name, not a global the code loads"]


def test_attribute_names_are_not_taken_for_globals():
    """``h.clamp`` names ``clamp``; the module's global of that name is not read."""
    from pixelprior.models.watch import _code_reads

    settings, _ = _code_reads(GlobalLimited())
    read = {key[-1] for key in settings if key[0] == "global"}
    assert "LIMIT" in read and "_clip" in read and "clamp" not in read
