"""Training: metrics by hand, loss goes down on the phantom, early stopping, seeds, masks, augmentation."""

from __future__ import annotations

import logging
import sys
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_us import training
from robustbench_us.checkpoints import load_checkpoint, save_checkpoint
from robustbench_us.plugins import default_registry
from robustbench_us.protocols import Sample, Split
from robustbench_us.training import (TrainConfig, TrainingError, TrainReport, classification_metrics, dice_loss,
                                     dice_score, train_model)
from tests.fakes.tiny import TinyNet

FAST = TrainConfig(epochs=5, batch_size=8, lr=1e-2, augment=False, seed=0)


class SmallNet(nn.Module):
    """Three Conv+BN+ReLU stages, a 2-way head and a mask head; learns the phantom at 32×32 in a few epochs."""

    def __init__(self, input_size: int = 32) -> None:
        super().__init__()
        self.input_size, self.has_segmentation, self.init = input_size, True, "scratch"

        def block(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU())

        self.stage1 = nn.Sequential(block(3, 8), nn.MaxPool2d(2))
        self.stage2 = nn.Sequential(block(8, 16), nn.MaxPool2d(2))
        self.stage3 = block(16, 16)
        self.head = nn.Linear(16, 2)
        self.mask_head = nn.Conv2d(16, 1, 1)

    @property
    def cam_layer(self) -> nn.Module:
        return self.stage3

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage3(self.stage2(self.stage1(x - 0.5)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_both(x)[1]

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(x)
        masks = F.interpolate(self.mask_head(feats), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(feats.mean(dim=(2, 3))), masks


class Maskless:
    """A dataset wrapper whose samples have no mask (like a classification-only dataset)."""

    name = "maskless"
    classes = ("benign", "malignant")

    def __init__(self, inner) -> None:
        self.inner = inner
        self.labels = inner.labels

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> Sample:
        return replace(self.inner[index], mask=None)

    def manifest_hash(self) -> str:
        return "maskless-" + self.inner.manifest_hash()

    def split(self, seed: int, fractions=(0.7, 0.1, 0.2)) -> Split:
        return self.inner.split(seed, fractions)


@pytest.fixture(scope="module")
def phantom():
    # 80 images: with 40, the 4 validation images pick an early epoch and the check becomes a coin toss.
    return default_registry().create("dataset", "phantom", root=None, image_size=32, count=80, seed=0)


@pytest.fixture(scope="module")
def small():
    """Twenty images (14 train / 2 val / 4 test): enough for the mechanics, fast."""
    return default_registry().create("dataset", "phantom", root=None, image_size=32, count=20, seed=0)


@pytest.fixture(scope="module")
def trained(phantom):
    """One short training run shared by the tests that inspect its result."""
    split = phantom.split(0)
    x = torch.stack([phantom[i].image for i in split.train])
    y = torch.tensor([phantom[i].label for i in split.train])
    torch.manual_seed(0)
    model = SmallNet()
    model.eval()
    with torch.no_grad():
        before = F.cross_entropy(model(x), y).item()
    report = train_model(model, [(phantom, split)], replace(FAST, epochs=8), progress=False)
    with torch.no_grad():
        after = F.cross_entropy(model(x), y).item()
    return model, report, before, after


# ----------------------------------------------------------------------- by hand
def test_classification_metrics_by_hand():
    # Malignant scores 0.9, 0.4 (true 1), benign 0.4, 0.2 (true 0): one tie across classes.
    probs = torch.tensor([0.9, 0.4, 0.4, 0.2])
    logits = torch.stack([torch.zeros(4), torch.log(probs / (1 - probs))], dim=1)
    y = torch.tensor([1, 1, 0, 0])
    m = classification_metrics(logits, y)
    assert m["accuracy"] == pytest.approx(3 / 4)  # predictions 1, 0, 0, 0
    assert m["sensitivity"] == pytest.approx(1 / 2)
    assert m["specificity"] == pytest.approx(1.0)
    # Pairs (pos, neg): (0.9 > 0.4), (0.9 > 0.2), (0.4 = 0.4 → ½), (0.4 > 0.2) → 3.5 / 4.
    assert m["auc"] == pytest.approx(3.5 / 4)


def test_auc_with_one_class_is_nan():
    m = classification_metrics(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1, 1]))
    assert m["auc"] != m["auc"] and m["specificity"] != m["specificity"]
    assert m["sensitivity"] == 0.5


def test_dice_score_and_loss_by_hand():
    target = torch.zeros(2, 4, 4, dtype=torch.bool)
    target[0, :2, :2] = True  # 4 pixels
    logits = torch.full((2, 1, 4, 4), -10.0)
    logits[0, 0, :2, :] = 10.0  # 8 pixels predicted, 4 of them right → 2·4 / (8 + 4)
    # second image: nothing predicted, nothing there → 1
    assert dice_score(logits, target) == pytest.approx((8 / 12 + 1) / 2)
    perfect = torch.where(target[:, None], 20.0, -20.0)
    assert dice_loss(perfect, target[:, None]) == pytest.approx(0.0, abs=1e-6)


def test_config_defaults_and_validation():
    config = TrainConfig()
    assert (config.epochs, config.batch_size, config.lr, config.patience, config.seg_weight) == (80, 32, 1e-4, 10,
                                                                                                 1.0)
    assert config.to_dict()["augment"] is True
    with pytest.raises(TrainingError, match="TrainConfig.epochs=0 must be at least 1"):
        TrainConfig(epochs=0)
    with pytest.raises(TypeError):  # the runner turns this into a suite error listing the keys
        TrainConfig(bogus=1)


# ----------------------------------------------------------------------- training
def test_training_reduces_the_loss(trained):
    model, report, before, after = trained
    assert isinstance(report, TrainReport)
    # The objective (cross-entropy + Dice + BCE) falls epoch by epoch, and the classification part
    # alone, measured on the training images in eval mode, is lower after training than before.
    assert report.history[-1]["train_loss"] < 0.9 * report.history[0]["train_loss"], report.history
    assert after < before, (before, after)
    assert not model.training  # left in eval mode


def test_report_shape(trained):
    _, report, _, _ = trained
    assert [row["epoch"] for row in report.history] == list(range(1, len(report.history) + 1))
    assert {"train_loss", "train_cls_loss", "train_seg_loss", "val_loss", "val_accuracy", "val_auc", "val_dice",
            "seconds"} <= set(report.history[0])
    assert 1 <= report.best_epoch <= len(report.history)
    best = report.history[report.best_epoch - 1]
    assert best["val_loss"] == min(row["val_loss"] for row in report.history)
    assert report.val_metrics["loss"] == pytest.approx(best["val_loss"], rel=1e-6)  # best weights restored
    assert {"accuracy", "sensitivity", "specificity", "auc", "dice"} <= set(report.test_metrics)
    assert all(isinstance(v, float) for v in report.test_metrics.values())


def test_trained_model_reloads_bit_identical(trained, tmp_path):
    model, report, _, _ = trained
    sha = save_checkpoint(model, tmp_path / "small", {"architecture": "small", "test_metrics": report.test_metrics})
    fresh = SmallNet()
    card = load_checkpoint(fresh, tmp_path / "small", expected_sha256=sha)
    assert card["test_metrics"] == report.test_metrics
    state, loaded = model.state_dict(), fresh.state_dict()
    assert all(torch.equal(state[k], loaded[k]) for k in state)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(x), fresh.eval()(x))


