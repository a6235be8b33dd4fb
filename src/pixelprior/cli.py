"""Command-line interface: ``pixelprior train|eval|attack|explain|reproduce|report``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Interpretability-guided one-pixel attacks (Kumar et al. 2019).")
train_app = typer.Typer(no_args_is_help=True, help="Train models.")
eval_app = typer.Typer(no_args_is_help=True, help="Evaluate models.")
reproduce_app = typer.Typer(no_args_is_help=True, help="Reproduce the paper's experiments.")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(reproduce_app, name="reproduce")
console = Console()
ENGINE_HELP = ("How candidates are scored: auto (incremental where the model allows it), "
               "incremental, full (PyTorch passes) or onnxruntime (full passes with ONNX "
               "Runtime on the CPU; pip install 'pixelprior[onnx]').")


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}", soft_wrap=True)
    raise typer.Exit(2)


@train_app.command("cifar10")
def train_cifar10_cmd(
    epochs: int = typer.Option(30, help="Training epochs."),
    batch_size: int = typer.Option(256, help="Batch size."),
    lr: float = typer.Option(0.2, help="Peak learning rate (one-cycle)."),
    seed: int = typer.Option(0, help="Random seed."),
    out: Path = typer.Option(Path("checkpoints/cifar10"), help="Checkpoint/weights folder."),
    data: Path | None = typer.Option(None, help="cifar10-jpeg.tar.xz (default: "
                                     "$PIXELPRIOR_DATA or the cache)."),
    limit: int | None = typer.Option(None, help="Train on this many images (smoke tests)."),
    threads: int = typer.Option(0, help="Torch CPU threads (0: default)."),
) -> None:
    """Train the CIFAR-10 SqueezeNet (resumes from OUT/checkpoint.pt)."""
    import sys

    from .train import TrainConfig, train_cifar10

    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                         out_dir=str(out), data=str(data) if data else None, limit=limit,
                         threads=threads)
    card = train_cifar10(config, log=console.print,
                         command="pixelprior " + " ".join(sys.argv[1:]))
    console.print(f"weights: {out / 'squeezenet1_1-cifar10.pt'}  test accuracy: "
                  f"{card['test_accuracy']:.4f}")


@eval_app.command("cifar10")
def eval_cifar10_cmd(
    model: str = typer.Option("squeezenet1_1-cifar10", help="Registered model name."),
    weights: Path | None = typer.Option(None, help="Weights file (default: bundled)."),
    data: Path | None = typer.Option(None, help="Folder with cifar-10-batches-py."),
    source: str = typer.Option("auto", help="auto | sample | full"),
) -> None:
    """Top-1 accuracy on the exact CIFAR-10 test images (all rows present)."""
    from .data import DataError, load_cifar10
    from .models import WeightsError, load_model
    from .train import evaluate

    try:
        net = load_model(model, weights)
        dataset = load_cifar10(source, data)
    except (DataError, WeightsError, KeyError) as exc:
        _fail(str(exc))
    accuracy = evaluate(net, dataset)
    console.print(f"{model}: top-1 {accuracy:.4f} on {len(dataset)} exact CIFAR-10 test "
                  f"images ({dataset.source})")


def _read_image(path: Path, size: int):
    """A user image file as float [1, 3, size, size] in [0, 1] (bilinear resize)."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path).convert("RGB")
    except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
        _fail(f"cannot read image {path}: {exc}")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()
    return torch.from_numpy(array)[None].float() / 255.0


