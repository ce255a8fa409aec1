"""measure_artifact on a two-layer model whose parameters and MACs are counted by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ecgbench.errors import ConfigError
from ecgbench.train.export import to_onnx
from ecgbench.measure.artifact import MeasureConfig, measure_artifact
from ecgbench.measure.scores import classification_scores
from ecgbench.kinds.base import parse_config
from ecgbench.testing import fast_recipe, make_random_splits
from ecgbench.train.trainer import Trainer

INPUT_S = 2.0  # at 100 Hz: 200 samples per inference
SAMPLES = 200


class TwoLayer(torch.nn.Module):
    """Conv1d(1->4, k=5, same padding) then Linear(4->4).

    Parameters: 4*1*5 + 4 + 4*4 + 4 = 44.
    MACs on 200 samples: conv 4 * 1 * 5 * 200 = 4000, fc 4 * 4 = 16 -> 4016.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 4, 5, padding=2)
        self.fc = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=2))


def two_layer(pruned: bool) -> TwoLayer:
    torch.manual_seed(0)
    model = TwoLayer()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_((torch.rand_like(p) * 0.5 + 0.5) * torch.sign(torch.randn_like(p)))
        if pruned:
            # 5 + 1 + 1 zeros: 37 non-zero parameters; effective MACs (20 - 5) * 200 + (16 - 1) = 3015.
            model.conv.weight[0].zero_()
            model.conv.bias[3] = 0.0
            model.fc.weight[1, 2] = 0.0
    return model.eval()


@pytest.fixture(scope="module")
def trainer():
    torch.set_num_threads(1)
    return Trainer(make_random_splits(n_train=16, n_eval=24, samples=SAMPLES), fast_recipe(), seed=0)


@pytest.fixture(scope="module")
def config():
    return MeasureConfig(input_s=INPUT_S, bootstrap_resamples=200, latency_warmup=1, latency_repeats=3)


@pytest.fixture(scope="module")
def device():
    from ecgbench.plugin_manager import make_plugin_manager
    from ecgbench.registry import build_registry

    registry = build_registry(make_plugin_manager(load_entrypoints=False))
    return registry.get("devices", "nrf52840")


@pytest.fixture(scope="module")
def dense_metrics(trainer, config, device):
    return measure_artifact(to_onnx(two_layer(False), SAMPLES), trainer, config, devices=[device])


def test_schema_of_the_dense_measurement(dense_metrics, device):
    m = dense_metrics
    assert set(m) == {"val", "test", "size", "compute", "latency", "devices", "delta_f1_points"}
    assert {"challenge_f1", "f1", "af_f1", "macro_f1", "accuracy", "confusion", "n_records"} <= set(m["val"])
    assert set(m["test"]) == set(m["val"]) | {"challenge_f1_ci"}
    assert {"onnx", "onnx_zlib", "onnx_zstd", "sparse", "sparse_zlib", "sparse_zstd", "storage_bytes", "storage_format",
            "total_params", "nonzero_params", "compression_ratio", "size_reduction"} == set(m["size"])
    assert {"input_samples", "macs", "effective_macs", "per_layer"} == set(m["compute"])
    assert set(m["latency"]) == {"host_median_ms", "host_p95_ms", "threads", "repeats"}
    assert list(m["devices"]) == [device.name]
    assert "per_layer" not in m["devices"][device.name]
    assert {"latency_ms", "energy_mj", "energy_per_day_j", "peak_ram_bytes", "flash_bytes", "flash_format", "flash_runtime", "fits"} <= set(
        m["devices"][device.name]
    )
    json.dumps(m, allow_nan=False)  # stored as JSON: no NaN, no numpy types


def test_dense_figures_by_hand(dense_metrics, trainer):
    m = dense_metrics
    assert m["size"]["total_params"] == m["size"]["nonzero_params"] == 44
    assert m["size"]["compression_ratio"] == 1.0
    assert m["size"]["size_reduction"] == pytest.approx(m["size"]["onnx"] / m["size"]["storage_bytes"])
    assert m["compute"]["input_samples"] == SAMPLES
    assert m["compute"]["macs"] == m["compute"]["effective_macs"] == 4016
    assert sum(layer["macs"] for layer in m["compute"]["per_layer"]) == 4016
    assert m["delta_f1_points"] == 0.0
    assert m["latency"]["repeats"] == 3 and m["latency"]["threads"] == 1
    assert 0 < m["latency"]["host_median_ms"] <= m["latency"]["host_p95_ms"]


