"""Figures: the stated case rules pick the right images, and real PNGs are written."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from robustbench_us import figures
from robustbench_us.records import Record, Status


def _scene(n: int = 4, size: int = 16):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, size, size, generator=g)
    x_adv = (x + (torch.rand(x.shape, generator=g) - 0.5) * 2 / 255).clamp(0, 1)
    maps = torch.zeros(n, size, size)
    maps[:, 2, 2] = 1.0
    maps_adv = maps.clone()
    # Image 1 moves its map by 10 px, image 2 by 5 px; image 3 flips and moves by 12 px.
    for i, (r, c) in {1: (12, 2), 2: (7, 2), 3: (14, 2)}.items():
        maps_adv[i] = 0
        maps_adv[i, r, c] = 1.0
    clean = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 3.0]])
    adv = torch.tensor([[0.0, 1.0], [2.0, 0.0], [0.0, 2.0], [0.0, 3.0]])  # image 0 flips (large change)
    adv[3] = torch.tensor([0.2, 0.0])  # image 3 flips too, by a smaller confidence change
    return x, x_adv, maps, maps_adv, clean, adv, ["a", "b", "c", "d"]


def test_case_rules():
    x, x_adv, maps, maps_adv, clean, adv, ids = _scene()
    cases = figures.choose_cases(maps, maps_adv, clean, adv, ids)
    assert cases["kept"].image_id == "b" and cases["kept"].centroid_shift_px == pytest.approx(10.0)
    p0 = torch.softmax(clean[0], 0)[0] - torch.softmax(adv[0], 0)[0]
    assert cases["flipped"].image_id == "a" and cases["flipped"].confidence_change == pytest.approx(float(p0))
    # Labels only: the flip rule falls back to the centroid shift, which prefers image 3.
    by_label = figures.choose_cases(maps, maps_adv, clean.argmax(1), adv.argmax(1), ids)
    assert by_label["flipped"].image_id == "d" and by_label["flipped"].confidence_change is None


def test_write_cell_figures_writes_pngs(tmp_path):
    x, x_adv, maps, maps_adv, clean, adv, ids = _scene()
    paths = figures.write_cell_figures(tmp_path / "cell", x, x_adv, maps, maps_adv, clean, adv, ids)
    assert [p.name for p in paths] == [figures.KEPT_FIGURE, figures.FLIPPED_FIGURE]
    for p in paths:
        with Image.open(p) as im:
            # 10.5 × 3.9 in at 80 dpi: three 224-px panels shown at about their native resolution.
            assert im.format == "PNG" and im.size == (840, 312)
    again = figures.write_cell_figures(tmp_path / "again", x, x_adv, maps, maps_adv, clean, adv, ids)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]


def test_no_flip_means_no_flip_figure(tmp_path):
    x, x_adv, maps, maps_adv, clean, _, ids = _scene()
    paths = figures.write_cell_figures(tmp_path, x, x_adv, maps, maps_adv, clean, clean, ids)
    assert [p.name for p in paths] == [figures.KEPT_FIGURE]


def _record(model: str, attack: str, eps_grey: float, acc: float, shift: float | None) -> dict:
    return Record(suite="s", cell_id=f"{model}-{attack}-{eps_grey:g}", status=Status.OK,
                  config={"dataset": "busi", "model": model, "explainer": "gradcam", "attack": attack,
                          "eps": eps_grey / 255, "eps_grey": eps_grey, "region": "all"},
                  metrics={"clean_accuracy": 0.9, "adv_accuracy": acc, "adv_accuracy_ci_low": acc - 0.05,
                           "adv_accuracy_ci_high": acc + 0.05, "centroid_frac": shift,
                           "centroid_frac_kept": math.nan},
                  timing={}, provenance={}).to_dict()


def test_sweep_figures_one_per_model_and_explainer(tmp_path):
    records = [_record(m, a, e, 0.9 - e / 10, e / 100) for m in ("resnet50", "$x$ net")
               for a in ("fgsm", "ifgsm") for e in (1.0, 2.0, 4.0)]
    records.append(_record("resnet50", "fgsm", 8.0, 0.1, None))
    failed = dict(records[0], status="failed")
    paths = figures.write_sweep_figures(records + [failed], tmp_path)
    assert sorted(p.name for p in paths) == ["sweep__busi__resnet50__gradcam.png", "sweep__busi__x_net__gradcam.png"]
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG"
