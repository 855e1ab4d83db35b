"""``robustbench-us data audit``: the report's numbers, its text, its JSON and its exit code."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from robustbench_us.cli import main
from robustbench_us.data.audit import audit_dataset, format_audit
from robustbench_us.protocols import Sample, Split


def _tree(root):
    rng = np.random.default_rng(0)
    f = np.fft.fftfreq(64)
    amplitude = 1 / np.maximum(np.hypot(f[:, None], f[None, :]), 1 / 64)
    for cls, n in (("benign", 4), ("malignant", 3)):
        (root / cls).mkdir(parents=True)
        for k in range(n):
            field = np.fft.ifft2(amplitude * np.exp(2j * np.pi * rng.random((64, 64)))).real
            img = ((field - field.min()) / np.ptp(field) * 255).astype(np.uint8)
            Image.fromarray(img).save(root / cls / f"{cls}{k}.png")
            mask = np.zeros((64, 64), np.uint8)
            mask[10:10 + 4 * (k + 1), 10:30] = 255
            Image.fromarray(mask).save(root / cls / f"{cls}{k}_mask.png")
    # The first benign scan filed again under malignant, re-exported smaller.
    Image.open(root / "benign" / "benign0.png").resize((60, 60)).save(root / "malignant" / "malignant9.png")
    Image.open(root / "benign" / "benign0_mask.png").resize((60, 60)).save(root / "malignant" / "malignant9_mask.png")
    return root


def test_cli_text_report(tmp_path, capsys):
    root = _tree(tmp_path / "data")
    assert main(["data", "audit", "folder", "--root", str(root), "--image-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "folder: 8 images (benign 4, malignant 4)" in out
    assert "masks      8 of 8 images have one (0 empty)" in out
    assert ("near-dups  pHash Hamming ≤ 10: 1 groups holding 2 images (largest 2); 1 across classes; "
            "0 split apart") in out
    assert "benign/benign0 [benign] = malignant/malignant9 [malignant]" in out
    assert "leaks      0 groups cross split parts (ok)" in out


def test_cli_json_report(tmp_path, capsys):
    root = _tree(tmp_path / "data")
    assert main(["data", "audit", "folder", "--root", str(root), "--image-size", "32", "--json",
                 "--fractions", "0.5", "0.25", "0.25"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 8 and report["counts"] == {"benign": 4, "malignant": 4}
    assert report["groups"] == {"count": 7, "multi_image": 1, "largest": 2}
    assert sum(report["split"]["parts"][p]["total"] for p in ("train", "val", "test")) == 8
    assert report["image_sizes"]["most_common"] == [[64, 64, 7], [60, 60, 1]]
    # Lesion boxes are 20 px wide and 4, 8, 12, 16 px tall on a 64 × 64 image (and one 60 × 60 copy).
    assert report["masks"]["lesion_fraction"]["min"] == round(80 / 4096, 4)
    assert report["near_duplicates"]["all_groups"] == [["benign/benign0", "malignant/malignant9"]]


def test_cli_missing_data_is_one_clean_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ROBUSTBENCH_US_DATA", raising=False)
    assert main(["data", "audit", "busi", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: busi: could not find Dataset_BUSI_with_GT/") and err.count("\n") == 1


class _LeakyDataset:
    """Four images of two patients, with a split that puts patient p1 in train and test."""

    classes = ("benign", "malignant")
    labels = [0, 0, 1, 1]
    groups = ["p1", "p1", "p2", "p3"]
    ids = ["a", "b", "c", "d"]

    def __len__(self):
        return 4

    def __getitem__(self, i):
        image = torch.full((3, 16, 16), 0.1 * (i + 1))
        image[:, : 4 * (i + 1)] = 1.0
        return Sample(image=image, label=self.labels[i], id=self.ids[i], group=self.groups[i], mask=None)

    def manifest_hash(self):
        return "x"

    def split(self, seed, fractions=(0.7, 0.1, 0.2)):
        return Split((0, 2), (3,), (1,))


def test_leaks_are_found_and_named():
    report = audit_dataset(_LeakyDataset(), name="leaky")
    assert report["leaks"] == 1 and report["leak_examples"] == [{"group": "p1", "parts": ["train", "test"]}]
    assert report["masks"]["with_mask"] == 0 and report["image_sizes"]["distinct"] == 1
    text = format_audit(report)
    assert "leaks      1 groups cross split parts (LEAK)" in text and "p1: train/test" in text
    assert "masks      none" in text
