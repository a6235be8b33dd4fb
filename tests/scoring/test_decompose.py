"""The verifier's copies run divisions by varying values, LayerNorm, GroupNorm and
InstanceNorm, softmax, attention, products of matrices and maxima as the operations
they are made of: the same function as the model, no float32 error proved through a
normalisation or a softmax the model computes with its own kernel, and what cannot be
rewritten is named."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_bounds import (
    Attention,
    Einsums,
    Encoder,
    Exponentials,
    Maxima,
    Normalised,
    Normed,
    Norms,
    Padded,
    Pieces,
    Pooled,
    Resampled,
    SequenceFirst,
    TimmAttention,
    TimmFused,
    Transformer,
    box_margins,
    randomised,
    sampled_margins,
)
from torch import fx, nn

from pixelprior.scoring.cone.bounds import BoundEngine, BoundUnsupportedError
from pixelprior.scoring.cone.decompose import DECOMPOSED
from pixelprior.scoring.cone.graph import TracedGraph
from pixelprior.scoring.cone.rounding import rounding_error
from pixelprior.scoring.cone.screen import IntervalScreen, IntervalUnsupportedError


def names_run(graph: TracedGraph) -> set[str]:
    return {r.operation.name for r in map(graph.resolve, graph.nodes) if r.operation}


@pytest.mark.parametrize("net", [Normed, Normalised, Attention, Encoder, Pooled,
                                 Exponentials, TimmAttention, TimmFused, Norms, Pieces,
                                 Transformer, Maxima, Padded, Einsums,
                                 SequenceFirst, Resampled])
def test_the_decomposed_copy_computes_the_models_function(net):
    """In float64 the rewritten graph's scores are the model's to rounding, on batches
    of 1 and 3; no normalisation, softmax, attention, product of matrices, maximum and
    no division by a varying value is left."""
    model = randomised(net(), 4).double()
    graph = TracedGraph(model, fold=False, float_as=torch.float64, decompose=True)
    assert not names_run(graph) & {"layer_norm", "group_norm", "softmax", "log_softmax",
                                   "attention", "matmul", "maximum", "minimum",
                                   "multihead_attention", "norm", "normalize"}
    assert not any(r.operation is not None and r.operation.name == "permute"
                   and isinstance(r.params, str) for n, r in zip(
                       graph.nodes, map(graph.resolve, graph.nodes), strict=True)
                   if n not in graph.statics)
    assert not any(r.operation is not None and r.operation.name == "div"
                   and isinstance(n.args[1], fx.Node) and n.args[1] not in graph.statics
                   for n, r in zip(graph.nodes, map(graph.resolve, graph.nodes),
                                   strict=True))
    for batch in (1, 3):
        images = torch.rand(batch, 3, 8, 8, dtype=torch.float64)
        with torch.no_grad():
            torch.testing.assert_close(graph.run(images), model(images), rtol=1e-12,
                                       atol=1e-12)


@pytest.mark.parametrize("norm", [nn.GroupNorm(4, 8), nn.GroupNorm(1, 8), nn.GroupNorm(8, 8),
                                  nn.InstanceNorm2d(8), nn.LayerNorm([8, 5, 5]),
                                  nn.LayerNorm(5, elementwise_affine=False)],
                         ids=["groups", "one-group", "per-channel", "instance", "layer-map",
                              "layer-rows"])
def test_each_normalisation_is_rewritten_to_its_own_values(norm):
    """Each form as PyTorch computes it (groups of 2, 1 and 8 channels, without an
    affine, over the whole map or over the last axis alone)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), norm).double().eval()
    with torch.no_grad():
        for parameter in norm.parameters():
            parameter.normal_(1.0, 0.5)
    graph = TracedGraph(model, fold=False, float_as=torch.float64, decompose=True)
    assert any(DECOMPOSED in n.meta for n in graph.nodes)
    images = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(graph.run(images), model(images), rtol=1e-12, atol=1e-12)


def test_no_float32_error_is_proved_through_a_fused_normalisation():
    """The model's float32 LayerNorm and GroupNorm kernels compute their moments their
    own way (Welford's, fused), not as the decomposed operations: the screen's proved
    error is ``inf`` past them, so the verifier's tolerance is the estimate there."""
    lower, error = screened_at_the_image(randomised(Normed(), 1), 1)
    assert torch.isinf(error).all()
    assert torch.isfinite(lower).all()  # the real bounds stand


