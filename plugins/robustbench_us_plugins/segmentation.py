"""The multi-task model's own lesion mask, used as an explanation map."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_us import ExplainerSpec, hookimpl
from robustbench_us.errors import ContractError
from robustbench_us_plugins.gradcam import (ExplainerError, MapNormalization, check_batch, eval_mode,
                                            gradient_input, normalize_maps, parse_option)


class NoSegmentationHeadError(ExplainerError):
    """The ``segmentation`` explainer was asked to explain a model without a segmentation head."""


class SegmentationMap:
    """The sigmoid of the model's lesion-mask logits, ``sigmoid(model.segment(x))``, as the map.

    It lets the benchmark ask whether the segmentation head is harder to move
    than Grad-CAM. The map does not depend on ``target`` (the mask is
    class-agnostic); ``target`` is still checked so every explainer takes the
    same arguments. With ``normalize='none'`` the map is the lesion probability.
    """

    name = "segmentation"
    differentiable = True

    def __init__(self, *, normalize: str = "max") -> None:
        self.normalize = parse_option(MapNormalization, normalize, self.name, "normalize")

    def explain(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                create_graph: bool = False) -> torch.Tensor:
        """Maps ``[N, H, W]``: the lesion probability per pixel, on ``x``'s device."""
        check_batch(self.name, x, target)
        if not getattr(model, "has_segmentation", False) or not callable(getattr(model, "segment", None)):
            raise NoSegmentationHeadError(
                f"Explainer 'segmentation' needs a model with a segmentation head, but "
                f"{type(model).__name__} has has_segmentation={getattr(model, 'has_segmentation', None)!r}. "
                "Use a multi-task model (e.g. 'resnet50-mtl') or drop this explainer for this model.")
        with eval_mode(model, grad=create_graph):
            inputs = gradient_input(x, True) if create_graph else x
            logits = model.segment(inputs)
            if logits.dim() != 4 or logits.shape[0] != x.shape[0] or logits.shape[1] != 1:
                raise ContractError(f"Explainer 'segmentation': {type(model).__name__}.segment returned shape "
                                    f"{tuple(logits.shape)}; the model contract is mask logits [N, 1, H, W].")
            if logits.shape[-2:] != x.shape[-2:]:
                logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
            return normalize_maps(torch.sigmoid(logits[:, 0]), self.normalize)

    def __repr__(self) -> str:
        return f"SegmentationMap(normalize={str(self.normalize)!r})"


def make_segmentation(*, normalize: str = "max") -> SegmentationMap:
    """The model's own lesion mask (sigmoid of its segmentation head) as the map; needs a multi-task model."""
    return SegmentationMap(normalize=normalize)


@hookimpl
def register_explainers(register):
    register(ExplainerSpec(name="segmentation", factory=make_segmentation, differentiable=True,
                           requires_segmentation=True,
                           options={"normalize": "max"}))
