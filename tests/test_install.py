"""What a ``pip install`` of the wheel gives: the shipped suites inside the package, declared
dependencies, and a command line whose ``--help`` and ``--version`` answer without importing torch."""

from __future__ import annotations

import email.parser
import json
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from robustbench_us.suite import load_suite, resolve_suite_path, suites_folder

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("default", "paper", "paper-busbra", "paper-busbra-native", "paper-busbrapre", "paper-maps", "paper-seeds")
HEAVY = ("torch", "torchvision", "pandas", "numpy", "matplotlib", "scipy", "timm", "art")


def python(code: str, *, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built from a copy of what it is built from (the checkout stays untouched)."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("robustbench_us", "plugins"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    # No build isolation and no index: the build uses the setuptools already installed, offline.
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "--disable-pip-version-check", "-q", str(src), "-w", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("robustbench_us-*.whl")
    return built


def test_shipped_suites_live_in_the_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # found through the package, not the working folder
    assert suites_folder() == ROOT / "robustbench_us" / "suites"
    assert tuple(sorted(p.stem for p in suites_folder().glob("*.toml"))) == tuple(sorted(SHIPPED))
    assert resolve_suite_path("default") == ROOT / "robustbench_us" / "suites" / "default.toml"
    assert load_suite("default").name == "default"
    assert not (ROOT / "benchmarks" / "suites").exists()  # one copy, so the wheel's suites are the documented ones


def test_the_wheel_holds_the_suites_and_declares_its_dependencies(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        headers = email.parser.Parser().parsestr(archive.read(meta).decode())
        for stem in SHIPPED:
            shipped = f"robustbench_us/suites/{stem}.toml"
            assert shipped in names
            assert archive.read(shipped) == (ROOT / shipped).read_bytes()
    assert "robustbench_us/schema/record.schema.json" in names and "robustbench_us/site/templates/index.html" in names
    requires = headers.get_all("Requires-Dist")
    plain = {r.split(";")[0].split("=")[0].split(">")[0].strip() for r in requires if "extra ==" not in r}
    assert {"torch", "numpy", "pandas", "pluggy"} <= plain
    assert "pytest-benchmark" not in plain and "pytest-benchmark==5.3.1; extra == \"bench\"" in requires
    test_extra = [r.split(";")[0] for r in requires if r.endswith('extra == "test"')]
    assert test_extra and all("==" in r for r in test_extra), test_extra  # pinned: the reference tests rely on them


def test_the_unpacked_wheel_finds_its_suites_from_any_folder(wheel, tmp_path):
    # What pip puts in site-packages is the wheel unpacked. Put it first on the path, then ask from a folder
    # that holds no suites; the installed package's own suites must answer.
    site = tmp_path / "site-packages"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import json, robustbench_us.suite as s; "
            "print(json.dumps([s.__file__, str(s.resolve_suite_path('default')), "
            "sorted(p.stem for p in s.suites_folder().glob('*.toml')), s.load_suite('paper').name]))")
    done = python(code, cwd=elsewhere, env={"PYTHONPATH": str(site), "PATH": ""})
    assert done.returncode == 0, done.stderr
    module, default, names, paper = json.loads(done.stdout)
    assert Path(module).is_relative_to(site)
    assert Path(default) == site / "robustbench_us" / "suites" / "default.toml"
    assert names == sorted(SHIPPED) and paper == "paper"


def test_help_and_version_import_neither_torch_nor_pandas(tmp_path):
    code = ("import json, sys, contextlib, io\n"
            "from robustbench_us.cli import main\n"
            "out = {}\n"
            "for flag in ('--help', '--version'):\n"
            "    text = io.StringIO()\n"
            "    with contextlib.redirect_stdout(text):\n"
            "        try:\n"
            "            main([flag])\n"
            "        except SystemExit as exc:\n"
            "            out[flag] = [exc.code, text.getvalue()]\n"
            f"out['heavy'] = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
            "print(json.dumps(out))\n")
    done = python(code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["heavy"] == []
    assert out["--help"][0] == 0 and "train" in out["--help"][1] and "--version" in out["--help"][1]
    assert out["--version"] == [0, f"robustbench-us {metadata.version('robustbench-us')}\n"]


@pytest.mark.parametrize("command, expected", [
    (["train"], ["--epochs EPOCHS", "maximum epochs (default 80)", "{accuracy,auc,cls_loss,dice,loss,seg_loss}",
                 "-v, --verbose"]),
    (["site"], ["--figure-format {png,webp}", "--title TITLE", "-v, --verbose"]),
    (["leaderboard"], ["--figure-format {png,webp}", "with publish: the site's title", "-v, --verbose"]),
])
def test_options_added_on_first_use_still_show_in_help(command, expected, capsys):
    from robustbench_us.cli import main

    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for piece in expected:
        assert piece in text
    assert text.index("-v, --verbose") > text.index(expected[0])  # -v comes last, as before


def test_options_added_on_first_use_are_parsed():
    from robustbench_us.cli import build_parser

    args = build_parser().parse_args(["train", "resnet50", "--dataset", "busi", "--out", "m", "--epochs", "3", "-v"])
    assert (args.model, args.dataset, args.epochs, args.lr, args.monitor, args.verbose) == (
        "resnet50", ["busi"], 3, 1e-4, "loss", True)
    site = build_parser().parse_args(["site", "--figure-format", "webp"])
    assert (site.figure_format, site.title) == ("webp", "robustbench_us leaderboard")


def test_a_closed_pipe_ends_the_command_quietly():
    """`robustbench-us list attacks | head -1`: no BrokenPipeError traceback when the reader stops early."""
    script = ("import subprocess, sys\n"
              "p = subprocess.Popen([sys.executable, '-m', 'robustbench_us', 'list', 'attacks'], "
              "stdout=subprocess.PIPE, stderr=subprocess.PIPE)\n"
              "p.stdout.close()\n"  # gone before the command has written anything: every write hits EPIPE
              "err = p.stderr.read().decode(); p.wait()\n"
              "print(repr(err)); sys.exit(p.returncode)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert "Traceback" not in out.stdout and "BrokenPipeError" not in out.stdout, out.stdout
    assert out.returncode in (0, 141), out.stdout + out.stderr
