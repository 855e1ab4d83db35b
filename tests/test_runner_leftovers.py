"""What a writer killed with SIGKILL leaves behind is removed by the next run, and nothing a live one writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from robustbench_us.checkpoints import save_checkpoint
from robustbench_us.plugins import Registry, get_plugin_manager
from robustbench_us.runner import run_suite
from robustbench_us.site import MARKER, _remove_stale_staging, publish_site
from robustbench_us.store import temp_prefix
from robustbench_us.suite import parse_suite
from tests.fakes import toy
from tests.fakes.tiny import TinyNet

REPO = Path(__file__).resolve().parents[1]


def killed_while(code: str) -> None:
    """Run ``code`` in a fresh interpreter that SIGKILLs itself where ``code`` says (``die()``)."""
    prelude = "import os, signal\ndef die(*_a, **_k):\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    done = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=os.environ | {"PYTHONPATH": str(REPO)})
    assert done.returncode == -signal.SIGKILL, done.stderr


def test_a_run_removes_what_killed_writers_left_and_keeps_a_live_writers_file(tmp_path, reliability):
    suite_dir = tmp_path / "results" / "leftovers"
    # Killed after the data is written, before the rename: a checkpoint's weights and a record.
    killed_while(f"""
        from robustbench_us import checkpoints
        from tests.fakes.tiny import TinyNet
        os.fsync = die
        checkpoints.save_checkpoint(TinyNet(), {str(suite_dir / "checkpoints" / "toy__tiny")!r}, {{}})
    """)
    killed_while(f"""
        from pathlib import Path
        from robustbench_us import store
        os.fsync = die
        store.atomic_write_text(Path({str(suite_dir / "records" / "cell.json")!r}), "{{}}")
    """)
    dead = sorted(p.name for p in suite_dir.rglob("*.tmp"))
    assert len(dead) == 2 and dead[0].startswith(".cell.json.w") and dead[1].startswith(".toy__tiny.safetensors.w")
    weights = next(suite_dir.rglob(".toy__tiny.safetensors.*.tmp")).stat().st_size
    assert weights > 5_000  # the weights were written in full before the kill
    live = subprocess.Popen(["sleep", "60"])  # noqa: S607 - a concurrent run, mid-write
    try:
        live_tmp = suite_dir / "records" / (temp_prefix("other.json").replace(f".w{os.getpid()}@", f".w{live.pid}@")
                                            + "abcdefgh.tmp")
        live_tmp.write_text("being written")

        registry = Registry(get_plugin_manager(environ={"ROBUSTBENCH_US_PLUGINS": "gradcam,fgsm"},
                                               extra_plugins=[("toy", toy)]))
        save_checkpoint(TinyNet(input_size=32), tmp_path / "tiny", {"architecture": "tiny-cnn"})
        suite = parse_suite({
            "suite": {"name": "leftovers", "seed": 1, "n_images": 4, "batch_size": 4, "figures": False},
            "datasets": [{"name": "toy-squares", "options": {"count": 40}}],
            "models": [{"name": "tiny-cnn", "checkpoint": str(tmp_path / "tiny.safetensors")}],
            "explainers": [{"name": "gradcam"}], "attacks": [{"name": "fgsm", "eps_grey": 2}]}, registry=registry)
        summary = run_suite(suite, tmp_path / "results", registry=registry, progress=False)
        assert summary.ok and len(summary.written) == 1
        assert [p.name for p in suite_dir.rglob("*.tmp")] == [live_tmp.name]
    finally:
        live.kill()
        live.wait()
    reliability.row("Faults", "a checkpoint and a record write SIGKILLed before their rename (temporary files "
                    "left), and a concurrent run's temporary file", "the next run removed the two left by dead "
                    "writers and kept the live writer's", temporaries_removed=len(dead), checkpoint_bytes=weights,
                    live_temporaries_kept=1)


def test_a_publish_removes_staging_folders_of_killed_publishes(tmp_path, reliability):
    out = tmp_path / "site"
    publish_site([], out)
    (out / "earlier.txt").write_text("the site published before")
    # Killed while building the new site: the staging folder stays beside the site.
    killed_while(f"""
        import jinja2
        from robustbench_us.site import publish_site
        jinja2.Environment.get_template = die
        publish_site([], {str(out)!r})
    """)
    staging = [p for p in tmp_path.iterdir() if p.name.startswith(".site.")]
    assert len(staging) == 1 and (staging[0] / MARKER).is_file()
    assert (out / "earlier.txt").is_file()  # the published site is untouched
    publish_site([], out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]

    # Killed between the two renames: the site is retired and the new one not yet in place.
    (out / "earlier.txt").write_text("the site published before")
    killed_while(f"""
        import pathlib
        from robustbench_us.site import publish_site
        rename = pathlib.Path.replace
        def replace(self, target):
            rename(self, target)
            if pathlib.Path(target).name == "site" and pathlib.Path(target).parent.name.startswith(".site.old."):
                die()
        pathlib.Path.replace = replace
        publish_site([], {str(out)!r})
    """)
    assert not out.exists() and len([p for p in tmp_path.iterdir() if p.name.startswith(".site.")]) == 2
    _remove_stale_staging(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]
    assert (out / "earlier.txt").read_text() == "the site published before"  # put back, not deleted
    reliability.row("Faults", "a site publish SIGKILLed while building, and between its two renames",
                    "the next publish removed the staging folders; the retired site was put back in place",
                    staging_folders_removed=3)
