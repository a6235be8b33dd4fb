"""The watch over what a model's code reads beside its weights (class attributes,
globals anywhere, closures, partials, namespaces), seen in its torch.fx trace; a change
to any of them makes a verifier's copies anew."""

from __future__ import annotations

import sys

import torch
from helpers import assert_fooled_after
from torch import nn

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


def test_a_reused_verifier_follows_a_changed_class_attribute(monkeypatch):
    assert_fooled_after(ClassLimited(), clean_image(),
                        lambda: monkeypatch.setattr(ClassLimited, "limit", 0.2))


def test_a_reused_verifier_follows_a_global_a_helper_function_reads(monkeypatch):
    assert_fooled_after(GlobalLimited(), clean_image(),
                        lambda: monkeypatch.setattr(sys.modules[__name__], "LIMIT", 0.2))


def test_the_watch_sees_methods_globals_closures_and_constants_read_anywhere(
        monkeypatch, tmp_path):
    """A review: the code-reading watch missed a helper in a sibling module, an
    ``argparse.Namespace``, a ``functools.partial``, a module's constant, two closures of
    one factory (one key), a global numpy array; the trace sees what they compute."""
    import argparse
    import functools

    import numpy as np

    model = ClassLimited()
    watch = WeightsWatch(model)
    monkeypatch.setattr(ClassLimited, "clipped", lambda self, h: h)  # a method replaced
    assert watch.changed()
    monkeypatch.undo()
    (tmp_path / "sibling_helpers.py").write_text(
        "LIMIT = 2.0\n\n\ndef act(h):\n    return h.clamp(-LIMIT, LIMIT)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import sibling_helpers

    def limited(read):
        class Limited(ClassLimited):
            def clipped(self, h):
                return read(self, h)
        return Limited()

    settings = argparse.Namespace(limit=2.0)
    clip = functools.partial(torch.clamp, min=-2.0, max=2.0)
    table = np.array([2.0])
    first, second = [2.0], [2.0]

    def make_clip(limit):
        return lambda h: h.clamp(-limit[0], limit[0])

    clips = (make_clip(first), make_clip(second))
    cases = [
        (lambda self, h: sibling_helpers.act(h),
         lambda: setattr(sibling_helpers, "LIMIT", 0.2)),
        (lambda self, h: h.clamp(-settings.limit, settings.limit),
         lambda: setattr(settings, "limit", 0.2)),
        (lambda self, h: clip(h), lambda: clip.keywords.update(min=-0.2, max=0.2)),
        (lambda self, h: h.clamp(-float(table[0]), float(table[0])),
         lambda: table.__setitem__(0, 0.2)),
        (lambda self, h: clips[0](h) + 0 * clips[1](h), lambda: first.__setitem__(0, 0.2)),
        (lambda self, h: h + SHIFT, lambda: SHIFT.data.fill_(1.0)),  # a global tensor
    ]
    for read, change in cases:
        watch = WeightsWatch(limited(read))
        assert not watch.changed()  # the same trace again: no change
        change()
        assert watch.changed()


def test_a_forward_that_writes_state_or_fails_to_trace_is_watched_without_error():
    """Tracing runs forward on a copy: an attribute it writes is the copy's; a model
    torch.fx cannot trace (a module held in a global) has no traced copies to follow."""
    class Counting(ClassLimited):
        def forward(self, x):
            self.calls = getattr(self, "calls", 0) + 1
            return super().forward(x)

    model = Counting()
    watch = WeightsWatch(model)
    assert not watch.changed() and not hasattr(model, "calls")

    class Global(ClassLimited):
        def forward(self, x):
            return super().forward(x) + 0 * SHARED(x[:, :1, 0, 0]).sum()

    watch = WeightsWatch(Global())
    assert not watch.changed()


W = torch.tensor([1.0, 0.0, 0.0])  # a global weight read as a constant of the trace


def test_values_are_compared_exactly_whatever_their_type_and_size():
    """A review: float64 sums missed an int64 buffer written through ``.data``, a change
    beside a 10¹⁷ (rounded away) and changes of opposite signs (the sum and the
    position-weighted sum both kept)."""
    class Net(ClassLimited):
        def __init__(self):
            super().__init__()
            self.register_buffer("k", torch.tensor([3, 1]))
            self.register_buffer("big", torch.tensor([1.0, 1e17]))

        def forward(self, x):
            return super().forward(x) + 0 * (self.k.sum() + self.big[0]
                                             + (W * x[:, :, 0, 0]).sum())

    model = Net()
    for change in (lambda: model.k.data.__setitem__(0, 0),
                   lambda: model.big.data.__setitem__(0, 0.0),
                   lambda: W.copy_(torch.tensor([0.0, 2.0, -1.0]))):
        watch = WeightsWatch(model)
        assert not watch.changed()
        change()
        assert watch.changed()


def test_sign_flips_complex_and_quantized_values_are_seen():
    """A review: two float64 sign flips (2⁶³ each in the bits) cancelled in a weighted
    sum modulo 2⁶⁴, and complex or quantized tensors made the watch raise."""
    class Held(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("k", torch.tensor([2.0, 3.0], dtype=torch.float64))
            self.register_buffer("z", torch.tensor([1 + 2j, 3 - 1j]))
            self.register_buffer("q", torch.quantize_per_tensor(torch.tensor([0.5, 1.0]),
                                                                0.1, 0, torch.qint8))

        def forward(self, x):
            return x

    model = Held()
    for change in (lambda: model.k.data.neg_(), lambda: model.z.data.mul_(1j),
                   lambda: setattr(model, "q", torch.quantize_per_tensor(
                       torch.tensor([0.5, 1.0]), 0.2, 0, torch.qint8))):
        watch = WeightsWatch(model)
        assert not watch.changed()
        change()
        assert watch.changed()

