"""A third-party plugin adds a metric: it is measured per cell and shows in every report and in compare."""

from __future__ import annotations

import copy
import csv
import json
import math
import textwrap

import numpy as np
import pytest

from ecgbench import CLASSES, hookimpl
from ecgbench.config.suite import load_suite
from ecgbench.measure.schema import Compared, Gate, Measurement, Metric
from ecgbench.registry import build_registry
from ecgbench.run.runner import run_suite
from ecgbench.run.store import ResultStore
from ecgbench_plugins.reporters.html import HtmlReporter
from ecgbench_plugins.reporters.markdown import MarkdownReporter
from ecgbench_plugins.reporters.tabular import CsvReporter, JsonReporter

PATH = "plugin_metrics.af_sensitivity_at_90_specificity"
LABEL = "AF sens @90% spec"
DEFINITION = "share of AF test records detected when the AF probability threshold keeps 90 % of non-AF records negative."


def af_sensitivity_at_specificity(m: Measurement, specificity: float = 0.9) -> float | None:
    """Sensitivity for AF at the lowest threshold whose specificity is at least ``specificity``."""
    af = m.classes.index("A")
    scores = m.test_probabilities[:, af]
    positive = m.test_labels == af
    negatives = np.sort(scores[~positive])
    if not positive.any() or not len(negatives):
        return None
    threshold = negatives[math.ceil(specificity * len(negatives)) - 1]  # records scoring above it are called AF
    return float((scores[positive] > threshold).mean())


class AfSensitivityPlugin:
    @hookimpl
    def ecgbench_register_metrics(self, register):
        register(
            Metric(
                PATH,
                LABEL,
                DEFINITION,
                unit="share",
                compare=Compared("AF sens", ".3f", Gate(2.0, "points", 100.0, "AF sensitivity")),
                compute=af_sensitivity_at_specificity,
            )
        )


def test_the_metric_by_hand():
    # AF scores of 4 AF records and 10 others; 90 % specificity: the 9th lowest non-AF score (0.9) is the threshold.
    labels = np.array([1, 1, 1, 1] + [0] * 10)
    af = np.array([0.95, 0.91, 0.5, 0.99] + [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.97])
    probabilities = np.zeros((14, 4))
    probabilities[:, 1] = af
    probabilities[:, 0] = 1 - af
    m = Measurement(CLASSES, labels, probabilities, labels[:0], probabilities[:0], {})
    assert af_sensitivity_at_specificity(m) == pytest.approx(3 / 4)  # 0.95, 0.91, 0.99 > 0.9
    assert af_sensitivity_at_specificity(Measurement(CLASSES, labels[4:], probabilities[4:], labels[:0], probabilities[:0], {})) is None


SUITE = """
name: metric-plugin
data: {fs_hz: 100, window_s: 5, split: {val: 0.25, test: 0.25}}
training: {epochs: 1, batch_size: 8, num_threads: 1, patience: 0}
measure: {bootstrap_resamples: 20, latency_repeats: 2, latency_warmup: 1, input_s: 10}
matrix:
  datasets: [synthetic: {n_records: 40, max_duration_s: 20}]
  models: [dscnn: {width: 4, blocks: 3}]
  compressors: [dense, {label: half, steps: [magnitude: {sparsity: 0.5, finetune_epochs: 1}]}]
  devices: [nrf52840]
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny suite run with the plugin registered on a fresh plugin manager; its results and JSON report."""
    from ecgbench.plugin_manager import make_plugin_manager

    tmp = tmp_path_factory.mktemp("metric-plugin")
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(AfSensitivityPlugin(), name="af-sensitivity")
    registry = build_registry(pm)
    assert registry.providers["metrics"][PATH] == "af-sensitivity"
    (tmp / "suite.yaml").write_text(textwrap.dedent(SUITE))
    store = ResultStore(tmp / "home" / "results.sqlite")
    summary = run_suite(load_suite(tmp / "suite.yaml", registry), registry, pm, store, tmp / "home", progress=False)
    assert summary.ok, summary
    results = store.run_results(summary.run_id)
    for reporter in (MarkdownReporter.from_params({"columns": "all"}), CsvReporter(), JsonReporter(), HtmlReporter()):
        reporter.write(results, tmp / "report")
    return results, tmp / "report"


def test_each_cell_stores_the_value_and_its_declaration(run):
    results, _ = run
    for cell in results.cells:
        value = cell.metrics["plugin_metrics"]["af_sensitivity_at_90_specificity"]
        assert value is None or 0.0 <= value <= 1.0
        assert cell.metrics["metric_declarations"][PATH]["label"] == LABEL


