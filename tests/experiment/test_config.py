"""ExperimentConfig: layers and their precedence, type and range checks in one message,
the digest that keeps committed runs resumable, config files, batching, devices."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch

from pixelprior.experiment import (
    ConfigError,
    ExperimentConfig,
    device_problem,
    read_config_file,
    resolve_device,
)
from pixelprior.experiment.config import LATER_FIELDS, NON_RESULT_FIELDS

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = sorted((ROOT / "results").glob("**/config.json"))


def reference_digest(values: dict) -> str:
    """The digest written out independently: non-result fields dropped, later fields at
    their default dropped, random_set's version added, sorted JSON, sha256, 16 hex."""
    defaults = dataclasses.asdict(ExperimentConfig())
    relevant = {k: v for k, v in values.items() if k not in NON_RESULT_FIELDS
                and not (k in LATER_FIELDS and v == defaults[k])}
    if "random_set" in values["modes"]:
        relevant["random_set_version"] = 2
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def other_value(name: str):
    """A valid-looking value of field ``name`` other than its default."""
    default = getattr(ExperimentConfig(), name)
    known = {"strategy": "best1bin", "out_of_bounds": "resample", "stop_on": "best",
             "score": "probability", "reduction": "mean_abs", "absolute": "before",
             "normalization": "percentile", "precision": "bf16", "oracle": "scan-dir"}
    if name in known:
        return known[name]
    if isinstance(default, bool):
        return not default
    if isinstance(default, (int, float)):
        return default + 1
    if default is None:
        return 7
    return f"{default}-other"


# ------------------------------------------------------------------ building
def test_build_defaults_without_any_layer():
    assert ExperimentConfig.build(overrides={"device": "cpu"}) == ExperimentConfig(device="cpu")


def test_build_precedence_defaults_base_file_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('popsize = 30\nmaxiter = 7\nmodes = ["constrained"]\ndevice = "cpu"\n')
    config = ExperimentConfig.build(
        path, overrides={"maxiter": 3}, base={"popsize": 20, "tau": 0.25, "maxiter": 50,
                                              "images": 9})
    assert config.images == 9  # base over the default
    assert config.tau == 0.25  # base, the file says nothing
    assert config.popsize == 30  # file over base
    assert config.maxiter == 3  # override over file and base
    assert config.modes == ["constrained"]  # the file's
    assert config.seeds == ExperimentConfig().seeds  # untouched default


def test_build_override_of_none_never_overrides(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"popsize": 30, "device": "cpu", "query_budget": 500}))
    config = ExperimentConfig.build(path, overrides={"popsize": None, "query_budget": None,
                                                     "tau": None},
                                    base={"tau": 0.3})
    assert (config.popsize, config.query_budget, config.tau) == (30, 500, 0.3)


def test_build_validates_the_result(tmp_path):
    with pytest.raises(ConfigError, match="popsize"):
        ExperimentConfig.build(overrides={"popsize": 2, "device": "cpu"})


def test_build_refuses_unknown_keys_of_a_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("popsize = 30\nbogus = 1\n")
    with pytest.raises(ConfigError, match=r"unknown config keys \['bogus'\]"):
        ExperimentConfig.build(path)


def test_build_turns_tuples_into_lists():
    config = ExperimentConfig.build(overrides={"seeds": (3, 4), "device": "cpu"})
    assert config.seeds == [3, 4] and isinstance(config.seeds, list)


# ------------------------------------------------------------------ types
def test_from_dict_refuses_a_bool_for_an_int():
    with pytest.raises(ConfigError, match=r"images must be an integer, got True \(bool\)"):
        ExperimentConfig.from_dict({"images": True})


def test_from_dict_refuses_a_string_for_a_list():
    with pytest.raises(ConfigError, match=r"modes must be a list of a string, got "
                                          r"'constrained' \(str\)"):
        ExperimentConfig.from_dict({"modes": "constrained"})


def test_from_dict_refuses_wrong_items_of_a_list_and_names_every_problem():
    with pytest.raises(ConfigError) as caught:
        ExperimentConfig.from_dict({"seeds": [0, 1.5], "tau": "0.5", "popsize": 40.0})
    message = str(caught.value)
    assert "seeds must be a list of an integer" in message
    assert "tau must be a finite number, got '0.5' (str)" in message
    assert "popsize must be an integer, got 40.0 (float)" in message


def test_from_dict_accepts_int_for_float_and_null_for_optional():
    config = ExperimentConfig.from_dict({"tau": 1, "query_budget": None, "mutation": [0.5, 1]})
    assert config.tau == 1 and config.query_budget is None and config.mutation == [0.5, 1]


def test_from_dict_refuses_bool_for_float():
    with pytest.raises(ConfigError, match="tau must be a finite number"):
        ExperimentConfig.from_dict({"tau": True})


def test_from_dict_lists_the_unknown_keys_sorted_and_the_known_ones():
    with pytest.raises(ConfigError) as caught:
        ExperimentConfig.from_dict({"zzz": 1, "aaa": 2, "popsize": 10})
    message = str(caught.value)
    assert "unknown config keys ['aaa', 'zzz']" in message
    for name in ("popsize", "maxiter", "tau", "query_budget"):
        assert name in message.split("known keys:")[1]


