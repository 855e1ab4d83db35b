"""The explainer contract: shapes, values, batches, devices, model state, hooks, memory and errors.

Library comparisons live in test_explainers_reference.py, the differentiable
path and softplus in test_explainers_softplus.py.
"""

from __future__ import annotations

import gc
import tracemalloc

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from robustbench_us.errors import ContractError, RobustBenchError
from robustbench_us.plugins import default_registry
from robustbench_us_plugins.cams import GradCAMPlusPlus, HiResCAM, LayerCAM
from robustbench_us_plugins.gradcam import ExplainerError, GradCAM
from robustbench_us_plugins.gradients import IntegratedGradients, Saliency, SmoothGrad
from robustbench_us_plugins.segmentation import NoSegmentationHeadError, SegmentationMap
from tests.fakes.tiny import TinyNet

EXPLAINER_NAMES = ("gradcam", "gradcam++", "hirescam", "layercam", "saliency", "integrated-gradients",
                   "smoothgrad", "segmentation")
# Small enough for CPU tests; the defaults (50 steps / samples) are for benchmarks.
FAST_OPTIONS = {"integrated-gradients": {"steps": 6}, "smoothgrad": {"samples": 4}}
# Fewer still where the model is a ResNet-18 or the call is repeated 50 times.
LIGHT_OPTIONS = {"integrated-gradients": {"steps": 2}, "smoothgrad": {"samples": 2}}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors on a shared 2-core machine: extra intra-op threads only thrash."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_explainer(name: str, **options):
    """The explainer ``name`` from the plugin registry, with the fast test options."""
    return default_registry().create("explainer", name, **{**FAST_OPTIONS.get(name, {}), **options})


class SmallResNet18(nn.Module):
    """torchvision's ResNet-18 with a 2-way head, the model contract and non-trivial BatchNorm statistics."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = resnet18(weights=None, num_classes=2)
        generator = torch.Generator().manual_seed(seed)
        for module in self.net.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                nn.init.uniform_(module.weight, 0.5, 1.5)
                nn.init.uniform_(module.bias, -0.1, 0.1)
        self.input_size = 64
        self.has_segmentation = False

    @property
    def cam_layer(self) -> nn.Module:
        return self.net.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def small_resnet18(seed: int = 0) -> SmallResNet18:
    """A seeded ResNet-18 for 64×64 inputs, in eval mode."""
    return SmallResNet18(seed).eval()


def images(n: int, size: int, seed: int = 1) -> torch.Tensor:
    """Seeded images in [0, 1]: a grey value repeated in three channels, as the data contract says."""
    grey = torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))
    return grey.repeat(1, 3, 1, 1)


class HandNet(nn.Module):
    """A linear model small enough to explain by hand: logits = W · spatial mean of the input channels."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.head = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.0, 2.0]]))
        self.has_segmentation = False

    @property
    def cam_layer(self) -> nn.Module:
        return self.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def hand_image() -> torch.Tensor:
    x = torch.zeros(1, 3, 2, 2)
    x[0, 0, 0, 0] = 1.0
    x[0, 1, 1, 1] = 1.0
    x[0, 2, 0, 1] = 0.5
    return x


# --- registry -------------------------------------------------------------------------------------

def test_every_explainer_is_registered_with_description_and_differentiable_flag():
    specs = {spec.name: spec for spec in default_registry().specs("explainer")}
    assert set(EXPLAINER_NAMES) <= set(specs)
    for name in EXPLAINER_NAMES:
        spec = specs[name]
        assert spec.description, name
        assert spec.differentiable is True, name
        explainer = spec.factory(**FAST_OPTIONS.get(name, {}))
        assert explainer.differentiable is True
        assert callable(explainer.explain)


