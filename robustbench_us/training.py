"""Train a model on one or more datasets with the study's recipe, early-stopped on validation.

The recipe (Rasaee & Rivaz 2021, see docs/reproducing-the-study.md): Adam, cross-entropy on the
2-way head; the multi-task model adds a lesion-segmentation loss. The paper's text
states the optimiser, the loss, the augmentation and the 70/10/20 split; where it is
silent (learning rate, batch size, epochs, the segmentation loss and its weight,
early stopping) :class:`TrainConfig` documents what this project chose.

Augmentation happens on the training batches only, *after* splitting, so no copy of
a test image ever reaches training (the study augmented before splitting).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_us.errors import TrainingError
from robustbench_us.protocols import Dataset, Split
from robustbench_us.store import temp_prefix

logger = logging.getLogger(__name__)


# Validation scores that can choose the kept epoch: True where higher is better.
MONITORS: dict[str, bool] = {"loss": False, "cls_loss": False, "seg_loss": False, "auc": True, "accuracy": True,
                             "dice": True}


@dataclass(frozen=True)
class TrainConfig:
    """How to train: the study's recipe where it states one, documented choices elsewhere.

    epochs
        Upper bound on epochs (80). The study does not state its epoch count;
        early stopping usually ends training well before this.
    batch_size
        Images per step (32): Keras' default, which the study's Keras code used
        unless stated otherwise; it fits a ResNet-50 at 224×224 in 8 GB.
    lr
        Adam learning rate (1e-4). The study names Adam but not the rate; 1e-4 is
        the usual fine-tuning rate for ResNet-50 and is stable from scratch too.
    weight_decay
        L2 penalty of Adam (0.0: the study mentions no regularisation).
    seg_weight
        Weight of the segmentation loss (soft Dice + BCE, each over images that
        have a mask) added to the cross-entropy (1.0: equal weight; the study gives
        no weighting).
    patience
        Stop after this many epochs without a better validation score (10; the
        score is ``monitor``, the loss by default); the weights of the best epoch
        are restored (Keras ``restore_best_weights``).
    augment
        Random flips, ±5° rotations and 10 % shifts of training batches, as in the
        study, via :mod:`robustbench_us.data.augment` (False: none).
    amp
        Mixed precision (float16 autocast + gradient scaling); CUDA only, ignored
        with a warning on CPU.
    seed
        Seeds the batch order, the augmentation and any dropout.
    min_delta
        A validation score must beat the best by more than this to count as better.
    monitor
        The validation score that picks the kept epoch and drives early stopping:
        ``loss`` (default: the summed classification + segmentation loss, as Keras
        does), ``cls_loss`` or ``seg_loss`` (lower is better), or ``auc``,
        ``accuracy`` or ``dice`` (higher is better; ``dice`` needs a segmenting
        model). A multi-task model whose mask head still improves when the summed
        loss stalls can be kept longer with ``dice``; ``auc`` keeps the epoch that
        ranks the validation images best.
    """

    epochs: int = 80
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    seg_weight: float = 1.0
    patience: int = 10
    augment: bool = True
    amp: bool = False
    seed: int = 0
    min_delta: float = 0.0
    monitor: str = "loss"

    def __post_init__(self) -> None:
        if self.monitor not in MONITORS:
            raise TrainingError(f"TrainConfig.monitor={self.monitor!r} is not one of {', '.join(MONITORS)}.")
        checks = [("epochs", self.epochs >= 1, "at least 1"), ("batch_size", self.batch_size >= 1, "at least 1"),
                  ("lr", self.lr > 0, "positive"), ("weight_decay", self.weight_decay >= 0, "non-negative"),
                  ("seg_weight", self.seg_weight >= 0, "non-negative"), ("patience", self.patience >= 1,
                                                                         "at least 1"),
                  ("min_delta", self.min_delta >= 0, "non-negative")]
        for name, ok, rule in checks:
            if not ok:
                raise TrainingError(f"TrainConfig.{name}={getattr(self, name)!r} must be {rule}.")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-friendly dict (for model cards)."""
        return asdict(self)


