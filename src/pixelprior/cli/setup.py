"""Commands that set things up: ``train``, ``eval`` and ``data``."""

from __future__ import annotations

import sys
import urllib.parse
from pathlib import Path

import torch
import typer

from ..data import dataset_for
from ..data.nips17 import DEV_CSV_SHA256, DEV_CSV_URL, download_nips17, make_standin
from ..experiment import ExperimentConfig, describe_inputs
from ..models import SqueezeNet
from ..models.train import TrainConfig, TrainConfigError, evaluate, train_cifar10
from ._app import console, data_app, eval_app, train_app
from .errors import fail, on_interrupt
from .options import ModelOptions, check_out, model_options
from .targets import fitted_cifar10


@train_app.command("cifar10")
def train_cifar10_cmd(
    epochs: int = typer.Option(30, help="Training epochs."),
    batch_size: int = typer.Option(256, help="Batch size."),
    lr: float = typer.Option(0.2, help="Peak learning rate (one-cycle)."),
    warmup_epochs: float | None = typer.Option(None, show_default=False,
                                               help="Epochs of linear warm-up, fewer than "
                                               "--epochs [2, or a fifth of a run of fewer "
                                               "than 10; a resumed run's own]."),
    seed: int = typer.Option(0, help="Random seed."),
    out: Path = typer.Option(Path("checkpoints/cifar10"), help="Checkpoint/weights folder."),
    data: Path | None = typer.Option(None, help="cifar10-jpeg.tar.xz (default: "
                                     "$PIXELPRIOR_DATA or the cache)."),
    limit: int | None = typer.Option(None, help="Train on this many images (smoke tests)."),
    threads: int = typer.Option(0, help="Torch CPU threads (0: default)."),
) -> None:
    """Train the CIFAR-10 SqueezeNet (resumes from OUT/checkpoint.pt).
    \f
    Args:
        epochs: training epochs.
        batch_size: images per step.
        lr: the one-cycle schedule's peak learning rate.
        warmup_epochs: epochs of warm-up (``None``: the default, or a resumed run's).
        seed: the random seed.
        out: the checkpoint and weights folder.
        data: cifar10-jpeg.tar.xz.
        limit: train on this many images.
        threads: torch's CPU threads (0: its default).
    """
    if seed < 0:
        fail(f"--seed must be >= 0, got {seed}")
    check_out(out)
    on_interrupt(f"the checkpoints written so far in {out} are kept; run the same command to "
                 "resume")
    try:
        config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr,
                             warmup_epochs=warmup_epochs, seed=seed,
                             out_dir=str(out), data=str(data) if data else None, limit=limit,
                             threads=threads)
        card = train_cifar10(config, log=lambda line: console.print(line, soft_wrap=True),
                             command="pixelprior " + " ".join(sys.argv[1:]))  # (a JSON
        # record per line, never wrapped)
    except TrainConfigError as exc:
        fail(str(exc))
    accuracy = card["test_accuracy"]
    console.print(f"weights: {out / 'squeezenet1_1-cifar10.pt'}  test accuracy: " + (
        f"{accuracy:.4f}" if accuracy is not None else "not measured (no exact test set)"))


@eval_app.command("cifar10")
@model_options()
def eval_cifar10_cmd(
    model_options: ModelOptions = None,
    data: Path | None = typer.Option(None, help="Folder with cifar-10-batches-py."),
    source: str = typer.Option("full", help="full (the exact test set) | sample (the "
                               "bundled first 100 test images)."),
) -> None:
    """Top-1 accuracy on the exact CIFAR-10 test images (all rows present).
    \f
    Args:
        model_options: the model (``--model``, ``--weights``, ``--classes``, ...).
        data: the folder holding cifar-10-batches-py.
        source: full (the exact test set) or sample (the bundled first 100).

    Raises:
        UsageProblem: a bad option.
    """
    if source not in ("full", "sample"):
        fail(f"--source must be full or sample, got {source!r}")
    if source == "sample" and data is not None:
        fail(f"--data {data} is not read with --source sample (the bundled images): drop "
             "one of them")
    opened = model_options.open()
    dataset = fitted_cifar10(opened, source, data)
    accuracy = evaluate(opened.net, dataset)
    weights = f" with weights {model_options.weights}" if model_options.weights else ""
    console.print(f"{model_options.model}{weights}: top-1 {accuracy:.4f} on {len(dataset)} "
                  f"exact CIFAR-10 test images ({dataset.source})")


