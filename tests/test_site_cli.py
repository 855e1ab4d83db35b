"""End to end: a toy suite run by the runner, published by ``robustbench-us site``, opened in Chromium."""

from __future__ import annotations

import pytest

from robustbench_us.cli import main
from robustbench_us.plugins import Registry, get_plugin_manager
from robustbench_us.runner import run_suite
from robustbench_us.store import ResultStore
from robustbench_us.suite import parse_suite
from tests.fakes import toy
from tests.test_site import browser  # noqa: F401 - the browser fixture


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    registry = Registry(get_plugin_manager(environ={"ROBUSTBENCH_US_PLUGINS": "gradcam,fgsm"},
                                           extra_plugins=[("toy", toy)]))
    suite = parse_suite({
        "suite": {"name": "toy-site", "seed": 1, "n_images": 8, "batch_size": 4},
        "datasets": [{"name": "toy-squares", "options": {"count": 40}}],
        "models": [{"name": "tiny-cnn", "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "augment": False}}],
        "explainers": [{"name": "gradcam"}],
        "attacks": [{"name": "fgsm", "eps_grey": [1, 8]}],
    }, registry=registry)
    out = tmp_path_factory.mktemp("results")
    assert run_suite(suite, out, registry=registry, progress=False).ok
    return out


def test_site_command_publishes_every_metric_with_intervals(results, tmp_path, capsys):
    site = tmp_path / "site"
    assert main(["site", "--results", str(results), "--out", str(site), "--title", "Toy"]) == 0
    printed = capsys.readouterr().out
    assert f"site: {site / 'index.html'} (2 records)" in printed and "open: file://" in printed
    page = (site / "suites" / "toy-site" / "index.html").read_text()
    for key in ("clean accuracy", "adv accuracy", "flip rate", "clean sensitivity", "adv specificity", "adv auc",
                "centroid px", "centroid frac kept", "spearman kept", "topk intersection", "mass in lesion adv",
                "dice adv", "linf grey", "l2 grey"):
        assert f">{key}</button>" in page, key
    assert page.count('<span class="ci">') >= 2 * 9  # nine prediction metrics with intervals per cell
    assert len(ResultStore(results, "toy-site").read_all()) == 2


def test_site_command_errors_are_one_clean_line(tmp_path, capsys):
    assert main(["site", "--results", str(tmp_path / "nowhere"), "--out", str(tmp_path / "s")]) == 2
    assert "does not exist. Run a suite first" in capsys.readouterr().err


def test_published_toy_site_in_chromium(results, tmp_path, browser):  # noqa: F811
    site = tmp_path / "site"
    assert main(["site", "--results", str(results), "--out", str(site)]) == 0
    page = browser.new_page()
    page.goto((site / "index.html").as_uri())
    page.get_by_role("link", name="toy-site").click()
    page.wait_for_load_state()
    assert page.locator("#leaderboard tbody tr").count() == 2
    page.get_by_role("button", name="ε (grey)", exact=True).click()
    page.get_by_role("button", name="ε (grey)", exact=True).click()
    first = page.locator("#leaderboard tbody tr").first.locator("td").nth(5).inner_text()
    assert first == "8"
    page.select_option("select[data-filter=eps]", "1")
    assert page.locator("#leaderboard tbody tr:not([hidden])").count() == 1
    page.close()
