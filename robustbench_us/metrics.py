"""Per-cell metrics: prediction, explanation, localisation and perturbation size.

Tensors in, plain Python floats out (``nan`` where a metric is undefined, e.g.
sensitivity when no malignant image is present). Everything is vectorised
torch and works on the input's device; the bootstrap draws its resamples from a
seeded CPU generator so the same seed gives the same intervals on CPU and CUDA.

Conventions (see docs/metrics.md):

- malignant (label 1) is the positive class: sensitivity = malignant recall,
  specificity = benign recall; ROC AUC scores ``softmax(logits)[:, 1]``;
- a map's centroid is its centre of mass in pixel coordinates (row, col), pixel
  ``(i, j)`` sitting at ``(i, j)``; a map that is zero everywhere has no centroid (nan);
- Spearman uses average ranks for ties, exactly as ``scipy.stats.spearmanr``;
- top-k intersection is the share of the clean map's top ``k = round(topk · H · W)``
  pixels that are also among the attacked map's top k (ties broken by pixel index);
- per-image values are averaged ignoring nan; a mean over no images is nan.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from robustbench_us.errors import ContractError

#: Prediction metrics that get a bootstrap interval (all of :func:`prediction_metrics`'s point estimates).
PREDICTION_KEYS = ("clean_accuracy", "adv_accuracy", "clean_sensitivity", "adv_sensitivity",
                   "clean_specificity", "adv_specificity", "clean_auc", "adv_auc", "flip_rate")
#: Metrics only a suite with ``quantize = "uint8"`` records (:func:`rounding_metrics`).
ROUNDING_KEYS = ("flip_rate_unrounded", "flips_surviving_rounding")
#: Explanation metrics reported over all images and, with suffix ``_kept``, over label-kept images.
EXPLANATION_KEYS = ("centroid_px", "centroid_frac", "spearman", "topk_intersection")

# Images per chunk when ranking whole maps: bounds memory at ~chunk·H·W·8 bytes per buffer.
_RANK_CHUNK = 64


# ---------------------------------------------------------------- helpers
def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ContractError(message)


def _nanmean(values: Tensor) -> float:
    """Mean over the finite entries; nan when there are none."""
    values = values.double().flatten()
    finite = torch.isfinite(values)
    if not bool(finite.any()):
        return math.nan
    return float(values[finite].mean())


def _check_maps(maps_clean: Tensor, maps_adv: Tensor) -> None:
    _check(maps_clean.dim() == 3 and maps_clean.shape == maps_adv.shape,
           f"explanation metrics need clean and attacked heatmaps of the same shape [N, H, W]; got "
           f"{tuple(maps_clean.shape)} and {tuple(maps_adv.shape)}. Check the explainer's explain() output.")


# ------------------------------------------------------------- prediction
def _resample_counts(n: int, n_boot: int, seed: int) -> Tensor:
    """[n_boot, n] float64: how often each image appears in each bootstrap resample (row 0 … n_boot-1)."""
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(n, (n_boot, n), generator=generator)
    counts = torch.zeros(n_boot, n, dtype=torch.float64)
    return counts.scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))


def _weighted_rate(weights: Tensor, hit: Tensor, among: Tensor) -> Tensor:
    """Σ w·hit·among / Σ w·among per row of ``weights`` [B, N]; nan where no weight falls in ``among``."""
    among = among.double()
    den = weights @ among
    num = weights @ (hit.double() * among)
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.full_like(den, math.nan))


def _weighted_auc(weights: Tensor, scores: Tensor, y: Tensor) -> Tensor:
    """ROC AUC per row of ``weights`` [B, N] (a weighted Mann–Whitney U, ties count one half)."""
    uniq, inverse = torch.unique(scores, sorted=True, return_inverse=True)
    pos, neg = (y == 1).double(), (y == 0).double()
    w_pos = torch.zeros(weights.shape[0], len(uniq), dtype=torch.float64)
    w_neg = torch.zeros_like(w_pos)
    index = inverse.unsqueeze(0).expand_as(weights)
    w_pos.scatter_add_(1, index, weights * pos)
    w_neg.scatter_add_(1, index, weights * neg)
    # Negatives strictly below each score value, plus half of those tied with it.
    below = torch.cumsum(w_neg, dim=1) - w_neg
    num = (w_pos * (below + 0.5 * w_neg)).sum(1)
    den = w_pos.sum(1) * w_neg.sum(1)
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.full_like(den, math.nan))


def _prediction_table(weights: Tensor, y: Tensor, logits_clean: Tensor, logits_adv: Tensor) -> dict[str, Tensor]:
    pred_clean, pred_adv = logits_clean.argmax(1), logits_adv.argmax(1)
    everyone = torch.ones_like(y, dtype=torch.bool)
    out: dict[str, Tensor] = {}
    for tag, pred, logits in (("clean", pred_clean, logits_clean), ("adv", pred_adv, logits_adv)):
        correct = pred == y
        out[f"{tag}_accuracy"] = _weighted_rate(weights, correct, everyone)
        out[f"{tag}_sensitivity"] = _weighted_rate(weights, correct, y == 1)
        out[f"{tag}_specificity"] = _weighted_rate(weights, correct, y == 0)
        out[f"{tag}_auc"] = _weighted_auc(weights, torch.softmax(logits, dim=1)[:, 1], y)
    out["flip_rate"] = _weighted_rate(weights, pred_clean != pred_adv, everyone)
    return out


@torch.no_grad()
def prediction_metrics(y: Tensor, logits_clean: Tensor, logits_adv: Tensor, *, seed: int = 0,
                       n_boot: int = 1000) -> dict[str, float]:
    """Accuracy, sensitivity, specificity and ROC AUC clean and under attack, and the label-flip rate.

    Each comes with ``<key>_ci_low`` / ``<key>_ci_high``: a percentile bootstrap 95 %
    interval over ``n_boot`` resamples of the images drawn with ``seed``
    (resamples where a metric is undefined, e.g. no malignant image, are left out).
    """
    _check(y.dim() == 1 and logits_clean.shape == (len(y), 2) and logits_adv.shape == (len(y), 2),
           f"prediction metrics need labels [N] and logits [N, 2]; got {tuple(y.shape)}, "
           f"{tuple(logits_clean.shape)} and {tuple(logits_adv.shape)}.")
    _check(len(y) > 0, "prediction metrics need at least one image; the cell selected none.")
    # A few hundred numbers: move them once to the CPU so intervals do not depend on the device.
    y = y.detach().long().cpu()
    logits_clean = logits_clean.detach().double().cpu()
    logits_adv = logits_adv.detach().double().cpu()
    point = _prediction_table(torch.ones(1, len(y), dtype=torch.float64), y, logits_clean, logits_adv)
    result = {key: float(point[key][0]) for key in PREDICTION_KEYS}
    if n_boot > 0:
        boot = _prediction_table(_resample_counts(len(y), n_boot, seed), y, logits_clean, logits_adv)
        levels = torch.tensor([0.025, 0.975], dtype=torch.float64)
        for key in PREDICTION_KEYS:
            low, high = torch.nanquantile(boot[key], levels).tolist()
            result[f"{key}_ci_low"], result[f"{key}_ci_high"] = low, high
    else:
        for key in PREDICTION_KEYS:
            result[f"{key}_ci_low"] = result[f"{key}_ci_high"] = math.nan
    return result


# ------------------------------------------------------------ explanation
@torch.no_grad()
def centroids(maps: Tensor) -> Tensor:
    """[N, 2] centre of mass (row, col) of each map in pixels; nan for a map whose mass is zero."""
    _check(maps.dim() == 3, f"centroids need heatmaps [N, H, W]; got {tuple(maps.shape)}.")
    _, h, w = maps.shape
    # Sum in float64 without materialising a float64 copy of every map.
    row_mass = maps.sum(dim=2, dtype=torch.float64)
    col_mass = maps.sum(dim=1, dtype=torch.float64)
    mass = row_mass.sum(1)
    rows = torch.arange(h, dtype=torch.float64, device=maps.device)
    cols = torch.arange(w, dtype=torch.float64, device=maps.device)
    row = (row_mass * rows).sum(1) / mass
    col = (col_mass * cols).sum(1) / mass
    out = torch.stack([row, col], dim=1)
    return torch.where((mass > 0).unsqueeze(1), out, torch.full_like(out, math.nan))


@torch.no_grad()
def centroid_shift_per_image(maps_clean: Tensor, maps_adv: Tensor) -> Tensor:
    """[N] Euclidean distance in pixels between the clean and the attacked map's centroids."""
    _check_maps(maps_clean, maps_adv)
    return torch.linalg.vector_norm(centroids(maps_clean) - centroids(maps_adv), dim=1)


