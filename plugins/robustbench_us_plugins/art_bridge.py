"""ART bridge: every evasion attack of the Adversarial Robustness Toolbox as ``art:<name>``.

The torch model is wrapped in ART's ``PyTorchClassifier`` (clip values (0, 1),
cross-entropy loss) for the duration of one ``perturb`` call. ART works on NumPy
arrays; the round trip happens once per call, here only.

Named variants (options are ART's parameter names unless said otherwise):

============== ============================ ======= =============================================
variant        ART class                    norm    budget
============== ============================ ======= =============================================
fgm            FastGradientMethod           option  ``eps`` (L∞ or L2 by ``norm``)
bim            BasicIterativeMethod         L∞      ``eps``
pgd            ProjectedGradientDescent     option  ``eps``
auto-attack    APGD-CE, Square (AutoAttack) option  ``eps``
square         SquareAttack                 option  ``eps``
carlini-l2     CarliniL2Method              L2      none in ART: result projected onto ``eps``
carlini-linf   CarliniLInfMethod            L∞      none in ART: result projected onto ``eps``
deepfool       DeepFool                     L2      none in ART: result projected onto ``eps``
============== ============================ ======= =============================================

Any other class of ``art.attacks.evasion`` answers its kebab-case name
(``art:hop-skip-jump``, ``art:elastic-net``...): options go to its constructor, ``eps``
too when it takes one, and the result is projected onto the ε-ball of the ``norm``
option (default ``linf``). ``project=False`` keeps a minimal-perturbation attack's
result as it is and declares ``Norm.NONE`` (size measured, not bounded).
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from robustbench_us import AttackSpec, AttackTarget, Norm, hookimpl
from robustbench_us.attack_utils import AttackError, check_region, finish, region_weights

NORMS = {"linf": Norm.LINF, "inf": Norm.LINF, "l2": Norm.L2, "2": Norm.L2}
ART_NORM = {Norm.LINF: np.inf, Norm.L2: 2}


@dataclass(frozen=True)
class Variant:
    """How one named ART attack is built: its class, threat model and defaults."""

    art_class: str
    norm: Norm | None  # None: chosen by the ``norm`` option
    bounded: bool  # whether ART itself keeps the result within eps
    defaults: Callable[[float, int], dict[str, Any]] = lambda eps, n: {}
    passes_norm: bool = True
    mask_kwarg: bool = False  # generate() accepts mask=
    renames: dict[str, str] = field(default_factory=dict)  # our option name -> ART parameter


class AutoAttackEnsemble:
    """AutoAttack (Croce & Hein, ICML 2020) from ART's members: APGD-CE, APGD-DLR (≥ 3 classes), Square.

    Each member attacks only the images that every earlier member failed on, as in
    ART's ``AutoAttack`` (whose ``generate`` needs the optional ``multiprocess`` package
    even when run serially, so the bridge runs the same untargeted cascade itself).
    ART's default list also has DeepFool, which ignores ε; it is left out.
    """

    def __init__(self, estimator, *, norm, eps: float, eps_step: float, max_iter: int = 100,
                 nb_random_init: int = 1, square_max_iter: int = 1000, batch_size: int = 32) -> None:
        from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack

        self.estimator = estimator
        apgd = dict(estimator=estimator, norm=norm, eps=eps, eps_step=eps_step, max_iter=max_iter,
                    nb_random_init=nb_random_init, batch_size=batch_size, verbose=False)
        self.members = [AutoProjectedGradientDescent(loss_type="cross_entropy", **apgd)]
        if estimator.nb_classes > 2:
            self.members.append(AutoProjectedGradientDescent(loss_type="difference_logits_ratio", **apgd))
        self.members.append(SquareAttack(estimator=estimator, norm=norm, eps=eps, max_iter=square_max_iter,
                                         nb_restarts=1, batch_size=batch_size, verbose=False))

    def generate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        adv = x.copy()
        robust = self.estimator.predict(x).argmax(axis=1) == y
        for member in self.members:
            index = np.flatnonzero(robust)
            if index.size == 0:
                break
            candidate = member.generate(x[index], y[index])
            fooled = self.estimator.predict(candidate).argmax(axis=1) != y[index]
            adv[index[fooled]] = candidate[fooled]
            robust[index[fooled]] = False
        return adv


VARIANTS: dict[str, Variant] = {
    "fgm": Variant("FastGradientMethod", None, True, lambda eps, n: {"eps_step": eps, "num_random_init": 0},
                   mask_kwarg=True),
    "bim": Variant("BasicIterativeMethod", Norm.LINF, True,
                   lambda eps, n: {"eps_step": eps / 10, "max_iter": 25, "verbose": False},
                   passes_norm=False, mask_kwarg=True),
    "pgd": Variant("ProjectedGradientDescent", None, True,
                   lambda eps, n: {"eps_step": eps / 4, "max_iter": 10, "num_random_init": 1, "verbose": False},
                   mask_kwarg=True),
    "auto-attack": Variant("AutoAttackEnsemble", None, True,
                           lambda eps, n: {"eps_step": eps / 4, "max_iter": 100, "nb_random_init": 1,
                                           "square_max_iter": 1000}),
    "square": Variant("SquareAttack", None, True, lambda eps, n: {"max_iter": 1000, "verbose": False}),
    "carlini-l2": Variant("CarliniL2Method", Norm.L2, False, lambda eps, n: {"verbose": False}, passes_norm=False),
    "carlini-linf": Variant("CarliniLInfMethod", Norm.LINF, False, lambda eps, n: {"verbose": False},
                            passes_norm=False),
    "deepfool": Variant("DeepFool", Norm.L2, False, lambda eps, n: {"verbose": False}, passes_norm=False,
                        renames={"overshoot": "epsilon"}),
}


def _kebab(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name).lower()


def evasion_classes() -> dict[str, type]:
    """Every evasion attack class ART exports, by kebab-case name (``HopSkipJump`` → ``hop-skip-jump``)."""
    import art.attacks.evasion as evasion

    return {_kebab(name): cls for name, cls in vars(evasion).items()
            if inspect.isclass(cls) and name[0].isupper() and hasattr(cls, "generate")}


def _resolve(variant: str) -> tuple[Variant, type]:
    import art.attacks.evasion as evasion

    if variant in VARIANTS:
        spec = VARIANTS[variant]
        return spec, AutoAttackEnsemble if spec.art_class == "AutoAttackEnsemble" else getattr(evasion, spec.art_class)
    classes = evasion_classes()
    squashed = {key.replace("-", ""): cls for key, cls in classes.items()}
    cls = classes.get(variant) or squashed.get(variant.replace("-", ""))
    if cls is None:
        from robustbench_us.errors import UnknownNameError

        raise UnknownNameError("attack", f"art:{variant}", [f"art:{name}" for name in {*VARIANTS, *classes}])
    params = inspect.signature(cls.__init__).parameters
    return Variant(cls.__name__, None, "eps" in params, passes_norm="norm" in params), cls


@contextlib.contextmanager
def _numpy_seeded(generator: torch.Generator | None) -> Iterator[None]:
    """ART draws its randomness from NumPy's global state: seed it from ``generator`` and restore it after."""
    if generator is None:
        yield
        return
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device))
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


