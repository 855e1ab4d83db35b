"""The published site: files, escaping and validation; then driven in a real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from robustbench_us import figures
from robustbench_us.errors import RecordError, RobustBenchError
from robustbench_us.records import Record, Status
from robustbench_us.site import MARKER, publish_site

EVIL = "<script>alert(1)</script>"
MODELS = ("resnet50", EVIL)
EPS_GREY = (1.0, 4.0)


def _record(model: str, attack: str, eps_grey: float, acc: float, *, status: Status = Status.OK,
            figs: list[str] | None = None) -> dict:
    cell_id = f"busi_{'evil' if model == EVIL else model}_gradcam_{attack}-all_eps{eps_grey:g}-0123456789"
    metrics = {} if status != Status.OK else {
        "clean_accuracy": 0.9, "clean_accuracy_ci_low": 0.85, "clean_accuracy_ci_high": 0.95,
        "adv_accuracy": acc, "adv_accuracy_ci_low": acc - 0.1, "adv_accuracy_ci_high": acc + 0.1,
        "flip_rate": 0.9 - acc, "centroid_frac": eps_grey / 100, "centroid_frac_kept": eps_grey / 200,
        "clean_sensitivity": float("nan"), "linf_grey": eps_grey}
    return Record(suite="demo", cell_id=cell_id, status=status,
                  config={"dataset": "busi", "model": model, "explainer": "gradcam", "attack": attack,
                          "eps": eps_grey / 255, "eps_grey": eps_grey, "attack_options": {}, "n_images": 8,
                          "seed": 0, "image_size": 16, "region": "all"},
                  metrics=metrics, timing={"attack_seconds": 0.1}, provenance={"device": "cpu"},
                  error=None if status == Status.OK else f"plugin raised {EVIL}", figures=figs or []).to_dict()


def _cell_figures(results: Path, *, seed: int, size: int) -> tuple[list[Path], list[str]]:
    """The study's panels for one cell of suite "demo" (paths written, and as a record lists them)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 3, size, size, generator=g)
    maps = torch.rand(3, size, size, generator=g)
    written = figures.write_cell_figures(results / "demo" / "figures" / "cell0", x, (x + 1 / 255).clamp(0, 1), maps,
                                         maps.flip(-1), torch.tensor([[2.0, 0], [0, 2], [2, 0]]),
                                         torch.tensor([[2.0, 0], [2, 0], [0, 2]]), ["i0", "i1", "i2"])
    return written, [p.relative_to(results / "demo").as_posix() for p in written]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A published site of 8 ok cells (one with real figures), one failed, and a second suite."""
    results = tmp_path_factory.mktemp("results")
    _, figs = _cell_figures(results, seed=0, size=16)
    records, acc = [], 0.8
    for model in MODELS:
        for attack in ("fgsm", "ifgsm"):
            for eps in EPS_GREY:
                records.append(_record(model, attack, eps, acc, figs=figs if not records else None))
                acc -= 0.07
    records.append(_record("resnet50", "pgd", 8.0, 0.0, status=Status.FAILED))
    other = _record("resnet50", "fgsm", 1.0, 0.5) | {"suite": "second"}
    other.pop("integrity")
    records.append(Record(**{k: v for k, v in other.items() if k not in ("schema_version",)}).to_dict())
    out = tmp_path_factory.mktemp("publish") / "site"
    index = publish_site(records, out, title="Test board", results_dir=results)
    assert index == out / "index.html"
    return out


def test_site_files(site):
    assert (site / MARKER).is_file()
    assert {p.name for p in (site / "static").iterdir()} == {"site.css", "site.js"}
    index = (site / "index.html").read_text()
    assert 'href="suites/demo/index.html"' in index and 'href="suites/second/index.html"' in index
    page = (site / "suites" / "demo" / "index.html").read_text()
    assert page.count("<tr data-model=") == 8
    assert "0.800 <span class=\"ci\">[0.70, 0.90]</span>" in page
    records = sorted((site / "suites" / "demo" / "records").glob("*.json"))
    assert len(records) == 9
    assert json.loads(records[0].read_text())["suite"] == "demo"
    assert len(list((site / "suites" / "demo" / "figures").rglob("*.png"))) == 2
    assert len(list((site / "suites" / "demo" / "sweeps").glob("*.png"))) == 2
    # Nothing is fetched from the network.
    for html in site.rglob("*.html"):
        text = html.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text


def test_webp_figures_are_smaller_and_linked(tmp_path):
    """--figure-format webp: every figure re-encoded (decodable, same size in pixels), links point at it."""
    from PIL import Image

    results = tmp_path / "results"
    written, figs = _cell_figures(results, seed=1, size=32)
    rec = _record("resnet50", "fgsm", 1.0, 0.5, figs=figs)
    publish_site([rec], tmp_path / "site", title="t", results_dir=results, figure_format="webp")
    out = tmp_path / "site" / "suites" / "demo"
    webps = sorted((out / "figures").rglob("*.webp"))
    assert len(webps) == len(written) == 2 and not list((out / "figures").rglob("*.png"))
    for png, webp in zip(sorted(written), webps):
        with Image.open(png) as a, Image.open(webp) as b:
            assert b.format == "WEBP" and a.size == b.size
        assert webp.stat().st_size < png.stat().st_size
    page = (out / "index.html").read_text()
    assert all(f'href="figures/{w.parent.name}/{w.name}"' in page for w in webps)
    with pytest.raises(RobustBenchError, match="figure format 'gif' is not one of png, webp"):
        publish_site([rec], tmp_path / "site2", results_dir=results, figure_format="gif")


def test_republishing_from_the_sites_own_records_keeps_their_figures(tmp_path):
    """A fresh checkout has the site's records but not the run's PNGs: publishing them again, with a new
    suite's records and figures from a results folder, keeps each unchanged record's published figures."""
    first_results, second_results = tmp_path / "run1", tmp_path / "run2"
    _, figs = _cell_figures(first_results, seed=2, size=32)
    old = _record("resnet50", "fgsm", 1.0, 0.5, figs=figs)
    changed = _record("resnet50", "fgsm", 4.0, 0.4, figs=figs)
    out = tmp_path / "site"
    publish_site([old, changed], out, title="t", results_dir=first_results, figure_format="webp")
    published = {p.relative_to(out): p.read_bytes() for p in (out / "suites" / "demo" / "figures").rglob("*.webp")}
    assert len(published) == 4

    _, new_figs = _cell_figures(second_results, seed=3, size=32)  # a new suite, run since
    new = _record("resnet50", "ifgsm", 1.0, 0.1, figs=[f.replace("demo", "new") for f in new_figs]) | {"suite": "new"}
    shutil.move(second_results / "demo", second_results / "new")  # the results folder holds only the new suite
    new = Record(**{k: v for k, v in new.items() if k not in ("schema_version", "integrity")}).to_dict()
    on_site = [json.loads(p.read_text()) for p in sorted((out / "suites" / "demo" / "records").glob("*.json"))]
    rerun = _record("resnet50", "fgsm", 4.0, 0.3, figs=figs)  # same cell, other numbers: its figures are stale
    assert rerun["cell_id"] == changed["cell_id"] and rerun["integrity"] != changed["integrity"]
    records = [r for r in on_site if r["cell_id"] != changed["cell_id"]] + [rerun, new]
    publish_site(records, out, title="t", results_dir=second_results, figure_format="webp")

    kept = {p.relative_to(out): p.read_bytes() for p in (out / "suites" / "demo" / "figures").rglob("*.webp")}
    assert kept == {k: v for k, v in published.items() if old["cell_id"] in str(k)}  # byte for byte, not re-encoded
    page = (out / "suites" / "demo" / "index.html").read_text()
    assert all(f'href="{k.relative_to("suites/demo").as_posix()}"' in page for k in kept)
    assert len(list((out / "suites" / "new" / "figures").rglob("*.webp"))) == 2
    # The re-measured cell's old figures are not carried over: listed unlinked until its own are published.
    assert "2 figure(s) named by records were not found" in page


def test_plugin_text_is_escaped_in_html(site):
    page = (site / "suites" / "demo" / "index.html").read_text()
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert EVIL not in (site / "index.html").read_text()


def test_publishing_again_replaces_the_site(site, tmp_path):
    out = tmp_path / "again"
    publish_site([_record("resnet50", "fgsm", 1.0, 0.5)], out, title="t")
    (out / "suites" / "stale.txt").write_text("x")
    publish_site([_record("resnet50", "fgsm", 1.0, 0.5)], out, title="t")
    assert not (out / "suites" / "stale.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RobustBenchError, match="not a site written by robustbench-us"):
        publish_site([], tmp_path, title="t")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_invalid_record_is_refused(tmp_path):
    bad = _record("resnet50", "fgsm", 1.0, 0.5)
    bad["metrics"]["adv_accuracy"] = "0.5"
    with pytest.raises(RecordError, match=r"record demo/busi_resnet50.*metrics/adv_accuracy"):
        publish_site([bad], tmp_path / "site", title="t")
    assert not (tmp_path / "site").exists()


def test_empty_site(tmp_path):
    index = publish_site([], tmp_path / "site", title="t")
    assert "No records yet" in index.read_text()


# ------------------------------------------------------------------ browser
CHROMIUM = os.environ.get("ROBUSTBENCH_US_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM}: install the Debian package (apt-get install -y chromium) "
                    "or set ROBUSTBENCH_US_CHROMIUM to its executable")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed "
                                   "(pip install playwright; its own browser download is not needed)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, site):
    context = browser.new_context()
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    pg.problems = []
    pg.on("console", lambda m: m.type in ("error", "warning") and pg.problems.append(m.text))
    pg.on("pageerror", lambda e: pg.problems.append(str(e)))
    pg.on("dialog", lambda d: (pg.problems.append(f"dialog: {d.message}"), d.dismiss()))
    pg.goto((site / "suites" / "demo" / "index.html").as_uri())
    yield pg
    context.close()


def _column(page, label: str) -> list[str]:
    index = page.eval_on_selector_all("#leaderboard thead th", f"ths => ths.findIndex(th => th.textContent.trim() === {label!r})")
    assert index >= 0, label
    return page.eval_on_selector_all(
        "#leaderboard tbody tr:not([hidden])", f"rows => rows.map(r => r.cells[{index}].getAttribute('data-value'))")


def test_table_renders_and_sorts(page):
    assert page.locator("#leaderboard tbody tr").count() == 8
    assert page.locator("#leaderboard").get_attribute("class") == "board interactive"  # the script ran
    original = [float(v) for v in _column(page, "adv accuracy")]
    page.get_by_role("button", name="adv accuracy", exact=True).click()
    ascending = [float(v) for v in _column(page, "adv accuracy")]
    assert ascending == sorted(original) and ascending != original
    page.get_by_role("button", name="adv accuracy", exact=True).click()
    assert [float(v) for v in _column(page, "adv accuracy")] == sorted(original, reverse=True)
    assert page.locator("th[aria-sort=descending]").inner_text().startswith("adv accuracy")
    assert not page.problems


def test_filters_hide_rows(page):
    page.select_option("select[data-filter=model]", "resnet50")
    assert page.locator("#leaderboard tbody tr:not([hidden])").count() == 4
    page.select_option("select[data-filter=eps]", "4")
    assert page.locator("#leaderboard tbody tr:not([hidden])").count() == 2
    assert page.inner_text("#row-count") == "2 of 8 cells"
    assert set(_column(page, "ε (grey)")) == {"4.0"}
    page.select_option("select[data-filter=model]", "")
    page.select_option("select[data-filter=eps]", "")
    page.fill("input[data-filter-text]", "ifgsm")
    assert page.locator("#leaderboard tbody tr:not([hidden])").count() == 4
    assert not page.problems


def test_figure_and_record_links_open(page, site):
    link = page.locator("a.figure").first
    assert link.inner_text() == "label kept map moved"
    link.click()
    page.wait_for_load_state()
    assert page.url.endswith("/label_kept_map_moved.png")
    assert page.evaluate("document.images[0].naturalWidth") > 600
    page.go_back()
    page.locator("a.record").first.click()
    page.wait_for_load_state()
    assert json.loads(page.inner_text("body"))["status"] == "ok"
    page.go_back()
    assert page.locator(".sweeps img").count() == 2
    # Sweep images load lazily: bring each into view, then wait for it (a broken image never completes).
    for i in range(page.locator(".sweeps img").count()):
        page.locator(".sweeps img").nth(i).scroll_into_view_if_needed()
    page.wait_for_function("Array.from(document.querySelectorAll('.sweeps img'))"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    assert page.evaluate("Array.from(document.querySelectorAll('.sweeps img')).every(i => i.naturalWidth > 0)")
    assert not page.problems


def test_script_named_plugin_shows_as_text(page, reliability):
    page.select_option("select[data-filter=model]", EVIL)
    visible = page.locator("#leaderboard tbody tr:not([hidden])")
    assert visible.count() == 4
    assert visible.first.locator("td").nth(1).inner_text() == EVIL
    assert page.locator("#leaderboard script").count() == 0
    assert page.locator("#not-measured summary").first.inner_text() == f"plugin raised {EVIL}"
    assert not page.problems  # no alert dialog, no CSP or script errors
    reliability.row("Security", "a plugin named `<script>alert(1)</script>` (and an error text holding it)",
                    "shown as text in the site, in real Chromium; no script ran, no dialog", rows_shown=visible.count())


def test_index_lists_suites(browser, site):
    pg = browser.new_page()
    pg.goto((site / "index.html").as_uri())
    assert pg.locator("#suites tbody tr").count() == 2
    pg.get_by_role("link", name="demo").click()
    pg.wait_for_load_state()
    assert pg.url.endswith("/suites/demo/index.html")
    pg.close()


def test_suite_notes_and_grid_are_shown(tmp_path):
    """The settings a suite ran at and how much of its grid the records cover are on the site itself."""
    records = [_record("resnet50", "fgsm", e, 0.5) for e in EPS_GREY]
    about = {"demo": {"notes": "REDUCED SCALE: 64 px <b>", "grid": len(records) + 3}}
    publish_site(records, tmp_path / "site", title="t", about=about)
    page = (tmp_path / "site" / "suites" / "demo" / "index.html").read_text()
    assert "REDUCED SCALE: 64 px &lt;b&gt;" in page
    assert f"{len(records)} cells measured of the {len(records) + 3} in this suite's grid" in page
    assert "3 not run yet" in page
    assert f"{len(records)} ok of {len(records) + 3}" in (tmp_path / "site" / "index.html").read_text()
    publish_site(records, tmp_path / "plain", title="t")  # without it: no notes, no grid claim
    plain = (tmp_path / "plain" / "suites" / "demo" / "index.html").read_text()
    assert "Settings." not in plain and "not run yet" not in plain


def test_site_command_reads_notes_and_grid_from_the_suite_files():
    from robustbench_us.cli.site_cmd import suite_about

    full, cpu = suite_about("paper"), suite_about("paper-cpu")
    # 4 attacks × 4 ε × (3 explainers for resnet50 and the ConvNeXt, 4 with the multi-task mask) = 160.
    assert full["grid"] == cpu["grid"] == 4 * 4 * (3 + 4 + 3)
    assert full["notes"].startswith("Full scale") and cpu["notes"].startswith("REDUCED CPU SCALE")
    assert suite_about("no-such-suite") is None and suite_about("paper-nosuchscale") is None


def test_the_site_says_which_label_was_attacked_and_whether_images_were_rounded(tmp_path):
    plain = _record("resnet50", "fgsm", 1.0, 0.5)
    predicted = Record(**{k: v for k, v in plain.items() if k not in ("integrity", "status")},
                       status=Status.OK).to_dict()
    predicted["config"] = predicted["config"] | {"labels": "predicted", "quantize": "uint8"}
    predicted["cell_id"] = predicted["cell_id"].replace("fgsm", "fgsm-pred")
    from robustbench_us.records import integrity_hash

    predicted["integrity"] = integrity_hash(predicted)
    publish_site([plain, predicted], tmp_path / "site", title="t")
    html = (tmp_path / "site" / "suites" / "demo" / "index.html").read_text()
    assert "attacked label" in html and "rounding" in html
    # The record that left them at their defaults shows the defaults, not a blank.
    assert html.count(">predicted<") == 1 and html.count(">true<") == 1
    assert html.count(">uint8<") == 1 and html.count(">none<") == 1
    # A suite whose records set neither shows neither column.
    publish_site([plain], tmp_path / "site2", title="t")
    assert "attacked label" not in (tmp_path / "site2" / "suites" / "demo" / "index.html").read_text()
