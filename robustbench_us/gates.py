"""CI gates: a suite's thresholds checked against its records, and a JUnit XML report for CI systems.

A suite declares thresholds such as::

    [[thresholds]]
    metric = "adv_accuracy"
    op = ">="
    value = 0.6
    where = { attack = "ifgsm", eps_grey = 1 }

Each threshold is checked on every cell its ``where`` table selects, giving one
:class:`GateResult` per threshold × cell. A threshold fails its cell when the cell
did not finish ok, when the metric is missing or undefined (NaN), or when the
comparison is false; a threshold that selects no cell fails once, with the values
the suite does have, so a typo never passes silently.
"""

from __future__ import annotations

import difflib
import math
import operator
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustbench_us.records import Status
from robustbench_us.store import atomic_write_text
# The threshold format and its validation live with the suite loader, which checks them before any work;
# this module only imports them (the suite module never imports this one).
from robustbench_us.suite import WHERE_KEYS, Threshold, check_where

__all__ = ["WHERE_KEYS", "GateResult", "Threshold", "cell_matches", "check_where", "evaluate_thresholds", "failed",
           "junit_tree", "summary_line", "threshold_label", "write_junit"]

# A suite's model and attack are named two ways: ``model`` is "name@size" when input_size is set and
# ``attack`` is the display label; the plain plugin names match too.
_ALIASES = {"model": ("model", "model_name"), "attack": ("attack", "attack_name")}
_OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le, ">": operator.gt,
                                                   "<": operator.lt}
_OP_TEXT = {">=": "≥", "<=": "≤", ">": ">", "<": "<"}


@dataclass(frozen=True)
class GateResult:
    """One threshold checked on one cell (``cell_id`` is None when the threshold selected none)."""

    index: int
    threshold: Threshold
    passed: bool
    reason: str
    cell_id: str | None = None
    value: float | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The threshold as text, e.g. ``adv_accuracy >= 0.6 where attack=ifgsm``."""
        return threshold_label(self.threshold)

    def describe(self) -> str:
        """One line for a terminal: outcome, threshold, cell and reason."""
        where = f" [{self.cell_id}]" if self.cell_id else ""
        return f"{'PASS' if self.passed else 'FAIL'} {self.label}{where}: {self.reason}"


def threshold_label(threshold: Threshold) -> str:
    """``metric op value`` plus its ``where`` selection, as written in the suite."""
    text = f"{threshold.metric} {threshold.op} {threshold.value:g}"
    if threshold.where:
        text += " where " + ", ".join(f"{k}={_show(v)}" for k, v in sorted(threshold.where.items()))
    return text


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _same(key: str, wanted: Any, actual: Any) -> bool:
    if key in ("eps", "eps_grey"):
        if isinstance(wanted, bool) or not isinstance(wanted, (int, float)) or not isinstance(actual, (int, float)):
            return False
        # ε is stored as a float computed from grey levels (4/255*255 is not exactly 4).
        return math.isclose(float(wanted), float(actual), rel_tol=1e-9, abs_tol=1e-6 if key == "eps_grey" else 1e-9)
    return wanted == actual


def cell_matches(where: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
    """Whether a cell's configuration satisfies every key of ``where`` (a list means any of its values)."""
    for key, wanted in where.items():
        choices = wanted if isinstance(wanted, list) else [wanted]
        fields = _ALIASES.get(key, (key,))
        if not any(_same(key, choice, config.get(f)) for choice in choices for f in fields):
            return False
    return True


