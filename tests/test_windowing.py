"""Windowed deployment: window starts, aggregation, settings, a windowed run scored from its windows, eval."""

from __future__ import annotations

import argparse
import json
import textwrap

import numpy as np
import pytest
import torch

from ecgbench import CLASSES
from ecgbench.errors import ConfigError
from ecgbench.kinds.base import parse_config
from ecgbench.measure.artifact import MeasureConfig
from ecgbench.measure.scores import challenge_f1
from ecgbench.measure.windowing import (
    Windowing,
    aggregate_window_probs,
    eval_windowing,
    parse_window_arg,
    record_windows,
    window_starts,
)

# --- windows of a record ---------------------------------------------------------------


@pytest.mark.parametrize(
    "n, window, hop, starts",
    [
        (3000, 1000, 1000, [0, 1000, 2000]),  # a 30-s record in 10-s windows
        (3050, 1000, 1000, [0, 1000, 2000]),  # the final partial window (50 samples) is dropped
        (2999, 1000, 1000, [0, 1000]),  # ... also when it misses one sample
        (3000, 1000, 500, [0, 500, 1000, 1500, 2000]),  # overlapping windows
        (3000, 1000, 1500, [0, 1500]),  # gaps between windows
        (1000, 1000, 1000, [0]),  # exactly one window
        (400, 1000, 1000, [0]),  # shorter than a window: one (zero-padded) window
    ],
)
def test_window_starts(n, window, hop, starts):
    assert window_starts(n, window, hop).tolist() == starts


def test_window_starts_refuses_empty_windows():
    with pytest.raises(ValueError):
        window_starts(100, 0, 10)
    with pytest.raises(ValueError):
        window_starts(100, 10, 0)


def test_record_windows_are_the_record_slices_and_a_short_record_is_zero_padded():
    signal = np.arange(25, dtype=np.float32)
    windows = record_windows(signal, 10, 5)
    assert windows.shape == (4, 1, 10)  # starts 0, 5, 10, 15; the partial window at 20 is dropped
    assert windows[3, 0].tolist() == list(range(15, 25))
    short = record_windows(np.ones(4, dtype=np.float32), 10, 10)
    assert short.shape == (1, 1, 10)
    assert short[0, 0].tolist() == [1.0] * 4 + [0.0] * 6


def test_windows_in_a_record_at_a_sampling_rate():
    assert Windowing(10, 10).windows_in(30, 100) == 3
    assert Windowing(10, 5).windows_in(30, 100) == 5
    assert Windowing(5, 5).windows_in(30, 300) == 6
    assert Windowing(30, 30).windows_in(30, 100) == 1
    assert Windowing(60, 60).windows_in(30, 100) == 1  # the record is one padded window


# --- aggregation rules ---------------------------------------------------------------------
PROBS = np.array(
    [
        [0.6, 0.3, 0.1, 0.0],
        [0.5, 0.4, 0.1, 0.0],
        [0.1, 0.8, 0.1, 0.0],
    ]
)


def test_mean_prob_is_the_mean_of_the_windows():
    out = aggregate_window_probs(PROBS, "mean_prob")
    assert out == pytest.approx([0.4, 0.5, 0.1, 0.0])
    assert out.argmax() == 1


def test_max_prob_takes_each_class_at_its_most_confident_window():
    out = aggregate_window_probs(PROBS, "max_prob")
    assert out == pytest.approx(np.array([0.6, 0.8, 0.1, 0.0]) / 1.5)
    assert out.sum() == pytest.approx(1.0)


def test_vote_is_the_majority_class_even_against_the_mean():
    # class 0 wins 2 of 3 windows though class 1 has the larger mean probability
    out = aggregate_window_probs(PROBS, "vote")
    assert out.argmax() == 0
    assert out == pytest.approx((np.array([2, 1, 0, 0]) + PROBS.mean(axis=0)) / 4)
    assert out.sum() == pytest.approx(1.0)


def test_a_tied_vote_goes_to_the_larger_mean_probability():
    tied = np.array([[0.9, 0.1, 0, 0], [0.45, 0.55, 0, 0]])  # one vote each; class 0 has the larger mean
    assert aggregate_window_probs(tied, "vote").argmax() == 0
    tied = np.array([[0.51, 0.49, 0, 0], [0.1, 0.9, 0, 0]])
    assert aggregate_window_probs(tied, "vote").argmax() == 1