# ------------------------------------------------------------------ ranges
def test_validate_names_every_problem_in_one_message():
    config = ExperimentConfig(tau=1.5, popsize=2, modes=["nope"], model="no-such-model",
                              engine="turbo", device="cpu")
    with pytest.raises(ConfigError) as caught:
        config.validate()
    message = str(caught.value)
    for part in ("tau must lie in (0, 1), got 1.5", "popsize must be >= 4",
                 "unknown mode 'nope'", "unknown model 'no-such-model'",
                 "engine must be one of", "'turbo'"):
        assert part in message
    assert len(config.problems()) == 5
    assert message == "; ".join(config.problems())


def test_defaults_on_the_cpu_are_valid():
    assert ExperimentConfig(device="cpu").problems() == []


@pytest.mark.parametrize(("values", "part"), [
    ({"seeds": []}, "seeds must not be empty"),
    ({"seeds": [1, 1]}, "seeds must be distinct"),
    ({"modes": ["constrained", "constrained"]}, "modes repeat"),
    ({"modes": ["constrained", "susceptible"]}, "'constrained' and 'susceptible' are the "
                                                "same experiment"),
    ({"modes": ["scan", "scan:raster"]}, "'scan' and 'scan:raster' are the same experiment"),
    ({"modes": ["random_search", "random_search:unconstrained"]}, "are the same experiment"),
    ({"modes": ["random_search:constrained", "random_search:susceptible"]},
     "are the same experiment"),
    ({"modes": ["scan"], "pixels": 2, "engine": "full"}, "changes 1 pixel(s); pixels is 2"),
    ({"query_budget": 0}, "query_budget must be >= 1"),
    ({"levels": 1}, "levels must be >= 2"),
    ({"source": "auto"}, "'auto' was removed"),
    ({"workers": 0}, "workers must be >= 1"),
    ({"modes": ["oracle"]}, "the oracle modes need oracle"),
    ({"verify_seconds": float("inf")}, "verify_seconds must be a finite number > 0"),
])
def test_validate_single_problems(values, part):
    problems = ExperimentConfig(device="cpu", **values).problems()
    assert any(part in p for p in problems), problems


# ------------------------------------------------------------------ digest
def test_default_digest_is_the_committed_table_1_hash():
    assert ExperimentConfig().digest() == "d053b011b32f93c3"


@pytest.mark.checkout
def test_committed_cifar10_config_gives_its_recorded_hash():
    saved = json.loads((ROOT / "results" / "cifar10" / "config.json").read_text())
    assert ExperimentConfig.from_dict(saved["config"]).digest() == saved["hash"]


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.parent.relative_to(ROOT)))
def test_every_committed_config_gives_its_recorded_hash(path):
    saved = json.loads(path.read_text())
    config = ExperimentConfig.from_dict(saved["config"])
    assert config.digest() == saved["hash"] == reference_digest(saved["config"])


@pytest.mark.checkout
def test_there_are_committed_configs():
    assert len(COMMITTED) >= 2


def test_digest_matches_the_reference_derivation():
    for config in (ExperimentConfig(), ExperimentConfig(modes=["random_set"], tau=0.3),
                   ExperimentConfig(query_budget=500, levels=5)):
        assert config.digest() == reference_digest(config.to_dict())


@pytest.mark.parametrize(("name", "value"), [("out", "elsewhere"), ("device", "cpu"),
                                             ("batch_images", 3), ("workers", 4),
                                             ("ray_address", "10.0.0.1:6379")])
def test_non_result_fields_leave_the_digest_unchanged(name, value):
    assert name in NON_RESULT_FIELDS
    config = dataclasses.replace(ExperimentConfig(), **{name: value})
    assert config.digest() == ExperimentConfig().digest()


@pytest.mark.parametrize(("name", "value"), [("popsize", 401), ("tau", 0.25),
                                             ("seeds", [0]), ("modes", ["constrained"]),
                                             ("model", "squeezenet1_1"), ("mutation", [0.5, 1]),
                                             ("selection", "first")])
def test_a_result_field_changes_the_digest(name, value):
    config = dataclasses.replace(ExperimentConfig(), **{name: value})
    assert config.digest() != ExperimentConfig().digest()


def test_the_digest_is_16_hex_digits_and_stable_across_instances():
    digest = ExperimentConfig(tau=0.3).digest()
    assert len(digest) == 16 and int(digest, 16) >= 0
    assert digest == ExperimentConfig(tau=0.3).digest()


def test_later_fields_at_their_default_are_left_out_of_the_digest():
    defaults = ExperimentConfig().to_dict()
    without = {k: v for k, v in defaults.items()
               if k not in NON_RESULT_FIELDS and k not in LATER_FIELDS}
    expected = hashlib.sha256(json.dumps(without, sort_keys=True).encode()).hexdigest()[:16]
    assert ExperimentConfig().digest() == expected


@pytest.mark.parametrize("name", LATER_FIELDS)
def test_a_later_field_off_its_default_changes_the_digest(name):
    config = dataclasses.replace(ExperimentConfig(), **{name: other_value(name)})
    assert config.digest() != ExperimentConfig().digest()


