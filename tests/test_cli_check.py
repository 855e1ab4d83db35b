"""``robustbench-us check``: the conformance kit from the shell, exit 0 / 1 / 2."""

from __future__ import annotations

import pytest

from robustbench_us.cli import main


@pytest.fixture
def toy_env(use_plugins):
    use_plugins("fgsm,gradcam,phantom,resnet")


def test_a_conforming_attack_lists_its_checks(toy_env, capsys):
    assert main(["check", "attack", "fgsm", "--eps-grey", "4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("attack 'fgsm' (plugin 'fgsm'):") and "budget" in out and "deterministic" in out


def test_a_broken_attack_exits_1_naming_the_contract(toy_env, capsys):
    assert main(["check", "attack", "over-budget", "--eps", "0.01"]) == 1
    err = capsys.readouterr().err
    assert "[budget]" in err and "over-budget" in err


def test_options_reach_the_factory(toy_env, capsys):
    assert main(["check", "dataset", "phantom", "--option", "count=12", "--image-size", "32"]) == 0
    assert "split(0)" in capsys.readouterr().out
    assert main(["check", "model", "tiny-cnn", "--input-size", "32"]) == 0


@pytest.mark.parametrize(("argv", "words"), [
    (["check", "model", "tiny-cnn", "--eps", "0.1"], "--eps/--eps-grey does not apply to a model"),
    (["check", "explainer", "gradcam", "--root", "/data"], "--root does not apply to an explainer"),
    (["check", "attack", "fgsn"], "Unknown attack 'fgsn'"),
])
def test_usage_errors_exit_2(toy_env, capsys, argv, words):
    assert main(argv) == 2
    assert words in capsys.readouterr().err
