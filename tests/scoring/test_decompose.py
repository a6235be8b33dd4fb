"""The verifier's copies run divisions by varying values and LayerNorm, GroupNorm and
InstanceNorm as the operations they are made of: the same function as the model, no
float32 error proved through a normalisation the model computes with its own kernel,
and what cannot be rewritten is named."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_bounds import Normalised, Normed, box_margins, randomised, sampled_margins
from torch import fx, nn

from pixelprior.scoring.cone.bounds import BoundEngine, BoundUnsupportedError
from pixelprior.scoring.cone.decompose import DECOMPOSED
from pixelprior.scoring.cone.graph import TracedGraph
from pixelprior.scoring.cone.rounding import rounding_error
from pixelprior.scoring.cone.screen import IntervalScreen


def names_run(graph: TracedGraph) -> set[str]:
    return {r.operation.name for r in map(graph.resolve, graph.nodes) if r.operation}


@pytest.mark.parametrize("net", [Normed, Normalised])
def test_the_decomposed_copy_computes_the_models_function(net):
    """In float64 the rewritten graph's scores are the model's to rounding, on batches
    of 1 and 3; no normalisation and no division by a varying value is left."""
    model = randomised(net(), 4).double()
    graph = TracedGraph(model, fold=False, float_as=torch.float64, decompose=True)
    assert not names_run(graph) & {"layer_norm", "group_norm"}
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
    model = randomised(Normed(), 1)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    label = int(model(image).argmax())
    lo = image[0, :, 2, 2].double()[None]
    bounds = IntervalScreen(model).bounds(image, torch.tensor([18]), lo, lo, label,
                                          2.0**-24)
    others = [k for k in range(3) if k != label]
    assert torch.isinf(bounds.error[0, others]).all()
    assert torch.isfinite(bounds.lower[0, others]).all()  # the real bounds stand


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
    (lambda h: F.layer_norm(h, h.shape[-1:]), "F.layer_norm with a normalized_shape"),
    (lambda h: F.group_norm(h, h.shape[1] // 2, torch.ones(4)), "F.group_norm with num_groups"),
], ids=["layer", "group"])
def test_a_normalisation_of_sizes_computed_in_the_model_is_named(forward, message):
    """Sizes read from the value (``h.shape[-1:]``) are no settings the rewrite can
    read: the plan names the normalisation and says to give numbers (a review: the
    trace raised ``TypeError``, and the verifier said torch.fx could not trace it)."""
    class Sized(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return forward(self.conv(x)).mean((2, 3))

    with pytest.raises(BoundUnsupportedError, match=message):
        BoundEngine(Sized().eval()).plan(torch.rand(1, 3, 6, 6))
