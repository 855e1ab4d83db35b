"""The reference attack: the fast gradient sign method (one L∞ step)."""

from __future__ import annotations

import torch
from torch import nn

from robustbench_us import AttackSpec, AttackTarget, Norm, hookimpl
from robustbench_us.attack_utils import check_eps, check_region, cross_entropy_gradient, gradient_steps, region_weights


class FGSM:
    """FGSM (Goodfellow et al., ICLR 2015): ``clip(x + ε·sign(∇x CE(f(x), y)), 0, 1)``.

    Matches ART's ``FastGradientMethod(norm=inf, eps=ε, eps_step=ε, num_random_init=0)``;
    a pixel whose gradient is exactly 0 does not move (``sign(0) = 0`` in both).
    """

    norm = Norm.LINF
    target = AttackTarget.LABEL

    def __init__(self, eps: float, *, region: str = "all") -> None:
        self.eps = check_eps(eps, attack="fgsm")
        self.region = check_region(region, attack="fgsm")

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, explainer=None,
                mask: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        x = x.detach()
        return gradient_steps(x, cross_entropy_gradient(model, y), norm=self.norm, eps=self.eps,
                              step_size=self.eps, steps=1, region=region_weights(mask, x))


def make_fgsm(*, eps: float = 1 / 255, region: str = "all") -> FGSM:
    """Fast gradient sign method: one signed step of size ε (L∞)."""
    return FGSM(eps, region=region)


@hookimpl
def register_attacks(register):
    register(AttackSpec(name="fgsm", factory=make_fgsm, norm=Norm.LINF, eps=1 / 255, target=AttackTarget.LABEL,
                        options={"region": "all"}))
