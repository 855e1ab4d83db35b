"""The conformance kit: passes plugins that keep their contract, names each broken one with its fix."""

from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from robustbench_us import AttackSpec, AttackTarget, ExplainerSpec, ModelSpec, Norm, hookimpl
from robustbench_us.plugins import Registry, get_plugin_manager
from robustbench_us.protocols import Sample, Split
from robustbench_us.testing import (ConformanceError, InputGradientExplainer, check_attack, check_dataset,
                                    check_explainer, check_model, check_plugin, registered_names, registered_params,
                                    sample_batch, tiny_model)
from tests.fakes import toy
from tests.fakes.tiny import TinyNet

EPS = 4 / 255


# ------------------------------------------------------------------------------ fake attacks
class UniformNoise:
    """A correct attack: seeded uniform noise in the L∞ ball, restricted to the mask."""

    norm, target = Norm.LINF, AttackTarget.NONE

    def __init__(self, eps: float) -> None:
        self.eps = eps

    def noise(self, x, generator):
        return (torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1) * self.eps

    def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
        delta = self.noise(x, generator)
        if mask is not None:
            delta = delta * mask.unsqueeze(1).to(x.dtype)
        return (x + delta).clamp(0, 1)


def make_uniform(*, eps: float = EPS) -> UniformNoise:
    """Uniform noise in the L∞ ball."""
    return UniformNoise(eps)


class OverBudget(UniformNoise):
    def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
        return (x + 3 * self.eps).clamp(0, 1)


class Unclipped(UniformNoise):
    def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
        return x + self.eps


class InPlace(UniformNoise):
    def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
        return x.sub_(self.eps).clamp_(0, 1)


class GlobalRandom(UniformNoise):
    def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
        return super().perturb(model, x, y, mask=mask, generator=None)


class Float64(UniformNoise):
    def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
        return super().perturb(model, x, y, mask=mask, generator=generator).double()


class IgnoresMask(UniformNoise):
    def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
        return super().perturb(model, x, y, generator=generator)


class NoGenerator(UniformNoise):
    def perturb(self, model, x, y, *, explainer=None, mask=None):  # the runner passes generator=
        return x.clone()


class Raising(UniformNoise):
    def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
        raise ValueError("boom")


class TrainsTheModel(UniformNoise):
    def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
        with torch.no_grad():
            next(model.parameters()).add_(1.0)
        return x.clone()


class ClaimsMoreBudget(UniformNoise):
    """Reports a larger ε than it was built with, which would hide an over-budget output from the runner."""

    def __init__(self, eps: float) -> None:
        super().__init__(eps)
        self.eps = 2 * eps


class Brightness(nn.Module):
    """Benign when the mean grey level is below 0.5, malignant above."""

    input_size, has_segmentation = 32, False

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(100.0))

    @property
    def cam_layer(self) -> nn.Module:
        return self

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3)) - 0.5
        return torch.stack([-m, m], dim=1) * self.scale


class Brighten(UniformNoise):
    def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
        region = 1.0 if mask is None else mask.unsqueeze(1).to(x.dtype)
        return (x + self.eps * region).clamp(0, 1)


def test_a_correct_attack_passes_every_check_and_reports_what_it_checked():
    report = check_attack(make_uniform, eps=EPS)
    assert {"budget", "finite-in-range", "shape-dtype-device", "input-untouched", "deterministic", "region-mask",
            "declares-eps", "model-untouched"} <= set(report.checks)
    assert report.details["largest_perturbation"] == pytest.approx(EPS, rel=0.05)
    assert report.details["largest_perturbation"] <= EPS + 1e-7


