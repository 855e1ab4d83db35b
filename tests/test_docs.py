"""Documentation and conformance that cannot fall behind the code (in the style of datasette's test_docs.py).

- every hook in ``robustbench_us/hookspecs.py`` has a section in docs/plugins.md naming its
  arguments and every field of its spec, with a runnable example — which runs here;
- every key a suite file accepts is documented in docs/suites.md;
- every plugin name the reference distribution registers runs through the conformance kit
  (``robustbench_us.testing``); a name is only ever skipped for real data it needs.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as metadata
import inspect
import re
import sys
import textwrap
import tomllib
import types
import typing
from pathlib import Path

import numpy as np
import pytest

from robustbench_us import hookspecs, suite
from robustbench_us.plugins import Registry, get_plugin_manager
from robustbench_us.specs import Kind, Spec
from robustbench_us.testing import check_plugin, registered_names

DOCS = Path(__file__).resolve().parents[1] / "docs"
DISTRIBUTION = "robustbench-us"
HOOKS = sorted(name for name, fn in vars(hookspecs).items()
               if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec"))


# ------------------------------------------------------------------------------ docs
def sections(page: str) -> dict[str, str]:
    """Markdown ``##``/``###`` headings (inline code stripped) → the text under them."""
    text = (DOCS / page).read_text(encoding="utf-8")
    parts = re.split(r"^#{2,3} (.+)$", text, flags=re.MULTILINE)
    return {heading.replace("`", "").strip(): body for heading, body in zip(parts[1::2], parts[2::2])}


def hook_spec_type(hook: str) -> type:
    """The spec class a hook's ``register`` callback takes (from its annotation)."""
    register = typing.get_type_hints(getattr(hookspecs, hook))["register"]
    (spec_type,), _ = typing.get_args(register)
    return spec_type


def test_hooks_were_found():
    assert HOOKS == ["register_attacks", "register_datasets", "register_explainers", "register_models"]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_arguments_and_spec_fields(hook):
    docs = sections("plugins.md")
    section = next((body for heading, body in docs.items() if heading.split("(")[0].strip() == hook), None)
    assert section is not None, f"docs/plugins.md has no '### {hook}' section; document the hook there."
    for argument in inspect.signature(getattr(hookspecs, hook)).parameters:
        assert f"`{argument}`" in section, f"docs/plugins.md, {hook}: argument `{argument}` is not described"
    spec_type = hook_spec_type(hook)
    assert spec_type.__name__ in section
    common = {f.name for f in dataclasses.fields(Spec)}  # described once, above the four hooks
    for spec_field in dataclasses.fields(spec_type):
        where = docs["The four hooks"] if spec_field.name in common else section
        assert f"`{spec_field.name}`" in where, (
            f"docs/plugins.md, {hook}: field `{spec_field.name}` of {spec_type.__name__} is not described")
    assert "```python" in section, f"docs/plugins.md, {hook}: give a runnable ```python example"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("hook", HOOKS)
def test_each_hooks_example_runs(hook, monkeypatch, tmp_path, capsys):
    """The first python block of each hook's section is a whole plugin module; run it as ``python file.py`` would."""
    monkeypatch.chdir(tmp_path)
    section = next(body for heading, body in sections("plugins.md").items() if heading.split("(")[0].strip() == hook)
    (code, *_) = python_blocks(section)
    module = types.ModuleType("__main__")
    module.__file__ = str(tmp_path / f"{hook}_example.py")
    monkeypatch.setitem(sys.modules, "__main__", module)
    exec(compile(code, f"docs/plugins.md ({hook})", "exec"), module.__dict__)  # noqa: S102 - our own docs
    assert callable(getattr(module, hook)), f"the {hook} example must define the hook it documents"
    assert "checks passed" in capsys.readouterr().out, f"the {hook} example must end by running the kit"


