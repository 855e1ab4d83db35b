"""Minimal budgets per image: the smallest ε that flips the label, or that moves the heatmap by a distance.

Both searches run the attack on a grid of ε (ascending) over the images not yet
resolved, then optionally bisect between the last ε that failed and the first that
succeeded. Bisection assumes success is monotone in ε, which iterative attacks
approximately are; the grid result never assumes it. An image that no ε in range
breaks gets ``inf``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from robustbench_us.attack_utils import center_of_mass, predict
from robustbench_us.errors import RobustBenchError

AttackFactory = Callable[..., Any]
SuccessFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
DEFAULT_GRID = tuple(level / 255 for level in (0.25, 0.5, 1, 2, 4, 8, 16))


def _grid(eps_grid: Sequence[float] | None) -> list[float]:
    grid = sorted({float(e) for e in (DEFAULT_GRID if eps_grid is None else eps_grid)})
    if not grid or grid[0] <= 0:
        raise RobustBenchError(f"eps_grid {list(eps_grid or [])} must hold positive budgets, e.g. "
                               "[1/255, 2/255, 4/255].")
    return grid


def _search(x: torch.Tensor, succeeds: SuccessFn, attack_factory: AttackFactory, *, eps_grid: Sequence[float] | None,
            bisection_steps: int, run: Callable[[Any, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Per-image smallest ε for which ``succeeds(index, x_adv)`` holds; ``inf`` where none does."""
    grid = _grid(eps_grid)
    n = x.shape[0]
    found = torch.full((n,), float("inf"), dtype=torch.float64, device=x.device)
    below = torch.zeros(n, dtype=torch.float64, device=x.device)  # largest ε known to fail
    for eps in grid:
        index = torch.nonzero(torch.isinf(found)).flatten()
        if index.numel() == 0:
            break
        ok = succeeds(index, run(attack_factory(eps=eps), index))
        found[index[ok]] = eps
        below[index[~ok]] = eps
    for _ in range(bisection_steps):
        index = torch.nonzero(torch.isfinite(found)).flatten()
        if index.numel() == 0:
            break
        middle = (below[index] + found[index]) / 2
        # Images sharing a bracket share an attack call; brackets are few (grid × 2^step at most).
        for value in torch.unique(middle).tolist():
            group = index[middle == value]
            ok = succeeds(group, run(attack_factory(eps=value), group))
            found[group[ok]] = value
            below[group[~ok]] = value
    return found


def min_eps_flip(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack_factory: AttackFactory, *,
                 eps_grid: Sequence[float] | None = None, bisection_steps: int = 0, explainer: Any = None,
                 mask: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Smallest ε per image ``[N]`` at which the attack changes the predicted label (``inf`` if none in range).

    ``attack_factory(eps=...)`` builds the attack (e.g. ``functools.partial(registry.create,
    "attack", "ifgsm")``); ``y`` are the labels the attack uses (pass the clean predictions
    to measure flips away from them); a flip is a prediction different from the clean one.
    Default grid: 0.25, 0.5, 1, 2, 4, 8, 16 grey levels.
    """
    x = x.detach()
    clean = predict(model, x)

    def run(attack: Any, index: torch.Tensor) -> torch.Tensor:
        return attack.perturb(model, x[index], y[index], explainer=explainer,
                              mask=None if mask is None else mask[index], generator=generator)

    def flipped(index: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        return predict(model, x_adv) != clean[index]

    return _search(x, flipped, attack_factory, eps_grid=eps_grid, bisection_steps=bisection_steps, run=run)


def min_eps_shift(model: nn.Module, x: torch.Tensor, explainer: Any, attack_factory: AttackFactory,
                  distance_px: float, *, y: torch.Tensor | None = None, eps_grid: Sequence[float] | None = None,
                  bisection_steps: int = 0, keep_label: bool = False, mask: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Smallest ε per image ``[N]`` at which the heatmap's centre of mass moves by ≥ ``distance_px`` pixels.

    Maps explain the clean predicted class before and after the attack. ``y`` (default: the
    clean predictions) goes to the attack. With ``keep_label=True`` a move only counts when
    the predicted label stayed (the dangerous, hard-to-notice case). ``inf`` if none in range.
    """
    x = x.detach()
    clean = predict(model, x)
    labels = clean if y is None else y
    centers = center_of_mass(explainer.explain(model, x, clean).detach())

    def run(attack: Any, index: torch.Tensor) -> torch.Tensor:
        return attack.perturb(model, x[index], labels[index], explainer=explainer,
                              mask=None if mask is None else mask[index], generator=generator)

    def moved(index: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        shift = (center_of_mass(explainer.explain(model, x_adv, clean[index]).detach()) - centers[index]).norm(dim=1)
        ok = shift >= distance_px
        if keep_label:
            ok &= predict(model, x_adv) == clean[index]
        return ok

    return _search(x, moved, attack_factory, eps_grid=eps_grid, bisection_steps=bisection_steps, run=run)