def _available(where: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for key in sorted(where):
        values = sorted({str(_show(r["config"].get(f))) for r in records for f in _ALIASES.get(key, (key,))
                         if r["config"].get(f) is not None})
        parts.append(f"{key} in {{{', '.join(values) or 'none'}}}")
    return "; ".join(parts)


def _judge(index: int, threshold: Threshold, record: Mapping[str, Any]) -> GateResult:
    config = {k: record["config"].get(k) for k in WHERE_KEYS if k in record["config"]}
    base = {"index": index, "threshold": threshold, "cell_id": record["cell_id"], "config": config}
    status = record.get("status")
    if status != Status.OK:
        error = (record.get("error") or "no error recorded").strip().splitlines()[0]
        what = ("the attack broke the contract, so the cell has no metrics" if status == Status.INVALID
                else "the cell failed, so it has no metrics")
        return GateResult(passed=False, reason=f"cell status {status!r}: {what} ({error}). Fix it and re-run the "
                                               "suite.", **base)
    metrics = record.get("metrics", {})
    if threshold.metric not in metrics:
        close = difflib.get_close_matches(threshold.metric, list(metrics), n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else f" Available: {', '.join(sorted(metrics))}."
        return GateResult(passed=False, reason=f"metric {threshold.metric!r} is not in this cell's record.{hint}",
                          **base)
    value = metrics[threshold.metric]
    if value is None or not math.isfinite(float(value)):
        return GateResult(passed=False, reason=f"{threshold.metric} is undefined (NaN) in this cell — e.g. no image "
                                               "kept its label, or a class is missing; a gate cannot pass on it",
                          **base)
    value = float(value)
    ok = _OPS[threshold.op](value, threshold.value)
    sign = _OP_TEXT[threshold.op]
    reason = (f"{threshold.metric} = {value:.4g} {sign} {threshold.value:g}" if ok
              else f"{threshold.metric} = {value:.4g}, needs {sign} {threshold.value:g}")
    return GateResult(passed=ok, reason=reason, value=value, **base)


def evaluate_thresholds(thresholds: Sequence[Threshold], records: Sequence[Mapping[str, Any]]) -> list[GateResult]:
    """Check every threshold on every cell its ``where`` selects: one result per threshold × cell.

    ``records`` are result-record dicts (``ResultStore.read_all()``); records of every status
    count, so a selected cell that failed or is invalid fails the gate instead of vanishing.
    """
    results: list[GateResult] = []
    for index, threshold in enumerate(thresholds):
        problem = check_where(threshold)
        if problem:
            results.append(GateResult(index, threshold, False, f"unusable threshold: {problem}"))
            continue
        selected = sorted((r for r in records if cell_matches(threshold.where, r.get("config", {}))),
                          key=lambda r: r["cell_id"])
        if not selected:
            where = ", ".join(f"{k}={_show(v)}" for k, v in sorted(threshold.where.items())) or "(any cell)"
            available = _available(threshold.where, records) if records else "the suite has no records yet"
            results.append(GateResult(index, threshold, False,
                                      f"no cell matches where {where}; the records have {available}. Fix the where "
                                      "table or run the suite first."))
            continue
        results.extend(_judge(index, threshold, record) for record in selected)
    return results


def failed(results: Sequence[GateResult]) -> list[GateResult]:
    """The results that did not pass."""
    return [r for r in results if not r.passed]


def summary_line(results: Sequence[GateResult]) -> str:
    """E.g. ``thresholds: 5 checks of 2 thresholds, 1 failed``."""
    bad = failed(results)
    n_thresholds = len({r.index for r in results})
    plural = "" if n_thresholds == 1 else "s"
    return f"thresholds: {len(results)} checks of {n_thresholds} threshold{plural}, {len(bad)} failed"


def junit_tree(results: Sequence[GateResult], suite_name: str) -> ET.ElementTree:
    """The JUnit XML document: one ``<testcase>`` per threshold × cell, ``<failure>`` for each that failed."""
    bad = failed(results)
    root = ET.Element("testsuites", name="robustbench-us", tests=str(len(results)), failures=str(len(bad)),
                      errors="0")
    suite = ET.SubElement(root, "testsuite", name=suite_name, tests=str(len(results)), failures=str(len(bad)),
                          errors="0", skipped="0", time="0")
    for result in results:
        case = ET.SubElement(suite, "testcase", classname=f"{suite_name}.thresholds[{result.index}]",
                             name=f"{result.label} @ {result.cell_id or 'no matching cell'}", time="0")
        properties = ET.SubElement(case, "properties")
        for key, value in (("metric", result.threshold.metric), ("op", result.threshold.op),
                           ("threshold", f"{result.threshold.value:g}"),
                           ("value", "" if result.value is None else f"{result.value:.6g}"),
                           ("cell_id", result.cell_id or "")):
            ET.SubElement(properties, "property", name=key, value=value)
        if not result.passed:
            failure = ET.SubElement(case, "failure", message=result.reason, type="ThresholdFailed")
            details = [result.reason, f"threshold: {result.label}"]
            if result.cell_id:
                details.append(f"cell: {result.cell_id}")
                details += [f"  {k} = {_show(v)}" for k, v in sorted(result.config.items())]
            failure.text = "\n".join(details)
        else:
            ET.SubElement(case, "system-out").text = result.reason
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(results: Sequence[GateResult], path: str | Path, suite_name: str) -> Path:
    """Write the JUnit XML report of ``results`` to ``path`` (atomically); returns the path."""
    path = Path(path)
    text = ET.tostring(junit_tree(results, suite_name).getroot(), encoding="unicode", xml_declaration=True)
    atomic_write_text(path, text + "\n")
    return path
