"""Small fake plugins for runner tests: a toy dataset, the tiny CNN, and misbehaving attacks."""

from __future__ import annotations

import hashlib

import torch

from robustbench_us import AttackSpec, AttackTarget, DatasetSpec, ExplainerSpec, ModelSpec, Norm, hookimpl
from robustbench_us.protocols import Sample, Split
from robustbench_us.splits import grouped_stratified_split
from tests.fakes.tiny import TinyNet


class ToyDataset:
    """Bright square (malignant) or dark square (benign) on noise; exact masks."""

    classes = ("benign", "malignant")

    def __init__(self, count: int = 40, image_size: int = 32, seed: int = 0) -> None:
        self.count, self.size, self.seed = count, image_size, seed
        self.labels = [i % 2 for i in range(count)]
        self.groups = [f"toy-{i}" for i in range(count)]

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> Sample:
        g = torch.Generator().manual_seed(self.seed * 1000 + i)
        image = torch.rand(self.size, self.size, generator=g) * 0.3 + 0.2
        mask = torch.zeros(self.size, self.size, dtype=torch.bool)
        r, c = (int(v) for v in torch.randint(2, self.size // 2, (2,), generator=g))
        mask[r:r + self.size // 3, c:c + self.size // 3] = True
        image[mask] = 0.9 if self.labels[i] else 0.05
        return Sample(image=image.expand(3, -1, -1).clone(), label=self.labels[i], id=f"toy-{i}", group=self.groups[i],
                      mask=mask)

    def manifest_hash(self) -> str:
        return hashlib.sha256(f"toy:{self.count}:{self.size}:{self.seed}".encode()).hexdigest()

    def split(self, seed: int, fractions=(0.7, 0.1, 0.2)) -> Split:
        return grouped_stratified_split(self.labels, self.groups, seed, fractions)


def make_toy(*, root=None, image_size: int = 32, seed: int = 0, count: int = 40) -> ToyDataset:
    """Toy squares dataset for tests."""
    return ToyDataset(count, image_size, seed)


def make_tiny(*, input_size: int = 32) -> TinyNet:
    """Tiny CNN for tests."""
    return TinyNet(input_size=input_size)


class Raising:
    norm, eps, target = Norm.LINF, 0.0, AttackTarget.LABEL

    def __init__(self, eps: float) -> None:
        self.eps = eps

    def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
        raise ValueError("boom from the broken attack")


class OverBudget(Raising):
    def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
        return (x + 3 * self.eps).clamp(0, 1)


class NaNAttack(Raising):
    def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
        out = x.clone()
        out[0, 0, 0, 0] = float("nan")
        return out


class Hanging(Raising):
    def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
        import time

        while True:
            time.sleep(0.01)


class NaNMap:
    differentiable = False

    def explain(self, model, x, target, *, create_graph=False):
        return torch.full(x.shape[:1] + x.shape[2:], float("nan"))


def make_nan_attack(*, eps: float = 0.0) -> NaNAttack:
    """An attack whose output holds a NaN."""
    return NaNAttack(eps)


def make_hanging(*, eps: float = 0.0) -> Hanging:
    """An attack that never returns."""
    return Hanging(eps)


def make_nan_map() -> NaNMap:
    """An explainer whose maps are NaN."""
    return NaNMap()


def make_raising(*, eps: float = 0.0) -> Raising:
    """An attack that always raises."""
    return Raising(eps)


def make_over_budget(*, eps: float = 0.01) -> OverBudget:
    """An attack that exceeds its budget threefold."""
    return OverBudget(eps)


@hookimpl
def register_datasets(register):
    register(DatasetSpec(name="toy-squares", factory=make_toy))


@hookimpl
def register_models(register):
    register(ModelSpec(name="tiny-cnn", factory=make_tiny, input_size=32, has_segmentation=True))


@hookimpl
def register_attacks(register):
    register(AttackSpec(name="raising", factory=make_raising, eps=0.0))
    register(AttackSpec(name="over-budget", factory=make_over_budget, eps=0.01))
    register(AttackSpec(name="nan-attack", factory=make_nan_attack, eps=0.0))
    register(AttackSpec(name="hanging", factory=make_hanging, eps=0.0))


@hookimpl
def register_explainers(register):
    register(ExplainerSpec(name="nan-map", factory=make_nan_map))
