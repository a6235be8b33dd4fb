"""Deprecated import path, kept for one release (0.3); it warns on import.

Its names live elsewhere now (mostly in ``pixelprior.data.nips17``);
import them from there.
"""

import warnings

from pixelprior.data.base import (
    CorruptDataError,
    DataNotFoundError,
    ImageSet,
)
from pixelprior.data.download import (
    download_file,
)
from pixelprior.data.nips17 import (
    DEV_CSV_SHA256,
    DEV_CSV_URL,
    PUBLISHED_SIZE,
    REQUIRED_COLUMNS,
    DevRecord,
    crop_and_resize,
    download_nips17,
    load_nips17,
    make_standin,
    read_dev_csv,
    to_competition_label,
    to_torchvision_label,
)
from pixelprior.models.wrappers import (
    ResizeInside,
)

__all__ = [
    "CorruptDataError", "DEV_CSV_SHA256", "DEV_CSV_URL", "DataNotFoundError", "DevRecord",
    "ImageSet", "PUBLISHED_SIZE", "REQUIRED_COLUMNS", "ResizeInside", "crop_and_resize",
    "download_file", "download_nips17", "load_nips17", "make_standin", "read_dev_csv",
    "to_competition_label", "to_torchvision_label",
]

warnings.warn("pixelprior.nips17 moved (see pixelprior.data.nips17); this import "
              "path goes in pixelprior 0.4", DeprecationWarning, stacklevel=2)
