"""Do sensitivity maps point at the pixels that can fool the model? Scored against the
exhaustive scan's ground truth (:class:`~pixelprior.data.SusceptibilityMaps`).

For every image with at least one vulnerable position and every map:

- **ROC AUC** of the map as a score for "this position is vulnerable" (0.5: no better
  than chance; ties count half, as in the Mann–Whitney U statistic);
- **precision of S** = |S ∩ V| / |S| for ``S = {s > τ}``, beside the **base rate**
  |V| / (H·W) that any random set reaches on average;
- **lift of the top k** positions: their precision over the base rate;
- **Spearman** rank correlation of the map with the oracle map (all positions);
- **queries to first success** of a scan ranked by the map (ties in the random order a
  ranked-scan attack with ``seed`` draws for the image): (rank of the first vulnerable
  position + 1) × the scan's colours, exactly what
  :class:`~pixelprior.search.RankedScanAttack` counts on the same grid.

``random`` is a map of uniform noise for the map metrics (the chance line) and a random
order for the scan (``scan:random``); ``oracle`` is the scan's own map (the upper bound).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._format import number
from .._io import check_writable_dir, dumps, save_npz_atomic, write_text_atomic
from .._streams import image_key, pixel_keys, stream
from ..data import (
    MAPS_FILE,
    DataNotFoundError,
    SusceptibilityMaps,
    fit_image,
    load_dataset,
    load_image_source,
    read_image_file,
    to_float,
)
from ..experiment import exact_ground_truth
from ..experiment.scans import check_ground_truth_model
from ..experiment.verification import ROWS_FILE as VERIFICATION_ROWS
from ..maps import METHODS as MAP_METHODS
from ..maps import sensitivity_from_settings as make_sensitivity
from ..models import (
    GradientsUnavailableError,
    as_registered,
    gradient_problem,
    load_model,
    load_model_spec,
    model_fingerprint,
    model_spec,
)
from ..priors import check_tau
from ..search import rank_positions
from .figures import maps_compared_figure, ranked_scans_figure, roc_figure
from .stats import roc_auc, t_interval

# every sensitivity method, uniform noise (the chance line) and the scan's own map
METHODS = (*MAP_METHODS, "random", "oracle")


@dataclass
class ImageMetrics:
    """The metrics of one map on one image."""

    auc: float
    precision_at_tau: float  # NaN when S is empty
    set_size: int
    base_rate: float
    lift: dict[int, float]
    spearman: float
    queries_to_first: int  # of a scan ranked by the map
    first_rank: int  # 0-based rank of the first vulnerable position (-1: none)


def image_metrics(smap: np.ndarray, vulnerable: np.ndarray, oracle: np.ndarray, tau: float,
                  top_k: tuple[int, ...], colours: int, generator: torch.Generator,
                  ranking: np.ndarray | None = None,
                  decided: np.ndarray | None = None) -> ImageMetrics:
    """All metrics of one map on one image.

    Args:
        smap: the map, float ``[H, W]`` in [0, 1].
        vulnerable: bool ``[H, W]``: the scan's vulnerable positions.
        oracle: float ``[H, W]``: the scan's oracle map.
        tau: the threshold of S.
        top_k: k of the lifts.
        colours: colors per position of the scan's grid.
        generator: breaks ties of the ranking.
        ranking: the ranked scan's order (default: the map).
        decided: ``bool [H, W]``: the positions whose verdict is known (default: all).
            The AUC, precision, base rate, lift and Spearman are computed over these
            only; the ranked scan walks every position (an undecided one costs its
            queries and is never its first success).

    Returns:
        The :class:`ImageMetrics`.
    """
    from scipy.stats import spearmanr

    known = (np.ones(vulnerable.size, dtype=bool) if decided is None
             else decided.ravel().astype(bool))
    every, truth = smap.ravel().astype(np.float64), vulnerable.ravel().astype(bool)
    scores = every if ranking is None else ranking.ravel().astype(np.float64)
    order = rank_positions(torch.from_numpy(scores)[None], [generator])[0].numpy()
    hits = np.flatnonzero(truth[order])
    first = int(hits[0]) if hits.size else -1
    queries = (first + 1) * colours if first >= 0 else truth.size * colours
    ranked_truth = truth[order][known[order]]  # the ranking among decided positions
    flat, truth = every[known], truth[known]
    base = float(truth.mean()) if truth.size else float("nan")
    chosen = flat > tau
    precision = float(truth[chosen].mean()) if chosen.any() else float("nan")
    lift = {k: (float(ranked_truth[:k].mean()) / base if base > 0 else float("nan"))
            for k in top_k}
    against = oracle.ravel()[known]
    rho = (spearmanr(flat, against).statistic if flat.std() > 0 and against.std() > 0
           else float("nan"))  # a constant input has no rank correlation
    return ImageMetrics(roc_auc(flat, truth), precision, int(chosen.sum()), base, lift,
                        float(rho), int(queries), first)


def _check_gradients(methods: list[str], model, image: torch.Tensor, name: str) -> None:
    """Refuse gradient maps of a model without input gradients before any map is made
    (else the first such method stops the evaluation after minutes of others)."""
    needy = [m for m in methods if m in MAP_METHODS and MAP_METHODS.get(m).needs_gradients]
    if needy and (why := gradient_problem(model, image)) is not None:
        others = ",".join(m for m in methods if m not in needy) or "occlusion,random,oracle"
        raise GradientsUnavailableError(
            f"{name}: {why}, so the gradient maps ({', '.join(needy)}) cannot be made: "
            f"score the others (--methods {others})", why)


def method_maps(method: str, model, images: torch.Tensor, labels: torch.Tensor,
                scan: SusceptibilityMaps, rows: list[int], sensitivity_kwargs: dict
                ) -> np.ndarray:
    """One method's maps of the scanned images.

    Args:
        method: a sensitivity method, ``oracle`` or ``random``.
        model: the scan's model.
        images: float ``[B, C, H, W]``: ``rows`` of ``scan``.
        labels: int64 ``[B]``.
        scan: the scan.
        rows: the scan's rows of ``images``.
        sensitivity_kwargs: the map settings.

    Returns:
        float ``[B, H, W]`` in [0, 1].
    """
    if method == "oracle":
        return scan.oracle_map()[rows]
    if method == "random":
        out = []
        for row in rows:
            seed = int(scan.image_keys[row][:15], 16)
            out.append(np.random.default_rng(seed).random(images.shape[-2:]))
        return np.stack(out).astype(np.float32)
    sensitivity = make_sensitivity(method, model, **sensitivity_kwargs)  # keeps its options
    # one image at a time: a seeded method's map does not depend on its batch companions
    return np.concatenate([sensitivity(images[i:i + 1], labels[i:i + 1]).cpu().numpy()
                           for i in range(images.shape[0])])


DEFAULT_TOP_K = (10, 50, 100)


def lift_ks(top_k: tuple[int, ...] | None, scan: SusceptibilityMaps) -> tuple[int, ...]:
    """The k of the lifts: those given, each below an image's positions (a top k of
    every position is a lift of 1 whatever the map: refused); by default those of
    :data:`DEFAULT_TOP_K` below the positions (half the positions where none is).

    Args:
        top_k: k of the lifts, or ``None`` (the default).
        scan: the ground truth.

    Returns:
        The k, ascending as given.

    Raises:
        ValueError: a ``k`` given not below the positions (named, with what to do).
    """
    positions = int(np.prod(scan.vulnerable.shape[1:]))
    if top_k is None:
        return tuple(k for k in DEFAULT_TOP_K if k < positions) or (max(1, positions // 2),)
    if max(top_k) >= positions:
        raise ValueError(f"a top-k lift needs k below the {positions} positions of an image "
                         f"(the top {max(top_k)} is every position: a lift of 1 whatever the "
                         "map); give a smaller --top-k")
    return tuple(top_k)


def evaluate_maps(scan: SusceptibilityMaps, maps: dict[str, np.ndarray], tau: float = 0.5,
                  top_k: tuple[int, ...] = (10, 50, 100), seed: int = 0,
                  images: torch.Tensor | None = None) -> list[dict]:
    """Per image and method, the metrics (rows for ``map_metrics.csv``). Images without a
    vulnerable position get only their scan cost (every map scans them whole).

    Ties in a ranking are broken by the random stream a
    :class:`~pixelprior.search.RankedScanAttack` with ``seed`` uses for the image
    (given ``images``), so ``queries_to_first`` equals the attack's ``queries``; the
    ``random`` method ranks by that stream alone (all positions tied), as ``scan:random``.

    Args:
        scan: the scan.
        maps: method → float ``[N, H, W]`` of every scanned image.
        tau: the threshold of S.
        top_k: k of the lifts.
        seed: the ranked scan's seed.
        images: float ``[N, C, H, W]``: the scanned images (their random streams).

    Returns:
        One row per (method, image).

    """
    colours = scan.colours
    oracle = scan.oracle_map()
    # each image's random-stream key, computed once for every method
    keys = ([image_key(images[row], int(scan.labels[row])) for row in range(len(scan.labels))]
            if images is not None else None)
    rows = []
    for method, values in maps.items():
        for row in range(len(scan.labels)):
            if keys is not None:  # a fresh generator per method: each scan starts anew
                generator = stream(seed, keys[row])
            else:
                generator = torch.Generator().manual_seed(
                    (int(scan.image_keys[row][:15], 16) + seed) % (2**63))
            ranking = np.zeros_like(values[row]) if method == "random" else None
            decided = scan.decided(row)
            m = image_metrics(values[row], scan.vulnerable[row], oracle[row], tau, top_k,
                              colours, generator, ranking, decided)
            vulnerable = int(scan.vulnerable[row].sum())
            unknown = {} if scan.unknown is None else {
                "unknown_positions": int((~decided).sum())}
            rows.append({
                "method": method, "image_index": int(scan.image_indices[row]),
                "vulnerable_positions": vulnerable, "auc": m.auc if vulnerable else None,
                "precision_at_tau": m.precision_at_tau if vulnerable else None,
                "set_size": m.set_size, "base_rate": m.base_rate,
                **{f"lift_top{k}": (v if vulnerable else None) for k, v in m.lift.items()},
                "spearman_vs_oracle": m.spearman, "queries_to_first": m.queries_to_first,
                "first_rank": m.first_rank, **unknown})
    return rows


def summarise(rows: list[dict], top_k: tuple[int, ...]) -> list[dict]:
    """Per method: means over images with a vulnerable position (95% t-intervals for the
    AUC, over the images where it is defined: ``auc_images``), the precision of S averaged
    over those images whose S is not empty, and the scan cost to first success.

    Args:
        rows: :func:`evaluate_maps`' rows.
        top_k: k of the lifts.

    Returns:
        One record per method, in the order given.
    """
    import pandas as pd

    frame = pd.DataFrame(rows)
    out = []
    for method, group in frame.groupby("method", sort=False):
        fooled = group[group["vulnerable_positions"] > 0]
        auc = t_interval(fooled["auc"].astype(float).to_numpy())
        sets = fooled[fooled["set_size"] > 0]
        out.append({
            "method": method, "images_with_vulnerable": len(fooled),
            "auc_images": int(fooled["auc"].astype(float).notna().sum()),
            "auc_mean": auc[0], "auc_ci": auc[1],
            "precision_at_tau": float(sets["precision_at_tau"].astype(float).mean())
            if len(sets) else None,
            "images_with_empty_S": int((fooled["set_size"] == 0).sum()),
            "mean_set_size": float(fooled["set_size"].mean()) if len(fooled) else None,
            "base_rate": float(fooled["base_rate"].mean()) if len(fooled) else None,
            **{f"lift_top{k}": float(fooled[f"lift_top{k}"].astype(float).mean())
               for k in top_k},
            "spearman_vs_oracle": float(fooled["spearman_vs_oracle"].astype(float).mean()),
            "mean_queries_to_first": float(fooled["queries_to_first"].mean())
            if len(fooled) else None,
            "median_queries_to_first": float(fooled["queries_to_first"].median())
            if len(fooled) else None,
        })
    return out


def markdown(summary: list[dict], scan: SusceptibilityMaps, tau: float,
             top_k: tuple[int, ...], settings: dict) -> str:
    """``map_metrics.md``: the summary as a Markdown table, with what it measures.

    Args:
        summary: :func:`summarise`'s records.
        scan: the scan.
        tau: the threshold of S.
        top_k: k of the lifts.
        settings: the map settings.

    Returns:
        The Markdown text.
    """
    positions = int(np.prod(scan.vulnerable.shape[1:]))
    fooled = int(scan.vulnerable.reshape(len(scan.labels), -1).any(1).sum())
    lines = ["# Do sensitivity maps find the vulnerable pixels?", "",
             _truth_line(scan, positions) + f"; {fooled} have at least one vulnerable "
             f"position. Metrics over those {fooled} images; S = {{s > {tau}}}. Map "
             f"settings: {settings}.", "",
             "| method | ROC AUC (95% CI) | precision of S | base rate | mean |S| | "
             "empty S | " + " | ".join(f"lift top-{k}" for k in top_k)
             + " | Spearman vs oracle | "
             + ("positions" if scan.exact else "queries")
             + " to first success, ranked scan (mean / median) |",
             "|---|---|---|---|---|---|" + "---|" * len(top_k) + "---|---|"]
    fmt = lambda v, d=3: number(v, d)  # noqa: E731
    for s in summary:
        lines.append(
            f"| {s['method']} | {fmt(s['auc_mean'])} ± {fmt(s['auc_ci'])} | "
            f"{fmt(s['precision_at_tau'])} | {fmt(s['base_rate'])} | "
            f"{fmt(s['mean_set_size'], 1)} | {s['images_with_empty_S']} | "
            + " | ".join(fmt(s[f"lift_top{k}"], 2) for k in top_k)
            + f" | {fmt(s['spearman_vs_oracle'])} | {fmt(s['mean_queries_to_first'], 0)} / "
            f"{fmt(s['median_queries_to_first'], 0)} |")
    explained = ("AUC: 0.5 is chance. Precision of S is averaged over images whose S is not "
                 "empty. Lift: precision of the k top-ranked positions over the base rate. "
                 "Queries: a scan in the map's order, all colours of a position at once, up "
                 "to and including the first vulnerable position (the oracle's is the floor).")
    if scan.exact:
        explained = explained.replace("Queries: a scan in the map's order, all colours of a "
                                      "position at once,", "Positions: a scan in the map's "
                                      "order, one position at a time,")
    lines += ["", explained]
    short = [f"{s['method']} {s['auc_images']}" for s in summary
             if s.get("auc_images", fooled) < fooled]
    if short:
        lines += ["", f"The AUC is defined only where an image has both vulnerable and robust "
                  f"positions (among those decided): over fewer than the {fooled} images for "
                  f"{', '.join(short)}. Means of lift and Spearman leave out the images where "
                  "they are undefined (a constant map)."]
    if scan.exact:
        lines += ["", "Undecided positions (the verifier's budget ran out) are left out of "
                  "the AUC, precision, base rate, lift and Spearman; a ranked scan still "
                  "walks them."]
    return "\n".join(lines) + "\n"


def _truth_line(scan: SusceptibilityMaps, positions: int) -> str:
    """What the ground truth is: a scan over a grid, or the verifier's proofs."""
    count = len(scan.labels)
    if not scan.exact:
        return (f"Ground truth: exhaustive scan of {count} images ({positions} positions × "
                f"{scan.colours} colours)")
    unknown = int(scan.unknown.sum()) if scan.unknown is not None else 0
    return (f"Ground truth: the sound verifier's exact verdicts on {count} images "
            f"({positions} positions × every color of the cube: vulnerable with a witness, "
            f"or proved robust; {unknown:,} position(s) left undecided)")


