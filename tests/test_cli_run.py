"""`robustbench-us run` as CI uses it: thresholds gate the exit code and land in a JUnit report."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from robustbench_us.cli import main

REPO = Path(__file__).resolve().parents[1]
SUITE = """
[suite]
name = "toy-gate"
seed = 0
n_images = 8
batch_size = 8
figures = false

[[datasets]]
name = "toy-squares"

[[models]]
name = "tiny-cnn"
train = {{ epochs = 1, batch_size = 8, augment = false }}

[[explainers]]
name = "gradcam"

[[attacks]]
name = "fgsm"
eps_grey = 0

[[thresholds]]
metric = "flip_rate"
op = "{op}"
value = 0.0
where = {{ attack = "fgsm" }}
"""


@pytest.fixture
def toy_env(use_plugins):
    use_plugins("gradcam,fgsm")


def test_a_failing_threshold_exits_non_zero_and_a_passing_one_zero(tmp_path, toy_env, capsys):
    args = ["--results", str(tmp_path / "r"), "--leaderboards", str(tmp_path / "lb"), "--no-progress"]
    bad = tmp_path / "bad.toml"
    bad.write_text(SUITE.format(op=">"))  # flip rate at ε = 0 is exactly 0, so "> 0" must fail
    junit = tmp_path / "report.xml"
    assert main(["run", str(bad), "--junit", str(junit), *args]) == 1
    out = capsys.readouterr().out
    assert "1 failed" in out and "FAIL" in out and "flip_rate" in out
    tree = ET.parse(junit).getroot()
    assert tree.find(".//failure") is not None
    good = tmp_path / "good.toml"
    good.write_text(SUITE.format(op="<="))
    assert main(["run", str(good), "--junit", str(junit), *args]) == 0  # the record is reused; only the gate differs
    out = capsys.readouterr().out
    assert "0 failed" in out and "0 cells written, 1 already finished" in out
    assert ET.parse(junit).getroot().find(".//failure") is None


def test_project_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Suite ") and err.count("\n") == 1
