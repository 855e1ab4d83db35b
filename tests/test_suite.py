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
    ("seed = 3", 'seed = "3"', r"suite\.seed: expected an integer, got str"),
    ("n_images = 8", "n_imgs = 8", r"suite\.n_imgs: unknown key.*Did you mean 'n_images'"),
    ("eps_grey = [1, 2]", "eps = [1, 2]", r"attacks\[0\]\.eps: 2 is outside \[0, 1\] pixel units. Use eps_grey"),
    ("eps_grey = [1, 2]", "eps_grey = []", r"the list is empty"),
    ("input_size = 64", "input_size = 50", r"multiple of 32"),
    ("seed = 3", "seed = true", r"expected an integer, got bool"),
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