def scan_images(scan: SusceptibilityMaps, data: str | None = None, info: dict | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The scanned images, reloaded from the scan's source and checked pixel for pixel
    against the scan's keys.

    Args:
        scan: the scan.
        data: the folder of CIFAR-10 (for scans of it).
        info: what the scan was made with (default: the scan's own record; the caller's
            adds ``allow_pickle`` when given on the command line).

    Returns:
        ``(images, labels)``: float ``[B, C, H, W]`` and int64 ``[B]``.

    Raises:
        ValueError: the reloaded images differ from the scanned ones.
        DataNotFoundError: the scan's image file is not where it was (a relative path
            read from another folder).
    """
    info = info if info is not None else scan.info
    keys = scan.image_keys.tolist()
    for channels in (3, 1):  # a scan records no channels: RGB, else luminance (L)
        images = _reloaded(scan, data, info, channels)
        if pixel_keys(images) == keys:
            return images, torch.from_numpy(scan.labels)
    raise ValueError(f"the images of {scan.source} differ from those reloaded from "
                     f"{info.get('target')}; evaluate on the machine and data it was made "
                     "from")


def _reloaded(scan: SusceptibilityMaps, data: str | None, info: dict, channels: int
              ) -> torch.Tensor:
    """The scan's images read again from its source, with ``channels`` channels."""
    if info.get("target") == "cifar10":
        dataset = load_dataset("cifar10", data, info.get("source") or "full",
                               channels=channels)
    elif info.get("dataset") in ("folder", "npz", "csv"):
        dataset, _ = load_image_source(info["target"], size=_input_size(info),
                                       classes=info.get("classes"), channels=channels)
    else:
        target = Path(info["target"])
        if not target.is_absolute() and not target.exists():
            raise DataNotFoundError(
                f"image file {target} does not exist here: the scan records the path as "
                f"it was given, relative to the folder it was made in; run from there")
        return fit_image(read_image_file(target, channels), _input_size(info))[0]
    positions = [dataset.position_of(int(i)) for i in scan.image_indices]
    return to_float(dataset.images[positions])


