"""Our explainers against two independent implementations: pytorch-grad-cam and Captum.

Same model (TinyNet at 32×32, a seeded ResNet-18 at 64×64), same images, same
target classes. What had to be aligned, per library:

- pytorch-grad-cam computes the CAM in NumPy, clips it at zero, min–max
  normalises each image with ``(m − min) / (1e-7 + max)`` *at layer
  resolution*, resizes with ``cv2.resize`` (bilinear, half-pixel centres), then
  clips and min–max normalises again. We reproduce exactly that post-processing
  in torch on our layer-resolution map (``layer_maps``), which isolates the CAM
  arithmetic; and we compare our final map after a plain min–max, which is the
  same thing because bilinear resizing commutes with an affine rescaling (its
  weights sum to one). That second comparison uses a TinyNet whose head is
  scaled ×1000, so the CAMs are O(0.1) and the library's 1e-7 guard is
  negligible (it is not for raw TinyNet CAMs of O(1e-4)).
- Captum's LayerGradCam (``relu_attributions=True``) followed by
  ``LayerAttribution.interpolate(..., 'bilinear')`` is the un-normalised
  Grad-CAM map: compared with ``normalize='none'``, and with ``'max'`` after
  dividing Captum's map by its per-image maximum.
- Captum's Saliency / IntegratedGradients return per-channel attributions;
  we apply our channel reduction to them (``abs=False`` so the signed sum of
  'grey' can be formed). Captum's 'riemann_trapezoid' weights sum to
  (n − 1)/n rather than 1, so its result is rescaled by n/(n − 1) first.
  Captum's Riemann nodes come from a float32 ``linspace``, ours are exact
  fractions in float64: up to one float32 ulp apart. That ulp moves a path point across a
  ReLU or max-pool kink of the ResNet-18 under some CPU kernels (measured: one
  trapezoid step's gradient changes by 6e-4, 3 % of its largest entry, with
  ``ATEN_CPU_CAPABILITY=default``), which no rounding tolerance covers. So the
  nodes are compared on their own (``test_quadrature_nodes_match_captum``), and
  the attributions with Captum's nodes given to ours, one step per batch on
  both sides (``internal_batch_size``), so both differentiate the same tensors.
- Captum's NoiseTunnel draws its noise from the global generator, one image at
  a time here after ``torch.manual_seed(seed)``; our SmoothGrad draws the same
  numbers from its own generator seeded with ``seed``, shared by the batch.
  It averages the per-channel |gradient|, so we compare ``channels='sum'``
  (which commutes with the average).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustbench_us_plugins.cams import GradCAMPlusPlus, HiResCAM, LayerCAM
from robustbench_us_plugins.gradcam import GradCAM
from robustbench_us_plugins.gradients import IntegratedGradients, Quadrature, Saliency, SmoothGrad, quadrature
from tests.fakes.tiny import TinyNet
from tests.test_explainers import images, small_resnet18
from tests.test_explainers import one_thread  # noqa: F401  (autouse: one intra-op thread)

pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")
captum_attr = pytest.importorskip("captum.attr")
from captum.attr._utils.approximation_methods import approximation_parameters  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

OURS_VS_GRAD_CAM = [(GradCAM, pytorch_grad_cam.GradCAM), (GradCAMPlusPlus, pytorch_grad_cam.GradCAMPlusPlus),
                    (HiResCAM, pytorch_grad_cam.HiResCAM), (LayerCAM, pytorch_grad_cam.LayerCAM)]
CAM_IDS = [ours.name for ours, _ in OURS_VS_GRAD_CAM]
TARGET = torch.tensor([0, 1, 1])
EPS32 = torch.finfo(torch.float32).eps
CAPTUM_METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def loud_tiny() -> TinyNet:
    """TinyNet with its head scaled ×1000: same maps up to scale, but values far above 1e-7."""
    model = TinyNet().eval()
    with torch.no_grad():
        model.head.weight.mul_(1000)
        model.head.bias.mul_(1000)
    return model


# (model factory, layer option, image size): a layer option of None means model.cam_layer.
SETUPS = {
    "tiny": (lambda: TinyNet().eval(), None, 32),
    "tiny-loud": (loud_tiny, None, 32),
    "resnet18-layer4": (small_resnet18, None, 64),   # 2×2 feature map
    "resnet18-layer3": (small_resnet18, "net.layer3", 64),  # 4×4 feature map
}


def setup(key: str) -> tuple[nn.Module, str | None, torch.Tensor, nn.Module]:
    factory, layer, size = SETUPS[key]
    model = factory()
    module = model.cam_layer if layer is None else dict(model.named_modules())[layer]
    return model, layer, images(3, size), module


def library_cam(cam_class, model: nn.Module, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with cam_class(model=model, target_layers=[module]) as cam:
        out = cam(x, targets=[ClassifierOutputTarget(int(c)) for c in TARGET])
    return torch.from_numpy(out)


def grad_cam_minmax(m: torch.Tensor) -> torch.Tensor:
    """pytorch_grad_cam.utils.image.scale_cam_image's normalisation, per image."""
    m = m - m.flatten(1).amin(dim=1).view(-1, 1, 1)
    return m / (1e-7 + m.flatten(1).amax(dim=1).view(-1, 1, 1))


