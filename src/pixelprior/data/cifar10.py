"""CIFAR-10: the official python layout, the JPEG training archive, the bundled sample.

Where data comes from, in this order (:func:`resolve_cifar10_dir`):

1. an explicit ``path`` argument;
2. ``$PIXELPRIOR_DATA`` (a folder that holds ``cifar-10-batches-py/``);
3. the cache directory (``$PIXELPRIOR_CACHE`` or ``~/.cache/pixelprior``);
4. a download of the official archive from its canonical URL, checked against its
   published MD5, into the cache.

When none of these works the error says what to download and where to put it.
Images are always returned as ``uint8`` tensors ``[N, 3, H, W]`` with ``int64`` labels;
models take ``float`` images in [0, 1] (see :func:`to_float`).
"""

from __future__ import annotations

import io
import pickle
import tarfile
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .._io import save_npz_atomic
from .base import (
    DATA_ENV,
    CorruptDataError,
    DataNotFoundError,
    ImageSet,
    cache_dir,
    data_dir_from_env,
)
from .classes import CIFAR10_CLASSES, check_class_names
from .download import download_file

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_DIRNAME = "cifar-10-batches-py"
CIFAR10_JPEG_ARCHIVE = "cifar10-jpeg.tar.xz"
SAMPLE_ASSET = "cifar10_test_first100.npz"


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file of the official python layout.

    Accepts any number of rows (the shared test batch is truncated to 1017 images).

    Args:
        path: a batch file (``test_batch``, ``data_batch_1`` ...).

    Returns:
        The images ``uint8 [K, 3, 32, 32]`` and labels ``int64 [K]``.

    Raises:
        FileNotFoundError: no such file.
        CorruptDataError: not a readable batch, or data or labels of the wrong shape or
            range.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="bytes")
    except FileNotFoundError:
        raise
    except Exception as exc:  # pickle raises many types on garbage
        raise CorruptDataError(f"{path}: not a readable CIFAR-10 batch ({exc})") from exc
    if not isinstance(entry, dict) or b"data" not in entry:
        raise CorruptDataError(f"{path}: no b'data' entry; not a CIFAR-10 batch file")
    data = np.asarray(entry[b"data"])
    labels = np.asarray(entry.get(b"labels", entry.get(b"fine_labels", [])), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise CorruptDataError(f"{path}: data must be uint8 [K, 3072], got {data.dtype} "
                               f"{data.shape}")
    if data.shape[0] == 0:
        raise CorruptDataError(f"{path}: holds no images; put back the published batch")
    if labels.shape != (data.shape[0],):
        raise CorruptDataError(f"{path}: {data.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise CorruptDataError(f"{path}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def read_class_names(directory: Path) -> tuple[str, ...]:
    """Class names from ``batches.meta``, checked as a user's names are.

    Args:
        directory: the ``cifar-10-batches-py`` folder.

    Returns:
        The names (the standard ones when the file is absent).

    Raises:
        CorruptDataError: an unreadable file, an empty name, or names that appear twice
            or differ only in case, spaces or Unicode form.
    """
    meta = Path(directory) / "batches.meta"
    if not meta.exists():
        return CIFAR10_CLASSES
    try:
        with open(meta, "rb") as f:
            content = pickle.load(f, encoding="bytes")
        names = content.get(b"label_names", content.get("label_names"))  # bytes or str keys
        if names is None:
            raise KeyError("no label_names entry")
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    except Exception as exc:
        raise CorruptDataError(f"{meta}: unreadable batches.meta ({exc})") from exc
    if len(names) != len(CIFAR10_CLASSES):  # the batches' labels are checked to be 0..9
        raise CorruptDataError(f"{meta}: names {len(names)} classes, and CIFAR-10's labels "
                               f"are 0..{len(CIFAR10_CLASSES) - 1}; put back the published "
                               "batches.meta (or remove it: the standard names are used)")
    return check_class_names(names, str(meta))


def _candidate_dirs(path: str | Path | None) -> list[tuple[str, Path]]:
    """Where to look for ``cifar-10-batches-py``, in priority order."""
    out: list[tuple[str, Path]] = []
    if path is not None:
        out.append(("path argument", Path(path).expanduser()))
    env = data_dir_from_env()
    if env is not None:
        out.append((f"${DATA_ENV}", env))
    out.append(("cache", cache_dir()))
    return out


def _as_batches_dir(root: Path) -> Path | None:
    """``root`` itself or ``root/cifar-10-batches-py`` when it holds a test batch."""
    for candidate in (root, root / CIFAR10_DIRNAME):
        if (candidate / "test_batch").is_file():
            return candidate
    return None


def resolve_cifar10_dir(path: str | Path | None = None, download: bool = True) -> Path:
    """Find (or fetch) the ``cifar-10-batches-py`` folder, in the module docstring's order.

    Args:
        path: an explicit folder (it, or its ``cifar-10-batches-py``, holds ``test_batch``).
        download: fetch the official archive into the cache when nothing is found.

    Returns:
        The folder holding ``test_batch``.

    Raises:
        DataNotFoundError: nothing found (the message says what to download and where to
            put it), or an explicit ``path`` without a test batch.
    """
    tried = []
    for label, root in _candidate_dirs(path):
        found = _as_batches_dir(root)
        if found is not None:
            return found
        tried.append(f"{label}: {root}")
        if label == "path argument":
            raise DataNotFoundError(
                f"no CIFAR-10 test_batch under {root} (looked in {root} and "
                f"{root / CIFAR10_DIRNAME})")
    if download:
        try:
            return download_cifar10(cache_dir())
        except OSError as exc:  # URLError is an OSError
            tried.append(f"download {CIFAR10_URL}: {exc}")
    raise DataNotFoundError(
        "CIFAR-10 not found. Looked in:\n  " + "\n  ".join(tried) + "\n"
        f"Download {CIFAR10_URL} (MD5 {CIFAR10_MD5}), extract it, and either set "
        f"${DATA_ENV} to the folder holding '{CIFAR10_DIRNAME}/' or put that folder in "
        f"{cache_dir()}.")


def download_cifar10(root: Path) -> Path:
    """Fetch and extract the official CIFAR-10 python archive into ``root``.

    Args:
        root: the folder to extract into.

    Returns:
        The extracted ``cifar-10-batches-py`` folder.

    Raises:
        OSError: the download failed.
        CorruptDataError: an MD5 mismatch, or no test batch in the archive.
    """
    archive = download_file(CIFAR10_URL, Path(root) / "cifar-10-python.tar.gz", md5=CIFAR10_MD5)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(root, filter="data")
    found = _as_batches_dir(Path(root))
    if found is None:
        raise CorruptDataError(f"{archive}: extracted, but no {CIFAR10_DIRNAME}/test_batch")
    return found


def load_cifar10_test(path: str | Path | None = None, download: bool = True) -> ImageSet:
    """The official CIFAR-10 test batch (exact pixels; may hold fewer than 10 000 rows).

    Args:
        path: an explicit folder (see :func:`resolve_cifar10_dir`).
        download: fetch the archive when it is nowhere to be found.

    Returns:
        The images ``uint8 [K, 3, 32, 32]``, indices 0..K-1.

    Raises:
        DataNotFoundError: no test batch found.
        CorruptDataError: an unreadable batch or ``batches.meta``.
    """
    directory = resolve_cifar10_dir(path, download=download)
    images, labels = read_cifar_batch(directory / "test_batch")
    return ImageSet(torch.from_numpy(images.copy()), torch.from_numpy(labels),
                    read_class_names(directory), str(directory / "test_batch"),
                    torch.arange(len(labels)))


def find_jpeg_archive(path: str | Path | None = None) -> Path:
    """Locate ``cifar10-jpeg.tar.xz``: explicit path, ``$PIXELPRIOR_DATA``, cache.

    Args:
        path: the archive itself, tried first.

    Returns:
        The first archive found.

    Raises:
        DataNotFoundError: ``path`` given and no file (never another archive in its
            place), or none of the places holds it.
    """
    if path is not None:
        given = Path(path).expanduser()
        if not given.is_file():
            raise DataNotFoundError(f"{given} is not a file: give the {CIFAR10_JPEG_ARCHIVE} "
                                    "archive itself")
        return given
    candidates = []
    env = data_dir_from_env()
    if env is not None:
        candidates.append(env / CIFAR10_JPEG_ARCHIVE)
    candidates.append(cache_dir() / CIFAR10_JPEG_ARCHIVE)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataNotFoundError(
        f"{CIFAR10_JPEG_ARCHIVE} not found (looked at {', '.join(map(str, candidates))}). "
        f"Set ${DATA_ENV} to the shared data folder or pass the archive's path.")


def read_jpeg_archive(archive: Path, split: str = "train",
                      class_names: tuple[str, ...] = CIFAR10_CLASSES
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``<split>/<class>/NNNN.jpg`` members of the JPEG archive, in official order.

    Args:
        archive: the ``.tar.xz`` file.
        split: ``train`` or ``test``.
        class_names: the class folders, in label order.

    Returns:
        The images ``uint8 [K, 3, 32, 32]`` and labels ``int64 [K]``.

    Raises:
        CorruptDataError: an unreadable archive, an unknown class folder, or no images.
    """
    from PIL import Image

    by_class: dict[int, list[tuple[str, np.ndarray]]] = {i: [] for i in range(len(class_names))}
    class_index = {name: i for i, name in enumerate(class_names)}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = member.name.split("/")
                if not member.isfile() or len(parts) != 3 or parts[0] != split:
                    continue
                if parts[1] not in class_index:
                    raise CorruptDataError(f"{archive}: unknown class folder {parts[1]!r}")
                raw = tar.extractfile(member).read()
                pixels = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
                by_class[class_index[parts[1]]].append((parts[2], pixels))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CorruptDataError(f"{archive}: unreadable archive ({exc})") from exc
    images, labels = [], []
    for label, items in by_class.items():
        for _, pixels in sorted(items, key=lambda item: item[0]):
            images.append(pixels.transpose(2, 0, 1))
            labels.append(label)
    if not images:
        raise CorruptDataError(f"{archive}: no {split}/<class>/*.jpg members")
    return np.stack(images).astype(np.uint8), np.asarray(labels, dtype=np.int64)


def load_cifar10_jpeg(split: str = "train", path: str | Path | None = None,
                      use_cache: bool = True) -> ImageSet:
    """The JPEG-compressed CIFAR-10 split (lossy: for training only, never for attacks).

    Decoding 50 000 JPEGs takes a while, so the decoded arrays are cached as ``.npz``
    in the cache directory, keyed by the archive's size and modification time.

    Args:
        split: ``train`` or ``test``.
        path: the archive (see :func:`find_jpeg_archive`).
        use_cache: read and write the decoded cache.

    Returns:
        The images ``uint8 [K, 3, 32, 32]``.

    Raises:
        DataNotFoundError: no archive found.
        CorruptDataError: an unreadable archive.
    """
    archive = find_jpeg_archive(path)
    stat = archive.stat()
    cached = cache_dir() / f"cifar10-jpeg-{split}-{stat.st_size}-{int(stat.st_mtime)}.npz"
    if use_cache and cached.is_file():
        with np.load(cached) as npz:
            images, labels = npz["images"], npz["labels"]
    else:
        images, labels = read_jpeg_archive(archive, split)
        if use_cache:
            cached.parent.mkdir(parents=True, exist_ok=True)
            save_npz_atomic(cached, compressed=False, images=images, labels=labels)
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels), CIFAR10_CLASSES,
                    f"{archive}:{split}")


def load_cifar10_sample() -> ImageSet:
    """The bundled first 100 official CIFAR-10 test images (exact pixels, no download).

    Returns:
        The images ``uint8 [100, 3, 32, 32]`` with their official indices.
    """
    asset = resources.files("pixelprior") / "assets" / SAMPLE_ASSET
    with asset.open("rb") as f, np.load(f) as npz:
        images, labels = npz["images"], npz["labels"]
        indices = npz["indices"] if "indices" in npz else np.arange(len(labels))
    return ImageSet(torch.from_numpy(images.copy()), torch.from_numpy(labels.copy()),
                    CIFAR10_CLASSES, "bundled sample", torch.from_numpy(indices.copy()))


def load_cifar10(source: str = "auto", path: str | Path | None = None,
                 download: bool = False) -> ImageSet:
    """CIFAR-10 test images for attacks and evaluation.

    Args:
        source: ``"sample"`` (bundled 100 images), ``"full"`` (the official test batch
            via :func:`resolve_cifar10_dir`) or ``"auto"`` (the full batch when one is
            found without downloading, else the bundled sample, with a warning).
        path: an explicit folder for the full batch.
        download: ``"full"`` may fetch the archive.

    Returns:
        The images ``uint8 [K, 3, 32, 32]``.

    Raises:
        ValueError: an unknown ``source``.
        DataNotFoundError: ``"full"`` (or ``"auto"`` with a ``path``) and no batch found.
    """
    if source == "sample":
        return load_cifar10_sample()
    if source == "full":
        return load_cifar10_test(path, download=download)
    if source != "auto":
        raise ValueError(f"unknown source {source!r}; use 'auto', 'sample' or 'full'")
    try:
        return load_cifar10_test(path, download=False)
    except DataNotFoundError:
        if path is not None:
            raise
        warnings.warn("no CIFAR-10 test batch found without downloading (set "
                      "PIXELPRIOR_DATA, or pass source='full' to download it): the bundled "
                      "sample of the first 100 test images is used", stacklevel=2)
        return load_cifar10_sample()