def test_same_seed_same_numbers(small):
    def run(seed: int):
        torch.manual_seed(0)
        model = SmallNet()
        report = train_model(model, [(small, small.split(0))], replace(FAST, epochs=2, seed=seed),
                             progress=False)
        return [{k: v for k, v in row.items() if k != "seconds"} for row in report.history], model.state_dict()

    (h1, s1), (h2, s2), (h3, _) = run(0), run(0), run(1)
    assert h1 == h2 and all(torch.equal(s1[k], s2[k]) for k in s1)
    assert h1 != h3  # the seed drives the batch order


def test_a_non_finite_loss_stops_training_with_the_epoch_and_the_fix(small):
    class GoesNaN(SmallNet):
        def forward_both(self, x):
            logits, masks = super().forward_both(x)
            return logits * float("nan"), masks

    torch.manual_seed(0)
    with pytest.raises(TrainingError, match=r"the training loss became nan in epoch 1; lower lr \(now 0.01\)"):
        train_model(GoesNaN(), [(small, small.split(0))], replace(FAST, epochs=3), progress=False)


def test_epoch_losses_are_the_mean_of_the_batch_losses(small, monkeypatch):
    """The per-epoch train losses (summed on the device) equal the batch losses averaged on the host."""
    seen = []
    losses = training._losses

    def record(*args, **kwargs):
        out = losses(*args, **kwargs)
        seen.append((float(out[0]), len(args[2])))
        return out

    monkeypatch.setattr(training, "_losses", record)
    torch.manual_seed(0)
    report = train_model(SmallNet(), [(small, small.split(0))], replace(FAST, epochs=1), progress=False)
    n_train, count, total = len(small.split(0).train), 0, 0.0
    for loss, n in seen:  # the training batches come first, then validation and test
        if count == n_train:
            break
        total, count = total + loss * n, count + n
    assert count == n_train and len(seen) > 2
    assert report.history[0]["train_loss"] == total / n_train


