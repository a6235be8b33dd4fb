"""NIPS 2017 DEV set: label mapping, CSV, download against a local server, stand-in run."""

from __future__ import annotations

import http.server
import io
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixelprior.data import CorruptDataError, DataNotFoundError
from pixelprior.data.nips17 import (
    crop_and_resize,
    download_nips17,
    load_nips17,
    make_standin,
    read_dev_csv,
    to_competition_label,
    to_torchvision_label,
)
from pixelprior.experiment import ExperimentConfig, ExperimentRunner
from pixelprior.models import ResizeInside, SqueezeNet
from pixelprior.report import write_report


def test_label_mapping_both_ends():
    assert to_torchvision_label(1) == 0 and to_torchvision_label(1000) == 999
    assert to_competition_label(0) == 1 and to_competition_label(999) == 1000
    assert all(to_competition_label(to_torchvision_label(k)) == k for k in range(1, 1001))
    for bad in (0, 1001):
        with pytest.raises(ValueError):
            to_torchvision_label(bad)
    with pytest.raises(ValueError):
        to_competition_label(1000)


def test_shared_dev_csv_parses():
    import os

    root = os.environ.get("PIXELPRIOR_DATA")
    path = Path(root or "") / "nips17" / "dev_dataset.csv"
    if not path.is_file():
        pytest.skip("no shared dev_dataset.csv")
    records = read_dev_csv(path)
    assert len(records) == 1000
    assert all(1 <= r.true_label <= 1000 for r in records)
    assert records[0].image_id == "0c7ac4a8c9dfa802" and records[0].true_label == 306


def test_bad_csv(tmp_path):
    (tmp_path / "dev_dataset.csv").write_text("ImageId,URL\nabc,http://x\n")
    with pytest.raises(CorruptDataError, match="missing columns"):
        read_dev_csv(tmp_path / "dev_dataset.csv")
    with pytest.raises(DataNotFoundError):
        read_dev_csv(tmp_path / "absent.csv")


def test_a_repeated_image_id_or_a_background_label_names_its_line(tmp_path):
    make_standin(tmp_path, count=3)
    csv_path = tmp_path / "dev_dataset.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join([*lines, lines[1]]) + "\n")  # row 1 again, on line 5
    with pytest.raises(CorruptDataError, match=r"dev_dataset\.csv:5: ImageId \w+ is listed "
                                                r"again \(first on line 2\)"):
        load_nips17(tmp_path)
    header, first = lines[0].split(","), lines[1].split(",")
    first[header.index("TrueLabel")] = "0"
    csv_path.write_text("\n".join([lines[0], ",".join(first)]) + "\n")
    with pytest.raises(CorruptDataError, match=r"dev_dataset\.csv:2: bad row \(competition "
                                                r"label 0 outside 1\.\.1000"):
        load_nips17(tmp_path)


