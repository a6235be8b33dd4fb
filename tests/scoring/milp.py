"""The exact minimum margin of a small ReLU network over one pixel's color box, as a
mixed-integer linear program solved by SciPy's ``milp`` (HiGHS): the reference the
verifier's bounds are tested against.

Every value is an affine expression ``A v + b`` of the program's variables ``v`` (the
pixel's colors, then one variable per unstable ReLU or max-pool output). Affine
operations compose exactly (their matrices read off the operation itself on basis
vectors); an unstable ReLU ``y = max(0, x)`` with ``x`` in ``[l, u]`` gets the exact
big-M encoding (``y >= x``, ``y >= 0``, ``y <= x - l (1 - z)``, ``y <= u z``, ``z``
binary), a max pool one binary per candidate that can be the largest.
"""

from __future__ import annotations

import operator

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array, csr_array, vstack
from torch import fx, nn

AFFINE_MODULES = (nn.Conv2d, nn.BatchNorm2d, nn.Linear, nn.Flatten, nn.AvgPool2d,
                  nn.AdaptiveAvgPool2d, nn.Identity)
AFFINE_FUNCTIONS = (operator.add, operator.sub, torch.add, torch.flatten, torch.cat)


class Program:
    """Variables with bounds, integrality and linear constraints."""

    def __init__(self, lower: np.ndarray, upper: np.ndarray) -> None:
        self.lower, self.upper = list(lower), list(upper)
        self.integer = [0] * len(lower)
        self.rows: list[tuple[dict[int, float], float, float]] = []

    def add(self, lower: float, upper: float, integer: bool = False) -> int:
        self.lower.append(lower)
        self.upper.append(upper)
        self.integer.append(int(integer))
        return len(self.lower) - 1

    def constrain(self, coefficients: dict[int, float], low: float, high: float) -> None:
        self.rows.append((coefficients, low, high))

    def interval(self, a: csr_array, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of ``a v + b`` from the variables' bounds (sound, not tight)."""
        lo, hi = np.array(self.lower), np.array(self.upper)
        pos, neg = a.maximum(0), a.minimum(0)
        return pos @ lo + neg @ hi + b, pos @ hi + neg @ lo + b

    def minimise(self, a: np.ndarray, b: float) -> float:
        n = len(self.lower)
        c = np.zeros(n)
        c[:a.shape[0]] = a
        constraints = []
        if self.rows:
            data, rows, cols, lo, hi = [], [], [], [], []
            for i, (coefficients, low, high) in enumerate(self.rows):
                for j, v in coefficients.items():
                    rows.append(i)
                    cols.append(j)
                    data.append(v)
                lo.append(low)
                hi.append(high)
            matrix = coo_array((data, (rows, cols)), shape=(len(self.rows), n)).tocsr()
            constraints.append(LinearConstraint(matrix, lo, hi))
        result = milp(c, constraints=constraints, integrality=np.array(self.integer),
                      bounds=Bounds(np.array(self.lower), np.array(self.upper)),
                      options={"mip_rel_gap": 0.0, "presolve": True})
        assert result.success, result.message
        return float(result.fun) + b


def _row(a: csr_array, i: int) -> dict[int, float]:
    """Row ``i`` of a sparse matrix as ``{column: value}``."""
    start, end = a.indptr[i], a.indptr[i + 1]
    return {int(j): float(v) for j, v in zip(a.indices[start:end], a.data[start:end],
                                               strict=True)}


def _expression_matrix(a: csr_array, n: int) -> csr_array:
    if a.shape[1] < n:
        a = csr_array((a.data, a.indices, a.indptr), shape=(a.shape[0], n))
    return a


class Encoder:
    """Encodes a traced float64 network with one pixel's colors free in ``[lo, hi]``."""

    def __init__(self, model: nn.Module, image: torch.Tensor, y: int, x: int,
                 lo: np.ndarray, hi: np.ndarray) -> None:
        self.model = model.double().eval()
        self.graph = fx.symbolic_trace(self.model)
        self.modules = dict(self.graph.named_modules())
        self.image, self.y, self.x = image.double(), y, x
        self.program = Program(lo, hi)
        self.channels = image.shape[1]

    # expressions: (matrix [n_out, n_vars] csr, offset [n_out], shape)
    def _input(self):
        image = self.image[0].clone()
        shape = image.shape
        image[:, self.y, self.x] = 0
        offset = image.flatten().numpy()
        rows = [c * shape[1] * shape[2] + self.y * shape[2] + self.x
                for c in range(self.channels)]
        a = coo_array((np.ones(self.channels), (rows, range(self.channels))),
                      shape=(offset.size, self.channels)).tocsr()
        return a, offset, tuple(shape)

    def _affine_map(self, call, shapes):
        """The matrix and offset of ``call`` (affine) on inputs of ``shapes``."""
        sizes = [int(np.prod(s)) for s in shapes]
        with torch.no_grad():
            zero = [torch.zeros(1, *s, dtype=torch.float64) for s in shapes]
            base = call(*zero)[0]
            out_shape = tuple(base.shape)
            blocks = []
            for k, (s, size) in enumerate(zip(shapes, sizes, strict=True)):
                eye = torch.eye(size, dtype=torch.float64).view(size, *s)
                args = [torch.zeros(size, *t, dtype=torch.float64) for t in shapes]
                args[k] = eye
                columns = (call(*args).reshape(size, -1) - base.flatten()).T
                blocks.append(csr_array(columns.numpy()))
        return blocks, base.flatten().numpy(), out_shape

    def encode(self):
        values = {}
        for node in self.graph.graph.nodes:
            if node.op == "placeholder":
                values[node] = self._input()
            elif node.op == "get_attr":
                target = self.graph
                for part in node.target.split("."):
                    target = getattr(target, part)
                values[node] = target
            elif node.op == "output":
                return values[node.args[0]]
            else:
                values[node] = self._node(node, values)
        raise AssertionError("no output")

    def _node(self, node, values):
        module = self.modules.get(node.target) if node.op == "call_module" else None
        inputs = [n for n in node.all_input_nodes if isinstance(values[n], tuple)]
        if isinstance(module, nn.ReLU) or node.target in (torch.relu, F.relu):
            return self._relu(values[inputs[0]])
        if isinstance(module, nn.MaxPool2d):
            return self._max_pool(values[inputs[0]], module)
        if node.op == "call_method" and node.target in ("flatten", "view"):
            a, b, shape = values[inputs[0]]
            return a, b, (int(np.prod(shape)),)
        if isinstance(module, AFFINE_MODULES) or node.target in AFFINE_FUNCTIONS:
            return self._affine(node, values, inputs)
        raise NotImplementedError(f"milp encoder: {node.format_node()}")

    def _affine(self, node, values, inputs):
        def call(*tensors):
            mapping = dict(zip(inputs, tensors, strict=True))

            def value(n):
                return mapping[n] if n in mapping else values[n]

            fn = (self.modules[node.target] if node.op == "call_module" else
                  (lambda t, *a, **k: getattr(t, node.target)(*a, **k))
                  if node.op == "call_method" else node.target)
            return fn(*fx.node.map_arg(node.args, value), **fx.node.map_arg(node.kwargs, value))

        shapes = [values[n][2] for n in inputs]
        blocks, offset, out_shape = self._affine_map(call, shapes)
        n = len(self.program.lower)
        a = None
        b = offset.copy()
        for block, source in zip(blocks, inputs, strict=True):
            sa, sb, _ = values[source]
            term = block @ _expression_matrix(sa, n)
            a = term if a is None else a + term
            b = b + block @ sb
        return csr_array(a), b, out_shape

    def _relu(self, value):
        a, b, shape = value
        n = len(self.program.lower)
        a = _expression_matrix(a, n)
        low, high = self.program.interval(a, b)
        rows, cols, data, offset = [], [], [], np.zeros(b.size)
        for i in range(b.size):
            if high[i] <= 0:
                continue
            if low[i] >= 0:
                for j, v in _row(a, i).items():
                    rows.append(i)
                    cols.append(j)
                    data.append(v)
                offset[i] = b[i]
                continue
            out = self.program.add(0.0, float(high[i]))
            z = self.program.add(0.0, 1.0, integer=True)
            expr = _row(a, i)
            # y - x >= 0 ; y - x - l z <= -l ; y - u z <= 0
            self.program.constrain({out: 1.0, **{j: -v for j, v in expr.items()}}, b[i], np.inf)
            self.program.constrain({out: 1.0, **{j: -v for j, v in expr.items()},
                                    z: -float(low[i])}, -np.inf, b[i] - float(low[i]))
            self.program.constrain({out: 1.0, z: -float(high[i])}, -np.inf, 0.0)
            rows.append(i)
            cols.append(out)
            data.append(1.0)
        n = len(self.program.lower)
        return coo_array((data, (rows, cols)), shape=(b.size, n)).tocsr(), offset, shape

    def _max_pool(self, value, module):
        a, b, shape = value
        n = len(self.program.lower)
        a = _expression_matrix(a, n)
        channels, height, width = shape
        index = torch.arange(channels * height * width, dtype=torch.float64).view(
            1, channels, height, width)
        k, s, p = module.kernel_size, module.stride, module.padding
        if p:
            raise NotImplementedError("padded max pooling")
        patches = F.unfold(index, k, stride=s)  # [1, C*k*k, L]
        out_h = (height - (k if isinstance(k, int) else k[0])) // (s if isinstance(s, int)
                                                                   else s[0]) + 1
        out_w = (width - (k if isinstance(k, int) else k[1])) // (s if isinstance(s, int)
                                                                  else s[1]) + 1
        kk = patches.shape[1] // channels
        patches = patches.view(channels, kk, -1).long().numpy()
        low, high = self.program.interval(a, b)
        rows, cols, data, offset = [], [], [], np.zeros(channels * out_h * out_w)
        for c in range(channels):
            for position in range(patches.shape[2]):
                i = c * patches.shape[2] + position
                candidates = patches[c, :, position]
                best_low = low[candidates].max()
                alive = [int(j) for j in candidates if high[j] >= best_low]
                if len(alive) == 1:
                    for j, v in _row(a, alive[0]).items():
                        rows.append(i)
                        cols.append(j)
                        data.append(v)
                    offset[i] = b[alive[0]]
                    continue
                top = float(max(high[j] for j in alive))
                out = self.program.add(float(best_low), top)
                binaries = [self.program.add(0.0, 1.0, integer=True) for _ in alive]
                self.program.constrain(dict.fromkeys(binaries, 1.0), 1.0, 1.0)
                for j, z in zip(alive, binaries, strict=True):
                    expr = _row(a, j)
                    # y >= x_j ; y <= x_j + (top - l_j)(1 - z)
                    self.program.constrain({out: 1.0, **{q: -v for q, v in expr.items()}},
                                           b[j], np.inf)
                    big = top - float(low[j])
                    self.program.constrain({out: 1.0, **{q: -v for q, v in expr.items()},
                                            z: big}, -np.inf, b[j] + big)
                rows.append(i)
                cols.append(out)
                data.append(1.0)
        n = len(self.program.lower)
        return (coo_array((data, (rows, cols)), shape=(offset.size, n)).tocsr(), offset,
                (channels, out_h, out_w))


def exact_margins(model: nn.Module, image: torch.Tensor, y: int, x: int, lo, hi,
                  label: int) -> np.ndarray:
    """The exact minimum of each margin ``z_label - z_j`` over the box (``inf`` at the
    label).

    Args:
        model: a network of convolutions, BatchNorm, ReLU, max pooling (unpadded),
            average pooling, residual additions, concatenations, flatten and linear layers.
        image: float ``[1, C, H, W]``.
        y, x: the pixel.
        lo, hi: the box, per channel.
        label: the class.

    Returns:
        float64 ``[K]``.
    """
    encoder = Encoder(model, image, y, x, np.asarray(lo, dtype=float),
                      np.asarray(hi, dtype=float))
    a, b, _ = encoder.encode()
    n = len(encoder.program.lower)
    a = _expression_matrix(a, n).toarray()
    out = np.full(b.size, np.inf)
    for j in range(b.size):
        if j != label:
            out[j] = encoder.program.minimise(a[label] - a[j], b[label] - b[j])
    return out


__all__ = ["exact_margins", "vstack"]
