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
from ..experiment import ExperimentConfig, describe_inputs, modes_help, read_config_file
from ._app import (
    CONFIG_HELP,
    DEVICE_HELP,
    ENGINE_HELP,
    MODEL_HELP,
    ORACLE_HELP,
    app,
    console,
    parse_floats,
    parse_seeds,
)
from .runs import _run

DATA_SPEC_HELP = ("cifar10, nips17:DIR, an image folder (root/<class>/*.png|jpg), an .npz "
                  "(images uint8 NHWC or NCHW, labels) or a CSV of path,label.")


@app.command()
def run(
    model: str | None = typer.Option(None, help=MODEL_HELP + " [squeezenet1_1-cifar10]"),
    data: str | None = typer.Option(None, help=DATA_SPEC_HELP + " [cifar10]"),
    config_file: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
    weights: Path | None = typer.Option(None, help="State dict for the model."),
    classes: str | None = typer.Option(None, help="Class names: a file (one per line, or "
                                       "JSON) or a,b,c [from the model or the data]."),
    mean: str | None = typer.Option(None, help="Per-channel mean, e.g. 0.485,0.456,0.406: "
                                    "the model is wrapped to take images in [0, 1] (with "
                                    "--std) [the model normalises inside]."),
    std: str | None = typer.Option(None, help="Per-channel standard deviation (with --mean)."),
    input_size: int | None = typer.Option(None, help="Side of the model's square input, for "
                                          "models that do not declare it."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Load a pickled "
                                      "nn.Module (unpickling runs code from the file)."),
    source: str | None = typer.Option(None, help="cifar10: full | sample [full]."),
    images: int | None = typer.Option(None, help="Images to attack [100]."),
    seeds: str | None = typer.Option(None, help="Seeds: a count (5 → 0..4) or a list "
                                     "(0,2,4) [5]."),
    modes: str | None = typer.Option(None, help="Comma-separated modes: " + modes_help()
                                     + " [unconstrained,constrained]."),
    selection: str | None = typer.Option(None, help="first_correct | random_correct | first "
                                         "| random | vulnerable | robust [first_correct]."),
    oracle: Path | None = typer.Option(None, help=ORACLE_HELP),
    query_budget: int | None = typer.Option(None, help="random_search: queries per image "
                                            "[10,000]."),
    fast_refine: str | None = typer.Option(None, help="fast: none | de (a short search off "
                                           "the corners) [none]."),
    device: str | None = typer.Option(None, help=DEVICE_HELP + " [auto]."),
    engine: str | None = typer.Option(None, help=ENGINE_HELP),
    batch_images: int | None = typer.Option(None, help="Images attacked together."),
    workers: int | None = typer.Option(None, help="Ray workers [1]."),
    ray_address: str | None = typer.Option(None, help="Join this Ray cluster."),
    out: Path | None = typer.Option(None, help="Run directory [runs/<data>]."),
    force: bool = typer.Option(False, help="Move old results of another config aside."),
    no_report: bool = typer.Option(False, help="Skip the report."),
) -> None:
    """Attack any classifier on any image set: every mode and seed, resumable, with a
    report (the runner of `reproduce`, on your model and images)."""
    in_file = read_config_file(config_file) if config_file is not None else {}
    dataset, data_path = dataset_for(data) if data else (in_file.get("dataset", "cifar10"),
                                                          None)
    name = (Path(data_path).stem if data_path else dataset) if data else dataset
    given = {"model": model, "dataset": dataset if data else None, "data": data_path,
             "weights": str(weights) if weights else None, "classes": classes,
             "mean": parse_floats(mean, "--mean"), "std": parse_floats(std, "--std"),
             "input_size": input_size, "allow_pickle": allow_pickle or None,
             "source": source, "images": images, "seeds": parse_seeds(seeds),
             "modes": modes.split(",") if modes is not None else None,
             "selection": selection, "oracle": str(oracle) if oracle else None,
             "query_budget": query_budget, "fast_refine": fast_refine, "device": device,
             "engine": engine, "batch_images": batch_images, "workers": workers,
             "ray_address": ray_address, "out": str(out) if out else None}
    overrides = {k: v for k, v in given.items() if v is not None}
    base = {"out": f"runs/{name}"}
    config = ExperimentConfig.build(config_file, overrides, base)
    for line in describe_inputs(config):
        console.print(line)
    _run(config_file, overrides, base, force, no_report, config.dataset)
