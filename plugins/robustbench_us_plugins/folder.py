"""Any ``root/<class>/*.png|jpg|jpeg|bmp`` tree as a dataset, e.g. a clinic's own collection.

Class folders map to labels in the order of ``classes`` (default benign = 0,
malignant = 1; folder names match case-insensitively). Masks are optional and
found by ``mask_pattern`` beside each image: ``{stem}`` is the image's file
name without suffix, ``*`` and ``?`` are wildcards (default
``{stem}_mask*.png``, the BUSI convention; several masks of one image are
OR-merged). ``masks=None`` uses masks if any exist and then requires one per
image; ``True`` requires them; ``False`` ignores them. Other folders are skipped
with a warning, and so is a file reached through a symlink (to a file or a folder)
that leads out of ``root`` (an error with ``strict=True``): the dataset is what is
inside its folder. No patient ids exist, so near-duplicates (pHash ≤ 10 bits) form
the groups a split keeps together.
"""

from __future__ import annotations

from collections.abc import Sequence

from robustbench_us import DatasetSpec, hookimpl
from robustbench_us.data.catalog import DEFAULT_MASK_PATTERN, scan_class_folders
from robustbench_us.data.duplicates import DEFAULT_THRESHOLD
from robustbench_us.data.files import FileDataset
from robustbench_us.data.problems import ProblemLog
from robustbench_us.data.roots import data_base
from robustbench_us.errors import DataError

DEFAULT_CLASSES = ("benign", "malignant")


def make_folder(*, root: str | None = None, image_size: int = 224, seed: int = 0,
                classes: Sequence[str] = DEFAULT_CLASSES, mask_pattern: str = DEFAULT_MASK_PATTERN,
                masks: bool | None = None, strict: bool = False, dedupe: bool = True,
                dup_threshold: int = DEFAULT_THRESHOLD) -> FileDataset:
    """Your own images in root/<class>/ folders (png, jpg, bmp), masks by a naming rule."""
    del seed  # the files fix the data; the split seed is given to split()
    if root is None:
        raise DataError("folder: give the dataset a root in the suite ([[datasets]] name = \"folder\", "
                        "root = \"/path/to/images\") holding one folder per class, e.g. benign/ and malignant/.")
    base = data_base(root, "folder")
    if not base.is_dir():
        raise DataError(f"folder: {base} does not exist or is not a folder. Point root at a folder holding one "
                        f"folder per class ({', '.join(classes)}).")
    if isinstance(classes, str) or len(classes) < 2 or len({c.lower() for c in classes}) != len(classes):
        raise DataError(f"folder: classes={classes!r} must list at least two distinct folder names, label 0 first, "
                        f"e.g. ['benign', 'malignant'].")
    classes = tuple(str(c) for c in classes)
    problems = ProblemLog("folder", base, strict=strict)
    files, _ = scan_class_folders(base, {c: k for k, c in enumerate(classes)}, dataset="folder",
                                  problems=problems, mask_pattern=mask_pattern, masks=masks)
    return FileDataset(name="folder", root=base, classes=tuple(c.lower() for c in classes), files=files,
                       image_size=image_size, problems=problems, dedupe=dedupe, dup_threshold=dup_threshold)


@hookimpl
def register_datasets(register):
    register(DatasetSpec(name="folder", factory=make_folder, classes=DEFAULT_CLASSES, has_masks=False,
                         needs_root=True, options={"classes": list(DEFAULT_CLASSES), "mask_pattern":
                                                   DEFAULT_MASK_PATTERN, "masks": None, "strict": False,
                                                   "dedupe": True}))
