"""Grad-CAM variants: Grad-CAM++, HiResCAM and LayerCAM, each one override of the CAM template."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robustbench_us import ExplainerSpec, hookimpl
from robustbench_us_plugins.gradcam import ActivationCAM

# Keeps Grad-CAM++'s weights finite where the denominator vanishes; the value pytorch-grad-cam uses.
_PLUSPLUS_EPS = 1e-6


class GradCAMPlusPlus(ActivationCAM):
    """Grad-CAM++ (Chattopadhay et al., WACV 2018): pixel-wise weighted positive gradients per channel.

    Uses the closed form of the paper's eq. 19 (higher derivatives of the
    exponentiated score written as powers of the first gradient), as
    pytorch-grad-cam does.
    """

    name = "gradcam++"

    def combine(self, activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        grad2 = grad.pow(2)
        grad3 = grad2 * grad
        activation_sum = activation.sum(dim=(2, 3), keepdim=True)
        alpha = grad2 / (2 * grad2 + activation_sum * grad3 + _PLUSPLUS_EPS)
        alpha = torch.where(grad != 0, alpha, torch.zeros_like(alpha))
        weights = (F.relu(grad) * alpha).sum(dim=(2, 3), keepdim=True)
        return (weights * activation).sum(dim=1)


class HiResCAM(ActivationCAM):
    """HiResCAM (Draelos & Carin 2020): activations times gradients element-wise, summed over channels."""

    name = "hirescam"

    def combine(self, activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return (grad * activation).sum(dim=1)


class LayerCAM(ActivationCAM):
    """LayerCAM (Jiang et al., IEEE TIP 2021): activations weighted by their positive gradients, pixel by pixel."""

    name = "layercam"

    def combine(self, activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return (F.relu(grad) * activation).sum(dim=1)


def make_gradcam_plusplus(*, layer: str | None = None, normalize: str = "max") -> GradCAMPlusPlus:
    """Grad-CAM++: positive gradients weighted pixel by pixel, on the model's CAM layer."""
    return GradCAMPlusPlus(layer=layer, normalize=normalize)


def make_hirescam(*, layer: str | None = None, normalize: str = "max") -> HiResCAM:
    """HiResCAM: element-wise gradient × activation on the model's CAM layer (faithful to the logit)."""
    return HiResCAM(layer=layer, normalize=normalize)


def make_layercam(*, layer: str | None = None, normalize: str = "max") -> LayerCAM:
    """LayerCAM: activations weighted by positive gradients position by position, on the model's CAM layer."""
    return LayerCAM(layer=layer, normalize=normalize)


@hookimpl
def register_explainers(register):
    defaults = {"layer": None, "normalize": "max"}
    register(ExplainerSpec(name="gradcam++", factory=make_gradcam_plusplus, differentiable=True, options=defaults))
    register(ExplainerSpec(name="hirescam", factory=make_hirescam, differentiable=True, options=dict(defaults)))
    register(ExplainerSpec(name="layercam", factory=make_layercam, differentiable=True, options=dict(defaults)))