@pytest.mark.parametrize(("cls", "check", "words"), [
    (OverBudget, "budget", "over budget in linf: 4 of 4 images exceed eps=0.0156863 (4 grey levels)"),
    (Unclipped, "finite-in-range", "values outside [0, 1]"),
    (InPlace, "input-untouched", "modified its input in place"),
    (GlobalRandom, "deterministic", "from the `generator` argument"),
    (Float64, "shape-dtype-device", "dtype torch.float64 differs"),
    (IgnoresMask, "region-mask", "outside the region mask moved"),
    (NoGenerator, "perturb-signature", "does not accept generator"),
    (Raising, "perturb", "perturb() raised ValueError: boom"),
    (TrainsTheModel, "model-untouched", "perturb() changed the model"),
    (ClaimsMoreBudget, "declares-eps", "object eps=0.0313"),
])
def test_each_broken_attack_is_named_with_its_check_and_fix(cls, check, words):
    with pytest.raises(ConformanceError) as info:
        check_attack(lambda *, eps: cls(eps), eps=EPS)
    message = str(info.value)
    assert f"[{check}] " in message and words in message
    assert isinstance(info.value, AssertionError)  # pytest shows it as an ordinary failure


def test_every_violation_is_listed_not_only_the_first():
    class Everything(UniformNoise):
        def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
            x.add_(0)  # harmless; the real damage follows
            return (x + 3 * self.eps + torch.rand(x.shape)).double()

    with pytest.raises(ConformanceError) as info:
        check_attack(lambda *, eps: Everything(eps), eps=EPS)
    message = str(info.value)
    for check in ("budget", "finite-in-range", "shape-dtype-device", "deterministic"):
        assert f"[{check}]" in message
    assert "broke 5 conformance check(s)" in message  # region-mask too: the noise ignores it


def test_nan_output_is_reported_once_not_as_nondeterminism(reliability):
    class NaNPixel(UniformNoise):
        def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
            out = super().perturb(model, x, y, mask=mask, generator=generator)
            out[0, 0, 0, 0] = float("nan")  # the same pixel every call
            return out

    with pytest.raises(ConformanceError) as info:
        check_attack(lambda *, eps: NaNPixel(eps), eps=EPS)
    message = str(info.value)
    assert "[finite-in-range] 1 values are NaN or infinite" in message
    assert "[deterministic]" not in message and "broke 1 conformance check(s)" in message
    reliability.row("Bad input", "an attack whose output holds NaN (robustbench-us check attack)",
                    "reported once, as finite-in-range; no false determinism hint", checks_failed=1)


def test_a_label_preserving_claim_is_checked_on_the_model():
    model, images = Brightness(), torch.full((2, 3, 32, 32), 0.45)
    with pytest.raises(ConformanceError, match=r"\[preserves-label\] the spec says preserves_label=True but 2 of 2"):
        check_attack(lambda *, eps: Brighten(eps), eps=0.1, model=model, images=images, preserves_label=True)
    report = check_attack(lambda *, eps: Brighten(eps), eps=0.01, model=model, images=images, preserves_label=True)
    assert "preserves-label" in report.checks


def test_spec_and_object_must_agree_on_the_threat_model():
    spec = AttackSpec(name="says-l2", factory=make_uniform, norm=Norm.L2, eps=EPS, target=AttackTarget.NONE)
    with pytest.raises(ConformanceError, match=r"\[declares-norm\] object norm linf differs from the spec's l2"):
        check_attack(spec)


def test_a_factory_that_raises_is_reported_as_the_first_failure():
    def make(*, eps):
        """Refuses every ε."""
        raise ValueError("no")

    with pytest.raises(ConformanceError, match="the factory raised ValueError: no"):
        check_attack(make, eps=EPS)


def test_a_reference_attack_passes_by_name_and_is_labelled_with_its_plugin():
    report = check_attack("fgsm", eps=EPS)
    assert report.name == "'fgsm' (plugin 'fgsm')" and "budget" in report.checks
    assert str(report).startswith("attack 'fgsm' (plugin 'fgsm'): 13 checks passed (declares-norm, ")


def test_an_explanation_attack_gets_a_differentiable_explainer():
    class MapNudge(UniformNoise):
        target = AttackTarget.EXPLANATION

        def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
            maps = explainer.explain(model, x, y, create_graph=False)
            assert maps.shape == (x.shape[0], *x.shape[-2:])
            return super().perturb(model, x, y, mask=mask, generator=generator)

    assert "budget" in check_attack(lambda *, eps: MapNudge(eps), eps=EPS).checks


