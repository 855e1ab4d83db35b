"""The pytest plugin: a user's robustness regression test runs one cell through the runner."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
from pathlib import Path

import pytest

from robustbench_us.errors import SuiteError
from robustbench_us.pytest_plugin import cell_suite_data

pytest_plugins = ["pytester"]

PLUGIN = "robustbench_us.pytest_plugin"
# Once robustbench-us declares the pytest11 entry point, pytest loads the plugin by itself;
# until then (and in any environment without it) the tests name it with -p.
AUTOLOADED = (any(ep.value == PLUGIN for ep in metadata.entry_points(group="pytest11"))
              and not os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"))
PLUGIN_ARGS = () if AUTOLOADED else ("-p", PLUGIN)

CONFTEST = """
import pytest
from robustbench_us.plugins import Registry, get_plugin_manager
from tests.fakes import toy


@pytest.fixture(scope="session")
def robustbench_registry():
    return Registry(get_plugin_manager(environ={"ROBUSTBENCH_US_PLUGINS": "gradcam,fgsm"},
                                       extra_plugins=[("toy", toy)]))
"""

CELL_KWARGS = {"dataset": "toy-squares", "model": "tiny-cnn", "explainer": "gradcam", "n_images": 8, "batch_size": 4,
               "seed": 1, "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "augment": False}}
CELL = ", ".join(f"{key}={value!r}" for key, value in CELL_KWARGS.items())


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess(*PLUGIN_ARGS, "-p", "no:cacheprovider", "-q",
                                        "-W", "ignore::pytest.PytestAssertRewriteWarning", *args)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A results folder holding the toy model, trained once here for every pytester session below.

    Running the cell out here first also matters because pytester drops modules first
    imported inside an in-process run, and torch refuses to import some of them twice.
    """
    from robustbench_us.plugins import Registry, get_plugin_manager
    from robustbench_us.pytest_plugin import run_cell
    from tests.fakes import toy

    folder = tmp_path_factory.mktemp("cells")
    registry = Registry(get_plugin_manager(environ={"ROBUSTBENCH_US_PLUGINS": "gradcam,fgsm"},
                                           extra_plugins=[("toy", toy)]))
    metrics = run_cell(folder, registry=registry, attack="fgsm", eps=0.0, **CELL_KWARGS)
    assert metrics["flip_rate"] == 0.0 and metrics.path.is_file()
    return folder


def test_a_cell_returns_its_metrics_and_a_regression_assert_fails_like_any_test(pytester, results):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_robust=f"""
        import pytest

        def test_no_perturbation_changes_nothing(robustbench_cell):
            metrics = robustbench_cell({CELL}, attack="fgsm", eps=0.0)
            assert metrics["flip_rate"] == 0.0 and metrics["linf"] == 0.0
            assert metrics["adv_accuracy"] == metrics["clean_accuracy"]
            assert metrics.config["attack"] == "fgsm" and metrics.record["status"] == "ok"

        def test_a_regression_gate(robustbench_cell):
            metrics = robustbench_cell({CELL}, attack="fgsm", eps_grey=8)
            assert metrics["linf_grey"] == pytest.approx(8.0, abs=1e-3)
            assert metrics["linf_grey"] <= 4, "perturbation larger than 4 grey levels"
    """)
    records = results / "pytest-cells" / "records"
    (checkpoint,) = (results / "pytest-cells" / "checkpoints").glob("*.safetensors")
    trained_at = checkpoint.stat().st_mtime_ns
    (warm,) = records.glob("*.json")
    warm_integrity = json.loads(warm.read_text())["integrity"]

    result = run(pytester, f"--robustbench-results={results}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: perturbation larger than 4 grey levels*"])
    assert len(list(records.glob("*.json"))) == 2
    assert checkpoint.stat().st_mtime_ns == trained_at  # the model trained by the fixture was reused
    recomputed = json.loads(warm.read_text())["integrity"]
    assert recomputed != warm_integrity  # cells are recomputed by default (new timings, new record)

    # With --robustbench-reuse a stored record is returned as it is.
    result = run(pytester, f"--robustbench-results={results}", "--robustbench-reuse", "-k", "no_perturbation")
    result.assert_outcomes(passed=1, deselected=1)
    assert json.loads(warm.read_text())["integrity"] == recomputed


def test_a_cell_that_failed_fails_the_test_with_its_error(pytester, results):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_broken=f"""
        def test_raising_attack(robustbench_cell):
            robustbench_cell({CELL}, attack="raising", eps=0.01)
    """)
    result = run(pytester, f"--robustbench-results={results}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*robustbench_cell: cell toy-squares_tiny-cnn_gradcam_raising-*ended failed: "
                                 "plugin 'toy' raised ValueError: boom from the broken attack*"])
    assert "During handling" not in result.stdout.str()


def test_a_typo_in_a_plugin_name_fails_with_the_suggestion(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_typo=f"""
        def test_typo(robustbench_cell):
            robustbench_cell({CELL}, attack="fgms", eps=0.01)
    """)
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*attacks[[]0[]].name: Unknown attack 'fgms'*Did you mean 'fgsm'?*"])


def test_options_are_listed_in_help_and_the_header(pytester, tmp_path):
    result = run(pytester, "--help")
    result.stdout.fnmatch_lines(["*robustbench-us benchmark cells*", "*--robustbench-results=DIR*",
                                 "*--robustbench-reuse*", "*--robustbench-device*"])
    pytester.makepyfile(test_nothing="def test_ok(): pass")
    result = pytester.runpytest_inprocess(*PLUGIN_ARGS, "-p", "no:cacheprovider",
                                          f"--robustbench-results={tmp_path}")
    result.stdout.fnmatch_lines([f"robustbench-us: cell results in {tmp_path}"])


def test_the_cell_is_an_ordinary_one_cell_suite():
    data = cell_suite_data(model="resnet50", input_size=64, checkpoint="w.safetensors", sha256="ab",
                           attack="ifgsm", eps_grey=1, root="/data", dataset="busi")
    assert data["models"] == [{"name": "resnet50", "options": {}, "input_size": 64, "checkpoint": "w.safetensors",
                               "sha256": "ab"}]
    assert data["attacks"] == [{"name": "ifgsm", "options": {}, "region": "all", "eps_grey": 1.0}]
    assert data["datasets"][0]["root"] == "/data"
    with pytest.raises(SuiteError, match="give exactly one of checkpoint="):
        cell_suite_data(model="resnet50")
    with pytest.raises(SuiteError, match="not both"):
        cell_suite_data(train={}, eps=0.1, eps_grey=1)


def test_a_pair_the_grid_leaves_out_is_explained(tmp_path):
    from robustbench_us.errors import RobustBenchError
    from robustbench_us.pytest_plugin import run_cell

    with pytest.raises(RobustBenchError, match="explainer 'segmentation' needs a model with a segmentation head"):
        run_cell(tmp_path, model="resnet50", train={"epochs": 1}, explainer="segmentation", attack="fgsm")
