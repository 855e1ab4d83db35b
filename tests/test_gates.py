"""CI gates: thresholds select cells, fail with reasons, and become a JUnit XML report."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from robustbench_us.gates import (GateResult, cell_matches, check_where, evaluate_thresholds, failed, summary_line,
                                  threshold_label, write_junit)
from robustbench_us.records import Record, Status
from robustbench_us.suite import Threshold, parse_suite


def record(attack="ifgsm", eps_grey=1.0, explainer="gradcam", status=Status.OK, error=None, model="resnet50-mtl",
           size=None, **metrics) -> dict:
    config = {"dataset": "phantom", "model": model if size is None else f"{model}@{size}", "model_name": model,
              "explainer": explainer, "attack": attack, "attack_name": attack, "region": "all",
              "eps": eps_grey / 255.0, "eps_grey": eps_grey / 255.0 * 255.0, "part": "test"}
    cell_id = f"phantom__{model}__{explainer}__{attack}-all__eps{eps_grey:g}"
    return Record(suite="ci", cell_id=cell_id, status=status, config=config,
                  metrics=metrics if status == Status.OK else {}, timing={}, provenance={}, error=error).to_dict()


RECORDS = [
    record("ifgsm", 1, adv_accuracy=0.75, spearman=0.9, spearman_kept=None),
    record("ifgsm", 4, adv_accuracy=0.40, spearman=0.3, spearman_kept=0.2),
    record("fgsm", 1, adv_accuracy=0.80, spearman=0.95, spearman_kept=0.97),
    record("mass-center", 4, explainer="gradcam", adv_accuracy=0.9, spearman=0.55, spearman_kept=0.6),
]


def test_one_result_per_threshold_and_selected_cell_with_real_numbers():
    results = evaluate_thresholds([Threshold("adv_accuracy", ">=", 0.6, {"attack": "ifgsm"})], RECORDS)
    assert [(r.value, r.passed) for r in results] == [(0.75, True), (0.40, False)]
    assert results[1].reason == "adv_accuracy = 0.4, needs ≥ 0.6"
    assert results[0].reason == "adv_accuracy = 0.75 ≥ 0.6"
    assert results[1].cell_id.endswith("eps4") and results[1].config["attack"] == "ifgsm"


@pytest.mark.parametrize(("op", "value", "expected"), [(">=", 0.75, True), (">", 0.75, False), ("<=", 0.75, True),
                                                       ("<", 0.75, False), ("<", 0.76, True)])
def test_each_operator_compares_the_metric_with_the_value(op, value, expected):
    where = {"attack": "ifgsm", "eps_grey": 1}
    (result,) = evaluate_thresholds([Threshold("adv_accuracy", op, value, where)], RECORDS)
    assert result.passed is expected


def test_eps_grey_matches_despite_float_rounding_and_eps_in_unit_range():
    by_grey = evaluate_thresholds([Threshold("spearman", ">=", 0.0, {"eps_grey": 4})], RECORDS)
    by_eps = evaluate_thresholds([Threshold("spearman", ">=", 0.0, {"eps": 4 / 255})], RECORDS)
    assert [r.cell_id for r in by_grey] == [r.cell_id for r in by_eps] and len(by_grey) == 2
    # A stored ε computed in floating point (here one ulp off) still matches the number written in the suite.
    rounded = record("fgsm", 3, spearman=0.9)
    rounded["config"]["eps_grey"] = 3.0000000000000004
    (result,) = evaluate_thresholds([Threshold("spearman", ">=", 0.5, {"eps_grey": 3})], [rounded])
    assert result.passed
    assert not evaluate_thresholds([Threshold("spearman", ">=", 0.5, {"eps_grey": 3.01})], [rounded])[0].passed


def test_a_list_selects_any_of_its_values_and_no_where_selects_every_cell():
    results = evaluate_thresholds([Threshold("spearman", ">=", 0.5, {"attack": ["fgsm", "mass-center"]}),
                                   Threshold("spearman", ">=", 0.0)], RECORDS)
    assert [r.index for r in results] == [0, 0, 1, 1, 1, 1]
    assert all(r.passed for r in results)


def test_model_matches_by_plugin_name_or_by_name_at_size():
    recs = [record(size=128, adv_accuracy=0.7)]
    for name in ("resnet50-mtl", "resnet50-mtl@128"):
        (result,) = evaluate_thresholds([Threshold("adv_accuracy", ">=", 0.5, {"model": name})], recs)
        assert result.passed


def test_a_threshold_that_selects_no_cell_fails_and_lists_what_exists():
    (result,) = evaluate_thresholds([Threshold("adv_accuracy", ">=", 0.6, {"attack": "pgd"})], RECORDS)
    assert not result.passed and result.cell_id is None
    assert "no cell matches where attack=pgd" in result.reason
    assert "attack in {fgsm, ifgsm, mass-center}" in result.reason


def test_a_missing_metric_fails_with_the_closest_name():
    (result,) = evaluate_thresholds([Threshold("adv_acuracy", ">=", 0.6, {"attack": "fgsm"})], RECORDS)
    assert not result.passed and "'adv_acuracy' is not in this cell's record. Did you mean 'adv_accuracy'?" \
        in result.reason


def test_an_undefined_metric_fails():
    (result,) = evaluate_thresholds([Threshold("spearman_kept", ">=", 0.0, {"attack": "ifgsm", "eps_grey": 1})],
                                    RECORDS)
    assert not result.passed and "undefined (NaN)" in result.reason and result.value is None


def test_failed_and_invalid_cells_fail_the_gate_with_their_error():
    recs = [record("pgd", 1, status=Status.FAILED, error="plugin 'x' raised ValueError: boom\nTraceback ..."),
            record("over", 1, status=Status.INVALID, error="attack 'over' broke the contract: over budget")]
    results = evaluate_thresholds([Threshold("adv_accuracy", ">=", 0.0)], recs)
    assert [r.passed for r in results] == [False, False]
    reasons = {r.config["attack"]: r.reason for r in results}
    assert "cell status 'failed'" in reasons["pgd"] and "ValueError: boom" in reasons["pgd"]
    assert "Traceback" not in reasons["pgd"]
    assert "cell status 'invalid'" in reasons["over"] and "over budget" in reasons["over"]


def test_an_unknown_where_key_fails_and_suggests_the_right_one():
    threshold = Threshold("adv_accuracy", ">=", 0.6, {"atack": "fgsm"})
    assert "Did you mean 'attack'?" in check_where(threshold)
    (result,) = evaluate_thresholds([threshold], RECORDS)
    assert not result.passed and "unusable threshold" in result.reason
    assert check_where(Threshold("x", "=>", 1.0)) == "op '=>' is not one of >=, <=, >, <"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "0.6"])
def test_a_threshold_value_that_is_not_a_finite_number_is_unusable(value):
    threshold = Threshold("adv_accuracy", ">=", value, {"attack": "ifgsm"})
    assert check_where(threshold) == (f"value {value!r} is not a finite number; every comparison with it would "
                                      "fail")
    (result,) = evaluate_thresholds([threshold], RECORDS)  # one result, not one failure per selected cell
    assert not result.passed and result.cell_id is None
    assert result.reason == f"unusable threshold: value {value!r} is not a finite number; every comparison with it " \
                            "would fail"


def test_cell_matches_requires_every_key():
    config = RECORDS[0]["config"]
    assert cell_matches({"attack": "ifgsm", "explainer": "gradcam"}, config)
    assert not cell_matches({"attack": "ifgsm", "explainer": "saliency"}, config)


def test_thresholds_from_a_suite_file_table():
    suite = parse_suite({
        "datasets": [{"name": "phantom"}], "models": [{"name": "resnet50"}], "explainers": [{"name": "gradcam"}],
        "attacks": [{"name": "ifgsm", "eps_grey": [1, 4]}], "suite": {"name": "ci"},
        "thresholds": [{"metric": "adv_accuracy", "op": ">=", "value": 0.6, "where": {"attack": "ifgsm",
                                                                                      "eps_grey": 4}}],
    })
    (result,) = evaluate_thresholds(suite.thresholds, RECORDS)
    assert not result.passed and result.value == 0.40
    assert threshold_label(suite.thresholds[0]) == "adv_accuracy >= 0.6 where attack=ifgsm, eps_grey=4"


def test_junit_report_has_one_testcase_per_check_and_a_failure_for_each_failed_one(tmp_path):
    thresholds = [Threshold("adv_accuracy", ">=", 0.6, {"attack": "ifgsm"}),
                  Threshold("spearman", ">=", 0.5, {"attack": "pgd"})]
    results = evaluate_thresholds(thresholds, RECORDS)
    assert len(failed(results)) == 2 and summary_line(results) == "thresholds: 3 checks of 2 thresholds, 2 failed"
    path = write_junit(results, tmp_path / "reports" / "junit.xml", "ci")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<?xml")
    root = ET.fromstring(text)
    assert root.tag == "testsuites" and root.get("tests") == "3" and root.get("failures") == "2"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "ci" and suite.get("failures") == "2"
    cases = suite.findall("testcase")
    assert [c.get("classname") for c in cases] == ["ci.thresholds[0]"] * 2 + ["ci.thresholds[1]"]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure.get("message") == "adv_accuracy = 0.4, needs ≥ 0.6" and failure.get("type") == "ThresholdFailed"
    assert "eps_grey = 4" in failure.text
    assert "no matching cell" in cases[2].get("name") and "no cell matches" in cases[2].find("failure").get("message")
    values = {p.get("name"): p.get("value") for p in cases[1].find("properties")}
    assert values == {"metric": "adv_accuracy", "op": ">=", "threshold": "0.6", "value": "0.4",
                      "cell_id": results[1].cell_id}


def test_an_empty_report_is_valid_junit(tmp_path):
    root = ET.parse(write_junit([], tmp_path / "empty.xml", "ci")).getroot()
    assert root.get("tests") == "0" and root.find("testsuite").get("name") == "ci"


def test_describe_is_one_readable_line():
    result = GateResult(0, Threshold("flip_rate", "<=", 0.1), False, "flip_rate = 0.3, needs ≤ 0.1", cell_id="c1")
    assert result.describe() == "FAIL flip_rate <= 0.1 [c1]: flip_rate = 0.3, needs ≤ 0.1"