# ------------------------------------------------------------------------------ explainers
class Signed:
    differentiable = False

    def explain(self, model, x, target, *, create_graph=False):
        return x.mean(dim=1) - 0.5


class ChannelKept(Signed):
    def explain(self, model, x, target, *, create_graph=False):
        return x.mean(dim=1, keepdim=True)


class BatchNormalised(Signed):
    def explain(self, model, x, target, *, create_graph=False):
        maps = x.mean(dim=1)
        return maps / maps.sum()  # over the whole batch, not per image


class Noisy(Signed):
    def explain(self, model, x, target, *, create_graph=False):
        return x.mean(dim=1) + torch.rand(x.shape[0], *x.shape[-2:])


class Detaching(Signed):
    differentiable = True

    def explain(self, model, x, target, *, create_graph=False):
        return x.detach().mean(dim=1)


def test_a_correct_explainer_passes_and_so_does_the_kits_own():
    report = check_explainer(InputGradientExplainer(), model=TinyNet().eval())
    assert {"shape", "non-negative", "batch-consistent", "deterministic", "keeps-graph"} <= set(report.checks)
    assert report.details == {"differentiable": True}


@pytest.mark.parametrize(("cls", "check", "words"), [
    (Signed, "non-negative", "maps have negative values"),
    (ChannelKept, "shape", "expected maps [N, H, W] = (4, 32, 32)"),
    (BatchNormalised, "batch-consistent", "must not depend on the other images of its batch"),
    (Noisy, "deterministic", "two identical calls differ"),
    (Detaching, "keeps-graph", "returned maps without a graph to the input"),
])
def test_each_broken_explainer_is_named(cls, check, words):
    with pytest.raises(ConformanceError) as info:
        check_explainer(cls())
    assert f"[{check}] " in str(info.value) and words in str(info.value)


def test_the_spec_and_the_explainer_must_agree_on_differentiability():
    spec = ExplainerSpec(name="mean-map", factory=lambda: Detaching(), description="channel mean",
                         differentiable=False)
    with pytest.raises(ConformanceError, match=r"object differentiable=True differs from the spec's False"):
        check_explainer(spec)


def test_float32_noise_is_not_a_batch_dependence():
    class Jitter(Signed):
        def explain(self, model, x, target, *, create_graph=False):
            maps = x.mean(dim=1) + 1.0
            return maps * (1 + 1e-6 * (x.shape[0] > 1))  # batched kernels round differently

    assert "batch-consistent" in check_explainer(Jitter()).checks


def test_a_reference_explainer_passes_by_name():
    assert "batch-consistent" in check_explainer("gradcam").checks


# ------------------------------------------------------------------------------ models
class OneLogit(TinyNet):
    def forward(self, x):
        return super().forward(x)[:, :1]


class ForeignCamLayer(TinyNet):
    @property
    def cam_layer(self):
        return nn.Conv2d(8, 16, 3)


class OddLayout(TinyNet):
    cam_layout = "chw"


class TokensWithoutGrid(TinyNet):
    cam_layout = "nlc"


class BatchCentred(TinyNet):
    def forward(self, x):
        return super().forward(x - x.mean(dim=0, keepdim=True) + 0.5)


class PerImageStd(TinyNet):
    def forward(self, x):
        std = x.std(dim=(1, 2, 3), keepdim=True)
        return super().forward((x - x.mean(dim=(1, 2, 3), keepdim=True)) / std)


class HalfMask(TinyNet):
    def segment(self, x):
        return super().segment(x)[..., ::2, ::2]


def test_a_correct_model_passes():
    report = check_model(lambda *, input_size: TinyNet(input_size=input_size))
    assert {"logits-shape", "cam-layer", "batch-consistent", "input-gradient", "segment-shape",
            "accepts-unit-range"} <= set(report.checks)
    assert report.details == {"input_size": 32, "has_segmentation": True}


