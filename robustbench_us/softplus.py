"""Swap a model's ReLUs for softplus(β) for a block, so explanation maps have useful second derivatives.

A ReLU network is piecewise linear: its input gradient is piecewise constant,
so the gradient *of a gradient-based map* with respect to the input is zero
almost everywhere and an attack that optimises the map gets no signal.
Dombrowski et al. ("Explanations can be manipulated and geometry is to blame",
NeurIPS 2019) replace every ReLU by softplus(β) = log(1 + exp(βx)) / β for the
attack's gradient; as β grows softplus tends to ReLU. See docs/explainers.md
for when it is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from robustbench_us.errors import RobustBenchError

logger = logging.getLogger(__name__)

#: Default β: close to ReLU away from zero (|softplus − relu| ≤ log 2 / β ≈ 0.07), yet smooth.
DEFAULT_BETA = 10.0


@contextmanager
def softplus_relu(model: nn.Module, beta: float = DEFAULT_BETA, threshold: float = 20.0) -> Iterator[int]:
    """Replace every ``nn.ReLU`` submodule of ``model`` by ``nn.Softplus(beta, threshold)`` for the block.

    Yields the number of ReLU modules replaced. On exit, normal or not, the
    exact original module objects are put back in their places, so the model's
    outputs, ``state_dict`` and hooks on those modules are as before. A ReLU
    shared by several parents (or used twice by one) is replaced everywhere.

    Functional calls (``F.relu``, ``torch.relu``, ``x.relu()``) inside a
    ``forward`` cannot be swapped this way: write such models with ``nn.ReLU``
    modules. A model with no ``nn.ReLU`` (e.g. GELU transformers) is left as it
    is and 0 is yielded; its second derivatives do not vanish anyway.

    Use the swapped model for the attack's gradient only; judge labels and
    report maps with the original model (softplus shifts activations by up to
    log 2 / β, which can change a prediction).
    """
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta > 0:
        raise RobustBenchError(f"softplus_relu: beta={beta!r} must be a positive number (e.g. {DEFAULT_BETA}); "
                               "larger values follow ReLU more closely.")
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    replacements: dict[int, nn.Module] = {}  # one Softplus per ReLU object, so sharing is preserved
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU):
                replacement = replacements.setdefault(id(child), nn.Softplus(beta=beta, threshold=threshold))
                swapped.append((parent, name, child))
                setattr(parent, name, replacement)
    if isinstance(model, nn.ReLU):
        logger.warning("softplus_relu: the model itself is an nn.ReLU; it cannot replace itself in place.")
    if not swapped:
        logger.debug("softplus_relu: %s has no nn.ReLU modules; nothing replaced.", type(model).__name__)
    try:
        yield len(replacements)
    finally:
        for parent, name, original in reversed(swapped):
            setattr(parent, name, original)