def _write_image(tensor, path: Path) -> None:
    import numpy as np
    from PIL import Image

    array = (tensor.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    tmp = path.with_name(path.name + ".tmp.png")
    Image.fromarray(np.ascontiguousarray(array)).save(tmp)
    tmp.replace(path)


def _label_of(value: str | None, names: tuple[str, ...]) -> int | None:
    if value is None:
        return None
    if value.isdigit():
        index = int(value)
    elif value in names:
        index = names.index(value)
    else:
        _fail(f"unknown class {value!r}; use an index 0..{len(names) - 1} or a name")
    if not 0 <= index < len(names):
        _fail(f"class {index} out of range 0..{len(names) - 1}")
    return index


@app.command()
def attack(
    image_file: Path = typer.Argument(..., help="PNG/JPEG image to attack."),
    model: str = typer.Option("squeezenet1_1-cifar10", help="Registered model name."),
    weights: Path | None = typer.Option(None, help="Weights file."),
    label: str | None = typer.Option(None, help="True class (default: the model's "
                                     "prediction)."),
    target: str | None = typer.Option(None, help="Target class (targeted attack)."),
    constrained: bool = typer.Option(False, help="Start in the susceptible set S."),
    tau: float = typer.Option(0.5, help="Threshold of S."),
    popsize: int = typer.Option(400),
    maxiter: int = typer.Option(100),
    pixels: int = typer.Option(1, help="Pixels changed."),
    seed: int = typer.Option(0),
    engine: str = typer.Option("auto", help=ENGINE_HELP),
    out: Path = typer.Option(Path("attack-out"), help="Output folder."),
) -> None:
    """Attack one image; write the adversarial PNG and a JSON result."""
    import torch

    from .attack import OnePixelAttack
    from .models import WeightsError, load_model, model_spec
    from .prior import SusceptibleSetPrior, UniformPrior

    try:
        net = load_model(model, weights)
    except (WeightsError, KeyError) as exc:
        _fail(str(exc))
    spec = model_spec(model)
    image = _read_image(image_file, spec.input_size)
    names = net.class_names
    with torch.inference_mode():
        predicted = int(net(image).argmax())
    true = _label_of(label, names) if label is not None else predicted
    goal = _label_of(target, names)
    try:
        prior = SusceptibleSetPrior(tau) if constrained else UniformPrior()
        runner = OnePixelAttack(net, prior=prior, popsize=popsize, maxiter=maxiter,
                                pixels=pixels, targeted=goal is not None, seed=seed,
                                engine=engine)
        output = runner(image, torch.tensor([true]),
                        torch.tensor([goal]) if goal is not None else None)
    except ValueError as exc:
        _fail(str(exc))
    result = output.results[0]
    out.mkdir(parents=True, exist_ok=True)
    _write_image(output.adversarial[0], out / f"{image_file.stem}-adversarial.png")
    row = result.to_row() | {"image": str(image_file), "model": model,
                             "true_name": names[true],
                             "adversarial_name": names[result.adversarial_label]}
    tmp = out / f"{image_file.stem}-result.json.tmp"
    tmp.write_text(json.dumps(row, indent=2) + "\n")
    tmp.replace(out / f"{image_file.stem}-result.json")
    verdict = "[green]success[/green]" if result.success else "[yellow]failed[/yellow]"
    where = ", ".join(f"({p.x}, {p.y})" for p in result.pixels)
    console.print(f"{verdict}: {names[true]} → {names[result.adversarial_label]} by {where} "
                  f"after {result.generations} generations, {result.queries} queries "
                  f"({result.seconds:.2f} s); written to {out}")


@app.command()
def explain(
    image_file: Path = typer.Argument(..., help="PNG/JPEG image."),
    model: str = typer.Option("squeezenet1_1-cifar10"),
    weights: Path | None = typer.Option(None),
    label: str | None = typer.Option(None, help="Class to explain (default: predicted)."),
    method: str = typer.Option("smoothgrad", help="smoothgrad | gradient | "
                               "integrated_gradients | gradcam"),
    tau: float = typer.Option(0.5, help="Threshold of S."),
    out: Path = typer.Option(Path("explain-out")),
) -> None:
    """Write the sensitivity map (PNG + .npy) and the susceptible set S of an image."""
    import numpy as np
    import torch

    from .models import WeightsError, load_model, model_spec
    from .prior import check_tau
    from .sensitivity import make_sensitivity

    try:
        net = load_model(model, weights)
        check_tau(tau)
        sensitivity = make_sensitivity(method, net)
    except (WeightsError, KeyError, ValueError) as exc:
        _fail(str(exc))
    image = _read_image(image_file, model_spec(model).input_size)
    with torch.inference_mode():
        predicted = int(net(image).argmax())
    true = _label_of(label, net.class_names) if label is not None else predicted
    smap = sensitivity(image, torch.tensor([true]))[0]
    susceptible = smap > tau
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / f"{image_file.stem}-{method}.npy", smap.numpy())
    _write_image(smap[None].expand(3, -1, -1), out / f"{image_file.stem}-{method}.png")
    _write_image(susceptible[None].float().expand(3, -1, -1),
                 out / f"{image_file.stem}-susceptible.png")
    console.print(f"{method} map for class {net.class_names[true]}: |S| = "
                  f"{int(susceptible.sum())} of {susceptible.numel()} pixels (τ = {tau}); "
                  f"written to {out}")


