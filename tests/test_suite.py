"""Suite files: validated before any work starts, errors naming the file, the key and the fix."""

from __future__ import annotations

import pytest

from robustbench_us.errors import SuiteError
from robustbench_us.plugins import default_registry
from robustbench_us.suite import load_suite, parse_suite

GOOD = """
[suite]
name = "mini"
seed = 3
n_images = 8

[[datasets]]
name = "phantom"
options = { count = 40 }

[[models]]
name = "resnet50-mtl"
input_size = 64
train = { epochs = 1 }

[[explainers]]
name = "gradcam"

[[attacks]]
name = "fgsm"
eps_grey = [1, 2]
"""


def write(tmp_path, text, name="mini.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_good_suite_parses(tmp_path):
    suite = load_suite(write(tmp_path, GOOD), registry=default_registry())
    assert suite.name == "mini" and suite.seed == 3 and suite.n_images == 8
    assert suite.attacks[0].eps == pytest.approx((1 / 255, 2 / 255))
    assert suite.models[0].train == {"epochs": 1}
    assert suite.models[0].key == "resnet50-mtl@64"


def test_the_shipped_default_suite_is_valid():
    suite = load_suite("default", registry=default_registry())
    assert suite.name == "default"
    assert [d.name for d in suite.datasets] == ["phantom"]


@pytest.mark.parametrize(("old", "new", "match"), [
    ('name = "gradcam"', 'name = "gradcan"', r"explainers\[0\]\.name: Unknown explainer 'gradcan'.*Did you mean 'gradcam'"),
    ("seed = 3", 'seed = "3"', r"suite\.seed: expected an integer from 0 to 2\*\*32 - 1, got str"),
    ("n_images = 8", "n_imgs = 8", r"suite\.n_imgs: unknown key.*Did you mean 'n_images'"),
    ("eps_grey = [1, 2]", "eps = [1, 2]", r"attacks\[0\]\.eps: 2 is outside \[0, 1\] pixel units. Use eps_grey"),
    ("eps_grey = [1, 2]", "eps_grey = []", r"the list is empty"),
    ("input_size = 64", "input_size = 50", r"multiple of 32"),
    ("seed = 3", "seed = true", r"expected an integer from 0 to 2\*\*32 - 1, got bool"),
])
def test_bad_suites_name_file_key_and_fix(tmp_path, old, new, match):
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(SuiteError, match=match) as info:
        load_suite(path, registry=default_registry())
    assert str(path) in str(info.value)


def test_invalid_toml_names_the_file(tmp_path):
    path = write(tmp_path, "[suite\nname=1")
    with pytest.raises(SuiteError, match="not valid TOML"):
        load_suite(path)


def test_missing_sections_and_unknown_top_level_keys(tmp_path):
    with pytest.raises(SuiteError, match="names no attacks"):
        parse_suite({"suite": {"name": "x"}, "datasets": [{"name": "phantom"}], "models": [{"name": "m"}],
                     "explainers": [{"name": "e"}]})
    with pytest.raises(SuiteError, match="unknown top-level key"):
        parse_suite({"suit": {}})


def test_checkpoint_and_train_are_exclusive():
    data = {"suite": {"name": "x"}, "datasets": [{"name": "d"}], "models": [{"name": "m", "checkpoint": "x", "train": {}}],
            "explainers": [{"name": "e"}], "attacks": [{"name": "a"}]}
    with pytest.raises(SuiteError, match="either checkpoint or train"):
        parse_suite(data)


def test_unknown_suite_name_lists_shipped_suites():
    with pytest.raises(SuiteError, match="shipped suites: .*default"):
        load_suite("no-such-suite")


SCALED = GOOD + """
[scales.cpu]
input_size = 32
n_images = 4
train = { epochs = 2 }
notes = "reduced for CPU"
"""


def test_a_scale_overrides_settings_and_renames_the_suite(tmp_path):
    path = write(tmp_path, SCALED)
    full = load_suite(path, registry=default_registry())
    assert (full.name, full.n_images, full.models[0].input_size, full.models[0].train) == ("mini", 8, 64,
                                                                                         {"epochs": 1})
    cpu = load_suite(path, registry=default_registry(), scale="cpu")
    assert (cpu.name, cpu.n_images, cpu.models[0].input_size) == ("mini-cpu", 4, 32)
    assert cpu.models[0].train == {"epochs": 2} and cpu.notes == "reduced for CPU"


def test_an_unknown_scale_lists_the_defined_ones(tmp_path):
    path = write(tmp_path, SCALED)
    with pytest.raises(SuiteError, match="scale 'gpu' is not defined. Defined scales: cpu"):
        load_suite(path, scale="gpu")
    with pytest.raises(SuiteError, match=r"scales\.cpu\.epochs: unknown key"):
        load_suite(write(tmp_path, GOOD + "\n[scales.cpu]\nepochs = 3\n", "bad.toml"))


TWO_CHECKPOINTS = GOOD.replace('''[[models]]
name = "resnet50-mtl"
input_size = 64
train = { epochs = 1 }
''', '''[[models]]
name = "resnet50-mtl"
checkpoint = "checkpoints/paper/busi-resnet50-mtl-s0.safetensors"

[[models]]
name = "resnet50-mtl"
label = "resnet50-mtl+busbra"
checkpoint = "checkpoints/paper/busi-resnet50-mtl-busbrapre-s0.safetensors"
''')


def test_a_model_label_names_the_entry_and_keeps_the_registry_name(tmp_path):
    suite = load_suite(write(tmp_path, TWO_CHECKPOINTS), registry=default_registry())
    plain, labelled = suite.models
    assert (plain.name, plain.label, plain.key) == ("resnet50-mtl", None, "resnet50-mtl")
    assert (labelled.name, labelled.label, labelled.key) == ("resnet50-mtl", "resnet50-mtl+busbra",
                                                             "resnet50-mtl+busbra")
    sized = load_suite(write(tmp_path, TWO_CHECKPOINTS.replace('label = "resnet50-mtl+busbra"',
                                                              'label = "resnet50-mtl+busbra"\ninput_size = 64'),
                             "sized.toml"))
    assert sized.models[1].key == "resnet50-mtl+busbra@64"


def test_the_same_model_twice_without_a_label_is_refused(tmp_path):
    text = TWO_CHECKPOINTS.replace('label = "resnet50-mtl+busbra"\n', "")
    with pytest.raises(SuiteError, match=r"models\[1\]: same model as models\[0\] \('resnet50-mtl'.*label = \""):
        load_suite(write(tmp_path, text))
    same_label = TWO_CHECKPOINTS.replace('name = "resnet50-mtl"\ncheckpoint = "checkpoints/paper/busi-resnet50-mtl-s0',
                                         'name = "resnet50"\nlabel = "resnet50-mtl+busbra"\n'
                                         'checkpoint = "checkpoints/paper/busi-resnet50-mtl-s0')
    with pytest.raises(SuiteError, match=r"models\[1\]: same model as models\[0\]"):
        load_suite(write(tmp_path, same_label, "same.toml"))
    # Other input sizes are other entries already.
    sized = text.replace('checkpoint = "checkpoints/paper/busi-resnet50-mtl-busbrapre',
                         'input_size = 64\ncheckpoint = "checkpoints/paper/busi-resnet50-mtl-busbrapre')
    assert [m.key for m in load_suite(write(tmp_path, sized, "sized.toml")).models] == ["resnet50-mtl",
                                                                                        "resnet50-mtl@64"]


def test_a_scale_keeps_model_labels(tmp_path):
    text = TWO_CHECKPOINTS + "\n[scales.cpu]\ninput_size = 32\n"
    cpu = load_suite(write(tmp_path, text), scale="cpu")
    assert [m.key for m in cpu.models] == ["resnet50-mtl@32", "resnet50-mtl+busbra@32"]
    assert [m.name for m in cpu.models] == ["resnet50-mtl", "resnet50-mtl"]


def test_figures_accepts_a_list_of_grey_levels(tmp_path):
    suite = load_suite(write(tmp_path, GOOD.replace('n_images = 8', 'n_images = 8\nfigures = [1, 8]')))
    assert suite.figures == (1.0, 8.0)
    assert suite.figures_at(1 / 255) and suite.figures_at(8 / 255) and suite.figures_at(0.0313725490196)
    assert not suite.figures_at(2 / 255) and not suite.figures_at(0.0)
    everything = load_suite(write(tmp_path, GOOD, "all.toml"))
    assert everything.figures is True and everything.figures_at(2 / 255)
    nothing = load_suite(write(tmp_path, GOOD.replace('n_images = 8', 'n_images = 8\nfigures = false'), "no.toml"))
    assert not nothing.figures_at(1 / 255)


@pytest.mark.parametrize("value", ["[]", "[0]", "[-1]", '["8"]', "[true]", '"yes"'])
def test_a_bad_figures_value_names_the_key_and_the_fix(tmp_path, value):
    text = GOOD.replace('n_images = 8', f'n_images = 8\nfigures = {value}')
    with pytest.raises(SuiteError, match=r"suite\.figures: .*(figures = \[1, 8\]|true, false, or a list)"):
        load_suite(write(tmp_path, text))


ATTACKS = GOOD.replace('''[[attacks]]
name = "fgsm"
eps_grey = [1, 2]
''', '''[[attacks]]
name = "fgsm"
eps_grey = [1, 2, 4, 8]

[[attacks]]
name = "pgd"
options = { steps = 20, restarts = 1 }
eps_grey = [1, 8]

[[attacks]]
name = "pgd"
label = "pgd-inside"
region = "inside"
eps_grey = [1, 8]
''')


def test_a_scale_changes_attack_steps_and_eps(tmp_path):
    text = ATTACKS + '''
[scales.quick.attacks.pgd]
options = { steps = 5 }
eps = 0.01

[scales.quick.attacks.fgsm]
eps_grey = [1]
'''
    path = write(tmp_path, text)
    full = load_suite(path, registry=default_registry())
    quick = load_suite(path, registry=default_registry(), scale="quick")
    fgsm, pgd, inside = quick.attacks
    assert fgsm.eps == (1 / 255,) and full.attacks[0].eps == tuple(g / 255 for g in (1, 2, 4, 8))
    assert pgd.options == {"steps": 5, "restarts": 1} and pgd.eps == (0.01,)
    # Keyed by label: the labelled PGD keeps its settings.
    assert inside.options == full.attacks[2].options and inside.eps == full.attacks[2].eps
    labelled = load_suite(write(tmp_path, ATTACKS + "\n[scales.q.attacks.pgd-inside]\neps_grey = 2\n", "l.toml"),
                          scale="q")
    assert labelled.attacks[2].eps == (2 / 255,) and labelled.attacks[1].eps == full.attacks[1].eps


@pytest.mark.parametrize(("table", "words"), [
    ("[scales.q.attacks.cw]\neps = 0.1\n", r"scales\.q\.attacks\.cw: no attack of the suite is labelled or named "
                                           r"'cw'\. Its attacks: 'fgsm', 'pgd', 'pgd-inside'"),
    ("[scales.q.attacks.pgd]\nsteps = 5\n", r"scales\.q\.attacks\.pgd\.steps: unknown key\. Allowed: options, eps, "
                                            r"eps_grey"),
    ("[scales.q.attacks.pgd]\neps = 0.1\neps_grey = 2\n", r"give either eps .* or eps_grey"),
    ("[scales.q.attacks.pgd]\noptions = { stepz = 5 }\n", r"attacks\[1\]\.options: 'pgd': unknown option 'stepz'\. "
                                                          r"Did you mean 'steps'\?"),
])
def test_bad_scale_attack_changes_are_named(tmp_path, table, words):
    with pytest.raises(SuiteError, match=words):
        load_suite(write(tmp_path, ATTACKS + "\n" + table), registry=default_registry(), scale="q")


def test_an_unknown_plugin_option_is_named_when_the_suite_is_read(tmp_path):
    text = GOOD.replace('options = { count = 40 }', 'options = { cuont = 40 }')
    with pytest.raises(SuiteError, match=r"datasets\[0\]\.options: 'phantom': unknown option 'cuont'\. Did you mean "
                                         r"'count'\? It takes: .*count"):
        load_suite(write(tmp_path, text), registry=default_registry())
    model = GOOD.replace('train = { epochs = 1 }', 'train = { epochs = 1 }\noptions = { segmentaton = true }')
    with pytest.raises(SuiteError, match=r"models\[0\]\.options: 'resnet50-mtl': unknown option 'segmentaton'"):
        load_suite(write(tmp_path, model, "m.toml"), registry=default_registry())
    assert load_suite(write(tmp_path, GOOD, "ok.toml"), registry=default_registry()).datasets[0].options == {"count": 40}
