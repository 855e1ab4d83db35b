"""Every explainer through the conformance kit and through the runner, on the phantom and on BUSI."""

from __future__ import annotations

import json

import pytest

from robustbench_us.plugins import Registry, get_plugin_manager
from robustbench_us.records import Status
from robustbench_us.runner import run_suite
from robustbench_us.suite import parse_suite
from robustbench_us.testing import check_explainer
from tests.fakes import tiny
from tests.test_explainers import EXPLAINER_NAMES, FAST_OPTIONS, LIGHT_OPTIONS
from tests.test_explainers import one_thread  # noqa: F401  (autouse: one intra-op thread)

PLUGINS = "phantom,busi,gradcam,cams,gradients,segmentation,fgsm,explanation-attacks"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(get_plugin_manager(environ={"ROBUSTBENCH_US_PLUGINS": PLUGINS},
                                       extra_plugins=[("tiny", tiny)]))


@pytest.mark.parametrize("name", EXPLAINER_NAMES)
def test_explainer_passes_the_conformance_kit(name, registry):
    report = check_explainer(name, options=FAST_OPTIONS.get(name, {}), registry=registry)
    assert report is not None


def explainer_suite(dataset: dict, registry: Registry):
    return parse_suite({
        "suite": {"name": "explainers", "seed": 0, "n_images": 6, "batch_size": 3},
        "datasets": [dataset],
        "models": [{"name": "tiny-cnn", "input_size": 32,
                    "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "augment": False}}],
        "explainers": [{"name": name, "options": LIGHT_OPTIONS.get(name, {})} for name in EXPLAINER_NAMES],
        "attacks": [{"name": "fgsm", "eps": 4 / 255},
                    {"name": "mass-center", "eps": 4 / 255, "options": {"steps": 2}}],
    }, registry=registry)


def check_records(summary) -> None:
    records = [json.loads(path.read_text()) for path in summary.written]
    cells = {(r["config"]["explainer"], r["config"]["attack"]): r for r in records}
    assert set(cells) == {(e, a) for e in EXPLAINER_NAMES for a in ("fgsm", "mass-center")}
    for (explainer, attack), record in cells.items():
        assert record["status"] == Status.OK, (explainer, attack, record.get("error"), record.get("reason"))
        if attack == "mass-center":  # an explanation attack keeps every label by construction
            assert record["metrics"]["flip_rate"] == 0.0, explainer


def test_every_explainer_runs_in_a_suite_on_the_phantom(tmp_path, registry):
    suite = explainer_suite({"name": "phantom", "options": {"count": 40}}, registry)
    check_records(run_suite(suite, tmp_path, registry=registry, progress=False))


@pytest.mark.realdata
def test_every_explainer_runs_in_a_suite_on_busi(tmp_path, registry, data_root):
    suite = explainer_suite({"name": "busi", "root": str(data_root), "part": "test"}, registry)
    check_records(run_suite(suite, tmp_path, registry=registry, progress=False))
