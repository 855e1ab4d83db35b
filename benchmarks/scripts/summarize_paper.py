"""Write leaderboards/paper-summary<-scale>.md: the three questions of issue 11, answered from records.

    python benchmarks/scripts/summarize_paper.py [--scale cpu]

Every number is read from the suites' result records (results/<suite>/records) and the
model cards (leaderboards/models/paper<-scale>/*.json); nothing is typed in by hand.
Cells that were not run are absent, and the page says how many cells each suite has.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from robustbench_us.plugins import default_registry
from robustbench_us.runner import expand_cells
from robustbench_us.store import ResultStore
from robustbench_us.suite import load_suite

SUITES = ("paper", "paper-seeds", "paper-maps", "paper-busbra", "paper-busbra-native", "paper-busbrapre")
LABEL_ATTACKS = ("random-sign", "fgsm", "ifgsm", "pgd")
MAP_ATTACKS = ("mass-center", "topk", "target-map")


def _frame(records: list[dict[str, Any]], suffix: str) -> pd.DataFrame:
    """One row per ok record; ``base_suite`` is the suite's name without the scale suffix (``-cpu``)."""
    rows = []
    for r in records:
        if r.get("status") != "ok":
            continue
        c, m = r["config"], r["metrics"]
        rows.append({"suite": r["suite"], "base_suite": r["suite"].removesuffix(suffix), "dataset": c["dataset"],
                     "model": c["model"], "explainer": c["explainer"], "attack": c["attack"],
                     "eps_grey": round(c["eps_grey"], 3), **m,
                     "n": int(m.get("n_images", c["n_images"]))})  # images used (the config's 0 means "all")
    return pd.DataFrame(rows)


def _ci(row: pd.Series, key: str) -> str:
    value = row.get(key)
    if value is None or pd.isna(value):
        return "—"
    low, high = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    if low is None or pd.isna(low) or high is None or pd.isna(high):
        return f"{value:.2f}"
    return f"{value:.2f} [{low:.2f}, {high:.2f}]"


def _num(value: Any, fmt: str = ".2f") -> str:
    return "—" if value is None or pd.isna(value) else format(value, fmt)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _card_view(path: Path, card: dict[str, Any]) -> tuple[str, dict[str, float]]:
    """A card's model name (saying how it was trained) and its test metrics on BUSI where it has them."""
    arch, dataset = card.get("architecture", "?"), card.get("dataset")
    metrics = card.get("test_metrics") or {}
    if "busbrapre" in path.name:
        return f"{arch} (BUS-BRA pre-trained)", metrics
    if "-long-" in path.name:  # the control of joint training: BUSI alone, as many optimiser steps
        return f"{arch} (BUSI only, 4× epochs: joint's step count)", metrics
    if dataset == "busi+busbra":  # joint training: report the BUSI part of its test metrics
        return f"{arch} (joint BUSI + BUS-BRA; BUSI test)", {k[5:]: v for k, v in metrics.items()
                                                           if k.startswith("busi/")}
    if dataset == "busbra":
        return f"{arch} (BUS-BRA-trained; BUS-BRA test)", metrics
    return arch, metrics


