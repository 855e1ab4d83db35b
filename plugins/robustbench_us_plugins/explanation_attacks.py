"""Explanation attacks: move the heatmap while the predicted label stays (the study's Fig. 2).

- ``topk`` and ``mass-center``: Ghorbani, Abid & Zou, "Interpretation of Neural Networks
  Is Fragile", AAAI 2019.
- ``target-map``: Dombrowski et al., "Explanations can be manipulated and geometry is
  to blame", NeurIPS 2019.

All three take signed (L∞) steps on the gradient of a map dissimilarity, computed
through the explainer with ``create_graph=True`` while the model's ReLUs are swapped
for Softplus(β) (so second derivatives exist). After every step the real model
(ReLUs restored) checks each image: a step that changes its predicted label is undone
and that image's step size halved. Each image returns its best label-preserving
iterate, judged on the real model's map; if none beats the clean image, the clean image.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_us import AttackSpec, AttackTarget, Norm, hookimpl, metrics
from robustbench_us.attack_utils import (AttackError, apply_step, center_of_mass, check_eps, check_positive,
                                         check_region, finish, normalize_maps, predict, region_weights, topk_mask)
from robustbench_us.softplus import softplus_relu

DEFAULT_EPS = 8 / 255  # Ghorbani et al. use ε = 8 on the 0-255 scale
DEFAULT_STEPS = 20
DEFAULT_BETA = 50.0  # large enough that the smoothed map stays close to the ReLU map
DEFAULT_TOPK = 0.1  # share of pixels, as metrics.topk_intersection_per_image
TARGETS = ("opposite-blob", "mirror")


def smoothed(model: nn.Module, beta: float | None) -> contextlib.AbstractContextManager:
    """A context in which ``model``'s ReLUs are Softplus(β); a no-op for ``beta=None`` or 0."""
    return softplus_relu(model, beta) if beta else contextlib.nullcontext()


