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


@pytest.mark.parametrize(("argv", "words"), [
    (["check", "attack", "fgsm", "--option", "regoin=inside"],
     ["--option regoin: attack 'fgsm' (plugin 'fgsm') has no option 'regoin'.", "Did you mean 'region'?",
      "It takes: region (`robustbench-us list attacks` shows their defaults)."]),
    (["check", "dataset", "phantom", "--option", "cont=12"],
     ["dataset 'phantom' (plugin 'phantom') has no option 'cont'.", "Did you mean 'count'?",
      "It takes: count, malignant_fraction"]),
    (["check", "attack", "fgsm", "--option", "eps=0.1"],
     ["--option eps: attack 'fgsm' (plugin 'fgsm') gets eps from --eps or --eps-grey; use that instead."]),
])
def test_a_misspelt_option_exits_2_naming_it_and_what_the_factory_takes(toy_env, capsys, reliability, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    for text in words:
        assert text in err
    assert "factory" not in err  # the factory is not blamed for a typo on the command line
    reliability.row("Bad input", f"`robustbench-us {' '.join(argv[1:3])}` with a wrong --option ({argv[-1]})",
                    "exit 2 naming the option, the options the plugin takes and the closest one", exit_code=2)
