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


FAULTY = """
[suite]
name = "{name}"
seed = 0
n_images = 8
batch_size = 8
figures = false

[[datasets]]
name = "toy-squares"

{models}

[[explainers]]
name = "gradcam"

{attacks}
"""


@pytest.fixture
def broken_env(use_plugins, monkeypatch):
    from robustbench_us.plugins import reset_default_registry

    use_plugins("gradcam,fgsm")
    monkeypatch.setenv("ROBUSTBENCH_US_LOCAL_PLUGINS", "tests.fakes.toy,tests.fakes.broken")
    reset_default_registry()


def _checkpoint(tmp_path: Path) -> str:
    from robustbench_us.checkpoints import save_checkpoint
    from tests.fakes.tiny import TinyNet

    save_checkpoint(TinyNet(input_size=32), tmp_path / "tiny", {"architecture": "tiny-cnn"})
    return str(tmp_path / "tiny.safetensors")


def test_invalid_cells_fail_the_run_by_name_unless_allowed(tmp_path, broken_env, capsys, reliability):
    suite = tmp_path / "invalid.toml"
    suite.write_text(FAULTY.format(
        name="toy-invalid", models=f'[[models]]\nname = "tiny-cnn"\ncheckpoint = "{_checkpoint(tmp_path)}"',
        attacks='[[attacks]]\nname = "over-budget"\neps_grey = 2\n\n[[attacks]]\nname = "fgsm"\neps_grey = 2'))
    args = ["run", str(suite), "--results", str(tmp_path / "r"), "--leaderboards", str(tmp_path / "lb"),
            "--no-progress"]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "1 invalid" in out and "invalid cells (the attack broke its contract; kept off the leaderboard):" in out
    (line,) = [x for x in out.splitlines() if x.startswith("  toy-squares_tiny-cnn_gradcam_over-budget-all_eps2-")]
    assert ("attack 'over-budget' (plugin 'tests.fakes.toy') broke the contract: perturbation over budget in "
            "linf") in line
    assert "pass --allow-invalid to accept them" in out
    assert main([*args, "--allow-invalid"]) == 0  # the records are reused; the flag accepts them
    out = capsys.readouterr().out
    assert "0 cells written, 2 already finished" in out and "1 invalid cell allowed by --allow-invalid" in out
    assert main(args) == 1  # an invalid record of an earlier run still fails a rerun in CI
    assert "toy-squares_tiny-cnn_gradcam_over-budget-all_eps2-" in capsys.readouterr().out
    reliability.row("Faults", "a CI run where an attack goes over its budget", "exit 1 listing the invalid cell "
                    "and its reason (also on a rerun that reuses the record); exit 0 only with --allow-invalid",
                    cells_invalid=1)


def test_a_failing_model_still_gets_the_other_models_leaderboard(tmp_path, broken_env, capsys, reliability):
    checkpoint = _checkpoint(tmp_path)
    models = "\n\n".join(f'[[models]]\nname = "{m}"\ncheckpoint = "{checkpoint}"' for m in ("eval-nan", "tiny-cnn"))
    suite = tmp_path / "models.toml"
    suite.write_text(FAULTY.format(name="toy-models", models=models,
                                   attacks='[[attacks]]\nname = "fgsm"\neps_grey = [2, 4]'))
    assert main(["run", str(suite), "--results", str(tmp_path / "r"), "--leaderboards", str(tmp_path / "lb"),
                 "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "4 cells written, 0 already finished, 2 failed" in out
    failed = [x for x in out.splitlines() if x.startswith("  toy-squares_eval-nan_gradcam_fgsm-all_eps")]
    assert len(failed) == 2
    assert all("model 'eval-nan' (plugin 'tests.fakes.broken') failed on the clean images: ContractError: the "
               "model's clean logits contain NaN or Inf" in x for x in failed)
    rows = (tmp_path / "lb" / "toy-models.csv").read_text().splitlines()[1:]
    assert len(rows) == 2 and all(row.startswith("toy-squares,tiny-cnn,gradcam,fgsm,") for row in rows)
    reliability.row("Faults", "a model gives NaN logits (CLI run with a second, working model)",
                    "its cells failed, named with the reason; the other model's leaderboard written; exit 1",
                    cells_failed=2, leaderboard_rows=2)
