"""Figures: the study's per-cell panels and per model × explainer sweeps against ε.

Per cell (:func:`write_cell_figures`) two cases are drawn, each as three panels —
the original image with its heatmap, the perturbed image with its heatmap, and
the perturbation amplified to full contrast with its true range in grey levels:

- ``label_kept_map_moved.png``: among images whose predicted label did not flip,
  the one whose heatmap centroid moved the most (Rasaee & Rivaz, Fig. 2);
- ``label_flipped.png``: among images whose label flipped, the one whose
  confidence changed the most — the drop in probability of the clean prediction
  when logits are given, else the largest centroid shift (Fig. 3).

A case with no candidate image is not drawn. Per model × explainer
(:func:`write_sweep_figures`) accuracy and heatmap shift are plotted against ε,
one line per attack, from the records.

Matplotlib is used through its object API (``Figure`` + Agg canvas), so nothing
touches pyplot's global state or needs a display.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from robustbench_us.errors import ContractError
from robustbench_us.metrics import centroid_shift_per_image, centroids
from robustbench_us.store import temp_prefix

KEPT_FIGURE = "label_kept_map_moved.png"
FLIPPED_FIGURE = "label_flipped.png"
CLASS_NAMES = ("benign", "malignant")
_DPI = 80
# Grey-level metadata keeps PNGs byte-identical between runs (no timestamps, fixed software tag).
_PNG_METADATA = {"Software": "robustbench_us"}


@dataclass(frozen=True)
class Case:
    """One image chosen for a figure, and why."""

    index: int
    image_id: str
    rule: str
    centroid_shift_px: float
    confidence_change: float | None


def _labels_and_probs(pred: Tensor) -> tuple[Tensor, Tensor | None]:
    """Predicted labels [N] and class probabilities [N, 2] (None when only labels were given)."""
    if pred.dim() == 2:
        return pred.argmax(1), torch.softmax(pred.double(), dim=1)
    return pred.long(), None


def choose_cases(maps_clean: Tensor, maps_adv: Tensor, pred_clean: Tensor, pred_adv: Tensor,
                 ids: Sequence[str]) -> dict[str, Case]:
    """The label-kept-map-moved and label-flipped cases (keys ``kept``, ``flipped``), by the module's rules.

    ``pred_clean`` / ``pred_adv`` are logits [N, 2] (preferred: the flip rule then uses confidence)
    or predicted labels [N].
    """
    n = maps_clean.shape[0]
    if not (maps_adv.shape == maps_clean.shape and len(pred_clean) == n and len(pred_adv) == n and len(ids) == n):
        raise ContractError(f"figures need N maps, predictions and ids alike; got maps {tuple(maps_clean.shape)} "
                            f"and {tuple(maps_adv.shape)}, predictions {len(pred_clean)} and {len(pred_adv)}, "
                            f"{len(ids)} ids.")
    label_clean, prob_clean = _labels_and_probs(pred_clean.detach().cpu())
    label_adv, prob_adv = _labels_and_probs(pred_adv.detach().cpu())
    flipped = label_clean != label_adv
    shift = centroid_shift_per_image(maps_clean.detach(), maps_adv.detach()).cpu()
    ranked_shift = torch.nan_to_num(shift, nan=-1.0)
    change = None
    if prob_clean is not None and prob_adv is not None:
        rows = torch.arange(n)
        change = prob_clean[rows, label_clean] - prob_adv[rows, label_clean]
    cases: dict[str, Case] = {}
    kept = (~flipped).nonzero().flatten()
    if len(kept):
        i = int(kept[ranked_shift[kept].argmax()])
        cases["kept"] = Case(i, str(ids[i]), "largest heatmap centroid shift among images whose label did not flip",
                             float(shift[i]), None if change is None else float(change[i]))
    flips = flipped.nonzero().flatten()
    if len(flips):
        if change is not None:
            i = int(flips[change[flips].argmax()])
            rule = "largest drop in the probability of the clean prediction among images whose label flipped"
        else:
            i = int(flips[ranked_shift[flips].argmax()])
            rule = "largest heatmap centroid shift among images whose label flipped (no logits given)"
        cases["flipped"] = Case(i, str(ids[i]), rule, float(shift[i]), None if change is None else float(change[i]))
    return cases


def _plain(text: str) -> str:
    """Plugin-supplied text for matplotlib: '$' would otherwise start mathtext."""
    return text.replace("\\", "\\\\").replace("$", r"\$")


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    tmp = path.with_name(f"{temp_prefix(path.name)}png.tmp")  # tagged: a later run removes it if we are killed
    fig.savefig(tmp, format="png", dpi=_DPI, metadata=_PNG_METADATA)
    tmp.replace(path)
    return path


def _overlay(ax: Any, image: np.ndarray, heat: np.ndarray, centre: np.ndarray, title: str) -> None:
    ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    peak = float(heat.max())
    scaled = np.clip(heat / peak, 0.0, 1.0) if peak > 0 else np.zeros_like(heat)
    # Opacity follows the heat, so the ultrasound stays visible where the map is cold.
    rgba = colormaps["jet"](scaled)
    rgba[..., 3] = 0.65 * scaled
    ax.imshow(rgba, interpolation="bilinear")
    if np.isfinite(centre).all():
        ax.plot([centre[1]], [centre[0]], marker="P", markersize=12, markerfacecolor="white",
                markeredgecolor="black", markeredgewidth=1.2, linestyle="none")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def _case_figure(case: Case, title: str, x: Tensor, x_adv: Tensor, map_clean: Tensor, map_adv: Tensor,
                 label_clean: int, label_adv: int, prob_clean: float | None, prob_adv: float | None) -> Figure:
    """Three panels: original + heatmap, perturbed + heatmap, amplified difference with its true range."""
    image = x.detach().double().mean(0).cpu().numpy()  # grayscale is repeated over the 3 channels
    image_adv = x_adv.detach().double().mean(0).cpu().numpy()
    delta = (x_adv.detach().double() - x.detach().double()) * 255
    # Channels may be perturbed differently: show, per pixel, the channel that changed most (signed).
    delta_grey = delta.gather(0, delta.abs().argmax(0, keepdim=True))[0].cpu().numpy()
    low, high = float(delta.min()), float(delta.max())
    centre = centroids(torch.stack([map_clean, map_adv]).detach()).cpu().numpy()
    heat, heat_adv = map_clean.detach().double().cpu().numpy(), map_adv.detach().double().cpu().numpy()

    def said(label: int, prob: float | None) -> str:
        return CLASS_NAMES[label] + ("" if prob is None else f" ({prob:.1%})")

    fig = Figure(figsize=(10.5, 3.9))
    axes = fig.subplots(1, 3)
    _overlay(axes[0], image, heat, centre[0], f"original: {said(label_clean, prob_clean)}")
    _overlay(axes[1], image_adv, heat_adv, centre[1],
             f"perturbed: {said(label_adv, prob_adv)}\ncentroid moved {case.centroid_shift_px:.1f} px")
    bound = float(abs(delta_grey).max()) or 1.0
    shown = axes[2].imshow(delta_grey, cmap="seismic", vmin=-bound, vmax=bound, interpolation="nearest")
    axes[2].set_title(f"difference, amplified to full contrast\ntrue range [{low:.2f}, {high:.2f}] grey levels",
                      fontsize=9)
    axes[2].set_axis_off()
    bar = fig.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.04)
    bar.set_label("grey levels (of 255)", fontsize=8)
    fig.suptitle(_plain(f"{title} — image {case.image_id}"), fontsize=10)
    fig.text(0.5, 0.02, _plain(f"chosen by rule: {case.rule}"), ha="center", fontsize=8, color="#444444")
    fig.subplots_adjust(left=0.02, right=0.93, top=0.8, bottom=0.08, wspace=0.08)
    return fig


def write_cell_figures(out_dir: str | Path, x: Tensor, x_adv: Tensor, maps_clean: Tensor, maps_adv: Tensor,
                       pred_clean: Tensor, pred_adv: Tensor, ids: Sequence[str]) -> list[Path]:
    """Draw a cell's label-kept-map-moved and label-flipped cases as PNGs in ``out_dir``; returns their paths.

    ``x``/``x_adv`` are [N, 3, H, W] in [0, 1], maps [N, H, W], predictions logits [N, 2]
    (or labels [N]), ``ids`` the image ids. Cases without a candidate are skipped.
    """
    if x.shape != x_adv.shape or x.dim() != 4 or x.shape[0] != maps_clean.shape[0]:
        raise ContractError(f"figures need clean and perturbed images [N, 3, H, W] matching N maps; got "
                            f"{tuple(x.shape)}, {tuple(x_adv.shape)} and maps {tuple(maps_clean.shape)}.")
    out = Path(out_dir)
    cases = choose_cases(maps_clean, maps_adv, pred_clean, pred_adv, ids)
    label_clean, prob_clean = _labels_and_probs(pred_clean.detach().cpu())
    label_adv, prob_adv = _labels_and_probs(pred_adv.detach().cpu())
    written = []
    for key, name, title in (("kept", KEPT_FIGURE, "label kept, heatmap moved"),
                             ("flipped", FLIPPED_FIGURE, "label flipped")):
        case = cases.get(key)
        if case is None:
            continue
        i = case.index
        lc, la = int(label_clean[i]), int(label_adv[i])
        fig = _case_figure(case, title, x[i], x_adv[i], maps_clean[i], maps_adv[i], lc, la,
                           None if prob_clean is None else float(prob_clean[i, lc]),
                           None if prob_adv is None else float(prob_adv[i, la]))
        written.append(_save(fig, out / name))
    return written


# ------------------------------------------------------------------ sweeps
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "_"


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def sweep_groups(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """Ok records grouped by (dataset, model, explainer)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        if rec.get("status") == "ok":
            c = rec["config"]
            groups[(str(c["dataset"]), str(c["model"]), str(c["explainer"]))].append(rec)
    return dict(sorted(groups.items()))


