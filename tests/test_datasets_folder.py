"""The folder dataset and the bad-input rules every file-based dataset shares (small files in tmp_path)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustbench_us.data.problems import DataWarning
from robustbench_us.errors import DataError
from robustbench_us.protocols import Dataset
from robustbench_us.splits import check_split
from robustbench_us_plugins.folder import make_folder


def _image(seed: int, size=(40, 30), mode="L") -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0]), dtype=np.uint8)
    img = Image.fromarray(arr)
    return img if mode == "L" else img.convert(mode)


def _mask(size=(40, 30), box=(5, 5, 15, 15), mode="L") -> Image.Image:
    arr = np.zeros((size[1], size[0]), np.uint8)
    x0, y0, x1, y1 = box
    arr[y0:y1, x0:x1] = 255
    img = Image.fromarray(arr)
    return img.convert(mode) if mode != "L" else img


def _tree(root, counts={"benign": 3, "malignant": 2}, masks=True, suffix=".png"):  # noqa: B006 - read only
    seed = 0
    for name, n in counts.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(n):
            seed += 1
            _image(seed).save(folder / f"{name} ({k}){suffix}")
            if masks:
                _mask().save(folder / f"{name} ({k})_mask.png")
    return root


def test_reads_a_class_tree_with_masks(tmp_path):
    root = _tree(tmp_path)
    d = make_folder(root=str(root), image_size=16)
    assert isinstance(d, Dataset)
    assert len(d) == 5 and d.labels == [0, 0, 0, 1, 1] and d.classes == ("benign", "malignant")
    s = d[3]
    assert s.id == "malignant/malignant (0)" and s.label == 1 and s.image.shape == (3, 16, 16)
    # The 10×10 box at x, y in [5, 15) of 40×30, nearest at 16×16: columns 2-5 (centres 6.25-13.75), rows 3-7.
    assert s.mask.dtype == torch.bool and int(s.mask.sum()) == 4 * 5
    assert s.meta["original_size"] == [40, 30] and s.meta["mask_files"] == 1
    check_split(d.split(0), d.groups, len(d))


def test_masks_are_merged_and_any_mode_works(tmp_path):
    root = _tree(tmp_path, {"benign": 1, "malignant": 1}, masks=False)
    folder = root / "benign"
    _mask(box=(0, 0, 20, 30), mode="1").save(folder / "benign (0)_mask.png")
    _mask(box=(20, 0, 40, 15), mode="RGBA").save(folder / "benign (0)_mask_1.png")
    _mask(mode="RGB").save(root / "malignant" / "malignant (0)_mask.png")
    _image(9, mode="RGB").save(root / "malignant" / "malignant (0).png")  # colour overlay
    d = make_folder(root=str(root), image_size=40)
    union = d[0].mask
    assert int(union[:, :20].sum()) == 40 * 20 and int(union[:, 20:].sum()) == 20 * 20  # resized 30 -> 40 rows
    assert d.modes == ["L", "RGB"]


def test_bmp_and_jpeg_and_custom_classes(tmp_path):
    for name, suffix in (("B", ".bmp"), ("M", ".jpg")):
        (tmp_path / name).mkdir()
        for k in range(2):
            _image(k + (10 if name == "M" else 0)).convert("RGB").save(tmp_path / name / f"img{k}{suffix}")
    d = make_folder(root=str(tmp_path), image_size=8, classes=["b", "m"])
    assert d.labels == [0, 0, 1, 1] and d[0].mask is None and not d.has_masks
    assert d.classes == ("b", "m")


def test_manifest_hash_tracks_bytes_names_and_labels(tmp_path):
    root = _tree(tmp_path)
    first = make_folder(root=str(root), image_size=8).manifest_hash()
    assert first == make_folder(root=str(root), image_size=16).manifest_hash()  # decode size is not data
    path = root / "benign" / "benign (0).png"
    _image(99).save(path)
    assert make_folder(root=str(root), image_size=8).manifest_hash() != first


def test_missing_root_and_missing_class_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        make_folder(root=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="give the dataset a root"):
        make_folder(root=None)
    _tree(tmp_path, {"benign": 2})
    with pytest.raises(DataError, match=r"class folder\(s\) malignant not found .* \(found: benign\)"):
        make_folder(root=str(tmp_path))


def test_empty_class_is_an_error(tmp_path):
    _tree(tmp_path, {"benign": 2})
    (tmp_path / "malignant").mkdir()
    (tmp_path / "malignant" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"malignant holds no images .*classes=\[\.\.\.\]"):
        make_folder(root=str(tmp_path))


def test_unexpected_label_folder_is_skipped_with_a_warning(tmp_path, reliability):
    _tree(tmp_path, {"benign": 2, "malignant": 2, "unsure": 3})
    with pytest.warns(DataWarning, match=r"not classes: unsure/ \(6 files\)"):
        d = make_folder(root=str(tmp_path), image_size=8)
    assert len(d) == 4
    reliability.row("Bad input", "a label folder with an unexpected name", "skipped with a warning naming it",
                    folders_skipped=1, images_kept=len(d))


def test_image_without_mask_is_skipped_and_counted(tmp_path, reliability):
    root = _tree(tmp_path)
    (root / "benign" / "benign (1)_mask.png").unlink()
    with pytest.warns(DataWarning, match=r"(?s)skipped 1 of 5 images .*\(1 without mask\).*benign/benign \(1\)\.png: "
                                         r"no mask file benign \(1\)_mask\*\.png"):
        d = make_folder(root=str(root), image_size=8)
    assert len(d) == 4 and [p.kind for p in d.problems] == ["without mask"]
    with pytest.raises(DataError, match=r"(?s)1 of 5 images .* cannot be used.*strict=False"):
        make_folder(root=str(root), image_size=8, strict=True)
    assert len(make_folder(root=str(root), image_size=8, masks=False)) == 5
    reliability.row("Bad input", "image without its mask", "skipped and counted with a warning (strict=True: an "
                    "error naming the fix)", images_skipped=1, images_kept=len(d))


def test_mask_size_mismatch_and_truncated_files(tmp_path, reliability):
    root = _tree(tmp_path, {"benign": 3, "malignant": 3})
    _mask(size=(20, 15), box=(1, 1, 5, 5)).save(root / "benign" / "benign (0)_mask.png")
    data = (root / "malignant" / "malignant (2).png").read_bytes()
    (root / "malignant" / "malignant (2).png").write_bytes(data[:100])
    (root / "malignant" / "malignant (1)_mask.png").write_bytes(b"")
    with pytest.warns(DataWarning) as record:
        d = make_folder(root=str(root), image_size=8)
    message = str(record[0].message)
    assert "skipped 3 of 6 images" in message
    assert "benign/benign (0)_mask.png: mask is 20×15 but its image benign (0).png is 40×30" in message
    assert "malignant/malignant (2).png: not a readable image, or truncated" in message
    assert "malignant/malignant (1)_mask.png: the file is empty" in message
    assert len(d) == 3 and sorted(p.kind for p in d.problems) == ["mask size mismatch", "unreadable",
                                                                   "unreadable mask"]
    reliability.row("Bad input", "truncated image, zero-byte mask, mask of another size (folder dataset)",
                    "each skipped with a warning naming the file and the problem; the rest load",
                    files_bad=3, images_kept=len(d))


def test_a_class_emptied_by_bad_files_is_an_error(tmp_path):
    root = _tree(tmp_path, {"benign": 2, "malignant": 1})
    (root / "malignant" / "malignant (0).png").write_bytes(b"garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(DataError, match="no usable images of class malignant"):
            make_folder(root=str(root), image_size=8)


def test_orphan_mask_is_reported(tmp_path):
    root = _tree(tmp_path)
    _mask().save(root / "benign" / "ghost_mask.png")
    with pytest.warns(DataWarning, match="ghost_mask.png looks like a mask"):
        d = make_folder(root=str(root), image_size=8)
    assert len(d) == 5


def test_near_duplicates_across_classes_share_a_group(tmp_path):
    root = _tree(tmp_path, {"benign": 3, "malignant": 3})
    # The same scan filed twice, once under each class (as in BUSI), re-exported at another size.
    _image(1).resize((44, 33)).save(root / "malignant" / "malignant (0).png")
    _mask(size=(44, 33)).save(root / "malignant" / "malignant (0)_mask.png")
    d = make_folder(root=str(root), image_size=32)
    near = d.near_duplicates()
    assert near.groups == ((0, 3),) and near.cross_class == (0,)
    assert d.groups[0] == d.groups[3] == "near-dup:benign/benign (0)"
    assert len(set(d.groups)) == 5
    for seed in range(5):
        check_split(d.split(seed), d.groups, len(d))
    assert make_folder(root=str(root), image_size=32, dedupe=False).groups[3] == "malignant/malignant (0)"
    # Hashes come from the files, not the decode size, so groups and splits do not depend on image_size.
    tiny = make_folder(root=str(root), image_size=8)
    assert tiny.groups == d.groups and tiny.split(3) == d.split(3)


def test_masks_in_a_subfolder_by_pattern(tmp_path):
    root = _tree(tmp_path, {"benign": 2, "malignant": 2}, masks=False)
    for cls in ("benign", "malignant"):
        (root / cls / "masks").mkdir()
        for k in range(2):
            _mask(box=(0, 0, 10 * (k + 1), 30)).save(root / cls / "masks" / f"{cls} ({k}).png")
    d = make_folder(root=str(root), image_size=40, mask_pattern="masks/{stem}.png")
    assert d.has_masks and [int(d[i].mask.sum()) for i in range(4)] == [400, 800, 400, 800]


def test_two_files_with_one_name_are_reported(tmp_path):
    root = _tree(tmp_path, masks=False)
    _image(50).convert("RGB").save(root / "benign" / "benign (0).jpg")
    with pytest.warns(DataWarning, match=r"benign/benign \(0\)\.png: benign \(0\)\.jpg has the same name"):
        d = make_folder(root=str(root), image_size=8)
    assert len(d) == 5 and len(set(d.ids)) == 5


def test_a_symlink_leading_out_of_the_root_is_skipped_with_a_warning(tmp_path, reliability):
    root = _tree(tmp_path / "data", masks=False)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    _image(50).save(outside / "secret.png")
    (root / "benign" / "leak.png").symlink_to(outside / "secret.png")
    # A link that stays inside the root is an ordinary file of the dataset.
    (root / ".store").mkdir()
    _image(60).save(root / ".store" / "kept.png")
    (root / "malignant" / "alias.png").symlink_to(Path("..") / ".store" / "kept.png")
    with pytest.warns(DataWarning) as caught:
        d = make_folder(root=str(root), image_size=8)
    message = str(caught[0].message)
    assert "skipped 1 of 7 images" in message and "(1 link outside root)" in message
    assert (f"benign/leak.png: a symlink to {(outside / 'secret.png').resolve()}, outside the dataset folder "
            f"{root.resolve()}; copy the file into the dataset folder, or remove the link") in message
    assert "benign/leak" not in d.ids and "malignant/alias" in d.ids and len(d) == 6
    with pytest.raises(DataError, match=r"(?s)1 of 7 images .* cannot be used.*benign/leak\.png: a symlink to"):
        make_folder(root=str(root), image_size=8, strict=True)
    reliability.row("Bad input", "a file symlink inside the dataset folder pointing outside it (folder dataset)",
                    "skipped with a warning naming it and its target (strict=True: an error); links that stay "
                    "inside keep working", images_skipped=1, images_kept=len(d))


def test_files_behind_a_folder_symlink_leading_out_of_the_root_are_not_read(tmp_path):
    root = _tree(tmp_path / "data", {"benign": 2}, masks=False)
    _tree(tmp_path / "elsewhere", {"malignant": 2}, masks=False)
    (root / "malignant").symlink_to(tmp_path / "elsewhere" / "malignant", target_is_directory=True)
    with pytest.warns(DataWarning, match=r"(?s)skipped 2 of 4 images .*\(2 link outside root\).*"
                                         r"malignant/malignant \(0\)\.png: a symlink to .*elsewhere"):
        with pytest.raises(DataError, match="no usable images of class malignant"):
            make_folder(root=str(root), image_size=8)
