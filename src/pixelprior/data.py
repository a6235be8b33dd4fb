"""Datasets: CIFAR-10 (official python layout, JPEG training archive, bundled sample).

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

import hashlib
import io
import os
import pickle
import tarfile
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_DIRNAME = "cifar-10-batches-py"
CIFAR10_JPEG_ARCHIVE = "cifar10-jpeg.tar.xz"
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
DATA_ENV = "PIXELPRIOR_DATA"
CACHE_ENV = "PIXELPRIOR_CACHE"
SAMPLE_ASSET = "cifar10_test_first100.npz"


class DataError(RuntimeError):
    """Base class for data problems (missing or corrupt files)."""


class DataNotFoundError(DataError, FileNotFoundError):
    """No source of the requested data could be found or downloaded."""


class CorruptDataError(DataError, ValueError):
    """A data file exists but cannot be read or fails its checks."""


@dataclass(frozen=True)
class ImageSet:
    """A labelled image set: ``uint8 [N, 3, H, W]`` images, ``int64 [N]`` labels."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    source: str
    indices: torch.Tensor | None = None  # positions in the official split, when known
    ids: tuple[str, ...] | None = None  # per-image identifiers (e.g. NIPS17 ImageId)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise CorruptDataError(f"images must be uint8 [N,3,H,W], got {self.images.dtype} "
                                   f"{tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise CorruptDataError("labels and images disagree in length")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def official_indices(self) -> torch.Tensor:
        """Each row's index in the official split (its position when unknown)."""
        return self.indices if self.indices is not None else torch.arange(len(self))

    def position_of(self, official_index: int) -> int:
        """The row holding official index ``official_index``."""
        return int((self.official_indices == official_index).nonzero()[0, 0])

    def subset(self, index: torch.Tensor | list[int]) -> ImageSet:
        """Rows ``index`` of this set, keeping the official indices."""
        index = torch.as_tensor(index, dtype=torch.long)
        base = self.official_indices
        ids = tuple(self.ids[i] for i in index.tolist()) if self.ids is not None else None
        return ImageSet(self.images[index], self.labels[index], self.class_names,
                        self.source, base[index], ids)


def image_digest(image: torch.Tensor, salt: int) -> int:
    """A stable 63-bit integer from an image's bytes and an integer ``salt``.

    Seeds per-image random streams (SmoothGrad noise, the attack's evolution), so that an
    image's randomness depends on the image itself, not on its batch or position.
    """
    digest = hashlib.blake2b(image.detach().cpu().contiguous().numpy().tobytes(),
                             digest_size=8, key=str(int(salt)).encode())
    return int.from_bytes(digest.digest(), "little") >> 1


def to_float(images: torch.Tensor) -> torch.Tensor:
    """``uint8`` images to ``float32`` in [0, 1] (the input space of every model here)."""
    return images.to(torch.float32) / 255.0


def cache_dir() -> Path:
    """The cache directory: ``$PIXELPRIOR_CACHE`` or ``~/.cache/pixelprior``."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "pixelprior")).expanduser()


def data_dir_from_env() -> Path | None:
    """``$PIXELPRIOR_DATA`` as a path, or None when unset."""
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None


# --------------------------------------------------------------------------- readers
def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file of the official python layout.

    Accepts any number of rows (the shared test batch is truncated to 1017 images).
    Returns ``uint8 [K, 3, 32, 32]`` and ``int64 [K]``.
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
    if labels.shape != (data.shape[0],):
        raise CorruptDataError(f"{path}: {data.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise CorruptDataError(f"{path}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def read_class_names(directory: Path) -> tuple[str, ...]:
    """Class names from ``batches.meta``; the standard names when the file is absent."""
    meta = Path(directory) / "batches.meta"
    if not meta.exists():
        return CIFAR10_CLASSES
    try:
        with open(meta, "rb") as f:
            names = pickle.load(f, encoding="bytes")[b"label_names"]
        return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    except Exception as exc:
        raise CorruptDataError(f"{meta}: unreadable batches.meta ({exc})") from exc


# --------------------------------------------------------------------------- sources
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
    """Find (or fetch) the ``cifar-10-batches-py`` folder; see the module docstring."""
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


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest (``md5``, ``sha256`` ...) of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def md5sum(path: Path) -> str:
    """Hex MD5 of a file."""
    return file_digest(path, "md5")


def sha256sum(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return file_digest(path, "sha256")


def download_file(url: str, dest: Path, *, md5: str | None = None,
                  sha256: str | None = None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically with a progress bar and a checksum check.

    The file is written to ``dest.part`` and renamed only once its hash matches, so a
    broken download never leaves a file that looks complete.
    """
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
        total = int(response.headers.get("Content-Length") or 0) or None
        dest.parent.mkdir(parents=True, exist_ok=True)  # only once the source answers
        try:
            with open(part, "wb") as f, Progress(
                *Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                transient=True,
            ) as bar:
                task = bar.add_task(f"download {dest.name}", total=total)
                while block := response.read(1 << 16):
                    f.write(block)
                    bar.update(task, advance=len(block))
        except BaseException:
            part.unlink(missing_ok=True)  # a broken download leaves nothing behind
            raise
    for name, expected, func in (("MD5", md5, md5sum), ("SHA-256", sha256, sha256sum)):
        if expected and not func(part).startswith(expected):
            part.unlink(missing_ok=True)
            raise CorruptDataError(f"{url}: {name} mismatch (expected {expected}); "
                                   "the download was deleted")
    os.replace(part, dest)
    return dest


