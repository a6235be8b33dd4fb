"""Deprecated import path, kept for one release (0.3); it warns on import.

Its names live elsewhere now (mostly in ``pixelprior.scoring.onnx_runtime``);
import them from there.
"""

import warnings

from pixelprior.models.inference import (
    fold_batchnorm,
    scores_agree,
)
from pixelprior.scoring.onnx_runtime import (
    INSTALL_HINT,
    OnnxRuntimeModel,
    _onnxruntime,
    export_onnx,
)

__all__ = [
    "INSTALL_HINT", "OnnxRuntimeModel", "_onnxruntime", "export_onnx", "fold_batchnorm",
    "scores_agree",
]

warnings.warn("pixelprior.runtime moved (see pixelprior.scoring.onnx_runtime); this import "
              "path goes in pixelprior 0.4", DeprecationWarning, stacklevel=2)
