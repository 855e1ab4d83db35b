"""Property-based fuzzing of the suite parser: a malformed file is a clean SuiteError, an accepted one is sound.

"Sound" means every invariant the loader promises holds for the Suite it returns: seeds
in range, finite ε without repeats, no cell listed twice, plugin options of the types
their factories declare, training settings that TrainConfig takes. A value that breaks
one of them must be refused when the file is read, not fail every cell later.
"""

from __future__ import annotations

import inspect
import math
import tomllib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robustbench_us.errors import SuiteError
from robustbench_us.plugins import default_registry
from robustbench_us.specs import Kind
from robustbench_us.suite import MAX_SEED, THRESHOLD_OPS, Suite, load_suite, parse_suite
from robustbench_us.training import TrainConfig

VALID = {
    "suite": {"name": "fuzz", "seed": 0, "n_images": 4, "cell_timeout": 60},
    "datasets": [{"name": "phantom", "split_seed": 0, "options": {"count": 40}}],
    "models": [{"name": "resnet50-mtl", "input_size": 64, "train": {"epochs": 1, "lr": 1e-4}}],
    "explainers": [{"name": "gradcam"}, {"name": "saliency", "options": {"channels": "grey"}}],
    "attacks": [{"name": "fgsm", "eps": [0.01]}, {"name": "pgd", "eps_grey": [1, 2], "options": {"steps": 3}}],
    "thresholds": [{"metric": "adv_accuracy", "op": ">=", "value": 0.5}],
}

# Besides ordinary values: negative and huge integers (past 2**32 and int64), NaN and ±inf, numbers as text.
tricky = st.one_of(st.sampled_from([-5, -1, 2**32, 2**63 - 1, 2**64, math.nan, math.inf, -math.inf, "many", "1"]),
                   st.integers(-2**65, 2**65))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), tricky)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)
KEYS = ["suite", "datasets", "models", "explainers", "attacks", "thresholds", "scales", "name", "eps", "eps_grey",
        "options", "train", "input_size", "region", "seed", "n_images", "batch_size", "device", "metric", "op",
        "value", "where", "cell_timeout", "part", "checkpoint", "split_seed", "label", "count", "steps", "epochs",
        "lr", "channels", "figures"]


