"""The cone of one pixel through a general convolutional network, found with ``torch.fx``.

:mod:`pixelprior.scoring._squeezenet_cone` recomputes only what one changed pixel reaches,
for SqueezeNet-style networks. This package does the same for any network ``torch.fx`` can
trace: the graph is interpreted node by node with three kinds of values,

- *static*: independent of the image (parameters, buffers, constants), computed once;
- *windowed*: a fixed-size window per row (``values [N, C, h, w]`` at ``top``/``left`` of
  the feature map); outside it the map equals the clean image's, cached by
  :meth:`FxIncrementalForward.prepare` (channels-last, padded where a layer needs it);
- *full*: ordinary tensors of the rows, once a node needs the whole map.

Modules, one job each:

- :mod:`.table`: the **operation table** (:data:`OPERATIONS`): one entry per operation,
  with its graph targets, a settings reader, the incremental engine's window rule, the
  verifier's bound rule and its interval screen's rule (:func:`register_operation`,
  :func:`register_bound`, :func:`register_interval`);
- :mod:`.operators`: the registered operations, one module per family (convolution,
  pooling, normalization, activations, arithmetic, linear, shape);
- :mod:`.geometry`: where a pixel's window lies in each map, and patch gathering;
- :mod:`.graph`: the traced model (BatchNorm folded into convolutions), its constants;
- :mod:`.plan`: the steps of one image size, what the clean pass keeps, the work saved;
- :mod:`.runtime`: windows and the clean cache at query time;
- :mod:`.engine`: :class:`FxIncrementalForward` and :func:`fx_incremental_forward`;
- the verifier's bounds: :mod:`.zonotope` and :mod:`.bounds` (zonotopes through the
  cone), :mod:`.intervals` and :mod:`.screen` (intervals through the same windows, or
  whole images, batched over positions), :mod:`.rounding` (the model's own float32 error,
  estimated) and :mod:`.backward` (proved with signs, over a box).

Convolutions (any stride, padding, dilation, groups), max/avg pooling, BatchNorm and
pointwise activations, arithmetic with per-channel constants (``(x - mean) / std``),
residual additions and channel concatenations (windows of different size or origin: their
union box, each filled from its clean activation) run on windows: the receptive field of
the output window is gathered from the cached, padded clean input with index ops, the
changed window laid over it, and the layer run without padding. Anything else (global
pooling, flatten, linear layers, an unknown op) materialises its windowed inputs and runs
as the model does; so does a window that has grown to cover its whole map. Results equal
the full pass to float tolerance.

Hand-written because no library offers incremental cone inference for PyTorch; the idea is
Krypton's (Nakandala et al., SIGMOD 2019), for occlusion explanations.
"""

from .engine import FxIncrementalForward, fx_incremental_forward
from .graph import FxUnsupportedError, TracedGraph, describe
from .plan import MIN_FULL_MACS, MIN_SAVING, Plan
from .runtime import FxCache, Window
from .table import (
    OPERATIONS,
    Operation,
    WindowRule,
    register_bound,
    register_interval,
    register_operation,
)

__all__ = ["MIN_FULL_MACS", "MIN_SAVING", "OPERATIONS", "FxCache", "FxIncrementalForward",
           "FxUnsupportedError", "Operation", "Plan", "TracedGraph", "Window", "WindowRule",
           "describe", "fx_incremental_forward", "register_bound", "register_interval",
           "register_operation"]