@pytest.mark.parametrize(("cls", "check", "words"), [
    (OneLogit, "logits-shape", "expected logits [N, 2] = (3, 2)"),
    (ForeignCamLayer, "cam-layer", "must be one of the model's own submodules"),
    (OddLayout, "cam-layout", "model.cam_layout is 'chw'"),
    (TokensWithoutGrid, "cam-layout", "give the patch grid (h, w)"),
    (BatchCentred, "batch-consistent", "no batch statistics at inference"),
    (PerImageStd, "accepts-unit-range", "normalise inside the model"),
    (HalfMask, "segment-shape", "expected finite mask logits [N, 1, H, W] = (3, 1, 32, 32)"),
])
def test_each_broken_model_is_named(cls, check, words):
    with pytest.raises(ConformanceError) as info:
        check_model(lambda *, input_size: cls(input_size=input_size))
    assert f"[{check}] " in str(info.value) and words in str(info.value)


def test_a_model_must_report_the_input_size_it_was_built_with():
    with pytest.raises(ConformanceError, match=r"\[input-size\] model.input_size is 32; it must be the int the "
                                               r"factory was given \(64\)"):
        check_model(lambda *, input_size: TinyNet(input_size=32), input_size=64)


# ------------------------------------------------------------------------------ datasets
class Leaky(toy.ToyDataset):
    """Pairs of images share a group, but the split ignores groups."""

    def __getitem__(self, i):
        s = super().__getitem__(i)
        return Sample(image=s.image, label=s.label, id=s.id, group=f"patient-{i // 2}", mask=s.mask)

    def split(self, seed, fractions=(0.7, 0.1, 0.2)):
        order = torch.randperm(self.count, generator=torch.Generator().manual_seed(seed)).tolist()
        a, b = int(0.7 * self.count), int(0.8 * self.count)
        return Split(tuple(sorted(order[:a])), tuple(sorted(order[a:b])), tuple(sorted(order[b:])))


class BadLabels(toy.ToyDataset):
    def __getitem__(self, i):
        s = super().__getitem__(i)
        return Sample(image=(s.image * 255).to(torch.uint8), label=torch.tensor(2), id=s.id, group=s.group)


class Unseeded(toy.ToyDataset):
    def split(self, seed, fractions=(0.7, 0.1, 0.2)):
        return super().split(int(torch.randint(0, 1000, ())), fractions)


class Dropping(toy.ToyDataset):
    def split(self, seed, fractions=(0.7, 0.1, 0.2)):
        s = super().split(seed, fractions)
        return Split(s.train[1:], s.val, s.test)


class SameId(toy.ToyDataset):
    def __getitem__(self, i):
        s = super().__getitem__(i)
        return Sample(image=s.image, label=s.label, id="img", group=s.group, mask=s.mask)


def dataset_factory(cls):
    def make(*, root=None, image_size=32, seed=0, count=20):
        """A fake dataset."""
        return cls(count, image_size, seed)

    return make


def test_a_correct_dataset_passes_and_is_rebuilt_alike():
    report = check_dataset(toy.make_toy, options={"count": 20})
    assert {"classes", "samples", "manifest-hash", "split(0)", "split(1)", "same-sample-twice",
            "rebuilt-alike"} <= set(report.checks)
    assert report.details == {"length": 20, "samples_read": 20}


@pytest.mark.parametrize(("cls", "check", "words"), [
    (Leaky, "split(0)", "is in both"),
    (BadLabels, "samples", "expected float32 [3, 32, 32]"),
    (BadLabels, "samples", "label is tensor(2); expected an int in 0..1"),
    (Unseeded, "split(0)", "called twice gives different parts"),
    (Dropping, "split(0)", "must put every index 0..19 in exactly one part"),
    (SameId, "samples", "share the id 'img'"),
])
def test_each_broken_dataset_is_named(cls, check, words):
    with pytest.raises(ConformanceError) as info:
        check_dataset(dataset_factory(cls))
    assert f"[{check}] " in str(info.value) and words in str(info.value)


def test_a_dataset_factory_must_accept_the_arguments_the_runner_passes():
    def no_seed(*, root=None, image_size=32):
        """Forgets the seed the runner passes."""
        return toy.ToyDataset(20, image_size)

    with pytest.raises(ConformanceError, match="unexpected keyword argument 'seed'"):
        check_dataset(no_seed)


