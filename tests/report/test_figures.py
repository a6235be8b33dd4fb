"""Figures from small synthetic frames, maps and scans: each writes a PNG and a PDF that
read back as non-empty images of a plausible size, and draws what it should — titles,
axis labels, legend entries, the data of its panels and the marked pixel; figures that
cannot be drawn say so or write nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pixelprior.data import ImageSet, SusceptibilityMaps
from pixelprior.experiment import ExperimentConfig
from pixelprior.report.figures import (
    draw_pipeline,
    examples_figure,
    generations_hist,
    maps_compared_figure,
    oracle_figure,
    pipeline_figure,
    ranked_scans_figure,
    roc_figure,
    success_vs_queries,
)

SIZE = 8


def check_figure(directory: Path, name: str) -> tuple[int, int]:
    """The PNG and PDF exist; the PNG is a plausible, non-blank RGB(A) image. Returns its
    (width, height)."""
    png, pdf = directory / f"{name}.png", directory / f"{name}.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000
    with Image.open(png) as image:
        assert image.format == "PNG"
        width, height = image.size
        pixels = np.asarray(image.convert("RGB"))
    assert 150 <= width <= 4000 and 150 <= height <= 6000
    assert pixels.std() > 5  # drawn, not one flat colour
    return width, height


def config(**values) -> ExperimentConfig:
    return ExperimentConfig(popsize=10, maxiter=5, device="cpu", **values)


def dataset(count=6) -> ImageSet:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, SIZE, SIZE), generator=generator,
                           dtype=torch.uint8)
    return ImageSet(images, torch.arange(count) % 10, tuple(f"c{i}" for i in range(10)),
                    "synthetic", torch.arange(100, 100 + count))


def rows_frame(success_images=(100, 101, 103)) -> pd.DataFrame:
    """Two seeds of a DE mode and a scan over six images (dataset indices 100..105)."""
    rows = []
    for seed in (0, 1):
        for n in range(6):
            index = 100 + n
            won = index in success_images
            pixel = {"x": n % SIZE, "y": (2 * n) % SIZE, "old": [0.1, 0.2, 0.3],
                     "new": [1.0, 1.0, 0.0]}
            rows.append(dict(seed=seed, mode="constrained", image_index=index, success=won,
                             true_label=n % 10, adversarial_label=(n + 1) % 10,
                             pixels=[pixel], generations=n if won else 5,
                             queries=10 * (n + 1), support_size=12, positions_scanned=None))
            rows.append(dict(seed=seed, mode="scan", image_index=index, success=n < 4,
                             true_label=n % 10, adversarial_label=(n + 2) % 10,
                             pixels=[pixel], generations=None, queries=27 * (n + 3),
                             support_size=64, positions_scanned=n + 3))
    frame = pd.DataFrame(rows)
    frame["generations"] = pd.to_numeric(frame["generations"])
    frame["budget_generations"] = np.where(
        frame["generations"].isna(), np.nan,
        np.where(frame["success"], frame["generations"], 6))
    return frame


def saved_maps(indices=(100, 101, 103), seeds=(0, 1), mode="constrained") -> dict:
    rng = np.random.default_rng(0)
    return {(seed, mode, index): {"sensitivity": rng.random((SIZE, SIZE)).astype(np.float32),
                                  "start_set": rng.random((SIZE, SIZE)) > 0.5}
            for seed in seeds for index in indices}


def scan(count=3) -> SusceptibilityMaps:
    rng = np.random.default_rng(1)
    margin = rng.uniform(0.05, 1.0, (count, SIZE, SIZE)).astype(np.float32)
    margin[0, 2, 3] = -0.4  # images 0 and 1 are vulnerable; the last is not
    margin[1, 5, 1] = margin[1, 0, 0] = -0.1
    vulnerable = margin < 0
    colours = rng.integers(0, 2, (count, SIZE, SIZE, 3)).astype(np.float32)
    return SusceptibilityMaps(np.array([f"{i:016x}" for i in range(count)]),
                              np.arange(200, 200 + count), np.arange(count) % 10,
                              rng.random((count, SIZE, SIZE)).astype(np.float32), margin,
                              vulnerable, colours, 2, "synthetic")


def method_maps(count=3) -> dict:
    rng = np.random.default_rng(2)
    truth = scan(count)
    return {"random": rng.random((count, SIZE, SIZE)), "gradient": rng.random(
        (count, SIZE, SIZE)), "oracle": truth.oracle_map()}


def float_images(count=3) -> torch.Tensor:
    return torch.rand(count, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))


def legend_of(ax) -> list[str]:
    """The legend's entries, in order."""
    return [text.get_text() for text in ax.get_legend().get_texts()]


