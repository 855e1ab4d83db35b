"""A dataset of image files decoded once into memory: labels, groups, masks, manifest hash, split."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustbench_us.data.catalog import ImageFile
from robustbench_us.data.duplicates import DEFAULT_THRESHOLD, NearDuplicates, UnionFind, find_near_duplicates, \
    perceptual_hash
from robustbench_us.data.io import UnreadableFileError, open_image, read_bytes, resize_gray, resize_mask, to_gray, \
    to_mask
from robustbench_us.data.problems import Problem, ProblemLog
from robustbench_us.errors import DataError
from robustbench_us.protocols import Sample, Split
from robustbench_us.splits import check_split, grouped_stratified_split

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Loaded:
    image: np.ndarray  # uint8 [S, S]
    mask: np.ndarray | None  # bool [S, S]
    digests: tuple[tuple[Path, str], ...]  # (file, sha256) of the image and its masks
    original_size: tuple[int, int]  # (width, height)
    mode: str
    lesion_fraction: float | None  # share of the original image inside the merged mask
    phash: int  # perceptual hash of the full-resolution grey image


def _outside(path: Path, root: Path) -> Path | None:
    """Where ``path`` really points when a symlink (of the file or a folder on its way) leads out of ``root``."""
    target = path.resolve()
    return None if target.is_relative_to(root) else target


def _load(file: ImageFile, size: int, root: Path) -> _Loaded | tuple[Path, str, str, str]:
    """Decode one image and its masks, or describe why it cannot be used (path, kind, reason, fix).

    ``root`` is the dataset folder, resolved: a file reached through a symlink that leads
    out of it is not read, so a dataset folder cannot pull in files from elsewhere unnoticed.
    """
    for path in (file.image, *file.masks):
        target = _outside(path, root)
        if target is not None:
            return (path, "link outside root", f"a symlink to {target}, outside the dataset folder {root}",
                    "copy the file into the dataset folder, or remove the link")
    try:
        raw = read_bytes(file.image)
        pil = open_image(raw)
    except UnreadableFileError as exc:
        return file.image, "unreadable", str(exc), "re-export or remove the file"
    gray = to_gray(pil)
    digests = [(file.image, raw.sha256)]
    merged = None
    for mask_path in file.masks:
        try:
            mraw = read_bytes(mask_path)
            mask = to_mask(open_image(mraw))
        except UnreadableFileError as exc:
            return mask_path, "unreadable mask", str(exc), "re-export or remove the mask (and its image)"
        if mask.shape != gray.shape:
            return (mask_path, "mask size mismatch",
                    f"mask is {mask.shape[1]}×{mask.shape[0]} but its image {file.image.name} is "
                    f"{gray.shape[1]}×{gray.shape[0]}", "re-export the mask at the image's size")
        digests.append((mask_path, mraw.sha256))
        merged = mask if merged is None else (merged | mask)
    return _Loaded(
        image=resize_gray(gray, size),
        mask=None if merged is None else resize_mask(merged, size),
        digests=tuple(digests),
        original_size=(gray.shape[1], gray.shape[0]),
        mode=pil.mode,
        lesion_fraction=None if merged is None else float(merged.mean()),
        phash=perceptual_hash(gray),
    )


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class FileDataset:
    """Images (and merged masks) read once, resized and kept in memory as uint8.

    Every image is decoded when the dataset is built, so a truncated file or a
    mask of the wrong size shows up at once (and ``len`` never changes later);
    ``__getitem__`` only converts the cached pixels to float.

    ``groups`` are patient ids where the dataset publishes them, unioned with
    near-duplicate groups when ``dedupe`` is on; :meth:`split` keeps each group
    in one part.
    """

    def __init__(self, *, name: str, root: Path, classes: Sequence[str], files: Sequence[ImageFile],
                 image_size: int, problems: ProblemLog, dedupe: bool = True,
                 dup_threshold: int = DEFAULT_THRESHOLD, extra_manifest: Sequence[Path] = ()) -> None:
        if int(image_size) < 8:
            raise DataError(f"{name}: image_size={image_size} is too small; use at least 8 (224 in the study).")
        self.name, self.root, self.classes = name, Path(root), tuple(classes)
        self.image_size = int(image_size)
        start = time.perf_counter()
        total = len(files) + len(problems)  # the catalog may already have set some images aside
        real_root = self.root.resolve()
        with ThreadPoolExecutor(_workers()) as pool:
            results = list(pool.map(lambda f: _load(f, self.image_size, real_root), files))
        kept: list[ImageFile] = []
        loaded: list[_Loaded] = []
        for file, result in zip(files, results):
            if isinstance(result, _Loaded):
                kept.append(file)
                loaded.append(result)
            else:
                problems.add(*result)
        problems.finish(total)
        self.problems: tuple[Problem, ...] = tuple(problems.problems)
        if not kept:
            raise DataError(f"{name}: no usable images under {self.root}.")
        self.files: tuple[ImageFile, ...] = tuple(kept)
        self.labels: list[int] = [f.label for f in kept]
        empty = [c for k, c in enumerate(self.classes) if k not in set(self.labels)]
        if empty:
            raise DataError(f"{name}: no usable images of class {', '.join(empty)} under {self.root}; "
                            f"fix the files reported above or choose the classes with classes=[...].")
        self.ids: list[str] = [f.id for f in kept]
        self._images = torch.from_numpy(np.stack([r.image for r in loaded]))
        self.has_masks = all(r.mask is not None for r in loaded)
        self._masks = torch.from_numpy(np.stack([r.mask for r in loaded])) if self.has_masks else None
        self.original_sizes: list[tuple[int, int]] = [r.original_size for r in loaded]
        self.modes: list[str] = [r.mode for r in loaded]
        self.lesion_fractions: list[float | None] = [r.lesion_fraction for r in loaded]
        self.phashes: list[int] = [r.phash for r in loaded]
        self._manifest = self._hash_manifest(loaded, extra_manifest)
        self.dup_threshold = int(dup_threshold)
        self._near: NearDuplicates | None = None
        self.dedupe = bool(dedupe)
        self.groups: list[str] = self._make_groups()
        logger.info("%s: %d images at %d px in %.2f s (%d skipped)", name, len(kept), self.image_size,
                    time.perf_counter() - start, len(self.problems))

    # ------------------------------------------------------------------ protocol
    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Sample:
        n = len(self.files)
        if not -n <= index < n:
            raise IndexError(f"{self.name}: index {index} out of range for {n} images")
        index %= n
        image = self._images[index].to(torch.float32).div_(255.0).unsqueeze(0).expand(3, -1, -1).contiguous()
        mask = self._masks[index].clone() if self._masks is not None else None
        return Sample(image=image, label=self.labels[index], id=self.ids[index], group=self.groups[index],
                      mask=mask, meta=self.sample_meta(index))

    def sample_meta(self, index: int) -> dict[str, Any]:
        """What a sample carries besides pixels: class, file, original size, mask count, dataset fields."""
        file = self.files[index]
        return {"class": self.classes[file.label], "file": self._rel(file.image),
                "original_size": list(self.original_sizes[index]), "mode": self.modes[index],
                "mask_files": len(file.masks), **dict(file.meta)}

    def manifest_hash(self) -> str:
        """sha256 over every file used (relative name, content hash, label), so any change shows."""
        return self._manifest

    def split(self, seed: int, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> Split:
        """Seeded, stratified split in which no group (patient or near-duplicate cluster) spans two parts."""
        split = grouped_stratified_split(self.labels, self.groups, seed, fractions)
        check_split(split, self.groups, len(self))
        return split

    # ------------------------------------------------------------------ extras
    def arrays(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The cache itself: uint8 images ``[N, S, S]`` and bool masks ``[N, S, S]`` (do not modify)."""
        return self._images, self._masks

    def near_duplicates(self, threshold: int | None = None) -> NearDuplicates:
        """Near-duplicate groups by perceptual hash of the full-resolution images (so not of ``image_size``)."""
        threshold = self.dup_threshold if threshold is None else int(threshold)
        if self._near is None or self._near.threshold != threshold:
            self._near = find_near_duplicates(self.phashes, self.labels, threshold)
        return self._near

    def _make_groups(self) -> list[str]:
        base = [f.group if f.group is not None else f.id for f in self.files]
        if not self.dedupe:
            return base
        uf = UnionFind(len(base))
        first: dict[str, int] = {}
        for i, g in enumerate(base):
            uf.union(first.setdefault(g, i), i)
        for group in self.near_duplicates().groups:
            for i in group[1:]:
                uf.union(group[0], i)
        roots = [uf.find(i) for i in range(len(base))]
        members: dict[int, set[str]] = {}
        for i, r in enumerate(roots):
            members.setdefault(r, set()).add(base[i])
        # A component that joins several published groups (or images) gets a name that says so.
        return [f"near-dup:{base[r]}" if len(members[r]) > 1 else base[r] for r in roots]

    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    def _hash_manifest(self, loaded: Sequence[_Loaded], extra: Sequence[Path]) -> str:
        lines = [f"dataset {self.name}", f"classes {','.join(self.classes)}"]
        entries = []
        for file, result in zip(self.files, loaded):
            for path, digest in result.digests:
                entries.append(f"{self._rel(path)}\t{digest}\t{file.label}")
        for path in extra:
            entries.append(f"{self._rel(path)}\t{hashlib.sha256(path.read_bytes()).hexdigest()}\t-")
        text = "\n".join(lines + sorted(entries)) + "\n"
        return hashlib.sha256(text.encode()).hexdigest()
