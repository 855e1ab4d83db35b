"""The shipped default suite, run and published, opened in Chromium (slow: minutes on CPU)."""

from __future__ import annotations

import pytest

from robustbench_us.cli import main
from robustbench_us.metrics import METRIC_DESCRIPTIONS, PREDICTION_KEYS, ROUNDING_KEYS
from tests.test_site import browser  # noqa: F401 - the browser fixture

pytestmark = pytest.mark.slow


def test_default_suite_site(tmp_path, browser):  # noqa: F811
    results, site = tmp_path / "results", tmp_path / "site"
    assert main(["run", "default", "--results", str(results), "--leaderboards", str(tmp_path / "lb"),
                 "--no-progress"]) == 0
    assert main(["site", "default", "--results", str(results), "--out", str(site)]) == 0
    page = browser.new_page()
    page.set_default_timeout(10_000)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((site / "index.html").as_uri())
    page.get_by_role("link", name="default").click()
    page.wait_for_load_state()
    rows = page.locator("#leaderboard tbody tr")
    assert rows.count() >= 2
    headers = page.eval_on_selector_all("#leaderboard thead button.sort", "bs => bs.map(b => b.textContent)")
    # The phantom has masks and the model a segmentation head: every metric is present, but for
    # those only a suite that rounds to 8 bits records (the default suite does not).
    for key in METRIC_DESCRIPTIONS:
        assert (key.replace("_", " ") in headers) is (key not in ROUNDING_KEYS), key
    first = rows.first
    for key in PREDICTION_KEYS:
        index = headers.index(key.replace("_", " "))
        cell = first.locator("td").nth(index)
        if cell.get_attribute("data-value"):
            assert cell.locator(".ci").count() == 1, key
    links = page.locator("a.figure")
    if links.count():
        links.first.click()
        page.wait_for_load_state()
        assert page.evaluate("document.images[0].naturalWidth") > 0
        page.go_back()
    # Sweep images load lazily: bring each into view, then wait for it (a broken image never completes).
    for i in range(page.locator(".sweeps img").count()):
        page.locator(".sweeps img").nth(i).scroll_into_view_if_needed()
    page.wait_for_function("Array.from(document.querySelectorAll('.sweeps img'))"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    assert page.evaluate("Array.from(document.querySelectorAll('.sweeps img')).every(i => i.naturalWidth > 0)")
    assert not errors
    page.close()
