"""The runner on toy plugins: one record per cell, resumable, faults recorded, real numbers."""

from __future__ import annotations

import json

import pytest
import torch

from robustbench_us.errors import StaleResultsError
from robustbench_us.plugins import Registry, get_plugin_manager
from robustbench_us.records import Status
from robustbench_us.runner import run_suite
from robustbench_us.suite import parse_suite
from tests.fakes import toy

ENV = {"ROBUSTBENCH_US_PLUGINS": "gradcam,fgsm"}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(get_plugin_manager(environ=ENV, extra_plugins=[("toy", toy)]))


def suite_of(registry, attacks, name="toy-suite", n_images=8, explainers=("gradcam",), **head):
    data = {
        "suite": {"name": name, "seed": 1, "n_images": n_images, "batch_size": 4} | head,
        "datasets": [{"name": "toy-squares", "options": {"count": 40}}],
        "models": [{"name": "tiny-cnn", "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "augment": False}}],
        "explainers": [{"name": e} for e in explainers],
        "attacks": attacks,
    }
    return parse_suite(data, registry=registry)


def test_records_per_cell_and_resume(tmp_path, registry):
    suite = suite_of(registry, [{"name": "fgsm", "eps": [0.0, 8 / 255]}])
    first = run_suite(suite, tmp_path, registry=registry, progress=False)
    assert len(first.written) == 2 and first.skipped == 0 and first.ok
    records = [json.loads(p.read_text()) for p in first.written]
    by_eps = {r["config"]["eps"]: r for r in records}
    zero = by_eps[0.0]["metrics"]
    # ε = 0 changes nothing: no flips, the same accuracy, a heatmap that does not move.
    assert zero["flip_rate"] == 0.0
    assert zero["adv_accuracy"] == zero["clean_accuracy"]
    assert zero["centroid_px"] == pytest.approx(0.0, abs=1e-4)
    assert zero["linf"] == 0.0
    assert by_eps[8 / 255]["metrics"]["linf"] == pytest.approx(8 / 255, abs=1e-6)
    prov = records[0]["provenance"]
    assert prov["dataset_manifest"] == toy.ToyDataset(40, 32, 1).manifest_hash()
    assert prov["plugins"] == {"dataset": "toy", "model": "toy", "explainer": "gradcam", "attack": "fgsm"}
    assert prov["checkpoint_sha256"] and prov["torch"]
    assert records[0]["config"]["n_images"] == 8
    big = by_eps[8 / 255]
    assert big["figures"], "an ok cell carries the study's panels"
    for figure in big["figures"]:
        png = tmp_path / "toy-suite" / figure
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The model trained inside the suite gets a card like `robustbench-us train` writes.
    (card_path,) = (tmp_path / "toy-suite" / "checkpoints").glob("*.json")
    card = json.loads(card_path.read_text())
    assert card["device"] == "cpu" and card["torch_threads"] == torch.get_num_threads() and card["epochs_run"] == 1 and [r["epoch"] for r in card["history"]] == [1]
    assert card["created"].endswith("+00:00") and card["sha256"] == prov["checkpoint_sha256"]
    second = run_suite(suite, tmp_path, registry=registry, progress=False)
    assert second.written == [] and second.skipped == 2


def test_a_raising_plugin_fails_its_cell_and_the_run_goes_on(tmp_path, registry, reliability):
    suite = suite_of(registry, [{"name": "raising", "eps": 0.01}, {"name": "fgsm", "eps": 0.01}])
    summary = run_suite(suite, tmp_path, registry=registry, progress=False)
    statuses = {json.loads(p.read_text())["config"]["attack"]: json.loads(p.read_text()) for p in summary.written}
    assert statuses["fgsm"]["status"] == Status.OK
    failed = statuses["raising"]
    assert failed["status"] == Status.FAILED
    assert "plugin 'toy' raised ValueError: boom from the broken attack" in failed["error"]
    assert "Traceback" in failed["error"]
    assert len(summary.failed) == 1
    reliability.row("Faults", "an attack plugin raises", "cell recorded failed with plugin name, error and traceback; "
                    "other cells finished; run exits non-zero", cells_ok=1, cells_failed=len(summary.failed))


def test_an_attack_over_its_budget_is_invalid(tmp_path, registry, reliability):
    suite = suite_of(registry, [{"name": "over-budget", "eps": 0.01}])
    summary = run_suite(suite, tmp_path, registry=registry, progress=False)
    record = json.loads(summary.written[0].read_text())
    assert record["status"] == Status.INVALID
    assert "broke the contract" in record["error"] and "over-budget" in record["error"]
    assert summary.invalid and summary.ok  # invalid cells are kept off the board but do not fail the run
    reliability.row("Faults", "an attack exceeds its declared budget (3×ε)", "cell recorded invalid with the "
                    "measured size; kept off the leaderboard", cells_invalid=len(summary.invalid))


def test_nan_outputs_and_hangs_fail_their_cells_only(tmp_path, registry, reliability):
    suite = suite_of(registry, [{"name": "nan-attack", "eps": 0.0}, {"name": "hanging", "eps": 0.0},
                                {"name": "fgsm", "eps": 0.01}], explainers=("gradcam", "nan-map"),
                     cell_timeout=2.0, figures=False)
    summary = run_suite(suite, tmp_path, registry=registry, progress=False)
    records = [json.loads(p.read_text()) for p in summary.written]
    by = {(r["config"]["attack"], r["config"]["explainer"]): r for r in records}
    assert "NaN or Inf" in by[("nan-attack", "gradcam")]["error"]
    assert "cell_timeout of 2 s" in by[("hanging", "gradcam")]["error"]
    assert "explainer 'nan-map'" in by[("fgsm", "nan-map")]["error"]
    assert by[("fgsm", "gradcam")]["status"] == Status.OK
    failed = [r for r in records if r["status"] == Status.FAILED]
    assert len(failed) == 5  # nan-attack ×2, hanging ×2, fgsm × nan-map
    reliability.row("Faults", "an attack returns NaN; an explainer returns NaN maps",
                    "those cells recorded failed naming the plugin; the rest finished", cells_failed=3,
                    cells_ok=1)
    reliability.row("Faults", "an attack hangs past cell_timeout (2 s)", "cell recorded failed with the timeout; "
                    "the run went on", cells_failed=2)


def test_segmentation_explainer_is_paired_only_with_segmenting_models():
    from robustbench_us.plugins import default_registry
    from robustbench_us.runner import expand_cells

    reg = default_registry()
    suite = parse_suite({"suite": {"name": "x"}, "datasets": [{"name": "phantom"}],
                         "models": [{"name": "resnet50", "train": {}}, {"name": "resnet50-mtl", "train": {}}],
                         "explainers": [{"name": "gradcam"}, {"name": "segmentation"}],
                         "attacks": [{"name": "fgsm"}]}, registry=reg)
    pairs = [(c.model.name, c.explainer.name) for c in expand_cells(suite, reg)]
    assert pairs == [("resnet50", "gradcam"), ("resnet50-mtl", "gradcam"), ("resnet50-mtl", "segmentation")]


def test_model_labels_give_distinct_cells_and_keep_unlabelled_ids(registry):
    from robustbench_us.runner import expand_cells

    def cells(models):
        suite = parse_suite({"suite": {"name": "toy-suite"},
                             "datasets": [{"name": "toy-squares", "options": {"count": 40}}], "models": models,
                             "explainers": [{"name": "gradcam"}], "attacks": [{"name": "fgsm", "eps_grey": [1, 8]}]},
                            registry=registry)
        return expand_cells(suite, registry)

    # Computed before model labels existed: an entry without a label keeps its cell ids.
    plain = cells([{"name": "tiny-cnn", "train": {"epochs": 1}},
                   {"name": "tiny-cnn", "input_size": 64, "train": {"epochs": 1}}])
    assert [c.cell_id for c in plain] == [
        "toy-squares_tiny-cnn_gradcam_fgsm-all_eps1-8a113533d7", "toy-squares_tiny-cnn_gradcam_fgsm-all_eps8-a273db30a4",
        "toy-squares_tiny-cnn_64_gradcam_fgsm-all_eps1-9981e715d4",
        "toy-squares_tiny-cnn_64_gradcam_fgsm-all_eps8-84e02d9b6f"]
    assert [c.config["model"] for c in plain] == ["tiny-cnn", "tiny-cnn", "tiny-cnn@64", "tiny-cnn@64"]

    labelled = cells([{"name": "tiny-cnn", "train": {"epochs": 1}},
                      {"name": "tiny-cnn", "label": "tiny-cnn+pre", "train": {"epochs": 2}}])
    assert [c.cell_id for c in labelled[:2]] == [c.cell_id for c in plain[:2]]
    assert len({c.cell_id for c in labelled}) == 4
    assert [c.config["model"] for c in labelled] == ["tiny-cnn", "tiny-cnn", "tiny-cnn+pre", "tiny-cnn+pre"]
    assert {c.config["model_name"] for c in labelled} == {"tiny-cnn"}  # the registry name builds the model
    assert labelled[2].cell_id.startswith("toy-squares_tiny-cnn+pre_gradcam_fgsm-all_eps1-")


def test_a_labelled_model_runs_under_its_registry_name_and_records_its_label(tmp_path, registry):
    from robustbench_us.leaderboard import records_frame

    data = {"suite": {"name": "labels", "seed": 1, "n_images": 4, "batch_size": 4, "figures": False},
            "datasets": [{"name": "toy-squares", "options": {"count": 40}}],
            "models": [{"name": "tiny-cnn", "train": {"epochs": 1, "batch_size": 8, "augment": False}},
                       {"name": "tiny-cnn", "label": "tiny-cnn+long",
                        "train": {"epochs": 2, "batch_size": 8, "augment": False}}],
            "explainers": [{"name": "gradcam"}], "attacks": [{"name": "fgsm", "eps_grey": 4}]}
    summary = run_suite(parse_suite(data, registry=registry), tmp_path, registry=registry, progress=False)
    assert summary.ok and len(summary.written) == 2
    records = sorted((json.loads(p.read_text()) for p in summary.written), key=lambda r: r["config"]["model"])
    assert [r["config"]["model"] for r in records] == ["tiny-cnn", "tiny-cnn+long"]
    assert all(r["status"] == Status.OK for r in records)
    assert records[1]["provenance"]["checkpoint"] != records[0]["provenance"]["checkpoint"]
    assert "__tiny-cnn+long-" in records[1]["provenance"]["checkpoint"]
    assert sorted(records_frame(records)["model"]) == ["tiny-cnn", "tiny-cnn+long"]


def test_figures_only_at_the_listed_grey_levels(tmp_path, registry):
    suite = suite_of(registry, [{"name": "fgsm", "eps_grey": [4, 8, 16]}], name="some-figures", figures=[4, 16])
    summary = run_suite(suite, tmp_path, registry=registry, progress=False)
    assert summary.ok and len(summary.written) == 3
    by_grey = {round(r["config"]["eps_grey"]): r for r in (json.loads(p.read_text()) for p in summary.written)}
    assert by_grey[4]["figures"] and by_grey[16]["figures"]
    assert by_grey[8]["figures"] == []
    folders = {p.name for p in (tmp_path / "some-figures" / "figures").iterdir()}
    assert folders == {by_grey[4]["cell_id"], by_grey[16]["cell_id"]}
    for grey in (4, 16):
        for figure in by_grey[grey]["figures"]:
            assert (tmp_path / "some-figures" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _drop_one_record(summary) -> list[str]:
    """Delete one written record (so the next run has work in the group); the others' contents."""
    summary.written[0].unlink()
    return sorted(p.read_text() for p in summary.written[1:])


def test_new_cells_on_changed_data_are_refused_and_nothing_is_lost(tmp_path, registry, monkeypatch):
    suite = suite_of(registry, [{"name": "fgsm", "eps": [0.0, 8 / 255, 16 / 255]}])
    first = run_suite(suite, tmp_path, registry=registry, progress=False)
    kept = _drop_one_record(first)
    # Same dataset name and options, other files: every cell id is the same, the manifest is not.
    monkeypatch.setattr(toy.ToyDataset, "manifest_hash", lambda self: "f" * 64)
    with pytest.raises(StaleResultsError, match=r"The data of dataset 'toy-squares' changed.*dataset_manifest was "
                                                r".*it is ffffffffffff… now.*--results DIR"):
        run_suite(suite, tmp_path, registry=registry, progress=False)
    records = sorted(p.read_text() for p in (tmp_path / "toy-suite" / "records").glob("*.json"))
    assert records == kept
    monkeypatch.undo()
    again = run_suite(suite, tmp_path, registry=registry, progress=False)
    assert len(again.written) == 1 and again.skipped == 2


def test_new_cells_on_changed_weights_are_refused(tmp_path, registry):
    from robustbench_us.checkpoints import load_checkpoint, save_checkpoint

    suite = suite_of(registry, [{"name": "fgsm", "eps": [0.0, 8 / 255]}])
    first = run_suite(suite, tmp_path, registry=registry, progress=False)
    _drop_one_record(first)
    (cached,) = (tmp_path / "toy-suite" / "checkpoints").glob("*.safetensors")
    model = registry.create("model", "tiny-cnn", input_size=32)
    card = load_checkpoint(model, cached.with_suffix(""))
    with torch.no_grad():
        next(model.parameters()).add_(0.01)  # a retrained model: other weights under the same config
    save_checkpoint(model, cached.with_suffix(""), {k: v for k, v in card.items() if k != "sha256"})
    with pytest.raises(StaleResultsError, match=r"The weights of model 'tiny-cnn' changed.*checkpoint_sha256"):
        run_suite(suite, tmp_path, registry=registry, progress=False)


def test_records_carry_per_image_outcomes_that_agree_with_their_metrics(tmp_path, registry):
    suite = suite_of(registry, [{"name": "fgsm", "eps": [8 / 255]}], explainers=("gradcam",))
    (path,) = run_suite(suite, tmp_path, registry=registry, progress=False).written
    record = json.loads(path.read_text())
    table, m = record["per_image"], record["metrics"]
    n = int(m["n_images"])
    assert all(len(values) == n for values in table.values()) and len(set(table["id"])) == n
    flips = [a != b for a, b in zip(table["pred_clean"], table["pred_adv"])]
    assert m["flip_rate"] == pytest.approx(sum(flips) / n)
    assert m["clean_accuracy"] == pytest.approx(sum(p == y for p, y in zip(table["pred_clean"], table["label"])) / n)
    defined = [c for c in table["centroid_px"] if c is not None]  # null: a map without a centre (all zero)
    assert m["centroid_px"] == pytest.approx(sum(defined) / len(defined), abs=1e-5)
    kept = [c for c, f in zip(table["centroid_px"], flips) if not f and c is not None]
    if kept:
        assert m["centroid_px_kept"] == pytest.approx(sum(kept) / len(kept), abs=1e-5)
    assert all((p >= 0.5) == (c == 1) for p, c in zip(table["p_malignant_clean"], table["pred_clean"]))
