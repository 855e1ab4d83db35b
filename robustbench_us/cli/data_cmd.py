"""``robustbench-us data audit <dataset>``: counts, masks, sizes, near-duplicates and split leaks."""

from __future__ import annotations

import argparse
import json
import sys

from robustbench_us.cli.options import key_value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="inspect datasets (audit) or pack them for another machine (pack)",
                                   description="Inspect the datasets that plugins provide.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    audit = actions.add_parser(
        "audit", help="counts per class and split, masks, sizes, near-duplicates, leaks",
        description="Load a dataset and report counts per class and split part, mask coverage, image sizes, "
                    "near-duplicate groups (also across classes) and whether any group crosses split parts. "
                    "Exits with 1 when a group crosses parts (a leak).")
    audit.add_argument("dataset", help="dataset name, e.g. busi, busbra, folder, phantom")
    audit.add_argument("--root", default=None,
                       help="data folder (default: $ROBUSTBENCH_US_DATA); for folder, the class folders' parent")
    audit.add_argument("--option", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                       help="dataset option, e.g. task=3class or split=official-5fold (repeatable)")
    audit.add_argument("--image-size", type=int, default=64,
                       help="decode size; near-duplicates are found on it (default 64, fast)")
    audit.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    audit.add_argument("--fractions", type=float, nargs=3, default=(0.7, 0.1, 0.2), metavar=("TRAIN", "VAL", "TEST"),
                       help="split fractions (default 0.7 0.1 0.2)")
    audit.add_argument("--threshold", type=int, default=None,
                       help="near-duplicate Hamming threshold in bits (default: the dataset's, 10)")
    audit.add_argument("--json", action="store_true", help="print the full report as JSON")
    audit.set_defaults(func=run_audit)
    pack = actions.add_parser(
        "pack", help="decode a dataset once at one input size into a pack, for a machine without the files",
        description="Read a file dataset (busi, busbra, folder, ...) from its files, resize it to --image-size and "
                    "write <out>/<name>-<size>px-<hash>.rbpack: lossless images, masks, labels, groups, split "
                    "metadata and the manifest hash. Copy the folder elsewhere and set ROBUSTBENCH_US_DATA_PACKS "
                    "to it: runs there read the same data (same manifest hash) without the original files.")
    pack.add_argument("dataset", nargs="+", help="dataset name(s), e.g. busi busbra")
    pack.add_argument("--image-size", type=int, required=True, action="append",
                      help="input size in pixels, the suite's input_size (repeatable)")
    pack.add_argument("--root", default=None, help="data folder (default: $ROBUSTBENCH_US_DATA)")
    pack.add_argument("--option", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                      help="dataset option, as in the suite, e.g. split=official-5fold (repeatable)")
    pack.add_argument("--out", required=True, help="folder to write the packs into")
    pack.set_defaults(func=run_pack)


def run_audit(args: argparse.Namespace) -> int:
    from robustbench_us.data.audit import audit_dataset, format_audit
    from robustbench_us.plugins import default_registry
    from robustbench_us.specs import Kind

    dataset = default_registry().create(Kind.DATASET, args.dataset, root=args.root, image_size=args.image_size,
                                        **dict(args.option))
    report = audit_dataset(dataset, name=args.dataset, seed=args.seed, fractions=tuple(args.fractions),
                           dup_threshold=args.threshold)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_audit(report) + "\n")
    return 1 if report["leaks"] else 0


def run_pack(args: argparse.Namespace) -> int:
    import os

    from robustbench_us.data.packs import ENV_PACKS, pack_dataset, read_head
    from robustbench_us.plugins import default_registry

    if os.environ.get(ENV_PACKS):
        sys.stderr.write(f"note: {ENV_PACKS} is set, but packs are always made from the files\n")
    for name in args.dataset:
        for size in args.image_size:
            path = pack_dataset(default_registry(), name, image_size=size, out_dir=args.out, root=args.root,
                                options=dict(args.option))
            head = read_head(path)
            sys.stdout.write(f"{path}: {head['dataset']}, {head['n']} images at {size} px, options "
                             f"{head['options']}, manifest {head['manifest'][:12]}, "
                             f"{path.stat().st_size / 2**20:.1f} MiB\n")
    return 0
