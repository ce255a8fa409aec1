"""report.html of a tiny real run, rendered in headless Chromium (the OS package) through Playwright.

Skipped, with the reason, when the ``playwright`` package (``pip install -e '.[dev]'``)
or a Chromium binary (``apt-get install chromium``; or set ``ECGBENCH_CHROMIUM``) is missing.
Playwright drives the system browser: no browser download.
"""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SUITE = """
name: browser
data: {fs_hz: 100, window_s: 5, split: {val: 0.25, test: 0.25}}
training: {epochs: 1, batch_size: 8, num_threads: 1, patience: 0}
measure: {bootstrap_resamples: 20, latency_repeats: 2, latency_warmup: 1, input_s: 10}
matrix:
  datasets: [synthetic: {n_records: 40, max_duration_s: 20}]
  models: [dscnn: {width: 4, blocks: 3}]
  compressors:
    - dense
    - magnitude: {sparsity: 0.8, finetune_epochs: 1}
    - int8_static
    - {label: lth, steps: [lth: {rate: 0.5, rounds: 2, rewind: iteration, rewind_epochs: 1, train_epochs: 1}]}
  devices: [nrf52840, host]
"""


def chromium_path() -> str | None:
    """The system Chromium: ``ECGBENCH_CHROMIUM``, else the first of chromium, chromium-browser, google-chrome on PATH."""
    configured = os.environ.get("ECGBENCH_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    return next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """report.html (and plotly.min.js beside it) of a four-pipeline, two-device run on synthetic data."""
    from ecgbench.config.suite import load_suite
    from ecgbench.plugin_manager import make_plugin_manager
    from ecgbench.registry import build_registry
    from ecgbench.run.runner import run_suite
    from ecgbench.run.store import ResultStore
    from ecgbench_plugins.reporters.html import HtmlReporter

    tmp = tmp_path_factory.mktemp("browser")
    pm = make_plugin_manager(load_entrypoints=False)
    registry = build_registry(pm)
    (tmp / "suite.yaml").write_text(textwrap.dedent(SUITE))
    store = ResultStore(tmp / "home" / "results.sqlite")
    summary = run_suite(load_suite(tmp / "suite.yaml", registry), registry, pm, store, tmp / "home", progress=False)
    assert summary.ok, summary
    page, _ = HtmlReporter().write(store.run_results(summary.run_id), tmp / "report")
    return page


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set ECGBENCH_CHROMIUM to its path)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, report):
    """The report loaded in a fresh page; console errors and uncaught exceptions are collected in ``page.errors``."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(10_000)
    page.errors = []
    page.on("console", lambda message: page.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto(report.as_uri())
    page.wait_for_function("document.querySelectorAll('.plotly-graph-div .main-svg').length >= 3")
    yield page
    page.close()


def test_the_page_renders_every_plot_without_errors(page):
    assert page.evaluate("typeof window.Plotly") == "object"
    for div in ("size-plot", "latency-plot", "lottery-plot"):
        assert page.locator(f"#{div} .main-svg").first.is_visible()
        assert page.evaluate(f"document.getElementById('{div}').data.length") > 0
    assert page.errors == []


def test_hovering_a_point_names_its_pipeline(page):
    point = page.locator("#size-plot .scatterlayer .trace .points path").last
    point.scroll_into_view_if_needed()
    box = point.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2 - 5, box["y"] + box["height"] / 2)  # the plot's drag layer covers the points
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("#size-plot .hoverlayer .hovertext")
    text = page.locator("#size-plot .hoverlayer .hovertext").first.text_content()
    assert any(name in text for name in ("dense", "magnitude", "int8_static", "lth"))
    assert page.errors == []


def shown_traces(page) -> list[str]:
    return page.evaluate(
        "document.getElementById('latency-plot').data.filter(t => t.visible === true).map(t => t.name).filter(n => n !== 'Pareto front').sort()"
    )


def test_the_device_selector_switches_the_latency_plot(page):
    title = "document.getElementById('latency-plot').layout.xaxis.title.text"
    assert "nrf52840" in page.evaluate(title)
    before = page.evaluate("document.getElementById('latency-plot').data.map(t => t.visible === true)")
    assert sorted(shown_traces(page)) == ["dense", "int8_static", "lth", "magnitude-s0.8-fe1"]
    page.locator("#latency-plot .updatemenu-header-group").click()
    page.locator("#latency-plot .updatemenu-dropdown-button", has_text="device: host").click()
    page.wait_for_function(f"{title}.includes('host')")
    after = page.evaluate("document.getElementById('latency-plot').data.map(t => t.visible === true)")
    assert after != before and not any(a and b for a, b in zip(before, after))  # another set of traces, none shared
    assert sorted(shown_traces(page)) == ["dense", "int8_static", "lth", "magnitude-s0.8-fe1"]
    assert "host" in page.locator("#latency-plot .gtitle").text_content()
    assert page.errors == []


def column_texts(page, header: str) -> list[str]:
    index = page.evaluate(
        "h => Array.from(document.querySelectorAll('#results-table thead th')).findIndex(th => th.textContent.trim() === h)", header
    )
    assert index >= 0, header
    return page.evaluate(f"Array.from(document.querySelectorAll('#results-table tbody tr')).map(r => r.cells[{index}].textContent)")


def test_clicking_a_header_sorts_the_table(page):
    header = page.locator("#results-table thead th button", has_text="compression ratio")
    header.click()
    ascending = [float(t.rstrip("x")) for t in column_texts(page, "compression ratio")]
    assert ascending == sorted(ascending) and ascending[0] < ascending[-1]
    assert header.locator("xpath=..").get_attribute("aria-sort") == "ascending"
    header.click()
    assert [float(t.rstrip("x")) for t in column_texts(page, "compression ratio")] == sorted(ascending, reverse=True)
    page.locator("#results-table thead th button", has_text="pipeline").click()
    assert column_texts(page, "pipeline") == sorted(column_texts(page, "pipeline"))
    assert page.errors == []


def test_checkboxes_show_and_hide_columns(page):
    header = page.locator("#results-table thead th", has_text="measured host ms")
    box = page.locator("#column-chooser label", has_text="measured host ms").locator("input")
    assert header.is_visible() and box.is_checked()
    box.uncheck()
    assert not header.is_visible()
    hidden = page.locator("#results-table thead th", has_text="validation challenge F1")
    assert not hidden.is_visible()  # outside the summary: hidden at first
    page.locator("#column-chooser button[data-show=all]").click()
    assert hidden.is_visible() and header.is_visible()
    page.locator("#column-chooser button[data-show=key]").click()
    assert not header.is_visible() and page.locator("#results-table thead th", has_text="nrf52840 fits").is_visible()
    assert page.errors == []


def test_the_wide_table_scrolls_inside_its_box_not_the_page(page):
    page.locator("#column-chooser button[data-show=all]").click()
    sizes = page.evaluate(
        "(() => { const w = document.querySelector('.table-wrap'); return [w.scrollWidth, w.clientWidth, document.documentElement.scrollWidth, window.innerWidth]; })()"
    )
    table_width, box_width, page_width, window_width = sizes
    assert table_width > box_width  # every column does not fit: the box scrolls
    assert page_width <= window_width  # the page itself does not
