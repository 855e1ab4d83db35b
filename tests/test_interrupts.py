"""Interrupted and concurrent runs lose nothing: kill at random moments, resume, compare."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robustbench_us.records import read_record

REPO = Path(__file__).resolve().parents[1]
SUITE = """
[suite]
name = "toy-kill"
seed = 2
n_images = 8
batch_size = 4

[[datasets]]
name = "toy-squares"
options = { count = 40 }

[[models]]
name = "tiny-cnn"
train = { epochs = 2, batch_size = 8, lr = 0.001, augment = false }

[[explainers]]
name = "gradcam"

[[attacks]]
name = "fgsm"
eps_grey = [0, 1, 2, 4, 8, 16]
"""

pytestmark = pytest.mark.slow


def env() -> dict[str, str]:
    return os.environ | {"ROBUSTBENCH_US_PLUGINS": "gradcam,fgsm",
                         "ROBUSTBENCH_US_LOCAL_PLUGINS": str(REPO / "tests" / "fakes" / "toy.py"),
                         "PYTHONPATH": str(REPO)}


def command(suite: Path, results: Path) -> list[str]:
    return [sys.executable, "-m", "robustbench_us", "run", str(suite), "--results", str(results),
            "--leaderboards", str(results / "lb"), "--no-progress"]


def comparable(results: Path) -> dict[str, tuple]:
    """Each cell's status, configuration and metrics (timings naturally differ)."""
    out = {}
    for path in sorted((results / "toy-kill" / "records").glob("*.json")):
        data = read_record(path)  # also proves no record is partial or edited
        out[data["cell_id"]] = (data["status"], json.dumps(data["config"], sort_keys=True),
                                json.dumps(data["metrics"], sort_keys=True))
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("ref")
    suite = root / "toy-kill.toml"
    suite.write_text(SUITE)
    done = subprocess.run(command(suite, root / "results"), env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    records = comparable(root / "results")
    assert len(records) == 6
    return suite, records


def test_killed_at_random_moments_then_resumed_equals_an_uninterrupted_run(tmp_path, reference, reliability):
    suite, expected = reference
    results = tmp_path / "results"
    rng = random.Random(7)
    kills = {"SIGKILL": 0, "SIGINT": 0, "SIGTERM": 0}
    clean_exits = 0
    for attempt in range(9):
        sig = [signal.SIGKILL, signal.SIGINT, signal.SIGTERM][attempt % 3]
        proc = subprocess.Popen(command(suite, results), env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        time.sleep(rng.uniform(1.0, 6.0))
        if proc.poll() is None:
            proc.send_signal(sig)
            kills[sig.name] += 1
        out, err = proc.communicate(timeout=120)
        if sig != signal.SIGKILL and proc.returncode == 130:
            assert "run the same command again to resume" in err
            assert "Traceback" not in err
            clean_exits += 1
        for path in (results / "toy-kill" / "records").glob("*.json") if results.exists() else []:
            read_record(path)  # never partial, never corrupt
    final = subprocess.run(command(suite, results), env=env(), capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert comparable(results) == expected
    assert sum(kills.values()) >= 3  # the test really interrupted runs
    leftovers = list((results / "toy-kill").rglob("*.tmp"))
    assert leftovers == [] or all(p.name.startswith(".") for p in leftovers)
    reliability.row("Faults", "process killed at random moments (SIGKILL, SIGINT, SIGTERM), then re-run",
                    "final records equal an uninterrupted run's; no partial or corrupt record; SIGINT/SIGTERM "
                    "exit 130 with how to resume", **{f"{k}_sent": v for k, v in kills.items()},
                    clean_exits=clean_exits, cells=len(expected))


def test_two_runs_at_once_write_each_record_exactly_once(tmp_path, reference, reliability):
    suite, expected = reference
    results = tmp_path / "results"
    procs = [subprocess.Popen(command(suite, results), env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    written = [int(out.split(" cells written")[0].rsplit(" ", 1)[-1]) for out, _ in outs]
    assert sum(written) == 6  # the lock made the second run skip what the first had done
    assert comparable(results) == expected
    reliability.row("Faults", "two runs of one suite into one results folder at once",
                    "each record written exactly once, none torn; equal to a single run",
                    runs=2, records_written_by_each=" + ".join(map(str, written)))