def test_query_budget_is_a_later_field():
    assert "query_budget" in LATER_FIELDS
    assert ExperimentConfig(query_budget=None).digest() == ExperimentConfig().digest()
    assert ExperimentConfig(query_budget=500).digest() != ExperimentConfig().digest()


def test_random_set_runs_hash_with_their_prior_version():
    config = ExperimentConfig(modes=["random_set"])
    plain = {k: v for k, v in config.to_dict().items()
             if k not in NON_RESULT_FIELDS and k not in LATER_FIELDS}
    unversioned = hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]
    assert config.digest() != unversioned
    assert config.digest() == reference_digest(config.to_dict())


def test_the_digest_does_not_depend_on_how_a_number_is_written(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("mutation = 1\nnoise_level = 0\n")
    written = ExperimentConfig.build(path, overrides={"device": "cpu"})
    floats = ExperimentConfig.build(overrides={"mutation": 1.0, "noise_level": 0.0,
                                               "device": "cpu"})
    assert written == floats  # the same configuration
    assert written.digest() == floats.digest()


# ------------------------------------------------------------------ files
def test_read_config_file_toml_and_json(tmp_path):
    (tmp_path / "c.toml").write_text('popsize = 30\nmodes = ["scan"]\n')
    (tmp_path / "c.json").write_text('{"popsize": 30, "modes": ["scan"]}')
    expected = {"popsize": 30, "modes": ["scan"]}
    assert read_config_file(tmp_path / "c.toml") == expected
    assert read_config_file(str(tmp_path / "c.json")) == expected


def test_read_config_file_missing(tmp_path):
    with pytest.raises(ConfigError, match=r"config file .*nope\.toml does not exist"):
        read_config_file(tmp_path / "nope.toml")


def test_read_config_file_a_folder_is_missing(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path)


def test_read_config_file_bad_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("popsize = = 3\n")
    with pytest.raises(ConfigError, match=r"c\.toml: not valid TOML"):
        read_config_file(path)


def test_read_config_file_bad_json(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"popsize": 3,')
    with pytest.raises(ConfigError, match=r"c\.json: not valid JSON"):
        read_config_file(path)


def test_read_config_file_not_utf8(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b"popsize = \xff\xfe\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_config_file(path)


@pytest.mark.parametrize("text", ["[1, 2]", '"popsize"', "3"])
def test_read_config_file_json_that_is_not_a_table(tmp_path, text):
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match="a config file holds key = value pairs"):
        read_config_file(path)


# ------------------------------------------------------------------ batching, devices
def test_images_per_group_rules(monkeypatch):
    assert ExperimentConfig(device="cpu").images_per_group() == 10
    assert ExperimentConfig(device="cpu", dataset="nips17").images_per_group() == 4
    assert ExperimentConfig(device="cpu", batch_images=3).images_per_group() == 3
    assert ExperimentConfig(device="cuda", batch_images=3, images=50).images_per_group() == 3
    assert ExperimentConfig(device="cuda", images=37).images_per_group() == 37
    assert ExperimentConfig(device="cuda:1", images=37).images_per_group() == 37
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ExperimentConfig(device="auto", images=37).images_per_group() == 10
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert ExperimentConfig(device="auto", images=37).images_per_group() == 37
    assert ExperimentConfig(device="cpu", images=37).images_per_group() == 10


def test_resolve_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cuda:1") == "cuda:1"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cpu") == "cpu"


@pytest.mark.parametrize("device", ["cuda:abc", "tpu", "cuda:", "CPU", "cuda:-1", ""])
def test_device_problem_names_the_allowed_forms(device):
    assert device_problem(device) == (f"device must be auto, cpu, cuda or cuda:N, got "
                                      f"{device!r}")


def test_device_problem_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_problem("cpu") is None and device_problem("auto") is None
    assert "no CUDA device is available" in device_problem("cuda")
    assert "use --device cpu" in device_problem("cuda:0")


def test_device_problem_counts_the_cuda_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device_problem("cuda") is None and device_problem("cuda:1") is None
    assert device_problem("cuda:2") == "device cuda:2: only 2 CUDA device(s)"


def test_a_device_problem_is_one_of_the_config_problems():
    problems = ExperimentConfig(device="tpu").problems()
    assert "device must be auto, cpu, cuda or cuda:N, got 'tpu'" in problems


def test_runs_whose_map_normalisation_or_fast_order_changed_meaning_hash_anew():
    """Percentile normalisation of a sparse map (all zeros before, its signal now) and
    ``fast:raster`` (random order before, raster now): a folder made before is refused on
    resume, not mixed; its own record still checks (the hash earlier releases wrote)."""
    for changed, same in ((dict(modes=["constrained"], normalization="percentile"),
                           dict(modes=["constrained"])),
                          (dict(modes=["fast:raster"]), dict(modes=["fast:random"]))):
        config, other = ExperimentConfig(**changed), ExperimentConfig(**same)
        assert config.digest() != config.digest(prior_versions=False)
        assert other.digest() == other.digest(prior_versions=False)