def _registered(info: dict) -> bool:
    """The scan's model is a registered one, loaded as registered."""
    return as_registered(info["model"], *(info.get(k) for k in ("classes", "mean", "std",
                                                                  "input_size")))


def _input_size(info: dict):
    """The input size of the scan's model (registered, or loaded from its spec)."""
    if _registered(info):
        return model_spec(info["model"]).input_size
    return _scan_model(info, "cpu").input_size


def _scan_model(info: dict, device: str):
    return load_model_spec(info["model"], weights=info.get("weights"),
                           classes=info.get("classes"), mean=_floats(info.get("mean")),
                           std=_floats(info.get("std")), input_size=info.get("input_size"),
                           allow_pickle=bool(info.get("allow_pickle")), device=device)


def _floats(value):
    return [float(v) for v in value.split(",")] if isinstance(value, str) else value


def load_ground_truth(directory: str | Path) -> SusceptibilityMaps:
    """The ground truth in a folder: an exhaustive scan (``maps.npz``) or the verifier's
    exact verdicts (``verification.jsonl`` of ``verify --exact``).

    Args:
        directory: the folder.

    Returns:
        The ground truth.

    Raises:
        FileNotFoundError: neither is there.
        ValueError: a verification folder without per-position verdicts, or an
            unreadable file.
    """
    directory = Path(directory)
    if (directory / MAPS_FILE).is_file() or not (directory / VERIFICATION_ROWS).is_file():
        return SusceptibilityMaps.load(directory)
    return exact_ground_truth(directory)


