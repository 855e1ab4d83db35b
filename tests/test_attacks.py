"""Native attacks: the contract for every registered attack, exact FGSM numbers, presets, seeds,
label-preserving explanation attacks and the random-sign control, on TinyNet."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_us import AttackTarget, Norm, metrics
from robustbench_us.attack_utils import AttackError, per_sample_norm, predict
from robustbench_us.contracts import check_adversarial
from robustbench_us.plugins import default_registry
from robustbench_us_plugins.explanation_attacks import make_mass_center, make_target_map, make_topk, opposite_blob
from robustbench_us_plugins.fgsm import make_fgsm
from robustbench_us_plugins.gradcam import GradCAM
from robustbench_us_plugins.iterative import (make_ifgsm, make_ifgsm_paper, make_pgd, make_pgd_l2,
                                               make_random_sign)
from tests.fakes.tiny import TinyNet

NATIVE = [name for name in default_registry().names("attack") if not name.startswith("art:")]
FAST_OPTIONS = {"ifgsm": {"steps": 3}, "pgd": {"steps": 3}, "pgd-l2": {"steps": 3}, "topk": {"steps": 3},
                "mass-center": {"steps": 3}, "target-map": {"steps": 3}}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors on a shared 2-core machine: extra intra-op threads only thrash (tens of times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class LinearNet(nn.Module):
    """Logits ``[-s/2, s/2]`` with ``s = Σ w·x + b``: its gradients and margins are known by hand."""

    def __init__(self, w: torch.Tensor, b: float = 0.0) -> None:
        super().__init__()
        self.w = nn.Parameter(w, requires_grad=False)
        self.b = b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.w).flatten(1).sum(1) + self.b
        return torch.stack([-s / 2, s / 2], dim=1)


def lesion_data(n: int, seed: int, size: int = 16, contrast: float = 0.2):
    """Noisy images with a 6×6 'lesion' that is brighter (malignant, 1) or darker (benign, 0), and its mask."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 + 0.4 * torch.rand(n, 1, size, size, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    top = torch.randint(0, size - 6, (n, 1, 1), generator=g)
    left = torch.randint(0, size - 6, (n, 1, 1), generator=g)
    rows, cols = torch.arange(size).view(1, -1, 1), torch.arange(size).view(1, 1, -1)
    mask = (rows >= top) & (rows < top + 6) & (cols >= left) & (cols < left + 6)
    x = x + mask.unsqueeze(1) * contrast * (2 * y.view(-1, 1, 1, 1) - 1)
    return x.clamp(0, 1).repeat(1, 3, 1, 1), y, mask


