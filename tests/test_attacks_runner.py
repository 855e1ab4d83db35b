"""Every attack of this project through the runner on toy plugins: valid cells, regions, and real numbers."""

from __future__ import annotations

import json

import pytest
import torch

from robustbench_us.plugins import Registry, get_plugin_manager
from robustbench_us.records import Status
from robustbench_us.runner import run_suite
from robustbench_us.suite import parse_suite
from tests.fakes import toy

ENV = {"ROBUSTBENCH_US_PLUGINS": "gradcam,fgsm,iterative,explanation-attacks,art"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors on a shared 2-core machine: extra intra-op threads only thrash."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_attack_runs_as_valid_cells(tmp_path):
    registry = Registry(get_plugin_manager(environ=ENV, extra_plugins=[("toy", toy)]))
    attacks = [
        {"name": "fgsm", "eps": 8 / 255},
        {"name": "ifgsm-paper", "eps": 1 / 255},
        {"name": "ifgsm", "eps": 8 / 255, "options": {"steps": 5}, "region": "inside"},
        {"name": "pgd", "eps": 8 / 255, "options": {"steps": 3}, "region": "outside"},
        {"name": "pgd-l2", "eps": 0.5, "options": {"steps": 3}},
        {"name": "random-sign", "eps": 8 / 255},
        {"name": "topk", "eps": 8 / 255, "options": {"steps": 3}},
        {"name": "mass-center", "eps": 8 / 255, "options": {"steps": 3}},
        {"name": "target-map", "eps": 8 / 255, "options": {"steps": 3}},
        {"name": "art:bim", "eps": 8 / 255, "options": {"max_iter": 3}},
    ]
    suite = parse_suite({
        "suite": {"name": "attacks", "seed": 1, "n_images": 8, "batch_size": 4},
        "datasets": [{"name": "toy-squares", "options": {"count": 40}}],
        "models": [{"name": "tiny-cnn", "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "augment": False}}],
        "explainers": [{"name": "gradcam"}],
        "attacks": attacks,
    }, registry=registry)
    summary = run_suite(suite, tmp_path, registry=registry, progress=False)
    records = {json.loads(p.read_text())["config"]["attack"]: json.loads(p.read_text()) for p in summary.written}
    assert set(records) == {a["name"] for a in attacks}
    for name, record in records.items():
        assert record["status"] == Status.OK, (name, record.get("error"), record.get("reason"))
    for name in ("topk", "mass-center", "target-map"):
        assert records[name]["metrics"]["flip_rate"] == 0.0
    assert records["ifgsm-paper"]["metrics"]["linf"] == pytest.approx(1 / 255, abs=1e-6)
    assert records["random-sign"]["metrics"]["linf"] == pytest.approx(8 / 255, abs=1e-6)
