"""Data: image sets, a user's image files, the NIPS 2017 DEV set and saved scans.

The first layer: nothing here imports another pixelprior package. Images are ``uint8``
tensors ``[N, C, H, W]`` (``C`` = 3, RGB, unless a loader is given ``channels=1``) with
``int64`` labels; models take ``float`` images in [0, 1] (:func:`to_float`).

Modules: ``base`` (ImageSet, errors), ``cifar10``, ``nips17``, ``classes`` (class names
and their checks), ``images`` (one image file), ``sources`` (a user's images:
``folders``, ``npz``, ``csv_list``, over ``collect`` and ``fitting``), ``identity``
(image fingerprints), ``download``, ``scanstore`` (maps.npz), ``registry`` (DATASETS).
"""

from .._streams import image_digest  # noqa: F401  (re-exported: its earlier home)
from .base import (
    CACHE_ENV,
    DATA_ENV,
    CorruptDataError,
    DataError,
    DataNotFoundError,
    DataSpecError,
    ImageSet,
    cache_dir,
    check_images,
    data_dir_from_env,
    to_float,
)
from .cifar10 import (
    CIFAR10_DIRNAME,
    CIFAR10_JPEG_ARCHIVE,
    CIFAR10_MD5,
    CIFAR10_URL,
    SAMPLE_ASSET,
    download_cifar10,
    find_jpeg_archive,
    load_cifar10,
    load_cifar10_jpeg,
    load_cifar10_sample,
    load_cifar10_test,
    read_cifar_batch,
    read_class_names,
    read_jpeg_archive,
    resolve_cifar10_dir,
)
from .classes import (
    CIFAR10_CLASSES,
    ClassNamesError,
    check_class_names,
    imagenet_class_names,
    parse_classes,
)
from .csv_list import load_csv
from .download import download_file, file_digest, md5sum, sha256sum
from .folders import IMAGE_SUFFIXES, load_folder
from .identity import image_fingerprints
from .images import (
    ALPHA_MODES,
    MAX_PIXELS_ENV,
    ImageFile,
    ImageTooLargeError,
    Resize,
    SizeMismatchError,
    fit_image,
    read_image_file,
)
from .npz import load_npz
from .registry import DATASETS, dataset_for, load_dataset
from .scanstore import MAPS_FILE, SusceptibilityMaps, scan_summary
from .sizes import Size, as_height_width, format_size
from .sources import SOURCE_KINDS, load_image_source

__all__ = [
    "ALPHA_MODES", "CACHE_ENV", "CIFAR10_CLASSES", "CIFAR10_DIRNAME", "CIFAR10_JPEG_ARCHIVE",
    "CIFAR10_MD5", "CIFAR10_URL", "DATASETS", "DATA_ENV", "IMAGE_SUFFIXES", "MAPS_FILE",
    "MAX_PIXELS_ENV", "SAMPLE_ASSET", "SOURCE_KINDS", "ClassNamesError", "CorruptDataError",
    "DataError", "DataNotFoundError", "DataSpecError", "ImageFile", "ImageSet",
    "ImageTooLargeError", "Resize",
    "SizeMismatchError", "Size", "SusceptibilityMaps", "as_height_width", "cache_dir",
    "check_class_names", "check_images", "data_dir_from_env", "dataset_for",
    "download_cifar10", "download_file", "file_digest", "fit_image", "find_jpeg_archive",
    "format_size", "image_digest", "image_fingerprints", "imagenet_class_names", "load_cifar10",
    "load_cifar10_jpeg", "load_cifar10_sample", "load_cifar10_test", "load_csv", "load_dataset",
    "load_folder", "load_image_source", "load_npz", "md5sum", "parse_classes",
    "read_cifar_batch", "read_class_names", "read_image_file", "read_jpeg_archive",
    "resolve_cifar10_dir", "scan_summary", "sha256sum", "to_float",
]
