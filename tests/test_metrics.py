"""Metrics against hand-computed values, scipy and scikit-learn."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import rankdata, spearmanr
from sklearn.metrics import roc_auc_score

from robustbench_us import metrics
from robustbench_us.errors import ContractError


def _logits_for(pred: list[int], confidence: list[float] | None = None) -> torch.Tensor:
    """Logits [N, 2] whose argmax is ``pred``; ``confidence`` sets p(malignant) when given."""
    if confidence is None:
        confidence = [0.9 if p == 1 else 0.1 for p in pred]
    p = torch.tensor(confidence, dtype=torch.float64)
    return torch.stack([torch.zeros_like(p), torch.log(p / (1 - p))], dim=1).float()


# ------------------------------------------------------------- prediction
def test_prediction_point_estimates_by_hand():
    y = torch.tensor([1, 1, 1, 0, 0])
    clean = _logits_for([1, 1, 0, 0, 0])  # 2/3 malignant found, both benign right
    adv = _logits_for([0, 1, 0, 1, 1])  # 1/3 malignant found, no benign right
    m = metrics.prediction_metrics(y, clean, adv, seed=0, n_boot=200)
    assert m["clean_accuracy"] == pytest.approx(4 / 5)
    assert m["adv_accuracy"] == pytest.approx(1 / 5)
    assert m["clean_sensitivity"] == pytest.approx(2 / 3)
    assert m["adv_sensitivity"] == pytest.approx(1 / 3)
    assert m["clean_specificity"] == pytest.approx(1.0)
    assert m["adv_specificity"] == pytest.approx(0.0)
    assert m["flip_rate"] == pytest.approx(3 / 5)
    for key in metrics.PREDICTION_KEYS:
        assert isinstance(m[key], float)
        low, high = m[f"{key}_ci_low"], m[f"{key}_ci_high"]
        assert low <= m[key] + 1e-12 and m[key] <= high + 1e-12, key


def test_auc_matches_sklearn_with_ties():
    g = torch.Generator().manual_seed(3)
    y = torch.randint(0, 2, (200,), generator=g)
    # Round the scores so that many tie, the case Mann–Whitney must count as one half.
    p = torch.round(torch.rand(200, generator=g) * 10) / 10 * 0.98 + 0.01
    logits = torch.stack([torch.zeros(200, dtype=torch.float64), torch.log(p / (1 - p)).double()], 1)
    m = metrics.prediction_metrics(y, logits, logits, n_boot=0)
    expected = roc_auc_score(y.numpy(), torch.softmax(logits, 1)[:, 1].numpy())
    assert m["clean_auc"] == pytest.approx(expected, abs=1e-12)
    assert m["adv_auc"] == pytest.approx(expected, abs=1e-12)
    assert math.isnan(m["clean_auc_ci_low"])


def test_bootstrap_matches_a_resample_loop_and_is_seeded():
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 2, (40,), generator=g)
    clean = torch.randn(40, 2, generator=g)
    adv = clean + torch.randn(40, 2, generator=g)
    a = metrics.prediction_metrics(y, clean, adv, seed=7, n_boot=300)
    b = metrics.prediction_metrics(y, clean, adv, seed=7, n_boot=300)
    c = metrics.prediction_metrics(y, clean, adv, seed=8, n_boot=300)
    assert a == b
    assert a != c
    # The same resamples, computed the slow way with scikit-learn.
    draws = torch.randint(40, (300, 40), generator=torch.Generator().manual_seed(7)).numpy()
    yn, score = y.numpy(), torch.softmax(adv, 1)[:, 1].numpy()
    aucs = [roc_auc_score(yn[d], score[d]) for d in draws if len(set(yn[d])) == 2]
    acc = [(adv.argmax(1).numpy()[d] == yn[d]).mean() for d in draws]
    assert a["adv_auc_ci_low"] == pytest.approx(np.percentile(aucs, 2.5), abs=1e-9)
    assert a["adv_auc_ci_high"] == pytest.approx(np.percentile(aucs, 97.5), abs=1e-9)
    assert a["adv_accuracy_ci_low"] == pytest.approx(np.percentile(acc, 2.5), abs=1e-9)
    assert a["adv_accuracy_ci_high"] == pytest.approx(np.percentile(acc, 97.5), abs=1e-9)


def test_one_class_only_gives_nan_not_an_error():
    y = torch.zeros(6, dtype=torch.long)
    logits = _logits_for([0, 0, 1, 0, 0, 0])
    m = metrics.prediction_metrics(y, logits, logits, n_boot=50)
    assert math.isnan(m["clean_sensitivity"]) and math.isnan(m["clean_auc"])
    assert math.isnan(m["clean_auc_ci_low"]) and math.isnan(m["clean_sensitivity_ci_high"])
    assert m["clean_specificity"] == pytest.approx(5 / 6)
    assert m["flip_rate"] == 0.0


def test_prediction_metrics_refuse_bad_shapes():
    with pytest.raises(ContractError, match=r"logits \[N, 2\]"):
        metrics.prediction_metrics(torch.tensor([0, 1]), torch.zeros(2, 3), torch.zeros(2, 3))


# ------------------------------------------------------------ explanation
def test_centroid_of_a_hand_computed_4x4_map():
    m = torch.zeros(1, 4, 4)
    m[0, 0, 0] = 1.0
    m[0, 3, 1] = 3.0  # mass 4: row (0·1 + 3·3)/4 = 2.25, col (0·1 + 1·3)/4 = 0.75
    assert metrics.centroids(m).tolist() == [[2.25, 0.75]]
    moved = torch.zeros(1, 4, 4)
    moved[0, 2, 3] = 5.0
    shift = metrics.centroid_shift_per_image(m, moved)
    assert shift.item() == pytest.approx(math.hypot(2.25 - 2, 0.75 - 3))
    out = metrics.explanation_metrics(m, moved, torch.tensor([False]))
    assert out["centroid_px"] == pytest.approx(math.hypot(0.25, 2.25))
    assert out["centroid_frac"] == pytest.approx(math.hypot(0.25, 2.25) / math.hypot(4, 4))


def test_empty_map_has_no_centroid():
    assert torch.isnan(metrics.centroids(torch.zeros(1, 4, 4))).all()


def test_average_ranks_match_scipy():
    g = torch.Generator().manual_seed(0)
    values = torch.randint(0, 5, (3, 50), generator=g).float()
    expected = np.stack([rankdata(row) for row in values.numpy()])
    np.testing.assert_array_equal(metrics.average_ranks(values).numpy(), expected)


def test_spearman_matches_scipy_with_ties():
    g = torch.Generator().manual_seed(0)
    clean = torch.relu(torch.randn(5, 16, 16, generator=g))  # about half the pixels tie at zero
    adv = torch.relu(clean + 0.5 * torch.randn(5, 16, 16, generator=g))
    ours = metrics.spearman_per_image(clean, adv)
    for i in range(5):
        expected = spearmanr(clean[i].flatten().numpy(), adv[i].flatten().numpy()).statistic
        assert ours[i].item() == pytest.approx(expected, abs=1e-10)
    assert torch.isnan(metrics.spearman_per_image(torch.ones(1, 4, 4), clean[:1, :4, :4])).all()


def test_topk_intersection_by_hand():
    clean = torch.arange(16.0).reshape(1, 4, 4)  # top 4 (25 %): pixels 12..15
    adv = clean.clone()
    adv[0, 3, 3] = -1.0  # pixel 15 drops out, pixel 11 comes in: 3 of 4 remain
    assert metrics.topk_intersection_per_image(clean, adv, topk=0.25).item() == pytest.approx(0.75)
    assert metrics.topk_intersection_per_image(clean, clean, topk=0.25).item() == 1.0


def test_kept_means_only_unflipped_images():
    clean = torch.zeros(2, 4, 4)
    clean[:, 0, 0] = 1
    adv = torch.zeros(2, 4, 4)
    adv[0, 0, 0] = 1  # unchanged
    adv[1, 3, 3] = 1  # moved by 3√2
    out = metrics.explanation_metrics(clean, adv, torch.tensor([False, True]))
    assert out["centroid_px"] == pytest.approx(1.5 * math.sqrt(2))
    assert out["centroid_px_kept"] == 0.0
    assert out["n_kept"] == 1.0
    none_kept = metrics.explanation_metrics(clean, adv, torch.tensor([True, True]))
    assert math.isnan(none_kept["spearman_kept"]) and math.isnan(none_kept["centroid_px_kept"])


def test_mass_in_lesion_by_hand():
    maps = torch.zeros(2, 4, 4)
    maps[:, 0, 0] = 1.0
    maps[:, 3, 3] = 3.0
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[:, 2:, 2:] = True
    masks[1] = False  # no lesion drawn: left out of the mean
    adv = maps.flip(-1).flip(-2)  # mass swaps corners: 1/4 inside
    out = metrics.explanation_metrics(maps, adv, torch.tensor([False, False]), masks=masks)
    assert out["mass_in_lesion_clean"] == pytest.approx(0.75)
    assert out["mass_in_lesion_adv"] == pytest.approx(0.25)


def test_explanation_metrics_are_plain_floats_and_fast_enough():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(64, 224, 224, generator=g)
    adv = clean + 0.1 * torch.rand(64, 224, 224, generator=g)
    out = metrics.explanation_metrics(clean, adv, torch.zeros(64, dtype=torch.bool),
                                      masks=clean > 0.5)
    assert all(type(v) is float for v in out.values())
    assert 0.9 < out["spearman"] <= 1.0


# ----------------------------------------------------------- segmentation
def test_dice_by_hand():
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, :2, :2] = True  # 4 pixels
    logits = torch.full((2, 1, 4, 4), -1.0)
    logits[0, 0, :2, :1] = 1.0  # 2 predicted, both inside: 2·2 / (2 + 4)
    out = metrics.segmentation_metrics(logits, torch.full_like(logits, -1.0), masks)
    assert out["dice_clean"] == pytest.approx((4 / 6 + 1.0) / 2)  # image 2: both empty → 1
    assert out["dice_adv"] == pytest.approx((0.0 + 1.0) / 2)


# ----------------------------------------------------------- perturbation
def test_perturbation_sizes_by_hand():
    x = torch.zeros(2, 3, 2, 2)
    x_adv = x.clone()
    x_adv[0, 0, 0, 0] = 1 / 255
    x_adv[1] = 2 / 255
    out = metrics.perturbation_metrics(x, x_adv)
    assert out["linf_max_grey"] == pytest.approx(2.0, rel=1e-6)
    assert out["linf_grey"] == pytest.approx(1.5, rel=1e-6)
    assert out["l2_max"] == pytest.approx(2 / 255 * math.sqrt(12), rel=1e-6)
    assert out["l2"] == pytest.approx((1 / 255 + 2 / 255 * math.sqrt(12)) / 2, rel=1e-6)
    assert out["l2_grey"] == pytest.approx(out["l2"] * 255)


def test_topk_ties_go_to_the_lowest_pixel_index():
    clean = torch.zeros(1, 4, 4)
    clean[0, 3, 3] = 1.0  # top 4: pixel 15, then the three lowest-indexed zeros 0, 1, 2
    adv = torch.zeros(1, 4, 4)
    adv[0, 0, 0] = 1.0  # top 4: pixel 0, then zeros 1, 2, 3
    assert metrics.topk_intersection_per_image(clean, adv, topk=0.25).item() == pytest.approx(0.75)  # {0, 1, 2}


def test_topk_matches_a_sort_based_reference():
    g = torch.Generator().manual_seed(5)
    clean = torch.relu(torch.randn(7, 12, 12, generator=g)).round(decimals=1)
    adv = torch.relu(clean + torch.randn(7, 12, 12, generator=g)).round(decimals=1)
    k = metrics.topk_count((12, 12), 0.2)
    ref = []
    for a, b in zip(clean.flatten(1).tolist(), adv.flatten(1).tolist()):
        top_a = set(sorted(range(144), key=lambda i: (-a[i], i))[:k])
        top_b = set(sorted(range(144), key=lambda i: (-b[i], i))[:k])
        ref.append(len(top_a & top_b) / k)
    assert metrics.topk_intersection_per_image(clean, adv, topk=0.2).tolist() == pytest.approx(ref)


def test_every_metric_is_described_and_documented():
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 8, 8, generator=g)
    keys = set(metrics.prediction_metrics(torch.tensor([0, 1, 1]), torch.randn(3, 2, generator=g),
                                          torch.randn(3, 2, generator=g), n_boot=5))
    keys |= set(metrics.explanation_metrics(maps, maps.flip(-1), torch.tensor([False, True, False]),
                                            masks=maps > 0.5, correct=torch.tensor([True, True, False])))
    keys |= set(metrics.confidence_metrics(torch.randn(3, 2, generator=g), torch.randn(3, 2, generator=g)))
    keys |= set(metrics.rounding_metrics(torch.tensor([0, 1, 1]), torch.tensor([1, 1, 0]), torch.tensor([1, 1, 1])))
    keys |= set(metrics.segmentation_metrics(torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8), maps > 0.5))
    keys |= set(metrics.perturbation_metrics(torch.zeros(3, 3, 8, 8), torch.ones(3, 3, 8, 8) / 255))
    base = {k.removesuffix("_ci_low").removesuffix("_ci_high") for k in keys}
    assert base == set(metrics.METRIC_DESCRIPTIONS)
    doc = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text(encoding="utf-8")
    missing = [k for k in sorted(base) if f"`{k}`" not in doc]
    assert not missing, f"docs/metrics.md does not document {missing}"


_small_values = st.lists(st.integers(0, 4), min_size=4, max_size=40)


@settings(max_examples=60, deadline=None)
@given(_small_values, st.data())
def test_spearman_and_ranks_match_scipy_on_any_ties(a, data):
    b = data.draw(st.lists(st.integers(0, 4), min_size=len(a), max_size=len(a)))
    ta = torch.tensor(a, dtype=torch.float32).reshape(1, 1, -1)
    tb = torch.tensor(b, dtype=torch.float32).reshape(1, 1, -1)
    np.testing.assert_array_equal(metrics.average_ranks(ta.flatten(1)).numpy()[0], rankdata(a))
    expected = spearmanr(a, b).statistic if len(set(a)) > 1 and len(set(b)) > 1 else math.nan
    ours = metrics.spearman_per_image(ta, tb).item()
    assert (math.isnan(ours) and math.isnan(expected)) or ours == pytest.approx(expected, abs=1e-10)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(-3, 3)), min_size=2, max_size=30))
def test_auc_matches_sklearn_on_any_ties(pairs):
    y = torch.tensor([p[0] for p in pairs])
    logits = torch.stack([torch.zeros(len(pairs)), torch.tensor([float(p[1]) for p in pairs])], 1)
    ours = metrics.prediction_metrics(y, logits, logits, n_boot=0)["clean_auc"]
    if len(set(y.tolist())) < 2:
        assert math.isnan(ours)
    else:
        expected = roc_auc_score(y.numpy(), torch.softmax(logits.double(), 1)[:, 1].numpy())
        assert ours == pytest.approx(expected, abs=1e-12)


def test_fig2_subset_is_the_correctly_classified_images_whose_label_held():
    """The study's Fig. 2: right diagnosis, still right, heatmap moved; misclassified images are never that subset."""
    clean = torch.zeros(4, 4, 4)
    clean[:, 0, 0] = 1.0  # every clean map peaks in the top-left corner
    adv = clean.clone()
    adv[1] = 0.0
    adv[1, 3, 3] = 1.0  # image 1's map moved to the opposite corner: 3·√2 pixels
    flipped = torch.tensor([False, False, True, False])
    correct = torch.tensor([True, True, True, False])  # image 3 was misclassified from the start
    out = metrics.explanation_metrics(clean, adv, flipped, correct=correct)
    assert out["n_kept"] == 3.0 and out["n_kept_correct"] == 2.0  # images 0, 1 (3 is wrong, 2 flipped)
    assert out["centroid_px_kept_correct"] == pytest.approx(3 * math.sqrt(2) / 2, rel=1e-6)
    assert out["centroid_px_kept"] == pytest.approx(3 * math.sqrt(2) / 3, rel=1e-6)


