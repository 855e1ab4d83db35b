"""Checks that an attack kept the pixel-space contract; the runner marks a cell invalid on any violation."""

from __future__ import annotations

import torch

from robustbench_us.attack_utils import per_sample_norm
from robustbench_us.errors import ContractError
from robustbench_us.specs import Norm


def check_adversarial(x_clean: torch.Tensor, x_adv: torch.Tensor, *, norm: Norm | str, eps: float,
                      x_before: torch.Tensor | None = None, tol: float = 1e-6) -> list[str]:
    """Human-readable violations of the attack contract by ``x_adv``; empty when it holds.

    Checks: same shape, dtype and device as ``x_clean``; finite values in [0, 1]; within
    ``eps`` (+ ``tol``) of ``x_clean`` in ``norm`` (skipped for ``Norm.NONE``); and, when
    ``x_before`` (a copy of the input taken before ``perturb``) is given, that the input
    was not modified in place.
    """
    problems: list[str] = []
    if not isinstance(x_adv, torch.Tensor):
        return [f"the attack returned {type(x_adv).__name__}, not a torch.Tensor"]
    if x_before is not None and (x_before.shape != x_clean.shape
                                 or not torch.equal(x_before.to(x_clean.device), x_clean)):
        changed = (x_before.to(x_clean.device) != x_clean).sum().item() if x_before.shape == x_clean.shape else "all"
        problems.append(f"the attack modified its input in place ({changed} values changed); "
                        "perturb() must return a new tensor and leave x untouched")
    if x_adv.shape != x_clean.shape:
        problems.append(f"shape {tuple(x_adv.shape)} differs from the input's {tuple(x_clean.shape)}")
    if x_adv.dtype != x_clean.dtype:
        problems.append(f"dtype {x_adv.dtype} differs from the input's {x_clean.dtype}")
    if x_adv.device != x_clean.device:
        problems.append(f"device {x_adv.device} differs from the input's {x_clean.device}")
    if problems and x_adv.shape != x_clean.shape:
        return problems  # sizes cannot be measured between tensors of different shapes
    adv = x_adv.detach().to(device=x_clean.device, dtype=torch.float64)
    finite = torch.isfinite(adv)
    if not bool(finite.all()):
        problems.append(f"{int((~finite).sum())} values are NaN or infinite")
        adv = torch.where(finite, adv, x_clean.to(torch.float64))
    if adv.numel():
        low, high = float(adv.min()), float(adv.max())
        if low < -tol or high > 1 + tol:
            problems.append(f"values outside [0, 1]: min {low:.6g}, max {high:.6g}")
    norm = Norm(norm)
    if norm != Norm.NONE and adv.numel():
        sizes = per_sample_norm(adv - x_clean.detach().to(torch.float64), norm)
        worst = int(sizes.argmax())
        size = float(sizes[worst])
        if size > float(eps) + tol:
            over = int((sizes > float(eps) + tol).sum())
            problems.append(
                f"perturbation over budget in {norm}: {over} of {len(sizes)} images exceed eps={eps:.6g} "
                f"({eps * 255:.3g} grey levels); largest {size:.6g} ({size * 255:.3g} grey levels) on image {worst}"
            )
    return problems


def assert_adversarial(x_clean: torch.Tensor, x_adv: torch.Tensor, *, norm: Norm | str, eps: float,
                       x_before: torch.Tensor | None = None, tol: float = 1e-6, attack: str = "attack") -> None:
    """Raise :class:`~robustbench_us.errors.ContractError` listing every violation, if any."""
    problems = check_adversarial(x_clean, x_adv, norm=norm, eps=eps, x_before=x_before, tol=tol)
    if problems:
        raise ContractError(f"{attack} broke the attack contract: " + "; ".join(problems)
                            + ". Fix the attack's perturb().")