@dataclass(frozen=True)
class TrainReport:
    """What happened: one dict per epoch, the epoch whose weights were kept, and their metrics."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    val_metrics: dict[str, float] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)

    def card_fields(self, device: str | torch.device) -> dict[str, Any]:
        """What a model card says about this training (``robustbench-us train``'s and the runner's alike)."""
        return {"device": str(device), "torch_threads": torch.get_num_threads(), "best_epoch": self.best_epoch,
                "epochs_run": len(self.history), "val_metrics": self.val_metrics, "test_metrics": self.test_metrics,
                "history": self.history, "created": datetime.now(UTC).isoformat(timespec="seconds")}


# --------------------------------------------------------------------------- data
RESIDENT_BYTES = 4 << 30  # a training part up to this size is moved to the GPU once (BUSI at 224 px: 0.3 GB)

@dataclass
class _Part:
    """Images of one split part of all datasets, loaded once into tensors."""

    x: torch.Tensor  # float32 [N, 3, H, W]
    y: torch.Tensor  # long [N]
    masks: torch.Tensor  # bool [N, H, W] (all False where has_mask is False)
    has_mask: torch.Tensor  # bool [N]
    source: torch.Tensor  # long [N], index of the dataset

    def __len__(self) -> int:
        return len(self.y)

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def to(self, device: torch.device) -> _Part:
        return _Part(*(t.to(device) for t in self.tensors()))


def _load_part(datasets: Sequence[tuple[Dataset, Split]], part: str, progress: bool) -> _Part:
    from tqdm.auto import tqdm

    items = [(d, i) for d, (dataset, split) in enumerate(datasets) for i in split.part(part)]
    xs, ys, ms, hs, ss = [], [], [], [], []
    shape = None
    for d, i in tqdm(items, desc=f"loading {part}", disable=not progress, leave=False, unit="img"):
        sample = datasets[d][0][i]
        image = torch.as_tensor(sample.image, dtype=torch.float32)
        if image.ndim != 3 or image.shape[0] != 3:
            raise TrainingError(f"dataset {d} image {sample.id!r} has shape {tuple(image.shape)}; expected "
                                "[3, H, W] (grey repeated to 3 channels).")
        if shape is None:
            shape = image.shape
        elif image.shape != shape:
            raise TrainingError(f"dataset {d} image {sample.id!r} is {tuple(image.shape)} but earlier images are "
                                f"{tuple(shape)}; create every dataset with the same image_size.")
        xs.append(image)
        ys.append(int(sample.label))
        if sample.mask is not None:
            ms.append(torch.as_tensor(sample.mask).bool().reshape(image.shape[-2:]))
            hs.append(True)
        else:
            ms.append(torch.zeros(image.shape[-2:], dtype=torch.bool))
            hs.append(False)
        ss.append(d)
    if not items:
        return _Part(torch.zeros(0, 3, 1, 1), torch.zeros(0, dtype=torch.long), torch.zeros(0, 1, 1, dtype=torch.bool),
                     torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.long))
    return _Part(torch.stack(xs), torch.tensor(ys, dtype=torch.long), torch.stack(ms),
                 torch.tensor(hs, dtype=torch.bool), torch.tensor(ss, dtype=torch.long))


_warned_no_augment = False


def _augmenter() -> Callable[..., tuple[torch.Tensor, torch.Tensor | None]] | None:
    """The project's augmentation function, or None (with a warning) when it is not available."""
    global _warned_no_augment
    try:
        from robustbench_us.data.augment import augment
    except ImportError as exc:
        if not _warned_no_augment:
            logger.warning("augmentation requested but robustbench_us.data.augment is not available (%s); "
                           "training WITHOUT augmentation", exc)
            _warned_no_augment = True
        return None
    return augment


