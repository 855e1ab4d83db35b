"""The example third-party plugin, installed with pip and found the way any plugin is: its entry point.

pip installs ``plugins/example-attack`` into a temporary folder (``--target``) that the
commands below get on ``PYTHONPATH``. Entry points are read from the ``.dist-info`` pip
writes there, so this is the real discovery path, and the shared virtual environment is
never changed (nothing to uninstall, nothing other test runs could see half-installed).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from robustbench_us.gates import evaluate_thresholds
from robustbench_us.store import ResultStore
from robustbench_us.suite import load_suite

pytestmark = pytest.mark.slow  # pip, and three fresh interpreters that import torch: ~30 s

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "plugins" / "example-attack"
CLI = [sys.executable, "-m", "robustbench_us"]

SUITE = """
[suite]
name = "example-plugin"
seed = 1
n_images = 8
batch_size = 8
device = "cpu"

[[datasets]]
name = "toy-squares"
options = {{ count = 40 }}

[[models]]
name = "tiny-cnn"
train = {{ epochs = 1, batch_size = 8, lr = 1e-3, augment = false }}

[[explainers]]
name = "gradcam"

[[attacks]]
name = "uniform-noise"
eps_grey = 2

[[thresholds]]
metric = "linf_grey"
op = "<="
value = {limit}
where = {{ attack = "uniform-noise", eps_grey = 2 }}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The example plugin, pip-installed into a folder of its own."""
    work = tmp_path_factory.mktemp("example-plugin")
    source = work / "src"
    # Build from a copy, so setuptools' build/ and .egg-info never land in the checkout.
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                    "--disable-pip-version-check", "--quiet", "--target", str(target), str(source)],
                   check=True, capture_output=True, text=True, timeout=300)
    assert (target / "robustbench_us_example_attack.py").is_file()
    return target


def run_takes_junit() -> bool:
    """Whether ``robustbench-us run`` gates on thresholds and writes JUnit (``--junit``) in this version."""
    from robustbench_us.cli import build_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            build_parser().parse_args(["run", "suite.toml", "--junit", "report.xml"])
    except SystemExit:
        return False
    return True


def environment(site: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTBENCH_US_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO)])
    return env | extra


def test_the_installed_plugin_is_listed_with_its_distribution(site):
    out = subprocess.run([*CLI, "plugins"], env=environment(site), cwd=REPO, check=True, capture_output=True,
                         text=True, timeout=300)
    plugins = {p["name"]: p for p in json.loads(out.stdout)}
    assert plugins["uniform-noise"] == {
        "name": "uniform-noise", "source": "entry-point", "distribution": "robustbench-us-example-attack",
        "version": "0.1.0", "location": str(site / "robustbench_us_example_attack.py"),
        "hooks": ["register_attacks"], "registered": {"attack": ["uniform-noise"]}, "status": "loaded",
        "error": None,
    }
    assert plugins["fgsm"]["distribution"] == "robustbench-us"  # side by side with the reference plugins


def test_the_installed_plugin_passes_robustbench_us_check(site):
    out = subprocess.run([*CLI, "check", "attack", "uniform-noise", "--eps-grey", "4"], env=environment(site),
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("attack 'uniform-noise' (plugin 'uniform-noise'):") and "budget" in out.stdout


def test_the_plugins_own_tests_pass_the_conformance_kit(site, tmp_path):
    shutil.copytree(EXAMPLE / "tests", tmp_path / "tests")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "tests")],
                         env=environment(site), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "5 passed" in out.stdout


def test_it_runs_in_a_suite_and_a_threshold_fails_then_passes(site, tmp_path):
    suite_path = tmp_path / "example-plugin.toml"
    suite_path.write_text(SUITE.format(limit=1.0), encoding="utf-8")
    env = environment(site, ROBUSTBENCH_US_PLUGINS="gradcam,uniform-noise",
                      ROBUSTBENCH_US_LOCAL_PLUGINS="tests.fakes.toy")
    junit = tmp_path / "junit.xml"
    gated = run_takes_junit()
    command = [*CLI, "run", str(suite_path), "--results", str(tmp_path / "results"),
               "--leaderboards", str(tmp_path / "leaderboards"), "--no-progress"]
    if gated:
        command += ["--junit", str(junit)]
    out = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "1 cells written" in out.stdout, out.stdout + out.stderr[-3000:]

    (record,) = ResultStore(tmp_path / "results", "example-plugin").read_all()
    assert record["status"] == "ok" and record["provenance"]["plugins"]["attack"] == "uniform-noise"
    linf_grey = record["metrics"]["linf_grey"]
    assert 1.9 < linf_grey <= 2.0 + 1e-4  # uniform noise of ε = 2 grey levels: the largest of 24 576 draws
    assert "uniform-noise" in (tmp_path / "leaderboards" / "example-plugin.md").read_text(encoding="utf-8")

    failing = load_suite(suite_path)
    (result,) = evaluate_thresholds(failing.thresholds, [record])
    assert not result.passed and result.reason == f"linf_grey = {linf_grey:.4g}, needs ≤ 1"
    if gated:
        assert out.returncode != 0 and "linf_grey" in out.stdout + out.stderr and junit.is_file()

    suite_path.write_text(SUITE.format(limit=2.0), encoding="utf-8")
    (result,) = evaluate_thresholds(load_suite(suite_path).thresholds, [record])
    assert result.passed
    if gated:
        again = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0 and "1 already finished" in again.stdout, again.stdout + again.stderr
