"""Suite validation before any work: seeds, timeouts, ε, repeats, plugin option types and training settings.

Each refused value used to be accepted and then fail every cell (or raise a traceback
after training); here it fails when the file is read, naming the file, the key and the fix.
"""

from __future__ import annotations

import ast
import copy
import math
import subprocess
import sys
from pathlib import Path

import pytest

from robustbench_us import ExplainerSpec, Norm, hookimpl
from robustbench_us.errors import SuiteError
from robustbench_us.plugins import Registry, default_registry, get_plugin_manager
from robustbench_us.suite import MAX_SEED, ExplainerEntry, load_suite, parse_suite, suites_folder

BASE = {
    "suite": {"name": "v", "seed": 0},
    "datasets": [{"name": "phantom", "options": {"count": 40}}],
    "models": [{"name": "resnet50-mtl", "input_size": 64, "train": {"epochs": 1}}],
    "explainers": [{"name": "gradcam"}],
    "attacks": [{"name": "fgsm", "eps_grey": [1, 2]}],
}
SEED_FIX = (f"give an integer from 0 to {MAX_SEED} (2**32 - 1; the random generators take that range, and "
            "attack seeds seed × 100003 + image index must fit in 64 bits).")


def suite_with(change, registry=True):
    data = copy.deepcopy(BASE)
    change(data)
    return parse_suite(data, source="v.toml", registry=default_registry() if registry else None)


def refusal(change) -> str:
    with pytest.raises(SuiteError) as info:
        suite_with(change)
    return str(info.value)