def test_grouping_is_checked_on_a_sample_of_a_large_dataset():
    report = check_dataset(dataset_factory(toy.ToyDataset), max_samples=8, options={"count": 20})
    assert report.details["samples_read"] <= 10  # 8 drawn, plus the first and last index


def test_the_phantom_passes_by_name():
    assert "split(0)" in check_dataset("phantom", options={"count": 20}).checks


# ------------------------------------------------------------------------------ helpers
def make_over_budget(*, eps: float = EPS) -> OverBudget:
    """Three times over its budget."""
    return OverBudget(eps)


def make_tiny(*, input_size: int = 32) -> TinyNet:
    """The tiny CNN of the tests."""
    return TinyNet(input_size=input_size)


def make_not_a_model(*, variant: str, input_size: int = 32) -> dict:
    """A model family whose factory forgets to build a module."""
    return {"variant": variant, "input_size": input_size}


class KitFakes:
    """A plugin object for the registry helpers: two attacks, a model and a model family."""

    @hookimpl
    def register_attacks(self, register):
        register(AttackSpec(name="kit-uniform", factory=make_uniform, target=AttackTarget.NONE))
        register(AttackSpec(name="kit-over-budget", factory=make_over_budget, target=AttackTarget.NONE))

    @hookimpl
    def register_models(self, register):
        register(ModelSpec(name="kit-tiny", factory=make_tiny, input_size=32, has_segmentation=True))
        register(ModelSpec(name="kit:*", factory=make_not_a_model, input_size=32))


def registry_with_fakes() -> Registry:
    return Registry(get_plugin_manager(environ={"ROBUSTBENCH_US_PLUGINS": "fgsm"},
                                       extra_plugins=[("kit", KitFakes())]))


def test_registered_names_filter_by_plugin_and_distribution():
    registry = registry_with_fakes()
    mine = registered_names("attack", registry=registry, plugin="kit")
    builtin = registered_names("attack", registry=registry, distribution="robustbench-us")
    assert mine == ["kit-over-budget", "kit-uniform"]
    assert "fgsm" in builtin and not set(builtin) & set(mine)  # a local plugin has no distribution
    assert registered_names("attack", registry=registry) == sorted(builtin + mine)


def test_registered_params_skip_with_reasons_and_check_families_through_a_variant():
    registry = registry_with_fakes()
    params = registered_params("model", registry=registry, skip={"kit-tiny": "slow"})
    assert [(p.id, p.values[0], [m.kwargs.get("reason") for m in p.marks]) for p in params] == [
        ("kit-tiny", "kit-tiny", ["slow"]), ("kit:*", "kit:*", ["family kit:*: give a variant to check in variants="])]
    (_, kit_family) = registered_params("model", registry=registry, variants={"kit:*": "kit:small"})
    assert kit_family.values == ("kit:small",) and not kit_family.marks


def test_a_family_is_checked_through_a_variant():
    with pytest.raises(ConformanceError, match=r"(?s)model 'kit:small' \(plugin 'kit'\) broke .*\[is-module\] the "
                                               r"factory returned dict"):
        check_model("kit:small", registry=registry_with_fakes())


def test_check_plugin_dispatches_on_kind():
    registry = registry_with_fakes()
    assert check_plugin("model", "kit-tiny", registry=registry).kind == "model"
    with pytest.raises(ConformanceError, match="over budget"):
        check_plugin("attack", "kit-over-budget", registry=registry, eps=0.01)


def test_kit_fixtures_are_seeded_and_leave_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = tiny_model(), tiny_model()
    x1, y1 = sample_batch(4, 32, seed=3)
    x2, y2 = sample_batch(4, 32, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert torch.equal(x1, x2) and y1.tolist() == [0, 1, 0, 1]
    assert float(x1.min()) == 0.0 and float(x1.max()) == 1.0 and x1.dtype == torch.float32
    digest = hashlib.sha256(x1.numpy().tobytes()).hexdigest()
    assert digest == hashlib.sha256(sample_batch(4, 32, seed=3)[0].numpy().tobytes()).hexdigest()
