"""Fast gradient sign method: one signed-gradient step of size ε."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_us import AttackSpec, AttackTarget, Norm, hookimpl


class FGSM:
    """FGSM (Goodfellow et al., ICLR 2015): ``x + ε·sign(∇x CE(f(x), y))``, clipped to [0, 1]."""

    norm = Norm.LINF
    target = AttackTarget.LABEL

    def __init__(self, eps: float) -> None:
        self.eps = float(eps)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, explainer=None,
                mask: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        with torch.enable_grad():
            inputs = x.detach().clone().requires_grad_(True)
            loss = F.cross_entropy(model(inputs), y)
            (grad,) = torch.autograd.grad(loss, inputs)
        step = self.eps * grad.sign()
        if mask is not None:
            step = step * mask.to(step.dtype).view(step.shape[0], 1, *step.shape[-2:])
        return (x.detach() + step).clamp(0.0, 1.0)


def make_fgsm(*, eps: float = 1 / 255) -> FGSM:
    """Fast gradient sign method: one signed step of size ε (L∞)."""
    return FGSM(eps)


@hookimpl
def register_attacks(register):
    register(AttackSpec(name="fgsm", factory=make_fgsm, norm=Norm.LINF, eps=1 / 255, target=AttackTarget.LABEL))
