"""The built-in phantom: contract, determinism, exact masks, BI-RADS-like classes, speed."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import torch

from robustbench_us.errors import DataError
from robustbench_us.protocols import Dataset
from robustbench_us_plugins.phantom import make_phantom, render_phantom, render_phantoms


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(image_size=64, count=120, seed=0)


def test_contract(phantom):
    assert isinstance(phantom, Dataset)
    s = phantom[7]
    assert s.image.shape == (3, 64, 64) and s.image.dtype == torch.float32
    assert 0.0 <= float(s.image.min()) and float(s.image.max()) <= 1.0
    assert torch.equal(s.image[0], s.image[2])
    assert s.mask.shape == (64, 64) and s.mask.dtype == torch.bool
    assert s.id == "phantom-00007" and s.group == s.id and s.label == phantom.labels[7]
    assert set(s.meta) >= {"shape", "margin", "orientation", "echo_pattern", "posterior"}
    assert len(phantom.groups) == len(phantom.labels) == 120 and phantom[-1].id == "phantom-00119"
    with pytest.raises(IndexError):
        phantom[120]


def test_labels_follow_malignant_fraction():
    d = make_phantom(image_size=16, count=50, malignant_fraction=0.3)
    assert sum(d.labels) == 15 and len(d) == 50
    assert max(len(run) for run in "".join(map(str, d.labels)).split("1")) <= 3  # spread out, not blocked


def test_deterministic_per_seed_and_index():
    a = render_phantoms([0, 5, 9], [0, 1, 1], 48, seed=3)
    b = render_phantoms([0, 5, 9], [0, 1, 1], 48, seed=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = render_phantoms([5], [1], 48, seed=4)
    assert not torch.equal(a[0][1], c[0][0])
    # An image depends on (seed, index), not on how many are rendered with it.
    alone = render_phantoms([9], [1], 48, seed=3)
    assert torch.equal(alone[0][0], a[0][2])
    image, mask = render_phantom(9, 1, 48, seed=3)
    assert torch.equal((image * 255).round().to(torch.uint8), a[0][2]) and torch.equal(mask, a[1][2])


def test_masks_are_exact_lesion_outlines(phantom):
    images, masks = phantom.arrays()
    assert bool(masks.flatten(1).any(1).all())  # every image has a lesion
    frac = masks.float().mean(dim=(1, 2))
    assert 0.005 < float(frac.min()) and float(frac.max()) < 0.25
    # The lesion is darker than the tissue right around it (a ring outside the mask).
    ring = torch.nn.functional.max_pool2d(masks[:, None].float(), 7, 1, 3)[:, 0].bool() & ~masks
    inside = (images.float() * masks).sum((1, 2)) / masks.sum((1, 2))
    around = (images.float() * ring).sum((1, 2)) / ring.sum((1, 2))
    assert float((inside < around).float().mean()) >= 0.95


def test_classes_follow_birads_descriptors():
    d = make_phantom(image_size=16, count=400, seed=1)
    metas = [lesion.to_dict() for lesion in d.lesions]  # descriptors only, nothing rendered
    by = {0: [m for m, y in zip(metas, d.labels) if y == 0], 1: [m for m, y in zip(metas, d.labels) if y == 1]}
    share = lambda label, key, value: sum(m[key] == value for m in by[label]) / len(by[label])  # noqa: E731
    assert share(0, "orientation", "parallel") > 0.85 and share(1, "orientation", "not parallel") > 0.6
    assert share(0, "margin", "circumscribed") > 0.7 and share(1, "margin", "circumscribed") < 0.1
    assert share(1, "posterior", "shadowing") > 0.6 and share(0, "posterior", "shadowing") < 0.1
    assert share(0, "echo_pattern", "anechoic") > 0.2 and share(1, "echo_pattern", "anechoic") == 0


def test_geometry_shows_in_masks():
    d = make_phantom(image_size=64, count=100, seed=2)
    _, masks = d.arrays()
    rows = masks.any(dim=2).sum(1).float()  # lesion height in pixels
    cols = masks.any(dim=1).sum(1).float()  # lesion width
    taller = Counter((int(y), bool(h > w)) for y, h, w in zip(d.labels, rows, cols))
    assert taller[(1, True)] > 2 * taller[(0, True)]  # taller-than-wide is a malignant sign


def test_shadowing_darkens_below_malignant_lesions():
    d = make_phantom(image_size=64, count=80, seed=0)
    images, masks = d.arrays()
    below = (torch.cumsum(masks.int(), dim=1) > 0) & ~masks & masks.any(dim=1, keepdim=True)
    side = ~masks.any(dim=1, keepdim=True).expand_as(masks) & (torch.cumsum(masks.any(2).int(), 1) > 0)[:, :, None]
    contrast = [(images[i][below[i]].float().mean() - images[i][side[i]].float().mean()).item() for i in range(80)]
    posterior = [lesion.posterior for lesion in d.lesions]
    shadow = [c for c, m in zip(contrast, posterior) if m == "shadowing"]
    enhance = [c for c, m in zip(contrast, posterior) if m == "enhancement"]
    assert sum(shadow) / len(shadow) < -15 and sum(enhance) / len(enhance) > 5  # grey levels


def test_split_is_stratified(phantom):
    split = phantom.split(0)
    assert [len(split.train), len(split.val), len(split.test)] == [84, 12, 24]
    assert sum(phantom.labels[i] for i in split.test) == 12


def test_manifest_changes_with_what_defines_the_data():
    base = make_phantom(image_size=32, count=20).manifest_hash()
    assert base == make_phantom(image_size=32, count=20).manifest_hash()
    assert base != make_phantom(image_size=32, count=20, seed=1).manifest_hash()
    assert base != make_phantom(image_size=64, count=20).manifest_hash()


def test_bad_options():
    with pytest.raises(DataError, match="count=5"):
        make_phantom(count=5)
    with pytest.raises(DataError, match="malignant_fraction"):
        make_phantom(malignant_fraction=1.0)


def test_default_suite_size_renders_fast():
    # The default suite renders 240 images at 128 px; keep it a small share of a run.
    labels = [i % 2 for i in range(240)]
    threads = torch.get_num_threads()
    render_phantoms([0, 1], [0, 1], 128, seed=0)  # warm-up
    start = time.process_time()
    render_phantoms(list(range(240)), labels, 128, seed=0)
    assert time.process_time() - start < 1.5  # about 0.35 s (rendering uses one core)
    assert torch.get_num_threads() == threads  # and gives the others back
