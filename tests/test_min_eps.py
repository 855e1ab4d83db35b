"""Minimal budgets: the smallest ε that flips a label or moves a heatmap, against values worked out by hand."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn

from robustbench_us.errors import RobustBenchError
from robustbench_us.min_eps import min_eps_flip, min_eps_shift
from robustbench_us.specs import AttackTarget, Norm
from robustbench_us_plugins.fgsm import make_fgsm
from robustbench_us_plugins.iterative import make_ifgsm


class LinearNet(nn.Module):
    """Logit difference ``s = Σ w·x + b``: FGSM flips it exactly when ε·‖w‖₁ > |s|."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x):
        s = (x * self.w).flatten(1).sum(1) + self.b
        return torch.stack([-s / 2, s / 2], dim=1)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors on a shared 2-core machine: extra intra-op threads only thrash."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def linear():
    w = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    model = LinearNet(w, b=0.0)
    x = torch.full((3, 3, 8, 8), 0.5)
    x[0] += 0.001 * w[0]  # small positive margin
    x[1] -= 0.003 * w[0]  # larger negative margin
    x[2] += 0.5 * torch.sign(w[0]) * 0.9  # far from the boundary (values 0.05 / 0.95)
    s = (x * w).flatten(1).sum(1)
    return model, x, s, w.abs().sum().item()


def test_min_eps_flip_matches_the_linear_margin(linear):
    model, x, s, w1 = linear
    y = (s > 0).long()
    grid = [k / 255 for k in (0.5, 1, 2, 4, 8)]
    found = min_eps_flip(model, x, y, functools.partial(make_fgsm), eps_grid=grid, bisection_steps=20)
    exact = s.abs() / w1
    assert found[:2].tolist() == pytest.approx(exact[:2].tolist(), rel=1e-3)
    assert math.isinf(found[2].item())  # 0.9·0.5 margin per pixel cannot be crossed by 8 grey levels
    coarse = min_eps_flip(model, x, y, make_fgsm, eps_grid=grid)
    assert coarse[:2].tolist() == [min(g for g in grid if g > e) for e in exact[:2].tolist()]
    assert coarse.dtype == torch.float64 and coarse.shape == (3,)


def test_min_eps_flip_with_ifgsm_and_a_batched_bisection(linear):
    model, x, s, w1 = linear
    y = (s > 0).long()
    # On a linear model I-FGSM's 25 steps of ε/10 end at x + ε·sign(∇), as FGSM: same margins.
    found = min_eps_flip(model, x, y, functools.partial(make_ifgsm, steps=25), eps_grid=[1 / 255, 8 / 255],
                         bisection_steps=16)
    assert found[:2].tolist() == pytest.approx((s.abs() / w1)[:2].tolist(), rel=1e-3)
    assert math.isinf(found[2].item())


class BrightenQuadrant:
    """Adds ε to the bottom-right 2×2 quadrant of a 4×4 image (a fake attack with a known effect)."""

    norm, target = Norm.LINF, AttackTarget.EXPLANATION

    def __init__(self, eps):
        self.eps = eps

    def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
        out = x.clone()
        out[..., 2:, 2:] += self.eps
        return out


class FirstChannel:
    differentiable = True

    def explain(self, model, x, target, *, create_graph=False):
        return x[:, 0]


def test_min_eps_shift_matches_the_centroid_formula():
    model = LinearNet(torch.zeros(1, 3, 4, 4), b=1.0)
    x = torch.full((2, 3, 4, 4), 0.25)
    x[1, 0] = 0.0
    x[1, 0, 0, 0] = 0.01  # a point mass in a corner: the quadrant's mass overwhelms it at once
    found = min_eps_shift(model, x, FirstChannel(), BrightenQuadrant, 0.1,
                          eps_grid=[0.05, 0.1, 0.2, 0.4], bisection_steps=25)
    # Image 0, uniform a = 0.25: each centroid coordinate moves by 4ε/(16a + 4ε) = ε/(1 + ε), so the
    # shift is √2·ε/(1 + ε), which reaches 0.1 px at ε = 0.1/(√2 − 0.1).
    e = 0.1 / (math.sqrt(2) - 0.1)
    assert found[0].item() == pytest.approx(e, rel=1e-4)
    assert found[1].item() < 0.05 and found[1].item() > 0
    unreachable = min_eps_shift(model, x, FirstChannel(), BrightenQuadrant, 10.0, eps_grid=[0.1, 0.2])
    assert torch.isinf(unreachable).all()


def test_grid_must_be_positive():
    with pytest.raises(RobustBenchError, match="positive budgets"):
        min_eps_flip(nn.Linear(1, 2), torch.zeros(1, 1), torch.zeros(1), make_fgsm, eps_grid=[0.0, 0.1])