def run_map_evaluation(directory: str | Path, methods: list[str], out: str | Path | None = None,
                       tau: float = 0.5, top_k: tuple[int, ...] | None = None,
                       sensitivity_kwargs: dict | None = None, data: str | None = None,
                       device: str = "cpu", seed: int = 0, allow_pickle: bool = False
                       ) -> list[dict]:
    """Score ``methods``' maps against the ground truth in ``directory`` (a scan, or the
    verifier's exact verdicts: :func:`load_ground_truth`); write
    ``map_metrics.csv``, ``map_metrics.md``, ``map_metrics.json``, ``roc.png``,
    ``maps_compared.png`` and ``ranked_scans.png`` into ``out``.

    Args:
        directory: the scan's folder.
        methods: the methods scored.
        out: where to write (default: the scan's folder).
        tau: the threshold of S.
        top_k: k of the lifts.
        sensitivity_kwargs: map settings (defaults: the paper's).
        data: the folder of CIFAR-10 (for scans of it).
        device: where the model runs.
        seed: the ranked scans' seed.
        allow_pickle: load a pickled model.

    Returns:
        The per-method summary.

    Raises:
        ValueError: an unknown method, τ outside (0, 1), or images that differ from the
            scanned ones.
        OutputLocationError: ``out`` cannot hold the files.
    """
    import pandas as pd

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; use {', '.join(METHODS)}")
    check_tau(tau)
    directory = Path(directory)
    out = Path(out) if out is not None else directory
    check_writable_dir(out)
    scan = load_ground_truth(directory)
    top_k = lift_ks(top_k, scan)  # before the maps are made
    settings = {"score": "logit", "reduction": "max_abs", "normalization": "minmax",
                "percentile": 99.0, "n_samples": 50, "noise_level": 0.15, "absolute": "after",
                **(sensitivity_kwargs or {})}
    info = {**scan.info, "allow_pickle": allow_pickle or scan.info.get("allow_pickle")}
    images, labels = scan_images(scan, data, info)
    model = (load_model(info["model"], info.get("weights"), device=device)
             if _registered(info) else _scan_model(info, device).model)
    check_ground_truth_model(scan, directory, model_fingerprint(model, info["model"]))
    _check_gradients(methods, model, images[:1].to(device), info["model"])
    rows_of = list(range(len(scan.labels)))
    maps = {method: method_maps(method, model, images.to(device), labels.to(device), scan,
                                rows_of, settings) for method in methods}
    rows = evaluate_maps(scan, maps, tau, top_k, seed, images)
    summary = summarise(rows, top_k)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "map_metrics.csv", pd.DataFrame(rows).to_csv(index=False))
    write_text_atomic(out / "map_metrics.md", markdown(summary, scan, tau, top_k, settings))
    write_text_atomic(out / "map_metrics.json", dumps(
        {"tau": tau, "top_k": list(top_k), "settings": settings, "methods": summary},
        indent=2) + "\n")
    save_npz_atomic(out / "method_maps.npz", image_indices=scan.image_indices,
                    **{m: v.astype(np.float32) for m, v in maps.items()})
    roc_figure(out, scan, maps)
    maps_compared_figure(out, scan, images, maps)
    ranked_scans_figure(out, pd.DataFrame(rows), scan)
    return summary