# ------------------------------------------------------------------------- losses
def dice_loss(mask_logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss per image, averaged: ``1 - (2|P∩T| + eps) / (|P| + |T| + eps)``."""
    prob = torch.sigmoid(mask_logits.float()).flatten(1)
    target = target.float().flatten(1)
    inter = (prob * target).sum(1)
    return (1 - (2 * inter + eps) / (prob.sum(1) + target.sum(1) + eps)).mean()


def _forward_both(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    if hasattr(model, "forward_both"):
        return model.forward_both(x)
    logits = model(x)
    masks = model.segment(x) if getattr(model, "has_segmentation", False) else None
    return logits, masks


def _losses(logits: torch.Tensor, mask_logits: torch.Tensor | None, y: torch.Tensor, masks: torch.Tensor,
            has_mask: torch.Tensor, seg_weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    cls = F.cross_entropy(logits.float(), y)
    seg = torch.zeros((), device=logits.device)
    if mask_logits is not None and seg_weight > 0 and bool(has_mask.any()):
        pred = mask_logits[has_mask][:, 0].float()
        target = masks[has_mask].float()
        seg = F.binary_cross_entropy_with_logits(pred, target) + dice_loss(pred, target)
    return cls + seg_weight * seg, cls, seg


# ------------------------------------------------------------------------ metrics
def _auc(scores: torch.Tensor, y: torch.Tensor) -> float:
    """ROC AUC as the Mann–Whitney statistic (ties count half); NaN with one class only."""
    pos, neg = scores[y == 1], scores[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).double().sum()
    ties = (pos[:, None] == neg[None, :]).double().sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def classification_metrics(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Accuracy, sensitivity (malignant recall), specificity (benign recall) and ROC AUC."""
    pred = logits.argmax(1)
    score = torch.softmax(logits.float(), 1)[:, 1]

    def rate(cls: int) -> float:
        sel = y == cls
        return float((pred[sel] == cls).double().mean()) if bool(sel.any()) else float("nan")

    return {"accuracy": float((pred == y).double().mean()) if len(y) else float("nan"),
            "sensitivity": rate(1), "specificity": rate(0), "auc": _auc(score, y)}


def dice_score(mask_logits: torch.Tensor, target: torch.Tensor) -> float:
    """Mean per-image Dice of ``sigmoid(logits) > 0.5`` against ``target`` (both empty counts 1)."""
    pred = (mask_logits[:, 0] > 0).flatten(1)
    target = target.bool().flatten(1)
    inter = (pred & target).sum(1).double()
    total = pred.sum(1).double() + target.sum(1).double()
    dice = torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))
    return float(dice.mean())


@torch.no_grad()
def _evaluate(model: nn.Module, part: _Part, config: TrainConfig, device: torch.device,
              use_amp: bool) -> dict[str, float]:
    model.eval()
    logits_all, seg_all = [], []
    total = cls_total = seg_total = 0.0
    for start in range(0, len(part), config.batch_size):
        sl = slice(start, start + config.batch_size)
        x, y = part.x[sl].to(device), part.y[sl].to(device)
        masks, has_mask = part.masks[sl].to(device), part.has_mask[sl].to(device)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            logits, mask_logits = _forward_both(model, x)
        loss, cls, seg = _losses(logits, mask_logits, y, masks, has_mask, config.seg_weight)
        n = len(y)
        total, cls_total, seg_total = total + float(loss) * n, cls_total + float(cls) * n, seg_total + float(seg) * n
        logits_all.append(logits.float().cpu())
        if mask_logits is not None:
            seg_all.append(mask_logits.float().cpu())
    n = max(len(part), 1)
    out = {"loss": total / n, "cls_loss": cls_total / n, "seg_loss": seg_total / n}
    out |= classification_metrics(torch.cat(logits_all), part.y)
    if seg_all and bool(part.has_mask.any()):
        out["dice"] = dice_score(torch.cat(seg_all)[part.has_mask], part.masks[part.has_mask])
    return out


def _metrics_by_source(model: nn.Module, part: _Part, config: TrainConfig, device: torch.device, use_amp: bool,
                       names: Sequence[str]) -> dict[str, float]:
    """Metrics over the whole part; with several datasets also ``<name>/<metric>`` for each."""
    out = _evaluate(model, part, config, device, use_amp)
    if len(names) > 1:
        for d, name in enumerate(names):
            sel = part.source == d
            if bool(sel.any()):
                sub = _Part(part.x[sel], part.y[sel], part.masks[sel], part.has_mask[sel], part.source[sel])
                out |= {f"{name}/{k}": v for k, v in _evaluate(model, sub, config, device, use_amp).items()}
    return out


# ----------------------------------------------------------------------- training
def _dataset_names(datasets: Sequence[tuple[Dataset, Split]]) -> list[str]:
    names = []
    for d, (dataset, _) in enumerate(datasets):
        name = str(getattr(dataset, "name", "") or type(dataset).__name__)
        names.append(name if name not in names else f"{name}-{d}")
    return names


