"""Plugin versions in records: an upgraded plugin's cells are measured again, the old records kept aside."""

from __future__ import annotations

import dataclasses
import json
import logging
from importlib import metadata

from robustbench_us.checkpoints import save_checkpoint
from robustbench_us.plugins import Registry, get_plugin_manager
from robustbench_us.records import read_record
from robustbench_us.runner import run_suite
from robustbench_us.suite import parse_suite
from tests.fakes import toy
from tests.fakes.tiny import TinyNet


def test_an_upgraded_plugin_remeasures_its_cells_and_keeps_the_old_records(tmp_path, caplog, reliability):
    registry = Registry(get_plugin_manager(environ={"ROBUSTBENCH_US_PLUGINS": "gradcam,fgsm"},
                                           extra_plugins=[("toy", toy)]))
    save_checkpoint(TinyNet(input_size=32), tmp_path / "tiny", {"architecture": "tiny-cnn"})
    suite = parse_suite({
        "suite": {"name": "versions", "seed": 1, "n_images": 4, "batch_size": 4, "figures": False},
        "datasets": [{"name": "toy-squares", "options": {"count": 40}}],
        "models": [{"name": "tiny-cnn", "checkpoint": str(tmp_path / "tiny.safetensors")}],
        "explainers": [{"name": "gradcam"}], "attacks": [{"name": "fgsm", "eps_grey": [2, 4]}]}, registry=registry)
    results = tmp_path / "results"
    first = run_suite(suite, results, registry=registry, progress=False)
    old_texts = {p.name: p.read_text() for p in first.written}
    prov = json.loads(first.written[0].read_text())["provenance"]
    # Names stay where readers of records look for them; where each came from is beside them.
    assert prov["plugins"] == {"dataset": "toy", "model": "toy", "explainer": "gradcam", "attack": "fgsm"}
    installed = metadata.version("robustbench-us")
    assert prov["plugin_versions"] == {
        "dataset": {"plugin": "toy", "distribution": None, "version": None},
        "model": {"plugin": "toy", "distribution": None, "version": None},
        "explainer": {"plugin": "gradcam", "distribution": "robustbench-us", "version": installed},
        "attack": {"plugin": "fgsm", "distribution": "robustbench-us", "version": installed}}
    assert run_suite(suite, results, registry=registry, progress=False).skipped == 2  # same code: finished

    registry.infos["fgsm"] = dataclasses.replace(registry.infos["fgsm"], version="99.0")
    with caplog.at_level(logging.WARNING, logger="robustbench_us.runner"):
        upgraded = run_suite(suite, results, registry=registry, progress=False)
    assert len(upgraded.written) == 2 and upgraded.skipped == 0
    for path in upgraded.written:
        assert read_record(path)["provenance"]["plugin_versions"]["attack"]["version"] == "99.0"
    # Nothing is lost: each old record sits, byte for byte, in records/superseded/.
    kept = sorted((results / "versions" / "records" / "superseded").glob("*.json"))
    assert len(kept) == 2
    assert sorted(p.read_text() for p in kept) == sorted(old_texts.values())
    assert {p.name.split(".")[0] for p in kept} == {name.removesuffix(".json") for name in old_texts}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    for name in old_texts:
        cell = name.removesuffix(".json")
        (line,) = [w for w in warnings if cell in w]
        assert f"attack plugin 'fgsm': robustbench-us {installed} then, robustbench-us 99.0 now" in line
        assert "measuring it again" in line and "superseded" in line
    # The leaderboard's reader sees only the current records.
    assert sorted(p.name for p in (results / "versions" / "records").glob("*.json")) == sorted(old_texts)
    assert run_suite(suite, results, registry=registry, progress=False).skipped == 2
    reliability.row("Faults", "a plugin is upgraded (fgsm's distribution version changes) between two runs",
                    "its cells measured again with a warning naming cell, plugin, old and new version; the old "
                    "records kept in records/superseded/", cells_remeasured=len(upgraded.written),
                    records_kept=len(kept))
