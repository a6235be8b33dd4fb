"""Model fingerprints: the same bits give the same fingerprint, any changed weight
another; a model file is fingerprinted by its bytes, any other model by its tensors."""

from __future__ import annotations

import hashlib
import importlib
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from pixelprior.models import (
    load_model,
    load_model_spec,
    model_fingerprint,
    state_dict_digest,
)


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(self.conv(x)).mean((2, 3)))


def nudged(model: nn.Module) -> nn.Module:
    """``model`` with one weight moved by one float32 step."""
    with torch.no_grad():
        weight = model.fc.weight
        weight[0, 0] = torch.nextafter(weight[0, 0], torch.tensor(1.0))
    return model


def test_a_torchscript_file_is_fingerprinted_by_its_bytes(torchscript_file):
    path = torchscript_file(Small().eval(), "a.pt")
    loaded = load_model_spec(path)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert model_fingerprint(loaded) == expected == model_fingerprint(loaded.model, str(path))
    assert model_fingerprint(load_model_spec(path)) == expected  # loaded again
    other = torchscript_file(nudged(Small().eval()), "b.pt")
    assert model_fingerprint(load_model_spec(other)) != expected


def test_a_pickled_module_is_fingerprinted_by_its_bytes(pickle_file):
    path = pickle_file(Small().eval())
    loaded = load_model_spec(path, allow_pickle=True)
    assert model_fingerprint(loaded) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_onnx_file_is_fingerprinted_by_its_bytes(tmp_path):
    pytest.importorskip("onnxruntime")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Small().eval(), torch.rand(1, 3, 8, 8), tmp_path / "s.onnx",
                          dynamo=False, opset_version=17)
    loaded = load_model_spec(tmp_path / "s.onnx")
    expected = hashlib.sha256((tmp_path / "s.onnx").read_bytes()).hexdigest()
    assert model_fingerprint(loaded) == expected == model_fingerprint(loaded.model)


def test_state_dict_digest_sees_every_weight_dtype_and_name():
    model = Small().eval()
    first = state_dict_digest(model)
    assert state_dict_digest(Small().eval()) == first  # same bits
    assert state_dict_digest(nudged(Small().eval())) != first
    with torch.no_grad():
        changed = Small().eval()
        changed.bn.running_var[1] += 1  # a buffer, not a parameter
    assert state_dict_digest(changed) != first
    assert state_dict_digest(Small().eval().double()) != first
    renamed = nn.Sequential(Small().eval())  # the same tensors under other names
    assert state_dict_digest(renamed) != first


FACTORY = textwrap.dedent("""
    import torch
    from torch import nn

    def make():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(4, 3))
""")


def test_a_factory_and_a_registered_model_are_fingerprinted_by_their_tensors(
        tmp_path, monkeypatch):
    (tmp_path / "fpnets.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fpnets", raising=False)
    loaded = load_model_spec("fpnets:make", input_size=8)
    assert model_fingerprint(loaded) == state_dict_digest(loaded.model)
    assert model_fingerprint(loaded) == model_fingerprint(loaded.model, "fpnets:make")
    torch.save(nudged_linear(loaded.model).state_dict(), tmp_path / "w.pt")
    with_weights = load_model_spec("fpnets:make", weights=tmp_path / "w.pt", input_size=8)
    assert model_fingerprint(with_weights) != model_fingerprint(
        load_model_spec("fpnets:make", input_size=8))
    sys.modules.pop("fpnets", None)

    registered = load_model_spec("squeezenet1_1-cifar10")
    bare = load_model("squeezenet1_1-cifar10")
    assert model_fingerprint(registered) == model_fingerprint(bare) == model_fingerprint(
        bare, "squeezenet1_1-cifar10")