def _doubled_ranks(values: Tensor) -> Tensor:
    """Twice the average ranks (exact integers, int64) along the last dimension."""
    m = values.shape[-1]
    sorted_values, order = torch.sort(values, dim=-1)
    position = torch.arange(m, device=values.device).expand_as(sorted_values)
    starts_group = torch.ones_like(sorted_values, dtype=torch.bool)
    starts_group[..., 1:] = sorted_values[..., 1:] != sorted_values[..., :-1]
    del sorted_values
    ends_group = torch.ones_like(starts_group)
    ends_group[..., :-1] = starts_group[..., 1:]
    # The first and last sorted position of each run of equal values; their mean + 1 is the average rank.
    first = torch.cummax(torch.where(starts_group, position, 0), dim=-1).values
    last = torch.cummin(torch.where(ends_group, position, m).flip(-1), dim=-1).values.flip(-1)
    return torch.empty_like(first).scatter_(-1, order, first + last + 2)


@torch.no_grad()
def average_ranks(values: Tensor) -> Tensor:
    """Ranks 1…M along the last dimension, ties sharing their average rank (``scipy.stats.rankdata``)."""
    return _doubled_ranks(values).double() / 2


@torch.no_grad()
def spearman_per_image(maps_clean: Tensor, maps_adv: Tensor) -> Tensor:
    """[N] Spearman rank correlation between each clean and attacked map (nan if either is constant)."""
    _check_maps(maps_clean, maps_adv)
    n, h, w = maps_clean.shape
    centre = h * w + 1  # twice the mean rank
    out = torch.empty(n, dtype=torch.float64, device=maps_clean.device)
    for start in range(0, n, _RANK_CHUNK):
        chunk = slice(start, start + _RANK_CHUNK)
        a = (_doubled_ranks(maps_clean[chunk].flatten(1)) - centre).double()
        b = (_doubled_ranks(maps_adv[chunk].flatten(1)) - centre).double()
        den = torch.sqrt((a * a).sum(1) * (b * b).sum(1))
        out[chunk] = torch.where(den > 0, (a * b).sum(1) / den.clamp_min(1e-300), math.nan)
    return out