def test_bad_option_names_the_explainer_and_the_choices():
    with pytest.raises(ExplainerError, match=r"'gradcam'.*normalize='sum'.*'max', 'none'"):
        make_explainer("gradcam", normalize="sum")
    with pytest.raises(ExplainerError, match=r"channels='rgb'.*'grey', 'max', 'sum'"):
        make_explainer("saliency", channels="rgb")
    with pytest.raises(ExplainerError, match="steps=0"):
        make_explainer("integrated-gradients", steps=0)
    with pytest.raises(ExplainerError, match="method='simpson'"):
        make_explainer("integrated-gradients", method="simpson")
    with pytest.raises(ExplainerError, match="sigma=-1"):
        make_explainer("smoothgrad", sigma=-1)
    assert issubclass(ExplainerError, RobustBenchError)


# --- values computed by hand ------------------------------------------------------------------------

def test_gradcam_by_hand():
    # d logit_c / d feature_k = W[c, k] / 4 everywhere (mean over 2×2), so Grad-CAM is relu(Σ_k W[c,k]/4 · x_k).
    model, x = HandNet().eval(), hand_image()
    raw = GradCAM(normalize="none").explain(model.eval(), x.repeat(2, 1, 1, 1), torch.tensor([0, 1]))
    torch.testing.assert_close(raw[0], torch.tensor([[0.25, 0.0], [0.0, 0.0]]))  # 0.25·x0 − 0.25·x1, ReLU'd
    torch.testing.assert_close(raw[1], torch.tensor([[0.0, 0.25], [0.0, 0.0]]))  # 0.5·x2
    normalised = GradCAM().explain(model, x.repeat(2, 1, 1, 1), torch.tensor([0, 1]))
    torch.testing.assert_close(normalised, raw / 0.25)
    # The gradient is constant over space, so HiResCAM and LayerCAM (positive part only) agree here.
    torch.testing.assert_close(HiResCAM(normalize="none").explain(model, x, torch.tensor([0])), raw[:1])
    torch.testing.assert_close(LayerCAM(normalize="none").explain(model, x, torch.tensor([1])), raw[1:])


def test_gradient_explainers_by_hand():
    model, x = HandNet().eval(), hand_image()
    # Saliency 'grey': |Σ_k W[c,k]| / 4 — zero for class 0 (weights cancel), 0.5 everywhere for class 1.
    sal = Saliency(normalize="none").explain(model, x.repeat(2, 1, 1, 1), torch.tensor([0, 1]))
    torch.testing.assert_close(sal, torch.tensor([[[0.0, 0.0], [0.0, 0.0]], [[0.5, 0.5], [0.5, 0.5]]]))
    # 'max' and 'sum' over channels of |W[c,k]| / 4.
    torch.testing.assert_close(Saliency(channels="max", normalize="none").explain(model, x, torch.tensor([0])),
                               torch.full((1, 2, 2), 0.25))
    torch.testing.assert_close(Saliency(channels="sum", normalize="none").explain(model, x, torch.tensor([0])),
                               torch.full((1, 2, 2), 0.5))
    # IG of a linear model is exact for any quadrature: x_k · W[c,k] / 4, so 'grey' gives |0.25·x0 − 0.25·x1|.
    for method in ("gauss-legendre", "riemann-trapezoid", "riemann-middle"):
        ig = IntegratedGradients(steps=3, method=method, normalize="none").explain(model, x, torch.tensor([0]))
        torch.testing.assert_close(ig, torch.tensor([[[0.25, 0.0], [0.0, 0.25]]]))
    # A baseline of 1.0 (white) integrates along x − 1 instead.
    ig_white = IntegratedGradients(steps=2, baseline=1.0, normalize="none").explain(model, x, torch.tensor([1]))
    torch.testing.assert_close(ig_white, 0.5 * (1.0 - x[:, 2]).abs())
    # SmoothGrad of a linear model: the gradient does not depend on the noise.
    sg = SmoothGrad(samples=3, sigma=0.5, normalize="none").explain(model, x, torch.tensor([1]))
    torch.testing.assert_close(sg, torch.full((1, 2, 2), 0.5))


