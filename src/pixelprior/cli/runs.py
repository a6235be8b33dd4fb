"""Commands on runs: ``reproduce cifar10|nips17`` and ``report``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from .._io import CorruptResultsError, Interrupted, Interrupts, check_writable_dir
from ..experiment import (
    ExperimentConfig,
    ExperimentRunner,
    SelectionError,
    build_model,
    describe_inputs,
    load_dataset,
    modes_help,
    read_config_file,
    select_images,
)
from ..experiment.modes import MAP_FIELDS, READ_WHEN, SEARCH_FIELDS, unread_settings
from ..experiment.records import read_record
from ._app import app, console, reproduce_app
from .errors import BEFORE_RUN, fail, on_interrupt
from .inputs import parse_modes, parse_seeds
from .options import (
    DEVICE_HELP,
    ENGINE_HELP,
    ORACLE_HELP,
    ConfigFile,
    Maxiter,
    Popsize,
    Report,
    Strategy,
    check_de_options,
    check_weights,
)
from .progress import ProgressBar
from .tables import num, print_table, table


def _print_report(directory: Path) -> None:
    # pandas, SciPy and matplotlib load only for reports (0.6 s of every command's start)
    from ..report import load_rows, per_seed_table, write_report

    on_interrupt(f"the report of {directory} is unfinished (the results are untouched); run "
                 f"`pixelprior report {directory}` again")
    stats = write_report(directory, log=lambda note: console.print(f"note: {note}"))
    frame, _ = load_rows(directory)
    shown = table(f"{directory}: per seed and mode", ["seed", "mode", "images", "success",
                                                        "total s", "mean s", "gen all",
                                                        "gen succ", "queries"], fold=1)
    for _, r in per_seed_table(frame).iterrows():
        shown.add_row(str(r["seed"]), r["mode"], str(int(r["images"])),
                      f"{r['success_rate']:.0%}", f"{r['total_s']:.1f}", f"{r['mean_s']:.3f}",
                      num(r["mean_generations_all"]), num(r["mean_generations_success"]),
                      f"{r['mean_queries']:.0f}")
    print_table(shown)
    paired = stats.get("paired")
    if paired:
        ratio, low, high = paired["generation_ratio_both"]
        console.print(f"paired, both succeed ({paired['both_success']} of {paired['pairs']}): "
                      f"generations {paired['a']}/{paired['b']} = {num(ratio)} "
                      f"[{num(low)}, {num(high)}] (images resampled); McNemar p = "
                      f"{num(paired['mcnemar_p'], 3)}")
    console.print(f"report: {directory / 'report.md'}")


@app.command()
def report(directory: Path = typer.Argument(..., help="Run directory.")) -> None:
    """Tables (Markdown, CSV), statistics, exports (CSV, Parquet) and figures of a run.
    \f
    Args:
        directory: the run folder.

    Raises:
        UsageProblem: the folder holds no run.
    """
    if not (directory / "config.json").is_file():
        fail(f"{directory} is not a run directory (no config.json); give the --out of a "
             "`pixelprior reproduce` run")
    _print_report(directory)


DE_OPTIONS = ("popsize", "maxiter", "strategy")  # fields set by --popsize, ...


def _run(config_file: Path | None, overrides: dict, base: dict, force: bool, report: bool,
         dataset: str, describe: bool = False) -> None:
    """Build the config (defaults < command base < file < options given), check it, run,
    report.

    Args:
        config_file: the ``--config`` file, or ``None``.
        overrides: the options given, as config fields.
        base: the command's own defaults.
        force: move an old run of another config aside.
        report: write the report after the run.
        dataset: the dataset of the command (a config file of another is refused).
        describe: say what the run will attack (model, images, accuracy) first.

    Raises:
        UsageProblem: a config file of another dataset, options of the differential
            evolution with no mode that runs it, a model the runner cannot feed.
        ConfigError: the config does not validate.
    """
    on_interrupt(BEFORE_RUN)
    in_file = read_config_file(config_file) if config_file is not None else {}
    if in_file.get("dataset", dataset) != dataset:
        fail(f"{config_file} is a {in_file['dataset']} config; use `pixelprior reproduce "
             f"{in_file['dataset']}`")
    config = ExperimentConfig.build(config_file, overrides, base)
    check_de_options({f"--{name}": overrides.get(name) for name in DE_OPTIONS}, config.modes)
    _check_read(in_file, overrides, config)
    check_writable_dir(Path(config.out))  # before the model and the data are loaded
    if describe:
        for line in describe_inputs(config):
            console.print(line)
    up_to = dataset in USER_DATASETS and "images" not in {**in_file, **overrides}
    if up_to and not force:
        config = _resumed_count(config)
    runner = ExperimentRunner(config, force=force, log=console.print,
                              config_file=config_file)
    with Interrupts() as interrupts:
        try:
            try:
                runner.run(progress=ProgressBar(), interrupts=interrupts)
            except SelectionError as exc:
                if not (up_to and exc.qualifying):
                    raise
                runner = _fewer_images(runner, exc.qualifying)
                runner.run(progress=ProgressBar(), interrupts=interrupts)
        except Interrupted as exc:
            if runner.wrote:  # else: before the run started, nothing written
                exc.kept = (f"{runner.kept} of {runner.total} attacks kept; run the same "
                            "command to resume")
            raise
    if report:
        _print_report(Path(config.out))


USER_DATASETS = ("folder", "npz", "csv")  # a user's images: --images defaults to "up to"


def _fewer_images(runner: ExperimentRunner, qualifying: int) -> ExperimentRunner:
    """A run of a user's images with ``--images`` not given, where fewer images qualify
    than the default count (100, an upper bound there): the runner of those that do,
    said in a note (the paper's datasets keep their exact count; the refused runner
    wrote nothing)."""
    config = runner.config
    console.print(f"note: {qualifying} image(s) qualify for selection {config.selection!r} "
                  f"(--images is {config.images} by default): attacking them (give --images "
                  "N to require N)")
    return ExperimentRunner(dataclasses.replace(config, images=qualifying),
                            force=runner.force, log=runner.log,
                            config_file=runner.config_file)


def _resumed_count(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` with the image count of the run its folder holds, where that run is
    this one but for fewer images than the default (made by :func:`_fewer_images`), so
    the same command resumes it."""
    recorded = _recorded_run(Path(config.out))
    if recorded is None or not recorded.images < config.images:
        return config
    fewer = dataclasses.replace(config, images=recorded.images)
    if fewer.digest() != recorded.digest() or _qualifying(fewer) != recorded.images:
        return config  # another run (--images N given), or other images qualify now
    console.print(f"note: resuming the run of {recorded.images} image(s) in {config.out} "
                  f"(all that qualified; --images is {config.images} by default)")
    return fewer


