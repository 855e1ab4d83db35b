"""Records and the store: atomic, integrity-checked, contained in the results folder."""

from __future__ import annotations

import dataclasses
import json

import pytest

from robustbench_us.errors import RecordError, RobustBenchError
from robustbench_us.records import Record, Status, read_record
from robustbench_us.store import ResultStore, safe_join


CONFIG = {"dataset": "phantom", "dataset_options": {}, "split_seed": 0, "part": "test", "model": "m", "model_name": "m",
          "model_options": {}, "checkpoint": None, "train": {"epochs": 1}, "image_size": 32, "explainer": "gradcam",
          "explainer_options": {}, "attack": "fgsm", "attack_name": "fgsm", "attack_options": {}, "region": "all",
          "eps": 1 / 255, "eps_grey": 1.0, "n_images": 8, "seed": 0}


def make_record(cell_id="c1", status=Status.OK, value=0.5):
    return Record(suite="s", cell_id=cell_id, status=status, config=CONFIG,
                  metrics={"adv_accuracy": value, "undefined": float("nan")}, timing={"attack_seconds": 1.0},
                  provenance={"seed": 0})


def test_write_then_read_back(tmp_path):
    store = ResultStore(tmp_path, "s")
    path = store.write(make_record())
    data = read_record(path)
    assert data["metrics"] == {"adv_accuracy": 0.5, "undefined": None}  # NaN stored as null, numbers as numbers
    assert store.is_finished("c1")
    assert not store.is_finished("c2")
    assert [r["cell_id"] for r in store.read_all()] == ["c1"]
    assert not list(store.records_dir.glob(".*.tmp"))  # no temp files left behind


def test_an_edited_number_is_refused(tmp_path, reliability):
    path = ResultStore(tmp_path, "s").write(make_record())
    data = json.loads(path.read_text())
    data["metrics"]["adv_accuracy"] = 0.99
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match="integrity hash does not match"):
        read_record(path)
    reliability.row("Bad input", "result record with an edited number", "refused, naming the file (integrity hash)",
                    records_refused=1)


def test_unknown_version_and_torn_file_are_refused(tmp_path, reliability):
    store = ResultStore(tmp_path, "s")
    path = store.write(make_record())
    data = json.loads(path.read_text())
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match="unknown record schema_version 99"):
        read_record(path)
    path.write_text('{"suite": "s", "cell')
    with pytest.raises(RecordError, match="unreadable record"):
        read_record(path)
    assert not store.is_finished("c1")  # a broken record means the cell runs again
    reliability.row("Bad input", "result record of an unknown schema version; a torn (truncated) record",
                    "refused, naming the file; the cell is re-run", records_refused=2)


def test_failed_cells_are_retried_invalid_ones_are_final(tmp_path):
    store = ResultStore(tmp_path, "s")
    store.write(make_record("f", Status.FAILED))
    store.write(make_record("i", Status.INVALID))
    assert not store.is_finished("f")
    assert store.is_finished("i")