def test_integrated_gradients_is_complete():
    # Σ attributions = logit(x) − logit(baseline) (Sundararajan et al., axiom of completeness), up to
    # the quadrature error that the ReLU kinks along the path leave (0.3 % here at 64 steps).
    model = TinyNet().eval()
    x = images(3, 32)
    target = torch.tensor([0, 1, 1])
    ig = IntegratedGradients(steps=64)
    with torch.enable_grad():
        attribution = ig.attribute(model, x, target, create_graph=False)
    with torch.no_grad():
        expected = (model(x) - model(torch.zeros_like(x))).gather(1, target.view(-1, 1))[:, 0]
    torch.testing.assert_close(attribution.sum(dim=(1, 2, 3)), expected, rtol=1e-2, atol=1e-6)  # ReLU kinks


def test_gauss_legendre_nodes_match_the_textbook_values():
    from robustbench_us_plugins.gradients import Quadrature, quadrature

    alphas, weights = quadrature(Quadrature.GAUSS_LEGENDRE, 3)
    # Nodes 0, ±sqrt(3/5) on [−1, 1] with weights 8/9, 5/9, mapped to [0, 1].
    root = (3 / 5) ** 0.5
    assert alphas == pytest.approx([(1 - root) / 2, 0.5, (1 + root) / 2], abs=1e-12)
    assert weights == pytest.approx([5 / 18, 8 / 18, 5 / 18], abs=1e-12)


# --- the contract on every explainer ------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", EXPLAINER_NAMES)
def test_maps_have_the_contract_shape_range_and_device(name, device):
    model = TinyNet().eval().to(device)
    x = images(4, 32).to(device)
    target = torch.tensor([0, 1, 0, 1], device=device)
    maps = make_explainer(name).explain(model, x, target)
    assert maps.shape == (4, 32, 32)
    assert maps.dtype == torch.float32 and maps.device == x.device
    assert not maps.requires_grad
    assert torch.isfinite(maps).all() and (maps >= 0).all()
    peaks = maps.flatten(1).amax(dim=1)
    torch.testing.assert_close(peaks, torch.ones_like(peaks))  # normalize='max' is the default


@pytest.mark.parametrize("name", EXPLAINER_NAMES)
def test_normalize_none_is_the_raw_map_and_max_divides_by_the_peak(name):
    model, x, target = TinyNet().eval(), images(3, 32), torch.tensor([1, 0, 1])
    raw = make_explainer(name, normalize="none").explain(model, x, target)
    scaled = make_explainer(name).explain(model, x, target)
    assert (raw >= 0).all()
    torch.testing.assert_close(scaled, raw / raw.flatten(1).amax(dim=1).view(-1, 1, 1))


@pytest.mark.parametrize("arch, name", [("tiny", name) for name in EXPLAINER_NAMES]
                         + [("resnet18", name) for name in EXPLAINER_NAMES if name != "segmentation"])
