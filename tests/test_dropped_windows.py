"""Windows a dataset drops by design: counted by reason, carried into each cell's metrics and every report."""

from __future__ import annotations

import csv
import json
import textwrap

import pytest

from ecgbench import hookimpl
from ecgbench.config.suite import load_suite
from ecgbench.data.problems import RecordLog
from ecgbench.registry import build_registry
from ecgbench.results.records import dropped_lines, dropped_windows, dropped_windows_markdown
from ecgbench.run.runner import run_suite
from ecgbench.run.store import ResultStore
from ecgbench.testing import TinyDataset, TinyNetFamily
from ecgbench_plugins.reporters.html import HtmlReporter
from ecgbench_plugins.reporters.markdown import MarkdownReporter
from ecgbench_plugins.reporters.tabular import CsvReporter, JsonReporter

DROPPED = {"before_first_rhythm": 5, "rhythm_change": 2}


class DroppingDataset(TinyDataset):
    """The tiny dataset, reporting pieces it left out as a rhythm dataset would."""

    name = "dropping"

    def records(self, log=None):
        log = log or RecordLog()
        log.drop("before_first_rhythm", 5, "rec_a")
        log.drop("rhythm_change", 2, "rec_b")
        yield from super().records(log)


class Plugins:
    @hookimpl
    def ecgbench_register_datasets(self, register):
        register(DroppingDataset)

    @hookimpl
    def ecgbench_register_models(self, register):
        register(TinyNetFamily)


SUITE = """
name: dropped-test
data: {fs_hz: 100, window_s: 4, split: {val: 0.25, test: 0.25}}
training: {epochs: 1, batch_size: 8, num_threads: 1, patience: 0}
measure: {bootstrap_resamples: 20, latency_repeats: 2, latency_warmup: 1, input_s: 4}
matrix:
  datasets: [dropping]
  models: [tinynet]
  compressors: [dense]
  devices: [nrf52840]
"""


def test_record_log_counts_drops_by_reason_and_recording():
    log = RecordLog()
    log.drop("rhythm_change", 2, "r1")
    log.drop("before_first_rhythm", 1, "r2")
    log.drop("rhythm_change", 0, "r3")  # nothing dropped: no count, r3 not remembered
    log.drop("rhythm_change")
    assert log.dropped_by_reason() == {"before_first_rhythm": 1, "rhythm_change": 3}
    assert list(log.dropped_from) == ["r1", "r2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from ecgbench.plugin_manager import make_plugin_manager

    tmp_path = tmp_path_factory.mktemp("dropped")
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(Plugins(), name="dropping-plugins")
    registry = build_registry(pm)
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(SUITE))
    store = ResultStore(tmp_path / "home" / "results.sqlite")
    summary = run_suite(load_suite(path, registry), registry, pm, store, tmp_path / "home", progress=False)
    assert summary.done == 1
    return store.run_results(summary.run_id), tmp_path


def test_cell_metrics_carry_the_dropped_counts(run):
    results, _ = run
    [cell] = results.cells
    assert cell.metrics["data"]["dropped"] == DROPPED
    assert cell.metrics["data"]["dropped_total"] == 7
    assert dropped_windows(results) == {"dropping": DROPPED}


def test_every_report_format_shows_the_dropped_counts(run):
    results, tmp_path = run
    out = tmp_path / "reports"
    [md] = MarkdownReporter().write(results, out)
    text = md.read_text()
    assert "## Dropped windows" in text and "- dropping: 7 window(s)" in text
    assert "  - 5 before_first_rhythm (before the record's first rhythm annotation (set the dataset's default_rhythm to keep it))" in text
    assert "  - 2 rhythm_change (spans a change of rhythm)" in text
    page, _ = HtmlReporter().write(results, out)  # and plotly.min.js
    html = page.read_text()
    assert "<h2>Dropped windows</h2>" in html and "dropping: 7 window(s)" in html and "<li>2 rhythm_change (spans a change of rhythm)</li>" in html
    [csv_path] = CsvReporter().write(results, out)
    [row] = list(csv.DictReader(csv_path.open()))
    assert (row["data.dropped.before_first_rhythm"], row["data.dropped.rhythm_change"], row["data.dropped_total"]) == ("5", "2", "7")
    [json_path] = JsonReporter().write(results, out)
    document = json.loads(json_path.read_text())
    assert document["cells"][0]["metrics"]["data"]["dropped"] == DROPPED
    assert document["rows"][0]["data.dropped_total"] == 7
    [declared] = [m for m in document["metrics"] if m["path"] == "data.dropped_total"]
    assert declared["label"] == "dropped windows" and "data.dropped.<reason>" in declared["definition"]


def test_no_section_when_nothing_was_dropped_and_unknown_reasons_are_shown_plain():
    from types import SimpleNamespace

    results = SimpleNamespace(cells=[SimpleNamespace(dataset="cinc2017", metrics={"data": {"dropped": {}}}), SimpleNamespace(dataset="x", metrics={})])
    assert dropped_windows(results) == {} and dropped_windows_markdown(results) == []
    assert dropped_lines({"too_noisy": 3}) == ["3 too_noisy"]
