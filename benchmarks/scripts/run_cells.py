"""Run a chosen part of a suite's grid: the same cells `robustbench-us run` would run, in your order.

On a slow machine the whole grid of a suite may not fit the time there is. This runs
the cells of chosen models, attacks and ε only, into the suite's own results folder,
so each record is exactly the one `robustbench-us run <suite>` writes for that cell
(same cell id, same configuration), and a later `robustbench-us run <suite>` skips it.
Several of these can run at once for different models (the runner locks per
dataset × model).

    python benchmarks/scripts/run_cells.py paper --scale cpu --model resnet50 \
        --attack ifgsm --eps-grey 1

Every cell it runs is checked to be a cell of the full suite before any work starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from robustbench_us.plugins import default_registry
from robustbench_us.runner import expand_cells, run_suite
from robustbench_us.suite import load_suite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", help="suite name or path, as for `robustbench-us run`")
    parser.add_argument("--scale", default=None, help="the suite's scale, e.g. cpu")
    parser.add_argument("--model", action="append", default=[], help="model name (repeatable; default all)")
    parser.add_argument("--explainer", action="append", default=[], help="explainer (repeatable; default all)")
    parser.add_argument("--attack", action="append", default=[],
                        help="attack display name (repeatable, run in this order; default all)")
    parser.add_argument("--eps-grey", action="append", type=float, default=[],
                        help="ε in grey levels (repeatable; default the suite's sweep)")
    parser.add_argument("--results", default="results")
    parser.add_argument("--dry-run", action="store_true", help="list the chosen cells, run nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    registry = default_registry()
    full = load_suite(args.suite, registry=registry, scale=args.scale)

    def pick(entries, names, key):
        if not names:
            return tuple(entries)
        chosen = [e for n in names for e in entries if key(e) == n]
        missing = set(names) - {key(e) for e in chosen}
        if missing:
            parser.error(f"not in suite {full.name}: {', '.join(sorted(missing))}")
        return tuple(chosen)

    attacks = pick(full.attacks, args.attack, lambda a: a.display)
    if args.eps_grey:
        wanted = [g / 255.0 for g in args.eps_grey]
        attacks = tuple(dataclasses.replace(a, eps=tuple(e for e in a.eps if any(abs(e - w) < 1e-9 for w in wanted)))
                        for a in attacks)
        attacks = tuple(a for a in attacks if a.eps)
    part = dataclasses.replace(full, models=pick(full.models, args.model, lambda m: m.name),
                               explainers=pick(full.explainers, args.explainer, lambda e: e.name),
                               attacks=attacks)
    full_ids = {c.cell_id for c in expand_cells(full, registry)}
    part_cells = expand_cells(part, registry)
    stray = [c.cell_id for c in part_cells if c.cell_id not in full_ids]
    if stray or not part_cells:
        parser.error(f"these cells are not cells of {full.name}: {stray[:3]}" if stray else "no cells selected")
    if args.dry_run:
        sys.stdout.write("".join(f"{c.cell_id}\n" for c in part_cells))
        return 0
    summary = run_suite(part, args.results, registry=registry, progress=False)
    sys.stdout.write(f"{full.name}: {len(part_cells)} cells chosen, {len(summary.written)} written, "
                     f"{summary.skipped} already finished, {len(summary.failed)} failed, "
                     f"{len(summary.invalid)} invalid\n")
    return 0 if summary.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
