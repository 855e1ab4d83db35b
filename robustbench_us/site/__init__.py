"""The published leaderboard site: static HTML regenerated from records, opened from the file system.

Layout of ``out_dir``::

    index.html                          suites, with counts and what each covers
    static/site.css, static/site.js     no CDN, nothing from the network
    suites/<suite>/index.html           sortable, filterable table of the suite's cells
    suites/<suite>/records/<cell>.json  each record as it was written
    suites/<suite>/figures/<cell>/...   each cell's figures, copied from the results folder (or kept
                                        from the site being replaced, for an unchanged record)
    suites/<suite>/sweeps/*.png         accuracy and heatmap shift against ε per model × explainer

Every plugin-supplied string reaches the page through jinja2 autoescaping (HTML
text and attributes) or ``urllib.parse.quote`` (links); the script reads data
attributes and never writes HTML, so a plugin named ``<script>…`` shows as text.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import jinja2

from robustbench_us.errors import RecordError, RobustBenchError
from robustbench_us.figures import write_sweep_figures
from robustbench_us.leaderboard import HEADLINE, PROTOCOL_COLUMNS, protocol_keys
from robustbench_us.metrics import METRIC_DESCRIPTIONS
from robustbench_us.schema import validate_record
from robustbench_us.store import left_behind, slug, temp_prefix

MARKER = ".robustbench-us-site"
CONFIG_COLUMNS = (("dataset", "dataset"), ("model", "model"), ("explainer", "explainer"), ("attack", "attack"),
                  ("region", "region"), ("eps_grey", "ε (grey)"), ("n_images", "n"))
# Shown when a record sets them (their defaults are left out of configurations, see the runner).
PROTOCOL_LABELS = {"labels": "attacked label", "quantize": "rounding"}
FILTERS = (("model", "model"), ("explainer", "explainer"), ("attack", "attack"), ("eps", "ε (grey levels)"))
LOWER_IS_BETTER = ("flip_rate", "centroid")


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str  # "text" or "number": how the script sorts it
    description: str = ""


@dataclass
class Cell:
    text: str
    sort: str = ""
    ci: str = ""
    css: str = ""


@dataclass
class Row:
    cells: list[Cell]
    filters: dict[str, str]
    record_href: str
    figures: list[tuple[str, str | None]] = field(default_factory=list)  # (label, href or None if missing)


def _href(path: PurePosixPath | str) -> str:
    return quote(str(path), safe="/")


def _format_number(value: float) -> str:
    if value == int(value) and abs(value) < 1e6:
        return str(int(value)) if abs(value) >= 10 else f"{value:.3f}"
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"


def format_eps(eps_grey: Any) -> str:
    """ε in grey levels as the site shows it (and filters on)."""
    return "–" if eps_grey is None else f"{float(eps_grey):.4g}"


def _metric_cell(metrics: dict[str, Any], key: str) -> Cell:
    value = metrics.get(key)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return Cell("–", "", css="missing")
    cell = Cell(_format_number(float(value)), repr(float(value)))
    low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    if isinstance(low, (int, float)) and isinstance(high, (int, float)):
        cell.ci = f"[{low:.2f}, {high:.2f}]"
    return cell


def metric_columns(records: Sequence[dict[str, Any]]) -> list[Column]:
    """The metric columns of a table: headline metrics present in any record, then the rest sorted."""
    present = {k for rec in records for k in rec["metrics"]}
    base = {k for k in present if not (k.endswith("_ci_low") or k.endswith("_ci_high"))}
    keys = [k for k in HEADLINE if k in base] + sorted(base - set(HEADLINE))
    columns = []
    for key in keys:
        description = METRIC_DESCRIPTIONS.get(key, "")
        if any(key.startswith(p) for p in LOWER_IS_BETTER):
            description += " (lower is steadier)"
        columns.append(Column(key, key.replace("_", " "), "number", description))
    return columns


def _row(rec: dict[str, Any], columns: list[Column], figure_links: list[tuple[str, str | None]],
         config_columns: Sequence[tuple[str, str]]) -> Row:
    config, metrics = rec["config"], rec["metrics"]
    cells = []
    for key, _ in config_columns:
        value = config.get(key, PROTOCOL_COLUMNS.get(key))  # a protocol setting left at its default
        if key == "eps_grey":
            cells.append(Cell(format_eps(value), "" if value is None else repr(float(value))))
        elif key == "n_images":
            cells.append(Cell("all" if value in (0, None) else str(value), str(value or 0)))
        else:
            cells.append(Cell(str(value), str(value)))
    cells += [_metric_cell(metrics, c.key) for c in columns]
    filters = {"model": str(config.get("model")), "explainer": str(config.get("explainer")),
               "attack": str(config.get("attack")), "eps": format_eps(config.get("eps_grey"))}
    href = _href(PurePosixPath("records") / f"{rec['cell_id']}.json")
    return Row(cells, filters, href, figure_links)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("robustbench_us.site", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    return env


FIGURE_FORMATS = ("png", "webp")
WEBP_QUALITY = 80


def _place_figure(source: Path, target: Path, figure_format: str) -> None:
    """Copy a PNG figure as it is, or re-encode it as lossy WebP (about 5× smaller; the original stays)."""
    if figure_format == "png":
        shutil.copyfile(source, target)
        return
    from PIL import Image

    with Image.open(source) as image:
        image.convert("RGB").save(target, format="WEBP", quality=WEBP_QUALITY, method=4)


def _file_inside(root: Path | None, relative: str | PurePosixPath) -> Path | None:
    """``root / relative`` if it is a file that does not lead out of ``root``, else None."""
    if root is None:
        return None
    candidate = (root / relative).resolve()
    return candidate if root.resolve() in candidate.parents and candidate.is_file() else None


def _published_figures(rec: dict[str, Any], published: Path | None) -> list[str]:
    """The figures of this very record on the site being replaced (same cell id and integrity), else none.

    Used when the results folder lacks a figure (a fresh checkout holds the site's records
    but not the run's PNGs): a figure never outlives the numbers it was drawn from.
    """
    if published is None or not rec.get("integrity"):
        return []
    try:
        old = json.loads((published / "records" / f"{rec['cell_id']}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(old, dict) or old.get("integrity") != rec["integrity"]:
        return []
    return list(old.get("figures") or [])


def _copy_figures(rec: dict[str, Any], suite_results: Path | None, suite_out: Path,
                  figure_format: str = "png", published: Path | None = None) -> list[tuple[str, str | None]]:
    """Copy a record's figures into the site; (label, link) per figure, link None where the file is missing.

    Each figure comes from the results folder, else from ``published`` (this suite's folder
    in the site being replaced) when that site holds the same record.
    """
    links = []
    earlier: list[str] | None = None  # read once, and only if the results folder lacks a figure
    for figure in rec.get("figures") or []:
        label = PurePosixPath(figure).stem.replace("_", " ")
        name = PurePosixPath(figure).name
        if figure_format != "png":
            name = f"{PurePosixPath(name).stem}.{figure_format}"
        target = PurePosixPath("figures") / slug(rec["cell_id"]) / slug(name)
        source = _file_inside(suite_results, figure)
        kept = None
        if source is None:
            if earlier is None:
                earlier = _published_figures(rec, published)
            kept = _file_inside(published, target) if figure in earlier else None
        if source is None and kept is None:
            links.append((label, None))
            continue
        (suite_out / target).parent.mkdir(parents=True, exist_ok=True)
        if source is not None:
            _place_figure(source, suite_out / target, figure_format)
        else:
            shutil.copyfile(kept, suite_out / target)  # already in this format: copied, never re-encoded
        links.append((label, _href(target)))
    return links


def _render_suite(env: jinja2.Environment, suite: str, records: list[dict[str, Any]], suite_out: Path,
                  results_dir: Path | None, title: str, figure_format: str = "png",
                  about: Mapping[str, Any] | None = None, published: Path | None = None) -> dict[str, Any]:
    about = about or {}
    ok = [r for r in records if r["status"] == "ok"]
    ok.sort(key=lambda r: tuple(str(r["config"].get(k)) for k in ("dataset", "model", "attack", "region"))
            + (float(r["config"].get("eps_grey") or 0), str(r["config"].get("explainer"))))
    others = [{"cell_id": r["cell_id"], "status": r["status"], "error": r.get("error") or "no reason recorded",
               "href": _href(PurePosixPath("records") / f"{r['cell_id']}.json")}
              for r in sorted((r for r in records if r["status"] != "ok"), key=lambda r: r["cell_id"])]
    for rec in records:
        # The schema limits cell ids to file-name-safe characters, so the id is the file name.
        path = suite_out / "records" / f"{rec['cell_id']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    suite_results = None if results_dir is None else Path(results_dir) / suite
    config_columns = CONFIG_COLUMNS + tuple((key, PROTOCOL_LABELS[key]) for key in protocol_keys(ok))
    columns = [Column(k, label, "number" if k in ("eps_grey", "n_images") else "text") for k, label in config_columns]
    metric_cols = metric_columns(ok)
    rows = [_row(r, metric_cols, _copy_figures(r, suite_results, suite_out, figure_format, published),
                 config_columns) for r in ok]
    sweeps = [_href(PurePosixPath("sweeps") / p.name) for p in write_sweep_figures(ok, suite_out / "sweeps")]
    options = {key: sorted({row.filters[key] for row in rows},
                           key=(lambda v: (float(v) if v != "–" else math.inf)) if key == "eps" else str)
               for key, _ in FILTERS}
    counts = Counter(r["status"] for r in records)
    missing_figures = sum(1 for row in rows for _, href in row.figures if href is None)
    grid = about.get("grid")
    not_run = grid - len(records) if grid else 0  # every record is ok, failed or invalid
    html = env.get_template("suite.html").render(
        title=title, suite=suite, columns=columns + metric_cols, rows=rows, filters=FILTERS, options=options,
        sweeps=sweeps, others=others, counts=counts, missing_figures=missing_figures, static="../../static",
        notes=about.get("notes"), grid=grid, not_run=not_run)
    (suite_out / "index.html").write_text(html, encoding="utf-8")
    config = [r["config"] for r in records]
    return {"name": suite, "href": _href(PurePosixPath("suites") / slug(suite) / "index.html"),
            "ok": counts["ok"], "failed": counts["failed"], "invalid": counts["invalid"],
            "grid": grid,
            **{key: sorted({str(c.get(key)) for c in config}) for key in ("dataset", "model", "explainer", "attack")}}


def _check_out_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise RobustBenchError(f"{out} exists and is not a site written by robustbench-us (no {MARKER} file); "
                               "publishing would replace it. Choose a new or empty folder.")


def _remove_stale_staging(out: Path) -> None:
    """Remove the staging folders (``.<out>.w<pid>@<host>.*``) of publishes that were killed.

    A publish builds the new site in a staging folder beside ``out`` and swaps it in; a
    killed one leaves that folder (and, killed mid-swap, the retired earlier site)
    behind. Those of a live concurrent publish are kept. A site retired while ``out``
    is missing (killed between the two renames) is put back rather than deleted.
    """
    import glob

    for path in sorted(out.parent.glob(f".{glob.escape(out.name)}.*")):
        if not path.is_dir() or path.is_symlink() or not left_behind(path):
            continue
        staging = (path / MARKER).is_file() or not any(path.iterdir())
        retired = (path / "site" / MARKER).is_file()
        if not (staging or retired):
            continue  # not a folder a publish made: leave it
        if retired and not out.exists():
            (path / "site").replace(out)
        shutil.rmtree(path, ignore_errors=True)


def publish_site(records: Sequence[dict[str, Any]], out_dir: str | Path, *, title: str = "robustbench_us leaderboard",
                 results_dir: str | Path | None = None, figure_format: str = "png",
                 about: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    """Write the static site for ``records`` into ``out_dir`` (replacing an earlier site there); returns index.html.

    ``figure_format`` "png" copies each cell's figures as they are; "webp" re-encodes
    them as lossy WebP (quality 80, about a fifth of the size) for a site kept in git.
    ``about`` maps a suite name to ``{"notes": text, "grid": cells in its grid}``; both
    are shown on the suite's page and the index (the notes say at which scale it ran, the
    grid size how much of it the records cover).

    Records are validated against the published schema first. ``results_dir`` is the
    results folder the records came from (``<results_dir>/<suite>/<figure>``): their
    figures are copied in from there. A figure missing there is kept from the site being
    replaced when that site holds the same record (same cell id and integrity), so a site
    can be republished from its own records plus new ones; otherwise the row lists the
    figure unlinked.
    """
    out = Path(out_dir)
    if figure_format not in FIGURE_FORMATS:
        raise RobustBenchError(f"figure format {figure_format!r} is not one of {', '.join(FIGURE_FORMATS)}.")
    _check_out_dir(out)
    by_suite: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        source = f"record {rec.get('suite', '?')}/{rec.get('cell_id', '?')}" if isinstance(rec, dict) else "record"
        validate_record(rec, source)
        by_suite.setdefault(rec["suite"], []).append(rec)
    slugs = Counter(slug(s) for s in by_suite)
    clashes = [s for s in by_suite if slugs[slug(s)] > 1]
    if clashes:
        raise RecordError(f"suites {', '.join(map(repr, sorted(clashes)))} share the folder name "
                          f"{slug(clashes[0])!r} on the site. Rename one of the suites.")
    env = _environment()
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(out)
    # Tagged with this process, so a later publish removes it if this one is killed.
    staging = Path(tempfile.mkdtemp(prefix=temp_prefix(out.name), dir=out.parent))
    try:
        staging.chmod(0o755)
        (staging / MARKER).write_text("written by robustbench-us leaderboard publish; regenerated from records\n",
                                      encoding="utf-8")
        static = staging / "static"
        static.mkdir()
        for name in ("site.css", "site.js"):
            (static / name).write_bytes(resources.files(__name__).joinpath("static", name).read_bytes())
        earlier = out / "suites" if (out / MARKER).is_file() else None  # the site being replaced, if any
        suites = [_render_suite(env, name, recs, staging / "suites" / slug(name), results_dir, title, figure_format,
                                (about or {}).get(name), None if earlier is None else earlier / slug(name))
                  for name, recs in sorted(by_suite.items())]
        (staging / "index.html").write_text(env.get_template("index.html").render(
            title=title, suites=suites, static="static"), encoding="utf-8")
        if out.exists():
            retired = Path(tempfile.mkdtemp(prefix=temp_prefix(f"{out.name}.old"), dir=out.parent))
            out.replace(retired / "site")
            staging.replace(out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.replace(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out / "index.html"
