"""Prediction attacks after the reference FGSM: I-FGSM (the study's), PGD (L∞ and L2), the random-sign control."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_us import AttackSpec, AttackTarget, Norm, hookimpl
from robustbench_us.attack_utils import (AttackError, check_eps, check_positive, check_region,
                                         cross_entropy_gradient, finish, gradient_steps, random_signs, random_start,
                                         region_weights)

PRESETS = ("paper",)
PAPER_EPS = 1 / 255
PAPER_STEPS = 25
PAPER_STEP_FRACTION = 0.1  # of ε per step: 0.1 grey level per step at ε = 1 grey level


class IterativeFGSM:
    """I-FGSM / BIM (Kurakin et al., 2017): ``steps`` signed steps of ``step_size``, projected onto the L∞ ε-ball.

    No random start; matches ART's ``BasicIterativeMethod(eps=ε, eps_step=step_size,
    max_iter=steps)``. The study (Rasaee & Rivaz 2021) reports "ε = 0.1, 25 iterations,
    largest change 1 grey level"; the ``paper`` preset reads that as an L∞ budget of
    1 grey level (ε = 1/255) reached by 25 steps of 0.1 grey level (0.1/255).
    """

    norm = Norm.LINF
    target = AttackTarget.LABEL

    def __init__(self, eps: float, *, steps: int = PAPER_STEPS, step_size: float | None = None,
                 region: str = "all") -> None:
        self.eps = check_eps(eps, attack="ifgsm")
        self.steps = int(check_positive(steps, "steps", attack="ifgsm"))
        self.step_size = PAPER_STEP_FRACTION * self.eps if step_size is None else float(step_size)
        self.region = check_region(region, attack="ifgsm")

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, explainer=None,
                mask: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        x = x.detach()
        return gradient_steps(x, cross_entropy_gradient(model, y), norm=self.norm, eps=self.eps,
                              step_size=self.step_size, steps=self.steps, region=region_weights(mask, x))


class PGD:
    """PGD (Madry et al., ICLR 2018): random start in the ε-ball, then projected steepest-ascent steps.

    L∞ steps are signed; L2 steps follow the gradient normalised to unit L2 length.
    With ``restarts > 1`` each image keeps the run that misclassifies it, else the
    one with the highest loss.
    """

    target = AttackTarget.LABEL

    def __init__(self, eps: float, *, norm: Norm, steps: int = 10, step_size: float | None = None,
                 random_start: bool = True, restarts: int = 1, region: str = "all") -> None:
        self.norm = Norm(norm)
        name = "pgd" if self.norm == Norm.LINF else "pgd-l2"
        self.eps = check_eps(eps, attack=name) if self.norm == Norm.LINF else float(eps)
        if self.eps < 0:
            raise AttackError(f"attack {name!r}: eps={self.eps} must be >= 0.")
        self.steps = int(check_positive(steps, "steps", attack=name))
        self.step_size = 2.5 * self.eps / self.steps if step_size is None else float(step_size)
        self.random_start = bool(random_start)
        self.restarts = int(check_positive(restarts, "restarts", attack=name))
        self.region = check_region(region, attack=name)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, explainer=None,
                mask: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        x = x.detach()
        region = region_weights(mask, x)
        gradient = cross_entropy_gradient(model, y)
        best, best_score = x, None
        for _ in range(self.restarts):
            start = random_start(x, self.norm, self.eps, region=region, generator=generator) \
                if self.random_start else x
            x_adv = gradient_steps(x, gradient, norm=self.norm, eps=self.eps, step_size=self.step_size,
                                   steps=self.steps, region=region, start=start)
            if self.restarts == 1:
                return x_adv
            with torch.no_grad():
                logits = model(x_adv)
                # Misclassified images score above any loss value, so they win every comparison.
                score = F.cross_entropy(logits, y.long(), reduction="none") \
                    + (logits.argmax(1) != y).to(logits.dtype) * 1e6
            if best_score is None:
                best, best_score = x_adv, score
            else:
                better = score > best_score
                best = torch.where(better.view(-1, 1, 1, 1), x_adv, best)
                best_score = torch.where(better, score, best_score)
        return best


class RandomSign:
    """Random-sign control (Ghorbani et al., AAAI 2019): ``clip(x + ε·s, 0, 1)``, ``s`` uniform in {−1, +1}.

    Same L∞ size as FGSM but no gradient: the yardstick that tells an attack's effect
    from the effect of any noise of that size. Seeded by the ``generator`` passed to ``perturb``.
    """

    norm = Norm.LINF
    target = AttackTarget.NONE

    def __init__(self, eps: float, *, region: str = "all") -> None:
        self.eps = check_eps(eps, attack="random-sign")
        self.region = check_region(region, attack="random-sign")

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, explainer=None,
                mask: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        x = x.detach()
        return finish(x + self.eps * random_signs(x, generator), x, self.norm, self.eps, region_weights(mask, x))


def make_ifgsm(*, eps: float = PAPER_EPS, steps: int = PAPER_STEPS, step_size: float | None = None,
               preset: str | None = None, region: str = "all") -> IterativeFGSM:
    """Iterative FGSM (BIM): 25 signed steps of ε/10 projected onto the L∞ ε-ball by default.

    ``preset="paper"`` fixes the study's reading: 25 steps of 0.1·ε (at the default
    ε = 1/255: steps of 0.1 grey level, largest change 1 grey level); it refuses a
    conflicting ``steps`` or ``step_size``.
    """
    if preset is not None:
        if preset not in PRESETS:
            raise AttackError(f"attack 'ifgsm': unknown preset {preset!r}. Available: {', '.join(PRESETS)}.")
        if steps != PAPER_STEPS or step_size is not None:
            raise AttackError("attack 'ifgsm': preset='paper' fixes steps=25 and step_size=0.1·eps; "
                              "drop steps/step_size or drop the preset.")
    return IterativeFGSM(eps, steps=steps, step_size=step_size, region=region)


def make_ifgsm_paper(*, eps: float = PAPER_EPS, region: str = "all") -> IterativeFGSM:
    """The study's I-FGSM: ε = 1/255 (1 grey level) reached by 25 steps of 0.1/255."""
    return make_ifgsm(eps=eps, preset="paper", region=region)


