"""``robustbench-us site``: publish the static leaderboard site from the records in a results folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robustbench_us.errors import RobustBenchError
from robustbench_us.store import ResultStore


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "site", help="publish the static leaderboard site from result records",
        description="Write a static site (index of suites; sortable, filterable tables linking each cell's figures "
                    "and record) from <results>/<suite>/records/*.json. It opens from the file system; no server.")
    parser.add_argument("suites", nargs="*", metavar="SUITE",
                        help="suite names (folders under --results, or suite .toml files); default: every suite there")
    parser.add_argument("--results", default="results", help="results folder (default: ./results)")
    parser.add_argument("--out", default="site", help="where the site goes (default: ./site); replaced if it is "
                                                      "an earlier site")
    parser.later(add_site_options)  # its choices come from robustbench_us.site, which imports matplotlib
    parser.set_defaults(func=run)


def add_site_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """--title and --figure-format, shared with ``leaderboard publish`` (``prefix`` starts its help)."""
    from robustbench_us.site import FIGURE_FORMATS

    parser.add_argument("--title", default="robustbench_us leaderboard", help=f"{prefix}the site's title")
    parser.add_argument("--figure-format", choices=FIGURE_FORMATS, default="png",
                        help=f"{prefix}png copies the cells' figures as they are (default); webp re-encodes them "
                             "as lossy WebP, about 5× smaller, for a site kept in git")


def suite_names(results: Path, given: list[str]) -> list[str]:
    """The suites to publish: those given (a name or a suite file), else every folder holding records."""
    if not given:
        if not results.is_dir():
            raise RobustBenchError(f"results folder {results} does not exist. Run a suite first "
                                   "(robustbench-us run SUITE) or pass --results.")
        return sorted(p.parent.name for p in results.glob("*/records") if p.is_dir())
    names = []
    for item in given:
        if (results / item / "records").is_dir():
            names.append(item)
        else:
            from robustbench_us.suite import load_suite

            names.append(load_suite(item).name)
    return names


def suite_about(name: str) -> dict | None:
    """Notes and grid size of the suite whose results folder is ``name`` (``paper`` or ``paper-cpu``), if found."""
    from robustbench_us.plugins import default_registry
    from robustbench_us.runner import expand_cells
    from robustbench_us.suite import load_suite

    candidates = [(name, None)]
    if "-" in name:
        base, _, scale = name.rpartition("-")
        candidates.append((base, scale))
    for base, scale in candidates:
        try:
            suite = load_suite(base, scale=scale)
            if suite.name != name:
                continue
            return {"notes": suite.notes, "grid": len(expand_cells(suite, default_registry()))}
        except RobustBenchError:
            continue
    return None


def run(args: argparse.Namespace) -> int:
    from robustbench_us.site import publish_site

    results = Path(args.results)
    records = []
    for name in suite_names(results, args.suites):
        found = ResultStore(results, name).read_all()
        if not found:
            raise RobustBenchError(f"suite {name!r} has no records under {results / name / 'records'}. "
                                   f"Run it first: robustbench-us run {name} --results {results}")
        records += found
    names = sorted({r["suite"] for r in records})
    about = {name: info for name in names if (info := suite_about(name)) is not None}
    index = publish_site(records, args.out, title=args.title, results_dir=results,
                         figure_format=args.figure_format, about=about)
    sys.stdout.write(f"site: {index} ({len(records)} records)\nopen: {index.resolve().as_uri()}\n")
    return 0
