"""The summary script's statistics: Holm's adjustment and the paired multi- vs single-task rows over seeds."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scripts" / "summarize_paper.py"


@pytest.fixture(scope="module")
def summarize():
    spec = importlib.util.spec_from_file_location("summarize_paper", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_holm_matches_the_step_down_computed_by_hand(summarize):
    # Sorted: 0.01 (×4 = 0.04), 0.02 (×3 = 0.06), 0.03 (×2 = 0.06), 0.5 (×1, kept monotone: 0.5).
    assert summarize.holm([0.03, 0.5, 0.01, 0.02]) == pytest.approx([0.06, 0.5, 0.04, 0.06])
    assert summarize.holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def _record(suite, model, attack, flipped):
    n = len(flipped)
    return {"suite": suite, "status": "ok",
            "config": {"model": model, "attack": attack, "eps_grey": 1.0, "explainer": "gradcam"},
            "per_image": {"id": [f"img{i}" for i in range(n)], "label": [0] * n, "pred_clean": [0] * n,
                          "pred_adv": [int(f) for f in flipped]}}


def test_seed_rows_pair_each_seeds_models_and_name_the_flips_only_one_made(summarize):
    a0, b0 = [True] * 10 + [False] * 10, [False] * 20  # seed 0: only the multi-task model flips 10
    a1, b1 = [True] * 5 + [False] * 15, [True] * 5 + [False] * 15  # seed 1: the same images
    records = [_record("paper", "resnet50-mtl@224", "fgsm", a0), _record("paper", "resnet50@224", "fgsm", b0),
               _record("paper-seeds", "resnet50-mtl-s1@224", "fgsm", a1),
               _record("paper-seeds", "resnet50-s1@224", "fgsm", b1),
               # a model of another suite's naming is not paired with anything
               _record("paper-seeds", "resnet50-mtl@224", "fgsm", a1)]
    text = summarize._seeds_section(records, "")
    rows = [line for line in text.splitlines() if line.startswith("| 0 ") or line.startswith("| 1 ")]
    assert len(rows) == 2
    assert "| 10 / 0 |" in rows[0] and "+0.50" in rows[0]
    # McNemar's exact p for 10 discordant pairs all one way: 2 · 0.5^10; Holm over two rows doubles it.
    assert f"| {2 * 0.5 ** 10:.2g} | {4 * 0.5 ** 10:.2g} |" in rows[0]
    assert "| 0 / 0 |" in rows[1]
    assert "significantly more (Holm-adjusted p < 0.05) in 1" in text and "the same images in 1" in text


def test_the_summary_links_no_table_of_a_suite_that_was_not_run(summarize, tmp_path):
    results, boards = tmp_path / "results", tmp_path / "boards"
    boards.mkdir()
    assert summarize.main(["--results", str(results), "--leaderboards", str(boards)]) == 0
    text = (boards / "paper-summary.md").read_text()
    assert "| paper (not run) | 160 | 0 | 0 |" in text
    assert "](paper.md)" not in text and "](paper-busbra.md)" not in text