def test_every_suite_key_is_documented():
    docs = (DOCS / "suites.md").read_text(encoding="utf-8")
    for section, keys in suite._SCHEMA.items():
        for key in keys:
            assert f"`{key}`" in docs, f"docs/suites.md does not describe [{section}] key `{key}`"
    for section in suite._TOP:
        assert section in docs, f"docs/suites.md does not describe the [{section}] section"


def test_every_where_key_of_a_threshold_is_documented():
    from robustbench_us.gates import WHERE_KEYS

    docs = (DOCS / "suites.md").read_text(encoding="utf-8") + (DOCS / "ci.md").read_text(encoding="utf-8")
    for key in WHERE_KEYS:
        assert f"`{key}`" in docs, f"docs/suites.md or docs/ci.md does not describe the where key `{key}`"


def test_every_page_of_the_guide_is_linked_from_the_index():
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for page in ("getting-started.md", "suites.md", "plugins.md", "conventions.md", "ci.md",
                 "leaderboard-reading.md"):
        assert (DOCS / page).is_file(), f"docs/{page} is missing"
        assert f"({page})" in index, f"docs/index.md does not link {page}"


def test_relative_links_in_the_guide_resolve():
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"docs/{page.name} links {target}, which does not exist"


def suite_blocks() -> list:
    """Every ```toml block of the guide that is a whole suite (has [suite] and [[datasets]])."""
    blocks = []
    for page in sorted(DOCS.glob("*.md")):
        for indent, body in re.findall(r"^( *)```toml\n(.*?)^ *```", page.read_text(encoding="utf-8"),
                                       flags=re.MULTILINE | re.DOTALL):
            text = textwrap.dedent(body) if indent else body
            data = tomllib.loads(text)
            if "suite" in data and "datasets" in data:
                blocks.append(pytest.param(data, id=f"{page.name}:{data['suite'].get('name')}"))
    return blocks


@pytest.mark.parametrize("data", suite_blocks())
def test_every_suite_in_the_guide_is_valid(data):
    attack_names = {a["name"] for a in data["attacks"]}
    # The walk-through's attack is the reader's own plugin; everything else must exist here.
    registry = None if "brighten" in attack_names else REGISTRY
    parsed = suite.parse_suite(data, source="docs", registry=registry)
    assert parsed.datasets and parsed.attacks


def test_the_ci_workflow_in_the_docs_is_complete_yaml():
    text = (DOCS / "ci.md").read_text(encoding="utf-8")
    (workflow,) = re.findall(r"^```yaml\n# \.github/workflows/robustness\.yml\n(.*?)^```", text,
                             flags=re.MULTILINE | re.DOTALL)
    for needed in ("actions/checkout", "actions/setup-python", "pip install", "actions/cache",
                   "robustbench-us run", "--junit", "actions/upload-artifact", "leaderboards/"):
        assert needed in workflow, f"the CI workflow in docs/ci.md lacks {needed!r}"
    yaml = pytest.importorskip("yaml")
    parsed = yaml.safe_load(workflow)
    assert "jobs" in parsed and parsed["jobs"]


# ------------------------------------------------------------------------------ conformance of the reference plugins
def reference_plugin_names() -> list[str]:
    dist = metadata.distribution(DISTRIBUTION)
    return sorted(ep.name for ep in dist.entry_points if ep.group == "robustbench_us")


# Exactly the reference distribution's plugins, whatever ROBUSTBENCH_US_* says in this environment.
REGISTRY = Registry(get_plugin_manager(environ={"ROBUSTBENCH_US_PLUGINS": ",".join(reference_plugin_names())}))

