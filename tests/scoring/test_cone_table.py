"""The operation table: one registered entry per operation, looked up by module class,
function or method; a new operation is one registration and the cone engine runs it on
windows, equal to the full pass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from pixelprior.scoring import perturb_rows
from pixelprior.scoring.cone import (
    OPERATIONS,
    FxIncrementalForward,
    WindowRule,
    register_bound,
    register_operation,
)
from pixelprior.scoring.cone.plan import PointwiseStep, SpatialStep
from pixelprior.scoring.cone.table import OperationTable


class Ndtr(nn.Module):
    """An activation the library does not know (torch.fx inlines it: a call of
    torch.special.ndtr, the normal distribution's CDF)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.ndtr(x)


# the whole of what adding an operation takes: one registration
register_operation("test_ndtr", window=lambda params: WindowRule("pointwise"),
                   functions=(torch.special.ndtr,), help="the normal CDF (a test)")


def cnn(activation: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), activation, nn.Conv2d(8, 8, 3, 2, 1),
                         nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4)).eval()


class Unknown(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.cumsum(-1).cumsum(-1)


def test_a_registered_operation_runs_on_windows_and_equals_the_full_pass():
    model = cnn(Ndtr())
    engine = FxIncrementalForward(model)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    plan = engine.plan(images)
    assert plan.first_unsupported.startswith("AdaptiveAvgPool2d")  # the head, not ndtr
    ndtr = next(step for node, step, _ in plan.steps if node.target is torch.special.ndtr)
    assert isinstance(ndtr, PointwiseStep)
    kinds = {type(step) for _, step, _ in plan.steps}
    assert PointwiseStep in kinds and SpatialStep in kinds
    owner, y, x = torch.tensor([0, 1, 1]), torch.tensor([0, 7, 15]), torch.tensor([3, 0, 15])
    color = torch.rand(3, 3, generator=torch.Generator().manual_seed(2))
    got = engine(engine.prepare(images), owner, y, x, color)
    genes = torch.cat([torch.stack([x, y], 1).float(), color], 1)[:, None]
    with torch.no_grad():
        expected = model(perturb_rows(images, owner, genes))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_an_unregistered_operation_is_named_and_run_on_full_maps():
    engine = FxIncrementalForward(cnn(Unknown()))
    plan = engine.plan(torch.rand(1, 3, 16, 16))
    assert plan.first_unsupported == "Tensor.cumsum() (not an operation it knows)"
    sums = [step for node, step, _ in plan.steps if node.target == "cumsum"]
    assert sums and all(type(step).__name__ == "FullStep" for step in sums)


def test_lookup_by_module_function_and_method():
    modules = {"relu": nn.ReLU(), "bn": nn.BatchNorm2d(3).eval(), "conv": nn.Conv2d(3, 3, 3)}
    graph = fx.Graph()
    x = graph.placeholder("x")
    nodes = {
        "relu": graph.call_module("relu", (x,)),
        "batch_norm": graph.call_module("bn", (x,)),
        "conv2d": graph.call_function(F.conv2d, (x, x)),
        "sigmoid": graph.call_method("sigmoid", (x,)),
        "add": graph.call_function(torch.add, (x, x)),
    }
    for name, node in nodes.items():
        assert OPERATIONS.lookup(node, modules).name == name
    assert OPERATIONS.lookup(graph.call_method("cumsum", (x, -1)), modules) is None


def test_a_subclass_that_overrides_forward_is_not_its_parent():
    class NotReLU(nn.ReLU):
        def forward(self, x):
            return x.abs()

    class PlainReLU(nn.ReLU):
        pass

    graph = fx.Graph()
    x = graph.placeholder("x")
    modules = {"a": NotReLU(), "b": PlainReLU()}
    assert OPERATIONS.lookup(graph.call_module("a", (x,)), modules) is None
    assert OPERATIONS.lookup(graph.call_module("b", (x,)), modules).name == "relu"


def test_registration_refuses_duplicates_and_sets_one_bound_rule():
    table = OperationTable()
    table.register("one", window=lambda p: "no", functions=(torch.exp,))
    with pytest.raises(ValueError, match="registered twice"):
        table.register("one", window=lambda p: "no")
    with pytest.raises(ValueError, match="registered twice"):
        table.register("two", window=lambda p: "no", functions=(torch.exp,))
    table.register_bound("one", rule=lambda p: "bound")
    assert table.get("one").bound(None) == "bound"
    with pytest.raises(ValueError, match="bound rule already"):
        table.register_bound("one", rule=lambda p: "again")
    with pytest.raises(KeyError, match="unknown operation 'three'"):
        table.get("three")


def test_the_module_level_decorator_registers_in_the_global_table():
    register_operation("test_entropy", window=lambda p: WindowRule("pointwise"),
                       functions=(torch.special.entr,))

    @register_bound("test_entropy")
    def entropy_bound(params):
        return "a rule"

    assert OPERATIONS.get("test_entropy").bound is entropy_bound


def test_functional_settings_equal_the_module_settings():
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, dilation=1)
    graph = fx.Graph()
    x = graph.placeholder("x")
    weight, bias = graph.get_attr("w"), graph.get_attr("b")
    node_module = graph.call_module("conv", (x,))
    node_function = graph.call_function(F.conv2d, (x, weight, bias, 2, 1))
    from pixelprior.scoring.cone.table import NodeCall

    operation = OPERATIONS.get("conv2d")
    from_module = operation.params(NodeCall(node_module, conv, {}))
    from_function = operation.params(NodeCall(node_function, None,
                                              {weight: conv.weight, bias: conv.bias}))
    assert from_module == from_function


def test_every_operation_is_bounded_written_out_or_a_size():
    """An operation with no bound rule of its own is one the verifier's copies write out
    (its ``written_out`` flag, which the operations page shows) or a size; a written-out
    one has no interval rule of its own that would bound it (at most a refusal)."""
    for name in OPERATIONS.names():
        operation = OPERATIONS.get(name)
        if operation.bound is None and operation.window.__module__.startswith("pixelprior."):
            assert operation.written_out or name == "shape", name  # (not this file's own)
