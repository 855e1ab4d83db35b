"""Fake plugins that break the contracts in ways the runner must catch: models, explainers and attacks."""

from __future__ import annotations

import time

import torch

from robustbench_us import AttackSpec, AttackTarget, ExplainerSpec, ModelSpec, Norm, hookimpl
from tests.fakes.tiny import TinyNet


# ------------------------------------------------------------------ models
class EvalRaises(TinyNet):
    """Trains like TinyNet, but its forward raises in eval mode (as the runner evaluates it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            raise RuntimeError("boom from the broken model")
        return super().forward(x)


class EvalNaN(TinyNet):
    """Trains like TinyNet, but gives NaN logits in eval mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out if self.training else out * float("nan")


def make_eval_raises(*, input_size: int = 32) -> EvalRaises:
    """A model whose evaluation forward raises."""
    return EvalRaises(input_size=input_size)


def make_eval_nan(*, input_size: int = 32) -> EvalNaN:
    """A model whose evaluation logits are NaN."""
    return EvalNaN(input_size=input_size)


def make_unbuildable(*, input_size: int = 32) -> TinyNet:
    """A model whose factory raises."""
    raise OSError("weights server unreachable (fake)")


# -------------------------------------------------------------- explainers
class ChannelKept:
    """Maps [N, 1, H, W]: a channel axis left in."""

    differentiable = False

    def explain(self, model, x, target, *, create_graph=False):
        return x.mean(dim=1, keepdim=True)


class HalfSize(ChannelKept):
    """Maps at half the input resolution (not upsampled)."""

    def explain(self, model, x, target, *, create_graph=False):
        return x.mean(dim=1)[:, ::2, ::2]


class Signed(ChannelKept):
    """Signed maps (grey level minus 0.5): heatmaps must be non-negative."""

    def explain(self, model, x, target, *, create_graph=False):
        return x.mean(dim=1) - 0.5


class Slow(ChannelKept):
    """Correct maps after ``seconds`` of sleep per call (longer than the tests' cell_timeout)."""

    seconds = 4.0

    def explain(self, model, x, target, *, create_graph=False):
        time.sleep(self.seconds)
        return x.mean(dim=1)


# ----------------------------------------------------------------- attacks
class ClaimsBudget:
    """Moves every pixel by 8 grey levels whatever ε it is given, and reports eps = 8/255 about itself."""

    norm, target = Norm.LINF, AttackTarget.LABEL

    def __init__(self, eps: float) -> None:
        self.eps = 8 / 255

    def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
        return (x + 8 / 255).clamp(0, 1)


class NoNorm(ClaimsBudget):
    """Declares norm 'none' on the object (its spec says linf) and moves pixels 3×ε."""

    norm = Norm.NONE

    def __init__(self, eps: float) -> None:
        self.eps = eps

    def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
        return (x + 3 * self.eps).clamp(0, 1)


class Swallowing(ClaimsBudget):
    """Retries through any ``Exception`` (a timeout included) for ``seconds``, then returns the input."""

    seconds = 4.0

    def __init__(self, eps: float) -> None:
        self.eps = eps

    def perturb(self, model, x, y, *, explainer=None, mask=None, generator=None):
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            try:
                time.sleep(0.01)
            except Exception:  # noqa: BLE001, S110 - the bad habit under test
                pass
        return x.clone()


def make_claims_budget(*, eps: float = 1 / 255) -> ClaimsBudget:
    """An attack that ignores ε and reports a larger one."""
    return ClaimsBudget(eps)


def make_no_norm(*, eps: float = 1 / 255) -> NoNorm:
    """An attack whose object declares no norm."""
    return NoNorm(eps)


def make_swallowing(*, eps: float = 0.0) -> Swallowing:
    """An attack that catches every Exception."""
    return Swallowing(eps)


def make_channel_kept() -> ChannelKept:
    """Maps with a channel axis."""
    return ChannelKept()


def make_half_size() -> HalfSize:
    """Maps at half resolution."""
    return HalfSize()


def make_signed() -> Signed:
    """Signed maps."""
    return Signed()


def make_slow() -> Slow:
    """An explainer slower than the cell timeout."""
    return Slow()


@hookimpl
def register_models(register):
    register(ModelSpec(name="eval-raises", factory=make_eval_raises, input_size=32))
    register(ModelSpec(name="eval-nan", factory=make_eval_nan, input_size=32))
    register(ModelSpec(name="unbuildable", factory=make_unbuildable, input_size=32))


@hookimpl
def register_explainers(register):
    register(ExplainerSpec(name="channel-kept", factory=make_channel_kept))
    register(ExplainerSpec(name="half-size", factory=make_half_size))
    register(ExplainerSpec(name="signed-map", factory=make_signed))
    register(ExplainerSpec(name="slow-map", factory=make_slow))


@hookimpl
def register_attacks(register):
    register(AttackSpec(name="claims-budget", factory=make_claims_budget, eps=1 / 255))
    register(AttackSpec(name="no-norm", factory=make_no_norm, eps=1 / 255, norm=Norm.LINF))
    register(AttackSpec(name="swallowing", factory=make_swallowing, eps=0.0))
