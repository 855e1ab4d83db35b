"""Every dataset plugin and every factory option is documented in docs/datasets.md."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from robustbench_us.plugins import default_registry
from robustbench_us.specs import Kind

DOC = (Path(__file__).resolve().parents[1] / "docs" / "datasets.md").read_text(encoding="utf-8")
REFERENCE = ("phantom", "busi", "busbra", "folder")


@pytest.mark.parametrize("name", REFERENCE)
def test_dataset_and_its_options_are_documented(name):
    spec = default_registry().get(Kind.DATASET, name)
    assert f"### `{name}`" in DOC
    params = inspect.signature(spec.factory).parameters
    assert {"root", "image_size", "seed"} <= set(params)  # the factory contract the runner calls
    for option in params:
        if option not in ("root", "image_size"):
            assert f"| `{option}` |" in DOC, f"option {option!r} of dataset {name!r} is not in docs/datasets.md"


def test_real_datasets_declare_that_they_need_data():
    registry = default_registry()
    assert [registry.get(Kind.DATASET, n).needs_root for n in REFERENCE] == [False, True, True, True]
    assert registry.get(Kind.DATASET, "busi").has_masks and registry.get(Kind.DATASET, "busbra").has_masks
