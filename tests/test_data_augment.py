"""Training augmentation: torchvision's affine, batched; seeded; the mask moves with its image."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from robustbench_us.data.augment import affine_theta, augment


def test_matches_torchvision_v2_affine_per_image():
    x = torch.rand(4, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    angle = torch.tensor([3.0, -4.5, 0.0, 5.0])
    shift = torch.tensor([[5.0, -3.0], [-2.5, 4.0], [0.0, 0.0], [1.0, 1.0]])
    flip = torch.tensor([False, True, True, False])
    grid = F.affine_grid(affine_theta(angle, shift, flip, 40, 56), [4, 3, 40, 56], align_corners=False)
    ours = F.grid_sample(x, grid, mode="bilinear", align_corners=False)
    for i in range(4):
        xi = TF.horizontal_flip(x[i]) if flip[i] else x[i]
        ref = TF.affine(xi, angle=float(angle[i]), translate=shift[i].tolist(), scale=1.0, shear=[0.0, 0.0],
                        interpolation=TF.InterpolationMode.BILINEAR)
        assert torch.allclose(ours[i], ref, atol=1e-4)


def test_pure_flip_is_an_exact_mirror():
    x = torch.rand(2, 3, 8, 8)
    grid = F.affine_grid(affine_theta(torch.zeros(2), torch.zeros(2, 2), torch.tensor([True, False]), 8, 8),
                         [2, 3, 8, 8], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", align_corners=False)
    assert torch.allclose(out[0], x[0].flip(-1), atol=1e-5)
    assert torch.allclose(out[1], x[1], atol=1e-5)


def test_seeded_and_within_the_studys_ranges():
    x = torch.rand(16, 3, 32, 32)
    a, _ = augment(x, None, torch.Generator().manual_seed(5))
    b, _ = augment(x, None, torch.Generator().manual_seed(5))
    c, _ = augment(x, None, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype and 0 <= a.min() and a.max() <= 1


def test_mask_moves_with_its_image():
    image = torch.zeros(8, 3, 64, 64)
    image[:, :, 20:40, 10:30] = 1.0  # a bright lesion, off-centre so flips and shifts show
    mask = (image[:, :1] > 0.5).float()
    out, out_mask = augment(image, mask, torch.Generator().manual_seed(0))
    assert out_mask.shape == (8, 1, 64, 64) and out_mask.dtype == torch.float32
    assert set(out_mask.unique().tolist()) <= {0.0, 1.0}  # nearest: still a label map
    inside = out[:, 0][out_mask[:, 0] > 0.5]
    outside = out[:, 0][out_mask[:, 0] < 0.5]
    assert inside.mean() > 0.9 and outside.mean() < 0.05
    moved = (out_mask != mask).flatten(1).any(1)
    assert int(moved.sum()) == 8  # every image got some transform
    bool_out = augment(image, mask.bool(), torch.Generator().manual_seed(0))[1]
    assert bool_out.dtype == torch.bool and torch.equal(bool_out, out_mask > 0.5)


def test_rotation_and_shift_bounds():
    # A single bright pixel at the centre lands within 10 % shift (+ rotation about the centre: none).
    x = torch.zeros(200, 1, 41, 41)
    x[:, :, 20, 20] = 1.0
    out, _ = augment(x, None, torch.Generator().manual_seed(1))
    flat = out[:, 0].flatten(1)
    pos = flat.argmax(1)
    dy, dx = pos // 41 - 20, pos % 41 - 20
    assert dy.abs().max() <= 5 and dx.abs().max() <= 5  # 10 % of 41 px, rounded up
    assert dx.abs().max() >= 3  # and the shifts do use the range


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        augment(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="does not match"):
        augment(torch.rand(2, 3, 8, 8), torch.rand(2, 1, 4, 4))
