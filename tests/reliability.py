"""Rows of docs/reliability.md, reported by the tests that produce them.

A test takes the ``reliability`` fixture and calls ``reliability.row(area, case,
outcome, **counts)``; ``pytest --reliability-doc docs/reliability.md`` writes the
table from the rows of the tests that passed in that very run, so no number in it is
typed by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    area: str
    case: str
    outcome: str
    counts: dict[str, Any] = field(default_factory=dict)
    test: str = ""
    passed: bool = False


class Reliability:
    """Collects rows for one test."""

    def __init__(self, nodeid: str, sink: list[Row]) -> None:
        self.nodeid = nodeid
        self.sink = sink

    def row(self, area: str, case: str, outcome: str, **counts: Any) -> None:
        self.sink.append(Row(area, case, outcome, dict(counts), self.nodeid))


def render(rows: list[Row], command: str) -> str:
    lines = [
        "# Reliability: faults injected, bad inputs tried, and what happened",
        "",
        "Every row below was produced by a test in `tests/` during the run that wrote this page",
        f"(`{command}`); counts come from that run. A row appears only if its test passed.",
        "",
        "| area | fault or bad input | outcome | counts | test |",
        "|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r.area, r.case)):
        if not r.passed:
            continue
        counts = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in r.counts.items())
        test = r.test.split("::", 1)[-1]
        lines.append(f"| {r.area} | {r.case} | {r.outcome} | {counts} | `{r.test.split('::')[0]}::{test}` |")
    n = sum(r.passed for r in rows)
    lines += ["", f"{n} rows. Nothing was lost in any of them: every finished cell's record survived and "
              "every refused input left earlier results untouched.", ""]
    return "\n".join(lines)
