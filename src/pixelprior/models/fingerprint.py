"""A model's fingerprint: the same bits give the same fingerprint, any changed weight
another (to notice a model replaced between the start of a run and its resume)."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import sys
import types
from pathlib import Path

import torch
from torch import nn

from ..data import sha256sum
from .formats import split_factory_spec
from .registry import REGISTRY
from .spec import FILE_KINDS, LoadedModel
from .wrappers import OnnxModel

__all__ = ["code_changed", "model_fingerprint", "same_model", "state_dict_digest"]

CODE = "+code:"  # a factory file's fingerprint: its tensors', then its code's
LAYERS = "+layers:"  # then its layer classes' files beside it, when it has any
ELSEWHERE = "+elsewhere:"  # then those in other folders (not installed), when any
IMPORTS = "+imports:"  # then other files that code imports names from, when any
OWN_PACKAGE = Path(__file__).resolve().parents[1]  # pixelprior's own code: its version's


def state_dict_digest(model: nn.Module) -> str:
    """SHA-256 of ``model``'s state dict: every tensor's name, dtype, shape and bytes,
    in name order.

    Args:
        model: any module (TorchScript included).

    Returns:
        64 hex digits.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}\0{data.dtype}\0{tuple(data.shape)}\0".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _spec_file(spec: str | None) -> Path | None:
    """The file a spec names, or ``None`` (a registered name, a factory, no spec)."""
    if spec is None or spec in REGISTRY:
        return None
    path = Path(spec).expanduser()
    return path if path.is_file() else None


def _files(subject: LoadedModel | nn.Module, spec: str | None) -> list[Path]:
    """The files whose bytes are the model, in order (none: hash its tensors)."""
    weights: list[Path] = []
    if isinstance(subject, LoadedModel):
        if spec is None:
            holds_all = subject.kind in FILE_KINDS and subject.file is not None
            return [subject.file] if holds_all else []  # type: ignore[list-item]
        weights = [subject.weights] if subject.weights is not None else []
    file = _spec_file(spec)
    if file is None and isinstance(subject, OnnxModel):
        file = Path(subject.path)
    return [file, *weights] if file is not None else []


def _factory_file(spec: object) -> Path | None:
    """The ``.py`` file of a ``file.py:callable`` spec, or ``None``."""
    parts = split_factory_spec(spec) if isinstance(spec, str) else None
    if parts is None or not parts[0].endswith(".py"):
        return None
    path = Path(parts[0]).expanduser()
    return path if path.is_file() else None


def _code_files(factory: Path, module: nn.Module
                ) -> tuple[list[Path], list[tuple[str, Path]]]:
    """The source files of the model's layer classes: the rest of the code that is the
    model. Those in the factory's folder or below (a ``layers.py`` beside ``model.py``),
    in name order; then those elsewhere (a folder on ``sys.path``, a checkout of the
    user's library), each with its module's name, in that order (a name, not a path: the
    same code in another folder is the same model). Classes of installed packages
    (torch, ..., also in a virtual environment inside that folder) are their versions',
    and pixelprior's own (its wrappers: ``Normalize``, ...) its version's, not the
    model's code."""
    folder = factory.resolve().parent
    installed = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    found: dict[Path, str] = {}
    for layer in module.modules():
        try:
            source = inspect.getsourcefile(type(layer))
        except TypeError:  # a built-in or C++ class: no source file
            continue
        if source is None:
            continue
        path = Path(source).resolve()
        if (path == factory.resolve() or not path.is_file() or _installed(path, installed)
                or path.is_relative_to(OWN_PACKAGE)):
            continue
        found[path] = type(layer).__module__
    beside = sorted(p for p in found if p.is_relative_to(folder))
    elsewhere = sorted((name, p) for p, name in found.items() if p not in beside)
    return beside, elsewhere


