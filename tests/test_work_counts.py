"""Work is never done twice: forward passes counted through an instrumented model during a whole suite."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
import torch

from robustbench_us import AttackSpec, AttackTarget, ModelSpec, Norm, hookimpl
from robustbench_us.checkpoints import save_checkpoint
from robustbench_us.plugins import Registry, get_plugin_manager
from robustbench_us.runner import run_suite
from robustbench_us.suite import parse_suite
from tests.fakes import toy
from tests.fakes.tiny import TinyNet

N_IMAGES, BATCH = 8, 4
EXPLAINERS = ("gradcam", "gradcam++")
IFGSM_STEPS = 3
CALLS: list[tuple[str, bool, int, tuple[str, ...]]] = []  # (method, grad enabled, image size, row digests)


def _digests(x: torch.Tensor) -> tuple[str, ...]:
    rows = x.detach().to("cpu", torch.float32).contiguous()
    return tuple(hashlib.sha1(row.numpy().tobytes()).hexdigest() for row in rows)


class CountingNet(TinyNet):
    """TinyNet that logs every forward and segment call: grad mode, image size and which images."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        CALLS.append(("forward", torch.is_grad_enabled(), x.shape[-1], _digests(x)))
        return super().forward(x)

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        CALLS.append(("segment", torch.is_grad_enabled(), x.shape[-1], _digests(x)))
        return super().segment(x)


class MapNudge:
    """An explanation-targeting attack that explains once and moves each pixel by ε × its map value."""

    norm, target = Norm.LINF, AttackTarget.EXPLANATION

    def __init__(self, eps: float) -> None:
        self.eps = eps

    def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
        maps = explainer.explain(model, x, y).detach()
        return (x + self.eps * maps.unsqueeze(1)).clamp(0, 1)


class CountingPlugins:
    @hookimpl
    def register_models(self, register):
        register(ModelSpec(name="counting-cnn", factory=lambda *, input_size=32: CountingNet(input_size=input_size),
                           input_size=32, has_segmentation=True, description="TinyNet that counts its calls"))

    @hookimpl
    def register_attacks(self, register):
        register(AttackSpec(name="map-nudge", factory=lambda *, eps=2 / 255: MapNudge(eps), eps=2 / 255,
                            target=AttackTarget.EXPLANATION, description="explain once, nudge by the map"))


@pytest.fixture(scope="module")
def counted_run(tmp_path_factory):
    """Run one dataset × two models × two explainers × five attack settings; return the calls per image size."""
    root = tmp_path_factory.mktemp("counts")
    checkpoint = root / "counting"
    # No training, so every call counted is the suite's own.
    save_checkpoint(CountingNet(), checkpoint, {"architecture": "counting-cnn"})
    registry = Registry(get_plugin_manager(environ={"ROBUSTBENCH_US_PLUGINS": "gradcam,cams,fgsm,iterative"},
                                           extra_plugins=[("toy", toy), ("counting", CountingPlugins())]))
    suite = parse_suite({
        "suite": {"name": "counts", "seed": 2, "n_images": N_IMAGES, "batch_size": BATCH},
        "datasets": [{"name": "toy-squares", "options": {"count": 60}}],
        "models": [{"name": "counting-cnn", "input_size": size, "checkpoint": f"{checkpoint}.safetensors"}
                   for size in (32, 64)],
        "explainers": [{"name": name} for name in EXPLAINERS],
        "attacks": [{"name": "fgsm", "eps_grey": [2, 4]},
                    {"name": "ifgsm", "eps_grey": 2, "options": {"steps": IFGSM_STEPS}},
                    {"name": "random-sign", "eps_grey": 2},
                    {"name": "map-nudge", "eps_grey": 2}],
    }, registry=registry)
    CALLS.clear()
    summary = run_suite(suite, root / "results", registry=registry, progress=False)
    assert summary.ok and not summary.invalid
    return summary, {size: [c for c in CALLS if c[2] == size] for size in (32, 64)}


# Adversarial sets per dataset × model: fgsm at two ε, ifgsm, random-sign, and map-nudge once per explainer.
LABEL_GENERATIONS = 4
GENERATIONS = LABEL_GENERATIONS + len(EXPLAINERS)


def test_one_record_per_cell(counted_run):
    summary, _ = counted_run
    assert len(summary.written) == 2 * len(EXPLAINERS) * 5


@pytest.mark.parametrize("size", [32, 64])
def test_one_clean_pass_and_one_adversarial_pass_per_attack(counted_run, size):
    calls = counted_run[1][size]
    # Without gradients the model sees the clean images once, then each adversarial set once,
    # however many explainers are measured on it.
    plain = [c for c in calls if c[0] == "forward" and not c[1]]
    rows = [d for c in plain for d in c[3]]
    assert len(rows) == N_IMAGES * (1 + GENERATIONS)
    assert max(Counter(rows).values()) == 1  # no image set is evaluated twice
    assert all(len(c[3]) == BATCH for c in plain)  # in the suite's batches
    segment = [c for c in calls if c[0] == "segment"]
    assert not any(c[1] for c in segment)
    assert sum(len(c[3]) for c in segment) == N_IMAGES * (1 + GENERATIONS)
    assert [d for c in segment for d in c[3]] == rows  # masks of exactly the same images, in the same order


@pytest.mark.parametrize("size", [32, 64])
def test_gradient_passes_are_exactly_what_the_grid_needs(counted_run, size):
    calls = counted_run[1][size]
    passes = sum(len(c[3]) for c in calls if c[0] == "forward" and c[1]) / N_IMAGES
    clean_maps = len(EXPLAINERS)
    attack_steps = 2 * 1 + IFGSM_STEPS + 0 + len(EXPLAINERS) * 1  # fgsm ×2 ε, ifgsm, random-sign, map-nudge
    adversarial_maps = LABEL_GENERATIONS * len(EXPLAINERS) + len(EXPLAINERS) * 1
    assert passes == clean_maps + attack_steps + adversarial_maps


def test_rounding_to_8_bits_costs_one_forward_pass_per_adversarial_set(tmp_path):
    """quantize = "uint8": the unrounded images once (for flips_surviving_rounding), the rounded ones once."""
    checkpoint = tmp_path / "counting"
    save_checkpoint(CountingNet(), checkpoint, {"architecture": "counting-cnn"})
    registry = Registry(get_plugin_manager(environ={"ROBUSTBENCH_US_PLUGINS": "gradcam,fgsm,iterative"},
                                           extra_plugins=[("toy", toy), ("counting", CountingPlugins())]))
    suite = parse_suite({
        "suite": {"name": "counts-q", "seed": 2, "n_images": N_IMAGES, "batch_size": BATCH, "quantize": "uint8",
                  "figures": False},
        "datasets": [{"name": "toy-squares", "options": {"count": 60}}],
        "models": [{"name": "counting-cnn", "checkpoint": f"{checkpoint}.safetensors"}],
        "explainers": [{"name": "gradcam"}],
        "attacks": [{"name": "fgsm", "eps_grey": [2, 4]}, {"name": "random-sign", "eps_grey": 2}],
    }, registry=registry)
    CALLS.clear()
    summary = run_suite(suite, tmp_path / "results", registry=registry, progress=False)
    assert summary.ok and len(summary.written) == 3
    plain = [c for c in CALLS if c[0] == "forward" and not c[1]]
    assert sum(len(c[3]) for c in plain) == N_IMAGES * (1 + 2 * 3)  # clean; per set: unrounded, rounded
