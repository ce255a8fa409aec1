"""The runner: resume, failure isolation, baselines trained once, lifecycle hooks."""

from __future__ import annotations

import logging
import textwrap

import pytest

from ecgbench import hookimpl
from ecgbench.config.suite import load_suite
from ecgbench.registry import build_registry
from ecgbench.run.cell import expand_cells
from ecgbench.run.runner import run_suite
from ecgbench.run.store import ResultStore
from ecgbench.testing import FailingCompressor, InterruptingCompressor, TinyPlugins


class Recorder(TinyPlugins):
    def __init__(self):
        self.events = []

    @hookimpl
    def ecgbench_register_compressors(self, register):
        register(FailingCompressor)
        register(InterruptingCompressor)

    @hookimpl
    def ecgbench_suite_started(self, suite, run_id, cells):
        self.events.append(("suite_started", len(cells)))

    @hookimpl
    def ecgbench_cell_started(self, cell, run_id):
        self.events.append(("cell_started", cell.pipeline))

    @hookimpl
    def ecgbench_cell_finished(self, cell, run_id, status, metrics, error):
        self.events.append(("cell_finished", cell.pipeline, status))

    @hookimpl
    def ecgbench_suite_finished(self, suite, run_id, summary):
        self.events.append(("suite_finished", summary))


SUITE = """
name: runner-test
data: {fs_hz: 100, window_s: 4, split: {val: 0.25, test: 0.25}}
training: {epochs: 2, batch_size: 8, num_threads: 1, patience: 0}
measure: {bootstrap_resamples: 50, latency_repeats: 2, latency_warmup: 1, input_s: 4}
matrix:
  datasets: [tiny]
  models: [tinynet]
  compressors: [dense, boom, {label: half, steps: [magnitude: {sparsity: 0.5, finetune_epochs: 1}]}]
  devices: [nrf52840]
"""


@pytest.fixture
def env(tmp_path, plugin_manager):
    recorder = Recorder()
    plugin_manager.register(recorder, name="recorder")
    registry = build_registry(plugin_manager)
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(SUITE))
    store = ResultStore(tmp_path / "home" / "results.sqlite")
    return recorder, plugin_manager, registry, path, store, tmp_path / "home"


def test_failure_is_isolated_and_resume_skips_done_cells(env):
    recorder, pm, registry, path, store, home = env
    suite = load_suite(path, registry)
    summary = run_suite(suite, registry, pm, store, home, progress=False)
    assert (summary.done, summary.failed, summary.skipped) == (2, 1, 0)
    results = store.run_results(summary.run_id)
    by_pipeline = {c.pipeline: c for c in results.cells}
    assert "ValueError: boom: deliberately failing strategy" in by_pipeline["boom"].error
    dense = by_pipeline["dense"].metrics
    assert 0.0 <= dense["test"]["challenge_f1"] <= 1.0
    assert dense["delta_f1_points"] == pytest.approx(0.0)
    split_rows = open(by_pipeline["dense"].artifacts["split"]).read().splitlines()
    assert split_rows[0] == "record,split" and len(split_rows) == 1 + 48  # every record, with its split
    assert {row.split(",")[1] for row in split_rows[1:]} == {"train", "val", "test"}
    half = by_pipeline["half"].metrics
    assert half["size"]["nonzero_params"] < dense["size"]["nonzero_params"]
    assert half["compression"]["steps"][0]["name"] == "magnitude"
    assert "nrf52840" in half["devices"]
    assert recorder.events[0] == ("suite_started", 3)
    assert recorder.events[-1] == ("suite_finished", {"done": 2, "failed": 1, "skipped": 0})
    assert ("cell_finished", "boom", "failed") in recorder.events

    recorder.events.clear()
    again = run_suite(suite, registry, pm, store, home, progress=False)
    assert (again.done, again.failed, again.skipped) == (0, 1, 2)  # only the failed cell is redone
    assert [e for e in recorder.events if e[0] == "cell_started"] == [("cell_started", "boom")]

    forced = run_suite(suite, registry, pm, store, home, only="dense", force=True, progress=False)
    assert (forced.done, forced.skipped) == (1, 0)