def _augment_batch(augment: Callable[..., Any], x: torch.Tensor, masks: torch.Tensor,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x_aug, m_aug = augment(x, masks[:, None], generator)
    if m_aug is None or m_aug.shape != masks[:, None].shape:
        raise TrainingError("robustbench_us.data.augment.augment returned no mask, or one of another shape, for "
                            f"masks {tuple(masks[:, None].shape)}; it must return [N, 1, H, W].")
    return x_aug, m_aug[:, 0] > 0.5


def _fingerprint(config: TrainConfig, model: nn.Module, parts: Sequence[_Part]) -> dict[str, Any]:
    """What a resume file must match: the recipe, the parameter shapes and the data's sizes and labels."""
    shapes = [list(t.shape) for t in model.state_dict().values()]
    return {"config": config.to_dict(), "shapes": shapes, "parts": [[len(p), int(p.y.sum())] for p in parts]}


def _save_resume(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Tagged with this writer, so a later run removes it at once if this process is killed mid-write.
    tmp = path.with_name(f"{temp_prefix(path.name)}resume.tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _load_resume(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise TrainingError(f"cannot read the resume file {path} ({exc}); delete it to start training over.") \
            from None
    if state.get("fingerprint") != fingerprint:
        raise TrainingError(f"{path} belongs to another training (recipe, model or data differ); delete it to "
                            "start this one over, or rerun the command that wrote it.")
    return state


def train_model(model: nn.Module, datasets: Sequence[tuple[Dataset, Split]], config: TrainConfig, *,
                device: str | torch.device = "cpu", progress: bool = True,
                resume_path: str | Path | None = None, resume_every: float = 60.0) -> TrainReport:
    """Train ``model`` in place on every dataset's ``split.train``; keep the best epoch on ``split.val``.

    Each epoch visits the training images of all datasets in one seeded shuffled
    order (batches mix datasets; images without a mask add no segmentation loss).
    After training, the weights of the epoch with the lowest validation loss are
    restored, the test parts are evaluated (accuracy, sensitivity, specificity,
    AUC, and Dice when the model segments and masks exist) and the model is left
    in ``eval()`` mode on ``device``.

    With ``resume_path``, the whole training state (weights, optimiser, best epoch so
    far, history and the random generators) is written there after an epoch when
    ``resume_every`` seconds have passed since the last write (0: every epoch; the
    state of a ResNet-50 is about 400 MB, so writing it every epoch would slow a fast
    GPU), and a training that finds the file continues after its last written epoch, as if it had
    never stopped (on CPU bit for bit; on CUDA up to cuDNN's nondeterminism). The file
    must come from the same recipe, model and data, and is deleted when training ends.
    """
    from tqdm.auto import tqdm

    if not datasets:
        raise TrainingError("train_model needs at least one (dataset, split) pair.")
    device = torch.device(device)
    use_amp = bool(config.amp and device.type == "cuda")
    if config.amp and not use_amp:
        logger.warning("amp=True needs a CUDA device (got %s); training in float32", device)
    names = _dataset_names(datasets)
    setup_start = time.perf_counter()
    train, val, test = (_load_part(datasets, part, progress) for part in ("train", "val", "test"))
    if len(train) == 0:
        raise TrainingError("the training split of every dataset is empty; check the datasets and split fractions.")
    if len(val) == 0:
        raise TrainingError("the validation split of every dataset is empty, so early stopping and checkpoint "
                            "selection are impossible; use split fractions with a validation part.")
    augment = _augmenter() if config.augment else None
    segments = bool(getattr(model, "has_segmentation", False))
    if segments and not bool(train.has_mask.any()):
        logger.warning("model has a segmentation head but no training image has a mask; it is not trained")

    model.to(device)
    if device.type == "cuda" and train.nbytes() <= RESIDENT_BYTES:
        train = train.to(device)  # batches are then sliced on the GPU: no copy from the host per batch
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, float]] = []
    higher = MONITORS[config.monitor]  # is a larger monitored score better?
    best_score, best_epoch, best_state, stale = (-math.inf if higher else math.inf), 0, None, 0
    devices = [device] if device.type == "cuda" else []
    resume = Path(resume_path) if resume_path is not None else None
    fingerprint = _fingerprint(config, model, (train, val, test)) if resume is not None else None
    first, last_save = 1, time.perf_counter()
    logger.info("loaded %d/%d/%d train/val/test images and moved the model to %s in %.1f s", len(train), len(val),
                len(test), device, last_save - setup_start)
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed)
        if resume is not None and resume.is_file():
            state = _load_resume(resume, fingerprint)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            generator.set_state(state["generator"])
            torch.set_rng_state(state["cpu_rng"])
            if devices and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"], device)
            history, best_state = list(state["history"]), state["best_state"]
            best_score, best_epoch, stale = float(state["best_score"]), int(state["best_epoch"]), int(state["stale"])
            first = int(state["epoch"]) + 1
            logger.info("resuming from %s after epoch %d (best %d)", resume, first - 1, best_epoch)
        done = first > 1 and stale >= config.patience
        epochs = tqdm(range(first, config.epochs + 1) if not done else [], desc="training", disable=not progress,
                      unit="epoch", initial=first - 1, total=config.epochs)
        for epoch in epochs:
            start = time.perf_counter()
            model.train()
            order = torch.randperm(len(train), generator=generator)
            if len(order) % config.batch_size == 1 and len(order) > 1:
                order = order[:-1]  # a batch of one breaks BatchNorm in training mode
            # Summed on the device in float64 (what float() + Python's sum did, bit for bit), so that
            # no batch waits for the GPU to finish the one before; read once per epoch.
            sums = {key: torch.zeros((), dtype=torch.float64, device=device) for key in ("loss", "cls_loss", "seg_loss")}
            batches = tqdm(range(0, len(order), config.batch_size), desc=f"epoch {epoch}", leave=False,
                           disable=not progress, unit="batch")
            for first in batches:
                idx = order[first:first + config.batch_size]
                x, y = train.x[idx].to(device, non_blocking=True), train.y[idx].to(device)
                masks, has_mask = train.masks[idx].to(device), train.has_mask[idx].to(device)
                if augment is not None:  # on the device; the random draws come from the seeded CPU generator
                    x, masks = _augment_batch(augment, x, masks, generator)
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                    logits, mask_logits = _forward_both(model, x)
                loss, cls, seg = _losses(logits, mask_logits, y, masks, has_mask, config.seg_weight)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                for key, value in (("loss", loss), ("cls_loss", cls), ("seg_loss", seg)):
                    sums[key] += value.detach().double() * len(y)
            totals = {k: float(v) for k, v in sums.items()}  # the epoch's one wait for the device
            if not math.isfinite(totals["loss"]):  # a non-finite batch loss makes the sum non-finite
                raise TrainingError(f"the training loss became {totals['loss']} in epoch {epoch}; lower lr (now "
                                    f"{config.lr}) or disable amp.")
            row: dict[str, float] = {"epoch": epoch}
            row |= {f"train_{k}": v / len(order) for k, v in totals.items()}
            row |= {f"val_{k}": v for k, v in _evaluate(model, val, config, device, use_amp).items()}
            row["seconds"] = time.perf_counter() - start
            history.append(row)
            score = row.get(f"val_{config.monitor}")
            if score is None:
                raise TrainingError(f"monitor={config.monitor!r} but validation reports no {config.monitor} "
                                    f"(it has {', '.join(k[4:] for k in row if k.startswith('val_'))}); "
                                    "dice needs a model with a segmentation head and masks.")
            improved = (score > best_score + config.min_delta) if higher else (score < best_score - config.min_delta)
            if improved:
                best_score, best_epoch, stale = score, epoch, 0
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            else:
                stale += 1
            epochs.set_postfix(loss=f"{row['train_loss']:.3f}", val_loss=f"{row['val_loss']:.3f}",
                               val_acc=f"{row['val_accuracy']:.3f}", best=best_epoch)
            logger.info("epoch %d: %s", epoch, ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"))
            if resume is not None and time.perf_counter() - last_save >= resume_every:
                save_start = time.perf_counter()
                _save_resume(resume, {
                    "fingerprint": fingerprint, "epoch": epoch, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                    "generator": generator.get_state(), "cpu_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state(device) if devices else None, "history": history,
                    "best_state": best_state, "best_score": best_score, "best_epoch": best_epoch, "stale": stale})
                last_save = time.perf_counter()
                logger.info("wrote the resume state %s in %.1f s", resume, last_save - save_start)
            if stale >= config.patience:
                logger.info("early stop at epoch %d (best %d)", epoch, best_epoch)
                break
        epochs.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    final_start = time.perf_counter()
    val_metrics = _metrics_by_source(model, val, config, device, use_amp, names)
    test_metrics = _metrics_by_source(model, test, config, device, use_amp, names) if len(test) else {}
    logger.info("evaluated the kept epoch %d on val and test in %.1f s", best_epoch, time.perf_counter() - final_start)
    model.eval()
    if resume is not None:
        resume.unlink(missing_ok=True)
    return TrainReport(history=history, best_epoch=best_epoch, val_metrics=val_metrics, test_metrics=test_metrics)
