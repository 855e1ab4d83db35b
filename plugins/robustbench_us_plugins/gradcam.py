"""Grad-CAM, batched and in pure torch, and the plumbing every explainer here shares.

The class-activation-map family lives in two modules: this one holds the
template (:class:`ActivationCAM` owns the hook, the gradient, the upsampling and
the normalisation) and Grad-CAM itself, the study's explainer; ``cams.py`` holds
the variants, each of which overrides :meth:`ActivationCAM.combine` only.
``gradients.py`` and ``segmentation.py`` reuse the input checks, the eval-mode
guard and the map normalisation defined here, so every explainer of the
reference plugins obeys one contract (see docs/explainers.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_us import ExplainerSpec, hookimpl
from robustbench_us.errors import ContractError, ExplainerError


class MapNormalization(StrEnum):
    """How a map is scaled before it is returned."""

    MAX = "max"    # divide each image's map by its maximum: values in [0, 1], the peak is 1
    NONE = "none"  # the method's raw values (still non-negative)


def parse_option(enum: type[StrEnum], value: Any, explainer: str, option: str) -> Any:
    """``enum(value)``, or an :class:`ExplainerError` that lists the accepted values."""
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(repr(str(member)) for member in enum)
        raise ExplainerError(f"Explainer {explainer!r}: option {option}={value!r} is not one of {choices}. "
                             f"Pick one of them in the suite's explainer options.") from None


def check_batch(explainer: str, x: torch.Tensor, target: torch.Tensor) -> None:
    """Raise :class:`ContractError` unless ``x`` is a float ``[N, C, H, W]`` batch and ``target`` ``[N]`` indices."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ContractError(f"Explainer {explainer!r} takes images as a float tensor [N, 3, H, W] in [0, 1]; "
                            f"got {got}. Batch single images with x.unsqueeze(0).")
    if (not isinstance(target, torch.Tensor) or target.dim() != 1 or target.shape[0] != x.shape[0]
            or target.is_floating_point() or target.is_complex() or target.dtype == torch.bool):
        got = f"{tuple(target.shape)} {target.dtype}" if isinstance(target, torch.Tensor) else type(target).__name__
        raise ContractError(f"Explainer {explainer!r} takes target as a LongTensor [N] of class indices, one per "
                            f"image (N={x.shape[0]}); got {got}. Pass e.g. model(x).argmax(1).")


