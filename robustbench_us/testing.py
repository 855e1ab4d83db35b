"""The conformance kit: check that a plugin keeps the contracts of its kind, from pytest or a script.

A plugin author calls one function per plugin in a test::

    from robustbench_us.testing import check_attack

    def test_my_attack_conforms():
        check_attack("my-attack", eps=4 / 255)   # a registered name, a spec, a factory or an attack

Each ``check_*`` runs every check of its kind on a tiny seeded model and batch
(milliseconds on CPU), collects *all* violations and raises :class:`ConformanceError`
(an ``AssertionError``, so pytest shows it as a plain test failure) listing each one
with the fix; on success it returns a :class:`ConformanceReport` naming what was checked.

What is checked (the contracts of docs/plugins.md and ``robustbench_us.hookspecs``):

attacks
    the object declares ``norm``, ``eps`` (the ε it was built with) and ``target``;
    output has the input's shape, dtype and device, is finite, in [0, 1] and within ε in
    the declared norm; the input, labels and model weights are not modified; the same
    seeded ``generator`` gives the same output (and the global RNG is not used instead);
    pixels outside a region ``mask`` do not move; the predicted label is kept when the
    spec says ``preserves_label``.
explainers
    maps ``[N, H, W]`` at input resolution, floating point, finite, non-negative, on the
    input's device; a batch equals its images explained one by one (to tolerance); the
    same call twice gives the same maps; input and model untouched; ``differentiable``
    is a bool matching the spec, and a differentiable explainer keeps the graph to the
    input under ``create_graph=True``.
models
    an ``nn.Module`` with ``input_size`` (int), ``has_segmentation`` (bool) and
    ``cam_layer`` (one of its submodules); logits ``[N, 2]``, finite, for any input in
    [0, 1] (black and white images included); gradients reach the input; a batch equals
    its images one by one in eval mode; ``segment(x)`` gives ``[N, 1, H, W]`` when
    ``has_segmentation``.
datasets
    ``classes`` a tuple of names (the spec's), ``len() > 0``, samples of the right
    fields and types (image float32 ``[3, S, S]`` in [0, 1], label an ``int`` indexing
    ``classes``, ``id`` and ``group`` non-empty strings, ``mask`` ``None`` or bool
    ``[S, S]``), the same sample twice for the same index, a stable ``manifest_hash()``;
    ``split(seed)`` covers every index exactly once, puts no group in two parts, and is
    the same for the same seed (also on a freshly built dataset).

:func:`registered_params` turns the registered names of a kind into ``pytest.param`` s,
so one parametrised test covers every plugin a distribution registers.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from robustbench_us.errors import RobustBenchError
from robustbench_us.plugins import Registry, default_registry
from robustbench_us.protocols import Sample, Split
from robustbench_us.specs import AttackSpec, AttackTarget, DatasetSpec, Kind, ModelSpec, Norm, Spec

__all__ = [
    "ConformanceError", "ConformanceReport", "TinyClassifier", "InputGradientExplainer", "tiny_model",
    "sample_batch", "check_attack", "check_explainer", "check_model", "check_dataset", "check_plugin",
    "registered_names", "registered_params",
]

DEFAULT_SIZE = 32
DEFAULT_ATTACK_EPS = 8 / 255


class ConformanceError(RobustBenchError, AssertionError):
    """A plugin broke one or more contracts of its kind; the message lists each with its fix."""


@dataclass(frozen=True)
class ConformanceReport:
    """What a passing ``check_*`` call verified."""

    kind: Kind
    name: str
    checks: tuple[str, ...]
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        names = list(dict.fromkeys(self.checks))  # a check made of several expectations is named once
        return f"{self.kind} {self.name}: {len(names)} checks passed ({', '.join(names)})"


# ------------------------------------------------------------------------------ fixtures of the kit
class TinyClassifier(nn.Module):
    """A two-stage CNN that keeps the model contract (normalisation inside, ``cam_layer``, ``segment``).

    Fast enough to run every check in milliseconds; seeded, so its numbers repeat.
    """

    def __init__(self, *, input_size: int = DEFAULT_SIZE, seed: int = 0) -> None:
        super().__init__()
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.input_size = int(input_size)
        self.has_segmentation = True
        self.stage1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.stage2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(16, 2)
        self.mask_head = nn.Conv2d(16, 1, 1)
        torch.random.set_rng_state(generator_state)  # building the kit's model leaves the caller's RNG alone

    @property
    def cam_layer(self) -> nn.Module:
        """The last convolutional stage."""
        return self.stage2

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage2(self.stage1((x - 0.5) / 0.25))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        """Mask logits ``[N, 1, H, W]`` at input resolution."""
        return nn.functional.interpolate(self.mask_head(self.features(x)), size=x.shape[-2:], mode="bilinear",
                                         align_corners=False)


def tiny_model(*, input_size: int = DEFAULT_SIZE, seed: int = 0, device: str | torch.device = "cpu") -> TinyClassifier:
    """The kit's seeded tiny model, in eval mode, on ``device``."""
    return TinyClassifier(input_size=input_size, seed=seed).to(device).eval()


