"""The differentiable path: ``create_graph=True`` maps and the ``softplus_relu`` swap attacks rely on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustbench_us.errors import RobustBenchError
from robustbench_us.softplus import softplus_relu
from tests.fakes.tiny import TinyNet
from tests.test_explainers import (EXPLAINER_NAMES, LIGHT_OPTIONS, hook_count, images, live_tensor_count,
                                   make_explainer, small_resnet18)
from tests.test_explainers import one_thread  # noqa: F401  (autouse: one intra-op thread)


def relu_places(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    return [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
            if isinstance(child, (nn.ReLU, nn.Softplus))]


# --- softplus_relu ------------------------------------------------------------------------------------

def test_softplus_swaps_every_relu_and_restores_the_same_objects():
    model, x = TinyNet().eval(), images(2, 32)
    with torch.no_grad():
        before = model(x)
    places = relu_places(model)
    assert len(places) == 2 and all(isinstance(child, nn.ReLU) for *_, child in places)
    state_keys = list(model.state_dict())
    with softplus_relu(model, beta=5.0) as replaced:
        assert replaced == 2
        inside = relu_places(model)
        assert all(isinstance(child, nn.Softplus) and child.beta == 5.0 for *_, child in inside)
        with torch.no_grad():
            smooth = model(x)
        assert not torch.allclose(smooth, before)
    assert [(p, n, id(c)) for p, n, c in relu_places(model)] == [(p, n, id(c)) for p, n, c in places]
    assert list(model.state_dict()) == state_keys
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_softplus_follows_relu_as_beta_grows():
    model, x = TinyNet().eval(), images(2, 32)
    with torch.no_grad():
        before = model(x)
        with softplus_relu(model, beta=1e4):
            close = model(x)
    torch.testing.assert_close(close, before, rtol=0, atol=1e-3)


def test_softplus_restores_after_an_error_and_handles_shared_and_inplace_relus():
    shared = nn.ReLU(inplace=True)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), shared, nn.Sequential(nn.Conv2d(4, 4, 3), shared))
    with pytest.raises(RuntimeError, match="boom"):
        with softplus_relu(model) as replaced:
            assert replaced == 1  # one ReLU object, used in two places
            assert model[1] is model[2][1] and isinstance(model[1], nn.Softplus)
            raise RuntimeError("boom")
    assert model[1] is shared and model[2][1] is shared and shared.inplace


def test_softplus_on_torchvision_resnet_replaces_every_block_relu():
    model = small_resnet18()
    count = sum(isinstance(m, nn.ReLU) for m in model.modules())
    with softplus_relu(model) as replaced:
        assert replaced == count == 9  # the stem and one per BasicBlock (each used twice in its forward)
        assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == count


def test_softplus_on_a_model_without_relu_changes_nothing():
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.GELU())
    with softplus_relu(model) as replaced:
        assert replaced == 0
        assert isinstance(model[1], nn.GELU)


@pytest.mark.parametrize("beta", [0, -1.0, "10", True])
def test_softplus_rejects_a_bad_beta(beta):
    with pytest.raises(RobustBenchError, match="beta="):
        with softplus_relu(TinyNet(), beta=beta):
            pass


# --- create_graph -------------------------------------------------------------------------------------

def map_statistic(maps: torch.Tensor) -> torch.Tensor:
    """A fixed, uneven weighting of the map, as an attack loss would use."""
    weights = torch.linspace(-1.0, 2.0, maps[0].numel(), dtype=maps.dtype, device=maps.device)
    return (maps.flatten(1) * weights).sum()


@pytest.mark.parametrize("name", EXPLAINER_NAMES)
def test_create_graph_under_softplus_gives_a_nonzero_input_gradient(name):
    model = TinyNet().eval()
    x = images(2, 32).requires_grad_(True)
    explainer = make_explainer(name, **LIGHT_OPTIONS.get(name, {}))
    with softplus_relu(model, beta=10.0):
        maps = explainer.explain(model, x, torch.tensor([0, 1]), create_graph=True)
        assert maps.requires_grad and maps.shape == (2, 32, 32)
        (grad,) = torch.autograd.grad(map_statistic(maps), x)
    assert torch.isfinite(grad).all()
    assert grad.abs().sum() > 0
    assert x.grad is None and all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", ["saliency", "smoothgrad"])
def test_gradient_maps_of_a_relu_network_have_zero_input_gradient_without_softplus(name):
    # Why softplus_relu exists: a ReLU network's input gradient is piecewise constant, so the
    # gradient of a gradient-based map with respect to the input vanishes (Dombrowski et al. 2019).
    model = TinyNet().eval()
    x = images(2, 32).requires_grad_(True)
    explainer = make_explainer(name, normalize="none", **LIGHT_OPTIONS.get(name, {}))
    maps = explainer.explain(model, x, torch.tensor([0, 1]), create_graph=True)
    (grad,) = torch.autograd.grad(map_statistic(maps), x)
    assert torch.count_nonzero(grad) == 0
    with softplus_relu(model):
        maps = explainer.explain(model, x, torch.tensor([0, 1]), create_graph=True)
        (grad,) = torch.autograd.grad(map_statistic(maps), x)
    assert torch.count_nonzero(grad) > 0


def test_create_graph_map_is_connected_to_the_callers_graph():
    # An attack perturbs x = x0 + delta and differentiates with respect to delta.
    model = TinyNet().eval()
    x0 = images(1, 32)
    delta = torch.zeros_like(x0, requires_grad=True)
    with softplus_relu(model):
        maps = make_explainer("saliency").explain(model, x0 + delta, torch.tensor([1]), create_graph=True)
        (grad,) = torch.autograd.grad(map_statistic(maps), delta)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("name", EXPLAINER_NAMES)
def test_create_graph_maps_pass_gradcheck_under_softplus(name):
    # The analytic gradient of the map (through create_graph) against finite differences, in float64.
    torch.manual_seed(0)
    model = TinyNet(input_size=4).eval().double()
    options = {"integrated-gradients": {"steps": 3}, "smoothgrad": {"samples": 2}}.get(name, {})
    explainer = make_explainer(name, normalize="none", **options)
    x = images(1, 4).double().requires_grad_(True)
    target = torch.tensor([1])
    with softplus_relu(model, beta=3.0):
        assert torch.autograd.gradcheck(lambda inp: explainer.explain(model, inp, target, create_graph=True),
                                        (x,), eps=1e-6, atol=1e-5, rtol=1e-3)


@pytest.mark.parametrize("name", EXPLAINER_NAMES)
def test_create_graph_calls_leave_no_hooks_or_tensors(name):
    model, target = TinyNet().eval(), torch.tensor([0, 1])
    explainer = make_explainer(name, **LIGHT_OPTIONS.get(name, {}))
    x = images(2, 16).requires_grad_(True)

    def step() -> None:
        with softplus_relu(model):
            maps = explainer.explain(model, x, target, create_graph=True)
            torch.autograd.grad(map_statistic(maps), x)

    for _ in range(3):
        step()
    before = live_tensor_count()
    for _ in range(20):
        step()
        assert hook_count(model) == 0
    assert live_tensor_count() <= before
    assert all(isinstance(m, nn.ReLU) for m in (model.stage1[1], model.stage2[1]))
