"""``robustbench-us check KIND NAME``: the conformance kit on one registered plugin, from the shell."""

from __future__ import annotations

import argparse
import difflib
import inspect
import sys
from typing import Any

from robustbench_us.cli.options import key_value
from robustbench_us.specs import Kind

KINDS = {"attack": Kind.ATTACK, "explainer": Kind.EXPLAINER, "model": Kind.MODEL, "dataset": Kind.DATASET}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check", help="check a registered attack, explainer, model or dataset against its contract",
        description="Run the conformance kit (robustbench_us.testing) on one registered plugin: tiny inputs, "
                    "every contract of its kind. Prints the checks that passed, or every violation with its "
                    "fix and exits 1.")
    parser.add_argument("kind", choices=sorted(KINDS), help="what NAME is")
    parser.add_argument("name", help="the registered name, e.g. fgsm, gradcam, resnet50-mtl, timm:resnet18, busi")
    parser.add_argument("--option", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                        help="an option for the factory (VALUE read as JSON when it parses); repeatable")
    eps = parser.add_mutually_exclusive_group()
    eps.add_argument("--eps", type=float, help="attacks: the budget to check, in [0, 1] units (default 8/255)")
    eps.add_argument("--eps-grey", type=float, help="attacks: the budget in grey levels (ε×255)")
    parser.add_argument("--input-size", type=int, help="models: the input side (default 32)")
    parser.add_argument("--image-size", type=int, help="datasets: the image side (default 32)")
    parser.add_argument("--root", help="datasets: the folder to read (default: the dataset's own lookup)")
    parser.add_argument("--device", default="cpu", help="attacks, explainers and models: cpu or cuda[:N]")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustbench_us.testing import ConformanceError, check_plugin

    kind = KINDS[args.kind]
    kwargs: dict = {"options": dict(args.option)}
    misplaced = [flag for flag, value, kinds in (
        ("--eps/--eps-grey", args.eps if args.eps is not None else args.eps_grey, {Kind.ATTACK}),
        ("--input-size", args.input_size, {Kind.MODEL}),
        ("--image-size", args.image_size, {Kind.DATASET}), ("--root", args.root, {Kind.DATASET}),
        ("--device", None if args.device == "cpu" else args.device, {Kind.ATTACK, Kind.EXPLAINER, Kind.MODEL}),
    ) if value is not None and kind not in kinds]
    if misplaced:
        article = "an" if args.kind[0] in "ae" else "a"
        print(f"error: {', '.join(misplaced)} does not apply to {article} {args.kind}; drop it.", file=sys.stderr)
        return 2
    if kind is Kind.ATTACK and (args.eps is not None or args.eps_grey is not None):
        kwargs["eps"] = args.eps if args.eps is not None else args.eps_grey / 255
    if kind is Kind.MODEL and args.input_size is not None:
        kwargs["input_size"] = args.input_size
    if kind is Kind.DATASET:
        kwargs |= {k: v for k, v in (("image_size", args.image_size), ("root", args.root)) if v is not None}
    else:
        kwargs["device"] = args.device
    problem = _unknown_option(kind, args.name, kwargs["options"])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        report = check_plugin(kind, args.name, **kwargs)
    except ConformanceError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(report)
    return 0


# Factory arguments ``check`` sets from its own flags; as ``--option`` they would clash.
_FLAG_FOR = {"eps": "--eps or --eps-grey", "input_size": "--input-size", "image_size": "--image-size",
             "root": "--root", "variant": "the name (e.g. art:fgm)"}


def _unknown_option(kind: Kind, name: str, options: dict[str, Any]) -> str | None:
    """Why an ``--option`` cannot reach ``name``'s factory (a key it does not take), or None.

    Checked before the kit runs, so a typo is a usage error naming the option, the
    options the factory takes (as ``robustbench-us list`` shows them) and the closest
    match, not a conformance failure blamed on the factory.
    """
    from robustbench_us.cli.list_cmd import HOST_ARGUMENTS, factory_options
    from robustbench_us.plugins import default_registry

    spec = default_registry().get(kind, name)  # an unknown name: UnknownNameError, exit 2
    accepted = list(factory_options(spec))
    try:
        parameters = inspect.signature(spec.factory).parameters.values()
    except (TypeError, ValueError):
        return None
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters)
    where = f"{kind} {name!r} (plugin {spec.plugin!r})"
    for key in options:
        if key in HOST_ARGUMENTS[kind] | {"variant"}:
            if key not in _FLAG_FOR:
                return f"--option {key}: check sets {key} for {where} itself; drop the option."
            return f"--option {key}: {where} gets {key} from {_FLAG_FOR[key]}; use that instead."
        if key in accepted or takes_any:
            continue
        close = difflib.get_close_matches(key, accepted, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return (f"--option {key}: {where} has no option {key!r}.{hint} It takes: "
                f"{', '.join(accepted) or '(no options)'} (`robustbench-us list {kind}s` shows their defaults).")
    return None