def test_a_record_of_another_plugin_version_is_not_finished(tmp_path):
    store = ResultStore(tmp_path, "s")
    now = {"attack": {"plugin": "fgsm", "distribution": "robustbench-us", "version": "0.2.0"},
           "dataset": {"plugin": "toy", "distribution": None, "version": None}}
    store.write(make_record("old-style"))  # written before versions were recorded: finished as before
    assert store.is_finished("old-style", now) and store.changed_plugins("old-style", now) == []
    then = {"attack": now["attack"] | {"version": "0.1.0"}, "dataset": now["dataset"]}
    for cell_id, versions in (("same", now), ("older", then)):
        store.write(dataclasses.replace(make_record(cell_id), provenance={"plugin_versions": versions}))
    assert store.is_finished("same", now) and store.is_finished("older")  # no versions given: as before
    assert not store.is_finished("older", now)
    assert store.changed_plugins("older", now) == [
        "attack plugin 'fgsm': robustbench-us 0.1.0 then, robustbench-us 0.2.0 now"]
    text = store.path_of("older").read_text()
    moved = store.supersede("older")
    assert moved.parent == store.records_dir / "superseded" and moved.read_text() == text
    assert not store.path_of("older").exists()
    assert [r["cell_id"] for r in store.read_all()] == ["old-style", "same"]  # superseded records are not read


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    import os
    import subprocess
    import time

    from robustbench_us.store import temp_prefix

    store = ResultStore(tmp_path, "s")
    store.records_dir.mkdir(parents=True)
    exited = subprocess.Popen(["true"])  # noqa: S607 - a writer that is gone (reaped: its pid is free)
    exited.wait()
    live = subprocess.Popen(["sleep", "30"])  # noqa: S607 - a concurrent writer, still writing
    try:
        def tagged(pid: int) -> str:
            return temp_prefix("c.json").replace(f".w{os.getpid()}@", f".w{pid}@") + "abc123.tmp"

        names = {"dead": tagged(exited.pid), "live": tagged(live.pid), "untagged-old": ".fig.png.tmp",
                 "untagged-new": ".other.png.tmp",
                 "reused-pid": tagged(live.pid).replace("abc123", "def456")}  # untouched for hours: not live's
        for name in names.values():
            (store.records_dir / name).write_text("partial")
        for name, hours in (("untagged-old", 1), ("reused-pid", 2)):
            then = time.time() - hours * 3600
            os.utime(store.records_dir / names[name], (then, then))
        removed = store.remove_stale_temporaries()
        assert sorted(p.name for p in removed) == sorted([names["dead"], names["untagged-old"], names["reused-pid"]])
        assert sorted(p.name for p in store.records_dir.iterdir()) == sorted([names["live"], names["untagged-new"]])
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize("bad", ["../escape", "/etc/passwd", "a/../../b"])
def test_paths_stay_inside_the_results_folder(tmp_path, bad, reliability):
    with pytest.raises(RobustBenchError, match="would leave the results folder"):
        safe_join(tmp_path, bad)
    with pytest.raises(RobustBenchError):
        ResultStore(tmp_path, bad)
    reliability.row("Security", f"output path {bad!r} from a suite", "refused: stays inside the results folder",
                    attempts=2)


def test_provenance_says_when_the_code_was_not_exactly_its_commit(tmp_path):
    import subprocess

    from robustbench_us.records import git_state

    assert git_state(tmp_path) == (None, None)  # not a git checkout: nothing claimed
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)
    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("commit", "-q", "-m", "one")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert git_state(tmp_path) == (commit, False)
    (tmp_path / "notes.txt").write_text("untracked files do not change the code that runs\n")
    assert git_state(tmp_path) == (commit, False)
    (tmp_path / "code.py").write_text("x = 2\n")  # an edited checkout
    assert git_state(tmp_path) == (commit, True)


def test_resume_and_figure_temporaries_of_a_killed_writer_are_removed_by_the_next_run(tmp_path, monkeypatch):
    """Training's resume file and the figures are written through tagged temporaries like records are."""
    import subprocess
    import sys

    from robustbench_us import figures, store, training

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)  # that process has exited: its temporaries can never be finished
    monkeypatch.setattr(store.os, "getpid", lambda: pid)
    suite = tmp_path / "s"
    names = []
    for module, name, suffix in ((training, "m.resume.pt", "resume.tmp"), (figures, "kept.png", "png.tmp")):
        assert module.temp_prefix is store.temp_prefix  # the one tagging scheme
        leftover = suite / "checkpoints" / f"{store.temp_prefix(name)}{suffix}"
        leftover.parent.mkdir(parents=True, exist_ok=True)
        leftover.write_bytes(b"half a file")
        names.append(leftover)
    monkeypatch.undo()
    removed = ResultStore(tmp_path, "s").remove_stale_temporaries()
    assert sorted(removed) == sorted(names) and not any(p.exists() for p in names)
