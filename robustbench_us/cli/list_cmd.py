"""``robustbench-us list <kind>``: registered names with their descriptions."""

from __future__ import annotations

import argparse
import json
import sys

from robustbench_us.plugins import default_registry
from robustbench_us.specs import Kind

_PLURALS = {f"{kind}s": kind for kind in Kind} | {str(kind): kind for kind in Kind}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("list", help="list datasets, models, explainers or attacks",
                                   description="List the registered plugins of one kind.")
    parser.add_argument("kind", choices=sorted(_PLURALS), help="which kind to list")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def _details(spec) -> str:
    data = spec.to_dict()
    skip = {"kind", "name", "description", "plugin", "factory", "options"}
    parts = []
    for key, value in data.items():
        if key in skip:
            continue
        if key == "eps":
            parts.append(f"eps={value:.4g} ({value * 255:.3g} grey levels)")
        else:
            parts.append(f"{key}={value}")
    return ", ".join(parts)


def run(args: argparse.Namespace) -> int:
    specs = default_registry().specs(_PLURALS[args.kind])
    if args.json:
        json.dump([spec.to_dict() for spec in specs], sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0
    width = max((len(s.name) for s in specs), default=4)
    for spec in specs:
        details = _details(spec)
        sys.stdout.write(f"{spec.name:<{width}}  {spec.description}" + (f"  [{details}]" if details else "")
                         + f"  (plugin: {spec.plugin})\n")
    return 0