def _qualifying(config: ExperimentConfig) -> int | None:
    """How many images qualify for ``config``'s selection, where that is at most
    ``config.images`` (``None``: more do)."""
    device = config.resolved_device()
    try:
        select_images(dataclasses.replace(config, images=config.images + 1),
                      build_model(config, device), load_dataset(config), device)
    except SelectionError as exc:
        return exc.qualifying
    return None


def _recorded_run(out: Path) -> ExperimentConfig | None:
    """The config a run folder records (``None``: none, or unreadable: the runner says)."""
    try:
        record = read_record(out)
    except CorruptResultsError:
        return None
    return None if record is None else record["experiment"]


def _check_read(in_file: dict, overrides: dict, config: ExperimentConfig) -> None:
    """Refuse settings (options given or a config file's keys) that no mode of the run
    reads: they would change its config hash and nothing else."""
    defaults = ExperimentConfig()  # a file that writes a default out changes nothing
    given = {field: value for field, value in {**in_file, **overrides}.items()
             if value != getattr(defaults, field, None)}
    unread = unread_settings(given, config.modes, config.selection, config.sensitivity,
                             values=vars(config))
    recorded = _recorded_run(Path(config.out))  # a folder of an earlier version may hold
    unread = [field for field in unread  # such a field: the same value resumes it
              if recorded is None or getattr(recorded, field, None) != given[field]]
    if not unread:
        return
    readers = {field: [search for search, fields in SEARCH_FIELDS.items() if field in fields]
               for field in unread}
    readers.update(tau=["a mode that starts from S, e.g. constrained"],
                   oracle=["the oracle modes and --selection vulnerable/robust"])
    readers.update({field: ["a mode whose start or order is a map that takes it, e.g. "
                            "constrained"] for field in unread if field in MAP_FIELDS})
    readers.update({field: [READ_WHEN[field][2]] for field in unread if field in READ_WHEN
                    and getattr(config, READ_WHEN[field][0]) not in READ_WHEN[field][1]})
    said = " or ".join(f"{_flag(f, overrides)} (read by {' and '.join(readers[f])})"
                       for f in unread)
    fail(f"no mode of this run ({', '.join(config.modes)}) reads {said}: drop "
         f"{'it' if len(unread) == 1 else 'them'}, or add what reads "
         f"{'it' if len(unread) == 1 else 'them'}")


