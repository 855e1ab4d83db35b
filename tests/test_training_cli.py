"""``robustbench-us train``: checkpoint and card written, metrics printed, init-from, clean errors."""

from __future__ import annotations

import json

import pytest
import torch

from robustbench_us.checkpoints import file_sha256
from robustbench_us.cli import main
from robustbench_us.plugins import reset_default_registry

BASE = ["--dataset", "phantom", "--dataset-option", "count=20", "--image-size", "32", "--epochs", "1",
        "--batch-size", "8", "--no-augment", "--no-progress"]


@pytest.fixture
def tiny_plugins(monkeypatch):
    monkeypatch.setenv("ROBUSTBENCH_US_LOCAL_PLUGINS", "tests.fakes.tiny")
    reset_default_registry()
    yield
    reset_default_registry()


def test_train_writes_checkpoint_card_and_prints_metrics(tiny_plugins, tmp_path, capsys):
    out = tmp_path / "models" / "tiny"
    assert main(["train", "tiny-cnn", *BASE, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    weights = tmp_path / "models" / "tiny.safetensors"
    assert f"checkpoint: {weights}" in printed and f"card: {out}.json" in printed
    card = json.loads((tmp_path / "models" / "tiny.json").read_text())
    assert card["sha256"] == file_sha256(weights) and f"sha256: {card['sha256']}" in printed
    assert card["architecture"] == "tiny-cnn" and card["input_size"] == 32 and card["init"] == "scratch"
    assert card["dataset"] == "phantom" and card["split_seed"] == 0 and len(card["dataset_manifest"]) == 64
    assert card["datasets"][0]["options"] == {"count": 20}
    assert card["recipe"]["epochs"] == 1 and card["recipe"]["augment"] is False
    assert set(card["test_metrics"]) >= {"accuracy", "sensitivity", "specificity", "auc", "dice"}
    assert f"accuracy: {card['test_metrics']['accuracy']:.4f}" in printed

    # Start a second run from the first checkpoint (e.g. pre-trained on another dataset).
    again = tmp_path / "models" / "tiny2"
    assert main(["train", "tiny-cnn", *BASE, "--init-from", str(weights), "--out", str(again)]) == 0
    fine = json.loads((tmp_path / "models" / "tiny2.json").read_text())
    assert fine["init"] == f"checkpoint:{weights}" and fine["init_sha256"] == card["sha256"]


def test_train_errors_are_one_clean_line(tiny_plugins, tmp_path, capsys):
    assert main(["train", "tiny-cnm", *BASE, "--out", str(tmp_path / "x")]) == 2
    assert "Unknown model 'tiny-cnm'" in capsys.readouterr().err
    assert main(["train", "tiny-cnn", *BASE, "--init-from", str(tmp_path / "absent"), "--out",
                 str(tmp_path / "x")]) == 2
    assert "absent.safetensors do not exist" in capsys.readouterr().err
    assert main(["train", "tiny-cnn", *BASE, "--pretrained", "imagenet", "--init-from", "a", "--out",
                 str(tmp_path / "x")]) == 2
    assert "not both" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def test_an_interrupted_train_command_continues_when_run_again(tiny_plugins, tmp_path, capsys, monkeypatch):
    from robustbench_us import training

    out = tmp_path / "models" / "tiny"
    args = ["train", "tiny-cnn", *BASE, "--epochs", "3", "--patience", "5", "--resume-every", "0", "--out", str(out)]
    evaluate, calls = training._evaluate, []

    def dies_in_epoch_2(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return evaluate(*a, **k)

    monkeypatch.setattr(training, "_evaluate", dies_in_epoch_2)
    assert main(args) != 0
    assert (tmp_path / "models" / "tiny.resume.pt").is_file() and not (tmp_path / "models" / "tiny.json").exists()
    monkeypatch.setattr(training, "_evaluate", evaluate)
    capsys.readouterr()
    assert main(args) == 0
    assert "resuming the interrupted training" in capsys.readouterr().err
    card = json.loads((tmp_path / "models" / "tiny.json").read_text())
    assert card["epochs_run"] == 3 and [row["epoch"] for row in card["history"]] == [1, 2, 3]
    assert card["torch_threads"] == torch.get_num_threads()  # CPU results repeat bit for bit at the same count
    assert not (tmp_path / "models" / "tiny.resume.pt").exists()


def test_dataset_options_can_name_their_dataset(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ROBUSTBENCH_US_LOCAL_PLUGINS", "tests.fakes.toy")  # tiny-cnn and the toy-squares dataset
    reset_default_registry()
    out = tmp_path / "joint"
    args = ["train", "tiny-cnn", "--dataset", "phantom", "--dataset", "toy-squares", "--image-size", "32", "--epochs",
            "1", "--batch-size", "8", "--no-augment", "--no-progress", "--dataset-option", "phantom:count=20",
            "--out", str(out)]
    assert main(args) == 0
    card = json.loads((tmp_path / "joint.json").read_text())
    assert [d["options"] for d in card["datasets"]] == [{"count": 20}, {}]
    assert main([*args[:-2], "--dataset-option", "busbra:fold=1", "--out", str(out)]) == 2
    assert "busbra:... names a dataset that is not trained on" in capsys.readouterr().err
    reset_default_registry()
