"""Options declared once: the seven model options of every command that loads a model,
the differential evolution's options of `attack`, `run` and `reproduce` (refused where no
mode runs it), `--report/--no-report`, and `--classes` checked before any work."""

from __future__ import annotations

import json

import pytest
import typer
from helpers import clean_error, invoke

from pixelprior.cli import app

MODEL_OPTIONS = ("model", "weights", "classes", "mean", "std", "input_size", "allow_pickle")
MODEL_COMMANDS = [("attack",), ("explain",), ("susceptibility",), ("run",), ("eval", "data"),
                  ("eval", "cifar10")]
DE_COMMANDS = [("attack",), ("run",), ("reproduce", "cifar10"), ("reproduce", "nips17")]


def command(path: tuple[str, ...]):
    group = typer.main.get_command(app)
    for name in path:
        group = group.commands[name]
    return group


def options_of(path: tuple[str, ...]) -> dict:
    return {param.name: param for param in command(path).params}


def test_every_command_that_loads_a_model_takes_the_same_seven_options():
    first = options_of(MODEL_COMMANDS[0])
    for path in MODEL_COMMANDS:
        options = options_of(path)
        for name in MODEL_OPTIONS:
            assert name in options, (path, name)
            assert options[name].opts == first[name].opts, (path, name)
            if name != "model":  # its default differs: run's comes from the config
                assert options[name].help == first[name].help, (path, name)
    assert options_of(("run",))["model"].default is None
    assert options_of(("attack",))["model"].default == "squeezenet1_1-cifar10"


def test_the_options_reach_the_command_as_one_object(cat_png, tmp_path):
    names = ",".join(f"class{k}" for k in range(10))
    result = invoke("explain", cat_png, "--classes", names, "--method", "gradient", "--out",
                    tmp_path / "e")
    assert result.exit_code == 0, result.output
    assert "map for class class3" in " ".join(result.output.split())  # test image 0: cat


@pytest.mark.parametrize("path", DE_COMMANDS, ids=" ".join)
def test_the_de_options_are_taken_by_every_command_that_runs_de(path):
    options = options_of(path)
    for name in ("popsize", "maxiter", "strategy"):
        assert name in options and options[name].help, (path, name)


@pytest.mark.parametrize("path", [("run",), ("reproduce", "cifar10"), ("reproduce", "nips17")],
                         ids=" ".join)
def test_report_reads_report_or_no_report(path):
    report = options_of(path)["report"]
    assert report.opts == ["--report"] and report.secondary_opts == ["--no-report"]
    assert report.default is True
    assert "--no-no-report" not in " ".join(invoke(*path, "--help").output.split())


def test_run_and_reproduce_record_the_de_options(tmp_path):
    args = ["--source", "sample", "--images", 1, "--seeds", "0,", "--modes", "unconstrained",
            "--popsize", 12, "--maxiter", 1, "--strategy", "best1bin"]
    reproduced = invoke("reproduce", "cifar10", *args, "--out", tmp_path / "a", "--no-report")
    assert reproduced.exit_code == 0, reproduced.output
    ran = invoke("run", "--data", "cifar10", *args, "--out", tmp_path / "b")
    assert ran.exit_code == 0, ran.output
    for out in (tmp_path / "a", tmp_path / "b"):
        config = json.loads((out / "config.json").read_text())
        config = config.get("config", config)
        assert (config["popsize"], config["maxiter"], config["strategy"]) == (12, 1, "best1bin")
        (row,) = [json.loads(line) for line in (out / "results.jsonl").open()]
        assert row["generations"] <= 1 and row["queries"] <= 12 * 2
    assert not (tmp_path / "a" / "report.md").exists()  # --no-report
    assert (tmp_path / "b" / "report.md").is_file()  # --report, the default


@pytest.mark.parametrize("path", [("run", "--data", "cifar10"), ("reproduce", "cifar10")],
                         ids=lambda p: " ".join(p[:2]))
def test_de_options_for_modes_that_do_not_run_de_are_refused(path, tmp_path):
    out = tmp_path / "r"
    result = invoke(*path, "--source", "sample", "--images", 1, "--seeds", "0,", "--modes",
                    "fast,scan", "--popsize", 20, "--strategy", "best1bin", "--out", out)
    clean_error(result, 2, "--popsize, --strategy set the differential evolution; modes "
                           "fast, scan run other searches")
    assert not out.exists()


def test_de_options_for_some_modes_say_which(tmp_path):
    result = invoke("reproduce", "cifar10", "--source", "sample", "--images", 1, "--seeds",
                    "0,", "--modes", "fast,unconstrained", "--maxiter", 1, "--out",
                    tmp_path / "r", "--no-report")
    assert result.exit_code == 0, result.output
    assert ("note: --maxiter set the differential evolution of unconstrained; fast runs "
            "another search and does not use them") in " ".join(result.output.split())


# ------------------------------------------------------------------ --classes
TEN = [f"c{k}" for k in range(10)]


@pytest.mark.parametrize("command_line", [
    ["eval", "cifar10", "--source", "sample"],
    ["run", "--data", "cifar10", "--source", "sample", "--out", "{tmp}/r"],
], ids=lambda c: c[0])
def test_classes_given_twice_are_one_usage_line(command_line, tmp_path):
    args = [a.format(tmp=tmp_path) for a in command_line]
    names = ",".join(TEN[:9] + [" c0"])  # differs from c0 only by a space
    clean_error(invoke(*args, "--classes", names), 2, "--classes")
    assert not (tmp_path / "r").exists()


