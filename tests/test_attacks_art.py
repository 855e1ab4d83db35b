"""The ART bridge, and our FGSM / I-FGSM against ART's FastGradientMethod / BasicIterativeMethod."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from art.attacks.evasion import BasicIterativeMethod, FastGradientMethod
from art.estimators.classification import PyTorchClassifier
from torch import nn

from robustbench_us import Norm
from robustbench_us.attack_utils import AttackError, per_sample_norm
from robustbench_us.contracts import check_adversarial
from robustbench_us.errors import UnknownNameError
from robustbench_us.plugins import default_registry
from robustbench_us_plugins.art_bridge import VARIANTS, evasion_classes
from robustbench_us_plugins.fgsm import make_fgsm
from robustbench_us_plugins.iterative import make_ifgsm, make_ifgsm_paper


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors on a shared 2-core machine: extra intra-op threads only thrash (tens of times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(8, 3, 32, 32, generator=g), torch.randint(0, 2, (8,), generator=g)


def art_classifier(model: nn.Module, shape: tuple[int, ...]) -> PyTorchClassifier:
    return PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=shape, nb_classes=2,
                             clip_values=(0.0, 1.0), device_type="cpu")


@pytest.mark.parametrize("eps", [1 / 255, 8 / 255])
def test_fgsm_matches_art_fast_gradient_method(tiny_model, batch, eps):
    x, y = batch
    ours = make_fgsm(eps=eps).perturb(tiny_model, x, y)
    theirs = FastGradientMethod(art_classifier(tiny_model, (3, 32, 32)), norm=np.inf, eps=eps, eps_step=eps,
                                targeted=False, num_random_init=0, minimal=False).generate(x.numpy(), y.numpy())
    assert np.abs(ours.numpy() - theirs).max() <= 1e-6
    assert (ours != x).any()


@pytest.mark.parametrize("eps, steps, step", [(1 / 255, 25, 0.1 / 255), (8 / 255, 5, 3 / 255)])
def test_ifgsm_matches_art_basic_iterative_method(tiny_model, batch, eps, steps, step):
    x, y = batch
    ours = make_ifgsm(eps=eps, steps=steps, step_size=step).perturb(tiny_model, x, y)
    theirs = BasicIterativeMethod(art_classifier(tiny_model, (3, 32, 32)), eps=eps, eps_step=step, max_iter=steps,
                                  targeted=False, verbose=False).generate(x.numpy(), y.numpy())
    assert np.abs(ours.numpy() - theirs).max() <= 1e-6
    assert np.abs(theirs - x.numpy()).max() == pytest.approx(eps, abs=1e-6)  # both reach the budget


def test_paper_preset_matches_art_bim_with_the_same_reading(tiny_model, batch):
    x, y = batch
    ours = make_ifgsm_paper().perturb(tiny_model, x, y)
    bridged = default_registry().create("attack", "art:bim", eps=1 / 255).perturb(tiny_model, x, y)
    assert (ours - bridged).abs().max().item() <= 1e-6  # art:bim defaults to the same 25 steps of ε/10


def test_fgsm_matches_art_inside_a_region(tiny_model, batch):
    x, y = batch
    mask = torch.zeros(8, 32, 32, dtype=torch.bool)
    mask[:, 4:12, 10:30] = True
    ours = make_fgsm(eps=4 / 255).perturb(tiny_model, x, y, mask=mask)
    theirs = default_registry().create("attack", "art:fgm", eps=4 / 255).perturb(tiny_model, x, y, mask=mask)
    assert (ours - theirs).abs().max().item() <= 1e-6
    assert (ours - x)[~mask.unsqueeze(1).expand_as(x)].abs().max() == 0


FAST = {
    "fgm": {}, "bim": {"max_iter": 3}, "pgd": {"max_iter": 3}, "square": {"max_iter": 20},
    "auto-attack": {"max_iter": 3, "square_max_iter": 10},
    "carlini-l2": {"max_iter": 2, "binary_search_steps": 1}, "carlini-linf": {"max_iter": 1},
    "deepfool": {"max_iter": 3},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_named_art_variant_keeps_the_contract(variant, tiny_model):
    assert set(FAST) == set(VARIANTS)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 16, 16, generator=g), torch.tensor([0, 1])
    lesion = torch.zeros(2, 16, 16, dtype=torch.bool)
    lesion[:, 4:10, 4:10] = True
    attack = default_registry().create("attack", f"art:{variant}", eps=8 / 255, **FAST[variant])
    assert attack.norm in (Norm.LINF, Norm.L2)
    before = x.clone()
    x_adv = attack.perturb(tiny_model, x, y, mask=lesion, generator=torch.Generator().manual_seed(0))
    assert check_adversarial(x, x_adv, norm=attack.norm, eps=attack.eps, x_before=before) == []
    assert (x_adv - x)[~lesion.unsqueeze(1).expand_as(x)].abs().max() == 0
    assert tiny_model.training is False  # ART's mode switches are undone


def test_art_norms_are_declared_per_variant():
    create = default_registry().create
    assert create("attack", "art:pgd", eps=0.5, norm="l2").norm == Norm.L2
    assert create("attack", "art:pgd", eps=0.01).norm == Norm.LINF
    assert create("attack", "art:carlini-l2", eps=0.5).norm == Norm.L2
    assert create("attack", "art:deepfool", eps=0.5, project=False).norm == Norm.NONE
    with pytest.raises(AttackError, match="L2 attack|l2 attack"):
        create("attack", "art:carlini-l2", eps=0.5, norm="linf")
    with pytest.raises(AttackError, match="has no parameter banana"):
        create("attack", "art:fgm", eps=0.01, banana=1)


def test_art_pgd_l2_bound_and_seed(tiny_model, batch):
    x, y = batch
    attack = default_registry().create("attack", "art:pgd", eps=0.5, norm="l2", max_iter=3)
    a = attack.perturb(tiny_model, x, y, generator=torch.Generator().manual_seed(1))
    b = attack.perturb(tiny_model, x, y, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert per_sample_norm(a - x, Norm.L2).max() <= 0.5 + 1e-5


def test_any_art_evasion_class_answers_its_kebab_name(tiny_model):
    classes = evasion_classes()
    assert classes["hop-skip-jump"].__name__ == "HopSkipJump"
    assert classes["newton-fool"].__name__ == "NewtonFool"
    x, y = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1])
    attack = default_registry().create("attack", "art:newton-fool", eps=4 / 255, max_iter=2)
    assert attack.norm == Norm.LINF
    x_adv = attack.perturb(tiny_model, x, y)
    assert check_adversarial(x, x_adv, norm=attack.norm, eps=attack.eps) == []
    with pytest.raises(UnknownNameError, match="art:fgm"):
        default_registry().create("attack", "art:fgmm", eps=0.01)