def _cards(folder: Path) -> str:
    rows = []
    groups: dict[str, list[dict[str, float]]] = {}
    for path in sorted(folder.glob("*.json")):
        card = json.loads(path.read_text())
        name, t = _card_view(path, card)
        recipe = card.get("recipe", {})
        device = f"{card.get('device', '—')}{' amp' if recipe.get('amp') and card.get('device') == 'cuda' else ''}"
        rows.append([name, str(recipe.get("seed", "?")), str(card.get("input_size")), device,
                     f"{card.get('best_epoch')}/{card.get('epochs_run')}",
                     _num(t.get("accuracy")), _num(t.get("auc")), _num(t.get("sensitivity")),
                     _num(t.get("specificity")), _num(t.get("dice")), f"`{str(card.get('sha256'))[:12]}…`",
                     f"[{path.name}]({path.relative_to(folder.parent.parent).as_posix()})"])
        if card.get("dataset") in ("busi", "busi+busbra"):
            groups.setdefault(name, []).append(t)
    if not rows:
        return "No model cards yet.\n"
    spread = []
    for arch, metrics in sorted(groups.items()):
        cells = [arch, str(len(metrics))]
        for key in ("accuracy", "auc", "dice"):
            values = pd.Series([m.get(key) for m in metrics], dtype=float)
            cells.append("—" if values.isna().all() else
                         f"{values.mean():.3f} ± {values.std(ddof=1):.3f} ({values.min():.3f}–{values.max():.3f})"
                         if len(values) > 1 else f"{values.mean():.3f}")
        spread.append(cells)
    summary = ("\nMean ± standard deviation (range) over the seeds, on the BUSI test split:\n\n"
               + _table(["model", "seeds", "test accuracy", "test AUC", "test Dice"], spread))
    return summary + "\nEvery card:\n\n" + _table(["model", "seed", "px", "trained on", "best/run epochs",
                                                   "test acc", "test AUC", "sens", "spec", "Dice", "sha256",
                                                   "card"], rows)


def _headline(df: pd.DataFrame, paired: tuple[list[Any], list[Any]] | None = None) -> str:
    """Three sentences, one per question, computed from the records (the study's budget; ε = 8 for map attacks)."""
    busi = df[df.dataset == "busi"]
    lines = ["\n## The answers in brief\n"]
    study = busi[(busi.attack == "ifgsm") & (busi.eps_grey == 1.0)].drop_duplicates("model")
    control = busi[(busi.attack == "random-sign") & (busi.eps_grey == 1.0)].drop_duplicates("model")
    if not study.empty:
        parts = []
        for _, r in study.sort_values("model").iterrows():
            c = control[control.model == r.model]
            ctrl = f"; random noise of the same size: {_ci(c.iloc[0], 'flip_rate')}" if not c.empty else ""
            parts.append(f"`{r.model}` {_ci(r, 'flip_rate')} of {r.n} images{ctrl}")
        lines.append("1. **Diagnosis flips** at the study's budget (I-FGSM, 1 grey level of 255): "
                     + "; ".join(parts) + ".")
    maps = busi[busi.attack.isin(MAP_ATTACKS) & (busi.eps_grey == 8.0)]
    if not maps.empty:
        parts = []
        for (model, explainer), g in maps.groupby(["model", "explainer"]):
            best = g.loc[g.centroid_frac_kept.idxmax()]
            parts.append(f"`{model}` × {explainer}: {best.centroid_frac_kept:.3f} of the diagonal "
                         f"({best.centroid_px_kept:.1f} px, {best.attack}, Spearman {_num(best.spearman_kept)})")
        # The attacks keep every label by construction; rounding their images to 8 bits afterwards
        # (quantize = "uint8") can still flip a few, and the records say how many.
        worst = maps.loc[maps.flip_rate.idxmax()]
        kept = ("the label is kept on every image" if worst.flip_rate == 0 else
                f"the attacks keep every label, but rounding their images to 8 bits flipped up to "
                f"{worst.flip_rate:.3f} of them (`{worst.model}` × {worst.explainer}, {worst.attack}); "
                "the shift is over the images whose label held")
        lines.append("2. **Heatmap moves with the diagnosis kept** (largest mean centroid shift over the "
                     f"explanation attacks at 8 grey levels; {kept}): " + "; ".join(parts) + ".")
    pair = study[study.model.str.match(r"resnet50(-mtl)?@")]  # labelled variants (pre-trained) stay out
    if len(pair) == 2:
        s_ = pair[pair.model.str.startswith("resnet50@")].iloc[0]
        m_ = pair[pair.model.str.startswith("resnet50-mtl@")].iloc[0]
        overlap = not (s_.flip_rate_ci_high < m_.flip_rate_ci_low or m_.flip_rate_ci_high < s_.flip_rate_ci_low)
        verdict = ("the intervals overlap, so this run cannot tell them apart" if overlap else
                   ("the multi-task model flips less" if m_.flip_rate < s_.flip_rate else
                    "the multi-task model flips **more**, not less"))
        test = next((f for f in (paired or ([], []))[0]
                     if f.dataset == "busi" and f.attack == "ifgsm" and f.eps_grey == 1.0), None)
        if test is not None:
            verdict = verdict.replace("the intervals overlap, so this run cannot tell them apart",
                                      "the two separate intervals overlap")
            rows = len(paired[0])
            significant = "significant" if test.q_value < 0.05 else "not significant"
            verdict += (f". Paired over the same {test.n} images (which the intervals ignore), {test.only_a} "
                        f"flipped only for the multi-task model and {test.only_b} only for the single-task one: "
                        f"difference {test.difference:+.2f} [{test.ci_low:+.2f}, {test.ci_high:+.2f}], McNemar "
                        f"p = {test.p_value:.2g}, q = {test.q_value:.2g} after Benjamini–Hochberg over the "
                        f"{rows} attack × ε comparisons ({significant} at 0.05 for the grid)")
        lines.append(f"3. **Multi-task vs single-task** at the study's budget: flip rate {_ci(m_, 'flip_rate')} "
                     f"(multi) vs {_ci(s_, 'flip_rate')} (single): {verdict}. Grad-CAM shift on label-kept "
                     f"images: see question 2 and the table below.")
    return "\n".join(lines) + "\n"