def target_scores(explainer: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The logit of each image's target class, ``[N]`` (checked against the number of classes)."""
    if logits.dim() != 2 or logits.shape[0] != target.shape[0]:
        raise ContractError(f"Explainer {explainer!r}: the model returned logits of shape {tuple(logits.shape)}; "
                            f"the model contract is [N, num_classes] with N={target.shape[0]}.")
    target = target.to(device=logits.device, dtype=torch.long)
    low, high = int(target.min()), int(target.max())
    if low < 0 or high >= logits.shape[1]:
        raise ContractError(f"Explainer {explainer!r}: target holds class {low if low < 0 else high}, but the model "
                            f"has {logits.shape[1]} classes. Pass class indices in [0, {logits.shape[1] - 1}].")
    return logits.gather(1, target.view(-1, 1)).squeeze(1)


@contextmanager
def eval_mode(model: nn.Module, *, grad: bool = True) -> Iterator[nn.Module]:
    """Put every submodule in eval mode for the block, then restore each one's own flag.

    Explanations are taken of the deployed model: BatchNorm uses its running
    statistics (so a batch gives the same maps as its images one by one and the
    statistics are not updated) and dropout is off. With ``grad`` the block
    also records autograd graphs even when the caller runs under
    ``torch.no_grad()`` or ``torch.inference_mode()``.
    """
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.inference_mode(False), torch.set_grad_enabled(grad):
            yield model
    finally:
        for module, training in flags:
            module.training = training


def gradient_input(x: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """The tensor to differentiate with respect to.

    With ``create_graph`` a caller's ``x`` that requires grad is used as it is,
    so the map stays connected to the caller's graph; otherwise a detached copy
    that requires grad, so the caller's graph is never extended and ``x.grad``
    is never touched. Inference-mode tensors are cloned out of inference mode.
    """
    if x.is_inference():
        with torch.inference_mode(False):
            x = x.clone()
    if create_graph and x.requires_grad:
        return x
    return x.detach().requires_grad_(True)


def normalize_maps(maps: torch.Tensor, how: MapNormalization) -> torch.Tensor:
    """Scale each ``[H, W]`` map of ``maps`` (``[N, H, W]``) as ``how`` says; an all-zero map stays zero."""
    if how is MapNormalization.NONE:
        return maps
    peak = maps.flatten(1).amax(dim=1).clamp_min(torch.finfo(maps.dtype).tiny)
    return maps / peak.view(-1, 1, 1)


def resolve_layer(model: nn.Module, layer: str | None, explainer: str) -> nn.Module:
    """The module a CAM hooks: ``model.cam_layer``, or the submodule named ``layer`` (e.g. ``'layer4'``)."""
    if layer is None:
        module = getattr(model, "cam_layer", None)
        if not isinstance(module, nn.Module):
            raise ExplainerError(f"Explainer {explainer!r}: model {type(model).__name__} has no 'cam_layer' module. "
                                 "Give the model a cam_layer property (see the model contract) or pass the "
                                 "explainer option layer='<submodule name>'.")
        return module
    modules = dict(model.named_modules())
    if layer not in modules:
        names = ", ".join(name for name in modules if name and name.count(".") < 2)
        raise ExplainerError(f"Explainer {explainer!r}: model {type(model).__name__} has no submodule "
                             f"{layer!r}. Top-level names: {names}.")
    return modules[layer]


class CamLayout(StrEnum):
    """How a CAM layer's activation is laid out (a model's optional ``cam_layout``)."""

    NCHW = "nchw"  # convolutional feature maps [N, C, h, w]
    NHWC = "nhwc"  # channels-last feature maps [N, h, w, C] (e.g. timm's Swin)
    NLC = "nlc"    # transformer tokens [N, L, C]: prefix tokens (class, registers) then an h × w patch grid


def layer_layout(model: nn.Module, module: nn.Module, explainer: str) -> tuple[CamLayout, tuple[int, int] | None]:
    """The layout of ``module``'s output and, for tokens, the patch grid ``(h, w)``.

    The model's ``cam_layout`` describes its own ``cam_layer`` (default ``"nchw"``); a
    layer named with the explainer option ``layer`` is read as ``[N, C, h, w]`` when its
    output is 4-D and as tokens on the model's ``cam_grid`` when it is 3-D.
    """
    declared = getattr(model, "cam_layout", None) if module is getattr(model, "cam_layer", None) else None
    try:
        layout = CamLayout(declared) if declared is not None else None
    except ValueError:
        choices = ", ".join(repr(str(member)) for member in CamLayout)
        raise ContractError(f"Explainer {explainer!r}: model {type(model).__name__} declares cam_layout="
                            f"{declared!r}; the model contract allows {choices}.") from None
    grid = getattr(model, "cam_grid", None)
    if grid is not None:
        grid = (int(grid[0]), int(grid[1]))
    return layout, grid


def to_nchw(tensor: torch.Tensor, layout: CamLayout | str | None, grid: tuple[int, int] | None,
            explainer: str) -> torch.Tensor:
    """``tensor`` (an activation or its gradient) as ``[N, C, h, w]``; ``layout=None`` infers it from the rank."""
    layout = CamLayout(layout) if layout is not None else CamLayout.NLC if tensor.dim() == 3 else CamLayout.NCHW
    if tensor.dim() != (3 if layout is CamLayout.NLC else 4):
        raise ContractError(f"Explainer {explainer!r}: the CAM layer returned a tensor of shape "
                            f"{tuple(tensor.shape)}, but the layout is {str(layout)!r}, which is "
                            f"{'[N, L, C]' if layout is CamLayout.NLC else '4-D'}. Fix the model's cam_layout or "
                            "choose another layer with the explainer option layer=... .")
    if layout is CamLayout.NCHW:
        return tensor
    if layout is CamLayout.NHWC:
        return tensor.permute(0, 3, 1, 2)
    if grid is None:
        raise ContractError(f"Explainer {explainer!r}: the CAM layer returned tokens {tuple(tensor.shape)}; "
                            "a CAM needs them on a grid. Give the model a cam_grid = (h, w) attribute (the patch "
                            "grid; leading extra tokens such as the class token are dropped).")
    patches = grid[0] * grid[1]
    if tensor.shape[1] < patches:
        raise ContractError(f"Explainer {explainer!r}: the CAM layer returned {tensor.shape[1]} tokens, fewer "
                            f"than the model's cam_grid {grid} has patches ({patches}).")
    tokens = tensor[:, tensor.shape[1] - patches:]
    return tokens.reshape(tensor.shape[0], grid[0], grid[1], tensor.shape[2]).permute(0, 3, 1, 2)


@contextmanager
def capture_output(module: nn.Module, explainer: str) -> Iterator[list[torch.Tensor]]:
    """Collect ``module``'s outputs during the block; the hook is removed on exit, even on error."""
    outputs: list[torch.Tensor] = []

    def keep(_module: nn.Module, _inputs: Any, output: Any) -> None:
        if not isinstance(output, torch.Tensor) or output.dim() not in (3, 4):
            got = f"{type(output).__name__} {tuple(output.shape)}" if isinstance(output, torch.Tensor) \
                else type(output).__name__
            raise ContractError(f"Explainer {explainer!r}: the CAM layer {type(_module).__name__} returned "
                                f"{got}; a CAM needs a feature map [N, C, h, w] (or [N, h, w, C], or tokens "
                                "[N, L, C], as the model's cam_layout says). "
                                "Choose another layer with the explainer option layer=... .")
        outputs.append(output)

    handle = module.register_forward_hook(keep)
    try:
        yield outputs
    finally:
        handle.remove()


class ActivationCAM:
    """Template of the class-activation-map family: a map from one layer's activation and gradient.

    The base owns the bookkeeping: it hooks the layer for one forward pass
    (removing the hook afterwards), differentiates the target logits with
    ``torch.autograd.grad`` (so no ``.grad`` of the model or of ``x`` is
    touched), brings both to ``[N, C, h, w]`` as the model's ``cam_layout`` says
    (channels-last maps are permuted; tokens lose their prefix and are laid on
    ``cam_grid``, as pytorch-grad-cam's ``reshape_transform`` does), upsamples bilinearly to the input (``align_corners=False``, the
    same grid as OpenCV's ``INTER_LINEAR`` and Captum's ``interpolate``) and
    normalises. A variant overrides :meth:`combine` only.
    """

    name = "cam"
    differentiable = True

    def __init__(self, *, layer: str | None = None, normalize: str = "max") -> None:
        self.layer = layer
        self.normalize = parse_option(MapNormalization, normalize, self.name, "normalize")

    def combine(self, activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """The map ``[N, h, w]`` at the layer's resolution, before the final ReLU."""
        raise NotImplementedError

    def layer_maps(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                   create_graph: bool = False) -> torch.Tensor:
        """Non-negative maps ``[N, h, w]`` at the layer's resolution (before upsampling and normalisation)."""
        check_batch(self.name, x, target)
        layer = resolve_layer(model, self.layer, self.name)
        layout, grid = layer_layout(model, layer, self.name)
        with eval_mode(model), capture_output(layer, self.name) as outputs:
            logits = model(gradient_input(x, create_graph))
            if len(outputs) != 1:
                raise ContractError(f"Explainer {self.name!r}: the CAM layer {type(layer).__name__} ran "
                                    f"{len(outputs)} times in one forward pass; a CAM needs exactly one. "
                                    "Choose a layer the model calls once (explainer option layer=...).")
            activation = outputs[0]
            scores = target_scores(self.name, logits, target)
            (grad,) = torch.autograd.grad(scores.sum(), activation, create_graph=create_graph)
            if not create_graph:
                activation = activation.detach()
            activation, grad = (to_nchw(t, layout, grid, self.name) for t in (activation, grad))
            with torch.set_grad_enabled(create_graph):
                return F.relu(self.combine(activation, grad))

    def explain(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                create_graph: bool = False) -> torch.Tensor:
        """Maps ``[N, H, W]`` for class ``target[i]`` of image ``x[i]``, on ``x``'s device."""
        cam = self.layer_maps(model, x, target, create_graph=create_graph)
        with torch.inference_mode(False), torch.set_grad_enabled(create_graph):
            maps = F.interpolate(cam.unsqueeze(1), size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            return normalize_maps(maps, self.normalize)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layer={self.layer!r}, normalize={str(self.normalize)!r})"


class GradCAM(ActivationCAM):
    """Grad-CAM (Selvaraju et al., ICCV 2017): activations weighted by their spatially averaged gradient."""

    name = "gradcam"

    def combine(self, activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        weights = grad.mean(dim=(2, 3), keepdim=True)
        return (weights * activation).sum(dim=1)


def make_gradcam(*, layer: str | None = None, normalize: str = "max") -> GradCAM:
    """Grad-CAM on the model's declared layer (the study's explainer)."""
    return GradCAM(layer=layer, normalize=normalize)


@hookimpl
def register_explainers(register):
    register(ExplainerSpec(name="gradcam", factory=make_gradcam, differentiable=True,
                           options={"layer": None, "normalize": "max"}))