# (what, change, the whole message after "v.toml: ")
REFUSED = [
    ("negative seed", lambda d: d["suite"].update(seed=-5),
     f"suite.seed: -5 is not a usable seed: {SEED_FIX}"),
    ("seed 2**63 - 1", lambda d: d["suite"].update(seed=2**63 - 1),
     f"suite.seed: 9223372036854775807 is not a usable seed: {SEED_FIX}"),
    ("seed 2**32", lambda d: d["suite"].update(seed=2**32),
     f"suite.seed: 4294967296 is not a usable seed: {SEED_FIX}"),
    ("negative split_seed", lambda d: d["datasets"][0].update(split_seed=-1),
     f"datasets[0].split_seed: -1 is not a usable seed: {SEED_FIX}"),
    ("negative training seed", lambda d: d["models"][0]["train"].update(seed=-3),
     f"models[0].train.seed: -3 is not a usable seed: {SEED_FIX}"),
    ("cell_timeout nan", lambda d: d["suite"].update(cell_timeout=math.nan),
     "suite.cell_timeout: nan is not usable: give a finite number of seconds > 0, or drop the key for no limit."),
    ("cell_timeout inf", lambda d: d["suite"].update(cell_timeout=math.inf),
     "suite.cell_timeout: inf is not usable: give a finite number of seconds > 0, or drop the key for no limit."),
    ("cell_timeout 0", lambda d: d["suite"].update(cell_timeout=0),
     "suite.cell_timeout: 0 is not usable: give a finite number of seconds > 0, or drop the key for no limit."),
    ("threshold value nan", lambda d: d.update(thresholds=[{"metric": "adv_accuracy", "op": ">=", "value": math.nan}]),
     "thresholds[0].value: nan is not a finite number; every cell would fail the comparison. Give a number."),
    ("threshold value -inf", lambda d: d.update(thresholds=[{"metric": "spearman", "op": "<", "value": -math.inf}]),
     "thresholds[0].value: -inf is not a finite number; every cell would fail the comparison. Give a number."),
    ("eps_grey 256", lambda d: d["attacks"][0].update(eps_grey=256),
     "attacks[0].eps_grey: 256: ε must be at most 255 grey levels (1.0 in [0,1] units)."),
    ("eps 4 (grey levels given as eps)", lambda d: d["attacks"].__setitem__(0, {"name": "fgsm", "eps": 4}),
     "attacks[0].eps: 4 is outside [0, 1] pixel units. Use eps_grey = 4 for grey levels."),
    ("eps 300", lambda d: d["attacks"].__setitem__(0, {"name": "fgsm", "eps": 300}),
     "attacks[0].eps: 300 is outside [0, 1] pixel units. ε must be at most 1.0 in [0,1] units (255 grey levels)."),
    ("eps_grey nan", lambda d: d["attacks"][0].update(eps_grey=[1, math.nan]),
     "attacks[0].eps_grey: nan is not a usable ε: give a finite number ≥ 0."),
    ("negative eps", lambda d: d["attacks"].__setitem__(0, {"name": "fgsm", "eps": -0.01}),
     "attacks[0].eps: -0.01 is not a usable ε: give a finite number ≥ 0."),
    ("the same ε twice", lambda d: d["attacks"][0].update(eps_grey=[1, 2, 1.0]),
     "attacks[0].eps_grey: item 2 (1.0) repeats item 0 (1): both are ε = 1/255, and each ε is one cell, so it "
     "would be computed and counted twice. Drop the repeat."),
    ("the same ε twice, as a fraction", lambda d: d["attacks"].__setitem__(0, {"name": "fgsm",
                                                                             "eps": [4 / 255, 0.0156862745098]}),
     "attacks[0].eps: item 1 (0.0156862745098) repeats item 0 (0.01568627450980392): both are ε = 4/255, and "
     "each ε is one cell, so it would be computed and counted twice. Drop the repeat."),
    ("the same dataset twice", lambda d: d["datasets"].append(copy.deepcopy(d["datasets"][0])),
     "datasets[1]: same dataset as datasets[0] (name 'phantom', root, options, split_seed and part all equal); "
     "its cells would be computed and counted twice. Drop one, or give it another split_seed, part or options."),
    ("the same explainer twice", lambda d: d["explainers"].append({"name": "gradcam"}),
     "explainers[1]: same explainer as explainers[0] ('gradcam': same name or label); records and maps would mix "
     "the two. Give one of them a distinct label = \"...\" (e.g. label = \"gradcam-2\")."),
    ("one explainer twice with other options", lambda d: d.update(explainers=[
        {"name": "saliency", "options": {"channels": "grey"}}, {"name": "saliency", "options": {"channels": "max"}}]),
     "explainers[1]: same explainer as explainers[0] ('saliency': same name or label); records and maps would mix "
     "the two. Give one of them a distinct label = \"...\" (e.g. label = \"saliency-2\")."),
    ("an explainer labelled like another's name", lambda d: d["explainers"].append({"name": "saliency",
                                                                                   "label": "gradcam"}),
     "explainers[1]: same explainer as explainers[0] ('gradcam': same name or label); records and maps would mix "
     "the two. Give one of them a distinct label = \"...\" (e.g. label = \"gradcam-2\")."),
    ("an empty explainer label", lambda d: d["explainers"][0].update(label=" "),
     "explainers[0].label: is empty; give a display name or drop the key."),
    ("a string for an int option", lambda d: d["datasets"][0]["options"].update(count="many"),
     "datasets[0].options: 'phantom': option 'count' takes an integer, got str 'many'. Change count to an integer."),
    ("a float for an int option", lambda d: d["attacks"].__setitem__(0, {"name": "pgd", "options": {"steps": 2.5}}),
     "attacks[0].options: 'pgd': option 'steps' takes an integer, got float 2.5. Change steps to an integer."),
    ("a string for a float option", lambda d: d["explainers"].__setitem__(0, {"name": "smoothgrad",
                                                                            "options": {"sigma": "0.1"}}),
     "explainers[0].options: 'smoothgrad': option 'sigma' takes a number, got str '0.1'. Change sigma to a number."),
    ("an int for a bool option", lambda d: d["attacks"].__setitem__(0, {"name": "pgd",
                                                                      "options": {"random_start": 1}}),
     "attacks[0].options: 'pgd': option 'random_start' takes true or false, got int 1. Change random_start to "
     "true or false."),
    ("a number for a string option", lambda d: d["explainers"][0].update(options={"normalize": 1}),
     "explainers[0].options: 'gradcam': option 'normalize' takes a string, got int 1. Change normalize to a string."),
    ("nan for a float option", lambda d: d["datasets"][0]["options"].update(malignant_fraction=math.nan),
     "datasets[0].options: 'phantom': option 'malignant_fraction' is nan, which no setting can mean. Give a number."),
    ("a dataset option the runner sets", lambda d: d["datasets"][0]["options"].update(seed=1),
     "datasets[0].options.seed: the runner sets seed itself, from suite.seed; set it there and drop it from "
     "options."),
    ("an attack's eps in its options", lambda d: d["attacks"][0].update(options={"eps": 0.1}),
     "attacks[0].options.eps: the runner sets eps itself, from the entry's eps or eps_grey key; set it there and "
     "drop it from options."),
    ("a model's input_size in its options", lambda d: d["models"][0].update(options={"input_size": 64}),
     "models[0].options.input_size: the runner sets input_size itself, from the entry's input_size key; set it "
     "there and drop it from options."),
    ("an unknown training setting", lambda d: d["models"][0]["train"].update(epoch=3),
     "models[0].train.epoch: unknown training setting. Did you mean 'epochs'? Allowed: epochs, batch_size, lr, "
     "weight_decay, seg_weight, patience, augment, amp, seed, min_delta, monitor."),
    ("a string for a training int", lambda d: d["models"][0]["train"].update(epochs="many"),
     "models[0].train.epochs: expected an integer, got str 'many'."),
    ("an int for a training bool", lambda d: d["models"][0]["train"].update(augment=0),
     "models[0].train.augment: expected true or false, got int 0."),
    ("a training rate of inf", lambda d: d["models"][0]["train"].update(lr=math.inf),
     "models[0].train.lr: inf is not a finite number."),
    ("a training value TrainConfig refuses", lambda d: d["models"][0]["train"].update(epochs=0),
     "models[0].train: TrainConfig.epochs=0 must be at least 1. Fix the setting in the model's train table."),
    ("an unknown monitor", lambda d: d["models"][0]["train"].update(monitor="los"),
     "models[0].train: TrainConfig.monitor='los' is not one of loss, cls_loss, seg_loss, auc, accuracy, dice. "
     "Fix the setting in the model's train table."),
]