def screened_at_the_image(model: nn.Module, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The screen's lower bounds and proved float32 errors of the margins at pixel (2, 2)
    of a random 8 × 8 image, its color unchanged (the label's own left out)."""
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    label = int(model(image).argmax())
    lo = image[0, :, 2, 2].double()[None]
    bounds = IntervalScreen(model).bounds(image, torch.tensor([18]), lo, lo, label,
                                          2.0**-24)
    others = [k for k in range(bounds.lower.shape[1]) if k != label]
    return bounds.lower[0, others], bounds.error[0, others]


def test_a_functional_group_norm_of_unknown_channels_is_named():
    """``F.group_norm`` without a weight gives no channel count to sum the groups
    over: it is left as it is, and the plan names it."""
    class Unweighted(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return F.group_norm(self.conv(x), 2).mean((2, 3))

    with pytest.raises(BoundUnsupportedError, match="group_norm"):
        BoundEngine(Unweighted().eval()).plan(torch.rand(1, 3, 6, 6))


def test_a_value_times_itself_is_bounded_as_a_square():
    """``h * h`` runs as ``torch.square(h)``, bounded below by 0: ``(h * h + 0.01) **
    -0.5`` is bounded on a box, where DeepZ's product of two factors dipped below 0 and
    left the power's range outside its domain (a review: ``-inf``); the bounds hold the
    sampled margins."""
    class Inverse(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 2, 3, padding=1), nn.Linear(2, 3)

        def forward(self, x):
            h = self.conv(x)
            return self.fc(((h * h + 0.01) ** -0.5).mean((2, 3)))

    model = randomised(Inverse(), 0)
    graph = TracedGraph(model, fold=False, float_as=torch.float64, decompose=True)
    assert "square" in names_run(graph) and "mul" not in names_run(graph)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    label = int(model(image).argmax())
    lo, hi = [0.3, 0.4, 0.5], [0.35, 0.45, 0.55]
    bounds = box_margins(BoundEngine(model), image, 4, 4, lo, hi, label)
    sampled = sampled_margins(model, image, 4, 4, lo, hi, label, count=400)
    others = [k for k in range(3) if k != label]
    assert torch.isfinite(bounds.lower[0, others]).all()
    assert (bounds.lower[0, others] <= sampled[:, others].min(0).values + 1e-9).all()


def test_a_group_norm_of_a_linear_layers_output_is_rewritten():
    """``nn.GroupNorm`` on ``[N, C]`` (after a linear layer), as PyTorch allows: the
    same function (a review: ``flatten(2)`` of a rank-2 value raised ``IndexError``)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 6), nn.GroupNorm(3, 6)).double().eval()
    graph = TracedGraph(model, fold=False, float_as=torch.float64, decompose=True)
    images = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(graph.run(images), model(images), rtol=1e-12, atol=1e-12)


def test_an_instance_norm_estimates_the_channels_the_value_has():
    """``nn.InstanceNorm2d(4)`` without an affine normalises each of the 6 channels it is
    given (PyTorch warns): the first-order float32 estimate takes a group per channel
    the value has (a review: it reshaped to 4 and raised)."""
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.InstanceNorm2d(4),
                          nn.Flatten(), nn.Linear(6 * 35, 3)).eval()
    image = torch.rand(1, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    label = model(image).argmax(1)
    with pytest.warns(UserWarning):
        bound = rounding_error(model, image, label)
    assert torch.isfinite(bound).all() and (bound > 0).all()


@pytest.mark.parametrize("forward, message", [
    (lambda h: F.layer_norm(h, h.shape[-1:]), "layer_norm .its settings are computed"),
    (lambda h: F.group_norm(h, h.shape[1] // 2, torch.ones(4)),
     "group_norm .its settings are computed"),
], ids=["layer", "group"])
def test_a_normalisation_of_sizes_computed_in_the_model_is_named(forward, message):
    """Sizes read from the value (``h.shape[-1:]``) are no settings the rewrite can
    read without the images' shape: an engine made without it names the normalisation
    and says to give the shape (a review: the trace raised ``TypeError``, and the
    verifier said torch.fx could not trace it; made for a shape, such settings are
    bounded: ``test_computed_settings.py``)."""
    class Sized(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return forward(self.conv(x)).mean((2, 3))

    with pytest.raises(BoundUnsupportedError, match=message):
        BoundEngine(Sized().eval()).plan(torch.rand(1, 3, 6, 6))


class Matrices(nn.Module):
    """``a @ b`` in each form it is rewritten in: a varying value by a 2-D constant from
    the right and from the left, by a constant of three axes, by another varying value;
    ``torch.bmm`` and ``torch.matmul``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.right, self.left = nn.Parameter(torch.randn(5, 3)), nn.Parameter(torch.randn(2, 4))
        self.heads = nn.Parameter(torch.randn(4, 5, 5))
        self.fc = nn.Linear(226, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)  # [N, 4, 5, 5]
        a = (h @ self.right).flatten(1)
        b = (self.left @ h.flatten(2)).flatten(1)
        c = torch.matmul(h, self.heads).flatten(1)
        d = torch.bmm(h.flatten(2), h.flatten(2).transpose(1, 2)).flatten(1)
        return self.fc(torch.cat([a, b, c, d], 1))


@pytest.mark.parametrize("forward", [
    lambda h: F.softmax(h, dim=1), lambda h: h.log_softmax(-1), nn.Softmax(2),
    lambda h: torch.maximum(h, h.mean(1, keepdim=True)), lambda h: torch.minimum(h, 0.5 * h),
    lambda h: F.scaled_dot_product_attention(h, h, h),
    lambda h: F.scaled_dot_product_attention(h, h, h, scale=0.3),
    lambda h: F.normalize(h, dim=1), lambda h: F.normalize(h, p=1, dim=(2, 3), eps=0.5),
    lambda h: torch.norm(h, dim=1, keepdim=True), lambda h: h.norm(p=1, dim=-1),
    lambda h: torch.linalg.vector_norm(h, dim=(1, 2)),
    lambda h: torch.linalg.norm(h, "fro", dim=(2, 3)), lambda h: abs(h) * h.abs(),
    lambda h: (lambda t: t[0] + t[1])(h.reshape(h.shape[0], 2, 2, 25).permute(1, 0, 3, 2)
                                      .unbind(0)),
    lambda h: (lambda t: t[0] * t[-1])(h.permute(2, 0, 1, 3)),
    lambda h: torch.unbind(h.permute(3, 0, 2, 1), dim=0)[1],
    lambda h: (lambda t: t[1] - t[0])(h.chunk(2, dim=1)),
    lambda h: (lambda t: t[0].sum(1) * t[1][:, 0])(torch.split(h, [1, 3], 1)),
    lambda h: (lambda t: t[-1] * t[1])(h.unbind(-1)),
    lambda h: torch.stack([h, 2 * h], -2), lambda h: torch.stack((h[:, 0], h[:, 1]), dim=1),
    lambda h: torch.permute(input=h, dims=(1, 0, 2, 3))[1],
    lambda h: torch.unbind(input=h.permute(2, 0, 1, 3), dim=0)[3],
    lambda h: torch.linalg.vector_norm(x=h, dim=1) + torch.chunk(input=h, chunks=2, dim=1)[1],
    lambda h: F.interpolate(h, scale_factor=3.0, mode="nearest-exact") + 1,
    lambda h: F.interpolate(h, scale_factor=(2, 1)).repeat_interleave(2, -3),
    lambda h: F.interpolate(h, scale_factor=2, mode="bilinear"),
    lambda h: F.interpolate(h, size=(7, 9), mode="bilinear", align_corners=True),
    lambda h: F.interpolate(h, size=(8, 6), mode="bicubic"),
    lambda h: F.interpolate(h, size=(7, 3)), lambda h: F.interpolate(h, scale_factor=1.5),
    lambda h: F.interpolate(h, scale_factor=0.5, mode="bilinear"),
    lambda h: F.interpolate(h, size=9, mode="bilinear", align_corners=True),
    lambda h: F.interpolate(h.flatten(2), scale_factor=2.5, mode="linear"),
    lambda h: F.interpolate(h.flatten(2), size=11),
    lambda h: F.interpolate(h.unsqueeze(2), size=(2, 7, 6), mode="trilinear"),
    lambda h: h.var((2, 3)) + torch.var(h, (2, 3), unbiased=False),
    lambda h: h.std(1, keepdim=True) * h + torch.std(h, dim=(2, 3), keepdim=True),
    lambda h: h.var(2, correction=0) + h.var(-1, True, True).squeeze(-1),
    lambda h: torch.logsumexp(h, (2, 3)) + h.logsumexp(1, keepdim=True).mean((1, 2, 3))[:, None],
    lambda h: (torch.narrow(h, 3, 1, 3).narrow(-2, 2, 3)
               + h.narrow(-2, 2, 3).narrow(1, 0, 4)[..., :3]
               + h.narrow(-1, -4, 3).narrow(2, -3, 3) + h.narrow(3, -3, 3)[:, :, -3:])],
    ids=["softmax", "log_softmax", "module", "maximum", "minimum", "attention", "scale",
         "normalize", "normalize-1", "norm", "norm-1", "vector_norm", "linalg_norm", "abs",
         "unbind", "items", "unbind-permuted", "chunk", "split", "unbind-last", "stack",
         "stack-1", "permute-keywords", "unbind-keywords", "norm-keywords", "interpolate",
         "upsample", "bilinear", "bilinear-corners", "bicubic", "nearest-sized",
         "nearest-fraction", "bilinear-down", "bilinear-size", "linear", "linear-sized",
         "trilinear", "var", "std", "var-correction", "logsumexp", "narrow"])
def test_each_rewritten_operation_computes_its_own_values(forward):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.forward_ = nn.Conv2d(3, 4, 3, padding=1), forward

        def forward(self, x):
            return self.forward_(self.conv(x))

    model = Net().double().eval()
    graph = TracedGraph(model, fold=False, float_as=torch.float64, decompose=True)
    assert not names_run(graph) & {"softmax", "log_softmax", "attention", "maximum",
                                   "minimum", "matmul", "norm", "normalize"}
    assert not any(n.target in ("chunk", "split", "unbind", torch.stack, torch.unbind,
                                F.interpolate, "narrow", torch.narrow)
                   or isinstance(graph.modules.get(n.target),
                                                             nn.Upsample)
                   for n in graph.nodes)
    assert not any(graph.resolve(n).operation is not None
                   and isinstance(graph.resolve(n).params, str)  # (a permutation's refusal)
                   for n in graph.nodes if n not in graph.sizes)
    images = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(graph.run(images), model(images), rtol=1e-12, atol=1e-12)


def test_each_product_of_matrices_is_rewritten_to_its_own_values():
    model = Matrices().double().eval()
    graph = TracedGraph(model, fold=False, float_as=torch.float64, decompose=True)
    assert "matmul" not in names_run(graph) and "linear" in names_run(graph)
    images = torch.rand(3, 3, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(graph.run(images), model(images), rtol=1e-12, atol=1e-12)
    model = randomised(Matrices(), 2)
    image = torch.rand(1, 3, 5, 5, generator=torch.Generator().manual_seed(2))
    lo, hi = [0.2, 0.4, 0.1], [0.25, 0.45, 0.15]
    bounds = box_margins(BoundEngine(model), image, 1, 3, lo, hi, 0)
    sampled = sampled_margins(model, image, 1, 3, lo, hi, 0)
    assert (bounds.lower[0, 1:] <= sampled.min(0).values[1:] + 1e-9).all()
    assert torch.isfinite(bounds.lower[0, 1:]).all()


@pytest.mark.parametrize("forward, message", [
    (lambda h: h.flatten(1) @ h.flatten(1).transpose(0, 1), "transpose of the batch axis"),
    (lambda h: torch.matmul(h.mean((2, 3)), h.mean((2, 3)).transpose(1, 0)),
     "transpose of the batch axis"),
    (lambda h: h.mean((2, 3)) @ h.flatten(2), "broadcasts"),
    (lambda h: F.scaled_dot_product_attention(h, h, h, is_causal=True), "causal"),
    (lambda h: F.softmax(h, 1, dtype=torch.float64), "another dtype"),
    (lambda h: torch.norm(h) * h, "every axis"), (lambda h: h.norm(p=3, dim=1), "order 3"),
    (lambda h: torch.linalg.vector_norm(h, dim=0) * h, "the batch axis"),
    (lambda h: torch.linalg.norm(h, 2, dim=(2, 3)), "matrix norm"),
    (lambda h: torch.linalg.vector_norm(h, dim=1, dtype=torch.float64), "another dtype"),
    (lambda h: h.permute(1, 2, 0, 3)[0], "move the batch axis"),
    (lambda h: h.chunk(2, dim=-4)[0], "splits the batch axis"),
    (lambda h: h.unbind(0)[0] * h, "unbind"),
    (lambda h: h.permute(1, 0, 2, 3).unbind(0)[True], "move the batch axis"),
    (lambda h: torch.stack([h, h], 0), "stack"),
    (lambda h: torch.norm(h, dim=h.dim() - 1), "computed in the model from a value.s size"),
    (lambda h: F.interpolate(h, scale_factor=2, mode="area"), "mode='area'"),
    (lambda h: F.interpolate(h, scale_factor=0.5, mode="bilinear", antialias=True),
     "antialias"),
    (lambda h: F.interpolate(h, size=h.shape[-1] * 2), "computed in the model from a value.s size"),
    (lambda h: h.repeat_interleave(2, dim=-4), "repeats the batch axis"),
    (lambda h: h.var() * h, "every axis"), (lambda h: h.std(0) * h, "batch axis"),
    (lambda h: h.var(-4) * h, "batch"),
    (lambda h: h.flatten(1).var(-2)[:, None, None, None] * h, "variance.*over the batch axis"),
    (lambda h: torch.logsumexp(h.flatten(1), -2)[:, None, None, None] * h,
     "logsumexp over the batch axis"),
    (lambda h: torch.logsumexp(h, 0) * h, "batch axis"),
    (lambda h: torch.roll(h, 1) * h, "roll without dims"),
    (lambda h: h.flip(0), "flip of the batch axis"), (lambda h: h.flip(-4), "flips the batch"),
    (lambda h: torch.roll(h, 2, -4), "rolls the batch"),
    (lambda h: F.pixel_shuffle(h.flatten(2), 1), "shuffles the batch axis"),
    (lambda h: F.celu(h, -0.5), "CELU with alpha")],
    ids=["across-images", "matmul-2d", "matrix-by-batch", "causal", "dtype", "norm-whole",
         "norm-order", "norm-batch", "matrix-norm", "norm-dtype",
         "batch-third", "chunk-batch", "unbind-batch", "unbind-bool", "stack-batch",
         "norm-computed-dim", "area", "antialias", "computed-size", "repeat-batch",
         "var-whole", "std-batch", "var-negative", "var-negative-2d", "logsumexp-negative-2d",
         "logsumexp-batch", "roll-flat", "flip-batch",
         "flip-negative", "roll-negative", "shuffle-3d", "celu-negative"])
def test_what_would_mix_images_or_is_not_plain_is_named(forward, message):
    """A product of matrices of two varying values of two axes (one image's row times
    the batch: across images), causal attention and a softmax in another dtype are
    refused at the plan, naming what to change."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.forward_ = nn.Conv2d(3, 4, 3, padding=1), forward

        def forward(self, x):
            return self.forward_(self.conv(x)).flatten(1)[:, :2]

    with pytest.raises(BoundUnsupportedError, match=message):
        BoundEngine(Net().eval()).plan(torch.rand(2, 3, 5, 5))


def test_maxima_over_axes_run_as_amax():
    """Every maximum and minimum over axes of :class:`Maxima` runs as the one rule (six
    of them: two adaptive poolings, ``amax`` of ``max(dim)`` twice, of ``min(dim)`` and
    of ``amin``; the channels' ``amax`` feeds ``torch.max(a, b)``, a ``maximum``)."""
    graph = TracedGraph(Maxima().double().eval(), fold=False, float_as=torch.float64,
                        decompose=True)
    runs = [r.operation.name for r in map(graph.resolve, graph.nodes) if r.operation]
    assert runs.count("max_over") == 7
    assert not any(n.target in (torch.max, torch.min, "max", "min", "amin", torch.amin)
                   for n in graph.nodes)


class _Extreme(nn.Module):
    def __init__(self, forward) -> None:
        super().__init__()
        self.conv, self.run = nn.Conv2d(3, 4, 3, padding=1), forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(self.conv(x))


@pytest.mark.parametrize("forward, message", [
    (lambda h: h.unfold(0, 1, 1).flatten(1), "an unfold of the batch axis"),
    (lambda h: h.unfold(-4, 1, 1).flatten(1), "it unfolds the batch axis"),
    (lambda h: F.unfold(h.mean(1), 2).flatten(1), r"it unfolds the batch axis of a value of "
     r"shape \(1, 6, 6\)"),
    (lambda h: h.flatten(1).max(1)[1].float()[:, None], r"Tensor.max\(\)"),
    (lambda h: h.amax((0, 2, 3))[None], "a maximum over the batch axis"),
    (lambda h: h.amax((-4, 2, 3))[None], "it computes across the batch axis"),
    (lambda h: h.amax(), "a maximum over every axis"),
    (lambda h: F.adaptive_max_pool2d(h, 2, return_indices=True)[0].flatten(1),
     "adaptive_max_pool2d_with_indices"),
    (lambda h: h.max(), r"amax of what the verifier writes x.max\(\) as \(a maximum "
     "over every axis"),
    (lambda h: torch.min(h), r"x.min\(\) as \(a maximum over every axis"),
], ids=["unfold-batch", "unfold-batch-negative", "im2col-of-3-axes",
        "indices", "batch", "batch-negative", "every-axis", "adaptive-indices", "whole",
         "whole-minimum"])
def test_maxima_the_verifier_cannot_bound_are_named(forward, message):
    """An argmax (indices used), a maximum reaching the batch axis (by 0, or by a
    negative axis only the shape resolves), over every axis, and adaptive pooling with
    its indices are refused in one line naming the operation."""
    model = _Extreme(forward).eval()
    image = torch.rand(1, 3, 6, 6)
    with pytest.raises(BoundUnsupportedError, match=message):
        BoundEngine(model).plan(image)


@pytest.mark.parametrize("forward, message", [
    (lambda h: F.pad(h, (0, 0, 0, 0, 0, 0, 1, 0)).flatten(1), "it pads the batch axis"),
    (lambda h: F.pad(h, (0, 0, 0, 0, 0, 0, 1, -1)).flatten(1), "it pads the batch axis"),
    (lambda h: F.pad(h, (h.shape[3], 0)).flatten(1), "computed in the model from a value.s size"),
], ids=["batch", "batch-shifted", "computed"])
def test_paddings_the_verifier_cannot_bound_are_named(forward, message):
    """A padding of the batch axis (it adds images, or shifts them keeping one image's
    count: a review) and one by sizes the model computes are refused in one line."""
    with pytest.raises(BoundUnsupportedError, match=message):
        BoundEngine(_Extreme(forward).eval()).plan(torch.rand(1, 3, 6, 6))


def test_no_float32_error_is_proved_through_a_softmax():
    """The model's softmax kernel subtracts the largest score and fuses: no float32
    error is proved through the rewritten form (the estimate is the tolerance); a
    product of matrices and a maximum are proved through (their kernels round no more
    than the rewritten forms are proved to)."""
    for net, proved in ((Pooled, False), (Exponentials, True), (Norms, False),
                        (Maxima, True), (Padded, True)):
        lower, error = screened_at_the_image(randomised(net(), 1), 1)
        assert bool(torch.isfinite(error).all()) == proved, net
        assert torch.isfinite(lower).all()


@pytest.mark.parametrize("net", [Attention, Encoder, Pooled, TimmAttention, TimmFused, Norms,
                                 Transformer, SequenceFirst, Resampled])
def test_the_estimate_covers_float32_attention(net):
    """The first-order estimate (the tolerance where no float32 error is proved) covers
    the float32 model's deviation from float64 at the image, on random attention nets."""
    for seed in range(4):
        model = randomised(net(), seed)
        images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
        labels = model(images).argmax(1)
        with torch.no_grad():
            single = model.float()(images)
            exact = net().double().eval()
            exact.load_state_dict(model.state_dict())
            exact = exact(images.double())
        own = single.gather(1, labels[:, None]).double() - single.double()
        real = exact.gather(1, labels[:, None]) - exact
        estimate = rounding_error(model, images, labels)
        assert ((own - real).abs().amax(1) <= estimate).all(), seed


class Tokens(nn.Module):
    """Class tokens concatenated before the patches' tokens: a constant expanded to the
    batch size (``token.expand(n, -1, -1)``), as vision transformers write it; a second
    token after them (``added``: the token expanded to every patch and added instead)."""

    def __init__(self, added: bool = False) -> None:
        super().__init__()
        self.added = added
        self.embed = nn.Conv2d(3, 4, 2, 2)
        self.token = nn.Parameter(torch.randn(1, 1, 4))
        self.last = nn.Parameter(torch.randn(1, 1, 4))
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)
        n = x.shape[0]
        if self.added:
            t = t + self.token.expand(n, t.shape[1], -1)
        t = torch.cat([self.token.expand(n, -1, -1), t, self.last.expand(n, 1, 4)], dim=1)
        return self.head(torch.relu(t).mean(1) + t[:, 0])


def test_a_class_token_is_placed_not_expanded_to_the_batch():
    """``torch.cat([token.expand(n, -1, -1), t], 1)`` reads the batch size for another
    use than a reshape, which the bounds (many boxes as the rows of one call) refuse:
    the verifier's copy places each part among zeros instead, the tokens unexpanded —
    the same values, bounds that hold; another use of the batch size stays refused."""
    model = randomised(Tokens(), 3)
    graph = TracedGraph(model.double(), fold=False, float_as=torch.float64, decompose=True)
    assert "placed" in names_run(graph) and "cat" not in names_run(graph)
    images = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(graph.run(images), model(images), rtol=1e-12, atol=1e-12)
    model = randomised(Tokens(), 3)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    lo, hi = [0.1, 0.5, 0.2], [0.6, 0.9, 0.4]
    label = int(model(image).argmax())
    bounds = box_margins(BoundEngine(model), image, 5, 2, lo, hi, label)
    screened = IntervalScreen(model).margins(image, torch.tensor([42]),
                                             torch.tensor([lo], dtype=torch.float64),
                                             torch.tensor([hi], dtype=torch.float64), label)
    sampled = sampled_margins(model, image, 5, 2, lo, hi, label).min(0).values
    others = [k for k in range(3) if k != label]
    assert (bounds.lower[0, others] <= sampled[others] + 1e-9).all()
    assert (screened[0, others] <= sampled[others] + 1e-9).all()
    assert torch.isfinite(bounds.lower[0, others]).all()
    with pytest.raises(BoundUnsupportedError, match="batch size"):
        BoundEngine(randomised(Tokens(added=True), 3)).prepare(image)


class Multihead(nn.Module):
    """``nn.MultiheadAttention`` over the pixels' colors, its first token's output the
    scores: the only operation that rounds."""

    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(3, 1, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.flatten(2).transpose(1, 2)
        return self.attention(t, t, t)[0][:, 0]


def test_the_estimate_counts_multihead_attention_at_its_output():
    """``nn.MultiheadAttention`` returns ``(output, weights)``: its rounding is counted
    at ``output[0]`` (the tuple is no tensor to count it at), so the estimate covers the
    float32 model's deviation where the attention is all that rounds."""
    for seed in range(4):
        model = randomised(Multihead(), seed)
        images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
        labels = model(images).argmax(1)
        with torch.no_grad():
            single = model(images)
            exact = Multihead().double().eval()
            exact.load_state_dict(model.state_dict())
            exact = exact(images.double())
        own = single.gather(1, labels[:, None]).double() - single.double()
        real = exact.gather(1, labels[:, None]) - exact
        seen = (own - real).abs().amax(1)
        assert (seen > 0).any()  # float32 rounds here: the check can fail
        assert (seen <= rounding_error(model, images, labels)).all(), seed


@pytest.mark.parametrize("attention, call, message", [
    (nn.MultiheadAttention(4, 2), lambda a, t: a(t, t, t)[0],
     r"multihead_attention with batch_first=False \(its tokens \[N, B, E\]"),
    (nn.MultiheadAttention(4, 2, batch_first=True),
     lambda a, t: a(t, t, t, attn_mask=torch.zeros(16, 16))[0], "a mask"),
    (nn.MultiheadAttention(4, 2, batch_first=True, add_bias_kv=True),
     lambda a, t: a(t, t, t)[0], "add_bias_kv"),
    (nn.MultiheadAttention(4, 2, batch_first=True),
     lambda a, t: a(t, t, t)[0] + a(t, t, t)[1].sum(-1, keepdim=True), "weights are used")],
    ids=["sequence-first-of-batch-first-tokens", "mask", "bias-kv", "weights"])
def test_multihead_attention_it_cannot_write_out_is_named(attention, call, message):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.patches, self.attention = nn.Conv2d(3, 4, 2, 2), attention
            self.head = nn.Linear(4, 3)

        def forward(self, x):
            t = self.patches(x).flatten(2).transpose(1, 2)
            return self.head(call(self.attention, t).mean(1))

    with pytest.raises(BoundUnsupportedError, match=message):
        BoundEngine(Net().eval()).plan(torch.rand(1, 3, 8, 8))
    with pytest.raises(IntervalUnsupportedError, match=message):  # the screen says why too
        IntervalScreen(Net().eval())


class Wide(nn.Module):
    """``nn.MultiheadAttention`` of width 2 whose keys and values are 2,048 wide (kdim,
    vdim): copies of the red channel, summed by the value projection with weights that
    cancel (a review's model)."""

    def __init__(self) -> None:
        super().__init__()
        self.lift = nn.Linear(3, 2048, bias=False)
        self.attention = nn.MultiheadAttention(2, 1, batch_first=True, kdim=2048, vdim=2048,
                                               bias=False)
        self.head = nn.Linear(2, 3)
        with torch.no_grad():
            self.lift.weight.zero_()
            self.lift.weight[:, 0] = 1
            self.attention.q_proj_weight.zero_()
            self.attention.k_proj_weight.zero_()
            self.attention.v_proj_weight.zero_()
            self.attention.v_proj_weight[0, :1024] = 1 / 3
            self.attention.v_proj_weight[0, 1024:] = -0.333
            self.attention.out_proj.weight.copy_(torch.eye(2))
            self.head.weight.copy_(torch.tensor([[1.0, 0], [0, 1], [0, 0]]))
            self.head.bias.copy_(torch.tensor([0.0, 0.0, -1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.flatten(2).transpose(1, 2)
        memory = self.lift(t)
        return self.head(self.attention(t[:, :, :2], memory, memory,
                                        need_weights=False)[0][:, 0])


def test_the_estimate_counts_a_projection_over_its_own_width():
    """A review: the key and value projections sum ``kdim``/``vdim`` terms, counted as
    ``E``'s (the measured float32 deviation 4 times the estimate); and the module's
    inputs are freed before its ``output[0]`` runs, so its rounding is computed where it
    runs."""
    model = Wide().eval()
    images = torch.stack([torch.full((3, 8, 8), v) for v in (0.3, 0.77, 1 / 3, 0.9)])
    with torch.no_grad():
        single = model(images).double()
        exact = Wide().double().eval()(images.double())
    labels = exact.argmax(1)
    seen = ((single.gather(1, labels[:, None]) - single)
            - (exact.gather(1, labels[:, None]) - exact)).abs().amax(1)
    assert (seen > 1e-5).all()  # float32 rounds the 2,048-term sums here
    assert (seen <= rounding_error(model, images, labels)).all()


def test_a_class_tokens_float32_error_is_proved():
    """A review: the placed token (a size node: placed by the patches' count) was taken
    for a constant computed in forward, so no float32 error was proved past it; it is
    an exact copy of the model's parameter."""
    _, error = screened_at_the_image(randomised(Tokens(), 3), 3)
    assert torch.isfinite(error).all()


def test_multihead_attention_of_a_vector_is_named_in_one_line():
    """``nn.MultiheadAttention`` given ``[B, E]`` (PyTorch: one sequence of ``B``
    tokens, across the batch) does not run as written out: named, not a raw error."""
    class Vector(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.attention = nn.MultiheadAttention(4, 2, batch_first=True)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            h = self.conv(x).mean((2, 3))
            return self.fc(self.attention(h, h, h)[0])

    with pytest.raises(BoundUnsupportedError, match="does not run on images of shape"):
        BoundEngine(Vector().eval()).plan(torch.rand(1, 3, 8, 8))


class _Masked(nn.Module):
    """A transformer encoder called with a key padding mask (kept whole: refused)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 2, 2)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(
            8, 2, 16, batch_first=True), 1, enable_nested_tensor=False)
        self.register_buffer("mask", torch.zeros(1, 16, dtype=torch.bool))
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)
        return self.head(self.encoder(t, src_key_padding_mask=self.mask).mean(1))


class _OwnLayer(nn.TransformerEncoderLayer):
    def _ff_block(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(torch.tanh(self.linear1(x)))


def test_a_transformer_encoder_is_written_out_as_its_modules():
    """``nn.TransformerEncoder`` and ``nn.TransformerEncoderLayer`` (leaves to torch.fx)
    run as the modules their forward calls, in every trace the engines make: equal to
    the model in float64; one with a mask, in training mode or with a forward of its
    own stays whole and is named."""
    from pixelprior.scoring.cone.rounding import traced_copy

    model = randomised(Transformer(), 2).double()
    for graph in (TracedGraph(model, fold=False, float_as=torch.float64),
                  TracedGraph(model, fold=False, float_as=torch.float64, decompose=True)):
        assert not any(isinstance(graph.modules.get(n.target), (
            nn.TransformerEncoder, nn.TransformerEncoderLayer)) for n in graph.nodes)
        images = torch.rand(3, 3, 8, 8, dtype=torch.float64)
        with torch.no_grad():
            torch.testing.assert_close(graph.run(images), model(images), rtol=1e-12,
                                       atol=1e-12)
    assert "multihead_attention" in names_run(TracedGraph(model, fold=False))
    assert not any(n.op == "call_module" and n.target == "encoder"
                   for n in traced_copy(model).graph.nodes)
    with pytest.raises(BoundUnsupportedError, match="no bound rule for TransformerEncoder"):
        BoundEngine(_Masked().eval()).plan(torch.rand(2, 3, 8, 8))
    with pytest.raises(BoundUnsupportedError, match="training mode"):
        BoundEngine(Transformer().train()).plan(torch.rand(2, 3, 8, 8))
    own = Transformer().eval()
    own.encoder.layers[1] = _OwnLayer(8, 2, 16, batch_first=True).eval()
    with pytest.raises(BoundUnsupportedError, match="no bound rule for TransformerEncoder"):
        BoundEngine(own).plan(torch.rand(2, 3, 8, 8))
    alone = Transformer().eval()
    alone.encoder = alone.encoder.layers[1]  # a layer called on its own
    assert "multihead_attention" in names_run(TracedGraph(alone, fold=False))

    class Keyword(Transformer):
        def forward(self, x):
            t = self.embed(x).flatten(2).transpose(1, 2)
            return self.head(self.encoder(src=t, mask=None).mean(1))

    assert "multihead_attention" in names_run(TracedGraph(Keyword().eval(), fold=False))


def test_a_norm_given_its_input_by_keyword_is_estimated_as_given_by_position():
    """The estimate read a keyword first argument as none and counted a norm as one
    rounding of its result (a review: ``torch.linalg.vector_norm(x=h)``)."""
    class Net(nn.Module):
        def __init__(self, keyword: bool):
            super().__init__()
            self.keyword, self.conv, self.fc = keyword, nn.Conv2d(3, 4, 3), nn.Linear(9, 3)

        def forward(self, x):
            h = self.conv(x)
            n = (torch.linalg.vector_norm(x=h, dim=1) if self.keyword
                 else torch.linalg.vector_norm(h, dim=1))
            return self.fc(n.flatten(1))

    images = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    estimates = []
    for keyword in (False, True):
        torch.manual_seed(0)
        model = Net(keyword).eval()
        estimates.append(rounding_error(model, images, model(images).argmax(1)))
    torch.testing.assert_close(estimates[1], estimates[0], rtol=0, atol=0)


_EINSUM_SIZES = dict(b=2, c=3, h=4, w=4, i=3, j=2, d=5, n=6, o=2, k=3)


class _Einsum(nn.Module):
    """``torch.einsum(equation, a[, b])`` of values cut from the input ``[N, 200]``; the
    second a parameter where ``constant``."""

    def __init__(self, equation: str, constant: bool) -> None:
        super().__init__()
        self.equation = equation
        self.subscripts = equation.replace(" ", "").split("->")[0].split(",")
        shapes = [[_EINSUM_SIZES[c] for c in sub] for sub in self.subscripts]
        self.shapes = shapes
        self.weight = (nn.Parameter(torch.randn(*shapes[1], dtype=torch.float64))
                       if constant and len(shapes) == 2 else None)

    def cut(self, x: torch.Tensor, shape: list[int], offset: int) -> torch.Tensor:
        size = int(torch.tensor(shape[1:]).prod())
        return x[:, offset:offset + size].reshape(x.shape[0], *shape[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        operands = [self.cut(x, self.shapes[0], 0)]
        if len(self.shapes) == 2:
            operands.append(self.weight if self.weight is not None
                            else torch.tanh(self.cut(x, self.shapes[1], 100)))
        return torch.einsum(self.equation, *operands)


@pytest.mark.parametrize("equation, constant", [
    ("bchw->bc", False), ("bchw->bhwc", False), ("b c h w -> b w", False),
    ("bchw,bchw->bc", False), ("bchw,bchw->b", True), ("bchw,c->bhw", True),
    ("bci,ij->bcj", True), ("bhid,bhjd->bhij", False), ("bhid,bhjd->bhij", True),
    ("bhij,bhjd->bhid", False), ("bi,ij->bj", True), ("bij,bj->bi", False),
    ("bn,bn->bn", False), ("bi,j->bij", True), ("bchw,oc->bohw", True), ("bhw,hw->b", True),
    ("bi,bj->bij", False), ("bijk,jk->bi", True), ("bij,kij->bk", True),
    ("bchw,dchw->bd", True), ("bcn,bdn->bcd", False), ("bcn,cd->bdn", True),
    ("bij,bjk", False), ("bdn,bcn->bcd", False)])
def test_each_einsum_is_rewritten_to_its_own_values(equation, constant):
    """Sums over one operand's own indices, contractions of one and of several indices,
    outer products, a constant second operand, transposed outputs and an implicit one:
    the rewritten graph computes the einsum's values, with no einsum left."""
    torch.manual_seed(0)
    model = _Einsum(equation, constant).double().eval()
    graph = TracedGraph(model, fold=False, float_as=torch.float64, decompose=True)
    assert not any(n.target is torch.einsum for n in graph.nodes)
    x = torch.randn(2, 200, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(graph.run(x), model(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("equation", ["bii->bi", "...ij,...jk->...ik", "bi,bi,bi->bi",
                                      "bi,bi"])
def test_einsums_the_rewrite_does_not_take_are_named(equation):
    """A diagonal, an ellipsis, three operands and an output with no index (a sum over
    the batch axis too) stay an einsum, which the verifier names."""
    operands = {"bii->bi": "bii", "...ij,...jk->...ik": "bij,bjk",
                "bi,bi,bi->bi": "bi,bi,bi", "bi,bi": "bi,bi"}[equation].split(",")

    def forward(h: torch.Tensor) -> torch.Tensor:
        flat = h.flatten(1)[:, :9]
        shaped = {"bii": flat.reshape(-1, 3, 3), "bij": flat.reshape(-1, 3, 3),
                  "bjk": flat.reshape(-1, 3, 3), "bi": flat}
        return torch.einsum(equation, *(shaped[o] for o in operands)).reshape(
            h.shape[0], -1)

    with pytest.raises(BoundUnsupportedError, match="no bound rule for einsum"):
        BoundEngine(_Extreme(forward).eval()).plan(torch.rand(1, 3, 6, 6))


class _ConstantEinsum(nn.Module):
    def __init__(self, equation: str, shape: tuple[int, ...], first: bool) -> None:
        super().__init__()
        self.conv, self.equation, self.first = nn.Conv2d(3, 4, 3, 2, 1), equation, first
        self.weight = nn.Parameter(torch.randn(*shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        operands = (self.weight, h) if self.first else (h, self.weight)
        return torch.einsum(self.equation, *operands).flatten(1)[:, :3]


@pytest.mark.parametrize("equation, shape, first", [
    ("bc,bchw->bhw", (1, 4), True), ("bchw,chw->bc", (4, 1, 4), False),
    ("bchw,bchw->bc", (1, 4, 4, 4), True)], ids=["batch-of-one", "contracted", "shared"])
def test_an_einsum_broadcasting_a_constant_is_named(equation, shape, first):
    """A constant operand with an axis of size 1 that einsum broadcasts against the other
    operand is left an einsum and named (a review: raw size mismatches, or a copy that
    ran on one image only)."""
    model = _ConstantEinsum(equation, shape, first).eval()
    image = torch.rand(1, 3, 8, 8)
    assert model(image).shape == (1, 3)
    with pytest.raises(BoundUnsupportedError, match="no bound rule for einsum"):
        BoundEngine(model).prepare(image)


class _Tokens(nn.Module):
    """Tokens laid out sequence first, ``[N, B, E]``, then ``forward``."""

    def __init__(self, forward) -> None:
        super().__init__()
        self.embed, self.run = nn.Conv2d(3, 4, 2, 2), forward
        self.wide = nn.Parameter(torch.randn(9, 2, 4))
        self.across, self.act = nn.Linear(1, 1), nn.Hardswish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(self, self.embed(x).flatten(2).permute(2, 0, 1))


@pytest.mark.parametrize("forward", [
    lambda m, t: (t * m.wide[:, :1]).sum(0) + t.transpose(0, 1).mean(1) * m.wide[0, 1],
    lambda m, t: torch.relu(t[0] + t[-1]) - t.amax(0) + t.permute(1, 2, 0).sum(-1),
    lambda m, t: F.layer_norm(t, (4,)).mean(dim=0, keepdim=True)[0],
    lambda m, t: (lambda u: u[0] + u.sum(0))(t.permute(2, 1, 0)),
    lambda m, t: t[1:, :].mean(0) + t[0, :, 1:].sum(-1, keepdim=True) + t[(2,)],
    lambda m, t: t.mean(0).reshape(t.shape[1], 2, t.size(2) // 2).flatten(1),
    lambda m, t: torch.cat([m.wide[:1, :1].expand(1, t.shape[1], -1), t, t[:2]]).amax(0),
    lambda m, t: t.sum(0) / t.shape[0] + t.sum(0) * (1.0 / t.size(0)),
    lambda m, t: m.act(t.permute(1, 0, 2)).transpose(0, 1).amax(0),
], ids=["constant-along-tokens", "items-and-reductions", "norm-over-features",
        "item-and-sum-of-a-moved-axis", "slices", "sizes", "token-concatenated",
        "divided-by-a-size", "activation-module-then-swapped"])
def test_sequence_first_tokens_are_laid_out_batch_first(forward):
    """Tokens laid out ``[N, B, E]``: a constant broadcast along the tokens, items and
    slices of the first axis, reductions over it, a LayerNorm over the features, a
    permutation back, sizes read from them (the batch size, to reshape; the tokens'
    count, to divide by: a review's raw TypeError) and a token expanded to the batch
    size concatenated with them: the copy computes the model's values with the batch
    axis first throughout."""
    model = randomised(_Tokens(forward), 0)
    graph = TracedGraph(model.double(), fold=False, float_as=torch.float64, decompose=True)
    images = torch.rand(3, 3, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(graph.run(images), model(images), rtol=1e-12, atol=1e-12)
    BoundEngine(model.float()).plan(torch.rand(1, 3, 6, 6))


@pytest.mark.parametrize("forward", [
    lambda m, t: F.layer_norm(t, t.shape[1:]).mean(0),
    lambda m, t: torch.cat([t, 2 * t], 1).mean(0),
    lambda m, t: t.reshape(-1, 4).mean(0)[None].expand(t.shape[1], 4),
    lambda m, t: m.across(t.permute(0, 2, 1)).mean(0),
    lambda m, t: torch.relu(t + m.wide[:, 0]).mean(0),
    lambda m, t: torch.relu(t + m.wide[:1, :]).mean(0),
    lambda m, t: torch.cat([m.wide[:1, :1].expand(-1, 1, -1), t]).mean(0),
], ids=["norm-over-the-batch-axis", "concatenated-images", "reshaped", "linear-across",
        "constant-of-two-axes-along-the-batch", "constant-of-several-images",
        "token-expanded-by-a-number"])
def test_a_batch_axis_the_rewrites_cannot_move_back_is_named(forward):
    """Where the batch axis of sequence-first tokens cannot be moved back first — a
    LayerNorm over it, a concatenation along it (more images), a reshape that folds it,
    a linear layer over it (``[N, E, B]``: right for one image only), a constant added
    with more than one element along it (``[N, E]`` against ``[N, B, E]``: a review,
    whose copy added ``pos[n]`` to token ``n`` where the model adds ``pos[j]`` to image
    ``j``'s tokens; ``[1, 2, E]``: a raw size mismatch), a class token expanded by a
    number, not the batch size (a review: right for one batch size only) — the
    permutation stays and the model is refused in one line."""
    with pytest.raises(BoundUnsupportedError, match="batch axis"):
        BoundEngine(_Tokens(forward).eval()).plan(torch.rand(1, 3, 6, 6))


def test_a_token_expanded_by_another_size_is_not_taken_for_the_batchs():
    """A class token expanded by the tokens' count, not the batch size: the model fails
    on one image, and so does the verifier's copy (a review: it had placed the token in
    every row and run), refused in one line."""
    model = _Tokens(lambda m, t: torch.cat([m.wide[:1, :1].expand(-1, t.shape[0], -1),
                                            t])[0]).eval()
    image = torch.rand(1, 3, 6, 6)
    with pytest.raises(RuntimeError):
        model(image)
    with pytest.raises(BoundUnsupportedError, match="does not run on images"):
        BoundEngine(model).plan(image)


def test_a_deep_sequence_first_encoder_is_laid_out_batch_first():
    """Twenty sequence-first encoder layers (a permutation moved on one operation a
    round: more rounds than a fixed guard of 500 allowed) leave no permutation that
    moves the batch axis."""
    class Deep(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Conv2d(3, 4, 2, 2)
            self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(
                4, 1, 8, dropout=0.0), 20, enable_nested_tensor=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.encoder(self.embed(x).flatten(2).permute(2, 0, 1)).mean(0)

    graph = TracedGraph(Deep().eval(), fold=False, decompose=True)
    assert not [n for n in graph.nodes if n not in graph.statics
                and isinstance(graph.resolve(n).params, str)]