def topk_count(shape: tuple[int, int], topk: float) -> int:
    """How many pixels the top-k metric compares: ``round(topk · H · W)``, at least one."""
    _check(0 < topk <= 1, f"topk must be a share of the pixels in (0, 1]; got {topk}.")
    return max(1, round(topk * shape[0] * shape[1]))


def _top_members(maps: Tensor, k: int) -> Tensor:
    """[N, H·W] bool: each map's k largest pixels, ties at the threshold going to the lowest pixel index."""
    flat = maps.flatten(1)
    threshold = torch.topk(flat, k, dim=1).values[:, -1:]
    above = flat > threshold
    at = flat == threshold
    room = k - above.sum(1, keepdim=True)
    # Deterministic on every device, unlike topk's own choice among equal values, and no full sort.
    return above | (at & (torch.cumsum(at, dim=1) <= room))


@torch.no_grad()
def topk_intersection_per_image(maps_clean: Tensor, maps_adv: Tensor, topk: float = 0.1) -> Tensor:
    """[N] share of the clean map's top-k pixels that are also in the attacked map's top k."""
    _check_maps(maps_clean, maps_adv)
    n, h, w = maps_clean.shape
    k = topk_count((h, w), topk)
    out = torch.empty(n, dtype=torch.float64, device=maps_clean.device)
    for start in range(0, n, _RANK_CHUNK):
        chunk = slice(start, start + _RANK_CHUNK)
        both = _top_members(maps_clean[chunk], k) & _top_members(maps_adv[chunk], k)
        out[chunk] = both.sum(1).double() / k
    return out


