"""The models package's layout: small modules, every name it exported before the split
still exported, the old ``models.loaders`` path a warning shim, and one table of file
formats that the spec dispatch reads."""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import pixelprior.models as models
from pixelprior.models import formats, load_model_spec
from pixelprior.models.formats import FILE_FORMATS, BuiltModel, FileFormat

PACKAGE = Path(models.__file__).parent
# what ``from pixelprior.models import ...`` gave before loaders.py was split
EXPORTED_BEFORE = (
    "CIFAR10_MEAN", "CIFAR10_STD", "ChannelsLast", "Fire", "GradientsUnavailableError",
    "IMAGENET_MEAN", "IMAGENET_STD", "LoadedModel", "MODELS", "ModelInputError",
    "ModelLoadError", "ModelSpec", "Normalize", "Normalized", "OnnxModel", "REGISTRY",
    "ResizeInside", "SqueezeNet", "SqueezeNetCifar", "WEIGHTS_ENV", "WeightsError",
    "accuracy_on", "as_registered", "bundled_weights_path", "fold_batchnorm",
    "imagenet_class_names", "inference_model", "load_model", "load_model_spec",
    "model_card", "model_spec", "model_spec_problem", "one_class_warning", "output_kind",
    "predict", "predict_labels", "read_state_dict", "resolve_weights", "scores_agree",
    "to_model_channels", "weight_candidates",
)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_no_module_is_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= 400


def test_every_earlier_export_is_still_exported():
    missing = [name for name in EXPORTED_BEFORE if not hasattr(models, name)]
    assert not missing and set(EXPORTED_BEFORE) <= set(models.__all__)
    assert all(hasattr(models, name) for name in models.__all__)


def test_the_old_loaders_path_warns_and_still_works():
    sys.modules.pop("pixelprior.models.loaders", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaders = importlib.import_module("pixelprior.models.loaders")
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
    for name in loaders.__all__:
        assert getattr(loaders, name) is getattr(models, name, getattr(loaders, name))
    assert loaders.load_model_spec is load_model_spec


class Fixed(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3))], 1)


def load_fixed(path: Path, allow_pickle: bool, device: torch.device) -> BuiltModel:
    if path.read_bytes() != b"fixed":
        raise ValueError("not a fixed model")
    return BuiltModel(Fixed(), "pickle", str(path), ["a fixed model"], file=path)


def test_the_file_formats_table_is_what_the_dispatch_tries(tmp_path, monkeypatch):
    (tmp_path / "m.fixed").write_bytes(b"fixed")
    with pytest.raises(models.ModelLoadError) as error:
        load_model_spec(tmp_path / "m.fixed")
    assert "Fixed:" not in str(error.value)
    table = (FileFormat("Fixed", load_fixed, (".fixed",)), *FILE_FORMATS)
    monkeypatch.setattr(formats, "FILE_FORMATS", table)
    loaded = load_model_spec(tmp_path / "m.fixed", input_size=4)
    assert loaded.notes[0] == "a fixed model" and loaded.num_classes == 2
    (tmp_path / "junk.bin").write_bytes(b"junk")
    with pytest.raises(models.ModelLoadError) as error:
        load_model_spec(tmp_path / "junk.bin")
    assert str(error.value).count(":") >= len(table)
    for fmt in table:
        assert f"{fmt.label}:" in str(error.value)