class MapAttack:
    """Template for label-preserving explanation attacks; a variant defines ``prepare``, ``loss`` and ``score``.

    ``loss(maps, logits, state)`` is the differentiable per-image quantity the steps lower;
    ``score(maps, state)`` is the per-image dissimilarity judged on the real map (lower is
    a more successful attack) that picks the returned iterate.
    """

    name = "map-attack"
    norm = Norm.LINF
    target = AttackTarget.EXPLANATION
    uses_output = False  # whether loss() needs the smoothed model's logits

    def __init__(self, eps: float, *, steps: int = DEFAULT_STEPS, step_size: float | None = None,
                 softplus_beta: float | None = DEFAULT_BETA, region: str = "all") -> None:
        self.eps = check_eps(eps, attack=self.name)
        self.steps = int(check_positive(steps, "steps", attack=self.name))
        self.step_size = 2.5 * self.eps / self.steps if step_size is None else float(step_size)
        self.softplus_beta = None if not softplus_beta else float(softplus_beta)
        self.region = check_region(region, attack=self.name)

    # -- what a variant defines ---------------------------------------------------------
    def prepare(self, clean_maps: torch.Tensor, clean_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-batch state computed once from the clean maps and logits."""
        return {}

    def loss(self, maps: torch.Tensor, logits: torch.Tensor | None, state: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def score(self, maps: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    # -- the shared loop -------------------------------------------------------------------
    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, explainer=None,
                mask: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        if explainer is None:
            raise AttackError(f"attack {self.name!r} targets the explanation: pass explainer= to perturb() "
                              "(the runner passes the cell's explainer).")
        if not getattr(explainer, "differentiable", False):
            raise AttackError(f"attack {self.name!r} needs a differentiable explainer; "
                              f"{type(explainer).__name__} declares differentiable=False. "
                              "Pair it with gradcam or another differentiable explainer.")
        x = x.detach()
        region = region_weights(mask, x)
        with torch.no_grad():
            clean_logits = model(x)
        label = clean_logits.argmax(dim=1)
        clean_maps = explainer.explain(model, x, label).detach()
        state = self.prepare(clean_maps, clean_logits)
        best, best_score = x, self.score(clean_maps, state)
        x_adv = x
        step = torch.full((x.shape[0], 1, 1, 1), self.step_size, dtype=x.dtype, device=x.device)
        for _ in range(self.steps):
            grad = self._loss_gradient(model, explainer, x_adv, label, state)
            if region is not None:
                grad = grad * region
            candidate = apply_step(x_adv, x, -grad.sign(), step_size=step, norm=self.norm, eps=self.eps)
            kept = (predict(model, candidate) == label).view(-1, 1, 1, 1)
            x_adv = torch.where(kept, candidate, x_adv)
            step = torch.where(kept, step, step / 2)
            score = self.score(explainer.explain(model, candidate, label), state)
            better = kept.view(-1) & (score < best_score)
            best = torch.where(better.view(-1, 1, 1, 1), candidate, best)
            best_score = torch.where(better, score, best_score)
        return finish(best, x, self.norm, self.eps, region)

    def _loss_gradient(self, model: nn.Module, explainer, x_adv: torch.Tensor, label: torch.Tensor,
                       state: dict[str, torch.Tensor]) -> torch.Tensor:
        with smoothed(model, self.softplus_beta), torch.enable_grad():
            inputs = x_adv.detach().requires_grad_(True)
            maps = explainer.explain(model, inputs, label, create_graph=True)
            logits = model(inputs) if self.uses_output else None
            total = self.loss(maps, logits, state).sum()
            if not total.requires_grad:  # the map does not depend on the input (e.g. all zero)
                return torch.zeros_like(x_adv)
            (grad,) = torch.autograd.grad(total, inputs, allow_unused=True)
        return torch.zeros_like(x_adv) if grad is None else torch.nan_to_num(grad)


class TopKAttack(MapAttack):
    """Top-k attack (Ghorbani et al. 2019): lower the map's mass on the clean map's top-k pixels.

    Scored by top-k intersection (share of the clean top-k pixels still in the top k,
    ``metrics.topk_intersection_per_image`` with the same ``topk`` share).
    """

    name = "topk"

    def __init__(self, eps: float, *, topk: float = DEFAULT_TOPK, **options) -> None:
        super().__init__(eps, **options)
        self.topk = check_positive(topk, "topk", attack=self.name)
        if self.topk > 1:
            raise AttackError(f"attack 'topk': topk={topk} is a share of the pixels in (0, 1], e.g. 0.1.")

    def prepare(self, clean_maps, clean_logits):
        k = metrics.topk_count(tuple(clean_maps.shape[-2:]), self.topk)
        return {"top": topk_mask(clean_maps, k), "clean": clean_maps}

    def loss(self, maps, logits, state):
        return (normalize_maps(maps) * state["top"]).sum(dim=(1, 2))

    def score(self, maps, state):
        return metrics.topk_intersection_per_image(state["clean"], maps, self.topk).to(maps.dtype)


class MassCenterAttack(MapAttack):
    """Mass-centre attack (Ghorbani et al. 2019): push the map's centre of mass away from the clean one.

    Steps move the centre toward the image corner farthest from the clean centre (a
    fixed direction per image, so the gradient is defined at the start); scored by the
    centre's displacement in pixels (negated: lower is a larger move).
    """

    name = "mass-center"

    def prepare(self, clean_maps, clean_logits):
        h, w = clean_maps.shape[-2:]
        center = center_of_mass(clean_maps)
        corners = torch.tensor([[0.0, 0.0], [0.0, w - 1.0], [h - 1.0, 0.0], [h - 1.0, w - 1.0]],
                               dtype=center.dtype, device=center.device)
        offsets = corners.unsqueeze(0) - center.unsqueeze(1)  # [N, 4, 2]
        farthest = offsets.norm(dim=2).argmax(dim=1)
        direction = offsets[torch.arange(len(center), device=center.device), farthest]
        return {"center": center, "clean": clean_maps,
                "direction": direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)}

    def loss(self, maps, logits, state):
        return -((center_of_mass(maps) - state["center"]) * state["direction"]).sum(dim=1)

    def score(self, maps, state):
        shift = metrics.centroid_shift_per_image(state["clean"], maps)
        return -torch.nan_to_num(shift, nan=0.0).to(maps.dtype)  # a map with no mass has no centre to move


def opposite_blob(clean_maps: torch.Tensor, sigma_fraction: float = 0.125) -> torch.Tensor:
    """A Gaussian blob (σ = ``sigma_fraction``·min(H, W)) centred in the quadrant opposite the map's centre of mass."""
    n, h, w = clean_maps.shape
    center = center_of_mass(clean_maps)
    size = clean_maps.new_tensor([h - 1.0, w - 1.0])
    target = torch.where(center < size / 2, size * 0.75, size * 0.25)  # [N, 2]
    rows = torch.arange(h, device=clean_maps.device, dtype=clean_maps.dtype).view(1, h, 1)
    cols = torch.arange(w, device=clean_maps.device, dtype=clean_maps.dtype).view(1, 1, w)
    sigma = sigma_fraction * min(h, w)
    dist2 = (rows - target[:, 0].view(n, 1, 1)) ** 2 + (cols - target[:, 1].view(n, 1, 1)) ** 2
    return torch.exp(-dist2 / (2 * sigma**2))


class TargetMapAttack(MapAttack):
    """Target-map attack (Dombrowski et al. 2019): drive the map toward a target while keeping the output.

    Lowers ``mean((h(x')/mean h(x') − t/mean t)²) + γ·‖softmax f(x') − softmax f(x)‖²``;
    scored by the first term on the real map. The target is ``target_map`` when given
    (``[H, W]`` or ``[N, H, W]``), else built from the clean map: ``opposite-blob`` (a
    Gaussian in the quadrant opposite its centre of mass) or ``mirror`` (flipped on both axes).
    """

    name = "target-map"
    uses_output = True

    def __init__(self, eps: float, *, target: str = "opposite-blob", target_map: torch.Tensor | None = None,
                 gamma: float = 1.0, **options) -> None:
        super().__init__(eps, **options)
        if target not in TARGETS:
            raise AttackError(f"attack 'target-map': target={target!r} is not one of {', '.join(TARGETS)} "
                              "(or pass target_map= a tensor [H, W] or [N, H, W]).")
        self.target_kind = target
        self.target_map = target_map
        self.gamma = float(gamma)

    def _target(self, clean_maps: torch.Tensor) -> torch.Tensor:
        if self.target_map is not None:
            t = torch.as_tensor(self.target_map, dtype=clean_maps.dtype, device=clean_maps.device)
            if t.dim() == 2 and t.shape == clean_maps.shape[-2:]:
                t = t.expand_as(clean_maps)
            if t.shape != clean_maps.shape or bool((t < 0).any()):
                raise AttackError(f"attack 'target-map': target_map of shape {tuple(t.shape)} must be non-negative "
                                  f"and [H, W] or [N, H, W] matching the maps {tuple(clean_maps.shape)}.")
            return t
        if self.target_kind == "mirror":
            return clean_maps.flip(-1, -2)
        return opposite_blob(clean_maps)

    def prepare(self, clean_maps, clean_logits):
        return {"target": _mean_one(self._target(clean_maps)), "probs": clean_logits.softmax(dim=1)}

    def _map_distance(self, maps, state):
        return (_mean_one(maps) - state["target"]).pow(2).mean(dim=(1, 2))

    def loss(self, maps, logits, state):
        output = (F.softmax(logits, dim=1) - state["probs"]).pow(2).sum(dim=1)
        return self._map_distance(maps, state) + self.gamma * output

    def score(self, maps, state):
        return self._map_distance(maps, state)


def _mean_one(maps: torch.Tensor) -> torch.Tensor:
    """Maps scaled to mean 1 per image (sum H·W), so squared errors are independent of the image size."""
    return normalize_maps(maps) * (maps.shape[-2] * maps.shape[-1])


def make_topk(*, eps: float = DEFAULT_EPS, steps: int = DEFAULT_STEPS, step_size: float | None = None,
              topk: float = DEFAULT_TOPK, softplus_beta: float | None = DEFAULT_BETA,
              region: str = "all") -> TopKAttack:
    """Top-k explanation attack (Ghorbani et al. 2019): lower the clean top-k pixels' share; label kept."""
    return TopKAttack(eps, steps=steps, step_size=step_size, topk=topk,
                      softplus_beta=softplus_beta, region=region)


def make_mass_center(*, eps: float = DEFAULT_EPS, steps: int = DEFAULT_STEPS, step_size: float | None = None,
                     softplus_beta: float | None = DEFAULT_BETA, region: str = "all") -> MassCenterAttack:
    """Mass-centre explanation attack (Ghorbani et al. 2019): move the map's centre of mass; label kept."""
    return MassCenterAttack(eps, steps=steps, step_size=step_size, softplus_beta=softplus_beta, region=region)


def make_target_map(*, eps: float = DEFAULT_EPS, steps: int = DEFAULT_STEPS, step_size: float | None = None,
                    target: str = "opposite-blob", target_map: torch.Tensor | None = None, gamma: float = 1.0,
                    softplus_beta: float | None = DEFAULT_BETA, region: str = "all") -> TargetMapAttack:
    """Target-map explanation attack (Dombrowski et al. 2019): pull the map toward a target; label kept."""
    return TargetMapAttack(eps, steps=steps, step_size=step_size, target=target, target_map=target_map,
                           gamma=gamma, softplus_beta=softplus_beta, region=region)


_COMMON = {"steps": DEFAULT_STEPS, "step_size": None, "softplus_beta": DEFAULT_BETA, "region": "all"}


@hookimpl
def register_attacks(register):
    for name, factory, extra in (
        ("topk", make_topk, {"topk": DEFAULT_TOPK}),
        ("mass-center", make_mass_center, {}),
        ("target-map", make_target_map, {"target": "opposite-blob", "gamma": 1.0}),
    ):
        register(AttackSpec(name=name, factory=factory, norm=Norm.LINF, eps=DEFAULT_EPS,
                            target=AttackTarget.EXPLANATION, preserves_label=True, options={**_COMMON, **extra}))