@pytest.mark.parametrize(("change", "message"), [pytest.param(c, m, id=w) for w, c, m in REFUSED])
def test_bad_values_are_refused_when_the_suite_is_read(change, message):
    assert refusal(change) == f"v.toml: {message}"


def test_report_refusals(reliability):
    """A row for docs/reliability.md: the values that used to fail every cell, or raise after training."""
    for _, change, message in REFUSED:
        assert refusal(change) == f"v.toml: {message}"
    reliability.row("Bad input", "suite values that used to fail every cell or raise after training: seeds "
                                 "outside 0..2**32-1, cell_timeout nan/inf, threshold nan, eps_grey > 255, "
                                 "options and training settings of the wrong type",
                    "refused when the suite is read, naming the file, the key and the fix; nothing runs",
                    suites_refused=len(REFUSED))


def test_report_repeats(reliability):
    """A row for docs/reliability.md: the same cell listed twice is refused, not computed and counted twice."""
    repeats = [(lambda d: d["attacks"][0].update(eps_grey=[1, 1.0]), "repeats item 0"),
               (lambda d: d["datasets"].append(copy.deepcopy(d["datasets"][0])), "same dataset as datasets[0]"),
               (lambda d: d["explainers"].append({"name": "gradcam"}), "same explainer as explainers[0]")]
    for change, words in repeats:
        assert words in refusal(change)
    reliability.row("Bad input", "a suite listing the same ε, dataset or explainer twice",
                    "refused with the index of both entries and the fix (drop one, or add label = \"...\")",
                    suites_refused=len(repeats))


