"""Hook specifications: the four things a plugin can add.

Each hook receives a ``register`` callback; a plugin calls it once per thing it
adds. The host owns names, duplicates and order, so a hook never returns a value.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from robustbench_us.specs import AttackSpec, DatasetSpec, ExplainerSpec, ModelSpec

PROJECT = "robustbench_us"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register datasets: call ``register(DatasetSpec(name=..., factory=...))``.

    The factory is called as ``factory(root=..., image_size=..., **options)`` and
    returns a dataset: ``len()``, indexing to a :class:`~robustbench_us.protocols.Sample`
    (``image`` float32 ``[3, H, W]`` in [0, 1], ``label`` 0 benign / 1 malignant,
    optional ``mask``, ``id``, ``group``), ``manifest_hash()`` and ``split(seed)``.
    """


@hookspec
def register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register models: call ``register(ModelSpec(name=..., factory=..., input_size=...))``.

    The factory is called as ``factory(input_size=..., **options)`` and returns an
    ``nn.Module`` whose ``forward(x)`` takes ``[N, 3, H, W]`` in [0, 1] (normalising
    inside) and returns logits ``[N, 2]``; it exposes ``cam_layer`` (the module
    Grad-CAM hooks), ``input_size`` and ``has_segmentation``, and, when that is true,
    ``segment(x)`` returning mask logits ``[N, 1, H, W]``.
    """


@hookspec
def register_explainers(register: Callable[[ExplainerSpec], None]) -> None:
    """Register explainers: call ``register(ExplainerSpec(name=..., factory=..., differentiable=...))``.

    The factory returns an object with ``explain(model, x, target, *, create_graph=False)``
    giving non-negative maps ``[N, H, W]`` at input resolution for the class index
    ``target`` (``[N]`` long), and a ``differentiable`` attribute.
    """


@hookspec
def register_attacks(register: Callable[[AttackSpec], None]) -> None:
    """Register attacks: call ``register(AttackSpec(name=..., factory=..., norm=..., eps=..., target=...))``.

    The factory is called as ``factory(eps=..., **options)`` and returns an object with
    ``perturb(model, x, y, *, explainer=None, mask=None, generator=None) -> x_adv``:
    ``x_adv`` has ``x``'s shape, dtype and device, lies in [0, 1] and within ``eps``
    of ``x`` in the declared norm; ``x`` is not modified.
    """
