"""Seeded, stratified, grouped train/val/test splits: one group never spans two parts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from robustbench_us.errors import DataError
from robustbench_us.protocols import Split


def grouped_stratified_split(labels: Sequence[int], groups: Sequence[str], seed: int,
                             fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> Split:
    """Split indices so every group lands in one part and each part keeps the class mix.

    Groups are assigned whole, largest first, to the part whose per-class count is
    furthest below its target (a greedy form of stratified group k-fold); ties are
    broken by a seeded shuffle, so the same seed gives the same split.
    """
    if len(labels) != len(groups):
        raise DataError(f"split: {len(labels)} labels but {len(groups)} groups.")
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise DataError(f"split fractions {fractions} must be three non-negative numbers summing to 1.")
    labels_arr = np.asarray(labels, dtype=np.int64)
    classes = np.unique(labels_arr)
    members: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(str(group), []).append(index)
    rng = np.random.default_rng(seed)
    names = list(members)
    rng.shuffle(names)
    names.sort(key=lambda g: -len(members[g]))  # stable: shuffled order breaks ties
    class_totals = np.array([(labels_arr == c).sum() for c in classes], dtype=np.float64)
    targets = np.outer(np.asarray(fractions, dtype=np.float64), class_totals)  # [3, C]
    counts = np.zeros_like(targets)
    parts: list[list[int]] = [[], [], []]
    for name in names:
        idx = members[name]
        hist = np.array([(labels_arr[idx] == c).sum() for c in classes], dtype=np.float64)
        # Deficit after adding this group, weighted by the classes the group holds.
        deficit = ((targets - counts) * hist).sum(axis=1) / max(hist.sum(), 1.0)
        deficit[np.asarray(fractions) == 0] = -np.inf
        part = int(np.argmax(deficit))
        parts[part].extend(idx)
        counts[part] += hist
    return Split(*(tuple(sorted(p)) for p in parts))


def groups_crossing(split: Split, groups: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Groups found in more than one part, each with the parts it appears in (empty when the split is sound)."""
    where: dict[str, set[str]] = {}
    for part in ("train", "val", "test"):
        for index in split.part(part):
            where.setdefault(str(groups[index]), set()).add(part)
    order = {"train": 0, "val": 1, "test": 2}
    return {g: tuple(sorted(parts, key=order.__getitem__)) for g, parts in where.items() if len(parts) > 1}


def check_split(split: Split, groups: Sequence[str], n: int) -> None:
    """Raise :class:`DataError` unless the parts are disjoint, cover ``0..n-1`` and no group crosses them."""
    indices = [*split.train, *split.val, *split.test]
    if sorted(indices) != list(range(n)):
        raise DataError(f"split does not cover the {n} images exactly once ({len(indices)} indices, "
                        f"{len(set(indices))} distinct).")
    crossing = groups_crossing(split, groups)
    if crossing:
        shown = ", ".join(f"{g} ({'/'.join(p)})" for g, p in list(crossing.items())[:5])
        raise DataError(f"split leaks: {len(crossing)} group(s) appear in more than one part: {shown}.")


def fold_split(folds: Sequence[int], test_fold: int, labels: Sequence[int], groups: Sequence[str], seed: int,
               val_fraction: float) -> Split:
    """Test part = the images of fold ``test_fold``; the rest split into train / val by group, stratified.

    Used for published cross-validation folds (e.g. BUS-BRA's patient-wise
    folds); ``val_fraction`` is the validation share of the non-test images.
    """
    if len(folds) != len(labels):
        raise DataError(f"split: {len(folds)} fold numbers but {len(labels)} labels.")
    available = sorted(set(int(f) for f in folds))
    if test_fold not in available:
        raise DataError(f"fold={test_fold} is not one of the dataset's folds ({', '.join(map(str, available))}).")
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"validation share {val_fraction} of the non-test images must be in [0, 1).")
    rest = [i for i, f in enumerate(folds) if int(f) != test_fold]
    test = tuple(i for i, f in enumerate(folds) if int(f) == test_fold)
    inner = grouped_stratified_split([labels[i] for i in rest], [groups[i] for i in rest], seed,
                                     (1.0 - val_fraction, val_fraction, 0.0))
    return Split(tuple(sorted(rest[i] for i in inner.train)), tuple(sorted(rest[i] for i in inner.val)), test)
