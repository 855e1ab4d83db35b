"""The published record schema: the runner's records pass, malformed ones fail naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from robustbench_us.errors import RecordError
from robustbench_us.records import Record, Status
from robustbench_us.schema import record_schema, validate_record

REPO = Path(__file__).resolve().parents[1]


def make_record(**changes) -> dict:
    """A valid record as the runner writes it (through records.Record, so the two cannot drift)."""
    fields = dict(
        suite="demo", cell_id="busi_resnet50_gradcam_ifgsm-all_eps1-0123456789", status=Status.OK,
        config={"dataset": "busi", "model": "resnet50", "explainer": "gradcam", "attack": "ifgsm",
                "eps": 1 / 255, "eps_grey": 1.0, "attack_options": {"steps": 25}, "n_images": 64, "seed": 0,
                "image_size": 224, "region": "all"},
        metrics={"clean_accuracy": 0.9, "adv_accuracy": 0.4, "clean_sensitivity": float("nan")},
        timing={"attack_seconds": 1.5},
        provenance={"package_version": "0.1.0", "git_commit": None, "torch": "2.14.1", "python": "3.11.7",
                    "device": "cpu", "dataset_manifest": "ab" * 32, "model_init": "imagenet",
                    "checkpoint_sha256": "cd" * 32},
        figures=["figures/busi_resnet50/label_kept.png"],
    )
    fields.update(changes)
    return Record(**fields).to_dict()


def test_runner_record_is_valid():
    data = make_record()
    assert data["metrics"]["clean_sensitivity"] is None  # nan is stored as null
    assert validate_record(data, "x.json") is data


@pytest.mark.parametrize("change, where", [
    ({"status": "done"}, "status"),
    ({"metrics": {"clean_accuracy": "0.9"}}, "metrics/clean_accuracy"),
    ({"figures": ["../../etc/passwd"]}, "figures/0"),
    ({"figures": ["/abs/fig.png"]}, "figures/0"),
    ({"cell_id": "../escape"}, "cell_id"),
    ({"schema_version": 2}, "schema_version"),
])
def test_malformed_record_is_refused_naming_file_and_field(change, where):
    data = make_record() | change
    with pytest.raises(RecordError) as info:
        validate_record(data, "results/demo/records/cell.json")
    message = str(info.value)
    assert message.startswith("results/demo/records/cell.json: not a valid result record")
    assert f"at {where}:" in message
    assert "re-run the suite" in message


def test_missing_config_key_is_named():
    data = make_record()
    del data["config"]["eps"]
    with pytest.raises(RecordError, match=r"at config: 'eps' is a required property"):
        validate_record(data, "cell.json")


def test_schema_is_published_in_the_docs():
    schema = record_schema()
    assert schema["properties"]["schema_version"]["const"] == 1
    doc = (REPO / "docs" / "leaderboard.md").read_text(encoding="utf-8")
    assert "record.schema.json" in doc
    for key in schema["required"]:
        assert f"`{key}`" in doc, f"docs/leaderboard.md does not describe record field {key!r}"
