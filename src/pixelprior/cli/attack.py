"""Commands on one image: ``attack`` and ``explain``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import typer

from .._io import write_json_atomic
from ..experiment import (
    ExperimentConfig,
    build_attack,
    check_gradient_maps,
    check_scan_model,
    parse_mode,
)
from ..priors import MODE_ALIASES, PRIORS
from ._app import app, console
from .errors import fail, finishing
from .inputs import check_same_image, label_of, load_image, predict_label, write_image
from .options import (
    DEVICE_HELP,
    ENGINE_HELP,
    Maxiter,
    ModelOptions,
    OpenedModel,
    Popsize,
    Strategy,
    check_de_options,
    check_out,
    model_options,
    pick_device,
)


@app.command()
@model_options()
def attack(
    image_file: Path = typer.Argument(..., help="Image to attack (PNG, JPEG, ...: any mode "
                                      "PIL reads)."),
    model_options: ModelOptions = None,
    label: str | None = typer.Option(None, help="True class, index or name (default: the "
                                     "model's prediction)."),
    target: str | None = typer.Option(None, help="Target class (a targeted attack)."),
    constrained: bool = typer.Option(False, help="Start in the susceptible set S (the "
                                     "paper's constrained mode)."),
    tau: float | None = typer.Option(None, help="Threshold of S (with --constrained; "
                                     "default 0.5)."),
    mode: str | None = typer.Option(None, help="Any experiment mode instead: e.g. fast "
                                    "(corners, fooled or certified), weighted, scan, "
                                    "scan:smoothgrad, random_search."),
    oracle: Path | None = typer.Option(None, help="Folder of a `pixelprior susceptibility` "
                                       "scan of this image, for --mode oracle / scan:oracle."),
    popsize: Popsize = None,
    maxiter: Maxiter = None,
    strategy: Strategy = None,
    pixels: int = typer.Option(1, help="Pixels changed."),
    verify: str | None = typer.Option(None, help="fast: prove what the corners certify over "
                                      "every color: auto (where it fits) | on | off [auto]."),
    verify_boxes: int | None = typer.Option(None, help="fast: the verifier's most boxes "
                                            "[20,000]."),
    seed: int = typer.Option(0, help="Seed of the attack."),
    engine: str = typer.Option("auto", help=ENGINE_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    no_resize: bool = typer.Option(False, "--no-resize", help="Refuse an image whose size "
                                   "differs from the model's input instead of resizing it."),
    out: Path = typer.Option(Path("attack-out"), help="Output folder."),
) -> None:
    """Attack one image; write the adversarial PNG and a JSON result.
    \f
    Args:
        image_file: the image (any mode PIL reads; resized to the model unless
            ``no_resize``).
        model_options: the model (``--model``, ``--weights``, ``--classes``, ...).
        label: the true class, index or name (default: the model's prediction).
        target: the class of a targeted attack.
        constrained: start in the susceptible set S (the paper's constrained mode).
        tau: the threshold of S (modes that start from S).
        mode: any experiment mode instead (``fast``, ``scan:smoothgrad``, ...).
        oracle: a susceptibility folder of this image (``oracle``, ``scan:oracle``).
        popsize: DE population (DE modes only).
        maxiter: most DE generations (DE modes only).
        strategy: DE strategy (DE modes only).
        pixels: pixels changed.
        verify: the fast mode's verifier (auto, on, off).
        verify_boxes: the verifier's most boxes.
        seed: the attack's seed.
        engine: how candidates are scored.
        device: where the model runs.
        no_resize: refuse an image of another size than the model's input.
        out: the output folder.

    Raises:
        UsageProblem: a request that makes no sense (one line, exit 2).
    """
    if constrained and mode is not None and mode != "constrained":
        fail(f"--constrained and --mode {mode} ask for two modes; give one")
    chosen = mode or ("constrained" if constrained else "unconstrained")
    kind, argument = parse_mode(chosen)
    prior = MODE_ALIASES.get(argument, argument)
    if tau is not None and not _starts_from_s(prior):
        fail("--tau sets the threshold of the susceptible set: use it with --constrained "
             "(or a mode that starts from S, e.g. random_search:constrained)")
    check_de_options({"--popsize": popsize, "--maxiter": maxiter, "--strategy": strategy},
                     [chosen])
    unread = [flag for flag, value in (("--verify", verify), ("--verify-boxes", verify_boxes))
              if value is not None]
    if unread and kind != "fast":
        fail(f"{', '.join(unread)} set(s) the fast mode's verifier; --mode {chosen} does not "
             "run it: drop it, or give --mode fast")
    fast = {k: v for k, v in (("fast_verify", verify), ("verify_boxes", verify_boxes))
            if v is not None}
    device = pick_device(device)
    model_options.check()
    weights = model_options.weights
    config = ExperimentConfig.build(overrides=dict(
        modes=[chosen], popsize=popsize, maxiter=maxiter, strategy=strategy, pixels=pixels,
        tau=tau, engine=engine, device=device, model=model_options.model,
        weights=str(weights) if weights else None, oracle=str(oracle) if oracle else None,
        **fast))
    check_out(out)
    check_same_image(out / f"{image_file.stem}-result.json", image_file, "the result")
    opened = model_options.open(device)
    net = opened.net
    if oracle is not None:
        _check_oracle(config, oracle, opened)
    image, fitted, read = load_image(image_file, opened.input_size, not no_resize,
                                     coordinates=True, channels=opened.channels)
    names = net.class_names
    predicted = predict_label(net, image, device)
    true = label_of(label, names, "true") if label is not None else predicted
    goal = label_of(target, names, "target")
    if predicted != true:
        fail(f"the model already classifies this image as {names[predicted]!r}, not "
             f"{names[true]!r}: there is nothing to attack")
    if goal is not None and goal == true:
        fail(f"the target {names[goal]!r} is the image's own class: a targeted attack needs "
             "another class")
    check_gradient_maps(config, net, image.to(device))
    runner = build_attack(config, chosen, net, seed, batch_invariant=False,
                          targeted=goal is not None)
    output = runner.run(image.to(device), torch.tensor([true]),
                    torch.tensor([goal]) if goal is not None else None)
    result = output.results[0]
    where = [_frames(p, fitted) for p in result.pixels]
    row = result.to_row() | {
        "image": str(image_file), "image_path": str(image_file.resolve()),
        "model": model_options.model, "mode": chosen,
        "true_name": names[true], "adversarial_name": names[result.adversarial_label],
        "target_name": names[goal] if goal is not None else None,
        "tau": config.tau if _starts_from_s(prior) else None,
        **_evolution_settings(kind, config),
        "pixels_in_file": where if fitted is not None else None,
        "resized_from": list(fitted.original) if fitted is not None else None,
        "device": device, "engine": runner.scorer(image.to(device)).name}
    row |= _as_written(output.adversarial[0], result, net, device, names)
    full = _in_the_file(read, fitted, result, net, device, names) if fitted else None
    if full is not None:
        row["file_copy_label"] = full["label"]
        row["file_copy_name"] = names[full["label"]]
    with finishing(f"the outputs were written whole to {out}"):
        out.mkdir(parents=True, exist_ok=True)
        if result.success:  # an image that did not fool the model is no adversarial one
            write_image(output.adversarial[0], out / f"{image_file.stem}-adversarial.png")
            if full is not None:
                _write_full(full, read, result, names, true, goal, out / image_file.stem)
        else:  # nor is one an earlier attack of this image left here
            for suffix in ("", "-full", "-marked"):
                (out / f"{image_file.stem}-adversarial{suffix}.png").unlink(missing_ok=True)
        write_json_atomic(out / f"{image_file.stem}-result.json", row)
    _print_attack(result, names, true, goal, fitted, out)
    if getattr(runner, "note", None):
        console.print(f"note: {runner.note}")
    if row["png_fools"] is False:
        console.print(f"note: {image_file.stem}-adversarial.png does not fool the model: its "
                      "changed colour rounded to 8 bits gives "
                      f"{row['png_name']}; the colour in the JSON (a float) does")
    if full is not None and result.success:
        console.print(f"at the file's {fitted.original[0]}×{fitted.original[1]}: "
                      f"{image_file.stem}-adversarial-full.png (the changed box of file pixels "
                      f"in the adversarial colour) and {image_file.stem}-adversarial-marked.png "
                      f"(the box marked); {full['verdict']}")


def _check_oracle(config: ExperimentConfig, oracle: Path, opened: OpenedModel) -> None:
    """``--oracle`` only with a mode that reads it, and only a scan of this model."""
    from ..models import model_fingerprint

    if not config.uses_oracle():
        fail(f"mode {config.modes[0]} does not read --oracle (the modes whose prior or "
             "order is the oracle do: oracle, scan:oracle, fast:oracle, ...); drop it")
    note = check_scan_model(oracle, opened.name, model_fingerprint(opened.net, opened.name))
    if note is not None:
        console.print(note)


def _as_written(adversarial: torch.Tensor, result, net, device: str, names) -> dict:
    """What the model says of the adversarial as the PNG holds it (8 bits a channel: a
    colour the search found between two levels is rounded, which may undo a near tie):
    ``png_label``, ``png_name`` and ``png_fools`` (``None`` where nothing fooled)."""
    quantised = (adversarial.clamp(0, 1) * 255).round() / 255  # as write_image stores it
    label = predict_label(net, quantised[None], device)
    fools = None
    if result.success:
        fools = label == result.target if result.target is not None else (
            label != result.true_label)
    return {"png_label": label, "png_name": names[label], "png_fools": fools}


def _in_the_file(read, fitted, result, net, device: str, names) -> dict:
    """The adversarial at the file's own resolution: each changed model pixel's box of file
    pixels set to its new colour; and what the model says of that copy when it is fitted
    to the model again (resizing mixes the box with its neighbours: it may not fool)."""
    from ..data import ImageFile, fit_image

    pixels = read.pixels.copy()
    boxes = []
    for p in result.pixels:
        x0, y0, x1, y1 = fitted.to_original(p.x, p.y)
        colour = np.clip(np.round(np.asarray(p.new) * 255), 0, 255).astype(np.uint8)
        pixels[y0:y1 + 1, x0:x1 + 1] = colour
        boxes.append((x0, y0, x1, y1))
    tensor, _ = fit_image(ImageFile(pixels, read.mode, []), fitted.model[::-1], True)
    label = predict_label(net, tensor, device)  # read in the model's channels
    verdict = f"fitted to the model again, the file-resolution copy is classified {names[label]}"
    if result.success:
        fooled = label == result.target if result.target is not None else (
            label != result.true_label)
        verdict += (": it fools the model too" if fooled else
                    ": it does not fool the model (resizing mixes the box with its "
                    f"neighbours); the {fitted.model[0]}×{fitted.model[1]} adversarial does")
    return {"pixels": pixels, "boxes": boxes, "label": label, "verdict": verdict}


def _write_full(full: dict, read, result, names, true: int, goal, stem: Path) -> None:
    """``STEM-adversarial-full.png`` (file resolution) and ``STEM-adversarial-marked.png``
    (original beside it, the changed boxes marked)."""
    from ..report.figures import attack_figure  # matplotlib only where a figure is drawn

    write_image(torch.from_numpy(full["pixels"]).permute(2, 0, 1).float() / 255,
                stem.with_name(f"{stem.name}-adversarial-full.png"))
    title = (f"{stem.name}: {names[true]} → {names[result.adversarial_label]}"
             if result.success else f"{stem.name}: attack failed ({names[true]})")
    if goal is not None:
        title += f" (target {names[goal]})"
    attack_figure(stem.with_name(f"{stem.name}-adversarial-marked.png"), read.pixels,
                  full["pixels"], full["boxes"], title,
                  f"adversarial at file resolution; model says {names[full['label']]}")


def _evolution_settings(kind: str | None, config: ExperimentConfig) -> dict:
    """The differential evolution's settings, for a row of a mode that runs it (else
    ``None`` each: the search did not use them)."""
    evolves = kind == "de"
    return {name: getattr(config, name) if evolves else None
            for name in ("popsize", "maxiter", "strategy")}


def _starts_from_s(prior: str) -> bool:
    """Whether a mode's prior draws from the susceptible set (so its row records τ)."""
    return prior in PRIORS and "tau" in PRIORS.entry(prior).options


def _frames(pixel, fitted) -> dict:
    x0, y0, x1, y1 = fitted.to_original(pixel.x, pixel.y) if fitted else (
        pixel.x, pixel.y, pixel.x, pixel.y)
    return {"x": pixel.x, "y": pixel.y, "file_box": [x0, y0, x1, y1]}


def _print_attack(result, names, true, goal, fitted, out: Path) -> None:
    spent = _effort(result.steps)
    where = ", ".join(f"({p.x}, {p.y})" for p in result.pixels)
    if fitted is not None:
        boxes = [fitted.to_original(p.x, p.y) for p in result.pixels]
        where += " in the model's input; " + ", ".join(
            f"x {b[0]}..{b[2]}, y {b[1]}..{b[3]}" for b in boxes) + " in the file"
    goal_text = f" (target {names[goal]})" if goal is not None else ""
    if result.success:
        console.print(f"[green]success[/green]: {names[true]} → "
                      f"{names[result.adversarial_label]}{goal_text} by changing {where}, "
                      f"after {spent}, {result.queries} queries ({result.seconds:.2f} s); "
                      f"written to {out}")
        return
    if goal is not None:  # the target was not reached (the label may still have moved)
        says = names[result.adversarial_label]
        outcome = (f"{names[true]} → not {names[goal]} (the model says {says}"
                   + (", another class than the image's" if result.adversarial_label != true
                      else "") + ")")
        probability = (f"target probability {result.target_probability:.3f}"
                       if result.target_probability is not None else "")
    else:
        outcome = f"{names[true]} stays {names[true]}"
        probability = f"true-class probability {result.true_probability:.3f}"
    decided = result.steps.get("decided_by")
    # what no colour does: reach the target (another class may be reached), or change it
    changes = (f"turns {names[true]} into {names[goal]}" if goal is not None
               else f"changes {names[true]}")
    if decided == "verified":
        console.print(f"[cyan]verified[/cyan]: no colour at any of the "
                      f"{result.positions_scanned} positions {changes} (a proof "
                      f"over the whole colour cube of each pixel, {result.steps['boxes']:,} "
                      f"boxes; {result.queries} queries); written to {out}")
        return
    if decided == "unknown":
        console.print(f"[yellow]unknown[/yellow]: certified on the corner grid, and "
                      f"{result.steps['verified_volume']:.1%} of the one-pixel threat space "
                      f"proved before the verifier's budget ran out ({result.queries} "
                      f"queries); written to {out}")
        return
    if result.steps.get("corner_certified"):
        console.print(f"[cyan]certified[/cyan] on the corner grid: no corner of the colour "
                      f"cube at any of the {result.positions_scanned} positions {changes} "
                      f"({result.queries} queries; lowest {probability} at "
                      f"{where}); written to {out}")
        return
    console.print(f"[yellow]failed[/yellow]: {outcome} after {spent}, {result.queries} "
                  f"queries; best try {where} ({probability}); written to {out}")


def _effort(steps: dict) -> str:
    """A search's effort in words, from its own record (any search)."""
    words = {"generations": "generations", "positions_scanned": "positions",
             "iterations": "iterations"}
    parts = [f"{steps[key]} {word}" for key, word in words.items()
             if steps.get(key) is not None]
    return ", ".join(parts) or "the search"