@torch.no_grad()
def mass_in_region_per_image(maps: Tensor, masks: Tensor) -> Tensor:
    """[N] share of each map's mass inside its mask; nan where the map has no mass or the mask is empty."""
    _check(maps.shape == masks.shape, f"heatmaps {tuple(maps.shape)} and masks {tuple(masks.shape)} differ "
                                      "in shape; masks must be [N, H, W] at the heatmap's resolution.")
    masks = masks.bool()
    mass = maps.sum(dim=(1, 2), dtype=torch.float64)
    inside = torch.where(masks, maps, 0).sum(dim=(1, 2), dtype=torch.float64)
    defined = (mass > 0) & masks.flatten(1).any(1)
    return torch.where(defined, inside / mass.clamp_min(1e-300), torch.full_like(mass, math.nan))


@torch.no_grad()
def explanation_per_image(maps_clean: Tensor, maps_adv: Tensor, *, topk: float = 0.1) -> dict[str, Tensor]:
    """``[N]`` per image: ``centroid_px``, ``centroid_frac``, ``spearman`` and ``topk_intersection``."""
    _check_maps(maps_clean, maps_adv)
    _, h, w = maps_clean.shape
    shift = centroid_shift_per_image(maps_clean, maps_adv)
    return {
        "centroid_px": shift,
        "centroid_frac": shift / math.hypot(h, w),
        "spearman": spearman_per_image(maps_clean, maps_adv),
        "topk_intersection": topk_intersection_per_image(maps_clean, maps_adv, topk),
    }


@torch.no_grad()
def explanation_metrics(maps_clean: Tensor, maps_adv: Tensor, flipped: Tensor, *, masks: Tensor | None = None,
                        topk: float = 0.1, per_image: dict[str, Tensor] | None = None,
                        correct: Tensor | None = None) -> dict[str, float]:
    """How far the heatmaps moved: centroid shift, Spearman, top-k intersection, lesion mass.

    Each of ``centroid_px``, ``centroid_frac`` (of the image diagonal ``√(H²+W²)``),
    ``spearman`` and ``topk_intersection`` is the mean over all images and, with the
    suffix ``_kept``, over the images whose predicted label did not flip (nan if none).
    ``n_kept`` counts those images (``per_image``: :func:`explanation_per_image`'s result, when
    the caller has it). With ``correct`` (the clean prediction was right), the suffix
    ``_kept_correct`` and ``n_kept_correct`` give the same over images classified correctly
    whose label held: the study's Fig. 2, where the diagnosis is right, stays right, and the
    heatmap moves. With lesion ``masks``: ``mass_in_lesion_clean`` and
    ``mass_in_lesion_adv``, means over images whose mask is non-empty.
    """
    n = maps_clean.shape[0]
    _check(flipped.shape == (n,), f"flipped must be [N] = [{n}] booleans; got {tuple(flipped.shape)}.")
    kept = ~flipped.bool().to(maps_clean.device)
    if per_image is None:  # the caller may have computed them already (explanation_per_image)
        per_image = explanation_per_image(maps_clean, maps_adv, topk=topk)
    result = {key: _nanmean(values) for key, values in per_image.items()}
    result |= {f"{key}_kept": _nanmean(values[kept]) for key, values in per_image.items()}
    result["n_kept"] = float(kept.sum())
    if correct is not None:
        _check(correct.shape == (n,), f"correct must be [N] = [{n}] booleans; got {tuple(correct.shape)}.")
        both = kept & correct.bool().to(maps_clean.device)
        result |= {f"{key}_kept_correct": _nanmean(values[both]) for key, values in per_image.items()}
        result["n_kept_correct"] = float(both.sum())
    if masks is not None:
        masks = masks.to(maps_clean.device)
        result["mass_in_lesion_clean"] = _nanmean(mass_in_region_per_image(maps_clean, masks))
        result["mass_in_lesion_adv"] = _nanmean(mass_in_region_per_image(maps_adv, masks))
    return result


