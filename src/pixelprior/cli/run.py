"""``pixelprior run``: the experiment runner on any model and any image set.

``reproduce cifar10|nips17`` are presets of the same runner (the paper's tables); this
command takes a model spec (a registered name, a TorchScript or ONNX file,
``module:callable``, a pickled module with ``--allow-pickle``) and a data spec (``cifar10``,
``nips17:DIR``, an image folder ``root/<class>/*.png``, an ``.npz``, a CSV of
``path,label``), says what it loaded and how accurate the model is on those images, then
runs every mode and seed with the runner's resume, lock, selection and report.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ..data import dataset_for
from ..experiment import modes_help, read_config_file
from ._app import app
from .inputs import parse_modes, parse_seeds
from .options import (
    DEVICE_HELP,
    ENGINE_HELP,
    ORACLE_HELP,
    ConfigFile,
    Maxiter,
    ModelOptions,
    Popsize,
    Report,
    Strategy,
    model_options,
)
from .runs import _run

DATA_SPEC_HELP = ("cifar10, nips17:DIR, an image folder (root/<class>/*.png|jpg), an .npz "
                  "(images uint8 NHWC or NCHW, labels) or a CSV of path,label.")


@app.command()
@model_options(default=None)
def run(
    model_options: ModelOptions = None,
    data: str | None = typer.Option(None, help=DATA_SPEC_HELP + " [cifar10]"),
    config_file: ConfigFile = None,
    source: str | None = typer.Option(None, help="cifar10: full | sample [full]."),
    images: int | None = typer.Option(None, help="Images to attack [100; of a folder, .npz "
                                      "or CSV: up to 100, all that qualify where fewer "
                                      "do]."),
    seeds: str | None = typer.Option(None, help="Seeds: a count (5 → 0..4) or a list "
                                     "(0,2,4) [5]."),
    modes: str | None = typer.Option(None, help="Comma-separated modes: " + modes_help()
                                     + " [unconstrained,constrained]."),
    popsize: Popsize = None,
    maxiter: Maxiter = None,
    strategy: Strategy = None,
    tau: float | None = typer.Option(None, help="Threshold of S, in (0, 1): the modes that "
                                     "start from S [0.5]."),
    selection: str | None = typer.Option(None, help="first_correct | random_correct | first "
                                         "| random | vulnerable | robust [first_correct]."),
    oracle: Path | None = typer.Option(None, help=ORACLE_HELP),
    query_budget: int | None = typer.Option(None, help="random_search: queries per image "
                                            "[10,000]."),
    fast_refine: str | None = typer.Option(None, help="fast: none | de (a short search off "
                                           "the corners) [none]."),
    verify: str | None = typer.Option(None, help="fast: prove what the corners certify over "
                                      "every color: auto (where it fits) | on | off [auto]."),
    verify_boxes: int | None = typer.Option(None, help="fast: the verifier's most boxes per "
                                            "image [20,000]."),
    verify_seconds: float | None = typer.Option(None, help="fast: the verifier's most "
                                                "seconds per image (a limit by time: "
                                                "results then depend on the machine's "
                                                "speed) [no limit]."),
    device: str | None = typer.Option(None, help=DEVICE_HELP + " [auto]."),
    engine: str | None = typer.Option(None, help=ENGINE_HELP),
    batch_images: int | None = typer.Option(None, help="Images attacked together."),
    workers: int | None = typer.Option(None, help="Ray workers [1]."),
    ray_address: str | None = typer.Option(None, help="Join this Ray cluster."),
    out: Path | None = typer.Option(None, help="Run directory [runs/<data>]."),
    force: bool = typer.Option(False, help="Move old results of another config aside."),
    report: Report = True,
) -> None:
    """Attack any classifier on any image set: every mode and seed, resumable, with a
    report (the runner of `reproduce`, on your model and images).
    \f
    Args:
        model_options: the model (``--model``, ``--weights``, ``--classes``, ...).
        data: the images: a data spec.
        config_file: a TOML/JSON config; options given override it.
        source: CIFAR-10's images: full or sample.
        images: images attacked.
        seeds: a count or a list.
        modes: comma-separated modes.
        popsize: DE population (refused when no mode runs DE).
        maxiter: most DE generations (likewise).
        strategy: DE strategy (likewise).
        tau: the threshold of S (refused when no mode reads it).
        selection: which images.
        oracle: a susceptibility folder of these images.
        query_budget: random search's queries per image.
        fast_refine: the fast mode's refinement.
        verify: the fast mode's verifier (auto, on, off).
        verify_boxes: the verifier's most boxes per image.
        verify_seconds: the verifier's most seconds per image.
        device: where the model runs.
        engine: how candidates are scored.
        batch_images: images attacked together.
        workers: Ray workers.
        ray_address: a Ray cluster to join.
        out: the run folder.
        force: move an old run of another config aside.
        report: write the report after the run.

    Raises:
        UsageProblem: a bad option (one line, exit 2, nothing written).
    """
    in_file = read_config_file(config_file) if config_file is not None else {}
    dataset, data_path = dataset_for(data) if data else (in_file.get("dataset", "cifar10"),
                                                          None)
    name = (Path(data_path).stem if data_path else dataset) if data else dataset
    given = {**model_options.config_values(), "dataset": dataset if data else None,
             "data": data_path, "source": source, "images": images,
             "seeds": parse_seeds(seeds), "modes": parse_modes(modes), "popsize": popsize,
             "maxiter": maxiter, "strategy": strategy, "tau": tau, "selection": selection,
             "oracle": str(oracle) if oracle else None, "query_budget": query_budget,
             "fast_refine": fast_refine, "fast_verify": verify,
             "verify_boxes": verify_boxes, "verify_seconds": verify_seconds,
             "device": device, "engine": engine,
             "batch_images": batch_images, "workers": workers, "ray_address": ray_address,
             "out": str(out) if out else None}
    overrides = {k: v for k, v in given.items() if v is not None}
    _run(config_file, overrides, {"out": f"runs/{name}"}, force, report, dataset,
         describe=True)
