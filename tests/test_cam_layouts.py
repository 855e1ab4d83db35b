"""CAMs of channels-last (Swin) and token (ViT) models, checked against pytorch-grad-cam.

pytorch-grad-cam handles these architectures with a ``reshape_transform`` applied
to both the activation and the gradient of the target layer: a permutation for
Swin's ``[N, h, w, C]`` maps, and dropping the class token and laying the rest on
the patch grid for ViT. Our explainers do the same from the model's declared
``cam_layout`` and ``cam_grid``; here the two are compared on small seeded timm
models (the CAM arithmetic at layer resolution, with pytorch-grad-cam's
post-processing reproduced as in ``test_explainers_reference``).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustbench_us.errors import ContractError
from robustbench_us.plugins import default_registry
from robustbench_us_plugins.cams import GradCAMPlusPlus, HiResCAM, LayerCAM
from robustbench_us_plugins.gradcam import GradCAM, to_nchw
from tests.test_explainers import images
from tests.test_explainers import one_thread  # noqa: F401  (autouse: one intra-op thread)
from tests.test_explainers_reference import grad_cam_postprocess

pytest.importorskip("timm")
pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

SIZE = 64
TARGET = torch.tensor([0, 1, 1])
SMALL = {
    "swin": ("timm:swin_tiny_patch4_window7_224",
             {"embed_dim": 24, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1), "window_size": 4}),
    "vit-cls": ("timm:vit_tiny_patch16_224", {"depth": 2}),
    "vit-avg-registers": ("timm:vit_tiny_patch16_224", {"depth": 2, "global_pool": "avg", "reg_tokens": 2}),
}
PAIRS = [(GradCAM, pytorch_grad_cam.GradCAM), (GradCAMPlusPlus, pytorch_grad_cam.GradCAMPlusPlus),
         (HiResCAM, pytorch_grad_cam.HiResCAM), (LayerCAM, pytorch_grad_cam.LayerCAM)]


def small_model(key: str) -> nn.Module:
    name, kwargs = SMALL[key]
    torch.manual_seed(0)
    model = default_registry().create("model", name, input_size=SIZE, timm_kwargs=kwargs).eval()
    with torch.no_grad():  # CAMs of O(1e-1), far above pytorch-grad-cam's 1e-7 normalisation guard
        model.head.weight.mul_(100)
    return model


def library_reshape(model: nn.Module):
    """pytorch-grad-cam's reshape_transform for this model, written from its documentation."""
    if model.cam_layout == "nhwc":
        return lambda t: t.permute(0, 3, 1, 2)
    h, w = model.cam_grid
    prefix = model.backbone.num_prefix_tokens
    return lambda t: t[:, prefix:, :].reshape(t.size(0), h, w, t.size(2)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=[ours.name for ours, _ in PAIRS])
@pytest.mark.parametrize("key", list(SMALL))
def test_cams_of_transformers_match_pytorch_grad_cam(key, ours, theirs):
    model = small_model(key)
    x = images(3, SIZE)
    with theirs(model=model, target_layers=[model.cam_layer], reshape_transform=library_reshape(model)) as cam:
        expected = torch.from_numpy(cam(x, targets=[ClassifierOutputTarget(int(c)) for c in TARGET]))
    layer_map = ours().layer_maps(model, x, TARGET)
    assert layer_map.shape[1:] == ((2, 2) if key == "swin" else (4, 4))
    assert float(layer_map.amax()) > 1e-3  # a map with signal, not an all-zero one
    torch.testing.assert_close(grad_cam_postprocess(layer_map, SIZE), expected, rtol=0, atol=1e-4)


def test_layouts_and_cam_layers_are_declared():
    swin, vit, vit_avg = (small_model(key) for key in SMALL)
    assert swin.cam_layout == "nhwc" and not hasattr(swin, "cam_grid")
    # The class-token head gives the final norm's patch tokens no gradient: the last block's norm1 is hooked.
    assert vit.cam_layout == "nlc" and vit.cam_grid == (4, 4)
    assert vit.cam_layer is vit.backbone.blocks[-1].norm1
    assert vit_avg.cam_layout == "nlc" and vit_avg.cam_grid == (4, 4) and vit_avg.backbone.num_prefix_tokens == 3
    assert vit_avg.cam_layer is vit_avg.backbone.blocks[-1]


def test_final_norm_of_a_class_token_vit_would_give_empty_maps():
    """Why the hook moves: Grad-CAM on the final norm of a class-token ViT is zero everywhere."""
    vit = small_model("vit-cls")
    maps = GradCAM(layer="backbone.norm", normalize="none").layer_maps(vit, images(2, SIZE), TARGET[:2])
    assert torch.count_nonzero(maps) == 0
    assert torch.count_nonzero(GradCAM(normalize="none").layer_maps(vit, images(2, SIZE), TARGET[:2])) > 0


def test_explanation_attack_gradients_flow_through_token_cams():
    vit = small_model("vit-cls")
    x = images(2, SIZE).requires_grad_(True)
    maps = GradCAM().explain(vit, x, TARGET[:2], create_graph=True)
    (grad,) = torch.autograd.grad(maps[:, :32, :32].sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_token_layout_errors_name_the_fix():
    tokens = torch.zeros(2, 17, 8)
    with pytest.raises(ContractError, match="cam_grid"):
        to_nchw(tokens, None, None, "gradcam")
    with pytest.raises(ContractError, match="fewer than"):
        to_nchw(tokens, None, (5, 5), "gradcam")
    with pytest.raises(ContractError, match="layout is 'nhwc'"):
        to_nchw(tokens, "nhwc", None, "gradcam")
    grid = torch.arange(2 * 16 * 8, dtype=torch.float32).reshape(2, 16, 8)
    laid = to_nchw(torch.cat([torch.zeros(2, 1, 8), grid], dim=1), None, (4, 4), "gradcam")
    assert laid.shape == (2, 8, 4, 4) and torch.equal(laid[1, :, 2, 3], grid[1, 2 * 4 + 3])


def test_an_unknown_declared_layout_is_refused():
    vit = small_model("vit-cls")
    vit.cam_layout = "nwhc"
    with pytest.raises(ContractError, match="cam_layout='nwhc'"):
        GradCAM().explain(vit, images(1, SIZE), TARGET[:1])