# ----------------------------------------------------------- segmentation
@torch.no_grad()
def confidence_metrics(logits_clean: Tensor, logits_adv: Tensor) -> dict[str, float]:
    """How much the model's confidence in its own clean diagnosis changed where that diagnosis held.

    ``confidence_change_kept``: mean, over images whose predicted label did not flip, of
    p_adv(clean prediction) − p_clean(clean prediction) (negative: less sure; nan if none).
    """
    pred = logits_clean.argmax(1)
    p_clean = logits_clean.double().softmax(1).gather(1, pred[:, None])[:, 0]
    p_adv = logits_adv.double().softmax(1).gather(1, pred[:, None])[:, 0]
    kept = logits_adv.argmax(1) == pred
    return {"confidence_change_kept": _nanmean((p_adv - p_clean)[kept])}


def rounding_metrics(pred_clean: Tensor, pred_unrounded: Tensor, pred_rounded: Tensor) -> dict[str, float]:
    """What rounding the adversarial images to 8 bits did to the attack's flips.

    ``flip_rate_unrounded``: the flip rate before rounding; ``flips_surviving_rounding``:
    the share of those flips still flipped after it (nan when there were none).
    """
    flipped = pred_unrounded != pred_clean
    survived = flipped & (pred_rounded != pred_clean)
    n = int(flipped.sum())
    return {"flip_rate_unrounded": float(flipped.double().mean()),
            "flips_surviving_rounding": float(survived.sum()) / n if n else math.nan}


@torch.no_grad()
def dice_per_image(seg_logits: Tensor, masks: Tensor) -> Tensor:
    """[N] Dice of the thresholded mask head (logit > 0) against the true mask; 1 when both are empty."""
    _check(seg_logits.dim() == 4 and seg_logits.shape[1] == 1 and seg_logits.shape[0:1] + seg_logits.shape[2:]
           == masks.shape, f"Dice needs mask logits [N, 1, H, W] and masks [N, H, W]; got "
           f"{tuple(seg_logits.shape)} and {tuple(masks.shape)}.")
    pred = (seg_logits[:, 0] > 0).flatten(1).double()
    truth = masks.to(seg_logits.device).bool().flatten(1).double()
    overlap = (pred * truth).sum(1)
    total = pred.sum(1) + truth.sum(1)
    return torch.where(total > 0, 2 * overlap / total.clamp_min(1e-300), torch.ones_like(total))


@torch.no_grad()
def segmentation_metrics(seg_logits_clean: Tensor, seg_logits_adv: Tensor, masks: Tensor) -> dict[str, float]:
    """Mean Dice of the segmentation head on clean and on attacked images."""
    return {"dice_clean": _nanmean(dice_per_image(seg_logits_clean, masks)),
            "dice_adv": _nanmean(dice_per_image(seg_logits_adv, masks))}


