"""One configuration shape from the command line to the runner to the attack.

(Over 400 lines: one schema, every field of an experiment, with its checks, kept whole.)

:class:`ExperimentConfig` holds everything that defines an experiment. It is built from
three layers, each overriding the one before (:meth:`ExperimentConfig.build`):

1. the defaults below (the paper's settings);
2. a ``--config`` file (TOML or JSON; unknown keys are an error);
3. the options actually given on the command line (an option not given never overrides
   the file).

The whole configuration — types, ranges, names, files it points at, the device — is
checked by :meth:`ExperimentConfig.validate` before anything is written, and every problem
is named in one message. ``config.json`` records exactly what ran. Attacks are built from
a config in one place (:func:`pixelprior.experiment.modes.build_attack`), so the command
line, the runner and the Python API build them the same way; names are checked against
the registries of each kind of part.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ..data import DATASETS as DATASET_REGISTRY
from ..data import as_height_width
from ..maps import NORMALIZATIONS, REDUCTIONS, SCORES
from ..models import MODELS as MODEL_NAMES
from ..models import model_spec_problem
from ..priors import check_tau
from ..scoring import ENGINES, PRECISIONS
from ..search import REFINES, SEARCHES, EvolutionConfig
from ..search.fast import VERIFY_MODES
from .modes import (
    SENSITIVITIES,
    mode_meaning,
    modes_help,
    options_problems,
    parse_mode,
    reads_oracle,
)
from .rows import describe, fits

SELECTIONS = ("first_correct", "random_correct", "first", "random", "vulnerable", "robust")
SOURCES = ("full", "sample")
DATASETS = DATASET_REGISTRY.names()
# fields that do not change results: left out of the config hash (max_batch can change the
# last bits of scores through the kernels of another chunk shape: it is hashed)
NON_RESULT_FIELDS = ("out", "batch_images", "device", "workers", "ray_address",
                     "allow_pickle")
# fields added after the first results were written: left out of the hash while they hold
# their default, so earlier run directories keep their hash (and resume)
LATER_FIELDS = ("strategy", "recombination", "out_of_bounds", "stop_on", "replace_on_tie",
                "levels", "scan_positions", "oracle", "score", "reduction", "absolute",
                "normalization", "percentile", "precision", "max_batch", "query_budget",
                "fast_refine", "fast_refine_queries", "classes", "mean", "std", "input_size",
                "fast_verify", "verify_boxes", "verify_seconds", "map_options",
                "prior_options")
# priors whose behaviour changed after results were written: runs using them hash anew
# (random_set: one fixed pattern for every image before, fresh per image and seed now;
# topk: a constant map gave the tie-break's first k positions before, the whole image now;
# fast:raster: scanned its positions in random order before, in raster order now)
PRIOR_VERSIONS = {"random_set": 2, "topk": 2, "fast:raster": 2}
# map normalisations whose meaning changed: runs using them hash anew (percentile: a map
# whose percentile is not positive, a sparse one, became all zeros before (a fallback to
# the whole image), and keeps its signal now, scaled by its largest value)
NORMALIZATION_VERSIONS = {"percentile": 2}


def device_problem(device: str) -> str | None:
    """What is wrong with a device name here; one check for the runner's config and the
    command line's single-image commands.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Returns:
        The problem in one phrase, or ``None`` when the device can be used here.
    """
    import torch

    if not (device in ("auto", "cpu", "cuda")
            or (device.startswith("cuda:") and device[5:].isdigit())):
        return f"device must be auto, cpu, cuda or cuda:N, got {device!r}"
    if device.startswith("cuda") and not torch.cuda.is_available():
        return (f"device {device} asked for, but no CUDA device is available here; use "
                "--device cpu (or auto)")
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        return f"device {device}: only {torch.cuda.device_count()} CUDA device(s)"
    return None


def resolve_device(device: str) -> str:
    """The device ``auto`` stands for here.

    Args:
        device: a device name.

    Returns:
        ``cuda`` for ``auto`` when a CUDA device is present, ``cpu`` for ``auto``
        otherwise; any other name as it is.
    """
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class ConfigError(ValueError):
    """The configuration cannot run (every problem found is in the message)."""


class ConfigMismatchError(RuntimeError):
    """The run directory holds results of a different configuration."""



def address_problem(address: str | None) -> str | None:
    """Why ``address`` is no Ray cluster address (``None`` when it is one): ``auto``,
    ``HOST:PORT`` or ``ray://HOST:PORT``.

    Args:
        address: the ``--ray-address`` given (``None``: none).

    Returns:
        One line, or ``None``.
    """
    if address is None or address == "auto":
        return None
    _, port = address_parts(address)
    if port is None:
        return (f"ray_address {address!r} is not a Ray cluster address: give HOST:PORT "
                "(e.g. 127.0.0.1:6379, what `ray start --head` prints), ray://HOST:PORT "
                "or auto")
    return None


def address_parts(address: str) -> tuple[str, int | None]:
    """A Ray cluster address ``HOST:PORT`` (or ``ray://HOST:PORT``) split.

    Args:
        address: the address.

    Returns:
        ``(host, port)``; the port ``None`` where there is none or it is no port number.
    """
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return host, None
    return host, int(port)


@dataclass
class ExperimentConfig:
    """Everything that defines an experiment (readable from TOML/JSON).

    Modes (:mod:`pixelprior.experiment.modes`): ``unconstrained`` / ``constrained`` (the
    paper), any prior name (``weighted``, ``topk``, ``random_set``, ``oracle``) for DE
    started from that prior; scans: ``scan`` (every position in raster order) or
    ``scan:ORDER`` with ORDER one of ``random``, ``oracle`` or a sensitivity method
    (positions ranked by its map); ``random_search`` (Sparse-RS), optionally
    ``random_search:PRIOR``.
    """

    # what is attacked
    dataset: str = "cifar10"  # cifar10 | nips17 | folder | npz | csv
    data: str | None = None  # folder of the data (cifar10: holding cifar-10-batches-py;
    # folder / npz / csv: the image folder, the .npz or the CSV of path,label)
    source: str = "full"  # cifar10: full (exact test set) | sample (bundled first 100)
    model: str = "squeezenet1_1-cifar10"  # a registered name or a spec (see models.loaders)
    weights: str | None = None
    # your own model: class names, normalisation to wrap around it, its input size
    classes: str | None = None  # a names file, JSON list or "a,b,c"
    mean: list[float] | None = None  # with std: the model takes normalised images
    std: list[float] | None = None
    input_size: int | list[int] | None = None  # a side, or [height, width]: of an input
    # the model does not declare
    allow_pickle: bool = False  # load a pickled nn.Module (runs code from the file)
    images: int = 100
    # first_correct | random_correct | first | random | vulnerable / robust (the images
    # the scan in `oracle` finds a one-pixel adversarial for / none for, in scan order)
    selection: str = "first_correct"
    selection_seed: int = 0
    resize_inside: bool = False  # nips17: attack the 299x299 image, resize inside model
    modes: list[str] = field(default_factory=lambda: ["unconstrained", "constrained"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    # the search (differential evolution)
    popsize: int = 400
    maxiter: int = 100
    mutation: float | list[float] = 0.5  # F, or [low, high] to dither per generation
    strategy: str = "rand1bin"  # rand1bin (the paper) | best1bin (Su et al.'s code) | ...
    recombination: float = 1.0
    out_of_bounds: str = "clip"  # clip | resample
    stop_on: str = "any"  # any candidate succeeds | the best member succeeds
    replace_on_tie: bool = True
    pixels: int = 1
    init_color: str = "normal"
    # scans (scan modes)
    levels: int = 3  # colours per channel: 3 -> 27 colours
    scan_positions: int | None = None  # scan only the top of the order (None: all)
    # random search (random_search modes)
    query_budget: int | None = None  # queries per image (None: 10,000, as Sparse-RS)
    # the fast mode: corners in a map's order, then optionally a search off the corners
    fast_refine: str = "none"  # none | de
    fast_refine_queries: int = 4000
    # ... and the verifier for what the corners certify: auto (where it fits) | on | off
    fast_verify: str = "auto"
    verify_boxes: int = 20_000  # the verifier's most boxes per image
    verify_seconds: float | None = None  # its most seconds per image (None: no limit)
    oracle: str | None = None  # susceptibility folder for the oracle prior / order
    # the sensitivity map and the prior
    tau: float = 0.5
    sensitivity: str = "smoothgrad"
    n_samples: int = 50
    noise_level: float = 0.15
    score: str = "logit"  # logit | probability | log_probability
    reduction: str = "max_abs"  # over channels: max_abs | mean_abs | sum | signed
    absolute: str = "after"  # SmoothGrad: |.| after averaging (paper) or before
    normalization: str = "minmax"  # minmax | percentile
    percentile: float = 99.0
    # a map method's own options beyond those above (integrated_gradients: steps,
    # baseline; occlusion: baseline; smoothgrad: seed), each given to the methods taking it
    map_options: dict = field(default_factory=dict)
    # a prior's own options beyond tau and oracle (topk: k)
    prior_options: dict = field(default_factory=dict)
    # how it runs (no effect on results, except engine and precision: float bits)
    engine: str = "auto"  # auto | incremental | full | onnxruntime
    precision: str = "fp32"  # fp32 | bf16
    batch_images: int | None = None  # images attacked together (None: by device)
    max_batch: int | None = None
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    workers: int = 1  # Ray workers (pixelprior[ray]); 1: in this process
    ray_address: str | None = None
    out: str = "runs/cifar10"

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, file: str | Path | None = None, overrides: dict | None = None,
              base: dict | None = None) -> ExperimentConfig:
        """A config in layers, then validated: defaults < ``base`` < ``file`` <
        ``overrides``.

        Args:
            file: a TOML or JSON config file.
            overrides: the options actually given (``None`` values never override).
            base: a command's own defaults.

        Returns:
            The validated config.

        Raises:
            ConfigError: the file cannot be read, or the config has problems (all named).
        """
        values = dict(base or {})
        if file is not None:
            values.update(read_config_file(file))
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        config = cls.from_dict(values)
        config.validate()
        return config

    @classmethod
    def from_dict(cls, values: dict) -> ExperimentConfig:
        """A config from a dict, its types checked (not yet its ranges).

        Args:
            values: field → value (a config file's, or ``config.json``'s ``config``).

        Returns:
            The config (integers given for numbers stored as floats).

        Raises:
            ConfigError: unknown keys, or values of the wrong type (all named).
        """
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; known keys: "
                              f"{', '.join(sorted(known))}")
        problems = [problem for name, value in values.items()
                    if (problem := _type_problem(name, value, _field_type(known[name])))]
        if problems:
            raise ConfigError("; ".join(problems))
        values = {k: _as_written(list(v) if isinstance(v, tuple) else v,
                                 _field_type(known[k])) for k, v in values.items()}
        return cls(**values)

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check the whole config before anything runs.

        Raises:
            ConfigError: every problem found, in one message.
        """
        problems = self.problems()
        if problems:
            raise ConfigError("; ".join(problems))

    def problems(self) -> list[str]:
        """Every problem of the config: data, search, modes, map and running settings.

        Returns:
            One phrase per problem (empty when the config can run).
        """
        p: list[str] = []
        self._check_data(p)
        self._check_search(p)
        self._check_modes(p)
        self._check_sensitivity(p)
        self._check_running(p)
        return p

    def _check_data(self, p: list[str]) -> None:
        if self.dataset not in DATASETS:
            p.append(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.dataset == "cifar10" and self.source not in SOURCES:
            hint = (" ('auto' was removed: it could silently attack the bundled sample "
                    "instead of the test set)" if self.source == "auto" else "")
            p.append(f"source must be 'full' or 'sample', got {self.source!r}{hint}")
        if self.dataset != "cifar10" and self.source != "full":
            p.append(f"source {self.source!r} chooses CIFAR-10's images; the {self.dataset} "
                     "dataset does not read it: drop it")
        if self.dataset == "nips17" and not self.data:
            p.append("the nips17 dataset needs `data` (a folder in the DEV layout)")
        if self.dataset == "cifar10" and self.source == "sample" and self.data:
            p.append(f"data {self.data} is not read with source 'sample' (the bundled "
                     "images): drop it, or use source 'full' to read the test set there "
                     "(a folder an earlier version made with both restarts with --force)")
        if self.resize_inside and self.dataset != "nips17":
            p.append(f"resize_inside is for the nips17 dataset (its 299×299 images resized "
                     f"inside the model); the {self.dataset} images are read at the model's "
                     "size: drop it")
        if self.data and not Path(self.data).expanduser().exists():
            p.append(f"data folder {self.data} does not exist")
        if problem := model_spec_problem(self.model):
            p.append(problem)
        if self.dataset in ("folder", "npz", "csv") and not self.data:
            p.append(f"the {self.dataset} dataset needs `data` (--data PATH)")
        if (self.mean is None) != (self.std is None):
            p.append("mean and std go together (the normalisation wrapped around the model)")
        if self.input_size is not None:
            try:
                as_height_width(self.input_size, "input_size")
            except ValueError as exc:
                p.append(str(exc))
        if self.input_size is not None and self.model in MODEL_NAMES:
            p.append(f"input_size is for models that do not declare their input; "
                     f"{self.model} declares its own")
        if self.weights and not Path(self.weights).expanduser().is_file():
            p.append(f"weights file {self.weights} does not exist")
        if self.images < 1:
            p.append(f"images must be >= 1, got {self.images}")
        if self.selection not in SELECTIONS:
            p.append(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.selection in ("vulnerable", "robust") and not self.oracle:
            p.append(f"selection {self.selection!r} needs oracle (--oracle DIR, or `oracle` in the "
                     "config): the folder of a `pixelprior susceptibility` scan of the images")
        if not self.seeds:
            p.append("seeds must not be empty")
        elif len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            p.append(f"seeds must be distinct non-negative integers, got {self.seeds}")

    def _check_search(self, p: list[str]) -> None:
        try:
            self.evolution()
        except ValueError as exc:
            p.append(str(exc))
        if self.pixels < 1:
            p.append(f"pixels must be >= 1, got {self.pixels}")
        if self.init_color not in ("normal", "uniform"):
            p.append(f"init_color must be 'normal' or 'uniform', got {self.init_color!r}")
        if self.levels < 2:
            p.append(f"levels must be >= 2, got {self.levels}")
        if self.scan_positions is not None and self.scan_positions < 1:
            p.append(f"scan_positions must be >= 1, got {self.scan_positions}")
        if self.fast_refine not in REFINES:
            p.append(f"fast_refine must be one of {REFINES}, got {self.fast_refine!r}")
        if self.fast_refine_queries < 8:
            p.append(f"fast_refine_queries must be >= 8, got {self.fast_refine_queries}")
        if self.fast_verify not in VERIFY_MODES:
            p.append(f"fast_verify (--verify) must be one of {VERIFY_MODES}, got "
                     f"{self.fast_verify!r}")
        if self.verify_boxes < 1:
            p.append(f"verify_boxes must be >= 1, got {self.verify_boxes}")
        if self.verify_seconds is not None and not 0 < self.verify_seconds < float("inf"):
            p.append(f"verify_seconds must be a finite number > 0 (or unset), got "
                     f"{self.verify_seconds}")
        if self.query_budget is not None and self.query_budget < 1:
            p.append(f"query_budget must be >= 1, got {self.query_budget}")

    def _check_modes(self, p: list[str]) -> None:
        if not self.modes:
            p.append("modes must not be empty")
        if len(set(self.modes)) != len(self.modes):
            p.append(f"modes repeat: {self.modes}")
        else:
            spelled: dict = {}
            for mode in self.modes:
                meaning = mode_meaning(mode)
                if meaning[0] is not None and meaning in spelled:
                    p.append(f"modes {spelled[meaning]!r} and {mode!r} are the same "
                             "experiment (two names of one mode): keep one")
                spelled.setdefault(meaning, mode)
        for mode in self.modes:
            kind, _ = parse_mode(mode)
            if kind is None:
                p.append(f"unknown mode {mode!r}; use one of: {modes_help()}")
                continue
            most = SEARCHES.get(kind).max_pixels
            if most is not None and self.pixels > most:
                p.append(f"mode {mode!r} changes {most} pixel(s); pixels is {self.pixels}")
        if any(map(reads_oracle, self.modes)) and not self.oracle:
            p.append("the oracle modes need oracle (--oracle DIR, or `oracle` in the "
                     "config): a folder made by "
                     "`pixelprior susceptibility` for these images")
        if self.oracle and not (Path(self.oracle) / "maps.npz").is_file() and not (
                Path(self.oracle).is_file()):
            p.append(f"oracle {self.oracle} holds no maps.npz (make it with "
                     "`pixelprior susceptibility ... --out DIR`)")

    def _check_sensitivity(self, p: list[str]) -> None:
        try:
            check_tau(self.tau)
        except ValueError as exc:
            p.append(str(exc))
        if self.sensitivity not in SENSITIVITIES:
            p.append(f"sensitivity must be one of {SENSITIVITIES}, got {self.sensitivity!r}")
        if self.n_samples < 1:
            p.append(f"n_samples must be >= 1, got {self.n_samples}")
        if not self.noise_level >= 0:
            p.append(f"noise_level must be >= 0, got {self.noise_level}")
        for name, allowed in (("score", SCORES), ("reduction", REDUCTIONS),
                              ("normalization", NORMALIZATIONS),
                              ("absolute", ("after", "before"))):
            if getattr(self, name) not in allowed:
                p.append(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not 0 < self.percentile <= 100:
            p.append(f"percentile must lie in (0, 100], got {self.percentile}")
        p.extend(options_problems(self.map_options, self.prior_options, self.modes,
                                  self.sensitivity))

    def _check_running(self, p: list[str]) -> None:
        import importlib.util

        if self.engine not in ENGINES:
            p.append(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.engine == "incremental" and self.pixels != 1:
            p.append("the incremental engine scores one-pixel candidates; use engine "
                     "'full' or 'auto' for pixels > 1")
        if self.engine == "onnxruntime" and importlib.util.find_spec("onnxruntime") is None:
            p.append('engine onnxruntime needs ONNX Runtime: pip install "pixelprior[onnx]"')
        if self.precision not in PRECISIONS:
            p.append(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.engine == "onnxruntime" and self.precision != "fp32":
            p.append("engine onnxruntime runs in fp32 only")
        if problem := device_problem(self.device):
            p.append(problem)
        if self.engine == "onnxruntime" and self.resolved_device() != "cpu":
            p.append("engine onnxruntime runs on the CPU; use --device cpu")
        if self.batch_images is not None and self.batch_images < 1:
            p.append(f"batch_images must be >= 1, got {self.batch_images}")
        if self.max_batch is not None and self.max_batch < 1:
            p.append(f"max_batch must be >= 1, got {self.max_batch}")
        if self.workers < 1:
            p.append(f"workers must be >= 1, got {self.workers}")
        if self.workers > 1 and importlib.util.find_spec("ray") is None:
            p.append('workers > 1 run on Ray: pip install "pixelprior[ray]"')
        if self.ray_address and self.workers < 2:
            p.append("ray_address is used only with workers >= 2")
        elif problem := address_problem(self.ray_address):
            p.append(problem)

    # ------------------------------------------------------------------ derived
    def resolved_device(self) -> str:
        """The device the run uses.

        Returns:
            :func:`resolve_device` of ``device``.
        """
        return resolve_device(self.device)

    def images_per_group(self) -> int:
        """Images attacked together.

        Returns:
            ``batch_images`` when set; else every image of a (seed, mode) on CUDA (one
            large batch per generation), on the CPU 10 CIFAR-10 images (measured flat
            beyond, issue 7) or 4 ImageNet-size ones (memory).
        """
        if self.batch_images is not None:
            return self.batch_images
        if self.resolved_device().startswith("cuda"):
            return self.images
        return 4 if self.dataset == "nips17" else 10

    def to_dict(self) -> dict:
        """Every field, as ``config.json`` records it.

        Returns:
            Field name → value (JSON-like).
        """
        return dataclasses.asdict(self)

    def result_fields(self) -> dict:
        """The fields that change results, as hashed: not the output path, batching or
        device, and fields added later only when off their default.

        Returns:
            Field name → value.
        """
        defaults = ExperimentConfig()
        return {k: v for k, v in self.to_dict().items() if k not in NON_RESULT_FIELDS
                and not (k in LATER_FIELDS and v == getattr(defaults, k))}

    def uses_oracle(self) -> bool:
        """Whether a mode or the image selection reads the ``oracle`` scan."""
        return self.selection in ("vulnerable", "robust") or any(map(reads_oracle, self.modes))

    def digest(self, prior_versions: bool = True) -> str:
        """Hash of the fields that change results (not the output path or batching).

        Args:
            prior_versions: include the versions of priors and map normalisations whose
                meaning changed (:data:`PRIOR_VERSIONS`, :data:`NORMALIZATION_VERSIONS`);
                ``False`` gives the hash earlier releases wrote.

        Returns:
            16 hex digits.
        """
        relevant = self.result_fields()
        for mode, version in PRIOR_VERSIONS.items():  # a prior whose meaning changed
            if prior_versions and mode in self.modes:
                relevant[f"{mode}_version"] = version
        if prior_versions and self.normalization in NORMALIZATION_VERSIONS:
            relevant["normalization_version"] = NORMALIZATION_VERSIONS[self.normalization]
        return _hash(relevant, 16)

    def field_hashes(self) -> dict[str, str]:
        """A short hash of each field that changes results, recorded beside the config's
        hash so that an edit of ``config.json`` can name the field that was changed.

        Returns:
            Field name → 8 hex digits.
        """
        return {name: _hash(value, 8) for name, value in self.result_fields().items()}

    def evolution(self) -> EvolutionConfig:
        """The differential evolution's settings.

        Returns:
            An :class:`~pixelprior.search.EvolutionConfig` (a dithered ``mutation`` as a
            tuple).

        Raises:
            ValueError: settings the solver refuses (a population too small, ...).
        """
        mutation = tuple(self.mutation) if isinstance(self.mutation, list) else self.mutation
        return EvolutionConfig(self.popsize, self.maxiter, mutation, True, self.strategy,
                               self.recombination, self.out_of_bounds, self.stop_on,
                               self.replace_on_tie)

    def sensitivity_kwargs(self) -> dict:
        """Settings of the sensitivity methods.

        Returns:
            Name → value; each method takes the ones it knows.
        """
        return {"score": self.score, "reduction": self.reduction,
                "normalization": self.normalization, "percentile": self.percentile,
                "n_samples": self.n_samples, "noise_level": self.noise_level,
                "absolute": self.absolute, **self.map_options}


def _hash(value, digits: int) -> str:
    """A SHA-256 of ``value``'s JSON (keys sorted), cut to ``digits`` hex digits."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:digits]


def read_config_file(path: str | Path) -> dict:
    """The values of a TOML or JSON config file.

    Args:
        path: a ``.toml`` or ``.json`` file.

    Returns:
        Its key → value pairs (not yet checked).

    Raises:
        ConfigError: the file is missing, not valid TOML/JSON, or not a table.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text()
        if path.suffix == ".json":
            values = json.loads(text)
        else:
            values = _toml().loads(text)
    except (ValueError, UnicodeDecodeError) as exc:  # TOMLDecodeError is a ValueError
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise ConfigError(f"{path}: not valid {kind} ({exc})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a config file holds key = value pairs")
    return values


# --------------------------------------------------------------------------- types
def _field_type(f: dataclasses.Field):
    hints = typing.get_type_hints(ExperimentConfig)
    return hints[f.name]


def _as_written(value, expected):
    """An integer given for a float setting (TOML ``mutation = 1``) as a float, so that
    the config, and its digest, do not depend on how a number was written."""
    arms = typing.get_args(expected) if typing.get_origin(expected) in (
        typing.Union, types.UnionType) else (expected,)
    if float in arms and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, list) and list[float] in arms:
        return [float(v) if isinstance(v, int) and not isinstance(v, bool) else v
                for v in value]
    return value


_fits, _describe = fits, describe  # their names in 0.3 (the pixelprior.config shim)


def _type_problem(name: str, value, expected) -> str | None:
    """Why ``value`` does not fit the annotation ``expected`` (``None`` if it does)."""
    if fits(value, expected):
        return None
    return f"{name} must be {describe(expected)}, got {value!r} ({type(value).__name__})"


def _toml():
    """The TOML reader: the standard library's from Python 3.11, ``tomli`` (the same code,
    a dependency there) on 3.10."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib
