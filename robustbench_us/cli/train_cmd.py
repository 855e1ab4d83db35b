"""``robustbench-us train <model> --dataset <name> --out <path>``: train a model and write a checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robustbench_us.cli.options import key_value
from robustbench_us.errors import RobustBenchError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model on one or more datasets and write a checkpoint",
        description="Train a registered model with the study's recipe (Adam, cross-entropy, plus Dice+BCE for a "
                    "segmentation head), early-stopped on the validation split, and write <out>.safetensors with "
                    "its <out>.json model card (recipe, data, metrics, sha256).")
    parser.later(add_arguments)  # the defaults come from TrainConfig, whose module imports torch
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``train``, with TrainConfig's defaults."""
    from robustbench_us.training import MONITORS, TrainConfig

    d = TrainConfig()
    parser.add_argument("model", help="model name, e.g. resnet50-mtl, resnet50, timm:resnet18")
    parser.add_argument("--dataset", action="append", required=True, metavar="NAME",
                        help="dataset to train on (repeat to train on several at once)")
    parser.add_argument("--root", default=None, help="data root holding the datasets' folders")
    parser.add_argument("--dataset-option", action="append", type=key_value, default=[], metavar="[NAME:]KEY=VALUE",
                        help="dataset option, e.g. count=60 for phantom; NAME:KEY=VALUE applies to dataset NAME "
                             "only, e.g. busbra:split=official-5fold (repeatable)")
    parser.add_argument("--model-option", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                        help="option for the model factory, e.g. segmentation=true for timm:* (repeatable)")
    parser.add_argument("--pretrained", default=None,
                        help="'imagenet' (local torch/timm cache only) or a weights file; default: from scratch")
    parser.add_argument("--init-from", default=None, metavar="CKPT",
                        help="start from this checkpoint of the same architecture (e.g. trained on other data)")
    parser.add_argument("--image-size", type=int, default=None, help="input size (default: the model's)")
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"maximum epochs (default {d.epochs})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate (default {d.lr})")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"default {d.weight_decay}")
    parser.add_argument("--seg-weight", type=float, default=d.seg_weight,
                        help=f"weight of the Dice+BCE segmentation loss (default {d.seg_weight})")
    parser.add_argument("--patience", type=int, default=d.patience,
                        help=f"early-stopping patience in epochs (default {d.patience})")
    parser.add_argument("--monitor", default=d.monitor, choices=sorted(MONITORS),
                        help="validation score that picks the kept epoch and drives early stopping (default "
                             f"{d.monitor}: the summed loss; auc, accuracy, dice: higher is better)")
    parser.add_argument("--no-augment", action="store_true", help="train without augmentation")
    parser.add_argument("--seed", type=int, default=d.seed, help="training and dataset seed (default 0)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test split (default 0)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    parser.add_argument("--out", required=True,
                        help="checkpoint path; writes <out>.safetensors and <out>.json (and, while training, "
                             "<out>.resume.pt: rerun an interrupted command to continue where it stopped)")
    parser.add_argument("--resume-every", type=float, default=60.0, metavar="SECONDS",
                        help="write <out>.resume.pt after an epoch once this many seconds have passed since the "
                             "last write (default 60; 0 = every epoch)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    import torch

    from robustbench_us.checkpoints import (
        checkpoint_paths,
        load_checkpoint,
        save_checkpoint,
    )
    from robustbench_us.plugins import default_registry
    from robustbench_us.runner import resolve_device
    from robustbench_us.specs import Kind
    from robustbench_us.training import TrainConfig, train_model

    registry = default_registry()
    spec = registry.get(Kind.MODEL, args.model)
    image_size = args.image_size or spec.input_size
    model_options = dict(args.model_option)
    if args.pretrained:
        model_options["pretrained"] = args.pretrained
    if args.pretrained and args.init_from:
        raise RobustBenchError("give --pretrained or --init-from, not both: the checkpoint would overwrite the "
                               "pretrained weights.")
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                         seg_weight=args.seg_weight, patience=args.patience, augment=not args.no_augment,
                         amp=args.amp, seed=args.seed, monitor=args.monitor)
    device = resolve_device(args.device)
    datasets, described = [], []
    scoped = [k.split(":", 1)[0] for k, _ in args.dataset_option if ":" in k]
    unknown = sorted(set(scoped) - set(args.dataset))
    if unknown:
        raise RobustBenchError(f"--dataset-option {unknown[0]}:... names a dataset that is not trained on "
                               f"(--dataset {' '.join(args.dataset)}); use NAME:KEY=VALUE with one of those names.")
    for name in args.dataset:
        # KEY=VALUE applies to every dataset, NAME:KEY=VALUE to dataset NAME only.
        options = {k: v for k, v in args.dataset_option if ":" not in k}
        options |= {k.split(":", 1)[1]: v for k, v in args.dataset_option if k.startswith(f"{name}:")}
        dataset = registry.create(Kind.DATASET, name, root=args.root, image_size=image_size, seed=args.seed,
                                  **options)
        split = dataset.split(args.split_seed)
        datasets.append((dataset, split))
        described.append({"name": name, "manifest": dataset.manifest_hash(), "split_seed": args.split_seed,
                          "options": options, "train": len(split.train), "val": len(split.val),
                          "test": len(split.test)})
    torch.manual_seed(args.seed)
    model = registry.create(Kind.MODEL, args.model, input_size=image_size, **model_options)
    init_card = load_checkpoint(model, args.init_from) if args.init_from else None
    init = getattr(model, "init", "scratch")
    err = sys.stderr
    parts = ", ".join(f"{d['name']} ({d['train']}/{d['val']}/{d['test']} train/val/test)" for d in described)
    err.write(f"training {args.model} ({init}) at {image_size}×{image_size} on {parts}, device {device}\n")
    resume = Path(f"{args.out}.resume.pt")  # written at most every --resume-every seconds, deleted at the end
    if resume.is_file():
        err.write(f"resuming the interrupted training saved in {resume} (delete it to start over)\n")
    report = train_model(model, datasets, config, device=device, progress=not args.no_progress, resume_path=resume,
                         resume_every=args.resume_every)
    card = {
        "architecture": args.model, "model_options": model_options, "input_size": image_size,
        "dataset": "+".join(d["name"] for d in described), "datasets": described,
        "dataset_manifest": described[0]["manifest"] if len(described) == 1 else
        [d["manifest"] for d in described],
        "split_seed": args.split_seed, "recipe": config.to_dict(), "init": init,
        "init_sha256": None if init_card is None else init_card.get("sha256"),
    } | report.card_fields(device)
    sha256 = save_checkpoint(model, args.out, card)
    weights, card_path = checkpoint_paths(args.out)
    out = sys.stdout
    out.write(f"checkpoint: {weights}\ncard: {card_path}\nsha256: {sha256}\n")
    out.write(f"best epoch {report.best_epoch} of {len(report.history)}; test metrics:\n")
    for key, value in report.test_metrics.items():
        if "loss" not in key:
            out.write(f"  {key}: {value:.4f}\n")
    return 0
