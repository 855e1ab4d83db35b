"""``robustbench-us run <suite>``: run a suite, skipping finished cells, then write its leaderboard."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run a benchmark suite",
                                   description="Run every unfinished cell of a suite (a TOML file, or the name of a "
                                               "shipped suite in robustbench_us/suites/), then write its leaderboard.")
    parser.add_argument("suite", help="path to a suite .toml, or a shipped suite name such as 'default'")
    parser.add_argument("--results", default="results", help="results folder (default: ./results)")
    parser.add_argument("--leaderboards", default="leaderboards", help="where tables go (default: ./leaderboards)")
    parser.add_argument("--scale", default=None, help="run at the suite's [scales.<name>] settings, e.g. 'cpu' "
                                                      "(the suite name gains -<name>)")
    parser.add_argument("--junit", default=None, metavar="PATH",
                        help="write the suite's thresholds as a JUnit XML report (for CI systems)")
    parser.add_argument("--allow-invalid", action="store_true",
                        help="exit 0 even if some cells are invalid (an attack broke its contract: over budget, out "
                             "of range); by default they fail the run, as a CI gate must")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustbench_us.leaderboard import write_leaderboard
    from robustbench_us.plugins import default_registry
    from robustbench_us.runner import expand_cells, run_suite
    from robustbench_us.store import ResultStore
    from robustbench_us.suite import load_suite

    registry = default_registry()
    suite = load_suite(args.suite, registry=registry, scale=args.scale)
    summary = run_suite(suite, args.results, registry=registry, progress=not args.no_progress)
    from robustbench_us import distributed

    if not distributed.is_writer():  # under torchrun, rank 0 reports and writes the tables
        return 0
    # Read every record back, so the tables include cells finished by earlier runs.
    records = ResultStore(args.results, suite.name).read_all()
    paths = write_leaderboard(records, suite.name, args.leaderboards, notes=suite.notes)
    out = sys.stdout
    out.write(f"suite {suite.name}: {len(summary.written)} cells written, {summary.skipped} already finished, "
              f"{len(summary.failed)} failed, {len(summary.invalid)} invalid\n")
    out.write(f"records: {summary.results_dir / 'records'}\n")
    if suite.figures and (summary.results_dir / "figures").is_dir():
        out.write(f"figures: {summary.results_dir / 'figures'}/<cell>/*.png\n")
    for path in paths:
        out.write(f"leaderboard: {path}\n")
    status = 0
    reasons = {r["cell_id"]: (r.get("error") or "no reason recorded").splitlines()[0] for r in records}
    if summary.failed:
        out.write("failed cells (the whole error is in each record):\n"
                  + "".join(f"  {c}: {reasons.get(c, '')}\n" for c in summary.failed))
        status = 1
    # Gate only the suite's current cells: records of cells since removed from the file stay in the folder.
    current = {cell.cell_id for cell in expand_cells(suite, registry)}
    # Invalid records are final, so those of earlier runs count too: a rerun in CI must fail the same way.
    invalid = sorted((r["cell_id"], reasons[r["cell_id"]]) for r in records
                     if r["status"] == "invalid" and r["cell_id"] in current)
    if invalid:
        out.write("invalid cells (the attack broke its contract; kept off the leaderboard):\n"
                  + "".join(f"  {cell}: {reason}\n" for cell, reason in invalid))
        if args.allow_invalid:
            out.write(f"{len(invalid)} invalid cell{'s' * (len(invalid) != 1)} allowed by --allow-invalid\n")
        else:
            out.write("invalid cells fail the run: fix the attack (robustbench-us check attack NAME), or pass "
                      "--allow-invalid to accept them\n")
            status = 1
    if suite.thresholds or args.junit:
        from robustbench_us import gates

        results = gates.evaluate_thresholds(suite.thresholds, [r for r in records if r["cell_id"] in current])
        if args.junit:
            out.write(f"junit: {gates.write_junit(results, args.junit, suite.name)}\n")
        out.write(gates.summary_line(results) + "\n")
        for result in gates.failed(results):
            out.write(f"  {result.describe()}\n")
        if gates.failed(results):
            status = 1
    return status
