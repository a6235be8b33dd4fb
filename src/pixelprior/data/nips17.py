"""The NIPS 2017 adversarial-competition DEV set ("NIPS-W" in the paper).

Published layout: ``dev_dataset.csv`` (ImageId, URL, x1, y1, x2, y2, TrueLabel,
TargetClass, ...) beside ``images/<ImageId>.png`` (299×299 RGB). Labels follow the
competition's 1001-class convention (0 = background, 1..1000 = ImageNet), so torchvision's
0..999 index is ``TrueLabel - 1`` (:func:`to_torchvision_label`).

:func:`download_nips17` rebuilds the images the way the competition's own downloader did:
fetch each URL, crop to the box ``(int(x1·w), int(y1·h), int(x2·w), int(y2·h))``, resize
to 299×299 with Lanczos (PIL's former ANTIALIAS) and save ``ImageId.png``. Dead URLs are
reported and skipped; existing PNGs are kept, so an interrupted download resumes.

For attacks the images are resized once to the model's input size (224×224 for the
SqueezeNets) and kept in [0, 1]; normalisation stays inside the model. ``size=299`` keeps
the published resolution, for a model that resizes inside itself
(:class:`~pixelprior.models.ResizeInside`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._io import atomic_write
from .base import CorruptDataError, DataNotFoundError, ImageSet
from .classes import imagenet_class_names
from .collect import NoteTally, count_once, few
from .download import download_file
from .images import read_image_file

DEV_CSV_URL = ("https://raw.githubusercontent.com/cleverhans-lab/cleverhans/master/examples/"
               "nips17_adversarial_competition/dataset/dev_dataset.csv")
DEV_CSV_SHA256 = "b85ae40a1d5d0d95b77d30b8cabec140020a00cbcc9aebc6921b77a270fb743d"
REQUIRED_COLUMNS = ("ImageId", "URL", "x1", "y1", "x2", "y2", "TrueLabel", "TargetClass")
PUBLISHED_SIZE = 299


@dataclass(frozen=True)
class DevRecord:
    """One row of ``dev_dataset.csv`` (labels as published, 1..1000).

    Attributes:
        image_id: the ImageId (the PNG's stem).
        url: where the original image was.
        box: the crop ``(x1, y1, x2, y2)`` as fractions of the original's size.
        true_label: the competition's label (1..1000).
        target_class: the competition's target label (1..1000).
    """

    image_id: str
    url: str
    box: tuple[float, float, float, float]
    true_label: int
    target_class: int


def to_torchvision_label(competition_label: int) -> int:
    """Competition label (1..1000, 0 = background) → torchvision index (0..999).

    Args:
        competition_label: 1..1000.

    Returns:
        ``competition_label - 1``.

    Raises:
        ValueError: outside 1..1000.
    """
    if not 1 <= competition_label <= 1000:
        raise ValueError(f"competition label {competition_label} outside 1..1000 "
                         "(0 is the unused background class)")
    return competition_label - 1


def to_competition_label(torchvision_label: int) -> int:
    """torchvision index (0..999) → competition label (1..1000).

    Args:
        torchvision_label: 0..999.

    Returns:
        ``torchvision_label + 1``.

    Raises:
        ValueError: outside 0..999.
    """
    if not 0 <= torchvision_label <= 999:
        raise ValueError(f"torchvision label {torchvision_label} outside 0..999")
    return torchvision_label + 1


def read_dev_csv(path: str | Path) -> list[DevRecord]:
    """Parse ``dev_dataset.csv``.

    Args:
        path: the CSV.

    Returns:
        One record per row, in file order.

    Raises:
        DataNotFoundError: no such file (the message gives its URL).
        CorruptDataError: missing columns, or a row with bad values (its line named).
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path} not found; get it from {DEV_CSV_URL}")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CorruptDataError(f"{path}: missing columns {missing}")
        records, lines = [], {}
        for line, row in enumerate(reader, start=2):
            try:
                record = DevRecord(
                    row["ImageId"], row["URL"],
                    (float(row["x1"]), float(row["y1"]), float(row["x2"]), float(row["y2"])),
                    int(row["TrueLabel"]), int(row["TargetClass"]))
                to_torchvision_label(record.true_label)
            except (TypeError, ValueError) as exc:
                raise CorruptDataError(f"{path}:{line}: bad row ({exc})") from exc
            if record.image_id in lines:
                raise CorruptDataError(f"{path}:{line}: ImageId {record.image_id} is listed "
                                       f"again (first on line {lines[record.image_id]}); "
                                       "list each image once")
            lines[record.image_id] = line
            records.append(record)
    return records


def crop_and_resize(raw: bytes, box: tuple[float, float, float, float],
                    size: int = PUBLISHED_SIZE):
    """The competition's preprocessing of a downloaded image.

    Args:
        raw: the downloaded file's bytes.
        box: the crop ``(x1, y1, x2, y2)`` as fractions of the image's size.
        size: the side of the square result.

    Returns:
        A PIL RGB image of ``size`` × ``size`` (Lanczos).
    """
    from PIL import Image

    image = Image.open(io.BytesIO(raw)).convert("RGB")
    w, h = image.size
    x1, y1, x2, y2 = box
    image = image.crop((int(x1 * w), int(y1 * h), int(x2 * w), int(y2 * h)))
    return image.resize((size, size), resample=Image.Resampling.LANCZOS)


def download_nips17(out: str | Path, csv_url: str = DEV_CSV_URL,
                    csv_sha256: str | None = DEV_CSV_SHA256, timeout: float = 30.0,
                    progress: bool = True) -> dict:
    """Fetch the CSV and every image into ``out`` (published layout); resumable.

    Args:
        out: the folder (``dev_dataset.csv`` and ``images/`` go there).
        csv_url: where the CSV is.
        csv_sha256: its expected SHA-256 (``None``: not checked).
        timeout: seconds to wait for each server.
        progress: show a progress bar.

    Returns:
        ``{"downloaded": n, "existing": n, "failed": {ImageId: reason}}``; the failures
        are also written to ``out/failed.txt``.

    Raises:
        DataNotFoundError: the CSV cannot be fetched (nothing is written), or no image
            can (dead image URLs are listed, not raised, while any image arrives).
        CorruptDataError: the CSV's checksum or columns do not match.
    """
    out = Path(out)
    csv_path = out / "dev_dataset.csv"
    fetched, created = not csv_path.is_file(), not out.exists()
    if fetched:
        try:
            download_file(csv_url, csv_path, sha256=csv_sha256, timeout=timeout)
        except OSError as exc:  # URLError is an OSError; download_file leaves nothing
            raise DataNotFoundError(
                f"cannot download the NIPS-17 DEV CSV from {csv_url} "
                f"({_reason(exc)}): check the connection, or put the published "
                f"dev_dataset.csv in {out} (or give --csv-url file:///path/to/it) and run "
                "again") from None
    records = _read_csv_or_drop(csv_path, csv_url if fetched else None, created)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    report = {"downloaded": 0, "existing": 0, "failed": {}}
    iterator = records
    if progress:
        from rich.progress import track

        iterator = track(records, description="NIPS17 images")
    for record in iterator:
        target = images_dir / f"{record.image_id}.png"
        if target.is_file():
            report["existing"] += 1
            continue
        try:
            with urllib.request.urlopen(record.url, timeout=timeout) as response:  # noqa: S310
                raw = response.read()
            image = crop_and_resize(raw, record.box)
        except Exception as exc:  # dead URL, HTTP error, not an image
            report["failed"][record.image_id] = (
                _reason(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}")
            continue
        with atomic_write(target) as f:
            image.save(f, format="PNG")
        report["downloaded"] += 1
    (out / "failed.txt").write_text("".join(f"{k}\t{v}\n" for k, v in report["failed"].items()))
    if records and len(report["failed"]) == len(records):
        first = next(iter(report["failed"].values()))
        raise DataNotFoundError(
            f"none of the {len(records)} NIPS-17 DEV images could be downloaded (the first: "
            f"{first}); they are listed in {out / 'failed.txt'}: check the connection and "
            "run the same command again")
    return report


def _read_csv_or_drop(csv_path: Path, fetched_from: str | None,
                      created: bool) -> list[DevRecord]:
    """The CSV's records. One just fetched (``fetched_from``) that does not read is
    removed, with its folder where this call ``created`` it: kept, it would be read
    again by every later run, whatever ``--csv-url``."""
    try:
        return read_dev_csv(csv_path)
    except CorruptDataError as exc:
        if fetched_from is None:
            raise CorruptDataError(f"{exc}; replace or delete {csv_path} and run "
                                   "again") from None
        csv_path.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):  # not empty: someone else's files came
                csv_path.parent.rmdir()
        raise CorruptDataError(f"{exc} (the file from {fetched_from} is not kept): "
                               "give the published DEV CSV") from None


def _reason(exc: OSError) -> str:
    """A download's failure in words (``URLError`` hides it in ``.reason``)."""
    code, reason = getattr(exc, "code", None), getattr(exc, "reason", None)
    if isinstance(code, int):  # an HTTPError: its status too
        return f"HTTP {code} {reason or ''}".rstrip()
    return str(reason) if reason is not None else f"{type(exc).__name__}: {exc}"