def make_pgd(*, eps: float = 1 / 255, steps: int = 10, step_size: float | None = None, random_start: bool = True,
             restarts: int = 1, region: str = "all") -> PGD:
    """PGD, L∞: uniform random start in the ε-ball, then signed steps of 2.5·ε/steps (default)."""
    return PGD(eps, norm=Norm.LINF, steps=steps, step_size=step_size, random_start=random_start,
               restarts=restarts, region=region)


def make_pgd_l2(*, eps: float = 0.5, steps: int = 10, step_size: float | None = None, random_start: bool = True,
                restarts: int = 1, region: str = "all") -> PGD:
    """PGD, L2: uniform random start in the L2 ε-ball, then normalised-gradient steps of 2.5·ε/steps."""
    return PGD(eps, norm=Norm.L2, steps=steps, step_size=step_size, random_start=random_start,
               restarts=restarts, region=region)


def make_random_sign(*, eps: float = 1 / 255, region: str = "all") -> RandomSign:
    """Random ±ε signs on every pixel (L∞ control, no gradient; Ghorbani et al. 2019)."""
    return RandomSign(eps, region=region)


@hookimpl
def register_attacks(register):
    register(AttackSpec(name="ifgsm", factory=make_ifgsm, norm=Norm.LINF, eps=PAPER_EPS, target=AttackTarget.LABEL,
                        options={"steps": PAPER_STEPS, "step_size": None, "preset": None, "region": "all"}))
    register(AttackSpec(name="ifgsm-paper", factory=make_ifgsm_paper, norm=Norm.LINF, eps=PAPER_EPS,
                        target=AttackTarget.LABEL, options={"region": "all"}))
    pgd_options = {"steps": 10, "step_size": None, "random_start": True, "restarts": 1, "region": "all"}
    register(AttackSpec(name="pgd", factory=make_pgd, norm=Norm.LINF, eps=1 / 255, target=AttackTarget.LABEL,
                        options=pgd_options))
    register(AttackSpec(name="pgd-l2", factory=make_pgd_l2, norm=Norm.L2, eps=0.5, target=AttackTarget.LABEL,
                        options=dict(pgd_options)))
    register(AttackSpec(name="random-sign", factory=make_random_sign, norm=Norm.LINF, eps=1 / 255,
                        target=AttackTarget.NONE, options={"region": "all"}))