def sweep_figure_name(dataset: str, model: str, explainer: str) -> str:
    """File name of one model × explainer sweep."""
    return f"sweep__{_slug(dataset)}__{_slug(model)}__{_slug(explainer)}.png"


def write_sweep_figures(records: Sequence[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Per dataset × model × explainer: accuracy (with its 95 % interval) and heatmap shift against ε.

    One line per attack (and region); ε on the x axis in grey levels. Returns the PNG paths.
    """
    out = Path(out_dir)
    written = []
    for (dataset, model, explainer), group in sweep_groups(records).items():
        lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for rec in group:
            c = rec["config"]
            region = c.get("region", "all")
            lines[str(c["attack"]) + ("" if region == "all" else f" ({region})")].append(rec)
        fig = Figure(figsize=(10, 4))
        acc_ax, shift_ax = fig.subplots(1, 2)
        clean = [_number(r["metrics"].get("clean_accuracy")) for r in group]
        clean = [v for v in clean if math.isfinite(v)]
        if clean:
            acc_ax.axhline(float(np.mean(clean)), color="black", linestyle=":", linewidth=1, label="clean")
        for attack, recs in sorted(lines.items()):
            recs = sorted(recs, key=lambda r: float(r["config"]["eps_grey"]))
            eps = [float(r["config"]["eps_grey"]) for r in recs]
            m = [r["metrics"] for r in recs]
            acc = [_number(v.get("adv_accuracy")) for v in m]
            low = [_number(v.get("adv_accuracy_ci_low")) for v in m]
            high = [_number(v.get("adv_accuracy_ci_high")) for v in m]
            (line,) = acc_ax.plot(eps, acc, marker="o", label=_plain(attack))
            acc_ax.fill_between(eps, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
            shift_ax.plot(eps, [_number(v.get("centroid_frac")) for v in m], marker="o", color=line.get_color(),
                          label=_plain(f"{attack}: all images"))
            shift_ax.plot(eps, [_number(v.get("centroid_frac_kept")) for v in m], marker="s", linestyle="--",
                          color=line.get_color(), label=_plain(f"{attack}: label kept"))
        acc_ax.set(xlabel="ε (grey levels of 255)", ylabel="accuracy under attack", ylim=(-0.02, 1.02),
                   title="accuracy (band: bootstrap 95 % interval)")
        shift_ax.set(xlabel="ε (grey levels of 255)", ylabel="centroid shift (fraction of diagonal)",
                     title="heatmap centroid shift")
        shift_ax.set_ylim(bottom=0)
        for ax in (acc_ax, shift_ax):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(_plain(f"{dataset} · {model} · {explainer}"), fontsize=10)
        fig.tight_layout()
        written.append(_save(fig, out / sweep_figure_name(dataset, model, explainer)))
    return written