def test_the_largest_seed_and_other_edges_are_accepted():
    suite = suite_with(lambda d: (d["suite"].update(seed=MAX_SEED, cell_timeout=0.5),
                                  d["datasets"][0].update(split_seed=MAX_SEED),
                                  d["attacks"].append({"name": "pgd", "eps_grey": [0, 255], "options": {"steps": 2,
                                                                                                      "step_size": 1}}),
                                  d.update(thresholds=[{"metric": "adv_accuracy", "op": ">=", "value": 0}])))
    assert (suite.seed, suite.datasets[0].split_seed, suite.cell_timeout) == (MAX_SEED, MAX_SEED, 0.5)
    assert suite.attacks[1].eps == (0.0, 1.0) and suite.attacks[1].options == {"steps": 2, "step_size": 1}
    # The runner seeds attack batches with seed × 100003 + first index: still a valid int64 at the bound.
    assert MAX_SEED * 100_003 + 10**9 < 2**63 - 1
    assert suite.thresholds[0].value == 0.0


def test_options_of_the_right_type_pass_including_ints_for_floats_and_unions():
    suite = suite_with(lambda d: d.update(explainers=[
        {"name": "integrated-gradients", "options": {"baseline": 0, "steps": 8}},  # float | Tensor given an int
        {"name": "smoothgrad", "options": {"sigma": 1, "samples": 4}},
        {"name": "gradcam", "options": {"layer": "layer4"}}]))  # str | None
    assert [e.options for e in suite.explainers] == [{"baseline": 0, "steps": 8}, {"sigma": 1, "samples": 4},
                                                     {"layer": "layer4"}]


def test_the_same_explainer_twice_with_labels_is_two_entries():
    suite = suite_with(lambda d: d.update(explainers=[
        {"name": "saliency", "label": "saliency-grey", "options": {"channels": "grey"}},
        {"name": "saliency", "label": "saliency-max", "options": {"channels": "max"}}]))
    grey, most = suite.explainers
    assert (grey.name, grey.key, grey.options) == ("saliency", "saliency-grey", {"channels": "grey"})
    assert (most.name, most.key, most.options) == ("saliency", "saliency-max", {"channels": "max"})
    assert ExplainerEntry("gradcam").key == "gradcam"


def test_datasets_that_differ_in_one_setting_are_not_repeats():
    suite = suite_with(lambda d: d["datasets"].extend([{"name": "phantom", "options": {"count": 40}, "split_seed": 1},
                                                       {"name": "phantom", "options": {"count": 40}, "part": "val"},
                                                       {"name": "phantom", "options": {"count": 80}}]))
    assert [(e.split_seed, e.part, e.options["count"]) for e in suite.datasets] == [
        (0, "test", 40), (1, "test", 40), (0, "val", 40), (0, "test", 80)]


def test_a_scaled_train_table_is_checked_too(tmp_path):
    text = """
[suite]
name = "s"
[[datasets]]
name = "phantom"
[[models]]
name = "resnet50-mtl"
train = { epochs = 1 }
[[explainers]]
name = "gradcam"
[[attacks]]
name = "fgsm"
[scales.cpu]
train = { epochs = "two" }
"""
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    assert load_suite(path).models[0].train == {"epochs": 1}
    with pytest.raises(SuiteError, match=r"s\.toml: models\[0\]\.train\.epochs: expected an integer, got str 'two'"):
        load_suite(path, scale="cpu")


# A plugin whose annotations name a type only a type checker imports: get_type_hints fails on them,
# so the option's default tells its kind.
def make_vague(*, level: Undefined = 3, mode: Undefined = "mean", flag: Undefined = False,  # noqa: F821
               anything: Undefined = None):  # noqa: F821
    """An explainer whose annotations cannot be evaluated (for the option checks)."""
    return (level, mode, flag, anything)


class VaguePlugin:
    @hookimpl
    def register_explainers(self, register):
        register(ExplainerSpec(name="vague", factory=make_vague))