def test_confidence_change_is_over_the_images_whose_label_held():
    logits_clean = torch.log(torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype=torch.float64))
    logits_adv = torch.log(torch.tensor([[0.7, 0.3], [0.6, 0.4], [0.55, 0.45]], dtype=torch.float64))
    # image 1 flipped (0.8 malignant → 0.4); images 0 and 2 lost 0.2 and 0.05 of their benign probability.
    out = metrics.confidence_metrics(logits_clean, logits_adv)
    assert out["confidence_change_kept"] == pytest.approx((-0.2 - 0.05) / 2, rel=1e-9)


def test_rounding_metrics_count_the_flips_that_survive_8_bit_rounding():
    pred = torch.tensor([0, 0, 1, 1, 0])
    unrounded = torch.tensor([1, 1, 0, 1, 0])  # three flips before rounding
    rounded = torch.tensor([1, 0, 0, 1, 1])  # two of them survive; image 4 flips only after rounding
    out = metrics.rounding_metrics(pred, unrounded, rounded)
    assert tuple(out) == metrics.ROUNDING_KEYS
    assert out["flip_rate_unrounded"] == pytest.approx(3 / 5)
    assert out["flips_surviving_rounding"] == pytest.approx(2 / 3)
    assert math.isnan(metrics.rounding_metrics(pred, pred, rounded)["flips_surviving_rounding"])