def nudged_linear(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        model[3].bias[0] += 1e-3
    return model


ACT = ("import torch\nfrom torch import nn\n\n"
       "class Act(nn.Module):\n    def forward(self, x):\n        return torch.relu(x)\n")


def write_factory(path: Path, layers: str) -> str:
    """A ``make()`` factory at ``path`` whose net uses ``Act`` from module ``layers``;
    returns its spec."""
    path.write_text(
        f"import torch\nfrom torch import nn\nfrom {layers} import Act\n\n"
        "def make():\n    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), Act(), nn.AdaptiveAvgPool2d(1),\n"
        "                         nn.Flatten(), nn.Linear(4, 3))\n")
    return f"{path}:make"


def fresh_fingerprint(spec: str, *modules: str) -> str:
    """The spec's fingerprint with its modules imported anew (files changed since)."""
    for name in modules:
        sys.modules.pop(name, None)
    return model_fingerprint(load_model_spec(spec, input_size=8))


def layered_factory(monkeypatch, layer_file: Path, factory: Path
                    ) -> tuple[str, tuple[str, ...], str]:
    """``Act`` written to ``layer_file`` (its folder put on ``sys.path``), a factory using
    it at ``factory``: its spec, modules and fingerprint (the same when taken again)."""
    layer_file.write_text(ACT)
    spec = write_factory(factory, layer_file.stem)
    monkeypatch.syspath_prepend(str(layer_file.parent))
    modules = (layer_file.stem, factory.stem)
    before = fresh_fingerprint(spec, *modules)
    assert fresh_fingerprint(spec, *modules) == before
    return spec, modules, before


def changed_code(spec: str, modules: tuple[str, ...], layer_file: Path, before: str) -> str:
    """The fingerprint after ``layer_file``'s ReLU is made a Tanh (the same weights):
    checked to be another model whose code alone changed."""
    from pixelprior.models.fingerprint import code_changed
    layer_file.write_text(layer_file.read_text().replace("torch.relu", "torch.tanh"))
    after = fresh_fingerprint(spec, *modules)
    assert after != before and code_changed(before, after)
    for name in modules:
        sys.modules.pop(name, None)
    return after


def test_a_factorys_layer_classes_in_its_folder_are_its_code(tmp_path, monkeypatch):
    """A ``model.py`` building its net from ``layers.py`` beside it: a change in
    ``layers.py`` (a ReLU made a Tanh, the same weights) is a change of the model."""
    from pixelprior.models import same_model
    from pixelprior.models.fingerprint import CODE, LAYERS
    spec, modules, before = layered_factory(monkeypatch, tmp_path / "fplayers.py",
                                            tmp_path / "fpmodel.py")
    assert CODE in before
    after = changed_code(spec, modules, tmp_path / "fplayers.py", before)
    # a folder that recorded the factory file's digest alone (before its layer files
    # were fingerprinted) still resumes: that part is the same
    assert LAYERS in after and same_model(after.split(LAYERS)[0], after)


def test_a_factorys_layer_classes_in_another_folder_are_its_code_too(tmp_path, monkeypatch):
    """``model.py`` in one folder, its layer class in a library folder on ``sys.path``
    (not installed): a change there is a change of the model (it was not seen)."""
    from pixelprior.models import same_model
    from pixelprior.models.fingerprint import ELSEWHERE
    library, moved, project = tmp_path / "lib", tmp_path / "lib2", tmp_path / "project"
    for folder in (library, moved, project):
        folder.mkdir()
    spec, modules, before = layered_factory(monkeypatch, library / "fplib.py",
                                            project / "fpnet.py")
    assert ELSEWHERE in before
    (moved / "fplib.py").write_text(ACT)  # the same library in another folder: the same
    monkeypatch.syspath_prepend(str(moved))  # model
    assert fresh_fingerprint(spec, *modules) == before
    changed_code(spec, modules, moved / "fplib.py", before)
    # recorded before layer files elsewhere were fingerprinted: still the same model
    assert same_model(before.split(ELSEWHERE)[0], before)


def test_functions_a_factory_imports_from_another_file_are_its_code(tmp_path, monkeypatch):
    """``model.py`` whose layer calls ``act`` from ``fphelp.py`` (which calls ``fpdeep``'s
    ``inner``): a changed helper, however deep, is another model, and the installed
    packages it imports (torch) are not its code."""
    from pixelprior.models import same_model
    from pixelprior.models.fingerprint import IMPORTS, code_changed
    (tmp_path / "fpdeep.py").write_text("import torch\n\ndef inner(x):\n"
                                        "    return torch.relu(x)\n")
    (tmp_path / "fphelp.py").write_text("from fpdeep import inner\n\ndef act(x):\n"
                                        "    return inner(x)\n")
    (tmp_path / "fpuses.py").write_text(
        "import torch\nfrom torch import nn\nfrom fphelp import act\n\n"
        "class Act(nn.Module):\n    def forward(self, x):\n        return act(x)\n\n"
        "def make():\n    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), Act(), nn.AdaptiveAvgPool2d(1),\n"
        "                         nn.Flatten(), nn.Linear(4, 3))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec, modules = f"{tmp_path / 'fpuses.py'}:make", ("fphelp", "fpdeep")
    before = fresh_fingerprint(spec, *modules)
    assert IMPORTS in before and fresh_fingerprint(spec, *modules) == before
    assert same_model(before.split(IMPORTS)[0], before)  # recorded before: still resumes
    deep = tmp_path / "fpdeep.py"
    deep.write_text(deep.read_text().replace("torch.relu", "torch.tanh"))
    after = fresh_fingerprint(spec, *modules)
    assert after != before and code_changed(before, after)
    for name in modules:
        sys.modules.pop(name, None)


@pytest.mark.parametrize("changed", ["fpsizes.py", "fppkg/blocks.py"])
def test_constants_and_submodules_a_factory_imports_are_its_code(tmp_path, monkeypatch,
                                                                 changed):
    """A width imported by name (``from fpsizes import WIDTH``) and a package's submodule
    reached as its attribute (``import fppkg.blocks``): neither is a function or class
    the factory holds, and a change in either is another model."""
    from pixelprior.models.fingerprint import IMPORTS
    (tmp_path / "fpsizes.py").write_text("WIDTH = 4\n")
    (tmp_path / "fppkg").mkdir()
    (tmp_path / "fppkg" / "__init__.py").write_text("")
    (tmp_path / "fppkg" / "blocks.py").write_text(
        "import torch\n\ndef act(x):\n    return torch.relu(x)\n")
    (tmp_path / "fpconst.py").write_text(
        "import torch\nfrom torch import nn\nimport fppkg.blocks\n"
        "from fpsizes import WIDTH\n\n"
        "class Act(nn.Module):\n    def forward(self, x):\n"
        "        return fppkg.blocks.act(x)\n\n"
        "def make():\n    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Conv2d(3, WIDTH, 3), Act(), nn.AdaptiveAvgPool2d(1),\n"
        "                         nn.Flatten(), nn.Linear(WIDTH, 3))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec, modules = f"{tmp_path / 'fpconst.py'}:make", ("fpsizes", "fppkg", "fppkg.blocks")
    before = fresh_fingerprint(spec, *modules)
    assert IMPORTS in before and fresh_fingerprint(spec, *modules) == before
    edited = tmp_path / changed
    edited.write_text(edited.read_text().replace("relu", "tanh").replace("# ", "") + "# v2\n")
    assert fresh_fingerprint(spec, *modules) != before
    for name in modules:
        sys.modules.pop(name, None)


def test_imports_the_factory_does_not_make_leave_the_fingerprint_alone(tmp_path, monkeypatch):
    """An import under ``if TYPE_CHECKING:`` or inside a function not called names no
    code of the model: whether the process imported that module otherwise (a notebook
    that trained the net) does not change the fingerprint."""
    (tmp_path / "fptrainer.py").write_text("STEPS = 3\n")
    (tmp_path / "fptyped.py").write_text(
        "from typing import TYPE_CHECKING\nimport torch\nfrom torch import nn\n"
        "if TYPE_CHECKING:\n    from fptrainer import STEPS\n\n"
        "def later():\n    import fptrainer\n    return fptrainer.STEPS\n\n"
        "def make():\n    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1),\n"
        "                         nn.Flatten(), nn.Linear(4, 3))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = f"{tmp_path / 'fptyped.py'}:make"
    alone = fresh_fingerprint(spec, "fptyped", "fptrainer")
    importlib.import_module("fptrainer")
    assert fresh_fingerprint(spec, "fptyped") == alone
    sys.modules.pop("fptrainer", None)


def test_pixelprior_s_own_wrappers_are_not_a_factorys_code(tmp_path):
    """``--mean``/``--std`` wrap the factory's net in pixelprior's ``Normalize``: its file
    (in an editable checkout, outside any installed package) is pixelprior's version,
    not the model's code, and must not tie the fingerprint to where pixelprior lives."""
    from pixelprior.models.fingerprint import ELSEWHERE
    (tmp_path / "fpplain.py").write_text(
        "import torch\nfrom torch import nn\n\n"
        "def make():\n    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1),\n"
        "                         nn.Flatten(), nn.Linear(4, 3))\n")
    spec = f"{tmp_path / 'fpplain.py'}:make"
    loaded = load_model_spec(spec, input_size=8, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    assert ELSEWHERE not in model_fingerprint(loaded)
    sys.modules.pop("fpplain", None)


def test_installed_packages_inside_the_factorys_folder_are_not_its_code(tmp_path):
    """A virtual environment in the project folder put torch's own conv.py into the
    model's code: a torch upgrade would have read as a changed model."""
    from torch import nn as torch_nn

    from pixelprior.models.fingerprint import _code_files
    root = Path(torch_nn.__file__).resolve().parents[3]  # above torch/ (site-packages)
    files = _code_files(root / "my_model.py", nn.Sequential(nn.Conv2d(3, 4, 3)))
    assert files == ([], [])
