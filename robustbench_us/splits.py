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