def download_cifar10(root: Path) -> Path:
    """Fetch and extract the official CIFAR-10 python archive into ``root``."""
    archive = download_file(CIFAR10_URL, Path(root) / "cifar-10-python.tar.gz", md5=CIFAR10_MD5)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(root, filter="data")
    found = _as_batches_dir(Path(root))
    if found is None:
        raise CorruptDataError(f"{archive}: extracted, but no {CIFAR10_DIRNAME}/test_batch")
    return found


# --------------------------------------------------------------------------- loaders
def load_cifar10_test(path: str | Path | None = None, download: bool = True) -> ImageSet:
    """The official CIFAR-10 test batch (exact pixels; may hold fewer than 10 000 rows)."""
    directory = resolve_cifar10_dir(path, download=download)
    images, labels = read_cifar_batch(directory / "test_batch")
    return ImageSet(torch.from_numpy(images.copy()), torch.from_numpy(labels),
                    read_class_names(directory), str(directory / "test_batch"),
                    torch.arange(len(labels)))


def load_cifar10_train(path: str | Path | None = None, download: bool = True) -> ImageSet:
    """The official training batches ``data_batch_1..5`` (whichever are present)."""
    directory = resolve_cifar10_dir(path, download=download)
    files = sorted(directory.glob("data_batch_*"))
    if not files:
        raise DataNotFoundError(f"no data_batch_* files in {directory}")
    parts = [read_cifar_batch(f) for f in files]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels),
                    read_class_names(directory), str(directory))


def find_jpeg_archive(path: str | Path | None = None) -> Path:
    """Locate ``cifar10-jpeg.tar.xz``: explicit path, ``$PIXELPRIOR_DATA``, cache."""
    candidates = [Path(path).expanduser()] if path is not None else []
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
    """Decode ``<split>/<class>/NNNN.jpg`` members of the JPEG archive, in official order."""
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
            tmp = cached.with_name(cached.name + ".tmp.npz")
            np.savez(tmp, images=images, labels=labels)
            os.replace(tmp, cached)
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels), CIFAR10_CLASSES,
                    f"{archive}:{split}")


def load_cifar10_sample() -> ImageSet:
    """The bundled first 100 official CIFAR-10 test images (exact pixels, no download)."""
    asset = resources.files("pixelprior") / "assets" / SAMPLE_ASSET
    with asset.open("rb") as f, np.load(f) as npz:
        images, labels = npz["images"], npz["labels"]
        indices = npz["indices"] if "indices" in npz else np.arange(len(labels))
    return ImageSet(torch.from_numpy(images.copy()), torch.from_numpy(labels.copy()),
                    CIFAR10_CLASSES, "bundled sample", torch.from_numpy(indices.copy()))