def _imported_files(counted: set[Path]) -> list[tuple[str, Path]]:
    """The other source files the model's code (the factory's and its layer classes'
    modules, ``counted``) imports names from, and those they import from, in turn: a
    helper function in ``utils.py`` is the model too. Each with its module's name, in name
    order; installed packages and pixelprior's own files left out, as for layers."""
    installed = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    seen = set(counted)
    queue = [module for module in list(sys.modules.values())
             if _module_file(module) in counted]
    found: list[tuple[str, Path]] = []
    while queue:
        importer = queue.pop()
        named = _import_statements(importer)  # followed whatever they are (constants too)
        held = [value for value in list(vars(importer).values())
                if not _submodule(value, importer)]
        for value in [*named, *held]:
            module = value if inspect.ismodule(value) else (
                sys.modules.get(getattr(value, "__module__", "") or "")
                if inspect.isclass(value) or inspect.isfunction(value) else None)
            path = _module_file(module)
            if (path is None or path in seen or path.suffix != ".py"
                    or _installed(path, installed) or path.is_relative_to(OWN_PACKAGE)):
                continue
            seen.add(path)
            found.append((module.__name__, path))  # type: ignore[union-attr]
            queue.append(module)
    return sorted(found)


def _import_statements(importer: types.ModuleType) -> list[types.ModuleType]:
    """The modules ``importer``'s own import statements name, as imported, where the name
    each binds in its namespace is what it imports now (so a statement inside a function,
    an ``if TYPE_CHECKING:`` block or a branch not taken names nothing, whatever else the
    process imported): ``import a.b`` names ``a`` and ``a.b``; ``from a import c`` names
    ``a``, or the module ``a.c`` where ``c`` is that module (relative forms resolved in its
    package). Read from its source, so a constant imported by name (``from sizes import
    WIDTH``) and a submodule reached as an attribute (``import pkg.sub``) count as what
    they are: code the model runs."""
    path = _module_file(importer)
    try:
        tree = ast.parse(path.read_bytes()) if path is not None else None
    except (OSError, SyntaxError, ValueError):
        return []
    bound, names = vars(importer), []
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Import):
            names += [name for alias in node.names for name in _imported(alias, bound)]
        elif isinstance(node, ast.ImportFrom):
            try:
                base = importlib.util.resolve_name("." * node.level + (node.module or ""),
                                                   importer.__package__ or "")
            except (ImportError, ValueError):  # a relative import outside a package
                continue
            names += [name for alias in node.names for name in _taken(base, alias, bound)]
    return [sys.modules[name] for name in dict.fromkeys(names)]


def _imported(alias: ast.alias, bound: dict) -> list[str]:
    """``import a.b.c [as x]``: the modules it names, if the name it binds is its own."""
    parts = alias.name.split(".")
    held = bound.get(alias.asname or parts[0], _MISSING)
    if held is not sys.modules.get(alias.name if alias.asname else parts[0]):
        return []
    chain = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return [name for name in chain if name in sys.modules]


def _taken(base: str, alias: ast.alias, bound: dict) -> list[str]:
    """``from base import c [as x]``: ``base.c`` where it is the module bound, else ``base``
    where its ``c`` is the value bound; nothing where neither (a star names nothing)."""
    held = bound.get(alias.asname or alias.name, _MISSING)
    if held is _MISSING:
        return []
    submodule = f"{base}.{alias.name}"
    if sys.modules.get(submodule) is held:
        return [submodule]
    source = sys.modules.get(base)
    return [base] if source is not None and getattr(source, alias.name, _MISSING) is held else []


_MISSING = object()


def _submodule(value: object, importer: types.ModuleType) -> bool:
    """Whether ``value`` is a submodule of the package ``importer``: the import system
    sets it there whoever imported it (another cell of a notebook, say), so following it
    would make the fingerprint depend on the process; the functions and classes the
    package itself takes from it are followed by their module."""
    return (inspect.ismodule(value) and hasattr(importer, "__path__")
            and value.__name__.startswith(importer.__name__ + "."))


def _module_file(module: object) -> Path | None:
    """A module's source file, resolved (``None``: none, a built-in or namespace)."""
    file = getattr(module, "__file__", None) if inspect.ismodule(module) else None
    if not isinstance(file, str):
        return None
    path = Path(file).resolve()
    return path if path.is_file() else None


def _installed(path: Path, prefixes: set[Path]) -> bool:
    """Whether a source file belongs to an installed package (a virtual environment in
    the factory's folder: torch's own layers are torch's version, not the model's code)."""
    return (any(part in ("site-packages", "dist-packages") for part in path.parts)
            or any(path.is_relative_to(prefix) for prefix in prefixes
                   if prefix != Path(prefix.anchor)))


