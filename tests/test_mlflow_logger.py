"""Experiment loggers and the ``mlflow`` logger.

The settings, the name flattening and the failure handling run without MLflow.
The tests marked slow log a tiny suite to a real local MLflow store (SQLite) and
read the runs back through ``mlflow.MlflowClient``; they skip, saying so, where
MLflow is not installed (``pip install 'ecgbench-harness[mlflow]'``).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

from ecgbench import Logger, hookimpl
from ecgbench.config.suite import load_suite, with_loggers
from ecgbench.errors import ConfigError
from ecgbench.registry import build_registry
from ecgbench.run.loggers import LoggerHooks
from ecgbench.run.runner import run_suite
from ecgbench.run.store import ResultStore
from ecgbench.testing import FailingCompressor, InterruptingCompressor, TinyPlugins
from ecgbench_plugins.loggers import mlflow_logger
from ecgbench_plugins.loggers.mlflow_logger import flatten_metrics, flatten_params, sanitize

NEEDS_MLFLOW = "MLflow is not installed: pip install 'ecgbench-harness[mlflow]' to run the MLflow store tests"

SUITE = """
name: tracking-test
data: {fs_hz: 100, window_s: 4, split: {val: 0.25, test: 0.25}}
training: {epochs: 2, batch_size: 8, num_threads: 1, patience: 0}
measure: {bootstrap_resamples: 50, latency_repeats: 2, latency_warmup: 1, input_s: 4}
matrix:
  datasets: [tiny]
  models: [tinynet]
  compressors: [dense, boom, {label: half, steps: [magnitude: {sparsity: 0.5, finetune_epochs: 1}]}]
  devices: [nrf52840]