def test_latency_is_timed_against_the_dense_model(dense_metrics, trainer, config):
    dense_onnx = to_onnx(two_layer(False), SAMPLES)
    m = measure_artifact(dense_onnx, trainer, config, devices=[], dense=dense_metrics, dense_onnx=dense_onnx)
    latency = m["latency"]
    assert latency["host_vs_dense"] == pytest.approx(latency["host_median_ms"] / latency["dense_host_median_ms"])
    assert latency["repeats"] == config.latency_repeats
    assert m["delta_f1_ci_points"] == [0.0, 0.0]  # the same model as its dense baseline: a paired interval of nothing


def test_delta_interval_is_paired_with_the_dense_predictions(dense_metrics, trainer, config):
    from ecgbench.measure.scores import bootstrap_delta_ci

    dense_onnx, pruned_onnx = to_onnx(two_layer(False), SAMPLES), to_onnx(two_layer(True), SAMPLES)
    m = measure_artifact(pruned_onnx, trainer, config, devices=[], dense=dense_metrics, dense_onnx=dense_onnx)
    labels = trainer.splits.test.labels
    pruned, dense = (trainer.predict_onnx(b, "test").argmax(axis=1) for b in (pruned_onnx, dense_onnx))
    lo, hi = bootstrap_delta_ci(labels, pruned, dense, config.bootstrap_resamples, config.bootstrap_seed, config.ci_level)
    assert m["delta_f1_ci_points"] == pytest.approx([lo * 100, hi * 100])
    assert lo * 100 <= m["delta_f1_points"] <= hi * 100
    assert "delta_f1_ci_points" not in measure_artifact(pruned_onnx, trainer, config, devices=[], dense=dense_metrics)  # no dense model given


def test_scores_match_in_process_evaluation(dense_metrics, trainer):
    model = two_layer(False)
    assert dense_metrics["val"] == trainer.evaluate(model, "val")
    test = dict(dense_metrics["test"])
    lo, hi = test.pop("challenge_f1_ci")
    assert test == trainer.evaluate(model, "test")
    assert lo <= test["challenge_f1"] <= hi
    assert test["n_records"] == 24


def test_pruned_model_against_the_dense_baseline(dense_metrics, trainer, config, device):
    pruned = measure_artifact(to_onnx(two_layer(True), SAMPLES), trainer, config, devices=[device], dense=dense_metrics)
    assert pruned["size"]["nonzero_params"] == 37
    assert pruned["size"]["compression_ratio"] == pytest.approx(44 / 37)
    assert pruned["size"]["size_reduction"] == pytest.approx(dense_metrics["size"]["onnx"] / pruned["size"]["storage_bytes"])
    assert pruned["compute"]["macs"] == 4016
    assert pruned["compute"]["effective_macs"] == 3015
    expected = classification_scores(trainer.splits.test.labels, trainer.predict(two_layer(True), "test").argmax(axis=1))
    assert pruned["test"]["challenge_f1"] == expected["challenge_f1"]
    assert pruned["delta_f1_points"] == pytest.approx((expected["challenge_f1"] - dense_metrics["test"]["challenge_f1"]) * 100)
    # Flash is the dense fp32 weights TFLite Micro runs (44 parameters x 4 bytes), never the compressed file.
    figures = pruned["devices"][device.name]
    assert (figures["flash_bytes"], figures["flash_format"], figures["flash_runtime"]) == (44 * 4, "fp32", "TFLite Micro + CMSIS-NN")
    assert figures["flash_source"] == "runtime"


def test_negative_zero_weights_measure_like_positive_zeros(dense_metrics, trainer, config):
    model = two_layer(True)
    with torch.no_grad():
        model.conv.weight[0] = -0.0
    m = measure_artifact(to_onnx(model, SAMPLES), trainer, config, devices=[], dense=dense_metrics)
    assert m["size"]["nonzero_params"] == 37
    assert m["compute"]["effective_macs"] == 3015
    assert m["devices"] == {}


