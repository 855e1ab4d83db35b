"""BUS-BRA (Gómez-Flores et al. 2024): 1875 images of 1064 patients from four scanners.

Layout: ``BUSBRA/Images/bus_0001-l.png``, ``BUSBRA/Masks/mask_0001-l.png``,
``bus_data.csv`` (ID, Case, Histology, Pathology, BIRADS, Device, ...), and the
official patient-wise folds ``5-fold-cv.csv`` / ``10-fold-cv.csv``.

Groups are patients (``case-<Case>``). Splits:

``split="random"`` (default)
    seeded, stratified 70/10/20 (or the fractions given), patient-wise.
``split="official-5fold"`` / ``"official-10fold"`` with ``fold=k`` (1-based)
    test = the published fold k; the other folds are split into train and val
    by patient, stratified (val share = val / (train + val) of the fractions).
    The published ``valid_k`` columns are not used: they put about 200 patients
    in both train and validation.

``Sample.meta`` carries case, device (scanner), birads, histology, pathology,
side, bbox (original pixels) and the official fold numbers ``fold_5`` / ``fold_10``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from robustbench_us import DatasetSpec, hookimpl
from robustbench_us.data.catalog import ImageFile
from robustbench_us.data.duplicates import DEFAULT_THRESHOLD
from robustbench_us.data.files import FileDataset
from robustbench_us.data.io import IMAGE_SUFFIXES
from robustbench_us.data.problems import ProblemLog, warn_data
from robustbench_us.data.roots import find_dataset_dir
from robustbench_us.errors import DataError
from robustbench_us.protocols import Split
from robustbench_us.splits import check_split, fold_split

CLASSES = ("benign", "malignant")
SPLITS = {"random": None, "official-5fold": 5, "official-10fold": 10}
DOWNLOAD = "https://doi.org/10.5281/zenodo.7730709"
_REQUIRED = ("ID", "Case", "Pathology")


def _looks_like_busbra(path: Path) -> bool:
    return (path / "Images").is_dir() and (path / "bus_data.csv").is_file()


def find_busbra(root: str | None) -> Path:
    """The ``BUSBRA`` folder under ``root`` (or ``$ROBUSTBENCH_US_DATA``)."""
    return find_dataset_dir(root, "busbra", [".", "BUSBRA", "busbra/BUSBRA", "busbra"], _looks_like_busbra,
                            "BUSBRA/ with Images/ and bus_data.csv", DOWNLOAD)


def _read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            columns = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"busbra: cannot read {path} ({exc}); restore it from the BUS-BRA download.") from exc
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(f"busbra: {path} lacks column(s) {', '.join(missing)} (has: {', '.join(columns)}); "
                        f"restore it from the BUS-BRA download.")
    return rows


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value not in (None, "", "NaN", "nan") else None
    except ValueError:
        return None


def _read_folds(base: Path, k: int) -> dict[str, int] | None:
    path = base / f"{k}-fold-cv.csv"
    if not path.is_file():
        return None
    return {row["ID"]: fold for row in _read_csv(path, ("ID", "kFold")) if (fold := _int(row["kFold"])) is not None}


def _meta(row: dict[str, str], folds5: dict[str, int] | None, folds10: dict[str, int] | None) -> dict[str, Any]:
    bbox = None
    try:
        bbox = json.loads(row.get("BBOX") or "null")
    except json.JSONDecodeError:
        pass
    return {"case": _int(row["Case"]), "device": row.get("Device"), "birads": _int(row.get("BIRADS")),
            "histology": row.get("Histology"), "pathology": row["Pathology"].strip().lower(),
            "side": row.get("Side"), "bbox": bbox,
            "fold_5": (folds5 or {}).get(row["ID"]), "fold_10": (folds10 or {}).get(row["ID"])}


class BusbraDataset(FileDataset):
    """BUS-BRA with patient groups and the published folds."""

    def __init__(self, *, split_mode: str, fold: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.split_mode, self.fold = split_mode, fold

    def split(self, seed: int, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> Split:
        """Patient-wise split: seeded and stratified, or the published test fold (see the module doc)."""
        k = SPLITS[self.split_mode]
        if k is None:
            return super().split(seed, fractions)
        return self.official_split(k, self.fold, seed, fractions)

    def official_split(self, k: int, fold: int, seed: int = 0,
                       fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> Split:
        """Test = published fold ``fold`` of the ``k``-fold scheme; train / val = the rest, by patient."""
        if k not in (5, 10):
            raise DataError(f"busbra: there are official 5- and 10-fold schemes, not {k}-fold.")
        folds = [f.meta[f"fold_{k}"] for f in self.files]
        if any(f is None for f in folds):
            raise DataError(f"busbra: {k}-fold-cv.csv is missing or does not list every image under {self.root}; "
                            f"restore it from the BUS-BRA download or use split='random'.")
        train, val = float(fractions[0]), float(fractions[1])
        val_share = val / (train + val) if train + val > 0 else 0.0
        split = fold_split(folds, fold, self.labels, self.groups, seed, val_share)
        check_split(split, self.groups, len(self))
        return split


def make_busbra(*, root: str | None = None, image_size: int = 224, seed: int = 0, split: str = "random",
                fold: int | None = None, strict: bool = False, dedupe: bool = False,
                dup_threshold: int = DEFAULT_THRESHOLD) -> BusbraDataset:
    """BUS-BRA breast ultrasound (4 scanners, patient ids, BI-RADS; official patient-wise folds)."""
    del seed  # the files fix the data; the split seed is given to split()
    if split not in SPLITS:
        raise DataError(f"busbra: split={split!r} is not one of {', '.join(SPLITS)}.")
    k = SPLITS[split]
    if k is None and fold is not None:
        raise DataError(f"busbra: fold={fold} applies only to split='official-5fold' or 'official-10fold'.")
    fold = 1 if fold is None else int(fold)
    if k is not None and not 1 <= fold <= k:
        raise DataError(f"busbra: fold={fold} is outside 1..{k} for split={split!r}.")
    base = find_busbra(root)
    rows = _read_csv(base / "bus_data.csv", _REQUIRED)
    folds5, folds10 = _read_folds(base, 5), _read_folds(base, 10)
    if k is not None and (folds5, folds10)[k == 10] is None:
        raise DataError(f"busbra: split={split!r} needs {base / f'{k}-fold-cv.csv'}, which is missing; restore it "
                        f"from the BUS-BRA download or use split='random'.")
    problems = ProblemLog("busbra", base, strict=strict)
    images_dir, masks_dir = base / "Images", base / "Masks"
    files: list[ImageFile] = []
    listed = set()
    labels = {c: i for i, c in enumerate(CLASSES)}
    for row in rows:
        image_id = row["ID"].strip()
        listed.add(image_id)
        image = images_dir / f"{image_id}.png"
        pathology = row["Pathology"].strip().lower()
        if pathology not in labels:
            problems.add(image, "unknown pathology", f"Pathology {row['Pathology']!r} in bus_data.csv",
                         "use benign or malignant")
            continue
        if not image.is_file():
            problems.add(image, "missing image", "listed in bus_data.csv but not found",
                         "restore the file or delete its row")
            continue
        mask = masks_dir / f"mask_{image_id.removeprefix('bus_')}.png"
        if not mask.is_file():
            problems.add(image, "without mask", f"no mask {mask.relative_to(base).as_posix()}",
                         "restore the mask or remove the image and its row")
            continue
        meta = _meta(row, folds5, folds10)
        if k is not None and meta[f"fold_{k}"] is None:
            problems.add(image, "no fold", f"not listed in {k}-fold-cv.csv", "restore the fold file")
            continue
        files.append(ImageFile(id=image_id, label=labels[pathology], image=image, masks=(mask,),
                               group=f"case-{meta['case']}", meta=meta))
    unlisted = [p.name for p in sorted(images_dir.iterdir())
                if p.suffix.lower() in IMAGE_SUFFIXES and p.stem not in listed]
    if unlisted:
        warn_data(f"busbra: {len(unlisted)} image(s) in {images_dir} are not in bus_data.csv and were ignored "
                  f"(first: {', '.join(unlisted[:5])}); add their rows to use them.")
    extra = [base / "bus_data.csv"] + ([base / f"{k}-fold-cv.csv"] if k is not None else [])
    return BusbraDataset(split_mode=split, fold=fold, name="busbra", root=base, classes=CLASSES, files=files,
                         image_size=image_size, problems=problems, dedupe=dedupe, dup_threshold=dup_threshold,
                         extra_manifest=extra)


@hookimpl
def register_datasets(register):
    register(DatasetSpec(name="busbra", factory=make_busbra, classes=CLASSES, has_masks=True, needs_root=True,
                         options={"split": "random", "fold": None, "strict": False, "dedupe": False}))