def test_early_stopping_restores_the_best_epoch(small):
    torch.manual_seed(0)
    model = SmallNet()
    config = replace(FAST, epochs=10, patience=1, min_delta=1e3)  # nothing beats epoch 1 by 1000
    report = train_model(model, [(small, small.split(0))], config, progress=False)
    assert len(report.history) == 2 and report.best_epoch == 1
    assert report.val_metrics["loss"] == pytest.approx(report.history[0]["val_loss"], rel=1e-6)


def test_datasets_with_and_without_masks_train_together(small):
    torch.manual_seed(0)
    model = SmallNet()
    maskless = Maskless(small)
    report = train_model(model, [(small, small.split(0)), (maskless, maskless.split(1))],
                         replace(FAST, epochs=1), progress=False)
    names = {key.split("/")[0] for key in report.test_metrics if "/" in key}
    assert len(names) == 2 and "maskless" in names
    (other,) = names - {"maskless"}
    assert f"{other}/dice" in report.test_metrics
    assert "maskless/dice" not in report.test_metrics  # no masks, no Dice
    # TinyNet has no forward_both: training falls back to forward + segment.
    only_maskless = train_model(TinyNet(), [(maskless, maskless.split(0))], replace(FAST, epochs=1),
                                progress=False)
    assert only_maskless.history[0]["train_seg_loss"] == 0.0 and "dice" not in only_maskless.test_metrics


def test_missing_validation_split_is_refused(small):
    split = small.split(0)
    with pytest.raises(TrainingError, match="validation split of every dataset is empty"):
        train_model(SmallNet(), [(small, Split(split.train, (), split.test))], FAST, progress=False)


def test_mixed_image_sizes_are_refused(small):
    other = default_registry().create("dataset", "phantom", root=None, image_size=64, count=20, seed=0)
    with pytest.raises(TrainingError, match="same image_size"):
        train_model(SmallNet(), [(small, small.split(0)), (other, other.split(0))], FAST, progress=False)


def test_missing_augmentation_module_warns_and_trains_without(small, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "robustbench_us.data.augment", None)  # import now fails
    monkeypatch.setattr(training, "_warned_no_augment", False)
    with caplog.at_level(logging.WARNING, logger="robustbench_us.training"):
        train_model(SmallNet(), [(small, small.split(0))], replace(FAST, epochs=1, augment=True),
                    progress=False)
    assert "training WITHOUT augmentation" in caplog.text


def test_augmentation_moves_image_and_mask_together(small, monkeypatch):
    augment_module = pytest.importorskip("robustbench_us.data.augment")
    calls = []
    real = augment_module.augment

    def spy(image, mask, generator):
        calls.append((image.shape, mask.shape, mask.dtype, generator))
        return real(image, mask, generator)

    monkeypatch.setattr(augment_module, "augment", spy)
    train_model(SmallNet(), [(small, small.split(0))], replace(FAST, epochs=1, augment=True), progress=False)
    assert len(calls) == 2  # 14 training images in batches of 8
    image_shape, mask_shape, mask_dtype, generator = calls[0]
    assert image_shape == (8, 3, 32, 32) and mask_shape == (8, 1, 32, 32) and mask_dtype == torch.bool
    assert isinstance(generator, torch.Generator)


def test_amp_on_cpu_warns(small, caplog):
    with caplog.at_level(logging.WARNING, logger="robustbench_us.training"):
        train_model(SmallNet(), [(small, small.split(0))], replace(FAST, epochs=1, amp=True), progress=False)
    assert "amp=True needs a CUDA device" in caplog.text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_amp_training(small):
    torch.manual_seed(0)
    model = SmallNet()
    report = train_model(model, [(small, small.split(0))], replace(FAST, epochs=2, amp=True), device="cuda",
                         progress=False)
    assert next(model.parameters()).device.type == "cuda"
    assert all(row["train_loss"] == row["train_loss"] for row in report.history)  # finite, not NaN


@pytest.mark.slow
def test_resnet50_mtl_trains_both_heads_in_one_pass(small):
    torch.manual_seed(0)
    model = default_registry().create("model", "resnet50-mtl", input_size=32)
    head, decoder_out = model.head.weight.detach().clone(), model.decoder.out.weight.detach().clone()
    report = train_model(model, [(small, small.split(0))], replace(FAST, epochs=1, batch_size=4), progress=False)
    assert not torch.equal(head, model.head.weight) and not torch.equal(decoder_out, model.decoder.out.weight)
    assert report.history[0]["train_seg_loss"] > 0 and "dice" in report.test_metrics


@pytest.mark.realdata
@pytest.mark.slow
def test_trains_on_busi_and_busbra_together(data_root):
    registry = default_registry()
    pairs = []
    for name in ("busi", "busbra"):
        dataset = registry.create("dataset", name, root=str(data_root), image_size=32, seed=0)
        pairs.append((dataset, dataset.split(0)))
    report = train_model(TinyNet(), pairs, replace(FAST, epochs=1, batch_size=64), progress=False)
    assert {"busi/accuracy", "busbra/accuracy", "accuracy", "auc"} <= set(report.test_metrics)
    n_test = sum(len(split.test) for _, split in pairs)
    assert n_test > 100 and 0.0 <= report.test_metrics["accuracy"] <= 1.0


def test_interrupted_training_resumes_as_if_it_never_stopped(small, tmp_path, monkeypatch):
    """A training killed after epoch 2 and run again continues at epoch 3 and ends bit for bit as an unbroken one."""
    config = replace(FAST, epochs=4, augment=True, patience=10)

    def fresh() -> SmallNet:
        torch.manual_seed(0)
        return SmallNet()

    whole = fresh()
    expected = train_model(whole, [(small, small.split(0))], config, progress=False)

    resume = tmp_path / "model.resume.pt"
    evaluate, calls = training._evaluate, []

    def dies_in_epoch_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # e.g. a scheduler's time limit running out
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(training, "_evaluate", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train_model(fresh(), [(small, small.split(0))], config, progress=False, resume_path=resume, resume_every=0)
    monkeypatch.setattr(training, "_evaluate", evaluate)
    assert resume.is_file()

    resumed = SmallNet()  # other initial weights: everything must come from the file
    report = train_model(resumed, [(small, small.split(0))], config, progress=False, resume_path=resume,
                         resume_every=0)
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert [row["epoch"] for row in report.history] == [1, 2, 3, 4]
    assert strip(report.history) == strip(expected.history) and report.best_epoch == expected.best_epoch
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in whole.state_dict().items())
    assert report.test_metrics == expected.test_metrics
    assert not resume.exists()  # removed once training has ended


def test_resume_file_of_another_training_is_refused(small, tmp_path, monkeypatch):
    resume = tmp_path / "m.resume.pt"
    evaluate = training._evaluate

    calls = []

    def dies_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(training, "_evaluate", dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_model(SmallNet(), [(small, small.split(0))], replace(FAST, epochs=3), progress=False,
                    resume_path=resume, resume_every=0)
    monkeypatch.setattr(training, "_evaluate", evaluate)
    with pytest.raises(TrainingError, match="belongs to another training.*delete it"):
        train_model(SmallNet(), [(small, small.split(0))], replace(FAST, epochs=3, lr=1e-3), progress=False,
                    resume_path=resume)
    resume.write_bytes(b"garbage")
    with pytest.raises(TrainingError, match="cannot read the resume file"):
        train_model(SmallNet(), [(small, small.split(0))], FAST, progress=False, resume_path=resume)


def test_resume_state_is_written_at_most_every_resume_every_seconds(small, tmp_path, monkeypatch):
    writes = []
    monkeypatch.setattr(training, "_save_resume", lambda path, state: writes.append(state["epoch"]))
    train_model(SmallNet(), [(small, small.split(0))], replace(FAST, epochs=3), progress=False,
                resume_path=tmp_path / "r.pt", resume_every=3600)
    assert writes == []  # a short training never pays for the write
    train_model(SmallNet(), [(small, small.split(0))], replace(FAST, epochs=3, patience=10), progress=False,
                resume_path=tmp_path / "r.pt", resume_every=0)
    assert writes == [1, 2, 3]


@pytest.mark.parametrize("monitor", ["auc", "cls_loss", "dice"])
def test_monitor_picks_the_best_epoch_by_that_score(small, monitor):
    torch.manual_seed(0)
    model = SmallNet()
    config = replace(FAST, epochs=5, patience=10, monitor=monitor)
    report = train_model(model, [(small, small.split(0))], config, progress=False)
    scores = [row[f"val_{monitor}"] for row in report.history]
    best = (max if training.MONITORS[monitor] else min)(scores)
    assert report.best_epoch == scores.index(best) + 1  # the first epoch reaching the best score
    assert report.val_metrics[monitor] == pytest.approx(best, abs=1e-6)  # its weights were restored


def test_monitor_is_checked(small):
    with pytest.raises(TrainingError, match="monitor='f1' is not one of loss, cls_loss, seg_loss, auc, accuracy"):
        TrainConfig(monitor="f1")
    maskless = Maskless(small)  # no masks: validation has no Dice to choose by
    with pytest.raises(TrainingError, match="monitor='dice' but validation reports no dice"):
        train_model(TinyNet(), [(maskless, maskless.split(0))], replace(FAST, epochs=1, monitor="dice"),
                    progress=False)