def sample_batch(n: int = 4, size: int = DEFAULT_SIZE, *, seed: int = 0,
                 device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` seeded images float32 ``[n, 3, size, size]`` in [0, 1] (grey, repeated to 3 channels) and labels 0/1.

    The images include a black and a white corner so attacks meet the [0, 1] bounds.
    """
    g = torch.Generator().manual_seed(seed)
    grey = torch.rand(n, 1, size, size, generator=g)
    grey[:, :, : size // 4, : size // 4] = 0.0
    grey[:, :, -(size // 4):, -(size // 4):] = 1.0
    labels = torch.arange(n) % 2
    return grey.repeat(1, 3, 1, 1).to(device), labels.to(device)


class InputGradientExplainer:
    """Gradient × input, summed over channels: a small differentiable explainer for attacks that need one."""

    differentiable = True

    def explain(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                create_graph: bool = False) -> torch.Tensor:
        with torch.enable_grad():
            inputs = x if (create_graph and x.requires_grad) else x.detach().requires_grad_(True)
            scores = model(inputs).gather(1, target.view(-1, 1).long()).sum()
            (grad,) = torch.autograd.grad(scores, inputs, create_graph=create_graph)
        maps = (grad * inputs).sum(dim=1).abs()
        return maps if create_graph else maps.detach()


# ------------------------------------------------------------------------------ bookkeeping
class _Checks:
    """Collects the outcome of each named check for one plugin."""

    def __init__(self, kind: Kind, label: str) -> None:
        self.kind, self.label = kind, label
        self.passed: list[str] = []
        self.problems: list[str] = []

    def record(self, name: str, problem: str | None) -> bool:
        if problem:
            self.problems.append(f"[{name}] {problem}")
            return False
        self.passed.append(name)
        return True

    def expect(self, name: str, condition: bool, problem: str) -> bool:
        return self.record(name, None if condition else problem)

    def report(self, **details: Any) -> ConformanceReport:
        if self.problems:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            raise ConformanceError(f"{self.kind} {self.label} broke {len(self.problems)} conformance "
                                   f"check(s):\n{lines}")
        return ConformanceReport(self.kind, self.label, tuple(self.passed), details)


def _call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, str | None]:
    """Run a plugin call; an exception becomes a problem line instead of escaping the kit."""
    try:
        return fn(*args, **kwargs), None
    except Exception as exc:  # noqa: BLE001 - a plugin under test may raise anything; report it
        return None, f"{what} raised {type(exc).__name__}: {exc}"


def _describe(t: Any) -> str:
    if isinstance(t, torch.Tensor):
        return f"tensor {tuple(t.shape)} {t.dtype} on {t.device}"
    return type(t).__name__


@dataclass
class _Resolved:
    obj: Any
    spec: Spec | None
    label: str


SPEC_NAMES = {Kind.ATTACK: "AttackSpec", Kind.EXPLAINER: "ExplainerSpec", Kind.MODEL: "ModelSpec",
              Kind.DATASET: "DatasetSpec"}


def _resolve(kind: Kind, target: Any, build: Callable[[Callable[..., Any]], Any],
             registry: Registry | None) -> _Resolved:
    """A plugin object from a registered name, a spec, a factory, or the object itself."""
    spec: Spec | None = None
    if isinstance(target, str):
        spec = (registry or default_registry()).get(kind, target)
        # A family ('timm:*') answers 'timm:resnet18': the part after ':' reaches the factory as variant=.
        factory = functools.partial(spec.factory, variant=target.split(":", 1)[1]) if spec.is_family else spec.factory
        label = f"{target!r} (plugin {spec.plugin!r})" if spec.plugin else repr(target)
    elif isinstance(target, Spec):
        spec, factory = target, target.factory
        label = repr(target.name)
    elif _is_plugin_object(kind, target):
        return _Resolved(target, None, type(target).__name__)
    elif callable(target):
        factory = target
        label = getattr(target, "__qualname__", repr(target))
    else:
        raise TypeError(f"check_{kind}: expected a registered {kind} name, a {SPEC_NAMES[kind]}, a factory or a "
                        f"{kind} object; got {type(target).__name__}.")
    if spec is not None and spec.kind != kind:
        raise TypeError(f"check_{kind}: got a {type(spec).__name__}; pass a {SPEC_NAMES[kind]}.")
    try:
        obj = build(factory)
    except Exception as exc:  # noqa: BLE001 - construction failure is the first conformance failure
        raise ConformanceError(f"{kind} {label}: the factory raised {type(exc).__name__}: {exc}. "
                               f"The runner builds it the same way; fix the factory.") from exc
    return _Resolved(obj, spec, label)


def _is_plugin_object(kind: Kind, obj: Any) -> bool:
    if inspect.isclass(obj):
        return False
    if kind == Kind.ATTACK:
        return hasattr(obj, "perturb")
    if kind == Kind.EXPLAINER:
        return hasattr(obj, "explain")
    if kind == Kind.MODEL:
        return isinstance(obj, nn.Module)
    return hasattr(obj, "__getitem__") and hasattr(obj, "split")


def _buildable(kind: Kind, target: Any) -> bool:
    """Whether the kit built the plugin itself (so it can build it again and compare)."""
    return isinstance(target, (str, Spec)) or (callable(target) and not _is_plugin_object(kind, target))


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _weights_changed(model: nn.Module, before: Mapping[str, torch.Tensor]) -> list[str]:
    after = model.state_dict()
    return sorted(k for k, v in before.items() if k not in after or not torch.equal(after[k], v))


@contextmanager
def _global_rng_scrambled() -> Iterator[None]:
    """Advance the global RNGs inside (a plugin that used them instead of the generator shows up), restore after."""
    state = torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        torch.rand(17)
        if cuda_states is not None:
            torch.cuda.manual_seed_all(int(torch.randint(0, 2**31 - 1, ())))
        yield
    finally:
        torch.random.set_rng_state(state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def _max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double().to(a.device)).abs().max()) if a.numel() else 0.0


# ------------------------------------------------------------------------------ attacks
def check_attack(attack: Any, *, eps: float | None = None, options: Mapping[str, Any] | None = None,
                 registry: Registry | None = None, model: nn.Module | None = None,
                 images: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                 explainer: Any | None = None, preserves_label: bool | None = None,
                 device: str | torch.device = "cpu", seed: int = 0, tol: float = 1e-6) -> ConformanceReport:
    """Check an attack against the attack contract; raise :class:`ConformanceError` listing every violation.

    ``attack`` is a registered name (``"fgsm"``), an :class:`~robustbench_us.specs.AttackSpec`, a
    factory called as ``factory(eps=eps, **options)`` — as the runner does — or a built attack.
    ``eps`` defaults to the spec's ε (or 8/255); the budget is checked against the ε *asked
    for*, so an attack that reports a larger ``eps`` than it was given is caught. ``model``,
    ``images`` and ``labels`` default to the kit's tiny model and seeded batch; attacks that
    target the explanation get ``explainer`` (default: the kit's :class:`InputGradientExplainer`).
    ``preserves_label`` defaults to the spec's flag.
    """
    device = torch.device(device)
    options = dict(options or {})
    spec_eps = None
    if isinstance(attack, AttackSpec):
        spec_eps = attack.eps
    elif isinstance(attack, str):
        found = (registry or default_registry()).get(Kind.ATTACK, attack)
        spec_eps = found.eps if isinstance(found, AttackSpec) else None
    eps = float(eps if eps is not None else spec_eps if spec_eps is not None else DEFAULT_ATTACK_EPS)
    resolved = _resolve(Kind.ATTACK, attack, lambda f: f(eps=eps, **options), registry)
    obj, spec = resolved.obj, resolved.spec
    checks = _Checks(Kind.ATTACK, resolved.label)

    # Declared threat model.
    norm: Norm | None = None
    try:
        norm = Norm(getattr(obj, "norm"))
    except (AttributeError, ValueError) as exc:
        checks.record("declares-norm", f"the attack object needs a `norm` attribute, one of "
                                        f"{', '.join(map(str, Norm))}; got {exc}")
    else:
        checks.expect("declares-norm", spec is None or norm == spec.norm,
                      f"object norm {norm} differs from the spec's {getattr(spec, 'norm', None)}; the runner checks "
                      "the budget in the spec's norm, so declare the same one in both")
    declared_eps = getattr(obj, "eps", None)
    checks.expect("declares-eps", isinstance(declared_eps, (int, float)) and not isinstance(declared_eps, bool)
                  and math.isclose(float(declared_eps), eps, rel_tol=1e-9, abs_tol=1e-12),
                  f"object eps={declared_eps!r} but it was built with eps={eps!r}; store the ε you were given "
                  "(the runner checks the budget against the cell's ε; an attack reporting another one misleads "
                  "whoever reads it)")
    try:
        target = AttackTarget(getattr(obj, "target"))
    except (AttributeError, ValueError) as exc:
        target = None
        checks.record("declares-target", f"the attack object needs a `target` attribute, one of "
                                          f"{', '.join(map(str, AttackTarget))}; got {exc}")
    else:
        checks.expect("declares-target", spec is None or target == spec.target,
                      f"object target {target} differs from the spec's {getattr(spec, 'target', None)}")
    if not callable(getattr(obj, "perturb", None)):
        checks.record("perturb", "the attack object has no perturb(model, x, y, *, explainer=None, mask=None, "
                                 "generator=None) method")
        return checks.report()
    accepted = _keyword_problem(obj.perturb, ("explainer", "mask", "generator"))
    checks.record("perturb-signature", accepted)

    if model is None:
        model = tiny_model(device=device)
    model = model.to(device).eval()
    if images is None:
        images, default_labels = sample_batch(seed=seed, size=int(getattr(model, "input_size", DEFAULT_SIZE)),
                                              device=device)
        labels = default_labels if labels is None else labels
    elif labels is None:
        labels = torch.arange(images.shape[0]) % 2
    x, y = images.to(device), labels.to(device)
    if explainer is None and target == AttackTarget.EXPLANATION:
        explainer = InputGradientExplainer()
    norm_for_budget = norm or Norm.LINF

    def perturb(xb: torch.Tensor, mask: torch.Tensor | None = None, gen_seed: int = seed) -> tuple[Any, str | None]:
        generator = torch.Generator(device=device).manual_seed(gen_seed)
        return _call("perturb()", obj.perturb, model, xb, y, explainer=explainer, mask=mask, generator=generator)

    x_before, y_before, weights = x.clone(), y.clone(), _weights(model)
    x_adv, error = perturb(x)
    if error:
        checks.record("perturb", error)
        return checks.report()
    from robustbench_us.contracts import check_adversarial

    problems = check_adversarial(x, x_adv, norm=norm_for_budget, eps=eps, x_before=x_before, tol=tol)
    by_check = {"returns-tensor": [p for p in problems if "not a torch.Tensor" in p],
                "input-untouched": [p for p in problems if "in place" in p],
                "shape-dtype-device": [p for p in problems if p.startswith(("shape", "dtype", "device"))],
                "finite-in-range": [p for p in problems if "NaN" in p or "outside [0, 1]" in p],
                "budget": [p for p in problems if "over budget" in p]}
    for name, found in by_check.items():
        checks.record(name, "; ".join(found) or None)
    if not isinstance(x_adv, torch.Tensor) or x_adv.shape != x.shape:
        return checks.report()
    checks.expect("labels-untouched", torch.equal(y, y_before), "perturb() modified the labels y in place")
    changed = _weights_changed(model, weights)
    checks.expect("model-untouched", not changed and not model.training,
                  f"perturb() changed the model ({', '.join(changed[:3]) or 'left it in train mode'}); "
                  "attack a model, never train or re-mode it (restore eval mode if you switch)")

    # Determinism under a seeded generator, with the global RNG moved in between.
    with _global_rng_scrambled():
        again, error = perturb(x)
    if error or not isinstance(again, torch.Tensor) or again.shape != x_adv.shape:
        checks.record("deterministic", error or f"a second call returned {_describe(again)}")
    else:
        first, second = x_adv.detach().double(), again.detach().double().to(x_adv.device)
        # NaN is finite-in-range's finding; NaN in the same places in both calls is no difference.
        same = (first == second) | (torch.isnan(first) & torch.isnan(second))
        diff = float((first - second)[~same].abs().max()) if not bool(same.all()) else 0.0
        checks.expect("deterministic", bool(same.all()),
                      f"two calls with generators seeded alike differ by up to {diff:.3g}; draw every random number "
                      "from the `generator` argument (torch.rand(..., generator=generator)), not the global RNG")

    # A region mask: pixels outside it must not move.
    h, w = x.shape[-2:]
    mask = torch.zeros(x.shape[0], h, w, dtype=torch.bool, device=device)
    mask[:, h // 4: 3 * h // 4, w // 4: 3 * w // 4] = True
    masked, error = perturb(x, mask=mask)
    if error:
        checks.record("region-mask", error)
    elif isinstance(masked, torch.Tensor) and masked.shape == x.shape:
        outside = (masked.detach() - x).abs().amax(dim=1)[~mask]
        moved = int((outside > 0).sum())
        checks.expect("region-mask", moved == 0,
                      f"{moved} pixels outside the region mask moved (largest change "
                      f"{float(outside.max()) if outside.numel() else 0.0:.3g}); multiply the perturbation by the "
                      "mask (robustbench_us.attack_utils.region_weights) so `region = \"inside\"` cells are honest")

    keeps = preserves_label if preserves_label is not None else bool(getattr(spec, "preserves_label", False))
    if keeps:
        with torch.no_grad():
            before, after = model(x).argmax(1), model(x_adv.detach()).argmax(1)
        flipped = int((before != after).sum())
        checks.expect("preserves-label", flipped == 0,
                      f"the spec says preserves_label=True but {flipped} of {len(x)} predicted labels changed; "
                      "undo steps that flip the label, or register preserves_label=False")
    delta = (x_adv.detach().double() - x.double()).reshape(len(x), -1)
    size = float(delta.abs().amax()) if norm_for_budget != Norm.L2 else float(delta.norm(dim=1).max())
    return checks.report(eps=eps, norm=str(norm_for_budget), largest_perturbation=size)