def test_dense_baseline_is_trained_once(env, monkeypatch):
    recorder, pm, registry, path, store, home = env
    from ecgbench.train import trainer as training

    calls = []
    original = training.Trainer.fit

    def counting_fit(self, model, **kwargs):
        calls.append(kwargs.get("epochs"))
        return original(self, model, **kwargs)

    monkeypatch.setattr(training.Trainer, "fit", counting_fit)
    suite = load_suite(path, registry)
    run_suite(suite, registry, pm, store, home, only="*/*/[dh]*/*", progress=False)  # dense + half
    assert calls == [None, 1]  # one dense training, one fine-tuning of 'half'


def test_interrupt_loses_only_the_cell_in_progress(env):
    recorder, pm, registry, path, store, home = env
    path.write_text(path.read_text().replace("compressors: [dense, boom,", "compressors: [dense, interrupt,"))
    suite = load_suite(path, registry)
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, registry, pm, store, home, progress=False)
    first = store.list_runs()[0]
    assert first.status == "interrupted"
    outcomes = {c.pipeline: c.outcome for c in store.run_results(first.run_id).cells}
    assert outcomes == {"dense": "done", "interrupt": "interrupted", "half": "not run"}  # counted against the plan
    assert first.summary == {"done": 1, "interrupted": 1, "not run": 1} and first.planned == 3

    path.write_text(path.read_text().replace("compressors: [dense, interrupt,", "compressors: [dense,"))
    recorder.events.clear()
    summary = run_suite(load_suite(path, registry), registry, pm, store, home, progress=False)
    assert (summary.done, summary.skipped) == (1, 1)
    assert [e[1] for e in recorder.events if e[0] == "cell_started"] == ["half"]


def test_lifecycle_hook_errors_never_fail_a_run(env, caplog):
    recorder, pm, registry, path, store, home = env
    caplog.set_level(logging.WARNING, logger="ecgbench")

    class Broken:
        @hookimpl
        def ecgbench_cell_finished(self, cell, run_id, status, metrics, error):
            raise RuntimeError("logger down")

    pm.register(Broken(), name="broken-logger")
    suite = load_suite(path, registry)
    summary = run_suite(suite, registry, pm, store, home, only="dense", progress=False)
    assert summary.done == 1
    assert "logger down" in caplog.text


def test_a_cell_another_live_run_holds_is_waited_for_not_recomputed(env):
    import threading
    import time

    recorder, pm, registry, path, store, home = env
    suite = load_suite(path, registry)
    other = store.start_run("other", "o.yaml", {}, "0.1.0")
    dense = next(c for c in expand_cells(suite, registry) if c.pipeline == "dense")
    assert store.claim(other, dense.cell_id) == "claimed"  # held by this (live) process under another run
    store.mark_running(other, 0, dense.cell_id, dense.labels(), dense.config(), "0.1.0")

    def other_finishes():
        time.sleep(1.0)
        mine = ResultStore(store.path)
        mine.finish_cell(other, dense.cell_id, "done", {"test": {"challenge_f1": 0.5}}, {}, {}, None)
        mine.close()

    finisher = threading.Thread(target=other_finishes)
    finisher.start()
    summary = run_suite(suite, registry, pm, store, home, only="*/*/[dh]*/*", progress=False, poll_s=0.05)
    finisher.join()
    assert (summary.done, summary.skipped, summary.failed) == (1, 1, 0)
    assert [e[1] for e in recorder.events if e[0] == "cell_started"] == ["half"]
    results = store.run_results(summary.run_id)
    assert {c.pipeline: c.outcome for c in results.cells} == {"dense": "skipped", "half": "done"}
    assert results.cells[0].metrics == {"test": {"challenge_f1": 0.5}}  # the other run's result, not recomputed


def test_only_matching_nothing_is_refused_before_a_run_is_stored(env):
    from ecgbench.errors import ConfigError

    recorder, pm, registry, path, store, home = env
    with pytest.raises(ConfigError, match=r"--only 'lth-ecg' matches none of the 3 cells .*pipelines: dense, boom, half; a pattern is a glob"):
        run_suite(load_suite(path, registry), registry, pm, store, home, only="lth-ecg", progress=False)
    assert store.list_runs() == [] and recorder.events == []