def load_nips17(directory: str | Path, size: int = 224,
                notes: list[str] | None = None) -> ImageSet:
    """The DEV images present in ``directory``.

    Labels are mapped to torchvision's 0..999. Images whose PNG is missing (dead URLs)
    are left out; ``ImageSet.ids`` keeps each row's ImageId. Resizing (when ``size`` is
    not 299) uses bilinear interpolation with antialiasing, once, before any attack.

    Each PNG is read by :func:`~pixelprior.data.read_image_file` (every mode converted,
    transparency composited onto white, each conversion noted); a picture held twice
    (identical pixels under two ImageIds) is counted once, with a note.

    Args:
        directory: holds ``dev_dataset.csv`` and ``images/`` (or the PNGs directly).
        size: the side the images are resized to (the model's input).
        notes: filled with what loading did (conversions, resizes, repeats).

    Returns:
        The images ``uint8 [N, 3, size, size]``; indices: the CSV rows.

    Raises:
        DataNotFoundError: no CSV, or none of its images present.
        CorruptDataError: an unreadable CSV or image, an ImageId listed twice.
    """
    from PIL import Image

    directory = Path(directory).expanduser()  # as the config validated it
    records = read_dev_csv(directory / "dev_dataset.csv")
    images_dir = directory / "images" if (directory / "images").is_dir() else directory
    pixels, labels, ids, rows, tally = [], [], [], [], NoteTally()
    missing: list[str] = []
    for row, record in enumerate(records):
        path = images_dir / f"{record.image_id}.png"
        if not path.is_file():
            missing.append(f"{record.image_id}.png")
            continue
        read = read_image_file(path)
        tally.add(read.notes, path.name)
        image = Image.fromarray(read.pixels)
        if image.size != (size, size):
            tally.add([f"resized from {image.size[0]}×{image.size[1]} to {size}×{size} "
                       "(bilinear)"], path.name)
            image = image.resize((size, size), resample=Image.Resampling.BILINEAR,
                                 reducing_gap=None)
        pixels.append(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))
        labels.append(to_torchvision_label(record.true_label))
        ids.append(record.image_id)
        rows.append(row)
    if not pixels:
        raise DataNotFoundError(f"no DEV images found in {images_dir}; run "
                                f"`pixelprior data nips17 --out {directory}`")
    found, twice = count_once(
        ImageSet(torch.from_numpy(np.stack(pixels)), torch.tensor(labels),
                 imagenet_class_names(), str(directory), torch.tensor(rows), ids=tuple(ids)),
        str(directory))
    if notes is not None:
        notes += _missing_note(missing, len(records), images_dir) + tally.notes() + twice
    return found


def _missing_note(missing: list[str], count: int, images_dir: Path) -> list[str]:
    """The note on the CSV's rows whose PNG is not there (left out), naming files that
    are there under another spelling (``ABC.png``, ``abc.PNG``: not read)."""
    if not missing:
        return []
    there = {p.name.lower(): p.name for p in images_dir.iterdir() if p.is_file()}
    respelled = [there[name.lower()] for name in missing if name.lower() in there]
    note = (f"{len(missing)} of the {count} DEV rows have no PNG in {images_dir} (dead URLs "
            f"when downloaded; failed.txt lists them): left out, e.g. {few(missing)}")
    if respelled:
        verb = "is" if len(respelled) == 1 else "are"
        note += (f"; {len(respelled)} of them {verb} there under another spelling "
                 f"({few(respelled)}): name them <ImageId>.png to read them")
    return [note]


def make_standin(out: str | Path, count: int = 6, seed: int = 0, dead: int = 0,
                 label_model: nn.Module | None = None) -> list[DevRecord]:
    """A small dataset in the exact published layout, for tests and dry runs.

    Writes ``dev_dataset.csv`` (all published columns) and ``images/<id>.png`` (299×299
    smooth random images) for all but the last ``dead`` rows. Labels are random, or, with
    ``label_model`` (a 1000-class model taking 224×224 images), the model's own
    predictions, so that a stand-in run attacks "correctly classified" images as a real
    run does.

    Args:
        out: the folder to write.
        count: the rows.
        seed: the random seed of images, labels and ids.
        dead: how many of the last rows get no PNG (as dead URLs).
        label_model: a model whose predictions become the labels, or ``None``.

    Returns:
        The records written.
    """
    from PIL import Image

    if count < 1 or not 0 <= dead <= count:
        raise ValueError(f"a stand-in needs count >= 1 and 0 <= dead <= count, got "
                         f"count={count}, dead={dead}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = [Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).resize(
        (PUBLISHED_SIZE, PUBLISHED_SIZE), Image.Resampling.BICUBIC) for _ in range(count)]
    labels = rng.integers(1, 1001, size=count).tolist()
    if label_model is not None:
        batch = torch.stack([torch.from_numpy(np.array(im.resize((224, 224)))).permute(2, 0, 1)
                             for im in images]).float() / 255
        with torch.inference_mode():
            labels = [to_competition_label(int(k)) for k in label_model(batch).argmax(1)]
    records = []
    with open(out / "dev_dataset.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ImageId", "URL", "x1", "y1", "x2", "y2", "TrueLabel", "TargetClass",
                         "OriginalLandingURL", "License", "Author", "AuthorProfileURL"])
        for i in range(count):
            image_id = f"{rng.integers(0, 2**63):016x}"
            record = DevRecord(image_id, f"http://127.0.0.1:1/{image_id}.jpg",
                               (0.0, 0.0, 1.0, 1.0), labels[i], int(rng.integers(1, 1001)))
            writer.writerow([record.image_id, record.url, *record.box, record.true_label,
                             record.target_class, "", "", "", ""])
            records.append(record)
            if i < count - dead:
                images[i].save(out / "images" / f"{image_id}.png")
    return records