def load_cifar10(source: str = "auto", path: str | Path | None = None,
                 download: bool = False) -> ImageSet:
    """CIFAR-10 test images for attacks and evaluation.

    ``source``: ``"sample"`` (bundled 100 images), ``"full"`` (the official test batch
    via :func:`resolve_cifar10_dir`) or ``"auto"`` (the full batch when one is found
    without downloading, else the bundled sample).
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
        return load_cifar10_sample()


# --------------------------------------------------------------------------- image files
@dataclass
class ImageFile:
    """A user's image file read as 8-bit RGB, and what was done to get there."""

    pixels: np.ndarray  # uint8 [H, W, 3]
    mode: str  # the file's PIL mode
    notes: list[str]  # conversions applied, in words (alpha, bit depth, colour space)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])


ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def read_image_file(path: str | Path) -> ImageFile:
    """Read any image PIL opens as 8-bit RGB, converting every mode correctly.

    16-bit integer images (``I;16*``, and ``I`` with values in 0..65535) are scaled to
    8 bits (v / 257, rounded), so a 16-bit PNG reads as the same pixels as its 8-bit copy;
    float images (``F``) must lie in [0, 1]; palette, grayscale, bilevel, CMYK, YCbCr,
    LAB and HSV images are converted by PIL; an alpha channel is dropped when fully opaque
    and otherwise composited onto white; an EXIF orientation is applied (the image as a
    viewer shows it). Every conversion is listed in ``notes``.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            return _to_rgb(image, path)
    except FileNotFoundError:
        raise DataNotFoundError(f"image file {path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise CorruptDataError(f"cannot read image {path}: {exc}") from None


def _to_rgb(image, path: Path) -> ImageFile:
    from PIL import Image, ImageOps

    mode, notes = image.mode, []
    orientation = image.getexif().get(0x0112, 1)  # EXIF Orientation
    if orientation not in (1, None):
        image = ImageOps.exif_transpose(image)
        notes.append(f"EXIF orientation {orientation} applied (the image as a viewer shows "
                     "it)")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        notes.append("palette image with transparency: expanded to RGBA")
    elif mode == "P":
        image = image.convert("RGB")
        notes.append("palette image: expanded to RGB")
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image).astype(np.int64)
        if values.min() < 0 or values.max() > 65535:
            raise CorruptDataError(f"{path}: {image.mode} image with values "
                                   f"{values.min()}..{values.max()} (beyond 16 bits); save "
                                   "it as 8-bit RGB first")
        gray = np.floor(values / 257.0 + 0.5).astype(np.uint8)
        notes.append(f"16-bit grayscale ({image.mode}) scaled to 8 bits (v / 257)")
        return ImageFile(np.repeat(gray[..., None], 3, axis=2), mode, notes)
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
            raise CorruptDataError(f"{path}: float image with values outside [0, 1]; save "
                                   "it as 8-bit RGB first")
        gray = np.floor(values * 255 + 0.5).astype(np.uint8)
        notes.append("float grayscale (F) in [0, 1] scaled to 8 bits")
        return ImageFile(np.repeat(gray[..., None], 3, axis=2), mode, notes)
    if image.mode in ALPHA_MODES:
        rgba = np.asarray(image.convert("RGBA"))
        alpha = rgba[..., 3]
        if (alpha == 255).all():
            notes.append("alpha channel fully opaque: dropped")
        else:
            notes.append(f"alpha channel: {int((alpha < 255).sum())} of {alpha.size} pixels "
                         "not opaque, composited onto white")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    if image.mode != "RGB":
        if image.mode not in ("RGBA",):
            notes.append(f"{image.mode} converted to RGB")
        image = image.convert("RGB")
    return ImageFile(np.asarray(image, dtype=np.uint8).copy(), mode, notes)


@dataclass(frozen=True)
class Resize:
    """How a user's image was fitted to the model's input (``None`` when it was not)."""

    original: tuple[int, int]  # (width, height) of the file
    model: tuple[int, int]  # (width, height) of the model's input

    def to_original(self, x: int, y: int) -> tuple[int, int, int, int]:
        """The box of file pixels ``(x0, y0, x1, y1)`` (inclusive) that model pixel
        ``(x, y)`` covers."""
        sx, sy = self.original[0] / self.model[0], self.original[1] / self.model[1]
        x0, y0 = int(np.floor(x * sx)), int(np.floor(y * sy))
        x1 = max(x0, int(np.ceil((x + 1) * sx)) - 1)
        y1 = max(y0, int(np.ceil((y + 1) * sy)) - 1)
        return x0, y0, min(x1, self.original[0] - 1), min(y1, self.original[1] - 1)


def fit_image(image: ImageFile, size: int, resize: bool = True
              ) -> tuple[torch.Tensor, Resize | None]:
    """``image`` as float ``[1, 3, size, size]`` in [0, 1] for a model taking ``size`` ×
    ``size`` inputs: resized (bilinear, antialiased) when its size differs, unless
    ``resize=False``, which refuses a mismatched size."""
    from PIL import Image

    pixels, fitted = image.pixels, None
    if image.size != (size, size):
        if not resize:
            raise ValueError(f"the image is {image.size[0]}×{image.size[1]} and the model "
                             f"takes {size}×{size}; drop --no-resize to resize it, or give "
                             f"an image of {size}×{size}")
        pixels = np.asarray(Image.fromarray(pixels).resize((size, size),
                                                           Image.Resampling.BILINEAR))
        fitted = Resize(image.size, (size, size))
    array = np.ascontiguousarray(pixels.transpose(2, 0, 1))
    return torch.from_numpy(array)[None].float() / 255.0, fitted
