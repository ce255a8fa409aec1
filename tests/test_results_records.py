"""The "Skipped records" section of report.md and report.html (ecgbench.results.records)."""

from __future__ import annotations

from types import SimpleNamespace

from ecgbench.results.records import skipped_lines, skipped_records, skipped_records_html, skipped_records_markdown

SKIPPED = {
    "flat": {"count": 7, "records": ["A1", "A2", "A3", "A4", "A5", "A6", "A7"]},
    "nan": {"count": 1, "records": ["B<1>"]},
}


def _cell(dataset: str, skipped: dict | None, status: str = "done"):
    metrics = {"data": {"dataset": dataset, "skipped": skipped}} if skipped is not None else {}
    return SimpleNamespace(dataset=dataset, status=status, metrics=metrics)


def _results(*cells):
    return SimpleNamespace(cells=list(cells))


def test_each_dataset_once_with_counts_reasons_and_first_names():
    results = _results(_cell("cinc2017", SKIPPED), _cell("cinc2017", SKIPPED), _cell("synthetic", {}), _cell("cinc2017", None, "failed"))
    assert skipped_records(results) == {"cinc2017": SKIPPED}
    assert skipped_lines(SKIPPED) == [
        "7 flat (signal is constant (lead off or empty)): A1, A2, A3, A4, A5 and 2 more",
        "1 nan (signal holds NaN or infinite samples): B<1>",
    ]
    md = skipped_records_markdown(results)
    assert md[0] == "## Skipped records"
    assert "- cinc2017: 8 record(s)" in md
    assert "  - 7 flat (signal is constant (lead off or empty)): A1, A2, A3, A4, A5 and 2 more" in md
    page = "\n".join(skipped_records_html(results))
    assert "<h2>Skipped records</h2>" in page and "cinc2017: 8 record(s)" in page and "B&lt;1&gt;" in page


def test_no_section_when_nothing_was_skipped():
    results = _results(_cell("cinc2017", {}), _cell("synthetic", None))
    assert skipped_records_markdown(results) == [] and skipped_records_html(results) == []


def test_markdown_and_html_reports_carry_the_section(tmp_path):
    from test_reporters import CELLS, make_store

    from ecgbench_plugins.reporters.html import HtmlReporter
    from ecgbench_plugins.reporters.markdown import MarkdownReporter

    pipeline, seed, status, metrics, error = CELLS[0]
    cells = [(pipeline, seed, status, {**metrics, "data": {**metrics["data"], "skipped": SKIPPED}}, error), *CELLS[1:]]
    store, run_id = make_store(tmp_path, cells)
    results = store.run_results(run_id)
    [md] = MarkdownReporter().write(results, tmp_path / "out")
    text = md.read_text()
    assert "## Skipped records" in text and "- synthetic: 8 record(s)" in text
    assert text.index("## Skipped records") < text.index("## Columns")
    page, _ = HtmlReporter().write(results, tmp_path / "out")
    assert "<h2>Skipped records</h2>" in page.read_text()
    (tmp_path / "plain").mkdir()
    plain, run_plain = make_store(tmp_path / "plain", CELLS)
    [md_plain] = MarkdownReporter().write(plain.run_results(run_plain), tmp_path / "plain-out")
    assert "Skipped records" not in md_plain.read_text()
