"""`robustbench-us leaderboard SUITE`: which suite file it reads, and that it never writes an empty table."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from robustbench_us.cli import main
from robustbench_us.errors import SuiteError

SUITE = """
[suite]
name = "{name}"
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
eps_grey = [0, 2]
"""
PUBLISHED_CSV = "model,flip_rate\nresnet50@224,0.81\n"
PUBLISHED_MD = "# paper\n\n| model | flip rate |\n|---|---|\n| resnet50@224 | 0.81 |\n"


@pytest.fixture
def toy_env(use_plugins):
    use_plugins("gradcam,fgsm")


def table_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_no_records_refuses_and_leaves_the_published_tables_alone(tmp_path, monkeypatch, capsys, reliability):
    """A fresh clone: committed tables, no results folder. Before the fix this exited 0 with an empty table."""
    monkeypatch.chdir(tmp_path)
    published = tmp_path / "leaderboards"
    published.mkdir()
    (published / "paper.csv").write_text(PUBLISHED_CSV, encoding="utf-8")
    (published / "paper.md").write_text(PUBLISHED_MD, encoding="utf-8")

    assert main(["leaderboard", "paper"]) == 2
    err = capsys.readouterr().err
    searched = (tmp_path / "results" / "paper" / "records").resolve()
    assert f"No records of suite 'paper' in {searched}" in err
    assert "leaderboards/paper.csv and .md were left as they are" in err
    assert "`robustbench-us run paper` first" in err
    assert (published / "paper.csv").read_text(encoding="utf-8") == PUBLISHED_CSV
    assert (published / "paper.md").read_text(encoding="utf-8") == PUBLISHED_MD

    # A scale names its own folder (the suite's name gains -<scale>), and the fix says so.
    assert main(["leaderboard", "paper", "--scale", "cpu", "--results", str(tmp_path / "elsewhere")]) == 2
    err = capsys.readouterr().err
    assert f"No records of suite 'paper-cpu' in {(tmp_path / 'elsewhere' / 'paper-cpu' / 'records').resolve()}" in err
    assert "`robustbench-us run paper --scale cpu` first" in err
    assert not (published / "paper-cpu.csv").exists()
    reliability.row("Bad input", "`leaderboard SUITE` with no records of the suite (a fresh clone)",
                    "refused (exit 2) naming the folder searched; the committed tables untouched",
                    tables_kept=2, tables_written=0)


def test_a_bare_name_reads_the_suite_file_in_the_current_folder(tmp_path, monkeypatch, capsys, toy_env):
    """`run toy.toml`, then `leaderboard toy`: the file here, before any shipped suite of that name."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy.toml").write_text(SUITE.format(name="toy-here"), encoding="utf-8")
    assert main(["run", "toy.toml", "--no-progress"]) == 0
    records = sorted((tmp_path / "results" / "toy-here" / "records").glob("*.json"))
    assert len(records) == 2  # one explainer × one attack × two ε
    table = tmp_path / "leaderboards" / "toy-here.csv"
    table.unlink()
    capsys.readouterr()

    assert main(["leaderboard", "toy"]) == 0
    assert f"leaderboard: {Path('leaderboards') / 'toy-here.csv'}" in capsys.readouterr().out
    rows = table_rows(table)
    assert sorted(float(row["eps_grey"]) for row in rows) == [0.0, 2.0]

    # ./default.toml wins over the shipped suite `default`, whose records do not exist here.
    (tmp_path / "default.toml").write_text(SUITE.format(name="toy-here"), encoding="utf-8")
    table.unlink()
    assert main(["leaderboard", "default"]) == 0
    assert len(table_rows(table)) == 2 and not (tmp_path / "leaderboards" / "default.csv").exists()

    # A name with no file here is still a shipped suite (here without records: refused, nothing written).
    (tmp_path / "default.toml").unlink()
    assert main(["leaderboard", "default"]) == 2
    assert "No records of suite 'default'" in capsys.readouterr().err
    assert not (tmp_path / "leaderboards" / "default.csv").exists()


def test_some_records_are_tabulated_as_before(tmp_path, monkeypatch, capsys, toy_env):
    """Records of only part of the grid still make a table of those cells."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy.toml").write_text(SUITE.format(name="toy-part"), encoding="utf-8")
    assert main(["run", "toy.toml", "--no-progress"]) == 0
    records = sorted((tmp_path / "results" / "toy-part" / "records").glob("*.json"))
    records[0].unlink()
    assert main(["leaderboard", "toy.toml"]) == 0
    assert len(table_rows(tmp_path / "leaderboards" / "toy-part.csv")) == 1


def test_run_and_leaderboard_read_the_same_suite_file_for_a_bare_name(tmp_path, monkeypatch):
    from robustbench_us.suite import resolve_suite_path, suites_folder

    monkeypatch.chdir(tmp_path)
    assert resolve_suite_path("default") == suites_folder() / "default.toml"  # nothing here: the shipped one
    (tmp_path / "default.toml").write_text("[suite]\nname = 'mine'\n")
    assert resolve_suite_path("default") == Path("default.toml")  # the user's file wins
    with pytest.raises(SuiteError, match=r"NAME for ./NAME.toml, or one of the shipped suites: .*paper-seeds"):
        resolve_suite_path("no-such-suite")