def _print_report(directory: Path) -> None:
    from .report import load_rows, per_seed_table, write_report

    stats = write_report(directory)
    frame, _ = load_rows(directory)
    table = Table(title=f"{directory} — per seed and mode")
    for column in ("seed", "mode", "images", "success", "total s", "mean s", "gen (all)",
                   "gen (succ.)", "queries"):
        table.add_column(column, justify="right")
    for _, r in per_seed_table(frame).iterrows():
        table.add_row(str(r["seed"]), r["mode"], str(int(r["images"])),
                      f"{r['success_rate']:.0%}", f"{r['total_s']:.1f}", f"{r['mean_s']:.3f}",
                      f"{r['mean_generations_all']:.2f}", f"{r['mean_generations_success']:.2f}",
                      f"{r['mean_queries']:.0f}")
    console.print(table)
    paired = stats.get("paired")
    if paired:
        ratio, low, high = paired["generation_ratio_both"]
        console.print(f"paired, both succeed ({paired['both_success']} of {paired['pairs']}): "
                      f"generations unconstrained/constrained = {ratio:.2f} "
                      f"[{low:.2f}, {high:.2f}]; Wilcoxon p = {paired['wilcoxon_p']}")
    console.print(f"report: {directory / 'report.md'}")


@app.command()
def report(directory: Path = typer.Argument(..., help="Run directory.")) -> None:
    """Tables (Markdown, CSV), statistics, exports (CSV, Parquet) and figures of a run."""
    try:
        _print_report(directory)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))


@reproduce_app.command("cifar10")
def reproduce_cifar10(
    quick: bool = typer.Option(False, help="10 images, 1 seed: a few minutes on 2 cores."),
    config_file: Path | None = typer.Option(None, "--config", help="TOML/JSON config."),
    images: int | None = typer.Option(None, help="Images to attack (default 100)."),
    seeds: int | None = typer.Option(None, help="Number of seeds 0..n-1 (default 5)."),
    source: str = typer.Option("auto", help="auto | sample | full"),
    data: Path | None = typer.Option(None, help="Folder with cifar-10-batches-py."),
    device: str = typer.Option("cpu"),
    batch_images: int = typer.Option(10, help="Images attacked together."),
    engine: str | None = typer.Option(None, help=ENGINE_HELP),
    out: Path | None = typer.Option(None, help="Run directory (default runs/cifar10[-quick])."),
    force: bool = typer.Option(False, help="Move old results of another config aside."),
    no_report: bool = typer.Option(False, help="Skip the report."),
) -> None:
    """Table 1: unconstrained vs constrained one-pixel attacks on CIFAR-10 (resumable)."""
    from .experiment import ConfigMismatchError, ExperimentConfig, run_experiment

    config = ExperimentConfig.from_file(config_file) if config_file else ExperimentConfig()
    config.source, config.device, config.batch_images = source, device, batch_images
    if engine is not None:
        config.engine = engine
    if data is not None:
        config.data = str(data)
    if quick:
        config.images, config.seeds = 10, [0]
    if images is not None:
        config.images = images
    if seeds is not None:
        config.seeds = list(range(seeds))
    config.out = str(out or (Path("runs") / ("cifar10-quick" if quick else "cifar10")))
    try:
        ExperimentConfig(**config.to_dict())  # validates the overridden fields
        run_experiment(config, force=force)
    except (ConfigMismatchError, ValueError) as exc:
        _fail(str(exc))
    if not no_report:
        _print_report(Path(config.out))


@reproduce_app.command("nips17")
def reproduce_nips17(
    data: Path = typer.Option(..., help="DEV set folder: dev_dataset.csv + images/."),
    model: str = typer.Option("squeezenet1_1", help="squeezenet1_1 | squeezenet1_0"),
    weights: Path | None = typer.Option(None, help="Weights file (default: cache/download)."),
    config_file: Path | None = typer.Option(None, "--config", help="TOML/JSON config."),
    images: int = typer.Option(500, help="Images chosen at random (recorded)."),
    seeds: int = typer.Option(5, help="Number of seeds 0..n-1."),
    selection_seed: int = typer.Option(0, help="Seed of the random image selection."),
    resize_inside: bool = typer.Option(False, help="Attack the 299x299 image; resize inside."),
    max_batch: int | None = typer.Option(None, help="Most images per forward (memory)."),
    device: str = typer.Option("cpu"),
    batch_images: int = typer.Option(4, help="Images attacked together."),
    engine: str | None = typer.Option(None, help=ENGINE_HELP),
    out: Path = typer.Option(Path("runs/nips17"), help="Run directory."),
    force: bool = typer.Option(False, help="Move old results of another config aside."),
    no_report: bool = typer.Option(False, help="Skip the report."),
) -> None:
    """Table 2: unconstrained vs constrained on NIPS 2017 DEV images (ImageNet SqueezeNet)."""
    from .experiment import ConfigMismatchError, ExperimentConfig, run_experiment

    config = ExperimentConfig.from_file(config_file) if config_file else ExperimentConfig()
    config.dataset, config.data, config.model = "nips17", str(data), model
    config.weights = str(weights) if weights else None
    config.images, config.seeds = images, list(range(seeds))
    config.selection, config.selection_seed = "random_correct", selection_seed
    config.resize_inside, config.max_batch = resize_inside, max_batch
    config.device, config.batch_images, config.out = device, batch_images, str(out)
    if engine is not None:
        config.engine = engine
    try:
        ExperimentConfig(**config.to_dict())  # validates the overridden fields
        run_experiment(config, force=force)
    except (ConfigMismatchError, ValueError) as exc:
        _fail(str(exc))
    if not no_report:
        _print_report(out)