def _keyword_problem(method: Callable[..., Any], names: Sequence[str]) -> str | None:
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return None
    missing = [n for n in names if n not in params]
    if missing:
        return (f"perturb() does not accept {', '.join(missing)}; the runner always passes explainer=, mask= and "
                "generator= as keywords (declare them, even if unused)")
    return None


# ------------------------------------------------------------------------------ explainers
def check_explainer(explainer: Any, *, options: Mapping[str, Any] | None = None, registry: Registry | None = None,
                    model: nn.Module | None = None, images: torch.Tensor | None = None,
                    device: str | torch.device = "cpu", seed: int = 0, rtol: float = 1e-3,
                    atol: float = 1e-3) -> ConformanceReport:
    """Check an explainer against the explainer contract; raise :class:`ConformanceError` listing every violation.

    ``explainer`` is a registered name, an :class:`~robustbench_us.specs.ExplainerSpec`, a factory
    (called as ``factory(**options)``) or a built explainer. Maps are explained for the
    model's predicted classes. Batch consistency compares the batch's maps with each image
    explained alone: ``|batch − single| ≤ atol·peak + rtol·|single|`` with ``peak`` the largest
    value of that image's map (so a map that moves by a thousandth of its peak fails).
    """
    device = torch.device(device)
    resolved = _resolve(Kind.EXPLAINER, explainer, lambda f: f(**dict(options or {})), registry)
    obj, spec = resolved.obj, resolved.spec
    checks = _Checks(Kind.EXPLAINER, resolved.label)
    differentiable = getattr(obj, "differentiable", None)
    if checks.expect("declares-differentiable", isinstance(differentiable, bool),
                     f"the explainer object needs a bool `differentiable` attribute; got {differentiable!r}"):
        checks.expect("declares-differentiable", spec is None or differentiable == spec.differentiable,
                      f"object differentiable={differentiable} differs from the spec's "
                      f"{getattr(spec, 'differentiable', None)}")
    if not callable(getattr(obj, "explain", None)):
        checks.record("explain", "the explainer object has no explain(model, x, target, *, create_graph=False)")
        return checks.report()
    model = (model if model is not None else tiny_model(device=device)).to(device).eval()
    if images is None:
        images, _ = sample_batch(seed=seed, size=int(getattr(model, "input_size", DEFAULT_SIZE)), device=device)
    x = images.to(device)
    with torch.no_grad():
        target = model(x).argmax(1)
    x_before, weights = x.clone(), _weights(model)
    maps, error = _call("explain()", obj.explain, model, x, target)
    if error:
        checks.record("explain", error)
        return checks.report()
    n, _, h, w = x.shape
    if not checks.expect("shape", isinstance(maps, torch.Tensor) and tuple(maps.shape) == (n, h, w),
                         f"expected maps [N, H, W] = {(n, h, w)} at input resolution; got {_describe(maps)} "
                         "(upsample to the input size and drop the channel axis)"):
        return checks.report()
    checks.expect("floating-point", maps.is_floating_point(), f"maps have dtype {maps.dtype}; return floats")
    checks.expect("device", maps.device == x.device, f"maps are on {maps.device}, images on {x.device}")
    values = maps.detach().double()
    finite = bool(torch.isfinite(values).all())
    checks.expect("finite", finite, f"{int((~torch.isfinite(values)).sum())} map values are NaN or infinite")
    low = float(values[torch.isfinite(values)].min()) if finite or bool(torch.isfinite(values).any()) else 0.0
    checks.expect("non-negative", low >= -atol, f"maps have negative values (min {low:.3g}); clamp or take the "
                                                "absolute value (heatmaps are non-negative)")
    checks.expect("input-untouched", torch.equal(x, x_before), "explain() modified its input in place")
    changed = _weights_changed(model, weights)
    checks.expect("model-untouched", not changed and not model.training,
                  f"explain() changed the model ({', '.join(changed[:3]) or 'left it in train mode'})")
    with _global_rng_scrambled():
        again, error = _call("explain()", obj.explain, model, x, target)
    if error or not isinstance(again, torch.Tensor) or again.shape != maps.shape:
        checks.record("deterministic", error or f"a second call returned {_describe(again)}")
    else:
        diff = _max_abs_diff(maps, again)
        checks.expect("deterministic", bool((_excess(maps, again, rtol, atol) <= 0).all()),
                      f"two identical calls differ by up to {diff:.3g}; seed any randomness (the same images must "
                      "give the same maps)")
    singles, error = _singles(obj, model, x, target)
    if error:
        checks.record("batch-consistent", error)
    else:
        excess = _excess(maps, singles, rtol, atol)
        worst = int(excess.argmax())
        diff = _max_abs_diff(maps[worst], singles[worst])
        checks.expect("batch-consistent", bool((excess <= 0).all()),
                      f"image {worst}'s map in a batch of {n} differs from its map alone by up to {diff:.3g} "
                      f"(peak {float(singles[worst].abs().max()):.3g}); an image's map must not depend on the other "
                      "images of its batch (per-image normalisation, per-image seeds, eval mode)")
    if differentiable:
        checks.record("keeps-graph", _graph_problem(obj, model, x, target))
    return checks.report(differentiable=bool(differentiable))


