"""``pixelprior explain``: an image's sensitivity map and susceptible set S, as a figure,
the map as ``.npy``, raw PNGs and a JSON of what they are of."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import typer

from .._io import atomic_write, write_json_atomic
from ..maps import METHODS, make_sensitivity
from ..priors import check_tau
from ._app import app, console
from .errors import fail, finishing
from .inputs import check_same_image, label_of, load_image, predict_label, write_image
from .options import ModelOptions, check_out, model_options


@app.command()
@model_options()
def explain(
    image_file: Path = typer.Argument(..., help="Image file."),
    model_options: ModelOptions = None,
    label: str | None = typer.Option(None, help="Class to explain (default: predicted)."),
    method: str = typer.Option("smoothgrad", help=METHODS.help_text()),
    tau: float = typer.Option(0.5, help="Threshold of S."),
    layer: str | None = typer.Option(None, help="GradCAM's layer, by its module's name "
                                     "(features.12) [the last of features, else the last "
                                     "convolutional stage]."),
    no_resize: bool = typer.Option(False, "--no-resize", help="Refuse an image whose size "
                                   "differs from the model's input."),
    out: Path = typer.Option(Path("explain-out"), help="Output folder."),
) -> None:
    """Write the sensitivity map of an image and its susceptible set S: a figure (the image,
    the map with a colour bar, S on the image), the map as .npy, and raw PNGs.
    \f
    Args:
        image_file: the image.
        model_options: the model (``--model``, ``--weights``, ``--classes``, ...).
        label: the class explained (default: the model's prediction).
        method: the sensitivity method.
        tau: the threshold of S.
        layer: GradCAM's layer, by name.
        no_resize: refuse an image of another size than the model's input.
        out: the output folder.

    Raises:
        UsageProblem: a bad option or image (one line, exit 2).
    """
    check_tau(tau)
    if layer is not None and method != "gradcam":
        fail(f"--layer is GradCAM's layer and --method is {method}; give --method gradcam, "
             "or drop --layer")
    model_options.check()
    check_out(out)
    record = out / f"{image_file.stem}-{method}.json"
    check_same_image(record, image_file, f"the {method} map")
    opened = model_options.open()
    net = opened.net
    try:
        sensitivity = make_sensitivity(method, net, **({} if layer is None
                                                        else {"layer": layer}))
    except ValueError as exc:  # a layer the model has no module of
        fail(str(exc))
    image, fitted, _ = load_image(image_file, opened.input_size, not no_resize,
                                  channels=opened.channels)
    true = (label_of(label, net.class_names, "explained") if label is not None
            else predict_label(net, image, "cpu"))
    smap = sensitivity(image, torch.tensor([true]))[0]
    susceptible = smap > tau
    from ..report.figures import explain_figure  # matplotlib only where a figure is drawn

    name = net.class_names[true]
    size = f", resized to {smap.shape[1]}×{smap.shape[0]}" if fitted is not None else ""
    stem = out / image_file.stem
    with finishing(f"the outputs were written whole to {out}"):
        out.mkdir(parents=True, exist_ok=True)
        with atomic_write(stem.with_name(f"{stem.name}-{method}.npy")) as f:
            np.save(f, smap.numpy())
        write_image(smap[None].expand(3, -1, -1), stem.with_name(f"{stem.name}-{method}.png"))
        write_image(susceptible[None].float().expand(3, -1, -1),
                    stem.with_name(f"{stem.name}-{method}-susceptible.png"))
        explain_figure(stem.with_name(f"{stem.name}-{method}-figure.png"), image[0],
                       smap.numpy(), susceptible.numpy(), f"{image_file.name}{size}: {name}",
                       method, tau)
        write_json_atomic(record, {  # what the files are of (a rerun replaces them)
            "image": str(image_file), "image_path": str(image_file.resolve()),
            "model": model_options.model, "weights": model_options.weights and str(
                model_options.weights), "method": method, "class": true,
            "class_name": name, "tau": tau, "susceptible": int(susceptible.sum())})
    console.print(f"{method} map for class {name}: |S| = {int(susceptible.sum())} of "
                  f"{susceptible.numel()} pixels (τ = {tau}); written to {out}: "
                  f"{image_file.stem}-{method}-figure.png (image, map with colour bar, S), "
                  f"{image_file.stem}-{method}.npy, raw PNGs and {record.name} (what they are of)")