def circles(ax) -> list[tuple[int, int]]:
    """Centres of the circles drawn on an axis (the marked pixels)."""
    import matplotlib.patches

    return [tuple(int(round(v)) for v in patch.center) for patch in ax.patches
            if isinstance(patch, matplotlib.patches.Circle)]


# ------------------------------------------------------------------ run figures
def test_success_vs_queries(tmp_path):
    fig = success_vs_queries(tmp_path, rows_frame(), config())
    width, height = check_figure(tmp_path, "success_vs_queries")
    assert width > height  # a 5.5 x 3.8 in axis
    (ax,) = fig.axes
    assert ax.get_xlabel() == "model queries" and ax.get_ylabel() == "share of images fooled"
    assert legend_of(ax) == ["constrained", "scan"]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["constrained"].get_linestyle() == "-"  # DE: solid; scans: dashed
    assert lines["scan"].get_linestyle() == "--"
    # the curves end at each mode's share of successes: 3 of 6 images, 4 of 6
    assert lines["constrained"].get_ydata()[-1] == pytest.approx(0.5)
    assert lines["scan"].get_ydata()[-1] == pytest.approx(4 / 6)


def test_success_vs_queries_of_a_search_without_generations_only(tmp_path):
    frame = rows_frame()
    fig = success_vs_queries(tmp_path, frame[frame["mode"] == "scan"], config())
    check_figure(tmp_path, "success_vs_queries")
    assert legend_of(fig.axes[0]) == ["scan"]


def test_generations_hist(tmp_path):
    fig = generations_hist(tmp_path, rows_frame(), config())
    check_figure(tmp_path, "generations_hist")
    (ax,) = fig.axes
    assert ax.get_xlabel() == "generations (failures at 6)" and ax.get_ylabel() == "attacks"
    assert legend_of(ax) == ["constrained"]  # the scan has no generations
    heights = [patch.get_height() for patch in ax.patches]
    assert sum(heights) == 12  # 2 seeds x 6 images of the DE mode
    assert heights[6] == 6  # the failures, at the budget (maxiter + 1 = 6)


def test_generations_hist_without_de_rows_writes_nothing(tmp_path):
    frame = rows_frame()
    generations_hist(tmp_path, frame[frame["mode"] == "scan"], config())
    assert list(tmp_path.iterdir()) == []


def test_examples_figure(tmp_path):
    fig = examples_figure(tmp_path, rows_frame(), config(), dataset())
    check_figure(tmp_path, "examples")
    titles = [ax.get_title() for ax in fig.axes]
    # one original and one adversarial per fooled image, true -> adversarial class (the
    # registered CIFAR-10 model's names)
    assert titles[:2] == ["#100 constrained\nairplane", "(0, 0)\n→ automobile"]
    assert titles[2:4] == ["#101 constrained\nautomobile", "(1, 2)\n→ bird"]
    assert not any(title.startswith("#104") for title in titles)  # fooled by no mode
    assert circles(fig.axes[3]) == [(1, 2)]  # the changed pixel of image 101 is marked
    adversarial = fig.axes[3].get_images()[0].get_array()
    assert np.allclose(adversarial[2, 1], [1.0, 1.0, 0.0])  # in its new color