def _paired(records: list[dict[str, Any]], suite: str) -> tuple[list[Any], list[Any]] | None:
    """``robustbench-us compare``'s tests of resnet50-mtl (A) vs resnet50 (B) in one suite; None without tables."""
    from robustbench_us.compare import CompareError, compare_models

    ok = [r for r in records if r["suite"] == suite and r.get("status") == "ok"
          and re.match(r"resnet50(-mtl)?(@|$)", r["config"]["model"])]
    if not ok or not all("per_image" in r for r in ok):
        return None
    try:
        return compare_models(ok, "resnet50-mtl", "resnet50", label_attacks=set(LABEL_ATTACKS))
    except CompareError:
        return None


def _paired_section(records: list[dict[str, Any]], suffix: str,
                    paper: tuple[list[Any], list[Any]] | None) -> str:
    """The paired tests of ``paper`` (given: the headline computed them already) and of ``paper-maps``."""
    from robustbench_us.compare import markdown

    parts = []
    for suite, keep in ((f"paper{suffix}", "flips"), (f"paper-maps{suffix}", "shifts")):
        paired = paper if keep == "flips" else _paired(records, suite)
        if paired is None:
            continue
        flips, shifts = paired
        text = markdown(flips if keep == "flips" else [], shifts if keep == "shifts" else [],
                        "resnet50-mtl", "resnet50")
        body = text.split("## Diagnosis flips\n" if keep == "flips" else "## Heatmap shift where neither label "
                          "flipped\n")[1]
        if keep == "flips":
            body = body.split("\n## Heatmap")[0]
            parts.append(f"\n**Paired, image by image** (`robustbench-us compare {suite.removesuffix(suffix)} "
                         f"resnet50-mtl resnet50{' --scale ' + suffix[1:] if suffix else ''}`): A = multi-task, "
                         "B = single-task, on the same images; McNemar's exact test on the images only one of them "
                         "flipped, A − B with a paired bootstrap 95 % interval, q = Benjamini–Hochberg over the "
                         "rows.\n" + body)
        else:
            parts.append(f"\nHeatmap shift (share of the diagonal) of the explanation attacks (`{suite}`), on the "
                         "images where neither model's label flipped; Wilcoxon signed-rank test.\n" + body)
    if not parts:
        return ("\nNo paired test: these records carry no per-image tables (they were written before records "
                "had them). Run the suites again into an empty results folder to get them.\n")
    return "".join(parts)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment: each p-value times the number of hypotheses not yet rejected, kept monotone."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [1.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _seeds_section(records: list[dict[str, Any]], suffix: str) -> str:
    """Multi- vs single-task over every attacked seed: seed 0 from ``paper``, seeds 1-2 from ``paper-seeds``.

    One McNemar test per seed × attack × ε on the images only one model flipped, Holm-corrected
    over all of them, so a verdict does not rest on one trained seed.
    """
    from robustbench_us.compare import compare_flips

    tables: dict[tuple[int, str, float, str], dict[str, list[Any]]] = {}
    for r in records:
        c = r["config"]
        if (r.get("status") != "ok" or "per_image" not in r or c["attack"] not in ("fgsm", "ifgsm")
                or c["explainer"] != "gradcam"):
            continue
        found = re.fullmatch(r"(resnet50(?:-mtl)?)(?:-s(\d))?@\d+", c["model"])
        if found is None or (found.group(2) is None) != (r["suite"] == f"paper{suffix}"):
            continue
        seed = int(found.group(2) or 0)
        tables[(seed, c["attack"], round(c["eps_grey"], 3), found.group(1))] = r["per_image"]
    rows = []
    for seed, attack, eps, model in sorted(tables):
        if model != "resnet50-mtl" or (seed, attack, eps, "resnet50") not in tables:
            continue
        rows.append(((seed, attack, eps), compare_flips(tables[(seed, attack, eps, model)],
                                                          tables[(seed, attack, eps, "resnet50")])))
    seeds = sorted({key[0] for key, _ in rows})
    if len(seeds) < 2:
        return ""
    adjusted = holm([c["p_value"] for _, c in rows])
    body = [[str(seed), attack, _num(eps, "g"), str(c["n"]), f"{c['flip_a']:.2f}", f"{c['flip_b']:.2f}",
             f"{c['difference']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]", f"{c['only_a']} / {c['only_b']}",
             f"{c['p_value']:.2g}", f"{q:.2g}"] for ((seed, attack, eps), c), q in zip(rows, adjusted)]
    at_budget = [(key, c, q) for (key, c), q in zip(rows, adjusted) if key[2] == 1]
    verdicts = []
    for attack in ("fgsm", "ifgsm"):
        cells = [(c, q) for key, c, q in at_budget if key[1] == attack]
        if not cells:
            continue
        more = sum(c["difference"] > 0 and q < 0.05 for c, q in cells)
        less = sum(c["difference"] < 0 and q < 0.05 for c, q in cells)
        same = sum(c["only_a"] + c["only_b"] == 0 for c, _ in cells)
        verdicts.append(f"{attack.upper().replace('IFGSM', 'I-FGSM')} at 1 grey level, over {len(cells)} seeds: the "
                        f"multi-task model flips significantly more (Holm-adjusted p < 0.05) in {more}, "
                        f"significantly less in {less}"
                        + (f"; the two flip exactly the same images in {same}" if same else ""))
    return ("\n## Multi-task vs single-task over three trained seeds (`paper` seed 0, `paper-seeds` seeds 1–2)\n\n"
            "Each row pairs `resnet50-mtl` (A) with `resnet50` (B) of the same seed on the same images under the "
            "same attack (predicted label, 8-bit rounding): flip rates, A − B with a paired bootstrap 95 % "
            "interval, the images only A / only B flipped, McNemar's exact p, and Holm's adjustment over every "
            f"row. {'; '.join(verdicts)}.\n\n"
            + _table(["seed", "attack", "ε (grey)", "images", "flip A", "flip B", "A − B", "only A / only B",
                      "p", "p (Holm)"], body))


