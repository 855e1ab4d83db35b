"""``robustbench-us plugins``: JSON of every loaded plugin, where it came from and what it registered."""

from __future__ import annotations

import argparse
import json
import sys

from robustbench_us.plugins import default_registry


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plugins", help="show loaded plugins as JSON",
                                   description="Show every loaded plugin: distribution, version, location, "
                                               "hooks and the names it registered.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    registry = default_registry()
    json.dump([info.to_dict() for info in registry.infos.values()], sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