def test_one_window_aggregates_to_itself():
    for rule in ("mean_prob", "max_prob"):
        assert aggregate_window_probs(PROBS[:1], rule) == pytest.approx(PROBS[0])
    assert aggregate_window_probs(PROBS[:1], "vote").argmax() == 0


def test_aggregation_refuses_unknown_rules_and_empty_input():
    with pytest.raises(ValueError, match="mean_prob, max_prob, vote"):
        aggregate_window_probs(PROBS, "median")
    with pytest.raises(ValueError):
        aggregate_window_probs(np.zeros((0, 4)), "mean_prob")


# --- settings ---------------------------------------------------------------------------------------
def test_measure_settings_validate_and_default_to_whole_records():
    assert MeasureConfig().deploy_window_s is None and Windowing.from_config(MeasureConfig()) is None
    config = parse_config(MeasureConfig, {"deploy_window_s": 10}, "s.yaml at measure")
    assert Windowing.from_config(config) == Windowing(10.0, 10.0, "mean_prob")  # hop defaults to the window
    config = parse_config(MeasureConfig, {"deploy_window_s": 10, "deploy_hop_s": 5, "aggregate": "vote"}, "s.yaml at measure")
    assert Windowing.from_config(config) == Windowing(10.0, 5.0, "vote")
    with pytest.raises(ConfigError, match="s.yaml at measure: .*aggregate applies to windowed deployment only"):
        parse_config(MeasureConfig, {"aggregate": "vote"}, "s.yaml at measure")
    with pytest.raises(ConfigError, match="deploy_hop_s applies to windowed deployment only"):
        parse_config(MeasureConfig, {"deploy_hop_s": 5}, "s.yaml at measure")
    with pytest.raises(ConfigError, match="measure.aggregate"):
        parse_config(MeasureConfig, {"deploy_window_s": 10, "aggregate": "median"}, "s.yaml at measure")
    with pytest.raises(ConfigError, match="measure.deploy_window_s"):
        parse_config(MeasureConfig, {"deploy_window_s": 0}, "s.yaml at measure")


def test_eval_windowing_from_metadata_and_overrides():
    stored = {"deploy": {"window_s": 10.0, "hop_s": 5.0, "aggregate": "vote"}}
    assert eval_windowing({}) is None
    assert eval_windowing(stored) == Windowing(10, 5, "vote")
    assert eval_windowing(stored, aggregate="max_prob") == Windowing(10, 5, "max_prob")
    assert eval_windowing(stored, window_s=4.0) == Windowing(4, 4, "vote")  # a new window: side by side unless a hop is given
    assert eval_windowing(stored, window_s="whole") is None
    assert eval_windowing({}, window_s=5.0, aggregate="vote") == Windowing(5, 5, "vote")
    with pytest.raises(ConfigError, match="names no deploy window"):
        eval_windowing({}, aggregate="vote")
    assert parse_window_arg("whole") == "whole" and parse_window_arg("2.5") == 2.5
    with pytest.raises(argparse.ArgumentTypeError):
        parse_window_arg("-1")


# --- a windowed run ------------------------------------------------------------------------
SUITE = """
name: windowed-test
data: {{fs_hz: 100, window_s: 4, split: {{val: 0.25, test: 0.25}}}}
training: {{epochs: 2, batch_size: 8, num_threads: 1, patience: 0}}
measure: {{bootstrap_resamples: 50, latency_repeats: 2, latency_warmup: 1, input_s: 4{measure}}}
matrix:
  datasets: [tiny]
  models: [tinynet]
  compressors: [dense, {{label: half, steps: [magnitude: {{sparsity: 0.5, finetune_epochs: 1}}]}}]
  devices: [nrf52840]
"""




