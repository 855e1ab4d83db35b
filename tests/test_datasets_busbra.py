"""BUS-BRA: patients as groups, metadata, the official patient-wise folds, bad CSVs."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict

import numpy as np
import pytest
from PIL import Image

from robustbench_us.data.problems import DataWarning
from robustbench_us.errors import DataError
from robustbench_us.splits import check_split, groups_crossing
from robustbench_us_plugins.busbra import make_busbra


# ------------------------------------------------------------ a tiny BUS-BRA in tmp_path
def _fake_busbra(base, n_cases=6):
    top = base / "BUSBRA"
    (top / "Images").mkdir(parents=True)
    (top / "Masks").mkdir()
    rng = np.random.default_rng(0)
    rows, folds = [], []
    for case in range(1, n_cases + 1):
        for side in ("l", "r"):
            image_id = f"bus_{case:04d}-{side}"
            Image.fromarray(rng.integers(0, 256, (24, 20), dtype=np.uint8)).save(top / "Images" / f"{image_id}.png")
            mask = np.zeros((24, 20), np.uint8)
            mask[4:10, 4:10] = 255
            Image.fromarray(mask).convert("1").save(top / "Masks" / f"mask_{case:04d}-{side}.png")
            pathology = "malignant" if case % 3 == 0 else "benign"
            rows.append([image_id, case, "fibroadenoma", pathology, 3, "GE Logiq 5 @10-12MHz", 200, 240, side,
                         "[1,2,3,4]"])
            folds.append([image_id, pathology, 1 + (case - 1) % 5])
    with (top / "bus_data.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ID", "Case", "Histology", "Pathology", "BIRADS", "Device", "Width", "Height", "Side", "BBOX"])
        w.writerows(rows)
    with (top / "5-fold-cv.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ID", "Pathology", "kFold"])
        w.writerows(folds)
    return top


def test_fake_layout_groups_and_metadata(tmp_path):
    _fake_busbra(tmp_path)
    d = make_busbra(root=str(tmp_path), image_size=16)
    assert len(d) == 12 and Counter(d.labels) == {0: 8, 1: 4}
    assert d.groups[:4] == ["case-1", "case-1", "case-2", "case-2"]
    meta = d[0].meta
    assert meta["case"] == 1 and meta["device"] == "GE Logiq 5 @10-12MHz" and meta["birads"] == 3
    assert meta["histology"] == "fibroadenoma" and meta["bbox"] == [1, 2, 3, 4] and meta["fold_5"] == 1
    assert meta["fold_10"] is None  # no 10-fold file in this copy
    split = make_busbra(root=str(tmp_path), image_size=16, split="official-5fold", fold=2).split(0)
    assert [d.ids[i] for i in split.test] == ["bus_0002-l", "bus_0002-r"]
    with pytest.raises(DataError, match="needs .*10-fold-cv.csv, which is missing"):
        make_busbra(root=str(tmp_path), split="official-10fold")


def test_bad_options_and_files(tmp_path):
    top = _fake_busbra(tmp_path)
    with pytest.raises(DataError, match="fold=6 is outside 1..5"):
        make_busbra(root=str(tmp_path), split="official-5fold", fold=6)
    with pytest.raises(DataError, match="fold=2 applies only"):
        make_busbra(root=str(tmp_path), fold=2)
    with pytest.raises(DataError, match="split='kfold' is not one of random, official-5fold, official-10fold"):
        make_busbra(root=str(tmp_path), split="kfold")
    (top / "Masks" / "mask_0003-l.png").unlink()
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(top / "Images" / "bus_9999-l.png")
    with pytest.warns(DataWarning) as record:
        d = make_busbra(root=str(tmp_path), image_size=8)
    messages = [str(r.message) for r in record]
    assert any("skipped 1 of 12 images" in m and "Images/bus_0003-l.png: no mask Masks/mask_0003-l.png" in m
               for m in messages)
    assert any("1 image(s) in" in m and "bus_9999-l.png" in m and "not in bus_data.csv" in m for m in messages)
    assert len(d) == 11
    text = (top / "bus_data.csv").read_text().replace("Pathology", "Diagnosis", 1)
    (top / "bus_data.csv").write_text(text)
    with pytest.raises(DataError, match="bus_data.csv lacks column\\(s\\) Pathology"):
        make_busbra(root=str(tmp_path))


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="could not find BUSBRA/ with Images/ and bus_data.csv"):
        make_busbra(root=str(tmp_path))


# ------------------------------------------------------------ the real download ($ROBUSTBENCH_US_DATA)
@pytest.fixture(scope="module")
def busbra(data_root):
    return make_busbra(root=str(data_root), image_size=32)


@pytest.mark.realdata
def test_counts_patients_and_metadata(busbra):
    assert len(busbra) == 1875 and Counter(busbra.labels) == {0: 1268, 1: 607}
    assert len(set(busbra.groups)) == 1064 and not busbra.problems
    devices = Counter(f.meta["device"] for f in busbra.files)
    assert devices == {"GE Logiq 7 @10-14MHz": 902, "GE Logiq 5 @10-12MHz": 809,
                       "Toshiba Aplio 300 @12-14 MHz": 139, "U-Systems @10-14MHz": 25}
    assert Counter(f.meta["birads"] for f in busbra.files) == {4: 693, 2: 562, 3: 463, 5: 157}
    s = busbra[0]
    assert s.id == "bus_0001-l" and s.group == "case-1" and s.meta["histology"] == "invasive ductal carcinoma"
    assert s.mask is not None and bool(s.mask.any())


@pytest.mark.realdata
@pytest.mark.parametrize("k", [5, 10])
def test_official_folds_keep_every_patient_in_one_fold(busbra, k):
    folds_of = defaultdict(set)
    for f in busbra.files:
        folds_of[f.group].add(f.meta[f"fold_{k}"])
    assert len(folds_of) == 1064 and all(len(v) == 1 for v in folds_of.values())
    sizes = Counter(f.meta[f"fold_{k}"] for f in busbra.files)
    assert sorted(sizes) == list(range(1, k + 1))
    expected = [376, 385, 366, 365, 383] if k == 5 else [193, 193, 186, 183, 184, 185, 189, 193, 188, 181]
    assert [sizes[f] for f in range(1, k + 1)] == expected


@pytest.mark.realdata
def test_official_split_uses_the_fold_and_splits_the_rest_by_patient(busbra):
    split = busbra.official_split(5, 2, seed=0)
    assert len(split.test) == 385 and all(busbra.files[i].meta["fold_5"] == 2 for i in split.test)
    check_split(split, busbra.groups, len(busbra))
    assert len(split.val) == pytest.approx(0.125 * (1875 - 385), abs=8)  # 10 / (70 + 10) of the rest


@pytest.mark.realdata
def test_random_split_is_patient_wise(busbra):
    split = busbra.split(0)
    assert groups_crossing(split, busbra.groups) == {}
    assert [len(split.train), len(split.val), len(split.test)] == pytest.approx([1312, 188, 375], abs=6)