@contextlib.contextmanager
def _modes_kept(model: nn.Module) -> Iterator[None]:
    """ART switches the model to eval/train as it likes; put every module's mode back afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


class ARTAttack:
    """One ART evasion attack behind the project's attack contract (untargeted, labels from the runner)."""

    target = AttackTarget.LABEL

    def __init__(self, variant: str, eps: float, *, norm: str | None = None, project: bool = True,
                 region: str = "all", nb_classes: int = 2, **options: Any) -> None:
        self.variant = variant
        self.spec, self.art_class = _resolve(variant)
        self.name = f"art:{variant}"
        self.eps = float(eps)
        if not self.eps >= 0:
            raise AttackError(f"attack {self.name!r}: eps={eps} must be >= 0 (pixel units; 1 grey level = 1/255).")
        if norm is not None and str(norm).lower() not in NORMS:
            raise AttackError(f"attack {self.name!r}: norm={norm!r} is not one of linf, l2.")
        chosen = NORMS[str(norm).lower()] if norm is not None else None
        if self.spec.norm is not None and chosen not in (None, self.spec.norm):
            raise AttackError(f"attack {self.name!r} is an {self.spec.norm} attack; drop norm={norm!r}.")
        self.bounded = self.spec.bounded or bool(project)
        self.norm = (self.spec.norm or chosen or Norm.LINF) if self.bounded else Norm.NONE
        self.region = check_region(region, attack=self.name)
        self.nb_classes = int(nb_classes)
        self.options = options
        accepted = inspect.signature(self.art_class.__init__).parameters
        unknown = sorted({self.spec.renames.get(key, key) for key in options} - set(accepted))
        if unknown:
            raise AttackError(f"attack {self.name!r}: {self.art_class.__name__} has no parameter "
                              f"{', '.join(unknown)}. It takes: {', '.join(k for k in accepted if k != 'self')}.")

    def _art_params(self, n: int) -> dict[str, Any]:
        params = dict(self.spec.defaults(self.eps, n))
        params.update({self.spec.renames.get(key, key): value for key, value in self.options.items()})
        accepted = inspect.signature(self.art_class.__init__).parameters
        if "eps" in accepted:
            params["eps"] = self.eps
        if self.spec.passes_norm and "norm" in accepted and self.norm != Norm.NONE:
            params["norm"] = ART_NORM[self.norm]
        if "batch_size" in accepted:
            params.setdefault("batch_size", n)
        if "verbose" in accepted:
            params.setdefault("verbose", False)
        return {key: value for key, value in params.items() if key in accepted}

    def _build(self, classifier, n: int):
        params = self._art_params(n)
        first = next(iter(p for p in inspect.signature(self.art_class.__init__).parameters if p != "self"))
        return self.art_class(**{first: classifier}, **params)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, explainer=None,
                mask: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        from art.estimators.classification import PyTorchClassifier

        x = x.detach()
        region = region_weights(mask, x)
        with _modes_kept(model), _numpy_seeded(generator):
            classifier = PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                           nb_classes=self.nb_classes, clip_values=(0.0, 1.0),
                                           device_type="gpu" if x.is_cuda else "cpu")
            attack = self._build(classifier, x.shape[0])
            kwargs: dict[str, Any] = {}
            if region is not None and self.spec.mask_kwarg:
                kwargs["mask"] = region.expand_as(x).cpu().numpy()
            x_np = x.cpu().numpy().astype(np.float32)
            y_np = y.long().cpu().numpy()
            try:
                adv = attack.generate(x_np, y_np, **kwargs)
            except (ValueError, TypeError, NotImplementedError) as exc:
                raise AttackError(f"attack {self.name!r}: ART's {self.art_class.__name__} failed on images "
                                  f"{tuple(x.shape)}: {exc}") from exc
        x_adv = torch.from_numpy(np.ascontiguousarray(adv)).to(device=x.device, dtype=x.dtype)
        if self.norm == Norm.NONE:
            delta = x_adv - x if region is None else (x_adv - x) * region
            return (x + delta).clamp(0.0, 1.0)
        return finish(x_adv, x, self.norm, self.eps, region)


def make_art_attack(*, variant: str, eps: float = 1 / 255, **options: Any) -> ARTAttack:
    """Any ART evasion attack as ``art:<name>``: fgm, bim, pgd, auto-attack, square, carlini-l2, deepfool..."""
    return ARTAttack(variant, eps, **options)


@hookimpl
def register_attacks(register):
    # The family spec cannot name one norm for all variants: each attack object carries its own.
    register(AttackSpec(name="art:*", factory=make_art_attack, norm=Norm.LINF, eps=1 / 255,
                        target=AttackTarget.LABEL,
                        options={"variant": sorted(VARIANTS), "norm": None, "project": True, "region": "all"}))