@pytest.fixture(scope="module")
def trained():
    """TinyNet trained for 300 Adam steps (about 2 s) on ``lesion_data``; held-out images, labels, masks."""
    model = TinyNet(input_size=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y, _ = lesion_data(256, seed=0)
    for i in range(300):
        batch = torch.arange(i * 32, i * 32 + 32) % 256
        loss = F.cross_entropy(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), *lesion_data(64, seed=1)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (predict(model, x) == y).float().mean().item()


@pytest.mark.parametrize("name", NATIVE)
@pytest.mark.parametrize("region", ["all", "inside", "outside"])
def test_every_native_attack_keeps_the_contract(name, region, tiny_model, tiny_batch):
    spec = default_registry().get("attack", name)
    eps = 8 / 255 if spec.norm == Norm.LINF else 0.5
    attack = default_registry().create("attack", name, eps=eps, **FAST_OPTIONS.get(name, {}))
    assert (attack.norm, attack.target) == (spec.norm, spec.target)
    assert attack.eps == pytest.approx(eps)
    x, y = tiny_batch
    lesion = torch.zeros(4, 32, 32, dtype=torch.bool)
    lesion[:, 8:20, 4:16] = True
    mask = {"all": None, "inside": lesion, "outside": ~lesion}[region]
    before = x.clone()
    explainer = GradCAM() if spec.target == AttackTarget.EXPLANATION else None
    x_adv = attack.perturb(tiny_model, x, y, explainer=explainer, mask=mask, generator=torch.Generator().manual_seed(0))
    assert check_adversarial(x, x_adv, norm=attack.norm, eps=attack.eps, x_before=before) == []
    assert torch.equal(x, before)
    if mask is not None:
        assert (x_adv - x)[~mask.unsqueeze(1).expand_as(x)].abs().max() == 0
    if spec.target != AttackTarget.EXPLANATION:  # these always move (explanation attacks may keep x)
        assert per_sample_norm(x_adv - x, attack.norm).min() > 0


def test_fgsm_by_hand_on_a_linear_model():
    w = torch.zeros(1, 3, 4, 4)
    w[0, 0, 0, 0], w[0, 1, 2, 3], w[0, 2, 1, 1] = 1.0, -2.0, 0.5
    model = LinearNet(w)
    x = torch.full((2, 3, 4, 4), 0.5)
    x[1, 0, 0, 0] = 0.999  # clipped at 1
    y = torch.tensor([0, 1])
    x_adv = make_fgsm(eps=0.01).perturb(model, x, y)
    expected = x + 0.01 * torch.sign(w) * torch.tensor([1.0, -1.0]).view(2, 1, 1, 1)  # away from the label
    expected[1, 0, 0, 0] = 0.989
    assert torch.allclose(x_adv, expected.clamp(0, 1), atol=1e-7)
    assert (x_adv - x).abs().sum().item() == pytest.approx(0.01 * 3 * 2, abs=1e-6)  # zero gradient: no move


def test_ifgsm_paper_preset_reads_the_study():
    attack = make_ifgsm_paper()
    assert (attack.eps, attack.steps, attack.step_size) == (pytest.approx(1 / 255), 25, pytest.approx(0.1 / 255))
    same = make_ifgsm(preset="paper")
    assert (same.eps, same.steps, same.step_size) == (attack.eps, attack.steps, attack.step_size)
    with pytest.raises(AttackError, match="preset='paper' fixes"):
        make_ifgsm(preset="paper", steps=10)
    with pytest.raises(AttackError, match="unknown preset"):
        make_ifgsm(preset="fast")
    w = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    x = torch.full((1, 3, 8, 8), 0.5)
    x_adv = attack.perturb(LinearNet(w), x, torch.tensor([0]))
    # On a linear model every step has the same sign: 10 steps reach the 1-grey-level budget, then it holds.
    assert ((x_adv - x).abs() * 255).max().item() == pytest.approx(1.0, abs=1e-4)
    assert torch.allclose((x_adv - x) * 255, torch.sign(w), atol=1e-4)


def test_pgd_is_seeded_and_l2_stays_in_its_ball(tiny_model, tiny_batch):
    x, y = tiny_batch
    for make in (make_pgd, make_pgd_l2, make_random_sign):
        attack = make(eps=0.5 if make is make_pgd_l2 else 4 / 255)
        a = attack.perturb(tiny_model, x, y, generator=torch.Generator().manual_seed(3))
        b = attack.perturb(tiny_model, x, y, generator=torch.Generator().manual_seed(3))
        c = attack.perturb(tiny_model, x, y, generator=torch.Generator().manual_seed(4))
        assert torch.equal(a, b) and not torch.equal(a, c)
    x_adv = make_pgd_l2(eps=0.5, steps=5).perturb(tiny_model, x, y, generator=torch.Generator().manual_seed(0))
    sizes = per_sample_norm(x_adv - x, Norm.L2)
    assert sizes.max() <= 0.5 + 1e-5 and sizes.min() > 0.4  # 5 steps of 0.25 reach the sphere
    assert per_sample_norm(x_adv - x, Norm.LINF).max() < 0.5  # an L2 attack, not an L∞ one


def test_random_sign_is_exactly_eps_per_pixel(tiny_model, tiny_batch):
    x, y = tiny_batch
    x = x.clamp(0.1, 0.9)  # no clipping
    x_adv = make_random_sign(eps=2 / 255).perturb(tiny_model, x, y, generator=torch.Generator().manual_seed(0))
    assert torch.allclose((x_adv - x).abs(), torch.full_like(x, 2 / 255), atol=1e-6)


def test_random_sign_barely_changes_accuracy_where_ifgsm_drops_it(trained):
    model, x, y, _ = trained
    eps = 8 / 255
    clean = accuracy(model, x, y)
    ifgsm = accuracy(model, make_ifgsm(eps=eps, steps=10).perturb(model, x, y), y)
    noise = accuracy(model, make_random_sign(eps=eps).perturb(model, x, y, generator=torch.Generator().manual_seed(0)),
                     y)
    fgsm = accuracy(model, make_fgsm(eps=eps).perturb(model, x, y), y)
    assert clean >= 0.95
    assert noise >= clean - 0.05
    assert ifgsm <= clean - 0.3 and fgsm < clean
    assert ifgsm <= fgsm


def test_pgd_restarts_keep_the_strongest_run(trained):
    model, x, y, _ = trained
    x, y = x[:16], y[:16]
    one = make_pgd(eps=6 / 255, steps=5).perturb(model, x, y, generator=torch.Generator().manual_seed(0))
    three = make_pgd(eps=6 / 255, steps=5, restarts=3).perturb(model, x, y, generator=torch.Generator().manual_seed(0))
    assert accuracy(model, three, y) <= accuracy(model, one, y)
    assert check_adversarial(x, three, norm=Norm.LINF, eps=6 / 255) == []


# What "moves the map" means on TinyNet's 16×16 Grad-CAM maps, at ε = 8/255 and 10 steps. Each bound lies
# between what random ±ε signs of the same budget do (the control, below) and what the weakest of the three
# attacks does, with a factor of at least 1.5 to either side. Measured over the CPU kernels
# (ATEN_CPU_CAPABILITY=default/avx2/avx512 × ONEDNN_MAX_CPU_ISA=AVX2/native), which change the trained model
# and so the numbers by a few per cent:
#   mean centroid shift (px)   attacks ≥ 0.73 (top-k)   control ≤ 0.18
#   mean Spearman ρ            attacks ≤ 0.954 (top-k)  control ≥ 0.992  (as 1 − ρ: ≥ 0.046 vs ≤ 0.008)
#   mean top-k intersection    attacks ≤ 0.85           control ≥ 0.95   (as 1 − top: ≥ 0.15 vs ≤ 0.05)
MOVED_SHIFT, MOVED_RANK, MOVED_TOP = 0.4, 0.975, 0.9
EXPLANATION_EPS, EXPLANATION_STEPS = 8 / 255, 10


def map_change(model, explainer, x, x_adv, label) -> tuple[float, float, float]:
    """Mean centroid shift (pixels), Spearman ρ and top-k intersection between the clean and perturbed maps."""
    clean_maps, adv_maps = explainer.explain(model, x, label), explainer.explain(model, x_adv, label)
    return (metrics.centroid_shift_per_image(clean_maps, adv_maps).nanmean().item(),
            metrics.spearman_per_image(clean_maps, adv_maps).nanmean().item(),
            metrics.topk_intersection_per_image(clean_maps, adv_maps).mean().item())


@pytest.mark.parametrize("make", [make_topk, make_mass_center, make_target_map])
def test_explanation_attacks_move_the_map_and_keep_every_label(make, trained):
    model, x, y, _ = trained
    x = x[:12]
    explainer = GradCAM()
    label = predict(model, x)
    attack = make(eps=EXPLANATION_EPS, steps=EXPLANATION_STEPS)
    assert attack.target == AttackTarget.EXPLANATION
    x_adv = attack.perturb(model, x, y[:12], explainer=explainer)
    assert check_adversarial(x, x_adv, norm=Norm.LINF, eps=EXPLANATION_EPS) == []
    assert (predict(model, x_adv) == label).all()  # flip rate 0
    shift, rank, top = map_change(model, explainer, x, x_adv, label)
    assert shift > MOVED_SHIFT and rank < MOVED_RANK and top < MOVED_TOP, (shift, rank, top)


def test_random_signs_of_the_same_budget_do_not_move_the_map(trained):
    # The control that gives the bounds above their meaning: noise of the same size fails every one of them.
    model, x, y, _ = trained
    x = x[:12]
    explainer = GradCAM()
    label = predict(model, x)
    for seed in range(3):
        noise = make_random_sign(eps=EXPLANATION_EPS).perturb(model, x, y[:12],
                                                               generator=torch.Generator().manual_seed(seed))
        shift, rank, top = map_change(model, explainer, x, noise, label)
        assert shift < MOVED_SHIFT and rank > MOVED_RANK and top > MOVED_TOP, (seed, shift, rank, top)


def test_explanation_attacks_return_the_clean_image_when_every_step_flips():
    w = torch.ones(1, 3, 8, 8)
    model = LinearNet(w, b=-96.0 + 1e-4)  # s = Σx − 96 ≈ 0 at x = 0.5: any step flips or keeps by a hair
    x = torch.full((2, 3, 8, 8), 0.5)

    class Maps:
        differentiable = True

        def explain(self, model, x, target, *, create_graph=False):
            return x[:, 0] ** 2  # the attack lowers its top-k mass by darkening, which flips the label

    x_adv = make_topk(eps=0.1, steps=5, softplus_beta=None).perturb(model, x, torch.zeros(2), explainer=Maps())
    assert (predict(model, x_adv) == predict(model, x)).all()
    assert torch.equal(x_adv, x)


def test_target_map_pulls_toward_the_target(trained):
    model, x, _, _ = trained
    x = x[:8]
    explainer = GradCAM()
    label = predict(model, x)
    clean_maps = explainer.explain(model, x, label)
    target = opposite_blob(clean_maps)
    x_adv = make_target_map(eps=8 / 255, steps=10).perturb(model, x, label, explainer=explainer)
    adv_maps = explainer.explain(model, x_adv, label)

    def distance(maps):
        return metrics.centroid_shift_per_image(maps, target)

    assert distance(adv_maps).mean() < distance(clean_maps).mean() - 0.5
    with pytest.raises(AttackError, match="target_map"):
        make_target_map(target_map=torch.ones(3, 3)).perturb(model, x, label, explainer=explainer)


def test_opposite_blob_sits_in_the_opposite_quadrant():
    maps = torch.zeros(1, 16, 16)
    maps[0, 2, 3] = 1.0  # top-left
    blob = opposite_blob(maps)
    assert blob.flatten().argmax().item() // 16 >= 8 and blob.flatten().argmax().item() % 16 >= 8


def test_explanation_attacks_explain_what_they_need(tiny_model, tiny_batch):
    x, y = tiny_batch

    class NotDifferentiable:
        differentiable = False

        def explain(self, model, x, target, *, create_graph=False):
            return x[:, 0]

    with pytest.raises(AttackError, match="pass explainer="):
        make_topk().perturb(tiny_model, x, y)
    with pytest.raises(AttackError, match="differentiable explainer"):
        make_mass_center().perturb(tiny_model, x, y, explainer=NotDifferentiable())
    with pytest.raises(AttackError, match="region='middle'"):
        make_fgsm(region="middle")
    with pytest.raises(AttackError, match="topk=2"):
        make_topk(topk=2)


def test_softplus_is_undone_after_an_explanation_attack(tiny_model, tiny_batch):
    x, y = tiny_batch
    relus = [m for m in tiny_model.modules() if isinstance(m, nn.ReLU)]
    make_mass_center(steps=2).perturb(tiny_model, x, y, explainer=GradCAM())
    assert [m for m in tiny_model.modules() if isinstance(m, nn.ReLU)] == relus
    assert not any(isinstance(m, nn.Softplus) for m in tiny_model.modules())


@pytest.mark.parametrize("name", NATIVE + ["art:*"])
def test_every_attack_is_documented(name):
    doc = (Path(__file__).resolve().parents[1] / "docs" / "attacks.md").read_text()
    assert f"| `{name.replace(':*', ':<name>')}` |" in doc
    for option in default_registry().get("attack", name).options:
        assert f"`{option}`" in doc, f"option {option!r} of {name!r} is not in docs/attacks.md"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", NATIVE)
def test_attacks_stay_on_the_input_device(name):
    model = TinyNet(input_size=32).eval().cuda()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 32, 32, generator=g).cuda(), torch.tensor([0, 1]).cuda()
    spec = default_registry().get("attack", name)
    attack = default_registry().create("attack", name, eps=spec.eps, **FAST_OPTIONS.get(name, {}))
    explainer = GradCAM() if spec.target == AttackTarget.EXPLANATION else None
    x_adv = attack.perturb(model, x, y, explainer=explainer, generator=torch.Generator(device="cuda").manual_seed(0))
    assert check_adversarial(x, x_adv, norm=attack.norm, eps=attack.eps) == []