def _flag(field: str, overrides: dict) -> str:
    """How the user set a field: its option, or its key in the config file."""
    option = {"fast_verify": "verify"}.get(field, field).replace("_", "-")
    return f"--{option}" if field in overrides else f"{field} in the config file"


@reproduce_app.command("cifar10")
def reproduce_cifar10(
    quick: bool = typer.Option(False, help="10 bundled images, 1 seed, modes fast, "
                               "unconstrained and constrained (1-2 minutes on 2 cores; the cost "
                               "line before it gives an upper bound)."),
    config_file: ConfigFile = None,
    images: int | None = typer.Option(None, help="Images to attack [100]."),
    seeds: str | None = typer.Option(None, help="Seeds: a count (5 → 0..4) or a list "
                                     "(0,2,4) [5]."),
    modes: str | None = typer.Option(None, help="Comma-separated modes: " + modes_help()
                                     + " [unconstrained,constrained]."),
    popsize: Popsize = None,
    maxiter: Maxiter = None,
    strategy: Strategy = None,
    tau: float | None = typer.Option(None, help="Threshold of S [0.5]."),
    selection: str | None = typer.Option(None, help="first_correct | random_correct | first "
                                         "| random | vulnerable / robust (the images the "
                                         "--oracle scan fools / does not) [first_correct]."),
    oracle: Path | None = typer.Option(None, help=ORACLE_HELP),
    source: str | None = typer.Option(None, help="full (the exact test set; needs it, or "
                                      "downloads it) | sample (the bundled first 100) [full]."),
    data: Path | None = typer.Option(None, help="Folder with cifar-10-batches-py "
                                     "[$PIXELPRIOR_DATA, then the cache]."),
    device: str | None = typer.Option(None, help=DEVICE_HELP + " [auto]."),
    batch_images: int | None = typer.Option(None, help="Images attacked together [10 on "
                                            "the CPU, all on CUDA]."),
    max_batch: int | None = typer.Option(None, help="Rows per scoring call [by device]."),
    engine: str | None = typer.Option(None, help=ENGINE_HELP),
    workers: int | None = typer.Option(None, help="Ray workers (pip install "
                                       "'pixelprior[ray]') [1: this process]."),
    ray_address: str | None = typer.Option(None, help="Join this Ray cluster [start a "
                                           "local one]."),
    out: Path | None = typer.Option(None, help="Run directory [runs/cifar10, "
                                    "runs/cifar10-quick]."),
    force: bool = typer.Option(False, help="Move old results of another config (or damaged "
                               "ones) into OUT/old-STAMP/; with a folder of other files, "
                               "run there and leave them be."),
    report: Report = True,
) -> None:
    """Table 1: unconstrained vs constrained one-pixel attacks on CIFAR-10 (resumable).
    \f
    Args:
        quick: the quick preset (10 bundled images, 1 seed, fast and the paper's modes).
        config_file: a TOML/JSON config; options given override it.
        images: images attacked.
        seeds: a count or a list.
        modes: comma-separated modes.
        popsize: DE population (refused when no mode runs DE).
        maxiter: most DE generations (likewise).
        strategy: DE strategy (likewise).
        tau: the threshold of S.
        selection: which images.
        oracle: a susceptibility folder of these images.
        source: full (the exact test set) or sample (the bundled first 100).
        data: the folder holding cifar-10-batches-py.
        max_batch: rows per scoring call.
        device: where the model runs.
        batch_images: images attacked together.
        engine: how candidates are scored.
        workers: Ray workers.
        ray_address: a Ray cluster to join.
        out: the run folder.
        force: move an old run of another config aside.
        report: write the report after the run.

    Raises:
        UsageProblem: a bad option (one line, exit 2, nothing written).
    """
    # the quick job: the fast answer beside the paper's two modes, 10 bundled images, 1 seed;
    # a preset, so a config file's values and the options given win over it
    quick_preset = {"images": 10, "seeds": [0], "source": "sample",
                    "modes": ["fast", "unconstrained", "constrained"]} if quick else {}
    base = {"out": "runs/cifar10-quick" if quick else "runs/cifar10", **quick_preset}
    given = {"images": images, "seeds": parse_seeds(seeds),
             "modes": parse_modes(modes), "popsize": popsize, "maxiter": maxiter,
             "strategy": strategy, "tau": tau,
             "selection": selection, "oracle": str(oracle) if oracle else None,
             "source": source, "data": str(data) if data else None, "device": device,
             "batch_images": batch_images, "max_batch": max_batch, "engine": engine,
             "workers": workers, "ray_address": ray_address, "out": str(out) if out else None}
    _run(config_file, {k: v for k, v in given.items() if v is not None}, base, force, report,
         "cifar10")