"""


class Events(Logger):
    """A logger that records what it receives; ``fail_in`` names a method that raises."""

    name = "events"
    instances: list = []
    fail_in = ""

    def __init__(self, config=None):
        super().__init__(config)
        self.seen: list = []
        Events.instances.append(self)

    def _event(self, what, *details):
        self.seen.append((what, *details))
        if what == self.fail_in:
            raise RuntimeError(f"tracker down in {what}")

    def suite_started(self, suite, run_id, cells, home):
        self._event("suite_started", len(cells))

    def cell_started(self, cell, run_id):
        self._event("cell_started", cell.pipeline)

    def cell_finished(self, cell, run_id, status, metrics, error, artifacts):
        self._event("cell_finished", cell.pipeline, status, sorted(artifacts))

    def suite_finished(self, suite, run_id, summary):
        self._event("suite_finished", summary)

    def close(self):
        self.seen.append(("close",))


class TrackingPlugin(TinyPlugins):
    def __init__(self):
        self.finished: list = []

    @hookimpl
    def ecgbench_register_compressors(self, register):
        register(FailingCompressor)
        register(InterruptingCompressor)

    @hookimpl
    def ecgbench_register_loggers(self, register):
        register(Events)

    @hookimpl
    def ecgbench_cell_finished(self, cell, status):  # a plain lifecycle plugin, naming only some arguments
        self.finished.append((cell.pipeline, status))


@pytest.fixture
def env(tmp_path, plugin_manager):
    plugin = TrackingPlugin()
    plugin_manager.register(plugin, name="test-plugin")
    registry = build_registry(plugin_manager)
    store = ResultStore(tmp_path / "home" / "results.sqlite")
    Events.instances.clear()
    return plugin, plugin_manager, registry, store, tmp_path / "home"


def write_suite(tmp_path, extra: str = "") -> object:
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(SUITE) + textwrap.dedent(extra))
    return path


# --- settings (no MLflow needed) ----------------------------------------------------------
@pytest.mark.parametrize(
    "extra, message",
    [
        ("loggers: {mlflow: {tracking_url: x}}", r"at loggers\.mlflow\.tracking_url: unknown key 'tracking_url'; did you mean 'tracking_uri'\?"),
        ("loggers: {mlfow: {}}", r"unknown logger 'mlfow' in .*suite\.yaml at loggers; did you mean 'mlflow'\?"),
        ("loggers: {mlflow: {log_models: 3}}", r"at loggers\.mlflow\.log_models: Input should be a valid boolean"),
        ("loggers: [mlflow]", r"at loggers: Input should be a valid dictionary"),
    ],
)
def test_bad_logger_settings_name_file_and_key(env, tmp_path, extra, message):
    _plugin, _pm, registry, _store, _home = env
    with pytest.raises(ConfigError, match=message):
        load_suite(write_suite(tmp_path, extra), registry)


def test_suite_loggers_and_log_option(env, tmp_path):
    _plugin, _pm, registry, _store, _home = env
    suite = load_suite(write_suite(tmp_path, "loggers: {mlflow: {experiment: mine, exclude: []}}"), registry)
    assert [(ref.name, ref.params()) for ref in suite.loggers] == [("mlflow", {"experiment": "mine", "exclude": []})]
    both = with_loggers(suite, ["mlflow", "events"], registry)  # --log mlflow --log events
    assert [(ref.name, ref.params()) for ref in both.loggers] == [("mlflow", {"experiment": "mine", "exclude": []}), ("events", {})]
    plain = load_suite(write_suite(tmp_path), registry)
    assert plain.loggers == ()
    assert [ref.config for ref in with_loggers(plain, ["mlflow"], registry).loggers] == [mlflow_logger.MlflowLogger.Config()]
    with pytest.raises(ConfigError, match=r"unknown logger 'mlfow' in --log; did you mean 'mlflow'\?"):
        with_loggers(plain, ["mlfow"], registry)


def test_mlflow_missing_is_refused_before_a_run_is_recorded(env, tmp_path, monkeypatch):
    _plugin, pm, registry, store, home = env
    monkeypatch.setattr(mlflow_logger, "mlflow_installed", lambda: False)
    suite = load_suite(write_suite(tmp_path, "loggers: {mlflow: {}}"), registry)
    with pytest.raises(ConfigError, match=r"logger 'mlflow' needs MLflow, which is not installed: pip install 'ecgbench-harness\[mlflow\]'"):
        run_suite(suite, registry, pm, store, home, progress=False)
    assert store.list_runs() == []


def test_import_ecgbench_and_the_mlflow_plugin_does_not_import_mlflow():
    code = (
        "import sys, ecgbench, ecgbench_plugins.loggers.mlflow_logger as m; m.MlflowLogger.from_params({'experiment': 'x'}); "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'mlflow'], 'mlflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- names -------------------------------------------------------------------------------
def test_metrics_flatten_to_sanitized_dotted_names():
    metrics = {
        "test": {"challenge_f1": 0.8, "f1": {"~": 0.5, "A": 1}, "challenge_f1_ci": [0.7, 0.9], "n_records": 12},
        "devices": {"nrf52840": {"latency_ms": 3.5, "fits_ram": True, "fits_flash": False, "note": "text"}},
        "latency": {"host_median_ms": float("nan")},
        "compression": {"steps": [{"name": "magnitude", "seconds": 1.5}]},
    }
    flat = dict(flatten_metrics(metrics))
    assert flat == {
        "test.challenge_f1": 0.8,
        "test.f1.~": 0.5,
        "test.f1.A": 1.0,
        "test.challenge_f1_ci.low": 0.7,
        "test.challenge_f1_ci.high": 0.9,
        "test.n_records": 12.0,
        "devices.nrf52840.latency_ms": 3.5,
        "devices.nrf52840.fits_ram": 1.0,
        "devices.nrf52840.fits_flash": 0.0,
        "compression.steps.0.seconds": 1.5,
    }
    assert sanitize("test.f1.~") == "test.f1._"
    assert sanitize("steps.0.params.a/b (x)") == "steps.0.params.a_b _x_"
    assert len(sanitize("k" * 400)) == 250


def test_params_keep_lists_of_values_whole_and_walk_steps():
    config = {"pipeline": "half", "steps": [{"name": "magnitude", "params": {"sparsity": 0.5}}], "devices": ["nrf52840", "host"], "seed": 0}
    assert dict(flatten_params(config)) == {
        "pipeline": "half",
        "steps.0.name": "magnitude",
        "steps.0.params.sparsity": 0.5,
        "devices": ["nrf52840", "host"],
        "seed": 0,
    }


# --- failures (no MLflow needed) ----------------------------------------------------------
def test_loggers_get_the_lifecycle_with_artifacts_and_are_detached_after_the_run(env, tmp_path):
    plugin, pm, registry, store, home = env
    suite = load_suite(write_suite(tmp_path, "loggers: {events: {}}"), registry)
    summary = run_suite(suite, registry, pm, store, home, only="*/*/[db]*/*", progress=False)  # dense, boom
    (logger,) = Events.instances
    assert logger.seen == [
        ("suite_started", 2),
        ("cell_started", "dense"),
        ("cell_finished", "dense", "done", ["onnx", "split"]),
        ("cell_started", "boom"),
        ("cell_finished", "boom", "failed", []),
        ("suite_finished", {"done": 1, "failed": 1, "skipped": 0}),
        ("close",),
    ]
    assert not [p for p in pm.get_plugins() if isinstance(p, LoggerHooks)]
    run_suite(load_suite(write_suite(tmp_path), registry), registry, pm, store, home, only="dense", progress=False)
    assert len(Events.instances) == 1  # a suite without loggers: none made
    assert summary.done == 1


@pytest.mark.parametrize("fail_in", ["suite_started", "cell_finished", "suite_finished"])
def test_a_failing_logger_warns_and_loses_no_result(env, tmp_path, caplog, monkeypatch, fail_in):
    plugin, pm, registry, store, home = env
    caplog.set_level(logging.WARNING, logger="ecgbench")
    monkeypatch.setattr(Events, "fail_in", fail_in)
    suite = load_suite(write_suite(tmp_path, "loggers: {events: {}}"), registry)
    summary = run_suite(suite, registry, pm, store, home, only="*/*/[dh]*/*", progress=False)  # dense, half
    assert (summary.done, summary.failed) == (2, 0)
    assert {c.pipeline: c.status for c in store.run_results(summary.run_id).cells} == {"dense": "done", "half": "done"}
    assert sorted(plugin.finished) == [("dense", "done"), ("half", "done")]  # other hook implementations still called
    assert f"logger 'events' failed in {fail_in} (RuntimeError: tracker down in {fail_in})" in caplog.text
    (logger,) = Events.instances
    finished = [e for e in logger.seen if e[0] in ("cell_started", "cell_finished")]
    if fail_in == "suite_started":  # off for the rest of the run
        assert finished == [] and "it is off for this run" in caplog.text
    else:  # a failed cell_finished does not stop the next one
        assert len(finished) == 4
    assert logger.seen[-1] == ("close",)


# --- a real MLflow store --------------------------------------------------------------------
def _runs(client, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    return exp, client.search_runs([exp.experiment_id], max_results=1000)


@pytest.mark.slow
def test_cells_are_logged_to_a_sqlite_store_and_read_back(env, tmp_path):
    mlflow = pytest.importorskip("mlflow", reason=NEEDS_MLFLOW, exc_type=ImportError)
    plugin, pm, registry, store, home = env
    uri = f"sqlite:///{tmp_path / 'tracking' / 'mlflow.sqlite'}"
    (tmp_path / "tracking").mkdir()
    # The dense cell is done before the logger is enabled: the next run, which skips it, logs it.
    run_suite(load_suite(write_suite(tmp_path), registry), registry, pm, store, home, only="dense", progress=False)
    suite = load_suite(write_suite(tmp_path, f"loggers: {{mlflow: {{tracking_uri: '{uri}', experiment: ecg}}}}"), registry)
    first = run_suite(suite, registry, pm, store, home, progress=False)
    assert (first.done, first.failed, first.skipped) == (1, 1, 1)

    client = mlflow.MlflowClient(tracking_uri=uri)
    exp, runs = _runs(client, "ecg")
    assert exp.artifact_location == (tmp_path / "tracking" / "mlflow-artifacts").as_uri()  # beside the store, not ./mlruns
    (parent,) = [r for r in runs if r.data.tags.get("ecgbench.run_id") == first.run_id and "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.run_name == first.run_id and parent.info.status == "FAILED"  # a cell failed
    assert parent.data.metrics == {"cells.done": 1.0, "cells.failed": 1.0, "cells.skipped": 1.0}
    cells = {r.data.params["pipeline"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert set(cells) == {"dense", "boom", "half"}

    stored = {c.pipeline: c for c in store.run_results(first.run_id).cells}
    for pipeline in ("dense", "half"):
        run, cell = cells[pipeline], stored[pipeline]
        assert run.info.status == "FINISHED" and run.info.run_name == f"tiny/tinynet/{pipeline}/seed0"
        assert run.data.tags["ecgbench.cell_id"] == cell.cell_id and run.data.tags["ecgbench.run_id"] == first.run_id
        metrics = run.data.metrics
        assert metrics["test.challenge_f1"] == pytest.approx(cell.metrics["test"]["challenge_f1"])
        assert [metrics["test.challenge_f1_ci.low"], metrics["test.challenge_f1_ci.high"]] == pytest.approx(cell.metrics["test"]["challenge_f1_ci"])
        assert metrics["size.storage_bytes"] == cell.metrics["size"]["storage_bytes"]
        assert metrics["size.compression_ratio"] == pytest.approx(cell.metrics["size"]["compression_ratio"])
        assert metrics["latency.host_median_ms"] == pytest.approx(cell.metrics["latency"]["host_median_ms"])
        assert metrics["devices.nrf52840.latency_ms"] == pytest.approx(cell.metrics["devices"]["nrf52840"]["latency_ms"])
        assert metrics["test.f1._"] == pytest.approx(cell.metrics["test"]["f1"]["~"])
        assert not [k for k in metrics if k.startswith("compute.per_layer") or ".confusion." in k]
        params = run.data.params
        assert (params["dataset.name"], params["model.name"], params["seed"], params["cell_id"]) == ("tiny", "tinynet", "0", cell.cell_id)
        assert params["devices"] == '["nrf52840"]'
        model = client.download_artifacts(run.info.run_id, "model/model.onnx", str(tmp_path / f"dl-{pipeline}"))
        assert open(model, "rb").read() == open(cell.artifacts["onnx"], "rb").read()
        assert run.info.artifact_uri.startswith((tmp_path / "tracking" / "mlflow-artifacts").as_uri())
    assert cells["dense"].data.tags["ecgbench.outcome"] == "skipped" and cells["half"].data.tags["ecgbench.outcome"] == "done"
    assert (cells["half"].data.params["steps.0.name"], cells["half"].data.params["steps.0.params.sparsity"]) == ("magnitude", "0.5")
    assert float(cells["half"].data.metrics["compression.steps.0.record.achieved_sparsity"]) > 0.3
    boom = cells["boom"]
    assert boom.info.status == "FAILED" and boom.data.tags["ecgbench.outcome"] == "failed"
    assert boom.data.tags["ecgbench.error"] == "ValueError: boom: deliberately failing strategy"
    error = client.download_artifacts(boom.info.run_id, "error.txt", str(tmp_path / "dl-boom"))
    assert "Traceback" in open(error).read() and "boom: deliberately failing strategy" in open(error).read()

    # Resumed: the finished cells are skipped and not logged again; the failed one is retried.
    second = run_suite(suite, registry, pm, store, home, progress=False)
    assert (second.done, second.failed, second.skipped) == (0, 1, 2)
    _exp, runs = _runs(client, "ecg")
    by_cell: dict = {}
    for run in runs:
        if "ecgbench.cell_id" in run.data.tags:
            by_cell.setdefault(run.data.params["pipeline"], []).append(run.info.status)
    assert by_cell == {"dense": ["FINISHED"], "half": ["FINISHED"], "boom": ["FAILED", "FAILED"]}
    assert len([r for r in runs if "mlflow.parentRunId" not in r.data.tags]) == 2  # one parent per ecgbench run

    # Interrupted (Ctrl-C): the parent run is ended as KILLED, not left running.
    path = write_suite(tmp_path, f"loggers: {{mlflow: {{tracking_uri: '{uri}', experiment: ecg}}}}")
    path.write_text(path.read_text().replace("boom,", "interrupt,"))
    with pytest.raises(KeyboardInterrupt):
        run_suite(load_suite(path, registry), registry, pm, store, home, only="interrupt", progress=False)
    _exp, runs = _runs(client, "ecg")
    statuses = sorted(r.info.status for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert statuses == ["FAILED", "FAILED", "KILLED"]


@pytest.mark.slow
def test_run_log_mlflow_uses_a_store_under_ecgbench_home(tmp_path, monkeypatch, capsys):
    mlflow = pytest.importorskip("mlflow", reason=NEEDS_MLFLOW, exc_type=ImportError)
    from ecgbench.cli.main import main

    home = tmp_path / "home"
    monkeypatch.setenv("ECGBENCH_HOME", str(home))
    monkeypatch.setenv("ECGBENCH_QUIET", "1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        textwrap.dedent(
            """
            name: cli-tracking
            data: {fs_hz: 100, window_s: 5, split: {val: 0.25, test: 0.25}}
            training: {epochs: 1, batch_size: 8, num_threads: 1, patience: 0}
            measure: {bootstrap_resamples: 20, latency_repeats: 2, latency_warmup: 1, input_s: 10}
            matrix:
              datasets: [synthetic: {n_records: 40, max_duration_s: 20}]
              models: [dscnn: {width: 4, blocks: 2}]
              compressors: [dense]
            report: {formats: [md], out: reports}
            """
        )
    )
    assert main(["run", str(suite), "--log", "mlflow"]) == 0
    run_id = capsys.readouterr().out.split()[1].rstrip(":")
    assert (home / "mlflow.sqlite").is_file() and not (tmp_path / "mlruns").exists()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.sqlite'}")
    _exp, runs = _runs(client, "cli-tracking")
    (cell,) = [r for r in runs if "ecgbench.cell_id" in r.data.tags]
    assert cell.data.tags["ecgbench.run_id"] == run_id
    assert 0.0 <= cell.data.metrics["test.challenge_f1"] <= 1.0
    assert [a.path for a in client.list_artifacts(cell.info.run_id, "model")] == ["model/model.onnx"]


@pytest.mark.slow
def test_a_folder_store_works_too(env, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason=NEEDS_MLFLOW, exc_type=ImportError)
    plugin, pm, registry, store, home = env
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "")  # recorded, so the logger's opt-in is undone after the test
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    uri = (tmp_path / "mlruns").as_uri()
    suite = load_suite(write_suite(tmp_path, f"loggers: {{mlflow: {{tracking_uri: '{uri}'}}}}"), registry)
    summary = run_suite(suite, registry, pm, store, home, only="dense", progress=False)
    _exp, runs = _runs(mlflow.MlflowClient(tracking_uri=uri), "tracking-test")  # experiment: the suite's name
    (cell,) = [r for r in runs if r.data.tags.get("ecgbench.run_id") == summary.run_id and "ecgbench.cell_id" in r.data.tags]
    assert cell.info.status == "FINISHED" and cell.data.params["pipeline"] == "dense"
    assert [a.path for a in mlflow.MlflowClient(tracking_uri=uri).list_artifacts(cell.info.run_id, "model")] == ["model/model.onnx"]