def test_the_metric_appears_in_every_report(run):
    results, out = run
    values = {c.pipeline: c.metrics["plugin_metrics"]["af_sensitivity_at_90_specificity"] for c in results.cells}
    shown = {p: f"{v:.3f}" if v is not None else "-" for p, v in values.items()}

    md = (out / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| pipeline"))
    assert header.rstrip(" |").endswith(LABEL)  # the last column, after the built-in ones
    for pipeline, text in shown.items():
        assert any(line.startswith(f"| {pipeline} |") and line.endswith(f"| {text} |") for line in md.splitlines())
    assert f"- **{LABEL}**: {DEFINITION}" in md

    key_only = MarkdownReporter().render(results, out)  # the default key columns leave it to the other reports
    assert LABEL not in next(line for line in key_only.splitlines() if line.startswith("| pipeline"))

    page = (out / "report.html").read_text()
    assert f'<button type="button">{LABEL}</button></th>' in page and f"<dt>{LABEL}</dt>" in page

    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["pipeline"]: r[PATH] for r in rows} == {p: repr(v) if v is not None else "" for p, v in values.items()}
    assert not any(column.startswith("metric_declarations") for column in rows[0])

    document = json.loads((out / "results.json").read_text())
    assert {r["pipeline"]: r[PATH] for r in document["rows"]} == values
    assert any(m["path"] == PATH and m["label"] == LABEL and m["compare"]["gate"]["threshold"] == 2.0 for m in document["metrics"])


def _compare(argv: list[str], capsys) -> tuple[int, str]:
    from ecgbench.cli.main import main

    code = main(["compare", *argv])
    return code, capsys.readouterr().out


def test_compare_shows_and_gates_the_metric(run, tmp_path, capsys):
    _, out = run
    base = out / "results.json"
    document = json.loads(base.read_text())
    worse = copy.deepcopy(document)
    for cell in worse["cells"]:
        cell["metrics"]["plugin_metrics"]["af_sensitivity_at_90_specificity"] = -1.0  # far below any real value
    current = tmp_path / "current.json"
    current.write_text(json.dumps(worse))

    code, text = _compare([str(base), str(base)], capsys)
    headers = [line for line in text.splitlines() if line.startswith(("pipeline ", "cell "))]
    assert code == 0 and any(" AF sens " in line + " " for line in headers) and "each figure: base -> current" in text
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "AF sensitivity drop <= 2 pts" in text

    code, text = _compare([str(base), str(current)], capsys)
    assert code == 1 and "regression: AF sensitivity dropped" in text and "pts > 2" in text

    code, text = _compare([str(base), str(current), "--json"], capsys)
    cells = json.loads(text)["cells"]
    assert all(c["metrics"][PATH]["current"] == -1.0 and c["verdict"] == "regression" for c in cells)
    assert json.loads(text)["thresholds"][PATH] == 2.0

    # A threshold wide enough lets it pass (the change is at most 200 points: from 1 to -1).
    assert _compare([str(base), str(current), "--threshold", f"{PATH}=201"], capsys)[0] == 0


def test_eval_computes_and_prints_the_metric(plugin_manager):
    from ecgbench.cli.eval import summary_text
    from ecgbench.measure.model_eval import plugin_metrics

    plugin_manager.register(AfSensitivityPlugin(), name="af-sensitivity")
    labels = np.array([1, 1, 1, 1] + [0] * 10)
    logits = np.zeros((14, 4))
    logits[:, 1] = [3.0, 2.5, 0.0, 4.0] + [-3, -2, -1, -0.5, 0, 0.5, 1, 1.5, 2, 3.5]  # AF probability orders like these
    values, declarations = plugin_metrics(build_registry(plugin_manager), labels, logits, {"storage_bytes": 10})
    assert values == {"af_sensitivity_at_90_specificity": pytest.approx(3 / 4)}  # 3.0, 2.5, 4.0 above the 9th non-AF (2.0)
    result = {
        "model": "m.onnx", "n_records": 14, "data": "d", "dataset": "cinc2017", "challenge_f1": 0.5, "challenge_f1_ci": [0.4, 0.6],
        "ci_level": 0.95, "f1": {"N": 0.5}, "macro_f1": 0.5, "accuracy": 0.5, "storage_bytes": 10, "storage_format": "onnx",
        "nonzero_params": 1, "total_params": 2, "plugin_metrics": values, "metric_declarations": declarations,
    }
    assert summary_text(result).splitlines()[-1] == f"{LABEL}: 0.750"
