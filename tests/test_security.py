"""Security: what decides which plugin code runs, broken third-party plugins, and text that viewers render."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from robustbench_us.errors import PluginError
from robustbench_us.leaderboard import csv_text, write_leaderboard
from robustbench_us.plugins import PluginWarning, Registry, get_plugin_manager, reset_default_registry
from robustbench_us.records import Status
from robustbench_us.specs import Kind
from tests.fakes import distributions as fake

REPO = Path(__file__).resolve().parents[1]
FAKE_MODULES = ("evil_rb_plugin", "broken_rb_plugin", "hooky_rb_plugin", "misspelt_rb_plugin", "good_rb_plugin",
                "robustbench_us_local_sneaky")


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on ``sys.path`` to install fake distributions into; their modules are forgotten afterwards."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for name in FAKE_MODULES:
        sys.modules.pop(name, None)


def _broken_site(folder: Path) -> Path:
    """Four installed plugins: one fails to import, one fails in its hook, one misspells a hook, one works."""
    fake.make_distribution(folder, "broken-dist", {"broken": "broken_rb_plugin"},
                           {"broken_rb_plugin": fake.BROKEN_IMPORT})
    fake.make_distribution(folder, "hooky-dist", {"hooky": "hooky_rb_plugin"}, {"hooky_rb_plugin": fake.BROKEN_HOOK})
    fake.make_distribution(folder, "misspelt-dist", {"misspelt-ep": "misspelt_rb_plugin"},
                           {"misspelt_rb_plugin": fake.MISSPELT_HOOK})
    fake.make_distribution(folder, "good-dist", {"good": "good_rb_plugin"},
                           {"good_rb_plugin": fake.ATTACK.format(fn="good", attack="good-attack")})
    return folder


def test_an_entry_point_named_like_an_allowed_distribution_is_refused_unimported(site, reliability):
    # A distribution may name its entry point anything, including the name of the distribution allowed.
    fake.make_distribution(site, "evil-dist", {"robustbench-us": "evil_rb_plugin"},
                           {"evil_rb_plugin": fake.ATTACK.format(fn="evil", attack="evil")})
    env = {"ROBUSTBENCH_US_PLUGINS": "fgsm,robustbench-us", "ROBUSTBENCH_US_ALLOW_PLUGINS": "robustbench-us"}
    with pytest.raises(PluginError) as info:
        Registry(get_plugin_manager(environ=env))
    message = str(info.value)
    assert "Plugin 'robustbench-us' (distribution 'evil-dist') is not in the allow-list" in message
    assert "passes it by its distribution's name, not its entry point's). Add evil-dist there" in message
    assert "ROBUSTBENCH_US_DISABLE_PLUGINS=robustbench-us" in message
    assert fake.imported(site) == [] and "evil_rb_plugin" not in sys.modules
    # Allowed by its distribution's name, spelt any way PEP 503 treats as the same name.
    reg = Registry(get_plugin_manager(environ=env | {"ROBUSTBENCH_US_ALLOW_PLUGINS": "robustbench_us,Evil_Dist"}))
    assert reg.names(Kind.ATTACK) == ["evil", "fgsm"]
    assert reg.infos["robustbench-us"].distribution == "evil-dist"
    assert fake.imported(site) == ["evil_rb_plugin"]
    reliability.row("Security", "a distribution whose entry point is named like an allowed distribution",
                    "refused before it is imported: entry points pass ROBUSTBENCH_US_ALLOW_PLUGINS only by their "
                    "distribution's name (PEP 503-normalised)", modules_imported=0)


def test_two_distributions_with_one_entry_point_name_are_an_error_not_a_shadow(site):
    fake.make_distribution(site, "good-dist", {"twin": "good_rb_plugin"},
                           {"good_rb_plugin": fake.ATTACK.format(fn="good", attack="good-attack")})
    fake.make_distribution(site, "evil-dist", {"twin": "evil_rb_plugin"},
                           {"evil_rb_plugin": fake.ATTACK.format(fn="evil", attack="evil")})
    with pytest.raises(PluginError, match=r"Two installed plugins are named 'twin': .* from distribution "
                                          r"'(good|evil)-dist' and .* from distribution '(good|evil)-dist'\. "
                                          r"Uninstall one of them\."):
        get_plugin_manager(environ={"ROBUSTBENCH_US_PLUGINS": "twin"})
    assert fake.imported(site) == []


def test_local_plugins_are_refused_or_disabled_before_their_code_runs(tmp_path, reliability):
    path = tmp_path / "sneaky.py"
    path.write_text(fake.RECORD_IMPORT + fake.ATTACK.format(fn="sneaky", attack="sneaky"), encoding="utf-8")
    base = {"ROBUSTBENCH_US_PLUGINS": "", "ROBUSTBENCH_US_LOCAL_PLUGINS": str(path)}
    try:
        with pytest.raises(PluginError, match=r"Local plugin 'sneaky' .* is not in the allow-list .*by its module "
                                              r"name\)\. Add sneaky there"):
            get_plugin_manager(environ=base | {"ROBUSTBENCH_US_ALLOW_PLUGINS": "robustbench-us"})
        reg = Registry(get_plugin_manager(environ=base | {"ROBUSTBENCH_US_DISABLE_PLUGINS": "sneaky"}))
        assert reg.infos == {} and reg.names(Kind.ATTACK) == []
        assert fake.imported(tmp_path) == []
        reg = Registry(get_plugin_manager(environ=base | {"ROBUSTBENCH_US_ALLOW_PLUGINS": "sneaky"}))
        assert reg.names(Kind.ATTACK) == ["sneaky"]
        assert fake.imported(tmp_path) == ["robustbench_us_local_sneaky"]
    finally:
        sys.modules.pop("robustbench_us_local_sneaky", None)
    reliability.row("Security", "a local plugin outside ROBUSTBENCH_US_ALLOW_PLUGINS, or in "
                    "ROBUSTBENCH_US_DISABLE_PLUGINS", "refused (or skipped) by its module name before it is "
                    "imported", modules_imported=0)


def test_a_broken_installed_plugin_is_skipped_with_a_warning_and_the_rest_load(site, reliability):
    _broken_site(site)
    env = {"ROBUSTBENCH_US_PLUGINS": "fgsm,broken,hooky,misspelt-ep,good"}
    with pytest.warns(PluginWarning) as caught:
        reg = Registry(get_plugin_manager(environ=env))
    messages = {str(w.message).split("'")[1]: str(w.message) for w in caught if w.category is PluginWarning}
    assert sorted(messages) == ["broken", "hooky", "misspelt-ep"]
    assert messages["broken"].startswith("Skipped plugin 'broken' from distribution 'broken-dist': failed to import "
                                         "(broken_rb_plugin): RuntimeError: this plugin is broken on purpose.")
    assert "register_attacks failed: KeyError: 'config.json'" in messages["hooky"]
    assert "implements a hook robustbench_us does not define" in messages["misspelt-ep"]
    for name, message in messages.items():
        assert f"ROBUSTBENCH_US_DISABLE_PLUGINS={name}" in message and "uninstall" in message
    # The others load; nothing of a plugin that failed half-way stays registered.
    assert reg.names(Kind.ATTACK) == ["fgsm", "good-attack"]
    assert reg.names(Kind.MODEL) == []
    assert sorted(reg.failed) == ["broken", "hooky", "misspelt-ep"]
    assert reg.infos["fgsm"].to_dict()["status"] == "loaded" and reg.infos["fgsm"].error is None
    view = reg.infos["broken"].to_dict()
    assert (view["status"], view["distribution"], view["version"]) == ("failed", "broken-dist", "0.1")
    assert view["error"] == "failed to import (broken_rb_plugin): RuntimeError: this plugin is broken on purpose"
    reliability.row("Security", "an installed plugin that fails to import, fails in its hook, or misspells a hook",
                    "skipped with a warning naming it, its distribution, the error and the fix; the other plugins "
                    "load; `plugins` lists it as failed", plugins_skipped=len(reg.failed),
                    plugins_loaded=len(reg.infos) - len(reg.failed))


@pytest.mark.parametrize(("plugin", "dist", "words"), [
    ("broken", "broken-dist", "failed to import (broken_rb_plugin): RuntimeError"),
    ("hooky", "hooky-dist", "register_attacks failed: KeyError"),
    ("misspelt-ep", "misspelt-dist", "implements a hook robustbench_us does not define"),
])
def test_with_an_allow_list_a_broken_allowed_plugin_is_an_error(site, plugin, dist, words):
    _broken_site(site)
    env = {"ROBUSTBENCH_US_PLUGINS": f"fgsm,{plugin}", "ROBUSTBENCH_US_ALLOW_PLUGINS": f"robustbench-us,{dist}"}
    with pytest.raises(PluginError) as info:
        Registry(get_plugin_manager(environ=env))
    assert f"'{plugin}'" in str(info.value) and words in str(info.value)


def test_plugins_command_lists_the_failed_plugin(site, monkeypatch, capsys):
    from robustbench_us.cli import main

    _broken_site(site)
    monkeypatch.setenv("ROBUSTBENCH_US_PLUGINS", "fgsm,broken")
    monkeypatch.delenv("ROBUSTBENCH_US_ALLOW_PLUGINS", raising=False)
    reset_default_registry()
    try:
        with pytest.warns(PluginWarning, match="Skipped plugin 'broken'"):
            assert main(["plugins"]) == 0
    finally:
        reset_default_registry()
    by_name = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert by_name["fgsm"]["status"] == "loaded" and by_name["fgsm"]["registered"] == {"attack": ["fgsm"]}
    assert by_name["broken"]["status"] == "failed" and "RuntimeError" in by_name["broken"]["error"]


def test_a_broken_plugin_does_not_stop_pytest_collection_of_other_tests(site, tmp_path):
    _broken_site(site)
    project = tmp_path / "project"
    project.mkdir()
    # As tests/test_attacks.py does: the registry is built while the module is collected.
    (project / "test_uses_registry.py").write_text(
        "from robustbench_us.plugins import default_registry\n"
        "NAMES = default_registry().names('attack')\n\n"
        "def test_reference_attack_is_there():\n"
        "    assert NAMES == ['fgsm']\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBUSTBENCH_US_")}
    env |= {"PYTHONPATH": os.pathsep.join([str(site), str(REPO)]), "ROBUSTBENCH_US_PLUGINS": "fgsm,broken",
            "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
                         cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout and "Skipped plugin 'broken' from distribution 'broken-dist'" in out.stdout


# ------------------------------------------------------------------ leaderboards: text a viewer renders
ATTACK_LABEL = "<img src=x onerror=alert(1)>"
FORMULA = "=cmd|' /C calc'!A0"


def _record(cell: str, dataset: str, attack: str, spearman: float) -> dict:
    config = {"dataset": dataset, "model": "net|work", "explainer": "gradcam", "attack": attack, "region": "all",
              "eps": 1 / 255, "eps_grey": 1.0, "n_images": 4}
    return {"status": Status.OK, "cell_id": cell, "config": config,
            "metrics": {"clean_accuracy": 0.75, "adv_accuracy": 0.5, "flip_rate": 0.25, "spearman": spearman}}


def test_leaderboard_text_is_escaped_in_markdown_and_csv(tmp_path, reliability):
    records = [_record("c1", FORMULA, ATTACK_LABEL, -0.5), _record("c2", "busi", "@SUM(1+1)*cmd", 0.25)]
    notes = "Notes <script>alert(1)</script> & more | here"
    csv_path, md_path = write_leaderboard(records, "suite<b>", tmp_path, notes=notes)
    md = md_path.read_text(encoding="utf-8")
    assert "<img" not in md and "<script>" not in md and "<b>" not in md
    assert "# Leaderboard: suite&lt;b&gt;" in md
    assert "Notes &lt;script&gt;alert(1)&lt;/script&gt; &amp; more | here" in md
    row = next(line for line in md.splitlines() if "onerror" in line)
    assert "| &lt;img src=x onerror=alert(1)&gt; |" in row and "| net\\|work |" in row
    assert "=cmd\\|' /C calc'!A0" in row
    assert row.count(" | ") == md.splitlines()[6].count(" | ")  # no escaped pipe opens a new column
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text(encoding="utf-8"))))
    by_cell = {r["cell_id"]: r for r in rows}
    assert by_cell["c1"]["dataset"] == "'" + FORMULA
    assert by_cell["c2"]["attack"] == "'@SUM(1+1)*cmd"
    assert by_cell["c1"]["attack"] == ATTACK_LABEL and by_cell["c1"]["model"] == "net|work"
    # Numbers stay numbers, negative ones included.
    assert by_cell["c1"]["spearman"] == "-0.5" and by_cell["c2"]["spearman"] == "0.25"
    assert by_cell["c1"]["eps"] == "0.00392157" and by_cell["c1"]["n_images"] == "4"
    reliability.row("Security", "suite labels and notes carrying HTML (<img onerror>), | and a spreadsheet formula",
                    "escaped: HTML as entities and | as \\| in the Markdown table; text cells starting with = + - @ "
                    "get a leading ' in the CSV; numbers unchanged", cells=len(rows))


@pytest.mark.parametrize(("value", "expected"), [
    ("=1+1", "'=1+1"), ("+1+cmd", "'+1+cmd"), ("-x", "'-x"), ("@A1", "'@A1"), ("\tx", "'\tx"),
    ("-1.5", "-1.5"), ("+2e-3", "+2e-3"), ("busi", "busi"), (-2.0, -2.0), (3, 3), (None, None),
])
def test_csv_text_neutralises_formulas_but_not_numbers(value, expected):
    assert csv_text(value) == expected
