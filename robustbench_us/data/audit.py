"""What ``robustbench-us data audit`` reports: classes, split, masks, sizes, near-duplicates, leaks."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

from robustbench_us.data.duplicates import DEFAULT_THRESHOLD, NearDuplicates, find_near_duplicates, perceptual_hash
from robustbench_us.protocols import Dataset
from robustbench_us.splits import groups_crossing

PARTS = ("train", "val", "test")


def _spread(values: Sequence[float], digits: int = 4) -> dict[str, float]:
    if not values:
        return {}
    return {"min": round(min(values), digits), "median": round(statistics.median(values), digits),
            "max": round(max(values), digits)}


def _labels_and_groups(dataset: Dataset) -> tuple[list[int], list[str]]:
    labels = getattr(dataset, "labels", None)
    groups = getattr(dataset, "groups", None)
    if labels is not None and groups is not None:
        return list(labels), [str(g) for g in groups]
    samples = [dataset[i] for i in range(len(dataset))]
    return [int(s.label) for s in samples], [str(s.group) for s in samples]


def _grey_images(dataset: Dataset) -> torch.Tensor:
    """uint8 ``[N, H, W]``: the dataset's cache when it has one, else its samples' first channel."""
    arrays = getattr(dataset, "arrays", None)
    if callable(arrays):
        return arrays()[0]
    return torch.stack([(dataset[i].image[0] * 255).round().to(torch.uint8) for i in range(len(dataset))])


def _masks(dataset: Dataset) -> list[torch.Tensor | None]:
    arrays = getattr(dataset, "arrays", None)
    if callable(arrays):
        masks = arrays()[1]
        return [None] * len(dataset) if masks is None else list(masks)
    return [dataset[i].mask for i in range(len(dataset))]


def near_duplicates_of(dataset: Dataset, labels: Sequence[int], threshold: int | None) -> NearDuplicates:
    """The dataset's own near-duplicate groups if it computes them, else pHash groups of its images."""
    own = getattr(dataset, "near_duplicates", None)
    if callable(own):
        return own(threshold)
    hashes = [perceptual_hash(img) for img in _grey_images(dataset).numpy()]
    return find_near_duplicates(hashes, labels, DEFAULT_THRESHOLD if threshold is None else threshold)


def audit_dataset(dataset: Dataset, *, name: str | None = None, seed: int = 0,
                  fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
                  dup_threshold: int | None = None) -> dict[str, Any]:
    """A JSON-friendly report on one dataset; ``report["leaks"]`` is the number of groups crossing split parts."""
    start = time.perf_counter()
    classes = list(dataset.classes)
    labels, groups = _labels_and_groups(dataset)
    ids = list(getattr(dataset, "ids", None) or [dataset[i].id for i in range(len(dataset))])
    n = len(labels)
    split = dataset.split(seed, fractions)
    crossing = groups_crossing(split, groups)
    parts = {}
    for part in PARTS:
        idx = split.part(part)
        counts = Counter(labels[i] for i in idx)
        parts[part] = {"total": len(idx), **{c: counts.get(k, 0) for k, c in enumerate(classes)}}
    group_sizes = Counter(groups)

    masks = _masks(dataset)
    with_mask = [m for m in masks if m is not None]
    fractions_px = [float(m.float().mean()) for m in with_mask]
    lesion = getattr(dataset, "lesion_fractions", None)
    if lesion is not None:  # measured at the files' own resolution
        fractions_px = [f for f in lesion if f is not None]

    sizes = list(getattr(dataset, "original_sizes", None) or [])
    if not sizes:
        side = _grey_images(dataset).shape[-1]
        sizes = [(side, side)] * n
    size_counts = Counter(sizes)
    modes = Counter(getattr(dataset, "modes", None) or [])

    near = near_duplicates_of(dataset, labels, dup_threshold)
    part_of = {}
    for part in PARTS:
        for i in split.part(part):
            part_of[i] = part
    dup_crossing = [g for g in near.groups if len({part_of[i] for i in g}) > 1]
    near_dict = near.to_dict(ids, labels, classes)
    near_dict["groups_crossing_split"] = len(dup_crossing)
    near_dict["crossing_examples"] = [[ids[i] for i in g] for g in dup_crossing[:10]]

    problems = [p.to_dict() for p in getattr(dataset, "problems", ())]
    return {
        "dataset": name or getattr(dataset, "name", type(dataset).__name__),
        "root": str(getattr(dataset, "root", "") or "") or None,
        "images": n,
        "classes": classes,
        "counts": {c: labels.count(k) for k, c in enumerate(classes)},
        "manifest": dataset.manifest_hash(),
        "groups": {"count": len(group_sizes), "multi_image": sum(1 for v in group_sizes.values() if v > 1),
                   "largest": max(group_sizes.values(), default=0)},
        "split": {"seed": seed, "fractions": list(fractions), "parts": parts},
        "leaks": len(crossing),
        "leak_examples": [{"group": g, "parts": list(p)} for g, p in list(crossing.items())[:10]],
        "masks": {"with_mask": len(with_mask), "without_mask": n - len(with_mask),
                  "empty": sum(1 for m in with_mask if not bool(m.any())),
                  "lesion_fraction": _spread(fractions_px)},
        "image_sizes": {"distinct": len(size_counts), "width": _spread([w for w, _ in sizes], 1),
                        "height": _spread([h for _, h in sizes], 1),
                        "most_common": [[w, h, c] for (w, h), c in size_counts.most_common(5)],
                        "modes": dict(modes.most_common())},
        "near_duplicates": near_dict,
        "skipped": problems,
        "seconds": round(time.perf_counter() - start, 3),
    }


