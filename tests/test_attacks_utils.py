"""The shared attack pieces: projections, step directions, region masks, centre of mass, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from robustbench_us.attack_utils import (apply_step, center_of_mass, gradient_steps, normalize_maps,
                                         per_sample_norm, project, random_signs, random_start, region_weights,
                                         step_direction, topk_mask)
from robustbench_us.errors import ContractError
from robustbench_us.specs import Norm


def test_linf_projection_clips_each_value():
    delta = torch.tensor([[[[0.5, -0.5], [0.01, -0.02]]]])
    assert project(delta, Norm.LINF, 0.1).flatten().tolist() == pytest.approx([0.1, -0.1, 0.01, -0.02])


def test_l2_projection_rescales_only_images_over_budget():
    delta = torch.zeros(2, 1, 1, 2)
    delta[0, 0, 0] = torch.tensor([3.0, 4.0])  # norm 5 -> scaled to 1
    delta[1, 0, 0] = torch.tensor([0.3, 0.4])  # norm 0.5 -> kept
    out = project(delta, Norm.L2, 1.0)
    assert out[0].flatten().tolist() == pytest.approx([0.6, 0.8])
    assert out[1].flatten().tolist() == pytest.approx([0.3, 0.4])
    assert per_sample_norm(out, Norm.L2).tolist() == pytest.approx([1.0, 0.5])


def test_step_direction_sign_and_unit_l2():
    grad = torch.tensor([[[[3.0, -4.0, 0.0]]]])
    assert step_direction(grad, Norm.LINF).flatten().tolist() == [1.0, -1.0, 0.0]  # sign(0) = 0, as ART
    assert step_direction(grad, Norm.L2).flatten().tolist() == pytest.approx([0.6, -0.8, 0.0])
    assert step_direction(torch.zeros(1, 1, 1, 3), Norm.L2).abs().sum() == 0  # no NaN for a zero gradient


def test_apply_step_clips_then_projects():
    x = torch.tensor([[[[0.99, 0.5]]]])
    out = apply_step(x, x, torch.tensor([[[[1.0, -1.0]]]]), step_size=0.3, norm=Norm.LINF, eps=0.1)
    assert out.flatten().tolist() == pytest.approx([1.0, 0.4])


def test_region_weights_accepts_the_mask_shapes_and_rejects_others():
    x = torch.zeros(2, 3, 4, 5)
    mask = torch.zeros(2, 4, 5, dtype=torch.bool)
    mask[0, 1, 2] = True
    for m in (mask, mask.unsqueeze(1), mask.float(), mask.unsqueeze(1).double()):
        w = region_weights(m, x)
        assert w.shape == (2, 1, 4, 5) and w.dtype == x.dtype and w.sum() == 1 and w[0, 0, 1, 2] == 1
    assert region_weights(None, x) is None
    with pytest.raises(ContractError, match=r"\[N, H, W\]"):
        region_weights(torch.ones(2, 4, 4), x)


def test_gradient_steps_never_move_pixels_outside_the_region():
    x = torch.full((1, 3, 4, 4), 0.5)
    region = torch.zeros(1, 1, 4, 4)
    region[..., :2, :] = 1
    out = gradient_steps(x, lambda z: torch.ones_like(z), norm=Norm.LINF, eps=0.1, step_size=0.04, steps=5,
                         region=region)
    assert torch.equal(out[..., 2:, :], x[..., 2:, :])
    assert torch.allclose(out[..., :2, :], torch.full((1, 3, 2, 4), 0.6))


def test_random_start_and_signs_are_seeded_and_inside_the_ball():
    x = torch.full((3, 3, 8, 8), 0.5)
    for norm, eps in ((Norm.LINF, 0.05), (Norm.L2, 0.3)):
        a = random_start(x, norm, eps, generator=torch.Generator().manual_seed(1))
        b = random_start(x, norm, eps, generator=torch.Generator().manual_seed(1))
        c = random_start(x, norm, eps, generator=torch.Generator().manual_seed(2))
        assert torch.equal(a, b) and not torch.equal(a, c)
        assert per_sample_norm(a - x, norm).max() <= eps + 1e-6
    signs = random_signs(x, torch.Generator().manual_seed(0))
    assert set(signs.unique().tolist()) == {-1.0, 1.0}
    assert abs(signs.mean().item()) < 0.1


def test_center_of_mass_by_hand():
    maps = torch.zeros(2, 4, 4)
    maps[0, 1, 3] = 2.0
    maps[0, 3, 1] = 2.0  # centre (2, 2)
    maps[1, 0, 0] = 3.0
    maps[1, 0, 2] = 1.0  # centre (0, 0.5)
    assert center_of_mass(maps).tolist() == [[2.0, 2.0], [0.0, 0.5]]
    assert center_of_mass(torch.zeros(1, 4, 4)).tolist() == [[1.5, 1.5]]  # no mass: image centre


def test_topk_mask_and_normalize():
    maps = torch.tensor([[[0.0, 3.0], [2.0, 1.0]]])
    assert topk_mask(maps, 2).tolist() == [[[False, True], [True, False]]]
    assert normalize_maps(maps).sum().item() == pytest.approx(1.0)
    assert math.isclose(normalize_maps(maps)[0, 0, 1].item(), 0.5)
