"""Building blocks every attack shares: region masks, ε-ball projection and the gradient step loop.

All functions are batched, pure torch and stay on the input's device. A step follows
the order ART uses (step, clip to [0, 1], project onto the ε-ball), so attacks built
from these pieces reproduce ART's FGM and BIM to float tolerance.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_us.errors import AttackError, ContractError
from robustbench_us.specs import Norm

GradientFn = Callable[[torch.Tensor], torch.Tensor]
REGIONS = ("all", "inside", "outside")


def check_region(region: str, *, attack: str) -> str:
    """Validate the ``region`` option ('all', 'inside' or 'outside' the lesion)."""
    if region not in REGIONS:
        raise AttackError(f"attack {attack!r}: region={region!r} is not one of {', '.join(REGIONS)}. "
                          "The runner passes the lesion mask for 'inside' and its complement for 'outside'.")
    return region


def check_positive(value: float, name: str, *, attack: str) -> float:
    """A strictly positive float option, or a clear error."""
    value = float(value)
    if not value > 0:
        raise AttackError(f"attack {attack!r}: {name}={value} must be > 0.")
    return value


def check_eps(eps: float, *, attack: str) -> float:
    """ε as a float in [0, 1] pixel units, or a clear error."""
    eps = float(eps)
    if not 0.0 <= eps <= 1.0:
        raise AttackError(f"attack {attack!r}: eps={eps} is outside [0, 1] pixel units "
                          f"(1 grey level is 1/255 = {1 / 255:.5f}).")
    return eps


def region_weights(mask: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """The region an attack may change, as ``[N, 1, H, W]`` of 0/1 in ``x``'s dtype and device.

    ``mask`` is bool or float, ``[N, H, W]`` or ``[N, 1, H, W]`` (or ``[H, W]`` for the
    whole batch); nonzero means "may be perturbed". ``None`` means everywhere.
    """
    if mask is None:
        return None
    n, _, h, w = x.shape
    m = mask
    if m.dim() == 2:
        m = m.unsqueeze(0).expand(n, h, w)
    if m.dim() == 3:
        m = m.unsqueeze(1)
    if m.dim() != 4 or m.shape[1] != 1 or m.shape[-2:] != (h, w) or m.shape[0] not in (1, n):
        raise ContractError(f"region mask of shape {tuple(mask.shape)} does not fit images {tuple(x.shape)}: "
                            f"pass [N, H, W] or [N, 1, H, W] with N={n}, H={h}, W={w}.")
    return (m.to(device=x.device) != 0).to(x.dtype).expand(n, 1, h, w)


def per_sample_norm(delta: torch.Tensor, norm: Norm | str) -> torch.Tensor:
    """The size of each image's perturbation, ``[N]``, in ``norm`` (L∞ or L2)."""
    flat = delta.reshape(delta.shape[0], -1)
    if Norm(norm) == Norm.L2:
        return flat.norm(p=2, dim=1)
    return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(flat.shape[0])


def project(delta: torch.Tensor, norm: Norm | str, eps: float) -> torch.Tensor:
    """Project each image's perturbation onto the ε-ball of ``norm`` (identity for ``Norm.NONE``)."""
    norm = Norm(norm)
    if norm == Norm.LINF:
        return delta.clamp(-eps, eps)
    if norm == Norm.L2:
        size = per_sample_norm(delta, norm).view(-1, *([1] * (delta.dim() - 1)))
        factor = torch.where(size > eps, eps / size.clamp_min(1e-12), torch.ones_like(size))
        return delta * factor
    return delta


def step_direction(grad: torch.Tensor, norm: Norm | str) -> torch.Tensor:
    """The steepest-ascent direction of unit size in ``norm``: sign(g) for L∞, g/‖g‖₂ for L2.

    ``torch.sign(0) = 0``, as in ART, so a pixel with zero gradient does not move.
    """
    if Norm(norm) == Norm.L2:
        size = per_sample_norm(grad, Norm.L2).view(-1, *([1] * (grad.dim() - 1)))
        return grad / torch.where(size > 0, size, torch.ones_like(size))
    return grad.sign()


def apply_step(x_adv: torch.Tensor, x: torch.Tensor, direction: torch.Tensor, *, step_size: float | torch.Tensor,
               norm: Norm | str, eps: float) -> torch.Tensor:
    """One step in ART's order: ``x_adv + step·direction``, clip to [0, 1], project onto the ε-ball around ``x``."""
    moved = (x_adv + step_size * direction).clamp(0.0, 1.0)
    return x + project(moved - x, norm, eps)