@reproduce_app.command("nips17")
def reproduce_nips17(
    data: Path | None = typer.Option(None, help="DEV set folder: dev_dataset.csv + images/ "
                                     "(required, here or in --config)."),
    model: str | None = typer.Option(None, help="squeezenet1_1 | squeezenet1_0 "
                                     "[squeezenet1_1]."),
    weights: Path | None = typer.Option(None, help="Weights file [cache, then download]."),
    config_file: ConfigFile = None,
    images: int | None = typer.Option(None, help="Images chosen at random, recorded [500]."),
    seeds: str | None = typer.Option(None, help="Seeds: a count or a list [5]."),
    modes: str | None = typer.Option(None, help="Comma-separated modes."),
    popsize: Popsize = None,
    maxiter: Maxiter = None,
    strategy: Strategy = None,
    selection_seed: int | None = typer.Option(None, help="Seed of the random selection [0]."),
    oracle: Path | None = typer.Option(None, help=ORACLE_HELP),
    resize_inside: bool | None = typer.Option(None, "--resize-inside/--no-resize-inside",
                                              help="Attack the 299x299 image and resize "
                                              "inside the model [no]."),
    max_batch: int | None = typer.Option(None, help="Rows per scoring call [by device]."),
    device: str | None = typer.Option(None, help=DEVICE_HELP + " [auto]."),
    batch_images: int | None = typer.Option(None, help="Images attacked together [4 on "
                                            "the CPU, all on CUDA]."),
    engine: str | None = typer.Option(None, help=ENGINE_HELP),
    workers: int | None = typer.Option(None, help="Ray workers [1]."),
    ray_address: str | None = typer.Option(None, help="Join this Ray cluster."),
    out: Path | None = typer.Option(None, help="Run directory [runs/nips17]."),
    force: bool = typer.Option(False, help="Move old results of another config (or damaged "
                               "ones) into OUT/old-STAMP/."),
    report: Report = True,
) -> None:
    """Table 2: unconstrained vs constrained on NIPS 2017 DEV images (ImageNet SqueezeNet).
    \f
    Args:
        data: the DEV set's folder.
        model: squeezenet1_1 or squeezenet1_0.
        weights: their weights file.
        config_file: a TOML/JSON config; options given override it.
        images: images attacked.
        seeds: a count or a list.
        modes: comma-separated modes.
        popsize: DE population (refused when no mode runs DE).
        maxiter: most DE generations (likewise).
        strategy: DE strategy (likewise).
        selection_seed: the seed of the random selection.
        oracle: a susceptibility folder of these images.
        resize_inside: attack the 299×299 image, resized inside the model.
        max_batch: rows per scoring call.
        device: where the model runs.
        batch_images: images attacked together.
        engine: how candidates are scored.
        workers: Ray workers.
        ray_address: a Ray cluster to join.
        out: the run folder.
        force: move an old run of another config aside.
        report: write the report after the run.

    Raises:
        UsageProblem: a bad option (one line, exit 2, nothing written).
    """
    check_weights(weights)
    base = {"dataset": "nips17", "model": "squeezenet1_1", "images": 500,
            "selection": "random_correct", "out": "runs/nips17",
            # a scan of every 224x224 position would cost 1.35 M queries per image: scan
            # modes cover the top 1,024 positions of their order (recorded in config.json)
            "scan_positions": 1024}
    given = {"data": str(data) if data else None, "model": model,
             "weights": str(weights) if weights else None, "images": images,
             "seeds": parse_seeds(seeds), "modes": parse_modes(modes), "popsize": popsize,
             "maxiter": maxiter, "strategy": strategy,
             "selection_seed": selection_seed, "resize_inside": resize_inside,
             "oracle": str(oracle) if oracle else None,
             "max_batch": max_batch, "device": device, "batch_images": batch_images,
             "engine": engine, "workers": workers, "ray_address": ray_address,
             "out": str(out) if out else None}
    _run(config_file, {k: v for k, v in given.items() if v is not None}, base, force,
         report, "nips17")
