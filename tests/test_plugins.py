"""The plugin host: discovery through entry points, names, duplicates, environment switches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustbench_us import AttackSpec, ModelSpec
from robustbench_us.errors import DuplicateNameError, PluginError, UnknownNameError
from robustbench_us.plugins import Registry, get_plugin_manager
from robustbench_us.specs import Kind
from tests.fakes import dup_attack, family, misspelt_hook

FAKES = Path(__file__).parent / "fakes"
REFERENCE = {"dataset": "phantom", "model": "resnet50-mtl", "explainer": "gradcam", "attack": "fgsm"}


def registry(**env: str) -> Registry:
    return Registry(get_plugin_manager(environ=env))


def test_reference_plugins_come_from_entry_points_of_the_distribution():
    reg = registry()
    for kind, name in REFERENCE.items():
        spec = reg.get(kind, name)
        info = reg.infos[spec.plugin]
        assert info.source == "entry-point"
        assert info.distribution == "robustbench-us"
        assert name in info.registered[kind]
        assert spec.description  # taken from the factory's docstring


def test_description_defaults_to_the_first_docstring_line():
    spec = AttackSpec(name="noop", factory=dup_attack.make)
    assert spec.description == "Does nothing; exists to clash."


@pytest.mark.parametrize("bad", ["FGSM", "my_attack", "-x", "a b", ""])
def test_names_must_be_kebab_case(bad):
    with pytest.raises(PluginError, match="kebab-case"):
        AttackSpec(name=bad, factory=dup_attack.make)


def test_a_factory_without_docstring_or_description_is_refused():
    with pytest.raises(PluginError, match="no description"):
        AttackSpec(name="mute", factory=lambda eps: None)


def test_a_name_registered_twice_names_both_plugins():
    with pytest.raises(DuplicateNameError) as info:
        Registry(get_plugin_manager(environ={}, extra_plugins=[("clash", dup_attack)]))
    assert "'fgsm'" in str(info.value) and "'clash'" in str(info.value)


def test_unknown_name_lists_what_exists_and_the_closest_match():
    with pytest.raises(UnknownNameError) as info:
        registry().get(Kind.ATTACK, "fgms")
    message = str(info.value)
    assert message.startswith("Unknown attack 'fgms'. Available: ")
    assert "fgsm" in message and "Did you mean 'fgsm'?" in message


def test_misspelt_hook_is_an_error_naming_the_plugin():
    with pytest.raises(PluginError, match="misspelt.*register_attacks"):
        get_plugin_manager(environ={}, extra_plugins=[("misspelt", misspelt_hook)])


def test_disable_plugins_by_environment():
    reg = registry(ROBUSTBENCH_US_DISABLE_PLUGINS="fgsm, gradcam")
    assert "fgsm" not in reg.names(Kind.ATTACK)
    assert "gradcam" not in reg.names(Kind.EXPLAINER)
    assert "phantom" in reg.names(Kind.DATASET)


def test_limit_loaded_plugins_by_environment():
    reg = registry(ROBUSTBENCH_US_PLUGINS="phantom")
    assert set(reg.infos) == {"phantom"}
    assert reg.names(Kind.MODEL) == []
    assert set(registry(ROBUSTBENCH_US_PLUGINS="").infos) == set()


def test_local_plugin_loaded_by_path_without_installing():
    reg = registry(ROBUSTBENCH_US_PLUGINS="", ROBUSTBENCH_US_LOCAL_PLUGINS=str(FAKES / "family.py"))
    assert reg.names(Kind.EXPLAINER) == ["flat"]
    assert reg.infos["family"].source == "local"
    assert reg.infos["family"].location.endswith("family.py")


def test_local_plugin_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(PluginError, match="does not exist"):
        registry(ROBUSTBENCH_US_LOCAL_PLUGINS=str(tmp_path / "nope.py"))


def test_allow_list_refuses_other_distributions(reliability):
    with pytest.raises(PluginError, match="allow-list"):
        registry(ROBUSTBENCH_US_ALLOW_PLUGINS="someone-else")
    reg = registry(ROBUSTBENCH_US_ALLOW_PLUGINS="robustbench-us")
    assert "fgsm" in reg.names(Kind.ATTACK)
    assert all(info.location and info.distribution == "robustbench-us" for info in reg.infos.values())
    reliability.row("Security", "an installed plugin outside ROBUSTBENCH_US_ALLOW_PLUGINS",
                    "refused before it is imported, naming it; `plugins` shows each plugin's distribution and file",
                    plugins_allowed=len(reg.infos))


def test_family_specs_answer_prefixed_names():
    reg = Registry(get_plugin_manager(environ={"ROBUSTBENCH_US_PLUGINS": ""}, extra_plugins=[("family", family)]))
    assert reg.create(Kind.MODEL, "toy:small", input_size=64) == {"variant": "small", "input_size": 64}
    with pytest.raises(UnknownNameError):
        reg.get(Kind.MODEL, "toy:")
    with pytest.raises(UnknownNameError):
        reg.get(Kind.MODEL, "toy")


def test_register_rejects_a_spec_of_the_wrong_kind():
    class Wrong:
        @staticmethod
        def register_attacks(register):
            register(ModelSpec(name="oops", factory=family.make_toy))

    from robustbench_us import hookimpl

    Wrong.register_attacks = hookimpl(Wrong.register_attacks)
    with pytest.raises(PluginError, match="takes AttackSpec"):
        Registry(get_plugin_manager(environ={"ROBUSTBENCH_US_PLUGINS": ""}, extra_plugins=[("wrong", Wrong)]))


def test_plugins_command_prints_json(capsys):
    from robustbench_us.cli import main

    assert main(["plugins"]) == 0
    data = json.loads(capsys.readouterr().out)
    by_name = {p["name"]: p for p in data}
    assert by_name["fgsm"]["registered"] == {"attack": ["fgsm"]}
    assert by_name["fgsm"]["hooks"] == ["register_attacks"]
    assert by_name["fgsm"]["version"] == "0.1.0"


def test_importing_the_package_loads_no_plugins():
    import subprocess
    import sys

    code = ("import sys, robustbench_us, robustbench_us.plugins; "
            "print(any(m.startswith('robustbench_us_plugins.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