@app.command()
def susceptibility(
    target: str = typer.Argument(..., help="'cifar10' (dataset images) or an image file."),
    out: Path = typer.Option(..., help="Output folder: maps.npz, summary.json, PNGs."),
    source: str = typer.Option("full", help="cifar10 images: full (the exact test set) | "
                               "sample (the bundled first 100)."),
    data: Path | None = typer.Option(None, help="Folder with cifar-10-batches-py."),
    images: int = typer.Option(100, help="Correctly classified images to scan."),
    first_index: int = typer.Option(0, help="Start at this test-set index."),
    levels: int = typer.Option(3, help="Colours per channel (3: 27 colours; 2: the "
                               "corners of the colour cube)."),
    model: str = typer.Option("squeezenet1_1-cifar10", help="Registered model name."),
    weights: Path | None = typer.Option(None, help="Weights file."),
    engine: str = typer.Option("auto", help=ENGINE_HELP),
    device: str = typer.Option("cpu", help="cpu | cuda | auto"),
    batch_images: int = typer.Option(10, help="Images scanned together."),
) -> None:
    """Exhaustive one-pixel scan: every position x every grid colour; where can one pixel
    fool the model? Writes the oracle map, the vulnerable mask and a summary."""
    import torch

    from .data import to_float
    from .models import load_model, model_spec
    from .susceptibility import run_scan

    device = _device(device)
    net = load_model(model, weights, device=device)
    if target == "cifar10":
        from .data import load_cifar10
        from .experiment import correctly_classified

        dataset = load_cifar10(source, data)
        keep = dataset.official_indices >= first_index
        subset = dataset.subset(keep.nonzero().flatten())
        pick = correctly_classified(net, subset, images, device)
        if len(pick) < images:
            _fail(f"only {len(pick)} correctly classified images from index {first_index} "
                  f"in {subset.source}; lower --images or --first-index")
        batch = to_float(subset.images[pick])
        labels, indices = subset.labels[pick], subset.official_indices[pick].tolist()
    else:
        batch = _read_image(Path(target), model_spec(model).input_size)
        with torch.inference_mode():
            labels = net(batch.to(device)).argmax(1).cpu()
        indices = [-1]
    info = {"model": model, "weights": str(weights) if weights else None, "target": target,
            "source": source if target == "cifar10" else None, "engine": engine,
            "device": device}
    maps = run_scan(out, net, batch, labels, indices, levels, engine, batch_images, device,
                    info=info)
    fooled = int(maps.vulnerable.reshape(len(maps.labels), -1).any(1).sum())
    console.print(f"{fooled} of {len(maps.labels)} images have a one-pixel adversarial on "
                  f"the {levels}-level grid; written to {out}")


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


data_app = typer.Typer(no_args_is_help=True, help="Fetch or make datasets.")
app.add_typer(data_app, name="data")


@data_app.command("nips17")
def data_nips17(out: Path = typer.Option(..., help="Target folder (published layout)."),
                csv_url: str = typer.Option(None, help="Override the CSV's URL.")) -> None:
    """Download the NIPS 2017 DEV set (CSV + cropped 299x299 PNGs); resumable."""
    from .nips17 import DEV_CSV_SHA256, DEV_CSV_URL, download_nips17

    try:  # the published CSV's checksum applies only to the published URL
        report = download_nips17(out, csv_url or DEV_CSV_URL,
                                 csv_sha256=None if csv_url else DEV_CSV_SHA256)
    except OSError as exc:
        _fail(f"cannot fetch the DEV set: {exc}")
    console.print(f"downloaded {report['downloaded']}, already there {report['existing']}, "
                  f"failed {len(report['failed'])} (listed in {out / 'failed.txt'})")


@data_app.command("standin")
def data_standin(out: Path = typer.Option(..., help="Target folder."),
                 count: int = typer.Option(8, help="Images."),
                 seed: int = typer.Option(0)) -> None:
    """Write a small stand-in of the DEV set and random SqueezeNet 1.1 weights."""
    import torch

    from .models import SqueezeNet
    from .nips17 import make_standin

    torch.manual_seed(seed)
    model = SqueezeNet("1_1").eval()
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "squeezenet1_1-standin.pth")
    make_standin(out, count, seed, label_model=model)
    console.print(f"stand-in DEV set with {count} images and random weights in {out}")


if __name__ == "__main__":  # pragma: no cover
    app()
