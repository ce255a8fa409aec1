"""A suite runs on a plugin's executor, is simulated on a plugin's device profile and written by a plugin's
reporter, while the plugin's lifecycle hooks and logger follow the run (tests/kinds_plugin.py)."""

from __future__ import annotations

import textwrap

import pytest
from kinds_plugin import SLOW_BOARD, KindsPlugin

from ecgbench.config.suite import load_suite
from ecgbench.registry import build_registry
from ecgbench.run.runner import run_suite
from ecgbench.run.store import ResultStore

SUITE = f"""
name: kinds
data: {{fs_hz: 100, window_s: 4, split: {{val: 0.25, test: 0.25}}}}
training: {{epochs: 1, batch_size: 8, num_threads: 1, patience: 0}}
measure: {{bootstrap_resamples: 20, latency_repeats: 2, latency_warmup: 1, input_s: 4}}
matrix:
  datasets: [tiny_records]
  models: [tiny_net]
  compressors: [dense, {{label: half, steps: [magnitude: {{sparsity: 0.5, finetune_epochs: 0}}]}}]
  devices: [nrf52840, {SLOW_BOARD}]
executor: reversed
report: {{formats: [cell_lines]}}
loggers: {{event_log: {{tag: kinds}}}}
"""


@pytest.fixture
def kinds(plugin_manager):
    plugin = KindsPlugin()
    plugin_manager.register(plugin, name="kinds-plugin")
    return plugin, build_registry(plugin_manager)


def test_registrations_come_from_the_plugin(kinds):
    _plugin, registry = kinds
    for kind, name in [("datasets", "tiny_records"), ("models", "tiny_net"), ("devices", SLOW_BOARD), ("loggers", "event_log")]:
        assert registry.providers[kind][name] == "kinds-plugin"
    assert registry.providers["reporters"]["cell_lines"] == "kinds-plugin"
    assert registry.providers["executors"]["reversed"] == "kinds-plugin"
    nrf, slow = registry.get("devices", "nrf52840"), registry.get("devices", SLOW_BOARD)
    assert slow.clock_hz == nrf.clock_hz / 2 and slow.ram_bytes == nrf.ram_bytes


def test_a_suite_runs_on_the_plugins_executor_device_and_reporter(kinds, plugin_manager, tmp_path):
    plugin, registry = kinds
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(SUITE))
    suite = load_suite(path, registry)
    store = ResultStore(tmp_path / "home" / "results.sqlite")
    summary = run_suite(suite, registry, plugin_manager, store, tmp_path / "home", progress=False)
    assert (summary.done, summary.failed, summary.skipped) == (2, 0, 0)

    # The executor ran the one baseline, then both cells, last first.
    assert ("map", ["baseline"]) in plugin.events and ("map", ["cell", "cell"]) in plugin.events
    started = [e[1] for e in plugin.events if e[0] == "cell_started"]
    assert started == ["half", "dense"]

    # The lifecycle hooks saw the run in order, with the plugin's device in every cell's metrics.
    assert plugin.events[0] == ("suite_started", "kinds", ["dense", "half"])
    finished = [e for e in plugin.events if e[0] == "cell_finished"]
    assert finished == [("cell_finished", p, "done", ["nrf52840", SLOW_BOARD]) for p in ("half", "dense")]
    assert plugin.events[-1] == ("suite_finished", {"done": 2, "failed": 0, "skipped": 0})
    # The suite's logger, with its settings, received the run and each cell's exported files.
    assert plugin.logged == [
        ("kinds", "suite_started", 2),
        *[("kinds", "cell_finished", p, "done", ["onnx", "split"]) for p in ("half", "dense")],
        ("kinds", "suite_finished", {"done": 2, "failed": 0, "skipped": 0}),
    ]

    # Half the clock and half the bandwidth: exactly twice the nrf52840's simulated latency.
    results = store.run_results(summary.run_id)
    for cell in results.cells:
        devices = cell.metrics["devices"]
        assert devices[SLOW_BOARD]["latency_ms"] == pytest.approx(2 * devices["nrf52840"]["latency_ms"], rel=1e-9)
        # The plugin's metric was computed on the cell's own test split.
        assert cell.metrics["plugin_metrics"]["test_records"] == cell.metrics["data"]["n_test"]

    # The suite's report format is the plugin's reporter.
    out = tmp_path / "report"
    for fmt in suite.report.formats:
        registry.get("reporters", fmt).from_params(suite.report.settings.get(fmt)).write(results, out)
    latency = {c.pipeline: c.metrics["devices"][SLOW_BOARD]["latency_ms"] for c in results.cells}
    assert (out / "cells.txt").read_text() == f"dense done {latency['dense']}\nhalf done {latency['half']}\n"

    # A second run skips both cells: no cell starts, both finish as skipped.
    plugin.events.clear()
    again = run_suite(suite, registry, plugin_manager, store, tmp_path / "home", progress=False)
    assert (again.done, again.skipped) == (0, 2)
    assert [e[0] for e in plugin.events if e[0] == "cell_started"] == []
    assert [e[2] for e in plugin.events if e[0] == "cell_finished"] == ["skipped", "skipped"]
    assert [e[3:] for e in plugin.logged if e[1] == "cell_finished"][2:] == [("skipped", ["onnx", "split"])] * 2