def _excess(maps: torch.Tensor, reference: torch.Tensor, rtol: float, atol: float) -> torch.Tensor:
    """Per image, how far ``maps`` stray beyond ``atol·peak + rtol·|reference|`` (≤ 0 everywhere: close enough).

    The tolerance scales with each image's peak, so raw and max-normalised maps are judged alike
    and float32 summation noise (float64 gives exact agreement) is not mistaken for a dependence.
    """
    ref = reference.detach().double().to(maps.device)
    n = ref.shape[0]
    peak = ref.abs().reshape(n, -1).amax(dim=1).view(n, *([1] * (ref.dim() - 1)))
    over = (maps.detach().double() - ref).abs() - (atol * peak + rtol * ref.abs() + 1e-12)
    return over.reshape(n, -1).amax(dim=1)


def _singles(obj: Any, model: nn.Module, x: torch.Tensor,
             target: torch.Tensor) -> tuple[torch.Tensor | None, str | None]:
    out = []
    for i in range(x.shape[0]):
        single, error = _call(f"explain() on image {i} alone", obj.explain, model, x[i:i + 1], target[i:i + 1])
        if error:
            return None, error
        if not isinstance(single, torch.Tensor) or tuple(single.shape) != (1, *x.shape[-2:]):
            return None, f"explain() on one image returned {_describe(single)}, expected (1, H, W)"
        out.append(single.detach())
    return torch.cat(out), None


