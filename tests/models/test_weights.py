"""Weights files as training code saves them: checkpoints (PyTorch Lightning's
``{"state_dict": ...}``, ``{"model_state_dict": ...}``, ``{"model": ...}``) and wrapper
prefixes (``module.`` of DataParallel, ``model.``) are unwrapped, and each unwrapping is
said in a note."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from torch import nn

from pixelprior.models import (
    WeightsError,
    load_model,
    load_model_spec,
    read_state_dict,
    unwrap_state_dict,
)

FACTORY = textwrap.dedent("""
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)))

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = Net()

        def forward(self, x):
            return self.model(x)

    def make():
        return Net()

    def make_wrapped():
        return Wrapped()
""")


@pytest.fixture
def nets(tmp_path, monkeypatch):
    (tmp_path / "ckptnets.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ckptnets", raising=False)
    import ckptnets

    yield ckptnets
    sys.modules.pop("ckptnets", None)


def prefixed(state: dict, prefix: str) -> dict:
    return {prefix + key: value for key, value in state.items()}


@pytest.mark.parametrize("wrap, said", [
    (lambda s: {"state_dict": prefixed(s, "model."), "epoch": 3, "global_step": 10},
     ["its 'state_dict' entry (also there: 'epoch', 'global_step')", "'model.' prefix"]),
    (lambda s: {"model_state_dict": s, "optimizer_state_dict": {"state": {}}},
     ["its 'model_state_dict' entry"]),
    (lambda s: {"model": prefixed(s, "module."), "epoch": 1},
     ["its 'model' entry", "'module.' prefix removed", "DataParallel"]),
    (lambda s: prefixed(prefixed(s, "model."), "module."),
     ["'module.' prefix removed", "'model.' prefix removed"]),
])
def test_checkpoints_load_as_weights_of_a_factory(nets, tmp_path, wrap, said):
    reference = nets.make()
    torch.save(wrap(reference.state_dict()), tmp_path / "ckpt.pt")
    loaded = load_model_spec("ckptnets:make", weights=tmp_path / "ckpt.pt")
    for text in said:
        assert any(text in note for note in loaded.notes), (text, loaded.notes)
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), reference(x))


def test_a_prefix_the_model_itself_has_is_kept(nets, tmp_path):
    reference = nets.make_wrapped()
    torch.save(reference.state_dict(), tmp_path / "wrapped.pt")  # keys model.conv...
    loaded = load_model_spec("ckptnets:make_wrapped", weights=tmp_path / "wrapped.pt")
    assert not any("prefix removed" in note for note in loaded.notes)
    notes: list[str] = []
    state = read_state_dict(tmp_path / "wrapped.pt", notes=notes)  # no model to compare
    assert set(state) == set(nets.make().state_dict()) and "'model.' prefix" in notes[0]


def test_the_file_refused_as_a_model_loads_as_its_weights(nets, tmp_path):
    checkpoint = {"state_dict": nets.make().state_dict(), "epoch": 3}
    torch.save(checkpoint, tmp_path / "last.ckpt")
    with pytest.raises(WeightsError, match="state dict .* no architecture.*--weights"):
        load_model_spec(tmp_path / "last.ckpt")
    assert load_model_spec("ckptnets:make", weights=tmp_path / "last.ckpt").num_classes == 3


def test_a_registered_model_takes_a_lightning_checkpoint(tmp_path):
    state = load_model("squeezenet1_1-cifar10").state_dict()
    torch.save({"state_dict": prefixed(state, "model."), "epoch": 30}, tmp_path / "l.ckpt")
    loaded = load_model_spec("squeezenet1_1-cifar10", weights=tmp_path / "l.ckpt")
    assert any("'state_dict' entry" in note for note in loaded.notes)
    notes: list[str] = []
    model = load_model("squeezenet1_1-cifar10", tmp_path / "l.ckpt", notes=notes)
    assert len(notes) == 2
    with pytest.warns(UserWarning, match="l.ckpt: a checkpoint.*'model.' prefix removed"):
        load_model("squeezenet1_1-cifar10", tmp_path / "l.ckpt")  # no notes: still said
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])


def test_no_state_dict_inside_says_what_the_file_holds(tmp_path):
    torch.save({"epoch": 3, "weights": [1, 2]}, tmp_path / "odd.pt")
    with pytest.raises(WeightsError) as error:
        read_state_dict(tmp_path / "odd.pt")
    message = str(error.value)
    assert "a dict of 2 entries ('epoch', 'weights')" in message
    assert "'state_dict' / 'model_state_dict' / 'model'" in message and "\n" not in message


def test_unwrap_state_dict_leaves_a_plain_state_dict_alone():
    state = nn.Linear(2, 2).state_dict()
    notes: list[str] = []
    assert unwrap_state_dict(state, state.keys(), notes) is state and notes == []
    assert unwrap_state_dict([1, 2]) is None
