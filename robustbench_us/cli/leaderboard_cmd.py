"""``robustbench-us leaderboard``: regenerate a suite's tables, or publish the static site."""

from __future__ import annotations

import argparse
import sys

from robustbench_us.leaderboard import write_leaderboard
from robustbench_us.cli.site_cmd import add_site_options
from robustbench_us.store import ResultStore
from robustbench_us.suite import load_suite


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "leaderboard", help="regenerate a suite's tables, or `leaderboard publish` the static site",
        description="`robustbench-us leaderboard SUITE` rebuilds leaderboards/<suite>.csv and .md from the suite's "
                    "records. `robustbench-us leaderboard publish [SUITE ...]` writes the static site (sortable, "
                    "filterable tables linking every row to its figures and record) for those suites, or for every "
                    "suite in the results folder.")
    parser.add_argument("target", metavar="SUITE|publish", help="a suite (path or shipped name), or 'publish'")
    parser.add_argument("suites", nargs="*", metavar="SUITE", help="with publish: the suites to include")
    parser.add_argument("--results", default="results", help="results folder (default: ./results)")
    parser.add_argument("--leaderboards", default="leaderboards", help="output folder (default: ./leaderboards)")
    parser.add_argument("--out", default=None, help="with publish: site folder (default: <leaderboards>/site)")
    parser.add_argument("--scale", default=None, help="the suite's scale the records were run at (as for run)")
    add_site_options(parser, prefix="with publish: ")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.target == "publish":
        from robustbench_us.cli import site_cmd

        args.out = args.out or f"{args.leaderboards}/site"
        return site_cmd.run(args)
    if args.suites:
        from robustbench_us.errors import RobustBenchError

        raise RobustBenchError(f"leaderboard takes one suite; got extra arguments {args.suites}. "
                               "Did you mean `robustbench-us leaderboard publish ...`?")
    suite = load_suite(args.target, scale=args.scale)
    records = ResultStore(args.results, suite.name).read_all()
    for path in write_leaderboard(records, suite.name, args.leaderboards, notes=suite.notes):
        sys.stdout.write(f"leaderboard: {path}\n")
    return 0
