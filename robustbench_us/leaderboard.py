"""Leaderboard tables, always regenerated from records (never edited by hand)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from robustbench_us.markdown import markdown_cell, markdown_text
from robustbench_us.records import Status
from robustbench_us.store import atomic_write_text

CONFIG_COLUMNS = ["dataset", "model", "explainer", "attack", "region", "eps", "eps_grey", "n_images"]
# Protocol settings a record's configuration holds only when they differ from their default (so
# earlier records keep their cell ids); a table shows each when any of its records sets it.
PROTOCOL_COLUMNS = {"labels": "true", "quantize": "none"}
# The headline metrics, in table order; any other metric in the records follows them.
# The tables and the site share this order (the study's questions first).
HEADLINE = ("clean_accuracy", "adv_accuracy", "flip_rate", "clean_sensitivity", "adv_sensitivity",
            "clean_specificity", "adv_specificity", "clean_auc", "adv_auc", "centroid_px", "centroid_frac",
            "centroid_frac_kept", "spearman", "spearman_kept", "topk_intersection", "topk_intersection_kept",
            "mass_in_lesion_clean", "mass_in_lesion_adv", "dice_clean", "dice_adv", "linf_grey", "l2_grey")
SORT_KEY = ["dataset", "model", "attack", "eps", "explainer"]
SORT_DESCRIPTION = ("rows sorted by dataset, model, attack, ε, explainer; "
                    "compare flip_rate (lower is more robust) and centroid_frac_kept (lower is a steadier heatmap)")


def protocol_keys(records: Sequence[dict[str, Any]]) -> list[str]:
    """The protocol settings (:data:`PROTOCOL_COLUMNS`) that any of ``records`` sets, in table order."""
    return [key for key in PROTOCOL_COLUMNS if any(key in rec["config"] for rec in records)]


def records_frame(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per ok record: configuration columns, then metric columns (numbers, NaN where undefined)."""
    rows = []
    ok = [rec for rec in records if rec["status"] == Status.OK]
    config_columns = CONFIG_COLUMNS + protocol_keys(ok)
    for rec in ok:
        row = {key: rec["config"].get(key, PROTOCOL_COLUMNS.get(key)) for key in config_columns}
        row["cell_id"] = rec["cell_id"]
        row |= {k: (math.nan if v is None else v) for k, v in rec["metrics"].items()}
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=CONFIG_COLUMNS + ["cell_id"])
    frame = pd.DataFrame(rows)
    metric_columns = [c for c in HEADLINE if c in frame.columns]
    metric_columns += sorted(c for c in frame.columns if c not in metric_columns and c not in config_columns
                             and c != "cell_id")
    frame = frame[config_columns + metric_columns + ["cell_id"]]
    frame["n_images"] = frame["n_images"].astype("Int64")  # a count: the records' number of images used
    return frame.sort_values(SORT_KEY, kind="stable").reset_index(drop=True)


# A spreadsheet reads a cell starting with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def csv_text(value: Any) -> Any:
    """A text cell a spreadsheet shows as text: a leading ``'`` when it would start a formula; numbers as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.match(value):
        return "'" + value
    return value


def _csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    text_columns = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if not text_columns:
        return frame
    out = frame.copy()
    for column in text_columns:
        out[column] = out[column].map(csv_text)
    return out


def _markdown(frame: pd.DataFrame, suite: str, records: Sequence[dict[str, Any]], notes: str) -> str:
    # Intervals ride along in brackets; the CSV keeps every metric and the cell id. Every
    # text (names, labels, notes) comes from suite files and plugins, so none of it may
    # carry HTML into a viewer that renders the page.
    shown = [c for c in frame.columns if c in CONFIG_COLUMNS or c in PROTOCOL_COLUMNS or c in HEADLINE]

    def fmt(column: str, value: Any) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return "–"
            return f"{value:.4g}" if column == "eps" else f"{value:.3f}"
        return markdown_cell(value)

    lines = [f"# Leaderboard: {markdown_text(suite)}", ""]
    if notes:
        lines += [markdown_text(notes), ""]
    failed = sum(1 for r in records if r["status"] == Status.FAILED)
    invalid = sum(1 for r in records if r["status"] == Status.INVALID)
    lines += [f"{len(frame)} cells ({failed} failed, {invalid} invalid, not shown); {SORT_DESCRIPTION}. "
              "Accuracy-type metrics show the point estimate and, in brackets, the bootstrap 95 % interval "
              "where the records carry one. Generated from the records by `robustbench-us leaderboard` — "
              "do not edit.", ""]
    lines.append("| " + " | ".join(markdown_cell(c) for c in shown) + " |")
    lines.append("|" + "---|" * len(shown))
    for _, row in frame.iterrows():
        cells = []
        for column in shown:
            text = fmt(column, row[column])
            low, high = row.get(f"{column}_ci_low"), row.get(f"{column}_ci_high")
            if isinstance(low, float) and isinstance(high, float) and not (math.isnan(low) or math.isnan(high)):
                text += f" [{low:.2f}, {high:.2f}]"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_leaderboard(records: Sequence[dict[str, Any]], suite: str, out_dir: str | Path = "leaderboards", *,
                      notes: str = "") -> list[Path]:
    """Write ``<out_dir>/<suite>.csv`` and ``<out_dir>/<suite>.md`` from records; returns the paths."""
    out = Path(out_dir)
    frame = records_frame(records)
    csv_path, md_path = out / f"{suite}.csv", out / f"{suite}.md"
    atomic_write_text(csv_path, _csv_frame(frame).to_csv(index=False, float_format="%.6g"))
    atomic_write_text(md_path, _markdown(frame, suite, records, notes))
    return [csv_path, md_path]
