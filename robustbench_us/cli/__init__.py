"""The ``robustbench-us`` command line: one module per subcommand, errors as one clean line."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

from robustbench_us.errors import RobustBenchError

# Each module defines ``add_parser(subparsers)`` which sets ``func`` on its parser. Modules import torch,
# pandas and the like inside ``run`` (or in a ``later`` step), so that ``--help`` and ``--version`` stay fast.
COMMAND_MODULES = ("plugins_cmd", "list_cmd", "run_cmd", "leaderboard_cmd", "train_cmd", "site_cmd", "data_cmd",
                   "check_cmd", "compare_cmd")


class CommandParser(argparse.ArgumentParser):
    """A subcommand's parser that can add some of its arguments only once that subcommand is used.

    ``robustbench-us --help`` builds every subcommand's parser to list them. A subcommand whose
    arguments need a heavy module (``train`` reads its defaults from ``TrainConfig``, which imports
    torch) registers them with :meth:`later`; they are added, in order, before the parser first
    parses or formats its usage or help.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._later: list[Callable[[argparse.ArgumentParser], None]] = []

    def later(self, add: Callable[[argparse.ArgumentParser], None]) -> None:
        """Call ``add(self)`` when this parser is first used, after the steps registered before it."""
        self._later.append(add)

    def _complete(self) -> None:
        while self._later:
            self._later.pop(0)(self)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._complete()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._complete()
        return super().format_usage()

    def format_help(self) -> str:
        self._complete()
        return super().format_help()


def package_version() -> str:
    """The installed distribution's version (the package's own ``__version__`` when run from a bare checkout)."""
    try:
        return metadata.version("robustbench-us")
    except metadata.PackageNotFoundError:
        from robustbench_us import __version__

        return __version__


def _add_verbose(sub: argparse.ArgumentParser) -> None:
    if "-v" not in sub._option_string_actions:
        sub.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                         help="log progress details to stderr")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="robustbench-us",
        description="Benchmark whether invisible perturbations change breast-ultrasound diagnoses and heatmaps.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"robustbench_us.cli.{name}").add_parser(subparsers)
    for sub in subparsers.choices.values():  # -v also works after the command, as users type it
        sub.later(_add_verbose)  # after the subcommand's own later arguments, as if added last
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
    except BrokenPipeError:
        # The reader went away (`robustbench-us list attacks | head`): stop quietly, as Unix tools do.
        # Point stdout at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt
