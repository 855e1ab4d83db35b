"""Checkpoints: bit-identical round trip, sha256 verification, refusal of pickles and wrong architectures."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from torch import nn

from robustbench_us.checkpoints import checkpoint_paths, file_sha256, load_checkpoint, read_card, save_checkpoint
from robustbench_us.errors import CheckpointError
from tests.fakes.tiny import TinyNet


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def saved(tmp_path):
    model = TinyNet(input_size=32, seed=0)
    sha = save_checkpoint(model, tmp_path / "tiny", {"architecture": "tiny-cnn", "test_metrics": {"accuracy": 0.75}})
    return model, tmp_path / "tiny", sha


def test_round_trip_is_bit_identical_and_card_records_sha(saved):
    model, path, sha = saved
    weights, card_path = checkpoint_paths(path)
    assert weights.name == "tiny.safetensors" and card_path.name == "tiny.json"
    assert sha == file_sha256(weights) == hashlib.sha256(weights.read_bytes()).hexdigest()
    card = json.loads(card_path.read_text())
    assert card["sha256"] == sha and card["architecture"] == "tiny-cnn"
    assert card["test_metrics"] == {"accuracy": 0.75}  # numbers stay numbers
    assert card["num_parameters"] == sum(p.numel() for p in model.parameters())
    other = TinyNet(input_size=32, seed=1)
    assert not _same_state(model, other)
    loaded_card = load_checkpoint(other, weights)  # the .safetensors suffix is accepted too
    assert _same_state(model, other)
    assert loaded_card["sha256"] == sha
    assert other.init == f"checkpoint:{weights}"
    assert not list(path.parent.glob("*.tmp"))  # atomic writes leave no temporary files


def test_expected_sha256_mismatch_is_refused(saved, reliability):
    _, path, sha = saved
    wrong = "0" * 64
    with pytest.raises(CheckpointError, match=r"integrity check.*expected_sha256 says 0{64}"):
        load_checkpoint(TinyNet(), path, expected_sha256=wrong)
    load_checkpoint(TinyNet(), path, expected_sha256=sha.upper())  # case does not matter
    reliability.row("Bad input", "checkpoint whose sha256 differs from the suite's", "refused with CheckpointError naming the file and both digests", checkpoints_refused=1)


def test_modified_weights_are_refused_by_the_card_sha(saved):
    _, path, _ = saved
    weights, _ = checkpoint_paths(path)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # flip bits of the last weight
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"tiny\.json says"):
        load_checkpoint(TinyNet(), path)


def test_truncated_file_is_refused(saved, reliability):
    _, path, _ = saved
    weights, card_path = checkpoint_paths(path)
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="integrity check"):
        load_checkpoint(TinyNet(), path)
    # Even with a card that matches the truncated bytes, the reader refuses it.
    card = json.loads(card_path.read_text())
    card["sha256"] = file_sha256(weights)
    card_path.write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(TinyNet(), path)
    reliability.row("Bad input", "truncated checkpoint (with its card, and with a card matching the truncated bytes)", "refused both times; nothing loaded", checkpoints_refused=2)


def test_wrong_architecture_is_refused_with_names(saved, reliability):
    _, path, _ = saved
    three_way = TinyNet(num_classes=3)
    with pytest.raises(CheckpointError, match=r"shape mismatch: head\.weight.*saved from 'tiny-cnn'"):
        load_checkpoint(three_way, path)
    plain = nn.Sequential(nn.Conv2d(3, 8, 3))
    with pytest.raises(CheckpointError, match="missing from checkpoint: 0.weight"):
        load_checkpoint(plain, path)
    reliability.row("Bad input", "checkpoint of another architecture", "refused, naming the mismatched tensors", checkpoints_refused=2)


@pytest.mark.parametrize("name", ["weights.pt", "weights.safetensors"])
def test_pickle_files_are_refused_without_unpickling(tmp_path, name, reliability):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    target = tmp_path / name
    torch.save({"x": torch.ones(1), "boom": Boom()}, target)
    card = {"sha256": file_sha256(target)}
    (tmp_path / "weights.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_checkpoint(TinyNet(), target)
    reliability.row("Bad input", f"pickle holding code, saved as {name}", "refused; never unpickled (the payload did not run)", checkpoints_refused=1)


def test_missing_card_needs_an_expected_digest(saved):
    model, path, sha = saved
    _, card_path = checkpoint_paths(path)
    card_path.unlink()
    assert read_card(path) is None
    with pytest.raises(CheckpointError, match="no model card"):
        load_checkpoint(TinyNet(seed=3), path)
    other = TinyNet(seed=3)
    assert load_checkpoint(other, path, expected_sha256=sha)["sha256"] == sha
    assert _same_state(model, other)


def test_missing_file_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(CheckpointError, match=r"nothing\.safetensors do not exist.*robustbench-us train"):
        load_checkpoint(TinyNet(), tmp_path / "nothing")


def test_unserialisable_card_is_refused_before_writing(tmp_path):
    with pytest.raises(CheckpointError, match="not JSON-serialisable"):
        save_checkpoint(TinyNet(), tmp_path / "bad", {"model": object()})
    assert not list(tmp_path.iterdir())


def test_the_same_weights_always_hash_the_same(tmp_path):
    model = TinyNet(seed=5)
    digests = {save_checkpoint(model, tmp_path / f"c{i}", {"architecture": "tiny-cnn"}) for i in range(8)}
    assert len(digests) == 1  # the card's sha256 is reproducible, so records compare across runs