def _counts(part: dict[str, int], classes: Sequence[str]) -> str:
    return f"{part['total']} (" + ", ".join(f"{c} {part[c]}" for c in classes) + ")"


def format_audit(report: dict[str, Any]) -> str:
    """The report as a few readable lines."""
    classes = report["classes"]
    lines = [f"{report['dataset']}: {report['images']} images ("
             + ", ".join(f"{c} {report['counts'][c]}" for c in classes) + ")"
             + (f" from {report['root']}" if report["root"] else "")]
    lines.append(f"  manifest   {report['manifest']}")
    m = report["masks"]
    if m["with_mask"]:
        lf = m["lesion_fraction"]
        area = (f"; lesion area {100 * lf['min']:.1f}–{100 * lf['max']:.1f} % of the image "
                f"(median {100 * lf['median']:.1f} %)") if lf else ""
        lines.append(f"  masks      {m['with_mask']} of {report['images']} images have one ({m['empty']} empty){area}")
    else:
        lines.append("  masks      none")
    s = report["image_sizes"]
    modes = ", ".join(f"{k} {v}" for k, v in s["modes"].items())
    lines.append(f"  sizes      {s['distinct']} distinct; width {s['width']['min']:g}–{s['width']['max']:g}, "
                 f"height {s['height']['min']:g}–{s['height']['max']:g}" + (f"; modes {modes}" if modes else ""))
    g = report["groups"]
    lines.append(f"  groups     {g['count']} ({g['multi_image']} with several images, largest {g['largest']})")
    nd = report["near_duplicates"]
    lines.append(f"  near-dups  pHash Hamming ≤ {nd['threshold']}: {nd['groups']} groups holding "
                 f"{nd['images_in_groups']} images (largest {nd['largest']}); "
                 f"{len(nd['cross_class_groups'])} across classes; {nd['groups_crossing_split']} split apart")
    for group in nd["cross_class_groups"][:10]:
        lines.append("             " + " = ".join(f"{e['id']} [{e['class']}]" for e in group))
    if len(nd["cross_class_groups"]) > 10:
        lines.append(f"             ... and {len(nd['cross_class_groups']) - 10} more (--json lists all)")
    sp = report["split"]
    frac = "/".join(f"{round(100 * f):d}" for f in sp["fractions"])
    lines.append(f"  split      seed {sp['seed']}, {frac}: " + " · ".join(
        f"{part} {_counts(sp['parts'][part], classes)}" for part in PARTS))
    verdict = "ok" if report["leaks"] == 0 else "LEAK"
    lines.append(f"  leaks      {report['leaks']} groups cross split parts ({verdict})")
    for ex in report["leak_examples"]:
        lines.append(f"             {ex['group']}: {'/'.join(ex['parts'])}")
    if report["skipped"]:
        lines.append(f"  skipped    {len(report['skipped'])} files:")
        lines.extend(f"             {p['path']}: {p['reason']}" for p in report["skipped"][:10])
    else:
        lines.append("  skipped    none")
    return "\n".join(lines)
