"""The shapes plugins return: samples, splits and the four plugin objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from robustbench_us.specs import AttackTarget, Norm


@dataclass(frozen=True)
class Sample:
    """One image: float32 ``[3, H, W]`` in [0, 1], label 0 benign / 1 malignant."""

    image: torch.Tensor
    label: int
    id: str
    group: str
    mask: torch.Tensor | None = None  # bool [H, W], lesion = True
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Split:
    """Indices of a dataset's train, validation and test parts."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]

    def part(self, name: str) -> tuple[int, ...]:
        """The indices of part ``name`` ('train', 'val' or 'test')."""
        if name not in ("train", "val", "test"):
            from robustbench_us.errors import RobustBenchError

            raise RobustBenchError(f"Unknown split part {name!r}. Use 'train', 'val' or 'test'.")
        return getattr(self, name)


@runtime_checkable
class Dataset(Protocol):
    """What a dataset factory returns."""

    classes: tuple[str, ...]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...

    def manifest_hash(self) -> str: ...

    def split(self, seed: int, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> Split: ...


@runtime_checkable
class Explainer(Protocol):
    """What an explainer factory returns."""

    differentiable: bool

    def explain(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                create_graph: bool = False) -> torch.Tensor: ...


@runtime_checkable
class Attack(Protocol):
    """What an attack factory returns."""

    norm: Norm
    eps: float
    target: AttackTarget

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                explainer: Explainer | None = None, mask: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor: ...
