"""Deprecated import path, kept for one release (0.3); it warns on import.

Its names live elsewhere now (mostly in ``pixelprior.models.train``);
import them from there.
"""

import warnings

from pixelprior.data.base import (
    ImageSet,
    to_float,
)
from pixelprior.data.cifar10 import (
    load_cifar10_jpeg,
    load_cifar10_test,
)
from pixelprior.data.download import (
    sha256sum,
)
from pixelprior.models.inference import (
    predict,
)
from pixelprior.models.squeezenet import (
    SqueezeNetCifar,
)
from pixelprior.models.train import (
    TrainConfig,
    _atomic_save,
    _load_training_set,
    augment,
    evaluate,
    learning_rate,
    train_cifar10,
    write_weights,
)

__all__ = [
    "ImageSet", "SqueezeNetCifar", "TrainConfig", "_atomic_save", "_load_training_set",
    "augment", "evaluate", "learning_rate", "load_cifar10_jpeg", "load_cifar10_test",
    "predict", "sha256sum", "to_float", "train_cifar10", "write_weights",
]

warnings.warn("pixelprior.train moved (see pixelprior.models.train); this import "
              "path goes in pixelprior 0.4", DeprecationWarning, stacklevel=2)
