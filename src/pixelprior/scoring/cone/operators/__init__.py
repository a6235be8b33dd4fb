"""The operations the cone engines know, one module per family; importing this package
registers them in :data:`~pixelprior.scoring.cone.table.OPERATIONS`."""

from . import (
    activations,
    arithmetic,
    attention,
    convolution,
    linear,
    normalization,
    pooling,
    resampling,
    shape,
)

__all__ = ["activations", "arithmetic", "attention", "convolution", "linear", "normalization",
           "pooling", "resampling", "shape"]