def _code_digest(factory: Path, layers: tuple[list[Path], list[tuple[str, Path]]]) -> str:
    """The SHA-256 of the factory file's bytes, then (:data:`LAYERS`) one of its layer
    files' names (relative to its folder) and digests, when it has any, then
    (:data:`ELSEWHERE`) one of the layer files elsewhere (by module name), when any: a
    folder that recorded fewer parts still matches (:func:`same_model`); then
    (:data:`IMPORTS`) one of the other files that code imports from, when any."""
    digest = sha256sum(factory)
    beside, elsewhere = layers
    folder = factory.resolve().parent
    if beside:
        digest += LAYERS + _files_digest([(str(f.relative_to(folder)), f) for f in beside])
    if elsewhere:
        digest += ELSEWHERE + _files_digest(elsewhere)
    imported = _imported_files({factory.resolve(), *beside, *(p for _, p in elsewhere)})
    if imported:
        digest += IMPORTS + _files_digest(imported)
    return digest


def _files_digest(named: list[tuple[str, Path]]) -> str:
    """One SHA-256 of files' names and contents' digests."""
    lines = [f"{name}\0{sha256sum(path)}" for name, path in named]
    return hashlib.sha256(chr(10).join(lines).encode()).hexdigest()


def same_model(recorded: str, now: str) -> bool:
    """Whether a recorded fingerprint is the model's now: equal, or recorded before a
    factory's code (or its layer files) was fingerprinted: the part recorded equal, the
    rest not checked.

    Args:
        recorded: the fingerprint a folder recorded.
        now: :func:`model_fingerprint` now.

    Returns:
        ``True`` for the same model.
    """
    return recorded == now or any(part not in recorded and now.startswith(recorded + part)
                                  for part in (CODE, LAYERS, ELSEWHERE, IMPORTS))


def code_changed(recorded: str, now: str) -> bool:
    """Whether two fingerprints of a ``file.py:callable`` factory differ in its code
    alone (the same tensors).

    Args:
        recorded: the fingerprint a folder recorded.
        now: :func:`model_fingerprint` now.

    Returns:
        ``True`` where only the ``.py`` file changed.
    """
    tensors, _, code = recorded.partition(CODE)
    return bool(code) and now != recorded and now.startswith(tensors + CODE)


def model_fingerprint(loaded_or_module: LoadedModel | nn.Module, spec: str | None = None
                      ) -> str:
    """The fingerprint of a model: same bits, same fingerprint; any changed weight,
    another.

    When the spec names a model file (TorchScript, ONNX, a pickled module), the SHA-256
    of the file's bytes (then of the weights file's bytes too, when one was given);
    else (factories, registered names, a bare module) the SHA-256 of the state dict's
    tensors (:func:`state_dict_digest`), and for a ``file.py:callable`` factory then
    ``+code:`` and the SHA-256 of the ``.py`` file (its code is the model too: a
    changed activation keeps the weights), together with the files of the model's layer
    classes in the factory's folder or below, then those in other folders, then the
    other files that code imports functions, classes or whole modules from (a helper
    function in ``utils.py``, a constant from ``sizes.py``, ``import pkg.sub``: the
    modules its import statements name, read from its source). Code an installed package
    holds (its version's) and code reached only at run time (``importlib``, a file read
    by the factory) are not covered.

    Args:
        loaded_or_module: a :class:`~pixelprior.models.LoadedModel` (its own spec, file
            and weights are used) or a module.
        spec: the model spec it was loaded from (``None``: the loaded model's own, or
            none for a module).

    Returns:
        64 hex digits.

    Raises:
        OSError: the model file cannot be read.
    """
    files = _files(loaded_or_module, spec)
    if not files:
        module = (loaded_or_module.model if isinstance(loaded_or_module, LoadedModel)
                  else loaded_or_module)
        code = _factory_file(spec if spec is not None else getattr(loaded_or_module,
                                                                   "name", None))
        tensors = state_dict_digest(module)
        if code is None:
            return tensors
        return f"{tensors}{CODE}{_code_digest(code, _code_files(code, module))}"
    if len(files) == 1:
        return sha256sum(files[0])
    return hashlib.sha256("\0".join(sha256sum(f) for f in files).encode()).hexdigest()