def test_a_classes_file_that_is_not_there_is_a_usage_line(tmp_path):
    clean_error(invoke("eval", "cifar10", "--source", "sample", "--classes",
                       tmp_path / "names.txt"), 2, "does not exist")


def test_an_empty_class_name_is_one_usage_line():
    clean_error(invoke("eval", "cifar10", "--source", "sample", "--classes",
                       ",".join(TEN[:5] + [""] + TEN[5:])), 2, "--classes")


def test_json_names_that_differ_only_by_spaces_are_one_usage_line(tmp_path):
    names = tmp_path / "names.json"
    names.write_text(json.dumps(TEN[:9] + ["c0 "]))
    clean_error(invoke("eval", "cifar10", "--source", "sample", "--classes", names), 2,
                "--classes")


@pytest.mark.parametrize(("text", "size"), [("32", 32), ("40x24", (24, 40)), ("40×24", (24, 40)),
                                            (" 32X32 ", 32), (None, None)])
def test_the_input_size_is_a_side_or_width_by_height(text, size):
    """A non-square model that declares no size could not be given one at the command
    line (``--input-size`` took one integer); sizes are printed width × height."""
    from pixelprior.cli.options import parse_input_size

    assert parse_input_size(text) == size


@pytest.mark.parametrize("text", ["4x", "x4", "0", "3x4x5", "a", "-2", "2.5", "²", "٣"])
def test_an_input_size_that_is_no_side_is_one_line(text):
    from pixelprior.cli.errors import UsageProblem
    from pixelprior.cli.options import parse_input_size

    with pytest.raises(UsageProblem, match="a side .32. or WIDTHxHEIGHT"):
        parse_input_size(text)


def test_a_non_square_input_size_reaches_the_run_config_as_height_width():
    from pixelprior.experiment import ExperimentConfig, input_size

    config = ExperimentConfig.from_dict({"input_size": (24, 40), "model": "net.pt"})
    assert config.input_size == [24, 40] and input_size(config) == (24, 40)
    assert "input_size must be a positive side or (height, width)" in " ".join(
        ExperimentConfig.from_dict({"input_size": [0, 40]}).problems())


def test_a_number_that_names_two_classes_is_refused():
    """--classes 3,0,1,2 --target 1: index 1 (named '0') was taken without a word, while
    '1' names class 2 (an audit's case)."""
    from pixelprior.cli.errors import UsageProblem
    from pixelprior.cli.inputs import label_of

    names = ("3", "0", "1", "2")
    with pytest.raises(UsageProblem, match="is both class 1 \\(by index\\) and the class "
                                           "named '1' \\(class 2\\)"):
        label_of("1", names, "target")
    assert label_of("1", ("a", "b"), "target") == 1 and label_of("1", ("0", "1"), "t") == 1


def test_attack_sets_the_fast_verifier_and_refuses_it_for_other_modes(tmp_path):
    """`run` had --verify and --verify-boxes, `attack` none: a large image spent minutes
    in the verifier with no way to skip it (an audit's case)."""
    from PIL import Image

    (tmp_path / "steady.py").write_text(
        "import torch\n"
        "def make():\n"
        "    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2))\n"
        "    with torch.no_grad():\n"
        "        net[1].weight.fill_(0.001)\n"
        "        net[1].bias.copy_(torch.tensor([1.0, 0.0]))\n"
        "    return net.eval()\n")
    Image.new("RGB", (4, 4)).save(tmp_path / "black.png")
    spec = f"{tmp_path / 'steady.py'}:make"
    decided = {}
    for verify in ("off", "on"):
        out = tmp_path / verify
        result = invoke("attack", tmp_path / "black.png", "--model", spec, "--input-size", 4,
                        "--mode", "fast", "--verify", verify, "--out", out)
        assert result.exit_code == 0, result.output
        decided[verify] = json.loads((out / "black-result.json").read_text())["decided_by"]
    assert decided == {"off": "certificate", "on": "verified"}
    # an earlier attack's adversarial image of this picture is not left beside a failure
    stale = tmp_path / "on" / "black-adversarial.png"
    Image.new("RGB", (4, 4), "red").save(stale)
    assert invoke("attack", tmp_path / "black.png", "--model", spec, "--input-size", 4,
                  "--mode", "fast", "--out", tmp_path / "on").exit_code == 0
    assert not stale.exists()
    clean_error(invoke("attack", tmp_path / "black.png", "--model", spec, "--input-size", 4,
                       "--verify", "off", "--out", tmp_path / "de"), 2,
                "--verify set(s) the fast mode's verifier; --mode unconstrained does not")
    clean_error(invoke("attack", tmp_path / "black.png", "--model", spec, "--input-size", 4,
                       "--mode", "fast", "--verify", "bogus", "--out", tmp_path / "bogus"),
                2, "fast_verify (--verify) must be one of ('off', 'auto', 'on'), got 'bogus'")


def test_class_names_that_do_not_fit_are_a_usage_error():
    """`run --data photos/ --classes a,b,c` with a folder 0/ ended with exit 1, where the
    README's table says 2 for names that do not fit (an audit's case)."""
    from pixelprior.cli.errors import exit_code
    from pixelprior.data import ClassNamesError

    assert exit_code(ClassNamesError("class folder '0' is not among the 3 classes")) == 2