def _graph_problem(obj: Any, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> str | None:
    inputs = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        maps, error = _call("explain(..., create_graph=True)", obj.explain, model, inputs, target, create_graph=True)
        if error:
            return error
        if not isinstance(maps, torch.Tensor) or not maps.requires_grad:
            return ("differentiable=True but explain(..., create_graph=True) returned maps without a graph to the "
                    "input; compute the gradient with create_graph=create_graph and do not detach")
        grad, error = _call("autograd through the maps", torch.autograd.grad, maps.sum(), inputs, allow_unused=True)
    if error:
        return error
    if grad[0] is not None and not bool(torch.isfinite(grad[0]).all()):
        return "the gradient of the maps with respect to the input has NaN or Inf"
    return None


# ------------------------------------------------------------------------------ models
def check_model(model: Any, *, input_size: int | None = None, options: Mapping[str, Any] | None = None,
                registry: Registry | None = None, batch: int = 3, device: str | torch.device = "cpu",
                seed: int = 0, rtol: float = 1e-4, atol: float = 1e-4) -> ConformanceReport:
    """Check a model against the model contract; raise :class:`ConformanceError` listing every violation.

    ``model`` is a registered name, a :class:`~robustbench_us.specs.ModelSpec`, a factory (called as
    ``factory(input_size=input_size, **options)``) or a built ``nn.Module``. ``input_size``
    defaults to 32 (a multiple of 32 keeps the checks fast; the contract holds at any size).
    """
    device = torch.device(device)
    size = int(input_size or DEFAULT_SIZE)
    resolved = _resolve(Kind.MODEL, model, lambda f: f(input_size=size, **dict(options or {})), registry)
    net, spec = resolved.obj, resolved.spec
    checks = _Checks(Kind.MODEL, resolved.label)
    if not checks.expect("is-module", isinstance(net, nn.Module), f"the factory returned {_describe(net)}, not an "
                                                                  "nn.Module"):
        return checks.report()
    built_size = getattr(net, "input_size", None)
    built_here = _buildable(Kind.MODEL, model)
    checks.expect("input-size", isinstance(built_size, int) and not isinstance(built_size, bool)
                  and (built_size == size or not built_here),
                  f"model.input_size is {built_size!r}; it must be the int the factory was given ({size})")
    size = built_size if isinstance(built_size, int) and built_size > 0 else size
    has_seg = getattr(net, "has_segmentation", None)
    if checks.expect("has-segmentation", isinstance(has_seg, bool),
                     f"model.has_segmentation must be a bool; got {has_seg!r}"):
        checks.expect("has-segmentation", not isinstance(spec, ModelSpec) or has_seg == spec.has_segmentation,
                      f"model.has_segmentation={has_seg} differs from the spec's "
                      f"{getattr(spec, 'has_segmentation', None)}")
    layer, error = _call("model.cam_layer", getattr, net, "cam_layer")
    checks.expect("cam-layer", error is None and isinstance(layer, nn.Module)
                  and any(layer is m for m in net.modules()),
                  error or f"model.cam_layer must be one of the model's own submodules (the layer Grad-CAM hooks); "
                           f"got {_describe(layer)}")
    layout = getattr(net, "cam_layout", "nchw")
    checks.expect("cam-layout", layout in ("nchw", "nhwc", "nlc"),
                  f"model.cam_layout is {layout!r}; it must be 'nchw' (the default), 'nhwc' or 'nlc'")
    grid = getattr(net, "cam_grid", None)
    checks.expect("cam-layout", layout != "nlc" or (isinstance(grid, tuple) and len(grid) == 2
                                                     and all(isinstance(v, int) and v > 0 for v in grid)),
                  f"model.cam_layout is 'nlc' (tokens) but model.cam_grid is {grid!r}; give the patch grid (h, w)")
    net = net.to(device).eval()
    x, _ = sample_batch(batch, size, seed=seed, device=device)
    extremes = torch.stack([torch.zeros_like(x[0]), torch.ones_like(x[0])])
    x_before, weights = x.clone(), _weights(net)
    with torch.no_grad():
        logits, error = _call("forward()", net, x)
    shaped = isinstance(logits, torch.Tensor) and tuple(logits.shape) == (batch, 2)
    if error or not checks.expect("logits-shape", shaped, f"forward() on {tuple(x.shape)} returned "
                                                          f"{_describe(logits)}; expected logits [N, 2] = {(batch, 2)}"):
        if error:
            checks.record("forward", error)
        return checks.report()
    checks.expect("logits-float", logits.is_floating_point() and logits.device == x.device,
                  f"logits are {_describe(logits)}; return float logits on the input's device")
    checks.expect("logits-finite", bool(torch.isfinite(logits).all()), "logits contain NaN or Inf")
    with torch.no_grad():
        edge, error = _call("forward() on all-black and all-white images", net, extremes)
    checks.record("accepts-unit-range", error or (None if isinstance(edge, torch.Tensor) and edge.shape == (2, 2)
                                                  and bool(torch.isfinite(edge).all())
                                                  else f"black/white images gave {_describe(edge)} with non-finite "
                                                       "or misshapen logits; normalise inside the model"))
    checks.expect("input-untouched", torch.equal(x, x_before), "forward() modified its input in place")
    with torch.no_grad():
        singles, error = _call("forward() image by image", lambda: torch.cat([net(x[i:i + 1]) for i in range(batch)]))
    if error:
        checks.record("batch-consistent", error)
    else:
        diff = _max_abs_diff(logits, singles)
        checks.expect("batch-consistent", diff <= atol + rtol * float(singles.abs().max()),
                      f"in eval mode, logits of a batch differ from those of its images alone by {diff:.3g}; "
                      "no batch statistics at inference")
    inputs = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out, error = _call("forward() with gradients", net, inputs)
        grad = None
        if not error:
            grad, error = _call("backward to the input", torch.autograd.grad, out.sum(), inputs)
    checks.record("input-gradient", error or (None if grad is not None and bool(torch.isfinite(grad[0]).all())
                                              else "the gradient of the logits with respect to the input is not "
                                                   "finite; attacks need it"))
    if has_seg:
        with torch.no_grad():
            seg, error = _call("segment()", getattr(net, "segment", None) or _missing_segment, x)
        checks.record("segment-shape", error or (None if isinstance(seg, torch.Tensor)
                                                 and tuple(seg.shape) == (batch, 1, size, size)
                                                 and bool(torch.isfinite(seg).all())
                                                 else f"segment() returned {_describe(seg)}; expected finite mask "
                                                      f"logits [N, 1, H, W] = {(batch, 1, size, size)}"))
    changed = _weights_changed(net, weights)
    checks.expect("model-untouched", not changed, f"a forward pass in eval mode changed {', '.join(changed[:3])}")
    return checks.report(input_size=size, has_segmentation=bool(has_seg))


def _missing_segment(x: torch.Tensor) -> torch.Tensor:
    raise AttributeError("has_segmentation is True but the model has no segment(x) method")


# ------------------------------------------------------------------------------ datasets
def check_dataset(dataset: Any, *, root: str | None = None, image_size: int = DEFAULT_SIZE,
                  options: Mapping[str, Any] | None = None, registry: Registry | None = None,
                  max_samples: int = 64, split_seeds: Sequence[int] = (0, 1), seed: int = 0) -> ConformanceReport:
    """Check a dataset against the dataset contract; raise :class:`ConformanceError` listing every violation.

    ``dataset`` is a registered name, a :class:`~robustbench_us.specs.DatasetSpec`, a factory (called
    as the runner does: ``factory(root=root, image_size=image_size, seed=seed, **options)``) or a
    built dataset. Samples are read for every index when the dataset has at most
    ``max_samples`` images, else for a seeded subset of that many (grouping is checked on
    the groups read).
    """
    opts = dict(options or {})

    def build(factory: Callable[..., Any]) -> Any:
        return factory(root=root, image_size=image_size, seed=seed, **opts)

    resolved = _resolve(Kind.DATASET, dataset, build, registry)
    ds, spec = resolved.obj, resolved.spec
    checks = _Checks(Kind.DATASET, resolved.label)
    classes = getattr(ds, "classes", None)
    if checks.expect("classes", isinstance(classes, tuple) and len(classes) >= 2
                     and all(isinstance(c, str) and c for c in classes),
                     f"dataset.classes must be a tuple of at least two class names; got {classes!r}"):
        checks.expect("classes", not isinstance(spec, DatasetSpec) or classes == spec.classes,
                      f"dataset.classes {classes} differs from the spec's {getattr(spec, 'classes', None)}")
    n_classes = len(classes) if isinstance(classes, tuple) else 2
    length, error = _call("len()", len, ds)
    if error or not checks.expect("length", isinstance(length, int) and length > 0,
                                  f"len(dataset) must be a positive int; got {length!r}"):
        if error:
            checks.record("length", error)
        return checks.report()
    digest, error = _call("manifest_hash()", ds.manifest_hash)
    again, _ = _call("manifest_hash()", ds.manifest_hash)
    checks.record("manifest-hash", error or (None if isinstance(digest, str) and digest and digest == again
                                             else f"manifest_hash() must return the same non-empty str every time; "
                                                  f"got {digest!r} then {again!r}"))
    if length <= max_samples:
        indices = list(range(length))
    else:
        g = torch.Generator().manual_seed(seed)
        indices = sorted(set(torch.randperm(length, generator=g)[:max_samples].tolist()) | {0, length - 1})
    groups: dict[int, str] = {}
    ids: dict[str, int] = {}
    sample_problems: list[str] = []
    masks_seen = 0
    for i in indices:
        sample, error = _call(f"dataset[{i}]", ds.__getitem__, i)
        if error:
            sample_problems.append(error)
            break
        found = _sample_problems(sample, i, image_size, n_classes)
        sample_problems += found
        if found:
            continue
        groups[i] = sample.group
        masks_seen += sample.mask is not None
        if sample.id in ids:
            sample_problems.append(f"samples {ids[sample.id]} and {i} share the id {sample.id!r}; ids must be unique")
        ids[sample.id] = i
        if len(sample_problems) > 5:
            break
    checks.record("samples", "; ".join(sample_problems[:5]) or None)
    if isinstance(spec, DatasetSpec) and spec.has_masks:
        checks.expect("masks", masks_seen > 0, f"the spec says has_masks=True but none of {len(groups)} samples "
                                               "read has a mask; register has_masks=False or return the masks")
    first, error = _call(f"dataset[{indices[0]}]", ds.__getitem__, indices[0])
    second, error2 = _call(f"dataset[{indices[0]}]", ds.__getitem__, indices[0])
    if not (error or error2) and isinstance(first, Sample) and isinstance(second, Sample):
        same = (first.label == second.label and first.id == second.id and torch.equal(first.image, second.image)
                and ((first.mask is None and second.mask is None)
                     or (first.mask is not None and second.mask is not None and torch.equal(first.mask, second.mask))))
        checks.expect("same-sample-twice", same, f"dataset[{indices[0]}] read twice gives different samples; "
                                                 "seed any randomness (augmentation belongs to training)")
    for split_seed in split_seeds:
        checks.record(f"split({split_seed})", _split_problem(ds, split_seed, length, groups))
    if not _buildable(Kind.DATASET, dataset):
        return checks.report(length=length, samples_read=len(groups))
    rebuilt, error = _call("building the dataset again", lambda: _resolve(Kind.DATASET, dataset, build, registry).obj)
    if error:
        checks.record("rebuilt-alike", error)
    else:
        problems = []
        if _call("manifest_hash()", rebuilt.manifest_hash)[0] != digest:
            problems.append("manifest_hash() differs between two datasets built with the same arguments")
        s1, s2 = _call("split()", ds.split, split_seeds[0])[0], _call("split()", rebuilt.split, split_seeds[0])[0]
        if s1 != s2:
            problems.append(f"split({split_seeds[0]}) differs between two datasets built with the same arguments")
        checks.record("rebuilt-alike", "; ".join(problems) or None)
    return checks.report(length=length, samples_read=len(groups))


def _sample_problems(sample: Any, i: int, size: int, n_classes: int) -> list[str]:
    if not isinstance(sample, Sample):
        return [f"dataset[{i}] returned {type(sample).__name__}; return robustbench_us.protocols.Sample"]
    out = []
    image = sample.image
    if not isinstance(image, torch.Tensor) or image.dtype != torch.float32 or tuple(image.shape) != (3, size, size):
        out.append(f"dataset[{i}].image is {_describe(image)}; expected float32 [3, {size}, {size}] "
                   "(grey repeated to 3 channels, resized to image_size)")
    elif not bool(torch.isfinite(image).all()) or float(image.min()) < 0 or float(image.max()) > 1:
        out.append(f"dataset[{i}].image has values outside [0, 1] (min {float(image.min()):.3g}, "
                   f"max {float(image.max()):.3g}); scale pixels to [0, 1]")
    label = sample.label
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < n_classes:
        out.append(f"dataset[{i}].label is {label!r}; expected an int in 0..{n_classes - 1} (0 benign, 1 malignant)")
    for name in ("id", "group"):
        value = getattr(sample, name)
        if not isinstance(value, str) or not value:
            out.append(f"dataset[{i}].{name} is {value!r}; expected a non-empty str")
    mask = sample.mask
    if mask is not None and (not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool
                             or tuple(mask.shape) != (size, size)):
        out.append(f"dataset[{i}].mask is {_describe(mask)}; expected None or bool [{size}, {size}]")
    return out


def _split_problem(ds: Any, split_seed: int, length: int, groups: Mapping[int, str]) -> str | None:
    split, error = _call(f"split({split_seed})", ds.split, split_seed)
    if error:
        return error
    if not isinstance(split, Split):
        return f"split() returned {type(split).__name__}; return robustbench_us.protocols.Split"
    again, error = _call(f"split({split_seed})", ds.split, split_seed)
    if error or again != split:
        return error or f"split({split_seed}) called twice gives different parts; derive it from the seed only"
    parts = {"train": split.train, "val": split.val, "test": split.test}
    everything = [i for part in parts.values() for i in part]
    if sorted(everything) != list(range(length)):
        dup = len(everything) - len(set(everything))
        missing = length - len(set(everything) & set(range(length)))
        return (f"split({split_seed}) must put every index 0..{length - 1} in exactly one part; {dup} repeated, "
                f"{missing} missing or out of range")
    if not split.test:
        return f"split({split_seed}) has an empty test part"
    where: dict[str, str] = {}
    for name, part in parts.items():
        for i in part:
            group = groups.get(i)
            if group is None:
                continue
            if where.setdefault(group, name) != name:
                return (f"group {group!r} is in both {where[group]} and {name} (image {i}); assign whole groups "
                        "(patients, duplicate clusters) to one part — robustbench_us.splits.grouped_stratified_split")
    return None


# ------------------------------------------------------------------------------ any kind, every name
_CHECKS: dict[Kind, Callable[..., ConformanceReport]] = {
    Kind.ATTACK: check_attack, Kind.EXPLAINER: check_explainer, Kind.MODEL: check_model,
    Kind.DATASET: check_dataset,
}


def check_plugin(kind: Kind | str, name: str, **kwargs: Any) -> ConformanceReport:
    """Run the check of ``kind`` on the registered ``name`` (keyword arguments go to that ``check_*``)."""
    return _CHECKS[Kind(kind)](name, **kwargs)


def registered_names(kind: Kind | str, *, registry: Registry | None = None,
                     distribution: str | None = None, plugin: str | None = None) -> list[str]:
    """Registered names of ``kind``, optionally only those of one distribution or plugin, sorted."""
    registry = registry or default_registry()
    names = []
    for spec in registry.specs(kind):
        info = registry.infos.get(spec.plugin)
        if plugin is not None and spec.plugin != plugin:
            continue
        if distribution is not None and (info is None or info.distribution != distribution):
            continue
        names.append(spec.name)
    return names


def registered_params(kind: Kind | str, *, registry: Registry | None = None, distribution: str | None = None,
                      plugin: str | None = None, skip: Mapping[str, str] | None = None,
                      variants: Mapping[str, str] | None = None) -> list[Any]:
    """``pytest.param`` s for every registered name of ``kind``, for ``@pytest.mark.parametrize``.

    ``skip`` maps names to the reason they are skipped (shown by ``pytest -rs``); a family
    (``prefix:*``) is checked through the variant named in ``variants`` and skipped with a
    reason when it has none::

        @pytest.mark.parametrize("name", registered_params("attack", distribution="my-plugin"))
        def test_attacks_conform(name):
            check_attack(name)
    """
    import pytest

    skip = dict(skip or {})
    variants = dict(variants or {})
    params = []
    for name in registered_names(kind, registry=registry, distribution=distribution, plugin=plugin):
        marks = []
        target = name
        if name in skip:
            marks.append(pytest.mark.skip(reason=skip[name]))
        elif name.endswith(":*"):
            if name in variants:
                target = variants[name]
            else:
                marks.append(pytest.mark.skip(reason=f"family {name}: give a variant to check in variants="))
        params.append(pytest.param(target, id=name, marks=marks))
    return params
