"""``robustbench-us leaderboard <suite>``: regenerate a suite's tables from its records."""

from __future__ import annotations

import argparse
import sys

from robustbench_us.leaderboard import write_leaderboard
from robustbench_us.store import ResultStore
from robustbench_us.suite import load_suite


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("leaderboard", help="regenerate a suite's leaderboard from its records",
                                   description="Rebuild leaderboards/<suite>.csv and .md from the suite's records.")
    parser.add_argument("suite", help="path to a suite .toml, or a shipped suite name")
    parser.add_argument("--results", default="results", help="results folder (default: ./results)")
    parser.add_argument("--leaderboards", default="leaderboards", help="output folder (default: ./leaderboards)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)
    records = ResultStore(args.results, suite.name).read_all()
    for path in write_leaderboard(records, suite.name, args.leaderboards, notes=suite.notes):
        sys.stdout.write(f"leaderboard: {path}\n")
    return 0