def test_a_batch_gives_the_same_maps_as_its_images_one_by_one(name, arch):
    model, size = (TinyNet().eval(), 32) if arch == "tiny" else (small_resnet18(), 64)
    x = images(3, size)
    if arch == "resnet18":
        # In float32 a ReLU unit within rounding of zero can switch between the batched and the
        # single-image convolution kernels, and the gradient jumps with it (seen for integrated
        # gradients); float64 keeps this a test of the batching, not of float32 rounding.
        model, x = model.double(), x.double()
    target = torch.tensor([1, 0, 1])
    explainer = make_explainer(name, **(LIGHT_OPTIONS.get(name, {}) if arch == "resnet18" else {}))
    batch = explainer.explain(model, x, target)
    single = torch.cat([explainer.explain(model, x[i:i + 1], target[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(batch, single, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in EXPLAINER_NAMES if n != "segmentation"])
def test_the_map_follows_the_target_the_caller_gives(name):
    # The explainer explains the class it is told to, never the one it would pick itself.
    model, x = TinyNet().eval(), images(2, 32)
    explainer = make_explainer(name, normalize="none")
    for_zero = explainer.explain(model, x, torch.tensor([0, 0]))
    for_one = explainer.explain(model, x, torch.tensor([1, 1]))
    mixed = explainer.explain(model, x, torch.tensor([0, 1]))
    assert not torch.allclose(for_zero, for_one)
    torch.testing.assert_close(mixed, torch.stack([for_zero[0], for_one[1]]), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", EXPLAINER_NAMES)
def test_model_state_is_left_as_found(name):
    # The model is explained in eval mode, but its own flags, statistics and gradients are not touched.
    model = TinyNet().eval() if name == "segmentation" else small_resnet18()
    x, target = images(2, 32), torch.tensor([0, 1])
    expected = make_explainer(name, **LIGHT_OPTIONS.get(name, {})).explain(model, x, target)
    model.train()
    first_param = next(model.parameters())
    first_param.requires_grad_(False)
    buffers = {key: value.clone() for key, value in model.state_dict().items()}
    maps = make_explainer(name, **LIGHT_OPTIONS.get(name, {})).explain(model, x, target)
    torch.testing.assert_close(maps, expected)  # explained as the deployed (eval-mode) model
    assert all(module.training for module in model.modules())
    assert first_param.requires_grad is False
    assert all(p.requires_grad for p in list(model.parameters())[1:])
    assert all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, buffers[key], msg=f"{key} changed")


@pytest.mark.parametrize("name", EXPLAINER_NAMES)
def test_callers_input_and_grad_mode_are_respected(name):
    model, target = TinyNet().eval(), torch.tensor([0, 1])
    x = images(2, 32).requires_grad_(True)
    before = x.detach().clone()
    expected = make_explainer(name).explain(model, x.detach(), target)
    with torch.no_grad():
        under_no_grad = make_explainer(name).explain(model, x, target)
    with torch.inference_mode():
        inference_x = before.clone()
        under_inference = make_explainer(name).explain(model, inference_x, target)
    torch.testing.assert_close(under_no_grad, expected)
    torch.testing.assert_close(under_inference.clone(), expected)
    assert x.grad is None
    torch.testing.assert_close(x.detach(), before)


# --- hooks and memory ---------------------------------------------------------------------------------

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_state_dict_hooks")


def hook_count(model: nn.Module) -> int:
    """Hooks registered on any submodule of ``model``, and torch's global module hooks."""
    from torch.nn.modules import module as module_mod

    local = sum(len(getattr(m, attr, {})) for m in model.modules() for attr in _HOOK_DICTS)
    global_ = sum(len(getattr(module_mod, attr, {})) for attr in (
        "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
        "_global_backward_pre_hooks"))
    return local + global_


def live_tensor_count() -> int:
    gc.collect()
    count = 0
    for obj in gc.get_objects():
        if issubclass(type(obj), torch.Tensor):  # type(), unlike isinstance, wakes no lazy module objects
            count += 1
    return count


@pytest.mark.parametrize("name", EXPLAINER_NAMES)
def test_repeated_calls_leave_no_hooks_and_do_not_grow_memory(name):
    model, x, target = TinyNet().eval(), images(2, 16), torch.tensor([0, 1])
    explainer = make_explainer(name, **LIGHT_OPTIONS.get(name, {}))
    hooks_before = hook_count(model)
    for _ in range(5):  # warm-up: caches, lazy imports
        explainer.explain(model, x, target)
    tensors_before = live_tensor_count()
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        for _ in range(50):
            maps = explainer.explain(model, x, target)
            assert hook_count(model) == hooks_before
        del maps
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert hook_count(model) == hooks_before == 0
    assert live_tensor_count() <= tensors_before
    assert grown < 64 * 1024, f"{name}: Python memory grew by {grown} bytes over 50 calls"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", EXPLAINER_NAMES)
def test_repeated_calls_do_not_grow_cuda_memory(name):
    model = TinyNet().eval().cuda()
    x, target = images(2, 32).cuda(), torch.tensor([0, 1]).cuda()
    explainer = make_explainer(name)
    for create_graph in (False, True):
        explainer.explain(model, x, target, create_graph=create_graph)
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        for _ in range(50):
            maps = explainer.explain(model, x, target, create_graph=create_graph)
        del maps
        torch.cuda.synchronize()
        assert torch.cuda.memory_allocated() <= before


def test_hooks_are_removed_when_the_explainer_fails():
    model, x = TinyNet().eval(), images(2, 32)
    with pytest.raises(ContractError, match="target holds class 7"):
        GradCAM().explain(model, x, torch.tensor([0, 7]))
    assert hook_count(model) == 0


# --- errors -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", EXPLAINER_NAMES)
def test_bad_target_or_images_raise_contract_errors(name):
    model, x = TinyNet().eval(), images(2, 32)
    explainer = make_explainer(name)
    with pytest.raises(ContractError, match="LongTensor \\[N\\]"):
        explainer.explain(model, x, torch.tensor([0, 1, 1]))
    with pytest.raises(ContractError, match="LongTensor \\[N\\]"):
        explainer.explain(model, x, torch.tensor([0.0, 1.0]))
    with pytest.raises(ContractError, match="float tensor \\[N, 3, H, W\\]"):
        explainer.explain(model, x[0], torch.tensor([0]))
    if name != "segmentation":  # the mask does not look at the class
        with pytest.raises(ContractError, match="2 classes"):
            explainer.explain(model, x, torch.tensor([0, 2]))


def test_segmentation_needs_a_segmentation_head():
    with pytest.raises(NoSegmentationHeadError, match="has_segmentation=False.*resnet50-mtl") as info:
        SegmentationMap().explain(small_resnet18(), images(1, 64), torch.tensor([0]))
    assert isinstance(info.value, RobustBenchError)


def test_segmentation_map_is_the_sigmoid_of_the_mask_logits():
    model, x = TinyNet().eval(), images(2, 32)
    with torch.no_grad():
        probability = torch.sigmoid(model.segment(x))[:, 0]
    torch.testing.assert_close(SegmentationMap(normalize="none").explain(model, x, torch.tensor([0, 1])),
                               probability)
    # The mask is class-agnostic.
    torch.testing.assert_close(SegmentationMap().explain(model, x, torch.tensor([1, 1])),
                               SegmentationMap().explain(model, x, torch.tensor([0, 0])))


def test_cam_layer_option_and_its_errors():
    model, x, target = small_resnet18(), images(2, 64), torch.tensor([0, 1])
    on_cam_layer = GradCAM().explain(model, x, target)
    torch.testing.assert_close(GradCAM(layer="net.layer4").explain(model, x, target), on_cam_layer)
    assert not torch.allclose(GradCAM(layer="net.layer3").explain(model, x, target), on_cam_layer)
    with pytest.raises(ExplainerError, match="no submodule 'net.layer9'"):
        GradCAM(layer="net.layer9").explain(model, x, target)
    with pytest.raises(ExplainerError, match="no 'cam_layer'"):
        GradCAM().explain(nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
                          x, target)


def test_cam_layer_called_twice_is_an_error():
    class Twice(TinyNet):
        def forward(self, x):
            return super().forward(x) + super().forward(x)

    with pytest.raises(ContractError, match="ran 2 times"):
        GradCAMPlusPlus().explain(Twice().eval(), images(1, 32), torch.tensor([0]))


# --- SmoothGrad determinism ---------------------------------------------------------------------------

def test_smoothgrad_is_seeded():
    model, x, target = TinyNet().eval(), images(2, 32), torch.tensor([0, 1])
    first = SmoothGrad(samples=3, seed=1).explain(model, x, target)
    torch.testing.assert_close(SmoothGrad(samples=3, seed=1).explain(model, x, target), first)
    assert not torch.allclose(SmoothGrad(samples=3, seed=2).explain(model, x, target), first)
    # The same explainer gives the same map for the same image on every call...
    explainer = SmoothGrad(samples=3, seed=1)
    torch.testing.assert_close(explainer.explain(model, x, target), explainer.explain(model, x, target))
    # ...while a caller's generator advances from call to call, reproducibly.
    a = SmoothGrad(samples=3, generator=torch.Generator().manual_seed(9))
    b = SmoothGrad(samples=3, generator=torch.Generator().manual_seed(9))
    a1, a2 = a.explain(model, x, target), a.explain(model, x, target)
    torch.testing.assert_close(b.explain(model, x, target), a1)
    assert not torch.allclose(a1, a2)
