"""Grad-CAM, batched and in pure torch, on the layer the model declares."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_us import ExplainerSpec, hookimpl


class GradCAM:
    """Grad-CAM (Selvaraju et al., ICCV 2017): ReLU of gradient-weighted activations, upsampled to the input.

    The activation is captured with a forward hook that is removed after every call,
    and the gradient is taken with ``torch.autograd.grad`` so the map stays on the
    input's device and, with ``create_graph=True``, can itself be differentiated.
    """

    differentiable = True

    def explain(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                create_graph: bool = False) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        handle = model.cam_layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            with torch.enable_grad():
                inputs = x if x.requires_grad else x.detach().requires_grad_(True)
                logits = model(inputs)
                activation = captured[-1]
                score = logits.gather(1, target.view(-1, 1).to(logits.device)).sum()
                (grad,) = torch.autograd.grad(score, activation, create_graph=create_graph)
        finally:
            handle.remove()
        weights = grad.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * activation).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return cam if create_graph else cam.detach()


def make_gradcam() -> GradCAM:
    """Grad-CAM on the model's declared layer (the study's explainer)."""
    return GradCAM()


@hookimpl
def register_explainers(register):
    register(ExplainerSpec(name="gradcam", factory=make_gradcam, differentiable=True))