# ----------------------------------------------------------- perturbation
@torch.no_grad()
def perturbation_metrics(x: Tensor, x_adv: Tensor) -> dict[str, float]:
    """Size of the perturbation: per-image L∞ and L2, mean and max, in [0, 1] units and grey levels (×255)."""
    _check(x.shape == x_adv.shape and x.dim() >= 2,
           f"perturbation metrics need clean and attacked images of the same shape; got {tuple(x.shape)} and "
           f"{tuple(x_adv.shape)}.")
    delta = (x_adv.detach().double() - x.detach().double()).flatten(1)
    linf = delta.abs().amax(1)
    l2 = torch.linalg.vector_norm(delta, dim=1)
    result = {"linf": float(linf.mean()), "linf_max": float(linf.max()),
              "l2": float(l2.mean()), "l2_max": float(l2.max())}
    result |= {f"{key}_grey": value * 255 for key, value in list(result.items())}
    return result


#: One line per metric a record may carry (interval keys ``<key>_ci_low``/``_ci_high`` are described by their
#: base key). The site shows these as column tooltips; docs/metrics.md documents each in full.
METRIC_DESCRIPTIONS: dict[str, str] = {
    "clean_accuracy": "share of clean images classified correctly",
    "adv_accuracy": "share of attacked images classified correctly",
    "clean_sensitivity": "malignant recall on clean images",
    "adv_sensitivity": "malignant recall on attacked images",
    "clean_specificity": "benign recall on clean images",
    "adv_specificity": "benign recall on attacked images",
    "clean_auc": "ROC AUC of p(malignant) on clean images",
    "adv_auc": "ROC AUC of p(malignant) on attacked images",
    "flip_rate": "share of images whose predicted label changed under attack",
    "centroid_px": "mean distance between clean and attacked heatmap centroids, pixels",
    "centroid_frac": "mean centroid distance as a fraction of the image diagonal",
    "spearman": "mean Spearman rank correlation between clean and attacked heatmaps",
    "topk_intersection": "mean share of the clean top-10 % pixels still in the attacked top 10 %",
    "centroid_px_kept": "centroid distance (pixels) over images whose label did not flip",
    "centroid_frac_kept": "centroid distance (fraction of diagonal) over images whose label did not flip",
    "spearman_kept": "Spearman correlation over images whose label did not flip",
    "topk_intersection_kept": "top-k intersection over images whose label did not flip",
    "n_kept": "number of images whose label did not flip",
    "centroid_px_kept_correct": "centroid distance (pixels) over correctly classified images whose label held",
    "centroid_frac_kept_correct": "centroid distance (fraction of diagonal) over correctly classified images "
                                  "whose label held (the study's Fig. 2)",
    "spearman_kept_correct": "Spearman correlation over correctly classified images whose label held",
    "topk_intersection_kept_correct": "top-k intersection over correctly classified images whose label held",
    "n_kept_correct": "number of correctly classified images whose label held",
    "confidence_change_kept": "mean change of p(clean diagnosis) where the label held (negative: less sure)",
    "flip_rate_unrounded": "flip rate before the adversarial images were rounded to 8 bits (quantize = uint8)",
    "flips_surviving_rounding": "share of the unrounded flips still flipped after rounding to 8 bits",
    "mass_in_lesion_clean": "share of clean heatmap mass inside the lesion mask",
    "mass_in_lesion_adv": "share of attacked heatmap mass inside the lesion mask",
    "dice_clean": "Dice of the segmentation head on clean images",
    "dice_adv": "Dice of the segmentation head on attacked images",
    "linf": "mean per-image L∞ perturbation, [0, 1] units",
    "linf_max": "largest per-image L∞ perturbation, [0, 1] units",
    "l2": "mean per-image L2 perturbation, [0, 1] units",
    "l2_max": "largest per-image L2 perturbation, [0, 1] units",
    "linf_grey": "mean per-image L∞ perturbation, grey levels",
    "linf_max_grey": "largest per-image L∞ perturbation, grey levels",
    "l2_grey": "mean per-image L2 perturbation, grey levels",
    "l2_max_grey": "largest per-image L2 perturbation, grey levels",
}
