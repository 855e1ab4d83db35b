"""``robustbench-us list <kind>``: registered names with their descriptions and options."""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from typing import Any

from robustbench_us.plugins import default_registry
from robustbench_us.specs import Kind, Spec

_PLURALS = {f"{kind}s": kind for kind in Kind} | {str(kind): kind for kind in Kind}
# Arguments the host passes itself (suite keys, not options): listing them would invite
# `--option eps=...` where `--eps` is meant.
HOST_ARGUMENTS: dict[Kind, frozenset[str]] = {
    Kind.ATTACK: frozenset({"eps"}),
    Kind.MODEL: frozenset({"input_size"}),
    Kind.DATASET: frozenset({"root", "image_size", "seed"}),
    Kind.EXPLAINER: frozenset(),
}


class Required:
    """Stands for an option whose factory gives no default."""

    def __repr__(self) -> str:
        return "<required>"


REQUIRED = Required()


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("list", help="list datasets, models, explainers or attacks",
                                   description="List the registered plugins of one kind, with the options each "
                                               "factory accepts and their defaults.")
    parser.add_argument("kind", choices=sorted(_PLURALS), help="which kind to list")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def factory_options(spec: Spec) -> dict[str, Any]:
    """The options ``spec``'s factory accepts (``--option`` / a suite's ``options`` table) and their defaults.

    Read from the factory's signature, so the list is what the factory really takes;
    options the spec declares beyond it (a factory taking ``**options``) follow with the
    declared values. Arguments the host passes itself (ε, input size, root, a family's
    variant) are left out. An option without a default maps to :data:`REQUIRED`.
    """
    skip = HOST_ARGUMENTS[spec.kind] | {"variant"}
    options: dict[str, Any] = {}
    try:
        parameters = inspect.signature(spec.factory).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: only what the spec declares
        parameters = []
    for p in parameters:
        if p.name in skip or p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
            continue
        options[p.name] = REQUIRED if p.default is p.empty else p.default
    for name, value in spec.options.items():
        if name not in skip:
            options.setdefault(name, value)
    return options


def _shown(value: Any) -> str:
    """An option's default as it would be typed after ``--option KEY=`` (JSON where it is JSON)."""
    if value is REQUIRED:
        return repr(value)
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def _details(spec: Spec) -> str:
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


def _json_value(value: Any) -> Any:
    return None if value is REQUIRED else value


def run(args: argparse.Namespace) -> int:
    specs = default_registry().specs(_PLURALS[args.kind])
    if args.json:
        out = []
        for spec in specs:
            options = factory_options(spec)
            out.append(spec.to_dict() | {"options": {k: _json_value(v) for k, v in options.items()},
                                         "required": [k for k, v in options.items() if v is REQUIRED]})
        json.dump(out, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0
    width = max((len(s.name) for s in specs), default=4)
    for spec in specs:
        details = _details(spec)
        options = ", ".join(f"{k}={_shown(v)}" for k, v in factory_options(spec).items())
        sys.stdout.write(f"{spec.name:<{width}}  {spec.description}" + (f"  [{details}]" if details else "")
                         + (f"  options: {options}" if options else "") + f"  (plugin: {spec.plugin})\n")
    return 0