def grad_cam_postprocess(layer_map: torch.Tensor, size: int) -> torch.Tensor:
    """pytorch-grad-cam's steps after the CAM, in torch: normalise, resize, clip, normalise."""
    scaled = grad_cam_minmax(layer_map)
    resized = nn.functional.interpolate(scaled.unsqueeze(1), size=(size, size), mode="bilinear",
                                        align_corners=False)[:, 0]
    return grad_cam_minmax(resized.clamp_min(0))


@pytest.mark.parametrize("ours, theirs", OURS_VS_GRAD_CAM, ids=CAM_IDS)
@pytest.mark.parametrize("key", ["tiny", "resnet18-layer4", "resnet18-layer3"])
def test_cam_arithmetic_matches_pytorch_grad_cam(ours, theirs, key):
    model, layer, x, module = setup(key)
    expected = library_cam(theirs, model, module, x)
    layer_map = ours(layer=layer).layer_maps(model, x, TARGET)
    torch.testing.assert_close(grad_cam_postprocess(layer_map, x.shape[-1]), expected, rtol=0, atol=2e-5)


@pytest.mark.parametrize("ours, theirs", OURS_VS_GRAD_CAM, ids=CAM_IDS)
@pytest.mark.parametrize("key", ["tiny-loud", "resnet18-layer4", "resnet18-layer3"])
def test_final_maps_match_pytorch_grad_cam_after_min_max(ours, theirs, key):
    model, layer, x, module = setup(key)
    expected = library_cam(theirs, model, module, x)
    maps = ours(layer=layer).explain(model, x, TARGET)
    lows = maps.flatten(1).amin(dim=1).view(-1, 1, 1)
    highs = maps.flatten(1).amax(dim=1).view(-1, 1, 1)
    torch.testing.assert_close((maps - lows) / (highs - lows), expected, rtol=0, atol=2e-5)


@pytest.mark.parametrize("key", ["tiny", "resnet18-layer4", "resnet18-layer3"])
def test_gradcam_matches_captum_layer_grad_cam(key):
    model, layer, x, module = setup(key)
    attribution = captum_attr.LayerGradCam(model, module).attribute(x, target=TARGET, relu_attributions=True)
    expected = captum_attr.LayerAttribution.interpolate(attribution, x.shape[-2:], interpolate_mode="bilinear")[:, 0]
    raw = GradCAM(layer=layer, normalize="none").explain(model, x, TARGET)
    torch.testing.assert_close(raw, expected, rtol=1e-5, atol=1e-9)
    scaled = GradCAM(layer=layer).explain(model, x, TARGET)
    torch.testing.assert_close(scaled, expected / expected.flatten(1).amax(dim=1).view(-1, 1, 1),
                               rtol=1e-5, atol=1e-6)


def captum_reduce(attribution: torch.Tensor, channels: str) -> torch.Tensor:
    if channels == "grey":
        return attribution.sum(dim=1).abs()
    if channels == "max":
        return attribution.abs().amax(dim=1)
    return attribution.abs().sum(dim=1)


@pytest.mark.parametrize("channels", ["grey", "max", "sum"])
@pytest.mark.parametrize("key", ["tiny", "resnet18-layer4"])
def test_saliency_matches_captum(key, channels):
    model, _, x, _ = setup(key)
    expected = captum_reduce(captum_attr.Saliency(model).attribute(x, target=TARGET, abs=False), channels)
    ours = Saliency(channels=channels, normalize="none").explain(model, x, TARGET)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-9)


def our_method(captum_method: str) -> str:
    return captum_method.replace("_", "-").replace("gausslegendre", "gauss-legendre")


@pytest.mark.parametrize("steps", [2, 8, 50])
@pytest.mark.parametrize("method", CAPTUM_METHODS)
def test_quadrature_nodes_match_captum(method, steps):
    step_sizes, alphas = (f(steps) for f in approximation_parameters(method))
    ours_alphas, ours_weights = quadrature(Quadrature(our_method(method)), steps)
    # Captum's Riemann nodes are a float32 linspace: within one float32 ulp of 1.0 (EPS32) of the exact i/(n − 1).
    assert ours_alphas == pytest.approx(alphas, rel=0, abs=EPS32)
    if method == "riemann_trapezoid":  # Captum's trapezoid spacing is 1/n, ours 1/(n − 1) (weights sum to one)
        step_sizes = [s * steps / (steps - 1) for s in step_sizes]
    assert ours_weights == pytest.approx(step_sizes, rel=0, abs=1e-12)
    assert sum(ours_weights) == pytest.approx(1.0, abs=1e-12)