def test_config_defaults_and_validation():
    config = MeasureConfig()
    assert (config.bootstrap_resamples, config.ci_level, config.input_s, config.latency_threads, config.screening_interval_min) == (
        1000,
        0.95,
        30.0,
        1,
        5.0,
    )
    assert parse_config(MeasureConfig, {"input_s": 10}, "suite.yaml").input_s == 10.0  # YAML ints are fine
    with pytest.raises(ConfigError, match="ci_level"):
        parse_config(MeasureConfig, {"ci_level": 1.5}, "suite.yaml")
    with pytest.raises(ConfigError, match="did you mean 'latency_repeats'"):
        parse_config(MeasureConfig, {"latency_repeat": 3}, "suite.yaml")


def test_int8_model_goes_through_the_same_code(dense_metrics, trainer, config, device, tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"ecg": x} for x in trainer.calibration_inputs(8)])

        def get_next(self):
            return next(self.items, None)

    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    src.write_bytes(to_onnx(two_layer(True), SAMPLES))
    from ecgbench_plugins.compressors.quantization import _quiet_root_logger

    with _quiet_root_logger():
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, weight_type=QuantType.QInt8, activation_type=QuantType.QInt8)
    m = measure_artifact(dst.read_bytes(), trainer, config, devices=[device], dense=dense_metrics)
    # The same 44 weights and biases (scales and zero points left out), the same 7 zeros.
    assert (m["size"]["total_params"], m["size"]["nonzero_params"]) == (44, 37)
    assert m["size"]["compression_ratio"] == pytest.approx(44 / 37)
    assert m["compute"]["macs"] == 4016 and m["compute"]["effective_macs"] == 3015
    assert m["test"]["n_records"] == 24


def test_every_builtin_metric_path_is_filled(dense_metrics, device):
    from ecgbench.measure.builtin_metrics import BUILTIN_METRICS
    from ecgbench.measure.schema import expand, lookup

    paths = [m.path for m in expand(BUILTIN_METRICS, [device.name]) if not m.optional]  # optional: windowed cells (test_windowing.py)
    assert "devices.nrf52840.latency_ms" in paths and "devices.{device}.latency_ms" not in paths
    for path in paths:
        if path == "latency.host_vs_dense":  # only when timed against a dense model (next test)
            continue
        if path.startswith("data."):  # the data section is added by ecgbench.run.cell.run_cell (tests/test_dropped_windows.py)
            continue
        assert lookup(dense_metrics, path) is not None, path


def test_plugin_metrics_are_computed_from_the_measurement(trainer, config):
    from ecgbench.measure.schema import Metric

    seen = {}

    def test_recall_of_first_class(m):
        seen["m"] = m
        positives = m.test_labels == 0
        return float((m.test_predictions[positives] == 0).mean())

    metrics = [
        Metric("plugin_metrics.recall0", "recall of class 0", compute=test_recall_of_first_class),
        Metric("plugin_metrics.nothing", "undefined", compute=lambda m: None),
        Metric("test.accuracy", "accuracy"),  # declared, not computed: measure_artifact fills it
    ]
    out = measure_artifact(to_onnx(two_layer(False), SAMPLES), trainer, config, devices=[], metrics=metrics)
    m = seen["m"]
    confusion = out["test"]["confusion"]  # rows: true class, columns: predicted
    assert out["plugin_metrics"] == {"recall0": pytest.approx(confusion[0][0] / sum(confusion[0])), "nothing": None}
    assert list(out["metric_declarations"]) == ["plugin_metrics.recall0", "plugin_metrics.nothing"]
    assert out["metric_declarations"]["plugin_metrics.recall0"]["label"] == "recall of class 0"
    assert m.test_probabilities.shape == (len(m.test_labels), len(m.classes)) and np.allclose(m.test_probabilities.sum(axis=1), 1)
    assert m.val_probabilities.shape[0] == len(m.val_labels) == out["val"]["n_records"]
    assert m.size["storage_bytes"] == out["size"]["storage_bytes"]
    json.dumps(out, allow_nan=False)