def _pretrained(df: pd.DataFrame, suffix: str) -> str:
    """The BUS-BRA-pre-trained multi-task model beside the one trained from scratch, same images and attacks."""
    head = "\n## Pre-trained on BUS-BRA, then fine-tuned on BUSI (`paper-busbrapre`)\n"
    pre = df[df.base_suite == "paper-busbrapre"]
    scratch = df[(df.base_suite == "paper") & df.model.str.startswith("resnet50-mtl@")]
    if pre.empty or scratch.empty:
        return head + ("Not run at this scale yet: `STEPS=\"pretrain suites\" benchmarks/scripts/reproduce_paper.sh"
                       f"{' --scale ' + suffix[1:] if suffix else ''}`.\n")
    keys = ["attack", "eps_grey"]
    a = scratch.sort_values("explainer").drop_duplicates(keys).set_index(keys)
    b = pre.sort_values("explainer").drop_duplicates(keys).set_index(keys)
    rows = [[attack, _num(eps, "g"), str(b.loc[(attack, eps)].n), _ci(a.loc[(attack, eps)], "clean_accuracy"),
             _ci(b.loc[(attack, eps)], "clean_accuracy"), _ci(a.loc[(attack, eps)], "flip_rate"),
             _ci(b.loc[(attack, eps)], "flip_rate")]
            for attack, eps in sorted(set(a.index) & set(b.index))]
    return head + ("`resnet50-mtl` from scratch (suite `paper`) and pre-trained on BUS-BRA folds 2–5 then fine-tuned "
                   "(`resnet50-mtl+busbra`), seed 0 each, on the same BUSI test images.\n\n"
                   + _table(["attack", "ε (grey)", "images", "clean accuracy (scratch)",
                             "clean accuracy (pre-trained)", "flip rate (scratch)", "flip rate (pre-trained)"], rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default=None)
    parser.add_argument("--results", default="results")
    parser.add_argument("--leaderboards", default="leaderboards")
    args = parser.parse_args(argv)
    suffix = f"-{args.scale}" if args.scale else ""
    registry = default_registry()

    records, coverage, notes = [], [], ""
    for name in SUITES:
        suite = load_suite(name, scale=args.scale)
        found = ResultStore(args.results, suite.name).read_all()
        ok = sum(r.get("status") == "ok" for r in found)
        # Link only tables that exist: a suite not run yet has none.
        table = Path(args.leaderboards) / f"{suite.name}.md"
        shown = f"[{suite.name}]({suite.name}.md)" if found and table.is_file() else f"{suite.name} (not run)"
        coverage.append([shown, str(len(expand_cells(suite, registry))), str(ok), str(len(found) - ok)])
        records += found
        if name == "paper":
            notes = suite.notes
    df = _frame(records, suffix)
    out = [f"# Paper leaderboard summary{f' ({args.scale} scale)' if args.scale else ''}\n",
           ("Generated by `python benchmarks/scripts/summarize_paper.py"
            f"{f' --scale {args.scale}' if args.scale else ''}` from the result records — do not edit. "
            "Full tables: the linked `.md`/`.csv` files and the site (`site/index.html`).\n"),
           f"**Scale.** {notes}\n",
           "## Cells run\n",
           _table(["suite", "cells in the grid", "ok records", "failed/invalid"], coverage),
           "## The models (test split of the training data; from the model cards)\n",
           _cards(Path(args.leaderboards) / "models" / f"paper{suffix}")]

    if df.empty:
        out.append("\nNo records yet.\n")
    else:
        paper_paired = _paired(records, f"paper{suffix}")  # bootstrap intervals: computed once, used twice
        out.append(_headline(df, paper_paired))
        busi = df[(df.dataset == "busi") & df.attack.isin(LABEL_ATTACKS)]
        # The flip rate does not depend on the explainer (one set of adversarial images per attack × ε).
        flips = busi.sort_values("explainer").drop_duplicates(["model", "attack", "eps_grey"])
        out.append("\n## 1. How often does an invisible perturbation flip the diagnosis? (BUSI test split)\n")
        out.append("Label-flip rate (share of images whose predicted label changes) with its bootstrap 95 % "
                   "interval; ε in grey levels of 255 (1 = the study's budget). `random-sign` is the control: "
                   "noise of the same size.\n\n")
        rows = [[r.model, r.attack, _num(r.eps_grey, "g"), str(r.n), _ci(r, "clean_accuracy"), _ci(r, "flip_rate"),
                 _ci(r, "adv_accuracy"), _num(r.get("clean_auc")), _num(r.get("adv_auc"))]
                for _, r in flips.sort_values(["model", "attack", "eps_grey"]).iterrows()]
        rows = [[*row] for row in rows]
        out.append(_table(["model", "attack", "ε (grey)", "images", "clean accuracy", "flip rate",
                           "accuracy under attack", "clean AUC", "AUC under attack"], rows))

        out.append("\n## 2. How far does each explainer's heatmap move while the diagnosis stays?\n")
        out.append("Centre-of-mass shift of the map between clean and perturbed image, over the images whose "
                   "label did **not** flip (pixels at the run's input size, and as a share of the image "
                   "diagonal), with Spearman rank correlation of the two maps on those images (1 = unchanged). "
                   "Explanation attacks keep the label by construction; label attacks are shown at the study's "
                   "budget.\n\n")
        maps = df[(df.dataset == "busi") & (df.attack.isin(MAP_ATTACKS) | ((df.attack == "ifgsm")
                                                                          & (df.eps_grey == 1.0)))]
        rows = [[r.model, r.explainer, r.attack, _num(r.eps_grey, "g"), str(r.n), str(int(r.n_kept))
                 if not pd.isna(r.n_kept) else "—", _num(r.centroid_px_kept, ".1f"),
                 _num(r.centroid_frac_kept, ".3f"), _num(r.spearman_kept), _num(r.topk_intersection_kept)]
                for _, r in maps.sort_values(["explainer", "attack", "eps_grey", "model"]).iterrows()]
        out.append(_table(["model", "explainer", "attack", "ε (grey)", "images", "label kept", "shift (px)",
                           "shift / diagonal", "Spearman", "top-k overlap"], rows) if rows else "No records yet.\n")

        out.append("\n## 3. Is the multi-task model more robust than the single-task one?\n")
        # The two architectures trained the same way; labelled variants (e.g. pre-trained) stay out.
        pair = df[(df.dataset == "busi") & df.base_suite.isin(["paper", "paper-maps"])
                  & df.model.str.match(r"resnet50(-mtl)?@")]
        rows = []
        for (attack, eps, explainer), g in pair.groupby(["attack", "eps_grey", "explainer"]):
            single = g[g.model.str.startswith("resnet50@")]
            multi = g[g.model.str.startswith("resnet50-mtl@")]
            if single.empty or multi.empty:
                continue
            s, m = single.iloc[0], multi.iloc[0]
            rows.append([attack, _num(eps, "g"), explainer, _ci(s, "flip_rate"), _ci(m, "flip_rate"),
                         _num(s.centroid_frac_kept, ".3f"), _num(m.centroid_frac_kept, ".3f")])
        out.append("Single-task `resnet50` vs multi-task `resnet50-mtl`, same test images, same attack and ε "
                   "(flip rate with 95 % interval; heatmap shift on label-kept images as a share of the "
                   "diagonal). Overlapping intervals mean the run cannot tell them apart.\n\n")
        out.append(_table(["attack", "ε (grey)", "explainer", "flip rate single", "flip rate multi",
                           "shift single", "shift multi"], rows) if rows else "No paired records yet.\n")
        out.append(_paired_section(records, suffix, paper_paired))
        out.append(_seeds_section(records, suffix))

        transfer = df[df.dataset == "busbra"].sort_values("explainer").drop_duplicates(
            ["suite", "model", "attack", "eps_grey"])
        out.append("\n## Carried to BUS-BRA (official fold 1 test images)\n")
        rows = [[r.suite, r.model, r.attack, _num(r.eps_grey, "g"), str(r.n), _ci(r, "clean_accuracy"),
                 _num(r.get("clean_auc")), _ci(r, "flip_rate")]
                for _, r in transfer.sort_values(["suite", "model", "attack", "eps_grey"]).iterrows()]
        out.append(_table(["suite", "model", "attack", "ε (grey)", "images", "clean accuracy", "clean AUC",
                           "flip rate"], rows) if rows else "No records yet.\n")
        out.append(_pretrained(df, suffix))
    path = Path(args.leaderboards) / f"paper-summary{suffix}.md"
    path.write_text("\n".join(out), encoding="utf-8")
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
