"""Paired comparison of two models (robustbench-us compare): the tests' arithmetic and the CLI on a toy suite."""

from __future__ import annotations

import json
import math

import pytest

from robustbench_us.cli import main
from robustbench_us.compare import CompareError, compare_flips, compare_models, compare_shifts


def table(flips: list[bool], shifts: list[float | None] | None = None, ids: list[str] | None = None) -> dict:
    n = len(flips)
    return {"id": ids or [f"img{i}" for i in range(n)], "label": [0] * n, "pred_clean": [0] * n,
            "pred_adv": [int(f) for f in flips], "centroid_px": shifts or [1.0] * n}


def test_mcnemar_exact_matches_the_binomial_tail_by_hand():
    # 10 images only A flips, 2 only B flips, 8 both, 20 neither: n = 40.
    a = table([True] * 10 + [False] * 2 + [True] * 8 + [False] * 20)
    b = table([False] * 10 + [True] * 2 + [True] * 8 + [False] * 20)
    got = compare_flips(a, b)
    # Two-sided exact McNemar: 2 · P(X ≤ 2), X ~ Binomial(12, 1/2) = 2 · (1 + 12 + 66) / 4096.
    assert got["p_value"] == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert (got["n"], got["only_a"], got["only_b"]) == (40, 10, 2)
    assert got["flip_a"] == pytest.approx(18 / 40) and got["flip_b"] == pytest.approx(10 / 40)
    assert got["difference"] == pytest.approx(8 / 40)
    assert got["ci_low"] < 8 / 40 < got["ci_high"] and got["ci_low"] > 0  # the discordance is one-sided


def test_identical_outcomes_are_no_difference():
    a = table([True, False, True, False])
    got = compare_flips(a, a)
    assert got["p_value"] == 1.0 and got["difference"] == 0.0 and got["ci_low"] == got["ci_high"] == 0.0


def test_images_are_paired_by_id_not_by_position():
    a = table([True, False, False], ids=["x", "y", "z"])
    b = table([False, False, True], ids=["z", "y", "x"])  # the same outcomes, listed in another order
    assert compare_flips(a, b)["only_a"] == 0 and compare_flips(a, b)["only_b"] == 0
    with pytest.raises(CompareError, match="share no image id"):
        compare_flips(a, table([True], ids=["w"]))


def test_shifts_use_images_where_neither_label_flipped():
    a = table([False, False, True, False], shifts=[3.0, 5.0, 100.0, 7.0])
    b = table([False, False, False, True], shifts=[1.0, 1.0, 1.0, 1.0])
    got = compare_shifts(a, b, diagonal=10.0)
    assert got["n_kept"] == 2  # image 2 flipped for A, image 3 for B
    assert got["shift_a"] == pytest.approx(0.4) and got["shift_b"] == pytest.approx(0.1)
    assert got["difference"] == pytest.approx(0.3)
    # Models run at other input sizes: each shift is a share of its own diagonal.
    assert compare_shifts(a, b, 10.0, 2.5)["shift_b"] == pytest.approx(0.4)
    nothing = compare_shifts(table([True]), table([False]), diagonal=10.0)
    assert nothing["n_kept"] == 0 and math.isnan(nothing["p_value"])


TOY = """
[suite]
name = "pair"
seed = 1
n_images = 12
batch_size = 6

[[datasets]]
name = "toy-squares"
options = {{ count = 40 }}

[[models]]
name = "tiny-cnn"
train = {{ epochs = 1, batch_size = 8, lr = 1e-3, augment = false }}

[[models]]
name = "tiny-cnn"
label = "tiny-cnn-long"
train = {{ epochs = 3, batch_size = 8, lr = 1e-3, augment = false }}

[[explainers]]
name = "gradcam"

[[explainers]]
name = "{second}"

[[attacks]]
name = "fgsm"
eps_grey = [2, 8]
"""


@pytest.fixture
def toy_env(use_plugins):
    use_plugins("gradcam,fgsm,gradients")


def test_compare_cli_on_a_toy_suite(tmp_path, toy_env, capsys):
    path = tmp_path / "pair.toml"
    path.write_text(TOY.format(second="saliency"))
    results = str(tmp_path / "results")
    assert main(["run", str(path), "--results", results, "--leaderboards", str(tmp_path / "lb"),
                 "--no-progress"]) == 0
    capsys.readouterr()
    out_file = tmp_path / "cmp.md"
    assert main(["compare", str(path), "tiny-cnn", "tiny-cnn-long", "--results", results,
                 "--out", str(out_file)]) == 0
    text = capsys.readouterr().out
    assert text == out_file.read_text()
    flip_rows = [line for line in text.splitlines() if line.startswith("| toy-squares | fgsm")][:2]
    # A label attack's adversarial images serve every explainer: one flip row per ε, not per explainer.
    assert len([line for line in text.split("## Heatmap")[0].splitlines() if line.startswith("| toy")]) == 2
    assert len([line for line in text.split("## Heatmap")[1].splitlines() if line.startswith("| toy")]) == 4
    assert all("(any)" in row for row in flip_rows)
    records = [json.loads(p.read_text()) for p in (tmp_path / "results" / "pair" / "records").glob("*.json")]
    flips, _ = compare_models(records, "tiny-cnn", "tiny-cnn-long", label_attacks={"fgsm"})
    for f in flips:  # the rates agree with the records' own flip_rate
        rec = next(r for r in records if r["config"]["model"] == "tiny-cnn" and r["config"]["eps_grey"] == f.eps_grey)
        assert f.flip_a == pytest.approx(rec["metrics"]["flip_rate"])
        assert 0 <= f.q_value <= 1 and f.q_value >= f.p_value - 1e-12


def test_compare_refuses_records_without_per_image_tables_and_unknown_models(tmp_path, toy_env, capsys):
    path = tmp_path / "pair.toml"
    path.write_text(TOY.format(second="saliency"))
    results = tmp_path / "results"
    main(["run", str(path), "--results", str(results), "--leaderboards", str(tmp_path / "lb"), "--no-progress"])
    capsys.readouterr()
    assert main(["compare", str(path), "tiny-cnn", "resnet50", "--results", str(results)]) == 2
    assert "model 'resnet50' is not in these records. Models: tiny-cnn, tiny-cnn-long" in capsys.readouterr().err
    records = [json.loads(p.read_text()) for p in (results / "pair" / "records").glob("*.json")]
    for r in records:
        r.pop("per_image")
    with pytest.raises(CompareError, match="no per-image table.*run the suite again"):
        compare_models(records, "tiny-cnn", "tiny-cnn-long", label_attacks={"fgsm"})


def test_markdown_carries_no_live_html_from_model_or_attack_names(reliability):
    from robustbench_us.compare import FlipComparison, markdown

    hostile = "<img src=x onerror=alert(1)>|"
    row = FlipComparison(dataset="busi", attack=hostile, region="all", eps_grey=1.0, explainer=None, n=4,
                         flip_a=0.5, flip_b=0.25, only_a=1, only_b=0, difference=0.25, ci_low=0.0, ci_high=0.5,
                         p_value=1.0, q_value=1.0)
    text = markdown([row], [], hostile, "resnet50")
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "&lt;img src=x onerror=alert(1)&gt;\\|" in text  # the pipe cannot end the table cell early
    reliability.row("Security", "a model or attack named `<img src=x onerror=…>|` in `robustbench-us compare`",
                    "escaped in its Markdown: no live HTML, no broken table", tables_checked=1)
