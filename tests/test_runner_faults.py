"""The runner against plugins that break their contracts: each fault fails (or invalidates) its own cells only."""

from __future__ import annotations

import json
import time

import pytest

from robustbench_us.checkpoints import save_checkpoint
from robustbench_us.faults import CellTimeout
from robustbench_us.plugins import Registry, get_plugin_manager
from robustbench_us.records import Status
from robustbench_us.runner import expand_cells, run_suite
from robustbench_us.suite import parse_suite
from tests.fakes import broken, toy
from tests.fakes.tiny import TinyNet

ENV = {"ROBUSTBENCH_US_PLUGINS": "gradcam,fgsm,gradients"}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(get_plugin_manager(environ=ENV, extra_plugins=[("toy", toy), ("broken", broken)]))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """Seeded, untrained TinyNet weights: every model of these tests loads them, so no test trains."""
    path = tmp_path_factory.mktemp("weights") / "tiny"
    save_checkpoint(TinyNet(input_size=32), path, {"architecture": "tiny-cnn"})
    return f"{path}.safetensors"


def make_suite(registry, checkpoint, attacks, *, models=("tiny-cnn",), explainers=(("gradcam", {}, None),),
               name="faults", n_images=8, **head):
    """A toy suite; ``explainers`` are (name, options, label) triples."""
    data = {
        "suite": {"name": name, "seed": 1, "n_images": n_images, "batch_size": 4, "figures": False} | head,
        "datasets": [{"name": "toy-squares", "options": {"count": 40}}],
        "models": [{"name": m, "checkpoint": checkpoint} for m in models],
        "explainers": [{"name": e, "options": o} | ({"label": label} if label else {}) for e, o, label in explainers],
        "attacks": attacks,
    }
    return parse_suite(data, registry=registry)


def records_of(summary) -> list[dict]:
    return [json.loads(p.read_text()) for p in summary.written]


def by_explainer(summary) -> dict[str, dict]:
    return {r["config"]["explainer"]: r for r in records_of(summary)}


# ------------------------------------------------------------ one explainer, two entries
def test_one_explainer_listed_twice_keeps_each_entrys_maps_and_numbers(tmp_path, registry, checkpoint, reliability):
    twice = make_suite(registry, checkpoint, [{"name": "fgsm", "eps_grey": 8}],
                       explainers=(("saliency", {"channels": "grey"}, None),
                                   ("saliency", {"channels": "max"}, "saliency-max")))
    both = by_explainer(run_suite(twice, tmp_path / "both", registry=registry, progress=False))
    assert set(both) == {"saliency", "saliency-max"}
    assert all(r["status"] == Status.OK for r in both.values())
    alone = {}
    for options, label in (({"channels": "grey"}, None), ({"channels": "max"}, "saliency-max")):
        suite = make_suite(registry, checkpoint, [{"name": "fgsm", "eps_grey": 8}],
                           explainers=(("saliency", options, label),))
        alone |= by_explainer(run_suite(suite, tmp_path / f"alone-{options['channels']}", registry=registry,
                                        progress=False))
    for key in ("saliency", "saliency-max"):
        # Each entry's numbers are those it gives when it runs on its own: its own maps, not the other's.
        assert both[key]["metrics"] == alone[key]["metrics"]
        assert both[key]["per_image"] == alone[key]["per_image"]
        assert both[key]["cell_id"] == alone[key]["cell_id"]
    grey, peak = both["saliency"]["metrics"]["spearman"], both["saliency-max"]["metrics"]["spearman"]
    assert abs(grey - peak) > 1e-3, "the two channel reductions give different rank correlations"
    assert both["saliency-max"]["config"]["explainer_name"] == "saliency"
    assert both["saliency-max"]["config"]["explainer_options"] == {"channels": "max"}
    reliability.row("Bad input", "one explainer listed twice with other options (saliency grey / max, labelled)",
                    "each entry measured on its own maps; numbers equal to running it alone",
                    cells=len(both), spearman_grey=round(grey, 4), spearman_max=round(peak, 4))