@eval_app.command("data")
@model_options()
def eval_data_cmd(
    data: str = typer.Argument(..., help="cifar10, nips17:DIR, an image folder "
                               "(root/<class>/*.png|jpg), an .npz or a CSV of path,label."),
    model_options: ModelOptions = None,
    source: str = typer.Option("full", help="cifar10: full | sample."),
) -> None:
    """What a model is and how accurate it is on an image set (any model and data spec):
    what was loaded and assumed, what loading did to the images, the top-1 accuracy.
    \f
    Args:
        data: a data spec.
        model_options: the model (``--model``, ``--weights``, ``--classes``, ...).
        source: CIFAR-10's images: full or sample.

    Raises:
        UsageProblem: a bad option.
        ConfigError: the model's classes and the data's do not fit.
    """
    dataset, path = dataset_for(data)
    if dataset != "cifar10" and source != "full":
        fail(f"--source chooses CIFAR-10's images; {data} is {dataset} data: drop --source")
    config = ExperimentConfig.build(overrides=dict(
        **model_options.config_values(), dataset=dataset, data=path, source=source,
        device="cpu"))
    for line in describe_inputs(config):
        console.print(line)


@data_app.command("nips17")
def data_nips17(out: Path = typer.Option(..., help="Target folder (published layout)."),
                csv_url: str = typer.Option(None, help="Override the CSV's URL.")) -> None:
    """Download the NIPS 2017 DEV set (CSV + cropped 299x299 PNGs); resumable.
    \f
    Args:
        out: the target folder (the published layout).
        csv_url: another URL of the CSV (not checked against the published hash).
    """
    if csv_url is not None and urllib.parse.urlparse(csv_url).scheme not in (
            "http", "https", "file"):
        fail(f"--csv-url {csv_url!r} is no URL: give an http(s):// or file:// address of the "
             "DEV set's CSV")
    check_out(out)
    on_interrupt(f"the files downloaded so far into {out} are kept; run the same command to "
                 "resume")
    # the published CSV's checksum applies only to the published URL
    report = download_nips17(out, csv_url or DEV_CSV_URL,
                             csv_sha256=None if csv_url else DEV_CSV_SHA256)
    console.print(f"downloaded {report['downloaded']}, already there {report['existing']}, "
                  f"failed {len(report['failed'])} (listed in {out / 'failed.txt'})")


@data_app.command("standin")
def data_standin(out: Path = typer.Option(..., help="Target folder."),
                 count: int = typer.Option(8, help="Images."),
                 seed: int = typer.Option(0, help="Seed of the random images and weights.")
                 ) -> None:
    """Write a small stand-in of the DEV set and random SqueezeNet 1.1 weights.
    \f
    Args:
        out: the target folder.
        count: images.
        seed: the seed of the random images and weights.
    """
    if count < 1:
        fail(f"--count must be >= 1 (images), got {count}")
    if seed < 0:
        fail(f"--seed must be >= 0, got {seed}")
    check_out(out)
    on_interrupt(f"the stand-in in {out} may be incomplete; run the same command again")
    torch.manual_seed(seed)
    model = SqueezeNet("1_1").eval()
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "squeezenet1_1-standin.pth")
    make_standin(out, count, seed, label_model=model)
    console.print(f"stand-in DEV set with {count} images and random weights in {out}")