def mutate(data, path, value):
    """Replace the item at ``path`` (a list of keys/indices, resolved modulo sizes) by ``value``."""
    if not path:
        return value
    if isinstance(data, dict) and data:
        keys = sorted(data)
        key = path[0] if isinstance(path[0], str) else keys[path[0] % len(keys)]
        return {**data, key: mutate(data.get(key), path[1:], value)}
    if isinstance(data, list) and data:
        i = path[0] % len(data) if isinstance(path[0], int) else 0
        return data[:i] + [mutate(data[i], path[1:], value)] + data[i + 1:]
    return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fits_default(value, default) -> bool:
    """An option value of the kind its factory's default has (the oracle, independent of the loader's checks)."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return _is_int(value)
    if isinstance(default, float):
        return (_is_int(value) or isinstance(value, float)) and not math.isnan(value)
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def assert_sound(suite: Suite, registry=None) -> None:
    """Every invariant an accepted suite promises, checked on the parsed values (plugin options with a registry)."""
    assert isinstance(suite, Suite)
    assert _is_int(suite.seed) and 0 <= suite.seed <= MAX_SEED
    assert (suite.seed * 100_003 + 10**9) < 2**63  # an attack batch's generator seed fits in int64
    assert _is_int(suite.n_images) and suite.n_images >= 0
    assert _is_int(suite.batch_size) and suite.batch_size >= 1
    assert suite.cell_timeout is None or (math.isfinite(suite.cell_timeout) and suite.cell_timeout > 0)
    for d in suite.datasets:
        assert _is_int(d.split_seed) and 0 <= d.split_seed <= MAX_SEED and d.part in ("train", "val", "test")
        assert not {"root", "image_size", "seed"} & set(d.options)
    assert all(a != b for i, a in enumerate(suite.datasets) for b in suite.datasets[i + 1:])
    assert len({e.key for e in suite.explainers}) == len(suite.explainers)
    assert len({m.key for m in suite.models}) == len(suite.models)
    for a in suite.attacks:
        assert all(math.isfinite(e) and 0.0 <= e <= 1.0 for e in a.eps)
        greys = sorted(e * 255.0 for e in a.eps)
        assert all(later - earlier > 1e-6 for earlier, later in zip(greys, greys[1:]))
        assert "eps" not in a.options
    for t in suite.thresholds:
        assert t.op in THRESHOLD_OPS and math.isfinite(t.value)
    for kind, items in ((Kind.DATASET, suite.datasets), (Kind.MODEL, suite.models),
                        (Kind.EXPLAINER, suite.explainers), (Kind.ATTACK, suite.attacks)):
        for item in items if registry is not None else ():
            parameters = inspect.signature(registry.get(kind, item.name).factory).parameters
            for key, value in item.options.items():
                assert key in parameters
                assert _fits_default(value, parameters[key].default), (item.name, key, value)
    for m in suite.models:
        if m.train is not None:
            config = TrainConfig(**({"seed": suite.seed} | m.train))  # what the runner builds: it must not raise
            assert 0 <= config.seed <= MAX_SEED and math.isfinite(config.lr) and config.lr > 0


def test_the_fuzzing_base_is_valid():
    suite = parse_suite(VALID, source="fuzz.toml", registry=default_registry())
    assert_sound(suite, default_registry())
    assert suite.attacks[1].eps == (1 / 255, 2 / 255) and suite.explainers[1].options == {"channels": "grey"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.lists(st.one_of(st.integers(0, 5), st.sampled_from(KEYS)), max_size=4), value=values)
def test_mutated_suites_are_refused_cleanly_or_sound(path, value):
    data = mutate(VALID, path, value)
    try:
        suite = parse_suite(data, source="fuzz.toml", registry=default_registry())
    except SuiteError as exc:
        assert str(exc).startswith("fuzz.toml: "), str(exc)  # names the file
    else:
        assert_sound(suite, default_registry())


# Each numeric setting a suite has, given a hostile value: refused at load, or sound.
NUMERIC = [("suite", "seed"), ("suite", "cell_timeout"), ("suite", "n_images"), ("suite", "batch_size"),
           ("datasets", 0, "split_seed"), ("datasets", 0, "options", "count"), ("models", 0, "train", "epochs"),
           ("models", 0, "train", "lr"), ("models", 0, "train", "seed"), ("attacks", 0, "eps"),
           ("attacks", 1, "eps_grey"), ("attacks", 1, "options", "steps"), ("thresholds", 0, "value")]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=st.sampled_from(NUMERIC), value=st.one_of(tricky, st.floats(allow_nan=True), st.booleans(),
                                                       st.text(max_size=4), st.lists(tricky, max_size=3)))
def test_hostile_numbers_are_refused_at_load_or_sound(where, value):
    data = mutate(VALID, list(where), value)
    try:
        suite = parse_suite(data, source="fuzz.toml", registry=default_registry())
    except SuiteError as exc:
        assert str(exc).startswith("fuzz.toml: ") and where[-1] in str(exc), str(exc)  # names the key
    else:
        assert_sound(suite, default_registry())


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_arbitrary_text_files_raise_suite_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "s.toml"
    path.write_text(text, encoding="utf-8")
    try:
        suite = load_suite(path, registry=default_registry())
    except SuiteError as exc:
        assert str(path) in str(exc)
    else:
        assert_sound(suite, default_registry())


@settings(max_examples=100, deadline=None)
@given(blob=st.binary(max_size=200))
def test_arbitrary_bytes_raise_suite_error(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("fuzz") / "s.toml"
    path.write_bytes(blob)
    try:
        suite = load_suite(path)
    except SuiteError as exc:
        assert str(path) in str(exc)
    else:
        assert_sound(suite)


def test_report_fuzzing(reliability):
    """A row for docs/reliability.md: how many malformed suites the fuzzers tried (hypothesis settings above)."""
    assert tomllib  # the parser under test is tomllib + parse_suite
    reliability.row("Bad input", "suite files: mutated tables, hostile numbers (negative, huge, NaN, inf, text), "
                                 "arbitrary text, arbitrary bytes (hypothesis)",
                    "each refused with SuiteError naming the file and key, or accepted with every invariant "
                    "holding; never a traceback", examples=300 + 300 + 200 + 100)