def finish(x_adv: torch.Tensor, x: torch.Tensor, norm: Norm | str, eps: float,
           region: torch.Tensor | None = None) -> torch.Tensor:
    """The returned image: restricted to the region, inside the ε-ball and [0, 1], detached, in ``x``'s dtype."""
    delta = x_adv.detach().to(x.dtype) - x
    if region is not None:
        delta = delta * region
    return (x + project(delta, norm, eps)).clamp(0.0, 1.0)


def _random(shape: torch.Size, x: torch.Tensor, generator: torch.Generator | None, kind: str) -> torch.Tensor:
    """Uniform [0, 1) or standard normal noise drawn on the generator's device, moved to ``x``'s."""
    device = generator.device if generator is not None else x.device
    draw = torch.rand if kind == "uniform" else torch.randn
    return draw(shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def random_signs(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A tensor of ±1 shaped like ``x``, seeded by ``generator``."""
    return (_random(x.shape, x, generator, "uniform") < 0.5).to(x.dtype) * 2 - 1


def random_start(x: torch.Tensor, norm: Norm | str, eps: float, *, region: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """A uniform random point of the ε-ball around ``x`` (restricted to the region), clipped to [0, 1]."""
    norm = Norm(norm)
    if norm == Norm.L2:
        direction = _random(x.shape, x, generator, "normal")
        direction = direction / per_sample_norm(direction, Norm.L2).clamp_min(1e-12).view(-1, 1, 1, 1)
        dims = x[0].numel()
        radius = eps * _random(torch.Size([x.shape[0]]), x, generator, "uniform") ** (1.0 / dims)
        noise = direction * radius.view(-1, 1, 1, 1)
    else:
        noise = (2 * _random(x.shape, x, generator, "uniform") - 1) * eps
    if region is not None:
        noise = noise * region
    return (x + noise).clamp(0.0, 1.0)


def cross_entropy_gradient(model: nn.Module, y: torch.Tensor) -> GradientFn:
    """∇x of the summed cross-entropy of ``model`` on labels ``y``: each image's gradient ignores the batch."""
    labels = y.long()

    def gradient(x_adv: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            inputs = x_adv.detach().requires_grad_(True)
            loss = F.cross_entropy(model(inputs), labels.to(inputs.device), reduction="sum")
            (grad,) = torch.autograd.grad(loss, inputs)
        return grad

    return gradient


def gradient_steps(x: torch.Tensor, gradient: GradientFn, *, norm: Norm | str, eps: float, step_size: float,
                   steps: int, region: torch.Tensor | None = None, start: torch.Tensor | None = None) -> torch.Tensor:
    """The shared loop: ``steps`` ascent steps on ``gradient`` inside the ε-ball, from ``start`` (default ``x``).

    The region zeroes the gradient outside it (as ART's ``mask``), so pixels outside never move.
    """
    x_adv = x if start is None else start
    for _ in range(steps):
        grad = gradient(x_adv)
        if region is not None:
            grad = grad * region
        x_adv = apply_step(x_adv, x, step_direction(grad, norm), step_size=step_size, norm=norm, eps=eps)
    return finish(x_adv, x, norm, eps, region)


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The predicted class of each image, ``[N]`` long, without building a graph."""
    with torch.no_grad():
        return model(x).argmax(dim=1)


def center_of_mass(maps: torch.Tensor) -> torch.Tensor:
    """Centre of mass ``[N, 2]`` (row, column, in pixels) of non-negative maps ``[N, H, W]``.

    An all-zero map has its centre at the image centre. Differentiable.
    """
    n, h, w = maps.shape
    weights = maps.clamp_min(0).reshape(n, -1)
    total = weights.sum(dim=1, keepdim=True)
    uniform = torch.full_like(weights, 1.0 / (h * w))
    weights = torch.where(total > 0, weights / total.clamp_min(1e-30), uniform)
    rows = torch.arange(h, device=maps.device, dtype=maps.dtype).repeat_interleave(w)
    cols = torch.arange(w, device=maps.device, dtype=maps.dtype).repeat(h)
    return torch.stack([weights @ rows, weights @ cols], dim=1)


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Maps ``[N, H, W]`` scaled to sum to 1 per image (an all-zero map stays zero). Differentiable."""
    total = maps.sum(dim=(1, 2), keepdim=True)
    return maps / total.clamp_min(1e-12)


def topk_mask(maps: torch.Tensor, k: int) -> torch.Tensor:
    """Bool ``[N, H, W]``: the ``k`` largest pixels of each map (ties broken by position)."""
    n = maps.shape[0]
    flat = maps.reshape(n, -1)
    index = flat.topk(k, dim=1).indices
    out = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, index, True)
    return out.view_as(maps)
