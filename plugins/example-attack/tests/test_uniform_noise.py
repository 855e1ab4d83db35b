"""The example plugin's own tests: the conformance kit, discovery, and the numbers it promises."""

from __future__ import annotations

import pytest
import torch

from robustbench_us.plugins import default_registry
from robustbench_us.testing import check_attack, sample_batch, tiny_model
from robustbench_us_example_attack import UniformNoise

EPS = 4 / 255


@pytest.mark.parametrize("per_channel", [False, True])
def test_uniform_noise_passes_the_conformance_kit(per_channel):
    report = check_attack("uniform-noise", eps=EPS, options={"per_channel": per_channel})
    assert "budget" in report.checks and "deterministic" in report.checks


def test_it_is_found_through_its_entry_point():
    registry = default_registry()
    spec = registry.get("attack", "uniform-noise")
    assert spec.plugin == "uniform-noise" and str(spec.target) == "none"
    assert registry.infos["uniform-noise"].distribution == "robustbench-us-example-attack"


def test_the_noise_fills_the_budget_and_keeps_grey_images_grey():
    x, y = sample_batch(8, 32, seed=0)
    x = torch.full_like(x, 0.5)  # away from 0 and 1, so clipping does not shrink the noise
    x_adv = UniformNoise(EPS).perturb(tiny_model(), x, y, generator=torch.Generator().manual_seed(0))
    delta = x_adv - x
    assert float(delta.abs().max()) <= EPS + 1e-7
    assert float(delta.abs().max()) > 0.99 * EPS  # 65 536 draws: the largest is within 1 % of ε
    assert float(delta.abs().mean()) == pytest.approx(EPS / 2, rel=0.02)  # mean of |U[−ε, ε]| is ε/2
    assert torch.equal(delta[:, 0], delta[:, 1]) and torch.equal(delta[:, 1], delta[:, 2])


def test_eps_outside_the_unit_range_is_refused():
    with pytest.raises(ValueError, match="outside \\[0, 1\\] pixel units"):
        UniformNoise(4)
