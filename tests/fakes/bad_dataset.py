"""A dataset plugin whose factory raises, as one pointing at a folder that is not there would."""

from __future__ import annotations

from robustbench_us import DatasetSpec, hookimpl


def make_missing(*, root=None, image_size: int = 32, seed: int = 0):
    """A dataset whose folder is missing."""
    raise FileNotFoundError("no such folder: /data/not-here")


@hookimpl
def register_datasets(register):
    register(DatasetSpec(name="missing-data", factory=make_missing))
