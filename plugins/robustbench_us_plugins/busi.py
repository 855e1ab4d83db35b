"""BUSI (Al-Dhabyani et al. 2020) read from its own download layout.

Layout: ``Dataset_BUSI_with_GT/{benign,malignant,normal}/<name>.png`` with
``<name>_mask.png`` and, for a few images, ``<name>_mask_1.png`` / ``_mask_2.png``.
All masks of an image are binarised (> 0) and OR-merged. Grayscale, RGB and RGBA
files of any size are accepted (colour overlays become luma).

Tasks: ``task="binary"`` (default) keeps benign (label 0) and malignant (1) and
leaves ``normal`` out, as the study did; ``task="3class"`` keeps normal as
label 2 (its masks are empty).

BUSI publishes no patient ids and holds many near-identical re-exports of one
scan, some filed under both benign and malignant. Near-duplicates (pHash,
Hamming ≤ 10 bits, see :mod:`robustbench_us.data.duplicates`) form groups that a
split never separates.
"""

from __future__ import annotations

from pathlib import Path

from robustbench_us import DatasetSpec, hookimpl
from robustbench_us.data.catalog import scan_class_folders
from robustbench_us.data.duplicates import DEFAULT_THRESHOLD
from robustbench_us.data.files import FileDataset
from robustbench_us.data.problems import ProblemLog
from robustbench_us.data.roots import find_dataset_dir
from robustbench_us.errors import DataError

FOLDER = "Dataset_BUSI_with_GT"
TASKS = {"binary": ("benign", "malignant"), "3class": ("benign", "malignant", "normal")}
DOWNLOAD = "https://doi.org/10.1016/j.dib.2019.104863"


def _looks_like_busi(path: Path) -> bool:
    names = {p.name.lower() for p in path.iterdir() if p.is_dir()}
    return {"benign", "malignant"} <= names


def find_busi(root: str | None) -> Path:
    """The ``Dataset_BUSI_with_GT`` folder under ``root`` (or ``$ROBUSTBENCH_US_DATA``)."""
    return find_dataset_dir(root, "busi", [".", FOLDER, f"{FOLDER}/{FOLDER}", f"busi/{FOLDER}", "busi"],
                            _looks_like_busi,
                            f"{FOLDER}/ with benign/ and malignant/ folders", DOWNLOAD)


def make_busi(*, root: str | None = None, image_size: int = 224, seed: int = 0, task: str = "binary",
              strict: bool = False, dedupe: bool = True, dup_threshold: int = DEFAULT_THRESHOLD) -> FileDataset:
    """BUSI breast ultrasound (benign/malignant, masks merged; near-duplicates grouped for splits)."""
    del seed  # the files fix the data; the split seed is given to split()
    if task not in TASKS:
        raise DataError(f"busi: task={task!r} is not one of {', '.join(TASKS)}.")
    base = find_busi(root)
    classes = TASKS[task]
    problems = ProblemLog("busi", base, strict=strict)
    files, _ = scan_class_folders(base, {c: k for k, c in enumerate(classes)}, dataset="busi", problems=problems,
                                  mask_pattern="{stem}_mask*.png", masks=True, ignore={"normal"})
    return FileDataset(name="busi", root=base, classes=classes, files=files, image_size=image_size,
                       problems=problems, dedupe=dedupe, dup_threshold=dup_threshold)


@hookimpl
def register_datasets(register):
    register(DatasetSpec(name="busi", factory=make_busi, classes=TASKS["binary"], has_masks=True, needs_root=True,
                         options={"task": "binary", "strict": False, "dedupe": True,
                                  "dup_threshold": DEFAULT_THRESHOLD}))