# Families are checked through one variant each.
VARIANTS = {"art:*": "art:fgm", "timm:*": "timm:resnet18"}
# Fewer steps or samples keep each check to a second or two; the contracts do not depend on them.
KWARGS: dict[tuple[str, str], dict] = {
    ("attack", "ifgsm"): {"options": {"steps": 3}},
    ("attack", "pgd"): {"options": {"steps": 3}},
    ("attack", "pgd-l2"): {"options": {"steps": 3}},
    ("attack", "topk"): {"options": {"steps": 2}},
    ("attack", "mass-center"): {"options": {"steps": 2}},
    ("attack", "target-map"): {"options": {"steps": 2}},
    ("explainer", "integrated-gradients"): {"options": {"steps": 4}},
    ("explainer", "smoothgrad"): {"options": {"samples": 4}},
    ("model", "resnet50"): {"batch": 2},
    ("model", "resnet50-mtl"): {"batch": 2},
    ("model", "timm:*"): {"batch": 2},
    ("dataset", "phantom"): {"options": {"count": 20}},
}
# Several seconds even when made small: left out of `make test`, run by `make test-slow`.
SLOW = {("attack", "ifgsm-paper"), ("attack", "topk"), ("attack", "mass-center"), ("attack", "target-map"),
        ("model", "resnet50"), ("model", "resnet50-mtl"), ("model", "timm:*"), ("dataset", "busi"),
        ("dataset", "busbra")}


def image_folder(root: Path) -> str:
    """A user's image folder for the ``folder`` dataset: 6 random grey PNGs per class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("benign", "malignant"):
        (root / label).mkdir(parents=True)
        for k in range(6):
            Image.fromarray(rng.integers(0, 256, (40, 48), dtype=np.uint8)).save(root / label / f"{label}-{k}.png")
    return str(root)


# Datasets that read files: where the files come from (real data, or a folder made here).
ROOTS = {"busi": "realdata", "busbra": "realdata", "folder": image_folder}


def conformance_params() -> list:
    params = []
    for kind in Kind:
        for name in registered_names(kind, registry=REGISTRY, distribution=DISTRIBUTION):
            marks = [pytest.mark.slow] if (str(kind), name) in SLOW else []
            if ROOTS.get(name) == "realdata":
                marks.append(pytest.mark.realdata)
            params.append(pytest.param(str(kind), name, id=f"{kind}-{name}", marks=marks))
    return params


PARAMS = conformance_params()


@pytest.mark.parametrize(("kind", "name"), PARAMS)
def test_reference_plugin_conforms(kind, name, request, tmp_path):
    kwargs = dict(KWARGS.get((kind, name), {}))
    target = VARIANTS.get(name, name)
    spec = REGISTRY.get(kind, target)
    if kind == "dataset" and spec.needs_root:
        source = ROOTS[name]
        kwargs["root"] = str(request.getfixturevalue("data_root")) if source == "realdata" else source(tmp_path / "x")
        kwargs.setdefault("max_samples", 24)
    report = check_plugin(kind, target, registry=REGISTRY, **kwargs)
    assert len(report.checks) >= 8


def test_no_registered_name_is_missing_from_the_conformance_run():
    covered = {(p.values[0], p.values[1]) for p in PARAMS}
    for plugin in reference_plugin_names():
        registered = REGISTRY.infos[plugin].registered
        assert registered, f"reference plugin {plugin!r} registers nothing"
        for kind, names in registered.items():
            for name in names:
                assert (kind, name) in covered, f"{kind} {name!r} (plugin {plugin!r}) is not in the conformance run"


def test_the_conformance_tables_name_only_real_plugins():
    known = {(str(kind), name) for kind in Kind for name in REGISTRY.names(kind)}
    for table, keys in (("KWARGS", KWARGS), ("SLOW", SLOW)):
        stale = sorted(set(keys) - known)
        assert not stale, f"{table} names plugins that no longer exist: {stale}"
    families = {name for _, name in known if name.endswith(":*")}
    assert families == set(VARIANTS), f"every family needs a variant in VARIANTS: {sorted(families)}"
    needs_root = {name for name in REGISTRY.names(Kind.DATASET) if REGISTRY.get(Kind.DATASET, name).needs_root}
    assert needs_root == set(ROOTS), f"every dataset that needs a root needs an entry in ROOTS: {sorted(needs_root)}"