def test_examples_figure_grows_with_the_successes(tmp_path):
    (tmp_path / "one").mkdir(), (tmp_path / "many").mkdir()
    frame = rows_frame()
    small = examples_figure(tmp_path / "one", frame[frame["mode"] == "constrained"].head(2),
                            config(), dataset())
    large = examples_figure(tmp_path / "many", frame.assign(success=True), config(),
                            dataset(), count=8)
    one = check_figure(tmp_path / "one", "examples")  # two images: one row, two pairs
    many = check_figure(tmp_path / "many", "examples")  # six images: two rows of four pairs
    assert many[0] > one[0] and many[1] > one[1]
    assert len(small.axes) == 4 and len(large.axes) == 16
    assert sum(bool(ax.get_images()) for ax in large.axes) == 12  # 2 empty slots


def test_examples_figure_without_successes_writes_nothing(tmp_path):
    frame = rows_frame()
    examples_figure(tmp_path, frame.assign(success=False), config(), dataset())
    assert list(tmp_path.iterdir()) == []


def test_examples_figure_with_an_unknown_model_uses_indices(tmp_path):
    fig = examples_figure(tmp_path, rows_frame(), config(model="not-registered"), dataset())
    check_figure(tmp_path, "examples")
    assert fig.axes[0].get_title() == "#100 constrained\n0"
    assert fig.axes[1].get_title() == "(0, 0)\n→ 1"


def test_pipeline_figure_with_saved_maps(tmp_path):
    note = pipeline_figure(tmp_path, rows_frame(), config(), dataset(), saved_maps())
    assert note is None
    check_figure(tmp_path, "pipeline")


def test_the_pipeline_draws_image_map_set_and_the_marked_pixel():
    maps = saved_maps()
    fig = draw_pipeline(rows_frame(), config(), dataset(), maps)
    assert fig._suptitle.get_text() == "constrained: image, map, start set, adversarial"
    rows = [fig.axes[4 * r:4 * r + 4] for r in range(3)]  # images 100, 101, 103
    assert [ax.get_title() for ax in rows[1]] == [
        "image 101: automobile", "smoothgrad map", "start set (12 px)", "(1, 2) → bird"]
    assert np.array_equal(rows[1][1].get_images()[0].get_array(),
                          maps[(0, "constrained", 101)]["sensitivity"])
    assert np.array_equal(rows[1][2].get_images()[0].get_array(),
                          maps[(0, "constrained", 101)]["start_set"])
    assert circles(rows[2][3]) == [(3, 6)]  # image 103's pixel (3, 6) is circled
    adversarial = rows[2][3].get_images()[0].get_array()
    assert np.allclose(adversarial[6, 3], [1.0, 1.0, 0.0])
    original = rows[2][0].get_images()[0].get_array()
    assert not np.allclose(original[6, 3], [1.0, 1.0, 0.0])


def test_pipeline_figure_has_one_row_per_success_up_to_count(tmp_path):
    (tmp_path / "two").mkdir(), (tmp_path / "three").mkdir()
    assert pipeline_figure(tmp_path / "two", rows_frame(), config(), dataset(), saved_maps(),
                           count=2) is None
    assert pipeline_figure(tmp_path / "three", rows_frame(), config(), dataset(),
                           saved_maps()) is None
    two = check_figure(tmp_path / "two", "pipeline")
    three = check_figure(tmp_path / "three", "pipeline")
    assert three[1] > two[1]
    assert len(draw_pipeline(rows_frame(), config(), dataset(), saved_maps(), 2).axes) == 8


def test_pipeline_figure_without_saved_maps_returns_the_note(tmp_path):
    note = pipeline_figure(tmp_path, rows_frame(), config(), dataset(), {})
    assert note.startswith("No pipeline figure: the run saved no sensitivity maps")
    assert list(tmp_path.iterdir()) == []


def test_pipeline_figure_when_the_mapped_mode_fooled_no_saved_image(tmp_path):
    note = pipeline_figure(tmp_path, rows_frame(), config(), dataset(),
                           saved_maps(indices=(102, 104)))
    assert note == "No pipeline figure: mode constrained fooled no image with a saved map."
    assert list(tmp_path.iterdir()) == []