def test_explainer_labels_name_cells_and_keep_unlabelled_ids(registry):
    suite = parse_suite({"suite": {"name": "toy-suite"},
                         "datasets": [{"name": "toy-squares", "options": {"count": 40}}],
                         "models": [{"name": "tiny-cnn", "train": {"epochs": 1}}],
                         "explainers": [{"name": "gradcam"}, {"name": "gradcam", "label": "gradcam-again"}],
                         "attacks": [{"name": "fgsm", "eps_grey": [1, 8]}]}, registry=registry)
    cells = expand_cells(suite, registry)
    # Computed before explainer labels existed: an entry without a label keeps its cell ids.
    assert [c.cell_id for c in cells[:2]] == ["toy-squares_tiny-cnn_gradcam_fgsm-all_eps1-8a113533d7",
                                              "toy-squares_tiny-cnn_gradcam_fgsm-all_eps8-a273db30a4"]
    assert "explainer_name" not in cells[0].config and cells[0].config["explainer"] == "gradcam"
    assert [c.config["explainer"] for c in cells[2:]] == ["gradcam-again"] * 2
    assert {c.config["explainer_name"] for c in cells[2:]} == {"gradcam"}
    assert cells[2].cell_id.startswith("toy-squares_tiny-cnn_gradcam-again_fgsm-all_eps1-")
    assert len({c.cell_id for c in cells}) == 4


# ------------------------------------------------------------------------- attack budget
def test_the_budget_is_the_cells_eps_not_the_one_the_attack_reports(tmp_path, registry, checkpoint, reliability):
    suite = make_suite(registry, checkpoint, [{"name": "claims-budget", "eps_grey": 1},
                                              {"name": "no-norm", "eps_grey": 1}, {"name": "fgsm", "eps_grey": 1}])
    summary = run_suite(suite, tmp_path, registry=registry, progress=False)
    by_attack = {r["config"]["attack"]: r for r in records_of(summary)}
    claims = by_attack["claims-budget"]
    assert claims["status"] == Status.INVALID
    assert ("over budget in linf: 4 of 4 images exceed eps=0.00392157 (1 grey levels); largest 0.0313726 "
            "(8 grey levels)") in claims["error"]  # per batch of 4
    assert "attack 'claims-budget' (plugin 'broken') broke the contract" in claims["error"]
    # The object says norm "none"; its spec declares linf, and linf is what the cell is measured in.
    assert by_attack["no-norm"]["status"] == Status.INVALID
    assert "over budget in linf" in by_attack["no-norm"]["error"] and "(3 grey levels)" in by_attack["no-norm"]["error"]
    assert by_attack["fgsm"]["status"] == Status.OK
    reliability.row("Faults", "an attack reports eps = 8/255 about itself at a 1-grey cell; an attack object "
                    "declares norm 'none' against its spec's linf",
                    "both cells recorded invalid: budget checked at the cell's ε in the spec's norm",
                    cells_invalid=len(summary.invalid), largest_change_grey=8)


# --------------------------------------------------------------------- explainer maps
def test_bad_maps_fail_only_that_explainers_cells(tmp_path, registry, checkpoint, reliability):
    suite = make_suite(registry, checkpoint, [{"name": "fgsm", "eps_grey": 4}],
                       explainers=(("gradcam", {}, None), ("channel-kept", {}, None), ("half-size", {}, None),
                                   ("signed-map", {}, None)))
    summary = run_suite(suite, tmp_path, registry=registry, progress=False)
    by = by_explainer(summary)
    assert by["gradcam"]["status"] == Status.OK and by["gradcam"]["metrics"]["n_images"] == 8
    assert "explainer 'channel-kept' (plugin 'broken') returned maps of shape (4, 1, 32, 32) on clean images; " \
           "expected (4, 32, 32)" in by["channel-kept"]["error"]
    assert "explainer 'half-size' (plugin 'broken') returned maps of shape (4, 16, 16)" in by["half-size"]["error"]
    assert "explainer 'signed-map' (plugin 'broken')" in by["signed-map"]["error"]
    assert "negative values (min -0.4" in by["signed-map"]["error"]
    assert sorted(summary.failed) == sorted(by[k]["cell_id"] for k in ("channel-kept", "half-size", "signed-map"))
    reliability.row("Bad input", "an explainer returns maps [N, 1, H, W], maps at half resolution, or signed maps",
                    "only that explainer's cells fail, naming explainer, plugin and the shape got and expected; "
                    "the other explainer's cell is ok", cells_failed=len(summary.failed), cells_ok=1)


