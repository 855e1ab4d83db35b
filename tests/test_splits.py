"""Grouped, stratified, seeded splits; published folds; leak checks."""

from __future__ import annotations

from collections import Counter

import pytest

from robustbench_us.errors import DataError
from robustbench_us.protocols import Split
from robustbench_us.splits import check_split, fold_split, grouped_stratified_split, groups_crossing


def _data():
    """200 images: 140 benign / 60 malignant; groups of 1-4 images, some mixing both labels."""
    labels, groups = [], []
    for g in range(80):
        size = 1 + g % 4
        for k in range(size):
            labels.append(1 if (g % 10 < 3 and k == 0) or g % 10 == 9 else 0)
            groups.append(f"g{g}")
    return labels[:200], groups[:200]


def test_groups_stay_whole_and_parts_cover_everything():
    labels, groups = _data()
    split = grouped_stratified_split(labels, groups, seed=0)
    check_split(split, groups, len(labels))
    assert groups_crossing(split, groups) == {}


def test_parts_follow_the_fractions_per_class():
    labels, groups = _data()
    split = grouped_stratified_split(labels, groups, seed=3)
    totals = Counter(labels)
    for part, fraction in zip(("train", "val", "test"), (0.7, 0.1, 0.2)):
        counts = Counter(labels[i] for i in split.part(part))
        for label, total in totals.items():
            assert abs(counts[label] - fraction * total) <= 4, (part, label, counts[label], fraction * total)


def test_same_seed_same_split_other_seed_other_split():
    labels, groups = _data()
    a, b = grouped_stratified_split(labels, groups, 1), grouped_stratified_split(labels, groups, 1)
    assert a == b
    assert grouped_stratified_split(labels, groups, 2).test != a.test


def test_singleton_groups_split_exactly():
    labels = [0] * 70 + [1] * 30
    split = grouped_stratified_split(labels, [str(i) for i in range(100)], seed=0)
    assert [len(split.train), len(split.val), len(split.test)] == [70, 10, 20]
    assert Counter(labels[i] for i in split.test) == {0: 14, 1: 6}


def test_bad_fractions_and_lengths():
    with pytest.raises(DataError, match="summing to 1"):
        grouped_stratified_split([0, 1], ["a", "b"], 0, (0.5, 0.5, 0.5))
    with pytest.raises(DataError, match="2 labels but 1 groups"):
        grouped_stratified_split([0, 1], ["a"], 0)


def test_check_split_names_the_leaking_group():
    groups = ["p1", "p1", "p2", "p3"]
    with pytest.raises(DataError, match=r"1 group\(s\).*p1 \(train/test\)"):
        check_split(Split((0, 2), (), (1, 3)), groups, 4)
    with pytest.raises(DataError, match="exactly once"):
        check_split(Split((0, 1), (2,), (2, 3)), groups, 4)
    assert groups_crossing(Split((0,), (1,), (2, 3)), groups) == {"p1": ("train", "val")}


def test_fold_split_takes_the_test_fold_and_splits_the_rest_by_group():
    folds = [1 + (i // 2) % 5 for i in range(100)]  # two images per patient, patients cycle through folds
    groups = [f"p{i // 2}" for i in range(100)]
    labels = [int(i % 6 < 2) for i in range(100)]
    split = fold_split(folds, 3, labels, groups, seed=0, val_fraction=0.125)
    assert split.test == tuple(i for i in range(100) if folds[i] == 3)
    assert len(split.test) == 20
    check_split(split, groups, 100)
    assert len(split.val) == 10  # 12.5 % of 80, in whole patients
    with pytest.raises(DataError, match="fold=6 is not one of"):
        fold_split(folds, 6, labels, groups, 0, 0.1)