@pytest.fixture(scope="module")
def windowed_run(tmp_path_factory):
    """A tiny suite run twice on one home: whole records, then 1.5-s windows every 1 s (3 per 4-s record)."""
    from ecgbench.config.suite import load_suite
    from ecgbench.plugin_manager import make_plugin_manager
    from ecgbench.registry import build_registry
    from ecgbench.run.runner import run_suite
    from ecgbench.run.store import ResultStore
    from ecgbench.testing import TinyPlugins

    tmp = tmp_path_factory.mktemp("windowed")
    pm = make_plugin_manager()
    pm.register(TinyPlugins(), name="tiny-plugins")
    registry = build_registry(pm)
    home = tmp / "home"
    store = ResultStore(home / "results.sqlite")
    runs = {}
    for name, measure in (("whole", ""), ("windowed", ", deploy_window_s: 1.5, deploy_hop_s: 1.0")):
        path = tmp / f"{name}.yaml"
        path.write_text(textwrap.dedent(SUITE.format(measure=measure)))
        suite = load_suite(path, registry)
        summary = run_suite(suite, registry, pm, store, home, progress=False)
        assert summary.failed == 0
        runs[name] = {c.pipeline: c for c in store.run_results(summary.run_id).cells}
        runs[f"{name}_results"] = store.run_results(summary.run_id)
    runs["suite"], runs["registry"], runs["home"] = suite, registry, home
    runs["results"] = runs["windowed_results"]
    return runs


def _test_split(run):
    from ecgbench.data.loader import load_splits

    suite, registry = run["suite"], run["registry"]
    (dataset,) = suite.datasets
    return load_splits(registry.get("datasets", dataset.name)(dataset.config), suite.data, run["home"] / "data").test


