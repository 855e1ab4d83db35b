"""Plugin specs: what a plugin hands to ``register`` for each kind."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from robustbench_us.errors import PluginError

# Lowercase kebab-case; '+' for names such as gradcam++; a family ends in ':*'
# (e.g. 'timm:*' answers 'timm:resnet18', the part after ':' reaches the factory).
_NAME = re.compile(r"^[a-z0-9][a-z0-9+]*(-[a-z0-9+]+)*(:\*)?$")


class Kind(StrEnum):
    """The four kinds of plugin."""

    DATASET = "dataset"
    MODEL = "model"
    EXPLAINER = "explainer"
    ATTACK = "attack"


class Norm(StrEnum):
    """Threat-model norm of an attack's budget, in [0, 1] pixel units."""

    LINF = "linf"
    L2 = "l2"
    NONE = "none"


class AttackTarget(StrEnum):
    """What an attack tries to change."""

    LABEL = "label"
    EXPLANATION = "explanation"
    NONE = "none"  # a control, e.g. random noise of the same size


def first_docstring_line(obj: object) -> str:
    """The first non-empty line of ``obj``'s docstring, or ''."""
    doc = inspect.getdoc(obj) or ""
    for line in doc.splitlines():
        if line.strip():
            return line.strip()
    return ""


@dataclass(frozen=True, kw_only=True)
class Spec:
    """Common fields of every spec; ``plugin`` is filled in by the host."""

    kind: ClassVar[Kind]

    name: str
    factory: Callable[..., Any]
    description: str = ""
    plugin: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise PluginError(
                f"{self.kind} name {self.name!r} is not lowercase kebab-case "
                "(letters, digits, '-' and '+'; a family ends in ':*'). Rename it, e.g. 'my-attack'."
            )
        if not callable(self.factory):
            raise PluginError(f"{self.kind} {self.name!r}: factory {self.factory!r} is not callable.")
        if not self.description:
            object.__setattr__(self, "description", first_docstring_line(self.factory))
        if not self.description:
            raise PluginError(
                f"{self.kind} {self.name!r} has no description: give its factory a docstring "
                "or pass description=... to the spec."
            )

    @property
    def is_family(self) -> bool:
        """Whether this spec answers every ``prefix:<variant>`` name."""
        return self.name.endswith(":*")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (the factory shown by its import path)."""
        out: dict[str, Any] = {"kind": str(self.kind), "name": self.name, "description": self.description,
                               "plugin": self.plugin}
        for key, value in self.__dict__.items():
            if key in ("name", "factory", "description", "plugin"):
                continue
            out[key] = str(value) if isinstance(value, StrEnum) else value
        factory = self.factory
        out["factory"] = f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))}"
        return out


@dataclass(frozen=True, kw_only=True)
class DatasetSpec(Spec):
    """A dataset: ``factory(*, root, image_size, **options) -> Dataset``."""

    kind: ClassVar[Kind] = Kind.DATASET
    classes: tuple[str, ...] = ("benign", "malignant")
    has_masks: bool = True
    needs_root: bool = False


@dataclass(frozen=True, kw_only=True)
class ModelSpec(Spec):
    """A model: ``factory(*, input_size, **options) -> nn.Module``."""

    kind: ClassVar[Kind] = Kind.MODEL
    input_size: int = 224
    has_segmentation: bool = False


@dataclass(frozen=True, kw_only=True)
class ExplainerSpec(Spec):
    """An explainer: ``factory(**options) -> Explainer``."""

    kind: ClassVar[Kind] = Kind.EXPLAINER
    differentiable: bool = False
    requires_segmentation: bool = False  # only meaningful on models with a segmentation head


@dataclass(frozen=True, kw_only=True)
class AttackSpec(Spec):
    """An attack: ``factory(*, eps, **options) -> Attack``; ``eps`` in [0, 1] units."""

    kind: ClassVar[Kind] = Kind.ATTACK
    norm: Norm = Norm.LINF
    eps: float = 8 / 255
    target: AttackTarget = AttackTarget.LABEL
    preserves_label: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "norm", Norm(self.norm))
        object.__setattr__(self, "target", AttackTarget(self.target))
        if not (0.0 <= float(self.eps) <= 1.0):
            raise PluginError(f"attack {self.name!r}: eps={self.eps} is outside [0, 1] pixel units.")


SPEC_TYPES: dict[Kind, type[Spec]] = {
    Kind.DATASET: DatasetSpec,
    Kind.MODEL: ModelSpec,
    Kind.EXPLAINER: ExplainerSpec,
    Kind.ATTACK: AttackSpec,
}
