"""Two models of one suite, image by image: is one of them more robust, or is it chance?

Both models of a suite are attacked on the same images, so their outcomes are
paired. Two paired tests on the records' ``per_image`` tables:

- **Diagnosis flips** — McNemar's exact test on the images where exactly one of
  the two models flips (a two-sided binomial test of those discordant images,
  ``scipy.stats.binomtest``), with the difference of flip rates and its paired
  bootstrap 95 % interval (``scipy.stats.bootstrap``, percentile, seeded).
- **Heatmap shift with the label kept** — on the images where *neither* model's
  label flipped, the Wilcoxon signed-rank test of the per-image centroid shifts
  (as a share of the image diagonal, ``scipy.stats.wilcoxon``), with the mean
  difference and its paired bootstrap interval.

Each table's p-values are also given as Benjamini–Hochberg q-values
(``scipy.stats.false_discovery_control``) over the table's rows, since a grid
makes many comparisons at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from robustbench_us.errors import RobustBenchError
from robustbench_us.markdown import markdown_cell, markdown_text

N_RESAMPLES = 2000


class CompareError(RobustBenchError):
    """Two models cannot be compared from these records (missing per-image tables, unknown model)."""


@dataclass(frozen=True)
class FlipComparison:
    """Diagnosis flips of models A and B on the images both were attacked on."""

    dataset: str
    attack: str
    region: str
    eps_grey: float
    explainer: str | None  # None for label attacks: one set of adversarial images serves every explainer
    n: int
    flip_a: float
    flip_b: float
    only_a: int  # images only A flipped
    only_b: int  # images only B flipped
    difference: float  # flip_a - flip_b
    ci_low: float
    ci_high: float
    p_value: float
    q_value: float = math.nan


@dataclass(frozen=True)
class ShiftComparison:
    """Heatmap centroid shift (share of the diagonal) where neither model's label flipped."""

    dataset: str
    attack: str
    region: str
    eps_grey: float
    explainer: str
    n_kept: int
    shift_a: float
    shift_b: float
    difference: float  # shift_a - shift_b
    ci_low: float
    ci_high: float
    p_value: float
    q_value: float = math.nan


def _paired_ci(a: np.ndarray, b: np.ndarray, seed: int) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of mean(a) − mean(b), resampling images (pairs)."""
    from scipy import stats

    if len(a) < 2 or np.all(a - b == (a - b)[0]):  # no spread: the interval is the point itself
        d = float(np.mean(a) - np.mean(b)) if len(a) else math.nan
        return d, d
    res = stats.bootstrap((a, b), lambda x, y, axis: x.mean(axis=axis) - y.mean(axis=axis), paired=True,
                          n_resamples=N_RESAMPLES, method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def compare_flips(a: dict[str, list[Any]], b: dict[str, list[Any]], *, seed: int = 0) -> dict[str, float]:
    """McNemar's exact test and the paired difference of flip rates, from two ``per_image`` tables."""
    from scipy import stats

    fa, fb = _aligned(a, b, lambda t: np.asarray(t["pred_clean"]) != np.asarray(t["pred_adv"]))
    only_a, only_b = int(np.sum(fa & ~fb)), int(np.sum(~fa & fb))
    p = stats.binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    low, high = _paired_ci(fa.astype(float), fb.astype(float), seed)
    return {"n": len(fa), "flip_a": float(fa.mean()), "flip_b": float(fb.mean()), "only_a": only_a,
            "only_b": only_b, "difference": float(fa.mean() - fb.mean()), "ci_low": low, "ci_high": high,
            "p_value": float(p)}


