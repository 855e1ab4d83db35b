"""benchmarks/scripts/reproduce_paper.sh: the order of its jobs, what it copies, how it fails.

The script runs against a stand-in for the `robustbench-us` command (RB=...) that logs each
call and writes the files the real one would, so the orchestration is tested in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "scripts" / "reproduce_paper.sh"

FAKE_RB = r'''#!/usr/bin/env python3
"""Stand-in for robustbench-us: log the call, sleep a little, write what the real command writes."""
import json, os, signal, sys, time
from pathlib import Path
args = [a for a in sys.argv[1:] if a != "-v"]

def stop(_signum, _frame):  # as the real command: SIGTERM ends it cleanly with exit 130
    with open("calls.log", "a") as fh:
        fh.write(f"stopped {time.monotonic():.3f} {' '.join(args)}\n")
    sys.exit(130)

signal.signal(signal.SIGTERM, stop)
with open("calls.log", "a") as fh:
    fh.write(f"start {time.monotonic():.3f} {' '.join(args)}\n")
time.sleep(0.2)
if os.environ.get("SLOW_ON") and os.environ["SLOW_ON"] in " ".join(args):
    time.sleep(60)
if args[0] == "train":
    out, size = args[args.index("--out") + 1], int(args[args.index("--image-size") + 1])
    if os.environ.get("FAIL_ON") and os.environ["FAIL_ON"] in out:
        sys.exit("training diverged")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out + ".safetensors").write_bytes(b"w")
    Path(out + ".json").write_text(json.dumps({"input_size": size, "init": "scratch",
                                               "sha256": os.environ.get("SHA", "new") + "-" + Path(out).name}))
elif args[0] == "run" and args[1] == "paper-busbra-native":
    size = 64 if "--scale" in args else 224
    suffix = "-cpu" if "--scale" in args else ""
    d = Path(f"results/paper-busbra-native{suffix}/checkpoints")
    d.mkdir(parents=True, exist_ok=True)
    (d / f"busbra__resnet50-mtl_{size}-abc.safetensors").write_bytes(b"w")
    (d / f"busbra__resnet50-mtl_{size}-abc.json").write_text(json.dumps({"input_size": size}))
with open("calls.log", "a") as fh:
    fh.write(f"end {time.monotonic():.3f} {' '.join(args)}\n")
'''


@pytest.fixture()
def tree(tmp_path):
    """A scratch project root holding the script and a fake robustbench-us."""
    (tmp_path / "benchmarks" / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, tmp_path / "benchmarks" / "scripts" / SCRIPT.name)
    rb = tmp_path / "fake-rb"
    rb.write_text(FAKE_RB.replace("#!/usr/bin/env python3", f"#!{sys.executable}", 1))
    rb.chmod(0o755)
    return tmp_path


def _environ(tree: Path, **env: str) -> dict[str, str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # `python` is this Python
    data = {"ROBUSTBENCH_US_DATA": str(tree / "data")}  # the stand-in command reads nothing from it
    return {**os.environ, **data, "PATH": path, "RB": str(tree / "fake-rb"), "JOBS": "3", **env}


def _run(tree: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = _environ(tree, **env)
    return subprocess.run(["bash", str(tree / "benchmarks" / "scripts" / SCRIPT.name), *args], cwd=tree,
                          env=environ, capture_output=True, text=True, timeout=120)


def _calls(tree: Path) -> dict[str, tuple[float, float]]:
    """For each call (by a short name), its start and end time."""
    times: dict[str, list[float]] = {}
    for line in (tree / "calls.log").read_text().splitlines():
        what, when, *cmd = line.split()
        if what == "stopped":
            continue
        if cmd[0] == "train":
            out = cmd[cmd.index("--out") + 1]
            key = "train:" + Path(out).name
        else:
            key = f"{cmd[0]}:{cmd[1]}"
        times.setdefault(key, []).append(float(when))
    return {k: (v[0], v[-1]) for k, v in times.items()}


def test_full_scale_order_and_cards(tree):
    done = _run(tree, STEPS="train pretrain suites")
    assert done.returncode == 0, done.stdout + done.stderr
    calls = _calls(tree)
    models = ["busi-resnet50", "busi-resnet50-mtl", "busi-convnext_atto"]
    assert {f"train:{m}-s{s}" for m in models for s in (0, 1, 2)} <= set(calls)
    first_suite = min(calls[f"run:{s}"][0] for s in ("paper", "paper-busbra", "paper-maps"))
    assert all(calls[f"train:{m}-s0"][1] <= first_suite for m in models)  # seed 0 before any suite
    native_end = calls["run:paper-busbra-native"][1]
    for seed in (0, 1, 2):
        assert calls[f"train:busi-resnet50-mtl-busbrapre-s{seed}"][0] >= native_end  # fine-tune after pre-training
    assert calls["run:paper-busbrapre"][0] >= calls["train:busi-resnet50-mtl-busbrapre-s0"][1]
    log = (tree / "calls.log").read_text()
    assert "--init-from results/paper-busbra-native/checkpoints/busbra__resnet50-mtl_224-abc.safetensors" in log
    assert "--amp" in log and "--image-size 224" in log
    cards = sorted(p.name for p in (tree / "leaderboards" / "models" / "paper").glob("*.json"))
    assert "busbra-f2345-resnet50-mtl-s0.json" in cards and "busi-resnet50-mtl-busbrapre-s2.json" in cards
    assert len(cards) == 13  # 9 BUSI models, 3 fine-tunes, the BUS-BRA model
    # Run again: every checkpoint is kept, nothing is retrained.
    (tree / "calls.log").unlink()
    again = _run(tree, STEPS="train pretrain")
    assert again.returncode == 0 and "train:" not in " ".join(_calls(tree))
    assert again.stdout.count("keep checkpoints/paper/") == 12


def test_a_failed_job_fails_the_script_after_the_others_end(tree):
    done = _run(tree, STEPS="train", FAIL_ON="convnext_atto-s1")
    assert done.returncode == 1
    assert "failed: train-convnext_atto-s1" in done.stderr and "results/logs" in done.stderr
    assert "training diverged" in (tree / "results" / "logs" / "train-convnext_atto-s1.log").read_text()
    assert (tree / "checkpoints" / "paper" / "busi-resnet50-s2.safetensors").is_file()  # the others finished


def test_cpu_scale_and_a_checkpoint_of_the_wrong_size(tree):
    done = _run(tree, "--scale", "cpu", STEPS="train", SEEDS="0")
    assert done.returncode == 0, done.stderr
    log = (tree / "calls.log").read_text()
    assert "--image-size 64" in log and "--device cpu" in log and "--amp" not in log
    assert (tree / "leaderboards" / "models" / "paper-cpu" / "busi-resnet50-s0.json").is_file()
    # A full-scale card among 64-px ones: publishing at CPU scale leaves it out of the CPU cards.
    full = tree / "checkpoints" / "paper" / "busi-resnet50-s7.json"
    full.write_text(json.dumps({"input_size": 224}))
    again = _run(tree, "--scale", "cpu", STEPS="train", SEEDS="0")
    assert again.returncode == 0 and f"not published here (trained at another size): checkpoints/paper/{full.name}" \
        in again.stdout
    assert not (tree / "leaderboards" / "models" / "paper-cpu" / full.name).exists()
    wrong = _run(tree, STEPS="suites")  # full scale finds 64-px seed-0 checkpoints
    assert wrong.returncode != 0 and "was trained at 64 px but this scale evaluates at 224 px" in wrong.stderr
    assert json.loads((tree / "checkpoints" / "paper" / "busi-resnet50-s0.json").read_text())["input_size"] == 64


def test_the_control_trains_busi_alone_for_four_times_the_epochs_and_patience(tree):
    done = _run(tree, "--scale", "cpu", STEPS="joint control", SEEDS="0 1", EPOCHS="5")
    assert done.returncode == 0, done.stderr
    calls = [line.split()[2:] for line in (tree / "calls.log").read_text().splitlines() if line.startswith("start")]
    long = [c for c in calls if "checkpoints/paper/busi-resnet50-mtl-long-s0" in c]
    joint = [c for c in calls if "checkpoints/paper/busi+busbra-resnet50-mtl-s0" in c]
    assert len(long) == 1 and len(joint) == 1
    (long,), (joint,) = long, joint

    def values(cmd: list[str], flag: str) -> list[str]:
        return [cmd[i + 1] for i, arg in enumerate(cmd) if arg == flag]

    # The cpu recipe is --epochs 6 --patience 3, then EPOCHS=5 caps it: every value ×4.
    assert values(joint, "--epochs") == ["6", "5"] and values(long, "--epochs") == ["24", "20"]
    assert values(joint, "--patience") == ["3"] and values(long, "--patience") == ["12"]
    assert values(long, "--dataset") == ["busi"] and values(long, "--lr") == values(joint, "--lr")
    cards = {p.name for p in (tree / "leaderboards" / "models" / "paper-cpu").glob("*.json")}
    assert {"busi-resnet50-mtl-long-s0.json", "busi-resnet50-mtl-long-s1.json"} <= cards


def test_models_picks_which_cards_to_train(tree):
    done = _run(tree, STEPS="train", MODELS="resnet50-mtl timm:convnext_atto", SEEDS="1 2")
    assert done.returncode == 0, done.stderr
    assert set(_calls(tree)) == {f"train:busi-{m}-s{s}" for m in ("resnet50-mtl", "convnext_atto") for s in (1, 2)}
    cards = {p.name for p in (tree / "leaderboards" / "models" / "paper").glob("*.json")}
    assert cards == {f"busi-{m}-s{s}.json" for m in ("resnet50-mtl", "convnext_atto") for s in (1, 2)}
    wrong = _run(tree, STEPS="train", MODELS="resnet50 vit_small")
    assert wrong.returncode == 2
    assert "MODELS names 'vit_small'; the suites evaluate only: resnet50 resnet50-mtl timm:convnext_atto" in wrong.stderr


def test_suites_picks_which_suites_run_and_pretrain_still_trains_its_model(tree):
    done = _run(tree, STEPS="pretrain suites", SUITES="paper-busbrapre")
    assert done.returncode == 0, done.stderr
    calls = _calls(tree)
    runs = {k for k in calls if k.startswith("run:")}
    assert runs == {"run:paper-busbra-native", "run:paper-busbrapre"}  # the pre-training suite runs regardless
    assert {f"train:busi-resnet50-mtl-busbrapre-s{s}" for s in (0, 1, 2)} <= set(calls)
    assert not any(k.startswith("train:busi-resnet50-s") for k in calls)
    assert "skip suite paper (not in SUITES)" in done.stdout
    wrong = _run(tree, STEPS="suites", SUITES="paper paper-mapz")
    assert wrong.returncode == 2 and "SUITES names 'paper-mapz'" in wrong.stderr


def test_publish_takes_the_sites_records_for_suites_missing_from_results(tree):
    site = tree / "leaderboards" / "site" / "suites"
    (site / "paper" / "records").mkdir(parents=True)
    (site / "paper" / "records" / "cell-a.json").write_text('{"cell_id": "cell-a"}')
    (site / "paper-maps" / "records").mkdir(parents=True)
    (site / "paper-maps" / "records" / "cell-b.json").write_text('{"cell_id": "cell-b", "old": true}')
    fresh = tree / "results" / "paper-maps" / "records"  # this suite was run here: its records win
    fresh.mkdir(parents=True)
    (fresh / "cell-b.json").write_text('{"cell_id": "cell-b"}')
    (tree / "benchmarks" / "scripts" / "summarize_paper.py").write_text("print('summarized')\n")
    done = _run(tree, STEPS="publish")
    assert done.returncode == 0, done.stderr
    assert (tree / "results" / "paper" / "records" / "cell-a.json").read_text() == '{"cell_id": "cell-a"}'
    assert (fresh / "cell-b.json").read_text() == '{"cell_id": "cell-b"}'
    assert "took the 1 published records of paper from leaderboards/site/suites/paper/records" in done.stdout
    assert "of paper-maps" not in done.stdout and "summarized" in done.stdout
    calls = [line.split()[2:] for line in (tree / "calls.log").read_text().splitlines() if line.startswith("start")]
    # Only suites with records get a table and a place on the site; the others are named.
    assert [c[1] for c in calls if c[0] == "leaderboard" and c[1] != "publish"] == ["paper", "paper-maps"]
    publish = next(c for c in calls if c[:2] == ["leaderboard", "publish"])
    assert publish[2:4] == ["paper", "paper-maps"] and "paper-busbrapre" not in publish
    assert "no records of paper-busbrapre yet: no table, not on the site" in done.stdout
    shutil.rmtree(tree / "results")
    shutil.rmtree(tree / "leaderboards" / "site")
    empty = _run(tree, STEPS="publish")
    assert empty.returncode == 1 and "nothing to publish" in empty.stderr


def _record(folder: Path, name: str, sha: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({"cell_id": name, "provenance": {"checkpoint_sha256": sha}}))


def test_a_retrained_card_does_not_replace_one_that_published_records_were_measured_with(tree):
    cards = tree / "leaderboards" / "models" / "paper"
    cards.mkdir(parents=True)
    published = {"input_size": 224, "sha256": "old-busi-resnet50-s0"}
    (cards / "busi-resnet50-s0.json").write_text(json.dumps(published))
    _record(tree / "leaderboards" / "site" / "suites" / "paper" / "records", "cell-a", "old-busi-resnet50-s0")
    (tree / "benchmarks" / "scripts" / "summarize_paper.py").write_text("print('summarized')\n")

    done = _run(tree, STEPS="train", MODELS="resnet50", SEEDS="0")  # a new machine retrains seed 0
    assert done.returncode == 0, done.stderr
    assert json.loads((cards / "busi-resnet50-s0.json").read_text()) == published
    assert "kept the published leaderboards/models/paper/busi-resnet50-s0.json (1 records were measured" in done.stdout
    # Publishing the same records again keeps it too.
    again = _run(tree, STEPS="publish")
    assert again.returncode == 0 and json.loads((cards / "busi-resnet50-s0.json").read_text()) == published
    # A full rerun measured its cells again with the new weights: publishing now publishes the new card.
    shutil.rmtree(tree / "results")
    _record(tree / "results" / "paper" / "records", "cell-a", "new-busi-resnet50-s0")
    rerun = _run(tree, STEPS="publish")
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads((cards / "busi-resnet50-s0.json").read_text())["sha256"] == "new-busi-resnet50-s0"
    # REPLACE_CARDS=1 replaces a card even while records were measured with it.
    (cards / "busi-resnet50-s0.json").write_text(json.dumps(published))
    forced = _run(tree, STEPS="train", MODELS="resnet50", SEEDS="0", REPLACE_CARDS="1")
    assert forced.returncode == 0
    assert json.loads((cards / "busi-resnet50-s0.json").read_text())["sha256"] == "new-busi-resnet50-s0"


def test_the_deadline_stops_every_job_cleanly_and_a_rerun_goes_on(tree):
    """DEADLINE: running jobs get SIGTERM (as a scheduler's limit sends it), nothing more starts, exit 124."""
    import time

    began = time.monotonic()
    # The seed-0 trainings end before the deadline (their jobs' exits must not disarm it); the BUS-BRA suite
    # would run for a minute.
    done = _run(tree, "--deadline", "3", STEPS="train pretrain suites", SUITES="paper-busbrapre", SEEDS="0",
                JOBS="4", SLOW_ON="paper-busbra-native", GRACE="20")
    took = time.monotonic() - began
    assert done.returncode == 124, done.stdout + done.stderr
    assert took < 20, f"the stopped job ran on: {took:.1f} s"  # the stand-in sleeps 60 s unless stopped
    assert done.stdout.count("] done  train-") == 3
    assert "the deadline (3 s): stopping every job" in done.stdout
    assert "stopped by the deadline (3 s); unfinished: suite-paper-busbra-native; not started: " \
           "finetune-resnet50-mtl-busbrapre-s0 suite-paper-busbrapre" in done.stderr
    assert "run the same command again to go on" in done.stderr
    log = (tree / "calls.log").read_text()
    stops = [line.split()[2:] for line in log.splitlines() if line.startswith("stopped")]
    assert stops == [["run", "paper-busbra-native", "--no-progress"]]  # ended by its own SIGTERM handler
    assert "busbrapre" not in log  # nothing started after the stop
    # The same command again, with time to finish: it goes on from where it stopped.
    (tree / "calls.log").unlink()
    again = _run(tree, "--deadline", "100", STEPS="train pretrain suites", SUITES="paper-busbrapre", SEEDS="0",
                 JOBS="4")
    assert again.returncode == 0, again.stdout + again.stderr
    calls = _calls(tree)
    assert not any(k.startswith("train:busi-") and "busbrapre" not in k for k in calls)  # kept, not retrained
    assert {"run:paper-busbra-native", "train:busi-resnet50-mtl-busbrapre-s0", "run:paper-busbrapre"} <= set(calls)


def test_a_deadline_that_is_not_reached_costs_nothing(tree):
    """The deadline's timer goes with the script: a run that ends early returns at once, status 0."""
    import time

    began = time.monotonic()
    done = _run(tree, STEPS="train", SEEDS="0", MODELS="resnet50", DEADLINE="100")
    assert done.returncode == 0, done.stdout + done.stderr
    assert time.monotonic() - began < 30 and "stopping" not in done.stdout


def test_sigterm_to_the_script_stops_its_jobs_and_exits_130(tree):
    """A scheduler (or Ctrl-C) signalling the script itself reaches every job it started; none is left running."""
    import signal
    import time

    env = _environ(tree, STEPS="pretrain", SLOW_ON="paper-busbra-native", GRACE="20")
    proc = subprocess.Popen(["bash", str(tree / "benchmarks" / "scripts" / SCRIPT.name)], cwd=tree, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    calls = tree / "calls.log"
    until = time.monotonic() + 30
    while time.monotonic() < until and "start" not in (calls.read_text() if calls.is_file() else ""):
        time.sleep(0.1)
    time.sleep(0.5)  # into the stand-in's long sleep
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "a TERM signal: stopping every job" in out
    assert "stopped by a TERM signal; unfinished: suite-paper-busbra-native" in err
    stops = [line.split()[2:] for line in calls.read_text().splitlines() if line.startswith("stopped")]
    assert stops == [["run", "paper-busbra-native", "--no-progress"]]  # ended by its own SIGTERM handler


NOT_SECONDS = "is not a number of seconds for DEADLINE (--deadline) or GRACE; give a whole number above 0"


@pytest.mark.parametrize(("args", "env", "message"), [
    (("--deadline", "soon"), {}, f"'soon' {NOT_SECONDS}"),
    ((), {"DEADLINE": "0"}, f"'0' {NOT_SECONDS}"),
    ((), {"GRACE": "-5"}, f"'-5' {NOT_SECONDS}"),
    (("--deadline",), {}, "--deadline needs a number of seconds, e.g. --deadline 3600"),
])
def test_a_deadline_that_is_not_a_number_of_seconds_is_refused(tree, args, env, message):
    done = _run(tree, *args, STEPS="train", **env)
    assert done.returncode == 2 and message in done.stderr
    assert not (tree / "calls.log").exists()  # refused before anything started


def test_without_data_every_step_but_publish_is_refused_before_it_starts(tree):
    done = _run(tree, STEPS="train", ROBUSTBENCH_US_DATA="", ROBUSTBENCH_US_DATA_PACKS="")
    assert done.returncode == 2
    assert "no data. Set ROBUSTBENCH_US_DATA to the folder holding busi/ and busbra/" in done.stderr
    assert not (tree / "calls.log").exists()
    packs = _run(tree, STEPS="train", ROBUSTBENCH_US_DATA="", ROBUSTBENCH_US_DATA_PACKS=str(tree / "packs"))
    assert packs.returncode == 0, packs.stderr  # packs alone are enough
