"""An example robustbench-us plugin: uniform noise in the L∞ ε-ball, a control attack.

A control has no gradient and no goal (``target = none``): it answers "how much of an
attack's effect would *any* noise of the same size have?". Put it beside FGSM at the
same ε in a suite; a model whose labels flip under uniform noise is fragile, not attacked.
"""

from __future__ import annotations

import torch
from torch import nn

from robustbench_us import AttackSpec, AttackTarget, Norm, hookimpl

DEFAULT_EPS = 4 / 255  # 4 grey levels


class UniformNoise:
    """Uniform noise in the L∞ ε-ball: ``clip(x + u, 0, 1)`` with ``u ~ U[−ε, ε]`` per pixel.

    Grey ultrasound images stay grey: by default one noise value is added to all three
    channels of a pixel (``per_channel=True`` draws each channel on its own). Every random
    number comes from the ``generator`` the runner passes, so a seed repeats the result.
    """

    norm = Norm.LINF
    target = AttackTarget.NONE

    def __init__(self, eps: float = DEFAULT_EPS, *, per_channel: bool = False) -> None:
        if not 0.0 <= float(eps) <= 1.0:
            raise ValueError(f"uniform-noise: eps={eps} is outside [0, 1] pixel units (1 grey level = 1/255).")
        self.eps = float(eps)
        self.per_channel = bool(per_channel)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, explainer=None,
                mask: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return ``x`` plus noise; ``x`` itself is never modified. The model and labels are not used."""
        n, c, h, w = x.shape
        shape = (n, c if self.per_channel else 1, h, w)
        # Draw on the generator's device (CPU or CUDA), then move to the images' device.
        device = generator.device if generator is not None else x.device
        u = torch.rand(shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
        delta = (2 * u - 1) * self.eps
        if mask is not None:  # region = "inside"/"outside": only masked pixels may change
            delta = delta * mask.reshape(n, 1, h, w).to(device=x.device, dtype=x.dtype)
        return (x + delta).clamp(0.0, 1.0)


def make_uniform_noise(*, eps: float = DEFAULT_EPS, per_channel: bool = False) -> UniformNoise:
    """Uniform noise in the L∞ ε-ball (a control: no gradient, the same budget as FGSM)."""
    return UniformNoise(eps, per_channel=per_channel)


@hookimpl
def register_attacks(register):
    register(AttackSpec(name="uniform-noise", factory=make_uniform_noise, norm=Norm.LINF, eps=DEFAULT_EPS,
                        target=AttackTarget.NONE, options={"per_channel": False}))