def compare_shifts(a: dict[str, list[Any]], b: dict[str, list[Any]], diagonal: float,
                   diagonal_b: float | None = None, *, seed: int = 0) -> dict[str, float]:
    """Wilcoxon signed-rank test of per-image centroid shifts where neither label flipped.

    Shifts are shares of the image diagonal (``diagonal`` pixels; ``diagonal_b`` for B when
    the two models ran at other input sizes).
    """
    from scipy import stats

    def column(t: dict[str, list[Any]], size: float) -> np.ndarray:
        kept = np.asarray(t["pred_clean"]) == np.asarray(t["pred_adv"])
        shift = np.array([math.nan if v is None else v for v in t["centroid_px"]], dtype=float) / size
        return np.where(kept, shift, math.nan)

    sa, _ = _aligned(a, b, lambda t: column(t, diagonal))
    _, sb = _aligned(a, b, lambda t: column(t, diagonal if diagonal_b is None else diagonal_b))
    both = ~np.isnan(sa) & ~np.isnan(sb)
    sa, sb = sa[both], sb[both]
    if len(sa) == 0:
        return {"n_kept": 0, "shift_a": math.nan, "shift_b": math.nan, "difference": math.nan,
                "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan}
    p = stats.wilcoxon(sa, sb).pvalue if np.any(sa != sb) else 1.0
    low, high = _paired_ci(sa, sb, seed)
    return {"n_kept": int(len(sa)), "shift_a": float(sa.mean()), "shift_b": float(sb.mean()),
            "difference": float(sa.mean() - sb.mean()), "ci_low": low, "ci_high": high, "p_value": float(p)}


def _aligned(a: dict[str, list[Any]], b: dict[str, list[Any]], value) -> tuple[np.ndarray, np.ndarray]:
    """``value`` of each table on the images both hold, in one order (by id)."""
    va, vb = value(a), value(b)
    index_b = {image: i for i, image in enumerate(b["id"])}
    pairs = [(i, index_b[image]) for i, image in enumerate(a["id"]) if image in index_b]
    if not pairs:
        raise CompareError("the two records share no image id; they were not run on the same images.")
    ia, ib = (np.array(p, dtype=int) for p in zip(*pairs))
    return va[ia], vb[ib]


def _q_values(p_values: Sequence[float]) -> list[float]:
    from scipy import stats

    finite = [i for i, p in enumerate(p_values) if math.isfinite(p)]
    q = [math.nan] * len(p_values)
    if finite:
        adjusted = stats.false_discovery_control([p_values[i] for i in finite], method="bh")
        for i, value in zip(finite, adjusted):
            q[i] = float(value)
    return q


def _model_keys(records: Iterable[dict[str, Any]]) -> list[str]:
    return sorted({r["config"]["model"] for r in records})


def _pick(records: list[dict[str, Any]], model: str) -> str:
    keys = _model_keys(records)
    if model in keys:
        return model
    matches = [k for k in keys if k.split("@")[0] == model]
    if len(matches) == 1:
        return matches[0]
    raise CompareError(f"model {model!r} is not in these records{' unambiguously' if matches else ''}. "
                       f"Models: {', '.join(keys) or '(none)'}.")


def compare_models(records: list[dict[str, Any]], model_a: str, model_b: str, *, label_attacks: set[str],
                   seed: int = 0) -> tuple[list[FlipComparison], list[ShiftComparison]]:
    """Every paired comparison of ``model_a`` and ``model_b`` in one suite's ok records.

    ``label_attacks`` names the attacks whose adversarial images do not depend on the
    explainer (their flips are compared once per attack, region and ε).
    """
    ok = [r for r in records if r["status"] == "ok"]
    a_key, b_key = _pick(ok, model_a), _pick(ok, model_b)
    if a_key == b_key:
        raise CompareError(f"both models are {a_key!r}; name two different models.")

    def cell(r: dict[str, Any]) -> tuple[str, str, str, float, str]:
        c = r["config"]
        return c["dataset"], c["attack"], c.get("region", "all"), round(float(c.get("eps_grey", c["eps"] * 255)), 6), \
            c["explainer"]

    by_a = {cell(r): r for r in ok if r["config"]["model"] == a_key}
    by_b = {cell(r): r for r in ok if r["config"]["model"] == b_key}
    shared = sorted(set(by_a) & set(by_b))
    missing = [r["cell_id"] for k in shared for r in (by_a[k], by_b[k]) if "per_image" not in r]
    if missing:
        raise CompareError(f"{len(missing)} record(s) have no per-image table (written before it existed), e.g. "
                           f"{missing[0]}. Move them out of the results folder and run the suite again to "
                           "rewrite them.")
    flips: list[FlipComparison] = []
    shifts: list[ShiftComparison] = []
    seen_label_cells: set[tuple[str, str, str, float]] = set()
    for key in shared:
        dataset, attack, region, eps_grey, explainer = key
        ra, rb = by_a[key], by_b[key]
        ta, tb = ra["per_image"], rb["per_image"]
        per_attack = attack in label_attacks or ra["config"].get("attack_name") in label_attacks
        flip_key = (dataset, attack, region, eps_grey)
        if not per_attack or flip_key not in seen_label_cells:
            seen_label_cells.add(flip_key)
            flips.append(FlipComparison(dataset, attack, region, eps_grey, None if per_attack else explainer,
                                        **compare_flips(ta, tb, seed=seed)))
        size_a, size_b = (int(r["config"].get("image_size") or 224) for r in (ra, rb))
        moved = compare_shifts(ta, tb, math.hypot(size_a, size_a), math.hypot(size_b, size_b), seed=seed)
        shifts.append(ShiftComparison(dataset, attack, region, eps_grey, explainer, **moved))
    flips = [_with_q(f, q) for f, q in zip(flips, _q_values([f.p_value for f in flips]))]
    shifts = [_with_q(s, q) for s, q in zip(shifts, _q_values([s.p_value for s in shifts]))]
    return flips, shifts


def _with_q(row, q: float):
    from dataclasses import replace

    return replace(row, q_value=q)


def _fmt(value: float, spec: str = ".3f") -> str:
    return "–" if value is None or not math.isfinite(value) else format(value, spec)


def _p(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{value:.2g}" if value >= 1e-4 else "<1e-4"


def markdown(flips: list[FlipComparison], shifts: list[ShiftComparison], model_a: str, model_b: str) -> str:
    """Both tables as Markdown, A and B named in the headers."""
    model_a, model_b = markdown_text(model_a), markdown_text(model_b)
    out = [f"# {model_a} (A) vs {model_b} (B), image by image\n",
           "Paired over the images both were attacked on. Flips: McNemar's exact test; shifts (share of the "
           "image diagonal, images where neither label flipped): Wilcoxon signed-rank. Differences are A − B "
           "with paired bootstrap 95 % intervals; q: Benjamini–Hochberg over the table's rows.\n",
           "## Diagnosis flips\n",
           "| dataset | attack | region | ε (grey) | explainer | images | flip A | flip B | only A | only B "
           "| A − B [95 % CI] | p | q |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in flips:
        cells = " | ".join(markdown_cell(v) for v in (f.dataset, f.attack, f.region))
        out.append(f"| {cells} | {f.eps_grey:g} | {markdown_cell(f.explainer or '(any)')} | {f.n} | "
                   f"{_fmt(f.flip_a, '.2f')} | {_fmt(f.flip_b, '.2f')} | {f.only_a} | {f.only_b} | "
                   f"{_fmt(f.difference, '+.2f')} [{_fmt(f.ci_low, '+.2f')}, {_fmt(f.ci_high, '+.2f')}] | "
                   f"{_p(f.p_value)} | {_p(f.q_value)} |")
    out += ["", "## Heatmap shift where neither label flipped\n",
            "| dataset | attack | region | ε (grey) | explainer | images | shift A | shift B | A − B [95 % CI] | p "
            "| q |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in shifts:
        cells = " | ".join(markdown_cell(v) for v in (s.dataset, s.attack, s.region))
        out.append(f"| {cells} | {s.eps_grey:g} | {markdown_cell(s.explainer)} | {s.n_kept} | "
                   f"{_fmt(s.shift_a)} | {_fmt(s.shift_b)} | {_fmt(s.difference, '+.3f')} "
                   f"[{_fmt(s.ci_low, '+.3f')}, {_fmt(s.ci_high, '+.3f')}] | {_p(s.p_value)} | {_p(s.q_value)} |")
    return "\n".join(out) + "\n"
