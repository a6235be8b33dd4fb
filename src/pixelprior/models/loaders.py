"""Deprecated import path, kept for one release (0.3); it warns on import.

Its names live in ``pixelprior.models`` now (``spec``, ``probing``, ``wrappers``,
``channels``, ``accuracy``, ``errors``, ``formats``); import them from
``pixelprior.models``.
"""

import warnings

from .accuracy import accuracy_on, one_class_warning, predict_labels
from .channels import LUMA, to_model_channels
from .errors import GradientsUnavailableError, ModelInputError, ModelLoadError, short_reason
from .probing import output_kind
from .spec import KINDS, OUTPUTS, LoadedModel, as_registered, load_model_spec, model_spec_problem
from .wrappers import Normalize, OnnxModel

__all__ = [
    "KINDS", "LUMA", "OUTPUTS", "GradientsUnavailableError", "LoadedModel", "ModelInputError",
    "ModelLoadError", "Normalize", "OnnxModel", "accuracy_on", "as_registered",
    "load_model_spec", "model_spec_problem", "one_class_warning", "output_kind",
    "predict_labels", "short_reason", "to_model_channels",
]

warnings.warn("pixelprior.models.loaders is deprecated; import its names from "
              "pixelprior.models", DeprecationWarning, stacklevel=2)