def test_images_are_read_by_the_checked_reader_with_notes(tmp_path):
    """A transparent PNG was flattened without compositing and without a word; resizes
    and pictures held twice were not said either."""
    records = make_standin(tmp_path, count=3)
    images = tmp_path / "images"
    rgba = np.zeros((299, 299, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent: white once composited
    Image.fromarray(rgba, "RGBA").save(images / f"{records[0].image_id}.png")
    Image.open(images / f"{records[1].image_id}.png").save(
        images / f"{records[2].image_id}.png")  # the same picture twice, the same class
    csv_path = tmp_path / "dev_dataset.csv"
    lines = csv_path.read_text().splitlines()
    column = lines[0].split(",").index("TrueLabel")
    last = lines[3].split(",")
    last[column] = lines[2].split(",")[column]
    csv_path.write_text("\n".join([*lines[:3], ",".join(last)]) + "\n")
    notes: list[str] = []
    found = load_nips17(tmp_path, size=224, notes=notes)
    assert len(found) == 2 and int(found.images[0].min()) == 255
    said = " | ".join(notes)
    assert "composited onto white" in said and "resized from 299×299 to 224×224" in said
    assert "counted once" in said or "identical" in said


def test_rows_without_their_png_are_said_and_respelled_files_named(tmp_path):
    """Rows whose PNG was missing were left out without a word, also where the PNG was
    there as ABC.png or abc.PNG (an audit's case: 4 of 8 rows gone, accuracy reported
    on the 4 left)."""
    records = make_standin(tmp_path, count=5, dead=2)
    images = tmp_path / "images"
    first = records[0].image_id
    (images / f"{first}.png").rename(images / f"{first.upper()}.png")
    notes: list[str] = []
    found = load_nips17(tmp_path, size=32, notes=notes)
    assert len(found) == 2
    assert notes[0].startswith(f"3 of the 5 DEV rows have no PNG in {images}")
    assert f"1 of them is there under another spelling ({first.upper()}.png)" in notes[0]


def test_crop_follows_the_competition_script():
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, 100:] = 255  # right half white
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    out = crop_and_resize(buffer.getvalue(), (0.5, 0.0, 1.0, 1.0))
    assert out.size == (299, 299)
    assert np.asarray(out).min() == 255  # only the white half survives the crop


def serve(directory: Path):
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(directory), **k)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_download_against_local_server(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    Image.fromarray(np.full((300, 400, 3), 90, np.uint8)).save(www / "good.jpg")
    (www / "corrupt.jpg").write_bytes(b"definitely not a jpeg")
    server = serve(www)
    base = f"http://127.0.0.1:{server.server_port}"
    header = ("ImageId,URL,x1,y1,x2,y2,TrueLabel,TargetClass,OriginalLandingURL,License,"
              "Author,AuthorProfileURL\n")
    rows = [f"aaa,{base}/good.jpg,0.0,0.0,1.0,1.0,306,779,,,,\n",
            f"bbb,{base}/missing.jpg,0.0,0.0,1.0,1.0,5,6,,,,\n",
            f"ccc,{base}/corrupt.jpg,0.0,0.0,1.0,1.0,7,8,,,,\n"]
    (www / "dev_dataset.csv").write_text(header + "".join(rows))
    try:
        out = tmp_path / "dev"
        report = download_nips17(out, f"{base}/dev_dataset.csv", csv_sha256=None,
                                 progress=False)
        assert report["downloaded"] == 1 and set(report["failed"]) == {"bbb", "ccc"}
        assert Image.open(out / "images" / "aaa.png").size == (299, 299)
        assert "bbb" in (out / "failed.txt").read_text()
        again = download_nips17(out, f"{base}/dev_dataset.csv", csv_sha256=None,
                                progress=False)
        assert again["existing"] == 1 and again["downloaded"] == 0  # resumable
        dataset = load_nips17(out)
        assert dataset.ids == ("aaa",) and dataset.labels.tolist() == [305]
        assert dataset.images.shape == (1, 3, 224, 224)
    finally:
        server.shutdown()


def test_an_unreachable_csv_or_no_image_at_all_is_an_error_that_leaves_no_folder(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    server = serve(www)
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        with pytest.raises(DataNotFoundError, match="cannot download the NIPS-17 DEV CSV"):
            download_nips17(tmp_path / "none", f"{base}/absent.csv", csv_sha256=None,
                            progress=False)
        assert not (tmp_path / "none").exists()
        (www / "dev_dataset.csv").write_text(
            "ImageId,URL,x1,y1,x2,y2,TrueLabel,TargetClass,OriginalLandingURL,License,"
            f"Author,AuthorProfileURL\naaa,{base}/gone.jpg,0.0,0.0,1.0,1.0,5,6,,,,\n")
        with pytest.raises(DataNotFoundError, match="none of the 1 NIPS-17 DEV images"):
            download_nips17(tmp_path / "dead", f"{base}/dev_dataset.csv", csv_sha256=None,
                            progress=False)
        assert "aaa" in (tmp_path / "dead" / "failed.txt").read_text()
    finally:
        server.shutdown()


def test_a_fetched_csv_that_does_not_read_is_not_kept(tmp_path):
    """Kept, a bad CSV from --csv-url was read by every later run, whatever URL it gave;
    one already in the folder is named, with what to do."""
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    out = tmp_path / "dev"
    with pytest.raises(CorruptDataError, match="is not kept"):
        download_nips17(out, bad.as_uri(), csv_sha256=None, progress=False)
    assert not out.exists()
    out.mkdir()
    (out / "dev_dataset.csv").write_text("a,b\n1,2\n")
    with pytest.raises(CorruptDataError, match="replace or delete"):
        download_nips17(out, bad.as_uri(), csv_sha256=None, progress=False)
    assert (out / "dev_dataset.csv").is_file()


def test_standin_pipeline_attack_and_report(tmp_path):
    data = tmp_path / "dev"
    weights = tmp_path / "squeezenet1_1-standin.pth"
    torch.manual_seed(0)
    model = SqueezeNet("1_1").eval()
    torch.save(model.state_dict(), weights)  # torchvision's file format: a bare state_dict
    make_standin(data, count=5, dead=1, label_model=model)
    dataset = load_nips17(data)
    assert len(dataset) == 4 and dataset.images.shape[-1] == 224  # the dead row is skipped
    config = ExperimentConfig(dataset="nips17", data=str(data), model="squeezenet1_1",
                              weights=str(weights), images=2, selection="random_correct",
                              seeds=[0], popsize=8, maxiter=1, n_samples=2, batch_images=2,
                              out=str(tmp_path / "run"))
    rows = ExperimentRunner(config).run(progress=False)
    assert len(rows) == 4
    write_report(tmp_path / "run")
    assert (tmp_path / "run" / "report.md").is_file()
    import json

    selection = json.loads((tmp_path / "run" / "selection.json").read_text())
    assert len(selection["ids"]) == 2 and selection["rule"] == "random_correct"


def test_resize_inside_wrapper():
    model = ResizeInside(SqueezeNet("1_1").eval())
    with torch.inference_mode():
        assert model(torch.rand(1, 3, 299, 299)).shape == (1, 1000)


def test_cli_standin_and_reproduce_nips17(tmp_path):
    from typer.testing import CliRunner

    from pixelprior.cli import app

    runner = CliRunner()
    data = tmp_path / "dev"
    made = runner.invoke(app, ["data", "standin", "--out", str(data), "--count", "3"])
    assert made.exit_code == 0, made.output
    config = tmp_path / "small.toml"
    config.write_text("popsize = 8\nmaxiter = 1\nn_samples = 2\n")
    result = runner.invoke(app, [
        "reproduce", "nips17", "--data", str(data), "--weights",
        str(data / "squeezenet1_1-standin.pth"), "--config", str(config), "--images", "2",
        "--seeds", "1", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "report.md").is_file()
    assert (tmp_path / "run" / "success_vs_queries.png").is_file()
