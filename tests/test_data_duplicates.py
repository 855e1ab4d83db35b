"""Perceptual hashes, Hamming distances and union-find groups of near-duplicate images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from robustbench_us.data.duplicates import DEFAULT_THRESHOLD, UnionFind, find_near_duplicates, hamming_matrix, \
    perceptual_hash
from robustbench_us.errors import DataError


def _scan(seed: int, size: int = 128) -> np.ndarray:
    """A random image with a natural 1/f spectrum (a stand-in for a real scan)."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(size)
    amplitude = 1 / np.maximum(np.hypot(f[:, None], f[None, :]), 1 / size)
    field = np.fft.ifft2(amplitude * np.exp(2j * np.pi * rng.random((size, size)))).real
    return ((field - field.min()) / (field.max() - field.min()) * 255).astype(np.uint8)


def test_hamming_matrix_by_hand():
    d = hamming_matrix([0b0000, 0b0111, 0b1111, 2**64 - 1])
    assert d.tolist() == [[0, 3, 4, 64], [3, 0, 1, 61], [4, 1, 0, 60], [64, 61, 60, 0]]


def test_union_find_is_transitive_and_names_by_smallest():
    uf = UnionFind(6)
    uf.union(4, 2)
    uf.union(2, 5)
    uf.union(0, 1)
    assert uf.components() == [[0, 1], [2, 4, 5], [3]]


def test_resized_and_recropped_copies_hash_alike_and_other_scans_do_not():
    scan = _scan(0)
    resized = np.asarray(Image.fromarray(scan).resize((80, 70), Image.Resampling.LANCZOS))
    recropped = scan[2:-2, 2:-2]  # a re-export with a slightly different crop
    noisy = np.clip(scan.astype(int) + np.random.default_rng(1).integers(-6, 7, scan.shape), 0, 255).astype(np.uint8)
    h = [perceptual_hash(x) for x in (scan, resized, recropped, noisy, _scan(7), _scan(8))]
    d = hamming_matrix(h)
    assert max(d[0, 1], d[0, 2], d[0, 3]) <= DEFAULT_THRESHOLD
    assert min(d[0, 4], d[0, 5], d[4, 5]) > DEFAULT_THRESHOLD


def test_groups_and_cross_class_groups():
    hashes = [0b0, 0b1, 0b11 << 20, 2**64 - 1, (2**64 - 1) ^ 0b1, 0x00FF00FF00FF00FF]
    labels = [0, 0, 1, 0, 1, 1]
    near = find_near_duplicates(hashes, labels, threshold=2)
    # 0 ~ 1 (1 bit) and 0 ~ 2 (2 bits), so 1 and 2 (3 bits apart) join through 0; 3 ~ 4 (1 bit); 5 alone.
    assert near.groups == ((0, 1, 2), (3, 4))
    assert near.pairs == 3
    assert near.cross_class == (0, 1)
    assert near.n_images == 5
    report = near.to_dict(["a", "b", "c", "d", "e", "f"], labels, ["benign", "malignant"])
    assert report["groups"] == 2 and report["largest"] == 3 and report["threshold"] == 2
    assert report["cross_class_groups"][1] == [{"id": "d", "class": "benign"}, {"id": "e", "class": "malignant"}]


def test_threshold_is_checked():
    with pytest.raises(DataError, match="between 0 and 64"):
        find_near_duplicates([1, 2], [0, 1], threshold=65)


def test_importing_the_data_package_does_not_need_imagehash():
    import subprocess
    import sys

    code = ("import sys; sys.modules['imagehash'] = None\n"  # as if it were not installed
            "import robustbench_us.data, robustbench_us.data.duplicates as d\n"
            "import numpy as np\n"
            "try:\n    d.perceptual_hash(np.zeros((8, 8), np.uint8))\n"
            "except ImportError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install imagehash" in out.stdout


def test_a_missing_imagehash_says_how_to_install_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "imagehash", None)
    with pytest.raises(ImportError, match="pip install imagehash"):
        perceptual_hash(np.zeros((8, 8), np.uint8))
