"""``robustbench-us leaderboard``: regenerate a suite's tables, or publish the static site."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robustbench_us.cli.site_cmd import add_site_options
from robustbench_us.errors import RobustBenchError
from robustbench_us.store import ResultStore
from robustbench_us.suite import load_suite


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "leaderboard", help="regenerate a suite's tables, or `leaderboard publish` the static site",
        description="`robustbench-us leaderboard SUITE` rebuilds leaderboards/<suite>.csv and .md from the suite's "
                    "records; SUITE is a path to a .toml file, NAME for ./NAME.toml, or a shipped suite's name, "
                    "in that order. With no records of the suite in the results folder it refuses and leaves "
                    "the tables as they are. `robustbench-us leaderboard publish [SUITE ...]` writes the static "
                    "site (sortable, filterable tables linking every row to its figures and record) for those "
                    "suites, or for every suite in the results folder.")
    parser.add_argument("target", metavar="SUITE|publish",
                        help="a suite (a .toml path, NAME for ./NAME.toml, or a shipped suite's name), or 'publish'")
    parser.add_argument("suites", nargs="*", metavar="SUITE", help="with publish: the suites to include")
    parser.add_argument("--results", default="results", help="results folder (default: ./results)")
    parser.add_argument("--leaderboards", default="leaderboards", help="output folder (default: ./leaderboards)")
    parser.add_argument("--out", default=None, help="with publish: site folder (default: <leaderboards>/site)")
    parser.add_argument("--scale", default=None, help="the suite's scale the records were run at (as for run)")
    parser.later(lambda p: add_site_options(p, prefix="with publish: "))
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.target == "publish":
        from robustbench_us.cli import site_cmd

        args.out = args.out or f"{args.leaderboards}/site"
        return site_cmd.run(args)
    if args.suites:
        raise RobustBenchError(f"leaderboard takes one suite; got extra arguments {args.suites}. "
                               "Did you mean `robustbench-us leaderboard publish ...`?")
    from robustbench_us.leaderboard import write_leaderboard

    suite = load_suite(args.target, scale=args.scale)
    store = ResultStore(args.results, suite.name)
    records = store.read_all()
    if not records:
        # An empty table would overwrite published ones (a fresh clone has no results folder).
        scale = f" --scale {args.scale}" if args.scale else ""
        raise RobustBenchError(
            f"No records of suite {suite.name!r} in {store.records_dir}, so there is nothing to tabulate; "
            f"{Path(args.leaderboards) / suite.name}.csv and .md were left as they are. Run "
            f"`robustbench-us run {args.target}{scale}` first, or pass --results with the folder that holds "
            "its records.")
    for path in write_leaderboard(records, suite.name, args.leaderboards, notes=suite.notes):
        sys.stdout.write(f"leaderboard: {path}\n")
    return 0
