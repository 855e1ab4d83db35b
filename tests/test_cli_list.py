"""``robustbench-us list``: names, descriptions, and each factory's options with their defaults."""

from __future__ import annotations

import json

import pytest

from robustbench_us.cli import main
from robustbench_us.plugins import reset_default_registry


@pytest.fixture
def knobs_env(monkeypatch):
    monkeypatch.setenv("ROBUSTBENCH_US_PLUGINS", "fgsm,iterative,phantom")
    monkeypatch.setenv("ROBUSTBENCH_US_LOCAL_PLUGINS", "tests.fakes.knobs")
    monkeypatch.delenv("ROBUSTBENCH_US_ALLOW_PLUGINS", raising=False)
    reset_default_registry()
    yield
    monkeypatch.undo()
    reset_default_registry()


def _lines(capsys) -> dict[str, str]:
    return {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}


def test_list_shows_each_factorys_options_and_defaults(knobs_env, capsys):
    assert main(["list", "attacks"]) == 0
    lines = _lines(capsys)
    assert lines["fgsm"].endswith('  options: region="all"  (plugin: fgsm)')
    assert ('options: steps=10, step_size=null, random_start=true, restarts=1, region="all"  (plugin: iterative)'
            in lines["pgd"])
    # A required option, the signature's default over a declared one, a declared extra for **extra.
    assert lines["knobs"].endswith('options: steps=<required>, mode="fast", scale=null, verbose=false  '
                                   '(plugin: tests.fakes.knobs)')
    # ε comes from --eps / the suite's eps, so it is not offered as an option; no options, no "options:".
    assert all(" eps=" not in line.split("options:")[1] for line in lines.values() if "options:" in line)
    assert "options:" not in lines["plain"]
    assert main(["list", "datasets"]) == 0
    assert _lines(capsys)["phantom"].endswith("options: count=240, malignant_fraction=0.5  (plugin: phantom)")


def test_list_json_carries_the_options(knobs_env, capsys):
    assert main(["list", "attacks", "--json"]) == 0
    by_name = {spec["name"]: spec for spec in json.loads(capsys.readouterr().out)}
    assert by_name["pgd"]["options"] == {"steps": 10, "step_size": None, "random_start": True, "restarts": 1,
                                         "region": "all"}
    assert by_name["knobs"]["options"] == {"steps": None, "mode": "fast", "scale": None, "verbose": False}
    assert by_name["knobs"]["required"] == ["steps"] and by_name["pgd"]["required"] == []
    assert by_name["plain"]["options"] == {}
