"""Data loaders: truncated batches, corrupt files, the source order, download, sample."""

from __future__ import annotations

import hashlib
import http.server
import io
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from pixelprior import data
from pixelprior.data import (
    CorruptDataError,
    DataNotFoundError,
    load_cifar10,
    load_cifar10_sample,
    load_cifar10_test,
    read_cifar_batch,
    resolve_cifar10_dir,
)


def write_batch(directory: Path, rows: int, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """A CIFAR-10 batch in the official python layout with `rows` images."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(rows, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, size=rows).tolist()
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "test_batch", "wb") as f:
        pickle.dump({b"batch_label": b"test", b"labels": labels, b"data": pixels}, f)
    with open(directory / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in data.CIFAR10_CLASSES]}, f)
    return pixels, labels


def test_truncated_batch_loads_all_rows(tmp_path):
    pixels, labels = write_batch(tmp_path / "cifar-10-batches-py", rows=7)
    dataset = load_cifar10_test(tmp_path, download=False)
    assert dataset.images.shape == (7, 3, 32, 32) and dataset.images.dtype == torch.uint8
    assert dataset.labels.dtype == torch.int64 and dataset.labels.tolist() == labels
    # channel-major layout: first 1024 values are the red plane, row-major
    assert dataset.images[3, 0].flatten().tolist() == pixels[3, :1024].tolist()
    assert dataset.images[3, 2, 31, 31] == pixels[3, 3071]
    assert dataset.class_names[0] == "airplane"


@pytest.mark.parametrize("content", [b"", b"not a pickle", pickle.dumps({b"labels": [1]}),
                                     pickle.dumps({b"data": np.zeros((2, 5), np.uint8),
                                                   b"labels": [0, 1]}),
                                     pickle.dumps({b"data": np.zeros((2, 3072), np.uint8),
                                                   b"labels": [0]}),
                                     pickle.dumps({b"data": np.zeros((1, 3072), np.uint8),
                                                   b"labels": [12]}),
                                     pickle.dumps({b"data": np.zeros((0, 3072), np.uint8),
                                                   b"labels": []})])  # "top-1 on 0 images"
def test_corrupt_batch_is_a_clear_error(tmp_path, content):
    path = tmp_path / "test_batch"
    path.write_bytes(content)
    with pytest.raises(CorruptDataError, match="test_batch"):
        read_cifar_batch(path)


def test_source_order_path_then_env_then_cache(tmp_path, monkeypatch):
    explicit, env, cache = tmp_path / "explicit", tmp_path / "env", tmp_path / "cache"
    for folder in (explicit, env, cache):
        write_batch(folder / "cifar-10-batches-py", rows=2)
    monkeypatch.setenv("PIXELPRIOR_DATA", str(env))
    monkeypatch.setenv("PIXELPRIOR_CACHE", str(cache))
    assert resolve_cifar10_dir(explicit, download=False).parent == explicit
    assert resolve_cifar10_dir(None, download=False).parent == env
    monkeypatch.delenv("PIXELPRIOR_DATA")
    assert resolve_cifar10_dir(None, download=False).parent == cache


def test_explicit_path_without_data_is_an_error(tmp_path):
    with pytest.raises(DataNotFoundError, match="no CIFAR-10 test_batch"):
        resolve_cifar10_dir(tmp_path / "nothing", download=False)


def test_nothing_found_names_what_to_download(monkeypatch):
    monkeypatch.delenv("PIXELPRIOR_DATA", raising=False)
    with pytest.raises(DataNotFoundError, match="cifar-10-python.tar.gz") as info:
        resolve_cifar10_dir(None, download=False)
    assert "PIXELPRIOR_DATA" in str(info.value)


def _serve(directory: Path):
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(directory), **k)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _official_archive(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    write_batch(source / "cifar-10-batches-py", rows=3)
    archive = tmp_path / "www" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive


def test_download_checks_md5_and_extracts(tmp_path, monkeypatch):
    monkeypatch.delenv("PIXELPRIOR_DATA", raising=False)
    archive = _official_archive(tmp_path)
    server = _serve(archive.parent)
    try:
        url = f"http://127.0.0.1:{server.server_port}/cifar-10-python.tar.gz"
        monkeypatch.setattr(data.cifar10, "CIFAR10_URL", url)
        digest = hashlib.md5(archive.read_bytes()).hexdigest()
        monkeypatch.setattr(data.cifar10, "CIFAR10_MD5", digest)
        dataset = load_cifar10_test(None, download=True)
        assert len(dataset) == 3
        # a wrong checksum deletes the download and says so
        for f in (tmp_path / "cache").rglob("*"):
            if f.is_file():
                f.unlink()
        monkeypatch.setattr(data.cifar10, "CIFAR10_MD5", "0" * 32)
        with pytest.raises(CorruptDataError, match="MD5 mismatch"):
            data.download_cifar10(tmp_path / "cache2")
        assert not list((tmp_path / "cache2").glob("*.tar.gz*"))
    finally:
        server.shutdown()


def test_failed_download_gives_clear_error(monkeypatch):
    monkeypatch.delenv("PIXELPRIOR_DATA", raising=False)
    monkeypatch.setattr(data.cifar10, "CIFAR10_URL", "http://127.0.0.1:9/none.tar.gz")
    with pytest.raises(DataNotFoundError, match="Download"):
        resolve_cifar10_dir(None, download=True)


def test_bundled_sample_is_the_first_100_test_images():
    sample = load_cifar10_sample()
    assert sample.images.shape == (100, 3, 32, 32)
    assert sample.indices.tolist() == list(range(100))
    assert sample.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]


def test_bundled_sample_matches_shared_prefix(shared_data):
    full = load_cifar10_test(shared_data)
    assert len(full) == 1017
    sample = load_cifar10_sample()
    assert torch.equal(full.images[:100], sample.images)
    assert torch.equal(full.labels[:100], sample.labels)


def test_auto_source_falls_back_to_sample(monkeypatch):
    monkeypatch.delenv("PIXELPRIOR_DATA", raising=False)
    with pytest.warns(UserWarning, match="the bundled sample of the first 100 test images"):
        assert load_cifar10("auto").source == "bundled sample"
    with pytest.raises(ValueError, match="unknown source"):
        load_cifar10("everything")


def _jpeg_archive(tmp_path: Path) -> Path:
    from PIL import Image

    archive = tmp_path / "cifar10-jpeg.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        for cls in ("cat", "airplane"):
            for i in range(2):
                buffer = io.BytesIO()
                Image.new("RGB", (32, 32), (i * 100, 50, 200)).save(buffer, "JPEG")
                info = tarfile.TarInfo(f"train/{cls}/{i:04d}.jpg")
                info.size = len(buffer.getvalue())
                tar.addfile(info, io.BytesIO(buffer.getvalue()))
    return archive


def test_jpeg_archive_reads_in_official_order(tmp_path):
    dataset = data.load_cifar10_jpeg("train", _jpeg_archive(tmp_path))
    assert dataset.images.shape == (4, 3, 32, 32)
    assert dataset.labels.tolist() == [0, 0, 3, 3]  # airplane before cat, by class index
    assert abs(int(dataset.images[1, 0, 0, 0]) - 100) < 8  # second file of a class


def test_corrupt_jpeg_archive(tmp_path):
    bad = tmp_path / "cifar10-jpeg.tar.xz"
    bad.write_bytes(b"garbage")
    with pytest.raises(CorruptDataError, match="unreadable archive"):
        data.load_cifar10_jpeg("train", bad, use_cache=False)
