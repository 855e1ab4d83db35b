"""check_adversarial: every violation is found and named, with the measured size; a clean batch passes."""

from __future__ import annotations

import pytest
import torch

from robustbench_us.contracts import assert_adversarial, check_adversarial
from robustbench_us.errors import ContractError
from robustbench_us.specs import Norm


@pytest.fixture
def x():
    return torch.full((2, 3, 4, 4), 0.5)


def test_a_valid_batch_has_no_violations(x):
    x_adv = x.clone()
    x_adv[0, 0, 0, 0] += 2 / 255
    x_adv[1] -= 2 / 255
    assert check_adversarial(x, x_adv, norm=Norm.LINF, eps=2 / 255, x_before=x.clone()) == []
    assert check_adversarial(x, x_adv, norm="l2", eps=(48 * (2 / 255) ** 2) ** 0.5) == []
    assert check_adversarial(x, x + 0.3, norm=Norm.NONE, eps=0.0) == []  # no budget to check


def test_over_budget_reports_the_measured_size(x):
    x_adv = x.clone()
    x_adv[1, 2, 3, 3] += 3 / 255
    (problem,) = check_adversarial(x, x_adv, norm=Norm.LINF, eps=2 / 255)
    assert "over budget in linf" in problem and "1 of 2 images" in problem
    assert "3 grey levels" in problem and "image 1" in problem
    x_adv = x.clone()
    x_adv[0, :, 0, 0] += 0.1  # L2 size 0.1·√3
    (problem,) = check_adversarial(x, x_adv, norm=Norm.L2, eps=0.1)
    assert "over budget in l2" in problem and "0.173205" in problem
    assert check_adversarial(x, x_adv, norm=Norm.L2, eps=0.1 * 3**0.5 + 1e-7) == []  # tol absorbs rounding


def test_range_shape_dtype_device_and_nan(x):
    (problem,) = check_adversarial(x, x + 0.6, norm=Norm.NONE, eps=0)
    assert problem == "values outside [0, 1]: min 1.1, max 1.1"
    problems = check_adversarial(x, x[:1], norm=Norm.LINF, eps=1)
    assert problems == ["shape (1, 3, 4, 4) differs from the input's (2, 3, 4, 4)"]
    (problem,) = check_adversarial(x, x.double(), norm=Norm.LINF, eps=1)
    assert problem == "dtype torch.float64 differs from the input's torch.float32"
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    assert check_adversarial(x, bad, norm=Norm.LINF, eps=1) == ["1 values are NaN or infinite"]
    assert check_adversarial(x, x.numpy(), norm=Norm.LINF, eps=1) == [
        "the attack returned ndarray, not a torch.Tensor"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_mismatch(x):
    assert check_adversarial(x, x.cuda(), norm=Norm.LINF, eps=1) == [
        "device cuda:0 differs from the input's cpu"]


def test_in_place_modification_is_caught(x):
    before = x.clone()
    x[0, 1, 2, 2] += 1 / 255  # what a careless attack does
    problems = check_adversarial(x, x.clone(), norm=Norm.LINF, eps=1 / 255, x_before=before)
    assert problems == ["the attack modified its input in place (1 values changed); "
                        "perturb() must return a new tensor and leave x untouched"]


def test_assert_adversarial_raises_with_every_reason(x):
    with pytest.raises(ContractError, match=r"fgsm broke the attack contract: values outside .*over budget"):
        assert_adversarial(x, x + 0.6, norm=Norm.LINF, eps=0.1, attack="fgsm")
