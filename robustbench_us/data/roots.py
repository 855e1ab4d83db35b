"""Finding a dataset's folder from a suite's ``root`` or ``$ROBUSTBENCH_US_DATA``."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from robustbench_us.errors import DataError

DATA_ENV = "ROBUSTBENCH_US_DATA"
PACKS_ENV = "ROBUSTBENCH_US_DATA_PACKS"  # a folder of dataset packs (robustbench_us.data.packs) to read instead


def data_base(root: str | os.PathLike[str] | None, dataset: str) -> Path:
    """The folder to search: ``root`` if given, else ``$ROBUSTBENCH_US_DATA``; an error if neither."""
    if root is None or str(root) == "":
        env = os.environ.get(DATA_ENV, "")
        if not env:
            raise DataError(
                f"{dataset}: no data root. Set the environment variable {DATA_ENV} to a folder holding "
                f"busi/ and busbra/, or give the dataset a root in the suite "
                f"([[datasets]] name = \"{dataset}\", root = \"/path/to/data\")."
            )
        root = env
    return Path(root).expanduser()


def find_dataset_dir(root: str | os.PathLike[str] | None, dataset: str, relative_candidates: Sequence[str],
                     looks_right: Callable[[Path], bool], expected: str, download: str) -> Path:
    """The first ``base/<candidate>`` for which ``looks_right`` holds, or a :class:`DataError`.

    ``relative_candidates`` lists the layouts accepted below the base folder
    (``"."`` for the base itself); ``expected`` describes what ``looks_right``
    checks, and ``download`` where to get the data, for the error message.
    """
    base = data_base(root, dataset)
    if not base.is_dir():
        raise DataError(f"{dataset}: data root {base} does not exist or is not a folder. "
                        f"Point root (or {DATA_ENV}) at the folder that holds {expected}.")
    tried = []
    for rel in relative_candidates:
        candidate = (base / rel) if rel != "." else base
        tried.append(str(candidate))
        if candidate.is_dir() and looks_right(candidate):
            return candidate
    raise DataError(
        f"{dataset}: could not find {expected}. Looked in: {', '.join(tried)}. "
        f"Download it ({download}) and point root (or {DATA_ENV}) at it or at its parent folder."
    )