@pytest.mark.parametrize(("options", "problem"), [
    ({"level": 2.5, "mode": "max", "flag": True, "anything": [1]}, None),  # an int default may take a float
    ({"level": "high"}, "option 'level' takes a number, got str 'high'"),
    ({"mode": 3}, "option 'mode' takes a string, got int 3"),
    ({"flag": 1}, "option 'flag' takes true or false, got int 1"),
])
def test_unevaluable_annotations_fall_back_to_the_defaults_type(options, problem):
    registry = Registry(get_plugin_manager(environ={"ROBUSTBENCH_US_PLUGINS": "phantom,resnet,fgsm"},
                                           extra_plugins=[("vague", VaguePlugin())]))
    data = copy.deepcopy(BASE) | {"explainers": [{"name": "vague", "options": options}]}
    if problem is None:
        assert parse_suite(data, source="v.toml", registry=registry).explainers[0].options == options
    else:
        with pytest.raises(SuiteError, match=f"explainers\\[0\\]\\.options: 'vague': {problem}"):
            parse_suite(data, source="v.toml", registry=registry)


def make_typed(*, norm: Norm = Norm.LINF, folder: Path | None = None, sizes: list[int] | None = None,
               weights: dict[str, float] | None = None):
    """An explainer with enum, path and container options (for the option checks)."""
    return (norm, folder, sizes, weights)


class TypedPlugin:
    @hookimpl
    def register_explainers(self, register):
        register(ExplainerSpec(name="typed", factory=make_typed))


@pytest.mark.parametrize(("options", "problem"), [
    ({"norm": "l2", "folder": "maps/", "sizes": [1, 2], "weights": {"a": 1.0}}, None),  # as TOML writes them
    ({"norm": "LINF"}, None),  # a member's name
    ({"norm": "l3"}, "option 'norm' takes one of 'linf', 'l2', 'none', got str 'l3'"),
    ({"folder": 3}, "option 'folder' takes a path, got int 3"),
    ({"sizes": "1, 2"}, "option 'sizes' takes a list, got str '1, 2'"),
    ({"weights": [1.0]}, r"option 'weights' takes a table, got list \[1.0\]"),
])
def test_enum_path_and_container_options_are_checked_as_toml_writes_them(options, problem):
    registry = Registry(get_plugin_manager(environ={"ROBUSTBENCH_US_PLUGINS": "phantom,resnet,fgsm"},
                                           extra_plugins=[("typed", TypedPlugin())]))
    data = copy.deepcopy(BASE) | {"explainers": [{"name": "typed", "options": options}]}
    if problem is None:
        assert parse_suite(data, source="v.toml", registry=registry).explainers[0].options == options
    else:
        with pytest.raises(SuiteError, match=f"explainers\\[0\\]\\.options: 'typed': {problem}"):
            parse_suite(data, source="v.toml", registry=registry)


def test_every_shipped_suite_still_loads_at_every_scale():
    import tomllib

    loaded = []
    for path in sorted(suites_folder().glob("*.toml")):
        scales = [None, *tomllib.loads(path.read_text(encoding="utf-8")).get("scales", {})]
        for scale in scales:
            loaded.append(load_suite(path, registry=default_registry(), scale=scale).name)
    assert "default" in loaded and "paper-cpu" in loaded and len(loaded) >= 6


SUITE_MODULE = Path(__file__).resolve().parents[1] / "robustbench_us" / "suite.py"


def test_the_suite_module_never_imports_gates():
    """gates imports suite (for Threshold and check_where); the reverse import, even inside a function, is a circle."""
    tree = ast.parse(SUITE_MODULE.read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not any("gates" in name for name in imported if name), sorted(n for n in imported if n)
    code = ("import sys, robustbench_us.suite as s; "
            "s.parse_suite({'suite': {'name': 'x'}, 'datasets': [{'name': 'd'}], 'models': [{'name': 'm'}], "
            "'explainers': [{'name': 'e'}], 'attacks': [{'name': 'a'}], "
            "'thresholds': [{'metric': 'x', 'op': '>=', 'value': 1, 'where': {'attack': 'a'}}]}); "
            "print('robustbench_us.gates' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_gates_uses_the_suites_threshold_and_check():
    from robustbench_us import gates, suite

    assert gates.Threshold is suite.Threshold and gates.check_where is suite.check_where
    assert gates.WHERE_KEYS is suite.WHERE_KEYS
    assert tuple(gates._OPS) == suite.THRESHOLD_OPS
