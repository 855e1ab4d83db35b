"""A label attack that records what the runner hands it (the ``y`` and the clean images), then runs FGSM."""

from __future__ import annotations

import torch

from robustbench_us import AttackSpec, AttackTarget, Norm, hookimpl
from robustbench_us.attack_utils import cross_entropy_gradient, gradient_steps

SEEN: list[tuple[torch.Tensor, torch.Tensor]] = []  # (x, y) per perturb call, in call order


class RecordingFGSM:
    norm = Norm.LINF
    target = AttackTarget.LABEL

    def __init__(self, eps: float) -> None:
        self.eps = eps

    def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
        SEEN.append((x.detach().clone(), y.detach().clone()))
        return gradient_steps(x.detach(), cross_entropy_gradient(model, y), norm=self.norm, eps=self.eps,
                              step_size=self.eps, steps=1)


def make_recording(*, eps: float = 1 / 255) -> RecordingFGSM:
    return RecordingFGSM(eps)


@hookimpl
def register_attacks(register):
    register(AttackSpec(name="recording-fgsm", factory=make_recording, eps=1 / 255, norm=Norm.LINF,
                        target=AttackTarget.LABEL, description="FGSM that records its inputs (tests)"))
