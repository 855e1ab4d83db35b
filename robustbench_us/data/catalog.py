"""Listing a dataset's files before decoding: class folders, masks by a naming rule, clear errors."""

from __future__ import annotations

import glob
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustbench_us.data.io import IMAGE_SUFFIXES
from robustbench_us.data.problems import ProblemLog, warn_data
from robustbench_us.errors import DataError

DEFAULT_MASK_PATTERN = "{stem}_mask*.png"


@dataclass(frozen=True)
class ImageFile:
    """One image found on disk, with its label, masks and (if published) patient group."""

    id: str
    label: int
    image: Path
    masks: tuple[Path, ...] = ()
    group: str | None = None  # patient / case when the dataset publishes one
    meta: Mapping[str, Any] = field(default_factory=dict)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def mask_regex(pattern: str) -> re.Pattern[str]:
    """A regex matching file names of ``pattern`` (``{stem}`` plus glob ``*`` / ``?``), capturing the stem."""
    if "{stem}" not in pattern:
        raise DataError(f"mask pattern {pattern!r} must contain '{{stem}}', e.g. '{DEFAULT_MASK_PATTERN}'.")
    name = pattern.rsplit("/", 1)[-1]
    escaped = re.escape(name).replace(r"\{stem\}", "(?P<stem>.+?)").replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(f"^{escaped}$", re.IGNORECASE)


def _class_dirs(base: Path) -> dict[str, Path]:
    return {p.name.lower(): p for p in sorted(base.iterdir()) if p.is_dir() and not p.name.startswith((".", "__"))}


def scan_class_folders(base: Path, labels: Mapping[str, int], *, dataset: str, problems: ProblemLog,
                       mask_pattern: str = DEFAULT_MASK_PATTERN, masks: bool | None = None,
                       ignore: Collection[str] = (), id_prefix: bool = True) -> tuple[list[ImageFile], bool]:
    """List ``base/<class>/*.{png,jpg,jpeg,bmp,...}`` with the masks ``mask_pattern`` names.

    ``labels`` maps class folder names (case-insensitive) to labels. Folders in
    ``ignore`` are skipped silently; any other folder is skipped with a warning.
    ``masks``: True requires a mask per image (an image without one is a
    problem), False ignores mask files, None requires masks only if any exist.
    Returns the files and whether masks are in use.
    """
    found = _class_dirs(base)
    wanted = {name.lower(): label for name, label in labels.items()}
    missing = [name for name in wanted if name not in found]
    if missing:
        raise DataError(
            f"{dataset}: class folder(s) {', '.join(missing)} not found in {base} "
            f"(found: {', '.join(found) or 'no folders'}). Rename the folders, or choose the classes with "
            f"classes=[...] (folder names, label 0 first)."
        )
    unexpected = {name: path for name, path in found.items() if name not in wanted and name not in ignore}
    if unexpected:
        counts = ", ".join(f"{path.name}/ ({sum(1 for p in path.iterdir() if _is_image(p))} files)"
                           for path in unexpected.values())
        warn_data(f"{dataset}: ignored folder(s) in {base} that are not classes: {counts}. "
                  f"Add them to classes=[...] to use them, or move them out of the data folder.")
    regex = mask_regex(mask_pattern)
    in_dir = "/" not in mask_pattern
    listing: dict[str, tuple[list[Path], dict[str, list[Path]]]] = {}
    any_masks = False
    for name in wanted:
        files = sorted(p for p in found[name].iterdir() if _is_image(p))
        stems = {p.stem for p in files}
        images, by_stem = [], {}
        for path in files:
            match = regex.match(path.name) if in_dir else None
            if match and (match["stem"] in stems and match["stem"] != path.stem):
                by_stem.setdefault(match["stem"], []).append(path)
            elif match and masks is not False:
                warn_data(f"{dataset}: {path} looks like a mask ({mask_pattern}) but no image "
                          f"{match['stem']}.* is beside it; it is ignored. Rename it or set mask_pattern=...")
            else:
                images.append(path)
        if not in_dir:
            for path in images:
                pattern = str(path.parent / mask_pattern.format(stem=glob.escape(path.stem)))
                hits = sorted(Path(p) for p in glob.glob(pattern) if _is_image(Path(p)))
                if hits:
                    by_stem[path.stem] = hits
        if not images:
            raise DataError(
                f"{dataset}: class folder {found[name]} holds no images ({', '.join(IMAGE_SUFFIXES)}). "
                f"Add its images, or leave the class out with classes=[...]."
            )
        any_masks = any_masks or bool(by_stem)
        listing[name] = (images, by_stem)
    use_masks = any_masks if masks is None else bool(masks)
    out: list[ImageFile] = []
    for name, (images, by_stem) in listing.items():
        seen: dict[str, Path] = {}
        for path in images:
            if path.stem in seen:  # benign/x.png and benign/x.jpg: which one do x's masks belong to?
                problems.add(path, "same name", f"{seen[path.stem].name} has the same name without suffix",
                             "rename or remove one of them")
                continue
            seen[path.stem] = path
            mask_files = tuple(sorted(by_stem.get(path.stem, []))) if use_masks else ()
            if use_masks and not mask_files:
                expected = mask_pattern.format(stem=path.stem)
                problems.add(path, "without mask", f"no mask file {expected}",
                             "add the mask, remove the image, or pass masks=False")
                continue
            image_id = f"{found[name].name}/{path.stem}" if id_prefix else path.stem
            out.append(ImageFile(id=image_id, label=wanted[name], image=path, masks=mask_files,
                                 meta={"class_folder": found[name].name}))
    return out, use_masks