def path_term_sizes(model: nn.Module, x: torch.Tensor, baseline: float, alphas: list[float],
                    weights: list[float], target: torch.Tensor) -> torch.Tensor:
    """Σ_c |x − b|_c Σ_k |w_k · ∂logit/∂x_c(b + α_k(x − b))| per pixel: the size of what both IGs add up."""
    total = torch.zeros_like(x)
    for alpha, weight in zip(alphas, weights):
        point = (baseline + alpha * (x - baseline)).requires_grad_(True)
        (grad,) = torch.autograd.grad(model(point).gather(1, target.view(-1, 1)).sum(), point)
        total += abs(weight) * grad.abs()
    return ((x - baseline).abs() * total).sum(dim=1)


IG_CASES = [*[("tiny", m) for m in CAPTUM_METHODS], ("resnet18-layer4", "gausslegendre"),
            ("resnet18-layer4", "riemann_trapezoid")]


@pytest.mark.parametrize("key, method", IG_CASES)
def test_integrated_gradients_matches_captum(key, method):
    model, _, x, _ = setup(key)
    steps, baseline = 8, 0.25
    attribution = captum_attr.IntegratedGradients(model).attribute(
        x, baselines=baseline, target=TARGET, n_steps=steps, method=method, internal_batch_size=x.shape[0])
    if method == "riemann_trapezoid":
        attribution = attribution * steps / (steps - 1)
    expected = captum_reduce(attribution, "sum")
    explainer = IntegratedGradients(steps=steps, baseline=baseline, method=our_method(method), channels="sum",
                                    normalize="none")
    explainer.alphas = approximation_parameters(method)[1](steps)  # the same path points (see the docstring)
    ours = explainer.explain(model, x, TARGET)
    # Both sides add the same float32 products in other orders. Recursive summation of n terms errs by at
    # most (n − 1)·u·Σ|term| (u = EPS32/2; Higham, Accuracy and Stability, §4.2); the products by the weight
    # and by x − b, the trapezoid rescaling and the sum of 3 channels add ≤ 5u per side. Both sides together:
    # (n + 4)·EPS32·Σ|term|. Worst error / bound measured: 0.22, over ATEN_CPU_CAPABILITY=default/avx2/avx512
    # × ONEDNN_MAX_CPU_ISA=AVX2/native.
    bound = (steps + 4) * EPS32 * path_term_sizes(model, x, baseline, explainer.alphas, explainer.weights, TARGET)
    error = (ours - expected).abs()
    assert (error <= bound).all(), f"worst error / bound = {(error / bound).max().item():.3g}"
    assert ours.abs().amax() > 1e3 * bound.amax()  # the bound is far below the attributions it checks


@pytest.mark.parametrize("key", ["tiny", "resnet18-layer4"])
def test_grey_channel_reduction_is_the_attribution_of_the_grey_image(key):
    # Captum on a model that takes the grey image and repeats it to three channels itself: its
    # attributions are per grey pixel, which is what channels='grey' claims to compute.
    model, _, x, _ = setup(key)

    def grey_model(grey: torch.Tensor) -> torch.Tensor:
        return model(grey.expand(-1, 3, -1, -1))

    grey = x[:, :1]
    saliency = captum_attr.Saliency(grey_model).attribute(grey, target=TARGET, abs=True)[:, 0]
    torch.testing.assert_close(Saliency(normalize="none").explain(model, x, TARGET), saliency,
                               rtol=1e-5, atol=1e-9)
    integrated = captum_attr.IntegratedGradients(grey_model).attribute(grey, target=TARGET, n_steps=6)[:, 0]
    torch.testing.assert_close(IntegratedGradients(steps=6, normalize="none").explain(model, x, TARGET),
                               integrated.abs(), rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("key", ["tiny", "resnet18-layer4"])
def test_smoothgrad_matches_captum_noise_tunnel(key):
    model, _, x, _ = setup(key)
    samples, sigma, seed = 5, 0.2, 7
    expected = []
    for i in range(x.shape[0]):
        torch.manual_seed(seed)
        attribution = captum_attr.NoiseTunnel(captum_attr.Saliency(model)).attribute(
            x[i:i + 1], nt_type="smoothgrad", nt_samples=samples, stdevs=sigma, target=int(TARGET[i]), abs=True)
        expected.append(attribution.sum(dim=1))
    ours = SmoothGrad(samples=samples, sigma=sigma, seed=seed, channels="sum", normalize="none")
    torch.testing.assert_close(ours.explain(model, x, TARGET), torch.cat(expected), rtol=1e-4, atol=1e-8)
