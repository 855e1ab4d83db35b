"""BUSI: its download layout, merged masks, the binary and 3-class tasks, near-duplicate groups."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from robustbench_us.data.audit import audit_dataset
from robustbench_us.errors import DataError
from robustbench_us.protocols import Dataset
from robustbench_us.splits import check_split, grouped_stratified_split
from robustbench_us_plugins.busi import make_busi


# ------------------------------------------------------------ a tiny BUSI download in tmp_path
def _fake_busi(base, extra_mask=True):
    rng = np.random.default_rng(0)
    top = base / "Dataset_BUSI_with_GT"
    for cls, n in (("benign", 3), ("malignant", 2), ("normal", 2)):
        (top / cls).mkdir(parents=True)
        for k in range(1, n + 1):
            Image.fromarray(rng.integers(0, 256, (30, 40), dtype=np.uint8)).save(top / cls / f"{cls} ({k}).png")
            mask = np.zeros((30, 40), np.uint8)
            if cls != "normal":
                mask[5:15, 5:15] = 255
            Image.fromarray(mask).convert("1").save(top / cls / f"{cls} ({k})_mask.png")
    if extra_mask:  # BUSI's extra masks are sometimes RGBA
        extra = np.zeros((30, 40, 4), np.uint8)
        extra[20:25, 30:40] = 255
        Image.fromarray(extra, "RGBA").save(top / "benign" / "benign (2)_mask_1.png")
    return top


def test_layout_merge_and_tasks(tmp_path):
    _fake_busi(tmp_path)
    d = make_busi(root=str(tmp_path), image_size=40)
    assert isinstance(d, Dataset) and d.classes == ("benign", "malignant")
    assert len(d) == 5 and d.labels == [0, 0, 0, 1, 1]
    by_id = {d.ids[i]: i for i in range(len(d))}
    merged = d[by_id["benign/benign (2)"]]
    assert merged.meta["mask_files"] == 2
    # Both boxes, 10 columns each; nearest 30 -> 40 rows keeps rows 7-19 (of [5, 15)) and 27-32 (of [20, 25)).
    assert int(merged.mask.sum()) == 13 * 10 + 6 * 10
    three = make_busi(root=str(tmp_path), image_size=40, task="3class")
    assert three.classes == ("benign", "malignant", "normal") and Counter(three.labels) == {0: 3, 1: 2, 2: 2}
    assert not bool(three[len(three) - 1].mask.any())  # normal images have empty masks


@pytest.mark.parametrize("rel", [".", "Dataset_BUSI_with_GT", "busi-parent"])
def test_root_may_be_the_folder_or_its_parents(tmp_path, rel, monkeypatch):
    base = tmp_path / "busi" if rel == "busi-parent" else tmp_path
    _fake_busi(base, extra_mask=False)
    root = tmp_path if rel == "busi-parent" else (tmp_path / rel)
    assert len(make_busi(root=str(root), image_size=8)) == 5
    monkeypatch.setenv("ROBUSTBENCH_US_DATA", str(root))
    assert len(make_busi(image_size=8)) == 5


def test_missing_data_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("ROBUSTBENCH_US_DATA", raising=False)
    with pytest.raises(DataError, match="no data root. Set the environment variable ROBUSTBENCH_US_DATA"):
        make_busi()
    with pytest.raises(DataError, match=r"could not find Dataset_BUSI_with_GT/ .*Looked in: .*busi/Dataset_BUSI"):
        make_busi(root=str(tmp_path))
    with pytest.raises(DataError, match="task='4class' is not one of binary, 3class"):
        make_busi(root=str(tmp_path), task="4class")


# ------------------------------------------------------------ the real download ($ROBUSTBENCH_US_DATA)
@pytest.fixture(scope="module")
def busi(data_root):
    return make_busi(root=str(data_root), image_size=64)


@pytest.mark.realdata
def test_binary_task_counts_and_masks(busi):
    assert len(busi) == 647 and Counter(busi.labels) == {0: 437, 1: 210}
    assert not busi.problems
    _, masks = busi.arrays()
    assert masks is not None and masks.shape == (647, 64, 64)
    assert bool(masks.flatten(1).any(1).all())  # every image has a non-empty merged mask
    extra = Counter(len(f.masks) for f in busi.files)
    assert extra == {1: 630, 2: 16, 3: 1}  # 17 extra benign mask files (one image has two) + 1 malignant
    s = busi[0]
    assert s.image.shape == (3, 64, 64) and s.image.dtype == torch.float32 and s.mask.dtype == torch.bool
    assert Counter(busi.modes) == {"L": 632, "RGB": 15}  # colour overlays among the binary-task images


@pytest.mark.realdata
def test_near_duplicate_groups_and_split(busi):
    near = busi.near_duplicates()
    assert near.threshold == 10
    assert (len(near.groups), near.n_images, len(near.cross_class)) == (120, 264, 6)
    cross = {tuple(busi.ids[i] for i in near.groups[k]) for k in near.cross_class}
    assert ("benign/benign (433)", "malignant/malignant (145)") in cross
    for seed in (0, 1):
        split = busi.split(seed)
        check_split(split, busi.groups, len(busi))
        test = Counter(busi.labels[i] for i in split.test)
        assert abs(test[0] - 0.2 * 437) <= 3 and abs(test[1] - 0.2 * 210) <= 3
    # Splitting image by image (ignoring the groups) would put copies on both sides.
    naive = grouped_stratified_split(busi.labels, busi.ids, 0)
    part = {i: p for p in ("train", "val", "test") for i in naive.part(p)}
    assert sum(len({part[i] for i in g}) > 1 for g in near.groups) == 58


@pytest.mark.realdata
def test_audit_finds_no_leak(busi):
    report = audit_dataset(busi, seed=0)
    assert report["leaks"] == 0 and report["near_duplicates"]["groups_crossing_split"] == 0
    assert report["counts"] == {"benign": 437, "malignant": 210}
    assert report["masks"]["with_mask"] == 647 and report["masks"]["empty"] == 0
    assert report["image_sizes"]["width"]["max"] == 320  # the shared copy is downscaled to ≤ 320 px
    assert len(report["near_duplicates"]["cross_class_groups"]) == 6


@pytest.mark.realdata
def test_three_class_task(data_root):
    d = make_busi(root=str(data_root), image_size=32, task="3class", dedupe=False)
    assert len(d) == 780 and Counter(d.labels) == {0: 437, 1: 210, 2: 133}
    _, masks = d.arrays()
    normal = torch.tensor(d.labels) == 2
    assert not bool(masks[normal].any()) and bool(masks[~normal].flatten(1).any(1).all())