# ---------------------------------------------------------------------------- models
def test_a_failing_model_fails_its_groups_cells_and_the_run_goes_on(tmp_path, registry, checkpoint, reliability):
    suite = make_suite(registry, checkpoint, [{"name": "fgsm", "eps_grey": [2, 4]}],
                       models=("unbuildable", "eval-raises", "eval-nan", "tiny-cnn"))
    summary = run_suite(suite, tmp_path, registry=registry, progress=False)
    records = records_of(summary)
    by_model: dict[str, list[dict]] = {}
    for r in records:
        by_model.setdefault(r["config"]["model"], []).append(r)
    assert {m: len(rs) for m, rs in by_model.items()} == {"unbuildable": 2, "eval-raises": 2, "eval-nan": 2,
                                                           "tiny-cnn": 2}
    assert all(r["status"] == Status.OK for r in by_model["tiny-cnn"])
    for model, words in (("unbuildable", "OSError: weights server unreachable (fake)"),
                         ("eval-raises", "RuntimeError: boom from the broken model"),
                         ("eval-nan", "NaN or Inf")):
        for r in by_model[model]:
            assert r["status"] == Status.FAILED
            assert f"model {model!r} (plugin 'broken')" in r["error"] and words in r["error"]
    assert len(summary.failed) == 6 and not summary.ok
    reliability.row("Faults", "a model's factory raises; its forward raises; it gives NaN logits",
                    "that model's cells recorded failed naming the model and plugin; the next models ran",
                    cells_failed=len(summary.failed), cells_ok=2)


# --------------------------------------------------------------------------- timeouts
def test_a_slow_explainer_times_out_in_the_clean_pass_and_fails_only_its_cells(tmp_path, registry, checkpoint,
                                                                               reliability):
    suite = make_suite(registry, checkpoint, [{"name": "fgsm", "eps_grey": 4}], n_images=4,
                       explainers=(("gradcam", {}, None), ("slow-map", {}, None)), cell_timeout=1.0)
    start = time.perf_counter()
    summary = run_suite(suite, tmp_path, registry=registry, progress=False)
    seconds = time.perf_counter() - start
    by = by_explainer(summary)
    assert by["gradcam"]["status"] == Status.OK
    assert by["slow-map"]["status"] == Status.FAILED
    assert "explainer 'slow-map' (plugin 'broken') on clean images ran past the suite's cell_timeout of 1 s" \
        in by["slow-map"]["error"]
    assert seconds < broken.Slow.seconds + 3  # interrupted once, not slept through
    reliability.row("Faults", "an explainer slower than cell_timeout (1 s) on the clean images",
                    "its cells recorded failed with the timeout; the other explainer's cells ok",
                    cells_failed=1, cells_ok=1)


def test_an_attack_catching_exception_cannot_swallow_the_timeout(tmp_path, registry, checkpoint, reliability):
    suite = make_suite(registry, checkpoint, [{"name": "swallowing", "eps": 0.0}, {"name": "fgsm", "eps_grey": 4}],
                       n_images=4, cell_timeout=1.0)
    start = time.perf_counter()
    summary = run_suite(suite, tmp_path, registry=registry, progress=False)
    seconds = time.perf_counter() - start
    by_attack = {r["config"]["attack"]: r for r in records_of(summary)}
    assert by_attack["swallowing"]["status"] == Status.FAILED
    assert "CellTimeout: attack 'swallowing' (plugin 'broken') ran past the suite's cell_timeout of 1 s" \
        in by_attack["swallowing"]["error"]
    assert by_attack["fgsm"]["status"] == Status.OK
    assert seconds < broken.Swallowing.seconds + 3
    assert not issubclass(CellTimeout, Exception)
    reliability.row("Faults", "an attack wraps its work in `except Exception` and runs past cell_timeout",
                    "the timeout is not swallowed: cell recorded failed with it; the run went on",
                    cells_failed=1, cells_ok=1)
