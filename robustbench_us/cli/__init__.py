"""The ``robustbench-us`` command line: one module per subcommand, errors as one clean line."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from collections.abc import Sequence

from robustbench_us.errors import RobustBenchError

# Each module defines ``add_parser(subparsers)`` which sets ``func`` on its parser.
COMMAND_MODULES = ("plugins_cmd", "list_cmd", "run_cmd", "leaderboard_cmd", "train_cmd", "site_cmd", "data_cmd",
                   "check_cmd", "compare_cmd")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="robustbench-us",
        description="Benchmark whether invisible perturbations change breast-ultrasound diagnoses and heatmaps.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"robustbench_us.cli.{name}").add_parser(subparsers)
    for sub in subparsers.choices.values():  # -v also works after the command, as users type it
        if "-v" not in sub._option_string_actions:
            sub.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="log progress details to stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``robustbench-us`` and ``python -m robustbench_us``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    # SIGTERM (a scheduler stopping the job) ends the run like Ctrl-C: records already
    # written stay, the one being computed is dropped, and the message says how to resume.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return int(args.func(args) or 0)
    except RobustBenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: every finished cell is saved; run the same command again to resume.",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt
