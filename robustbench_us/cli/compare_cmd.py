"""``robustbench-us compare SUITE A B``: two models of one suite, image by image, with paired tests."""

from __future__ import annotations

import argparse
import sys

from robustbench_us.store import ResultStore
from robustbench_us.suite import load_suite


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="is one model more robust than another? paired tests over the suite's images",
        description="Compare two models of one suite image by image (they were attacked on the same images): "
                    "McNemar's exact test on diagnosis flips and the Wilcoxon signed-rank test on heatmap "
                    "shifts where neither label flipped, with paired bootstrap intervals and Benjamini–Hochberg "
                    "q-values. Reads the records' per-image tables; prints Markdown.")
    parser.add_argument("suite", help="a suite (path or shipped name)")
    parser.add_argument("model_a", metavar="A", help="a model of the suite (its name or name@size, e.g. resnet50-mtl)")
    parser.add_argument("model_b", metavar="B", help="the other model")
    parser.add_argument("--results", default="results", help="results folder (default: ./results)")
    parser.add_argument("--scale", default=None, help="the suite's scale the records were run at (as for run)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
    parser.add_argument("--out", default=None, help="also write the tables to this Markdown file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robustbench_us.compare import compare_models, markdown
    from robustbench_us.plugins import default_registry
    from robustbench_us.specs import AttackTarget, Kind

    suite = load_suite(args.suite, scale=args.scale)
    registry = default_registry()
    label_attacks = {a.display for a in suite.attacks
                     if registry.get(Kind.ATTACK, a.name).target != AttackTarget.EXPLANATION}
    records = ResultStore(args.results, suite.name).read_all()
    flips, shifts = compare_models(records, args.model_a, args.model_b, label_attacks=label_attacks, seed=args.seed)
    text = markdown(flips, shifts, args.model_a, args.model_b)
    sys.stdout.write(text)
    if args.out:
        from pathlib import Path

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    return 0