def _hand_windowed_predictions(onnx_path, test) -> np.ndarray:
    """Each 4-s test record cut by hand at 0, 1 and 2 s into 1.5-s windows, softmax, mean, argmax."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    predictions = []
    for i in range(len(test)):
        signal = test.signal(i)
        assert len(signal) == 400
        windows = np.stack([signal[s : s + 150] for s in (0, 100, 200)])[:, None, :].astype(np.float32)
        logits = session.run(None, {"ecg": windows})[0]
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        predictions.append(int(probs.mean(axis=0).argmax()))
    return np.array(predictions)


def test_record_level_f1_is_computed_from_the_windows(windowed_run):
    test = _test_split(windowed_run)
    for pipeline in ("dense", "half"):
        cell = windowed_run["windowed"][pipeline]
        predicted = _hand_windowed_predictions(cell.artifacts["onnx"], test)
        assert cell.metrics["test"]["challenge_f1"] == pytest.approx(challenge_f1(test.labels, predicted))
        assert cell.metrics["test"]["confusion"] == np.bincount(test.labels * 4 + predicted, minlength=16).reshape(4, 4).tolist()
        assert cell.metrics["windowing"] == {
            "window_s": 1.5, "hop_s": 1.0, "aggregate": "mean_prob", "window_samples": 150, "hop_samples": 100,
            "record_s": 4.0, "windows_per_record": 3, "test_windows": 3 * len(test),
        }


def test_delta_f1_compares_with_the_dense_model_at_the_same_window(windowed_run):
    dense, half = windowed_run["windowed"]["dense"].metrics, windowed_run["windowed"]["half"].metrics
    assert dense["delta_f1_points"] == pytest.approx(0.0)
    assert half["baseline"]["test_challenge_f1"] == pytest.approx(dense["test"]["challenge_f1"])
    assert half["delta_f1_points"] == pytest.approx((half["test"]["challenge_f1"] - dense["test"]["challenge_f1"]) * 100)
    # its paired interval resamples the two models' windowed predictions
    from ecgbench.measure.artifact import MeasureConfig
    from ecgbench.measure.scores import bootstrap_delta_ci

    test = _test_split(windowed_run)
    cells = windowed_run["windowed"]
    half_pred, dense_pred = (_hand_windowed_predictions(cells[p].artifacts["onnx"], test) for p in ("half", "dense"))
    config = MeasureConfig()
    lo, hi = bootstrap_delta_ci(test.labels, half_pred, dense_pred, 50, config.bootstrap_seed, config.ci_level)
    assert half["delta_f1_ci_points"] == pytest.approx([lo * 100, hi * 100])
    # the whole-record run, sharing the cached baseline, still compares with whole-record dense scores
    whole = windowed_run["whole"]["half"].metrics
    assert whole["baseline"]["test_challenge_f1"] == pytest.approx(windowed_run["whole"]["dense"].metrics["test"]["challenge_f1"])


def test_device_figures_are_per_window_and_per_record(windowed_run):
    from ecgbench.measure.onnx_graph import analyze_onnx
    from ecgbench.measure.simulator import simulate

    cell = windowed_run["windowed"]["half"]
    figures = cell.metrics["devices"]["nrf52840"]
    profile = windowed_run["registry"].get("devices", "nrf52840")
    one_window = simulate(analyze_onnx(cell.artifacts["onnx"], input_shape=(1, 1, 150)), profile)
    assert cell.metrics["compute"]["input_samples"] == 150
    assert figures["latency_ms_per_window"] == figures["latency_ms"] == pytest.approx(one_window.latency_ms)
    assert figures["energy_mj_per_window"] == figures["energy_mj"] == pytest.approx(one_window.energy_mj)
    assert figures["peak_ram_bytes"] == one_window.peak_ram_bytes
    assert figures["windows_per_record"] == 3
    assert figures["latency_ms_per_record"] == pytest.approx(3 * one_window.latency_ms)
    assert figures["energy_mj_per_record"] == pytest.approx(3 * one_window.energy_mj)
    assert figures["inferences_per_day"] == pytest.approx(3 * 24 * 60 / 5)  # three windows per screened recording
    whole = windowed_run["whole"]["half"].metrics
    assert whole["devices"]["nrf52840"]["peak_ram_bytes"] > figures["peak_ram_bytes"]  # a 4-s input against 1.5 s
    assert cell.metrics["latency"]["host_median_ms_per_record"] == pytest.approx(3 * cell.metrics["latency"]["host_median_ms"])


def test_a_windowed_cell_fills_every_builtin_metric(windowed_run):
    from ecgbench.measure.builtin_metrics import BUILTIN_METRICS
    from ecgbench.measure.schema import expand, lookup

    metrics = windowed_run["windowed"]["half"].metrics
    for metric in expand(BUILTIN_METRICS, ["nrf52840"]):
        assert lookup(metrics, metric.path) is not None, metric.path


def test_whole_record_cells_are_measured_as_before(windowed_run):
    from ecgbench.train.export import read_metadata

    cell = windowed_run["whole"]["half"]
    assert "windowing" not in cell.metrics
    assert not any(k.endswith(("_per_window", "_per_record")) for k in cell.metrics["devices"]["nrf52840"])
    assert "deploy" not in read_metadata(cell.artifacts["onnx"])
    assert cell.metrics["compute"]["input_samples"] == 400
    assert read_metadata(windowed_run["windowed"]["half"].artifacts["onnx"])["deploy"] == {"window_s": 1.5, "hop_s": 1.0, "aggregate": "mean_prob"}


def test_eval_run_rescores_windowed_cells_as_they_were_measured(windowed_run):
    from ecgbench.results.rescore import rescore_run

    rescored = rescore_run(windowed_run["windowed_results"], "test", cache_dir=windowed_run["home"] / "data", registry=windowed_run["registry"])
    assert len(rescored) == 2 and all(r.to_dict()["matches_stored"] for r in rescored)


def test_the_report_shows_the_window_and_per_record_columns(windowed_run, tmp_path):
    from ecgbench.results.table import report_facts, summary_table

    results = windowed_run["results"]
    facts = dict(report_facts(results, "md", tmp_path))
    assert "1.5-s windows every 1 s, record class by mean_prob, 3 windows per 4-s record" in facts["deployment"]
    headers = summary_table(results).headers
    assert "nrf52840 ms/record" in headers and "nrf52840 mJ/record" in headers
    from ecgbench_plugins.reporters.markdown import markdown_report

    page = markdown_report(results, tmp_path)  # the key columns
    assert "nrf52840 ms/record" in page and "- deployment: 1.5-s windows every 1 s" in page
    assert "ms/record" not in markdown_report(windowed_run["whole_results"], tmp_path)


def test_whole_record_reports_have_no_per_record_columns(windowed_run):
    from ecgbench.results.table import deployment_fact, summary_table

    results = windowed_run["whole_results"]
    headers = summary_table(results).headers
    assert "nrf52840 sim ms" in headers and not any("record" in h for h in headers)
    assert deployment_fact(results) is None


# --- eval and devices simulate ----------------------------------------------------------------
@pytest.fixture(scope="module")
def eval_setup(tmp_path_factory):
    """A CinC-shaped folder of 4-s records and a TinyNet export carrying a 1-s window in its metadata."""
    from conftest_data import write_cinc_folder

    from ecgbench.data.config import DataConfig
    from ecgbench.testing import TinyNet
    from ecgbench.train.export import to_onnx, with_metadata

    tmp = tmp_path_factory.mktemp("evalwin")
    folder = write_cinc_folder(tmp / "records", {f"W{i:03d}": CLASSES[i % 4] for i in range(12)}, seconds=4.0)
    torch.manual_seed(0)
    data = DataConfig(fs_hz=100.0, window_s=4.0)
    preprocessing = {**data.model_dump(mode="json", exclude={"split"}), "fs_hz": 100.0}
    plain = with_metadata(to_onnx(TinyNet(4), samples=400), {"preprocessing": preprocessing, "classes": list(CLASSES)})
    windowed = with_metadata(plain, {"deploy": {"window_s": 1.0, "hop_s": 1.0, "aggregate": "max_prob"}})
    (tmp / "plain.onnx").write_bytes(plain)
    (tmp / "windowed.onnx").write_bytes(windowed)
    return tmp, folder


def _cinc(folder):
    from ecgbench.config.dataset_ref import dataset_ref
    from ecgbench.registry import process_registry

    return dataset_ref("cinc2017", {"path": str(folder)}, "test", process_registry())


def _eval(tmp, folder, model, **windows):
    from ecgbench.measure.model_eval import evaluate_model_file

    return evaluate_model_file(tmp / model, _cinc(folder), tmp / "cache", threads=1, windows=windows)


def _hand_eval_f1(tmp, folder, window: int, rule: str) -> float:
    import onnxruntime as ort

    from ecgbench.measure.model_eval import load_dataset_records
    from ecgbench.measure.model_file import read_model_file
    from ecgbench.registry import process_registry

    data = read_model_file(tmp / "plain.onnx").data_config()
    signals = load_dataset_records(process_registry(), _cinc(folder), data, tmp / "cache").signals
    session = ort.InferenceSession(str(tmp / "plain.onnx"), providers=["CPUExecutionProvider"])
    predicted = []
    for i in range(len(signals)):
        x = signals.signal(i)
        windows = np.stack([x[s : s + window] for s in range(0, len(x) - window + 1, window)])[:, None, :].astype(np.float32)
        logits = session.run(None, {"ecg": windows})[0]
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        predicted.append(int(aggregate_window_probs(probs, rule).argmax()))
    return challenge_f1(signals.labels, np.array(predicted))


def test_eval_applies_the_windowing_in_the_models_metadata(eval_setup):
    tmp, folder = eval_setup
    result = _eval(tmp, folder, "windowed.onnx")
    assert result["windowing"] == {"window_s": 1.0, "hop_s": 1.0, "aggregate": "max_prob"}
    assert result["challenge_f1"] == pytest.approx(_hand_eval_f1(tmp, folder, 100, "max_prob"))
    overridden = _eval(tmp, folder, "windowed.onnx", window_s=2.0, aggregate="mean_prob")
    assert overridden["windowing"] == {"window_s": 2.0, "hop_s": 2.0, "aggregate": "mean_prob"}
    assert overridden["challenge_f1"] == pytest.approx(_hand_eval_f1(tmp, folder, 200, "mean_prob"))
    whole = _eval(tmp, folder, "windowed.onnx", window_s="whole")
    assert whole["windowing"] is None
    assert whole["challenge_f1"] == pytest.approx(_eval(tmp, folder, "plain.onnx")["challenge_f1"])


def test_eval_command_line_window_options(eval_setup, capsys):
    from ecgbench.cli.main import main

    tmp, folder = eval_setup
    code = main(["eval", str(tmp / "plain.onnx"), "--data", str(folder), "--deploy-window-s", "2", "--aggregate", "vote", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["windowing"] == {"window_s": 2.0, "hop_s": 2.0, "aggregate": "vote"}
    assert out["challenge_f1"] == pytest.approx(_hand_eval_f1(tmp, folder, 200, "vote"))
    main(["eval", str(tmp / "windowed.onnx"), "--data", str(folder)])
    assert "record class from 1-s windows, hop 1 s, max_prob" in capsys.readouterr().out


def test_devices_simulate_one_window(eval_setup, capsys):
    from ecgbench.cli.main import main

    tmp, _folder = eval_setup
    for model, extra, samples in (("plain.onnx", [], 3000), ("windowed.onnx", [], 100), ("plain.onnx", ["--input-s", "5"], 500)):
        assert main(["devices", "simulate", str(tmp / model), "--device", "nrf52840", "--json", *extra]) == 0
        assert json.loads(capsys.readouterr().out)["graph"]["input_shape"] == [1, 1, samples]