def test_pipeline_figure_of_a_scan_order_map(tmp_path):
    frame = rows_frame()
    note = pipeline_figure(tmp_path, frame[frame["mode"] == "scan"], config(), dataset(),
                           saved_maps(indices=(100, 101), mode="scan"))
    assert note is None
    check_figure(tmp_path, "pipeline")
    fig = draw_pipeline(frame[frame["mode"] == "scan"], config(), dataset(),
                        saved_maps(indices=(100, 101), mode="scan"))
    assert [ax.get_title() for ax in fig.axes[:4]] == [
        "image 100: airplane", "raster order", "start set (64 px)", "(0, 0) → bird"]


# ------------------------------------------------------------------ scan figures
def test_oracle_figure(tmp_path):
    truth = scan()
    fig = oracle_figure(tmp_path, truth, float_images(), tuple(f"c{i}" for i in range(10)))
    width, height = check_figure(tmp_path, "oracle_maps")
    assert height > width  # three rows of three panels
    assert [ax.get_title() for ax in fig.axes] == [
        "#200: c0", "oracle map", "vulnerable: 1 px", "#201: c1", "oracle map",
        "vulnerable: 2 px", "#202: c2", "oracle map", "vulnerable: 0 px"]
    assert np.array_equal(fig.axes[5].get_images()[0].get_array(), truth.vulnerable[1])
    assert np.allclose(fig.axes[4].get_images()[0].get_array(), truth.oracle_map()[1])


def test_oracle_figure_of_uint8_images_and_chosen_rows(tmp_path):
    images = (float_images(2) * 255).to(torch.uint8)
    fig = oracle_figure(tmp_path, scan(), images, None, rows=[2, 0], names=["b.png", "a.png"])
    check_figure(tmp_path, "oracle_maps")
    assert [ax.get_title() for ax in fig.axes[::3]] == ["b.png: 2", "a.png: 0"]


def test_oracle_figure_of_no_rows_writes_nothing(tmp_path):
    oracle_figure(tmp_path, scan(), float_images(), None, rows=[])
    assert list(tmp_path.iterdir()) == []


def test_roc_figure(tmp_path):
    fig = roc_figure(tmp_path, scan(), method_maps())
    check_figure(tmp_path, "roc")
    (ax,) = fig.axes
    assert ax.get_title() == "mean ROC over 2 images"  # the images with a vulnerable pixel
    assert ax.get_xlabel() == "false-positive rate (positions)"
    assert ax.get_ylabel() == "true-positive rate (vulnerable positions)"
    entries = legend_of(ax)
    assert [entry.split(" (")[0] for entry in entries] == ["random", "gradient", "oracle"]
    assert entries[2] == "oracle (AUC 1.00)"  # the scan's own map ranks it perfectly


@pytest.mark.filterwarnings("ignore:No artists with labels found")
def test_roc_figure_without_vulnerable_images_still_draws_the_axes(tmp_path):
    truth = scan()
    truth.vulnerable[:] = False
    fig = roc_figure(tmp_path, truth, method_maps())
    check_figure(tmp_path, "roc")
    assert fig.axes[0].get_title() == "mean ROC over 0 images"
    assert len(fig.axes[0].get_lines()) == 1  # the diagonal only


def test_maps_compared_figure(tmp_path):
    fig = maps_compared_figure(tmp_path, scan(), float_images(), method_maps())
    check_figure(tmp_path, "maps_compared")
    first_row = [ax.get_title() for ax in fig.axes[:4]]
    assert first_row == ["#200", "oracle", "random", "gradient"]
    assert len(fig.axes) == 8  # the two vulnerable images, four panels each
    assert fig.axes[4].get_title() == "#201" and fig.axes[5].get_title() == ""
    assert all(ax.collections for ax in fig.axes[1:4])  # vulnerable pixels outlined


def ranked_rows() -> pd.DataFrame:
    rows = []
    for method, first in (("random", (40, 900)), ("gradient", (8, 100)),
                          ("oracle", (8, 8))):
        for image, queries in enumerate((*first, 8 * SIZE * SIZE)):
            rows.append({"method": method, "image_index": 200 + image,
                         "vulnerable_positions": 0 if image == 2 else 1 + image,
                         "queries_to_first": queries})
    return pd.DataFrame(rows)


