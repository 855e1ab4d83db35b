"""The study's protocol in the runner: predicted-label attacks, 8-bit storable perturbations, Fig. 2's subset."""

from __future__ import annotations

import json

import pytest
import torch

from robustbench_us.errors import SuiteError
from robustbench_us.leaderboard import records_frame
from robustbench_us.plugins import Registry, get_plugin_manager
from robustbench_us.runner import expand_cells, quantize_uint8, run_suite
from robustbench_us.suite import parse_suite
from tests.fakes import recording, toy

ENV = {"ROBUSTBENCH_US_PLUGINS": "gradcam,fgsm,iterative"}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(get_plugin_manager(environ=ENV, extra_plugins=[("toy", toy), ("recording", recording)]))


def suite_of(registry, attacks, *, name="protocol", **head):
    data = {
        "suite": {"name": name, "seed": 1, "n_images": 8, "batch_size": 8, "figures": False} | head,
        "datasets": [{"name": "toy-squares", "options": {"count": 40}}],
        "models": [{"name": "tiny-cnn", "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "augment": False}}],
        "explainers": [{"name": "gradcam"}],
        "attacks": attacks,
    }
    return parse_suite(data, registry=registry)


def read(paths):
    return {json.loads(p.read_text())["config"].get("labels", "true"): json.loads(p.read_text()) for p in paths}


def test_predicted_labels_hand_the_attack_the_models_own_clean_prediction(tmp_path, registry):
    recording.SEEN.clear()
    suite = suite_of(registry, [{"name": "recording-fgsm", "eps_grey": 4, "label": "true-y"},
                                {"name": "recording-fgsm", "eps_grey": 4, "label": "pred-y", "labels": "predicted"}])
    summary = run_suite(suite, tmp_path, registry=registry, progress=False)
    records = {json.loads(p.read_text())["config"]["attack"]: json.loads(p.read_text()) for p in summary.written}
    (_, y_true), (_, y_pred) = recording.SEEN
    table = records["true-y"]["per_image"]
    assert y_true.tolist() == table["label"]
    assert y_pred.tolist() == table["pred_clean"]
    # The toy model gets some images wrong, so the two runs were handed different labels.
    assert table["label"] != table["pred_clean"]
    assert records["pred-y"]["config"]["labels"] == "predicted"
    assert "labels" not in records["true-y"]["config"]  # the default keeps earlier records' cell ids
    # The tables say which label each attack was given.
    frame = records_frame(list(records.values()))
    assert dict(zip(frame["attack"], frame["labels"])) == {"true-y": "true", "pred-y": "predicted"}
    assert "quantize" not in frame.columns


def test_the_default_settings_keep_the_cell_ids_of_earlier_records(registry):
    plain = suite_of(registry, [{"name": "fgsm", "eps_grey": 1}])
    explicit = suite_of(registry, [{"name": "fgsm", "eps_grey": 1, "labels": "true"}], quantize="none")
    assert [c.cell_id for c in expand_cells(plain, registry)] == [c.cell_id for c in expand_cells(explicit, registry)]
    other = suite_of(registry, [{"name": "fgsm", "eps_grey": 1, "labels": "predicted"}])
    assert expand_cells(other, registry)[0].cell_id != expand_cells(plain, registry)[0].cell_id


def test_quantized_runs_measure_images_an_8_bit_file_can_hold(tmp_path, registry):
    recording.SEEN.clear()
    suite = suite_of(registry, [{"name": "recording-fgsm", "eps_grey": [1, 3]}], quantize="uint8")
    summary = run_suite(suite, tmp_path, registry=registry, progress=False)
    assert summary.ok and not summary.invalid
    # The clean images the attack saw lie on the 8-bit grid.
    for x, _ in recording.SEEN:
        assert torch.equal(x * 255, (x * 255).round())
    by_eps = {round(json.loads(p.read_text())["config"]["eps_grey"]): json.loads(p.read_text())["metrics"]
              for p in summary.written}
    for grey, metrics in by_eps.items():
        # A one-step FGSM moves every pixel by ε unless clipped at 0 or 1; after rounding the largest
        # change is exactly ε in whole grey levels (float32 grid points differ by at most one ulp).
        assert metrics["linf_max_grey"] == pytest.approx(grey, abs=1e-4)
        assert 0.0 <= metrics["flip_rate_unrounded"] <= 1.0
        assert metrics["flips_surviving_rounding"] is None or 0.0 <= metrics["flips_surviving_rounding"] <= 1.0
    record = json.loads(summary.written[0].read_text())
    assert record["config"]["quantize"] == "uint8"
    frame = records_frame([json.loads(p.read_text()) for p in summary.written])
    assert list(frame["quantize"]) == ["uint8", "uint8"] and "labels" not in frame.columns


def test_rounding_to_8_bits_never_leaves_a_whole_grey_level_ball():
    g = torch.Generator().manual_seed(0)
    x = quantize_uint8(torch.rand(64, 3, 8, 8, generator=g))
    for grey in (1, 2, 5):
        delta = (torch.rand(x.shape, generator=g) * 2 - 1) * grey / 255
        x_adv = quantize_uint8((x + delta).clamp(0, 1))
        assert torch.equal(x_adv * 255, (x_adv * 255).round())
        # Both grids points: their difference is a whole number of levels, at most `grey` (one float32 ulp).
        assert float((x_adv - x).abs().max()) * 255 <= grey + 1e-4


@pytest.mark.parametrize(("attacks", "message"), [
    ([{"name": "fgsm", "eps_grey": [0.5, 1]}], "ε = 0.5 grey levels is not a whole number of grey levels"),
    ([{"name": "fgsm", "eps_grey": 1, "labels": "guessed"}], "'guessed' is not one of true, predicted"),
    ([{"name": "pgd-l2", "eps": 0.5}], "rounding to the 8-bit grid can push an L2 perturbation past its ε"),
])
def test_protocol_settings_are_checked_when_the_suite_is_read(registry, attacks, message, reliability):
    with pytest.raises(SuiteError, match=message):
        suite_of(registry, attacks, quantize="uint8")
    reliability.row("Bad input", f"suite with {attacks[0]}", "refused when the suite is read, naming the fix",
                    suites_refused=1)


def test_quantize_takes_only_known_values(registry):
    with pytest.raises(SuiteError, match="'uint16' is not one of none, uint8"):
        suite_of(registry, [{"name": "fgsm", "eps_grey": 1}], quantize="uint16")


def test_a_dataset_that_cannot_load_fails_its_cells_and_the_other_dataset_runs(tmp_path, reliability):
    from robustbench_us.records import Status
    from tests.fakes import bad_dataset

    registry = Registry(get_plugin_manager(environ=ENV, extra_plugins=[("toy", toy), ("bad-data", bad_dataset)]))
    data = {
        "suite": {"name": "two-datasets", "seed": 1, "n_images": 8, "batch_size": 8, "figures": False},
        "datasets": [{"name": "missing-data"}, {"name": "toy-squares", "options": {"count": 40}}],
        "models": [{"name": "tiny-cnn", "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "augment": False}}],
        "explainers": [{"name": "gradcam"}],
        "attacks": [{"name": "fgsm", "eps_grey": [1, 2]}],
    }
    summary = run_suite(parse_suite(data, registry=registry), tmp_path, registry=registry, progress=False)
    records = [json.loads(p.read_text()) for p in summary.written]
    by_dataset = {}
    for r in records:
        by_dataset.setdefault(r["config"]["dataset"], []).append(r)
    assert [r["status"] for r in by_dataset["toy-squares"]] == [Status.OK, Status.OK]
    assert [r["status"] for r in by_dataset["missing-data"]] == [Status.FAILED, Status.FAILED]
    assert all(r["error"].startswith("dataset 'missing-data' (plugin 'bad-data') failed to load: plugin 'bad-data' "
                                     "raised FileNotFoundError: no such folder: /data/not-here")
               for r in by_dataset["missing-data"])
    reliability.row("Faults", "a dataset that cannot be loaded, before a working one",
                    "its cells failed, naming the dataset, plugin and error; the other dataset's cells finished",
                    cells_failed=2, cells_ok=2)