def test_ranked_scans_figure(tmp_path):
    fig = ranked_scans_figure(tmp_path, ranked_rows(), scan())
    width, height = check_figure(tmp_path, "ranked_scans")
    assert width > height
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_ylabel() == "share of images fooled"
    assert ax.get_xlabel() == "model queries (ranked scan, log scale)"
    assert legend_of(ax) == ["random", "gradient", "oracle"]
    oracle = {line.get_label(): line for line in ax.get_lines()}["oracle"]
    assert oracle.get_ydata()[-1] == pytest.approx(2 / 3)  # 2 of 3 images are vulnerable


def test_every_figure_file_is_a_distinct_drawing(tmp_path):
    success_vs_queries(tmp_path, rows_frame(), config())
    roc_figure(tmp_path, scan(), method_maps())
    ranked_scans_figure(tmp_path, ranked_rows(), scan())
    drawn = {p.read_bytes() for p in tmp_path.glob("*.png")}
    assert len(drawn) == 3


@pytest.mark.parametrize("suffix", ["png", "pdf"])
def test_figures_close_their_matplotlib_figures(tmp_path, suffix):
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    success_vs_queries(tmp_path, rows_frame(), config())
    generations_hist(tmp_path, rows_frame(), config())
    assert len(plt.get_fignums()) == before
    assert (tmp_path / f"generations_hist.{suffix}").is_file()


def test_the_same_figure_gives_the_same_pdf_and_png_bytes(tmp_path, monkeypatch):
    """No creation date in a PDF: a report regenerated from the same rows, on another
    day, is the same (matplotlib would stamp SOURCE_DATE_EPOCH or the clock)."""
    import matplotlib.pyplot as plt

    from pixelprior.report.drawing import _save

    for folder, day in (("a", "1700000000"), ("b", "1800000000")):
        monkeypatch.setenv("SOURCE_DATE_EPOCH", day)
        (tmp_path / folder).mkdir()
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        _save(fig, tmp_path / folder, "line")
    for suffix in ("pdf", "png"):
        assert (tmp_path / "a" / f"line.{suffix}").read_bytes() == \
            (tmp_path / "b" / f"line.{suffix}").read_bytes()


# ------------------------------------------------------------------ labels (an audit)
def test_the_figures_name_classes_as_the_run_did_with_classes_over_a_registered_model():
    """--classes reversed over convsmall-cifar10's own names: the run mapped the labels by
    them, the report named the classes by the registry's (a dog reported as a deer)."""
    from pixelprior.report.figures import class_names_of

    names = ("truck", "ship", "horse", "frog", "dog", "deer", "cat", "bird", "automobile",
             "airplane")
    assert class_names_of(config(model="convsmall-cifar10", classes=",".join(names))) == names
    assert class_names_of(config(model="convsmall-cifar10"))[0] == "airplane"
    # a names file by a relative path: where the run was made is not known (a review's
    # case: another names.txt where the report ran named the classes otherwise)
    assert class_names_of(config(model="convsmall-cifar10", classes="names.txt")) is None


def test_the_pipeline_names_the_map_the_mode_read():
    """fast orders positions by the gradient map: the panel said "smoothgrad map"."""
    from pixelprior.report.figures import _map_title

    assert _map_title("fast", config(sensitivity="smoothgrad")) == "gradient map"
    assert _map_title("scan:smoothgrad", config(sensitivity="gradient")) == "smoothgrad map"
    assert _map_title("constrained", config(sensitivity="smoothgrad")) == "smoothgrad map"
    assert _map_title("oracle", config()) == "oracle map"
    assert _map_title("scan:raster", config()) == "raster order"
    assert _map_title("fast:random", config()) == "random order"  # any ordered search's
    assert _map_title("unconstrained", config()) == "no map"


def test_query_ticks_are_not_rounded_to_whole_thousands():
    """500 read "0k", and 1,500, 2,000 and 2,500 all "2k"."""
    from pixelprior.report.figures import _thousands

    assert [_thousands(v) for v in (0, 500, 1500, 2000, 2500, 40_000, 1_250_000)] == [
        "0", "500", "1.5k", "2k", "2.5k", "40k", "1.25M"]
