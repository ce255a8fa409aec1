"""``ecgbench export --format tflite``: an integer LiteRT flatbuffer (int8, int16 logits), its C array, and its check against ONNX.

The converter packages are the optional extra ``tflite``; without it the
tests that convert skip (with the install command as reason), and the
others check the C array, the input cropping and the missing-extra error.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import textwrap

import numpy as np
import pytest

from ecgbench.cli.main import main
from ecgbench.errors import ConfigError, EcgbenchError
from ecgbench.run.tflite_export import fixed_length
from ecgbench.train.tflite import c_array_files, percentile_ranges, require_tflite

HAVE_TFLITE = all(importlib.util.find_spec(m) is not None for m in ("litert_torch", "ai_edge_quantizer", "ai_edge_litert"))
needs_tflite = pytest.mark.skipif(not HAVE_TFLITE, reason="optional extra [tflite] not installed: pip install -e '.[tflite]' torch==<your torch>")
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not found")

MAIN_C = r"""
#include <stdint.h>
#include <stdio.h>
#include "model_data.h"
int main(void) {
  if ((uintptr_t)g_model % 16 != 0) return 3;
  fwrite(g_model, 1, g_model_len, stdout);
  return 0;
}
"""


def compile_and_dump(files: dict[str, str], folder) -> bytes:
    """Compile the C array with a main that checks its alignment and writes it out; return what it wrote."""
    for name, text in files.items():
        (folder / name).write_text(text)
    (folder / "main.c").write_text(MAIN_C)
    subprocess.run(["gcc", "-std=c11", "-Wall", "-Werror", "-c", "model_data.c", "-o", "model_data.o"], cwd=folder, check=True)
    subprocess.run(["gcc", "-std=c11", "-Wall", "-Werror", "main.c", "model_data.o", "-o", "dump"], cwd=folder, check=True)
    if shutil.which("g++"):  # the same source as C++ (TFLite Micro's own examples are C++)
        subprocess.run(["g++", "-std=c++11", "-Wall", "-Werror", "-x", "c++", "-c", "model_data.c", "-o", "model_data_cc.o"], cwd=folder, check=True)
    result = subprocess.run(["./dump"], cwd=folder, capture_output=True)
    assert result.returncode == 0, "the array is not 16-byte aligned" if result.returncode == 3 else result.stderr
    return result.stdout


@needs_gcc
def test_c_array_compiles_aligned_and_holds_the_bytes(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 1001, dtype=np.uint8).tobytes()
    files = c_array_files(data)
    assert set(files) == {"model_data.h", "model_data.c"}
    assert "extern const unsigned int g_model_len;" in files["model_data.h"]
    assert compile_and_dump(files, tmp_path) == data


def test_c_array_name_must_be_a_c_identifier():
    with pytest.raises(ConfigError, match="not a C identifier"):
        c_array_files(b"\0", name="model-1")


def test_operators_firmware_cannot_run_are_named():
    from ecgbench.train.tflite import TFLiteSummary

    summary = TFLiteSummary([1, 1, 8], "int8", "int8", {"int8": 3}, {"CONV_2D": 2, "GELU": 1, "MEAN": 1})
    assert summary.not_in_tflite_micro == ["GELU"] and summary.integer_only and summary.activations == "int8"
    assert TFLiteSummary([1, 1, 8], "int16", "int16", {}, {}).integer_only
    # 16x8 graphs are held against the int16 kernels: REDUCE_MAX has an int8 kernel, not an int16 one.
    ops = {"CONV_2D": 2, "REDUCE_MAX": 1, "RESHAPE": 1}
    assert TFLiteSummary([1, 1, 8], "int16", "int16", {}, ops).not_in_tflite_micro == ["REDUCE_MAX"]
    assert TFLiteSummary([1, 1, 8], "int8", "int16", {}, ops).not_in_tflite_micro == []
    assert not TFLiteSummary([1, 1, 8], "float32", "int8", {}, {}).integer_only
    assert not TFLiteSummary([1, 1, 8], "int8", "int16", {}, {}, float_tensors=["x"]).integer_only


def test_percentile_ranges_drop_an_outlying_record():
    maxima = [np.array([1.0 + i / 100]) for i in range(99)] + [np.array([50.0])]  # one record reaches 50
    qsvs = {"act": {"min": np.array([-50.0]), "max": np.array([50.0]), "mins": [-m for m in maxima], "maxs": maxima}, "weight": {"min": -2, "max": 3}}
    assert percentile_ranges(qsvs, 100.0)["act"] == {"min": -50.0, "max": 50.0}  # 100: the global range
    clipped = percentile_ranges(qsvs, 95.0)["act"]
    assert 1.9 < clipped["max"][0] < 2.0 and clipped["min"][0] == -clipped["max"][0] and clipped["max"].dtype == np.float32
    assert percentile_ranges(qsvs, 95.0)["weight"] == {"min": -2, "max": 3}  # no per-record ranges: kept


def test_records_are_centre_cropped_or_zero_padded():
    long = np.arange(10, dtype=np.float32)
    assert fixed_length(long, 4).tolist() == [[[3, 4, 5, 6]]]
    assert fixed_length(long[:2], 4).tolist() == [[[0, 1, 0, 0]]]


def test_without_the_extra_export_names_it(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "litert_torch" else real(name, *a))
    with pytest.raises(ConfigError, match=r"litert_torch.*\[tflite\]"):
        require_tflite()
    assert main(["export", "--run", "any", "--cell", "dense"]) == 2
    assert "pip install -e '.[tflite]'" in capsys.readouterr().err


def test_batchnorm_folds_into_convolutions_with_the_same_outputs():
    import torch

    from ecgbench.testing import TinyNet
    from ecgbench.train.tflite import fold_batchnorm

    torch.manual_seed(0)
    model = TinyNet(8).eval()
    for bn in (model.bn1, model.bn2):  # statistics and affine terms far from the identity
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.2, 3), bn.weight.data.uniform_(0.5, 2), bn.bias.data.uniform_(-1, 1)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules())  # the original is left as it was
    x = torch.randn(2, 1, 400)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)


def pre_activation_net_with_a_dead_channel():
    """Conv, ReLU, then a BatchNorm that stays a MUL and ADD in LiteRT; channel 0 of the first convolution is
    pruned to zeros, so its BatchNorm channel sees a constant input (running variance 0), as in pruned hannun34."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(1, 4, 9, padding=4), nn.ReLU(), nn.BatchNorm1d(4, momentum=None),  # statistics: the plain average
        nn.Conv1d(4, 6, 9, padding=4), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(6, 3),
    )
    with torch.no_grad():
        model[0].weight[0] = 0.0
        model[0].bias[0] = 0.0
        model.train()
        for _ in range(20):  # BatchNorm statistics of the data; channel 0's variance stays exactly 0
            model(torch.randn(16, 1, 400))
    assert model[2].running_var[0] == 0 and model[2].running_var[1:].min() > 1e-3
    return model.eval()


def test_constant_batchnorm_channels_are_silenced_with_the_same_outputs():
    import torch

    from ecgbench.train.tflite import fold_batchnorm

    model = pre_activation_net_with_a_dead_channel()
    folded = fold_batchnorm(model)
    bn = next(m for m in folded.modules() if isinstance(m, torch.nn.BatchNorm1d))  # the pre-activation one stays
    assert bn.weight[0] == 0 and torch.equal(bn.weight[1:], model[2].weight[1:])
    assert model[2].weight[0] != 0  # the original is left as it was
    x = torch.randn(8, 1, 400)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)


@needs_tflite
@pytest.mark.slow
def test_a_dead_channel_does_not_spoil_the_int8_flatbuffer(monkeypatch):
    """A dead channel's float scale (gamma / sqrt(eps)) in a per-tensor int8 MUL would round the live channels' away."""
    import torch

    import ecgbench.train.tflite as tflite

    model = pre_activation_net_with_a_dead_channel()
    calibration = [np.random.default_rng(i).standard_normal((1, 1, 400)).astype(np.float32) for i in range(16)]
    inputs = [np.random.default_rng(100 + i).standard_normal((1, 1, 400)).astype(np.float32) for i in range(32)]
    with torch.no_grad():
        reference = torch.cat([model(torch.from_numpy(x)) for x in inputs]).numpy()
    spread = reference.max() - reference.min()

    def error(flatbuffer: bytes) -> float:
        return float(np.median(np.abs(tflite.tflite_logits(flatbuffer, inputs) - reference)) / spread)

    silenced = error(tflite.to_tflite_int8(model, 400, calibration, percentile=100))
    monkeypatch.setattr(tflite, "silence_constant_channels", lambda m: m)
    unsilenced = error(tflite.to_tflite_int8(model, 400, calibration, percentile=100))
    assert silenced < 0.03 and unsilenced > 3 * silenced, (silenced, unsilenced)


@pytest.fixture(scope="module")
def trained():
    """TinyNet trained on separable random records: its predictions mean something."""
    import torch

    from ecgbench.testing import TinyNet, fast_recipe, make_random_splits
    from ecgbench.train.trainer import Trainer

    splits = make_random_splits(n_train=64, n_eval=32, samples=400)
    torch.manual_seed(0)
    model = TinyNet(8)
    Trainer(splits, fast_recipe(epochs=4), seed=0).fit(model)
    return model.eval(), splits


@needs_tflite
@pytest.mark.slow
def test_tiny_model_is_int8_with_int16_logits_and_agrees_with_onnx(trained, tmp_path):
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    from ecgbench.train.export import to_onnx
    from ecgbench.train.tflite import summarize, tflite_logits, to_tflite_int8

    model, splits = trained
    calibration = [splits.train.signal(i).reshape(1, 1, -1) for i in range(32)]
    flatbuffer = to_tflite_int8(model, 400, calibration)
    assert flatbuffer[4:8] == b"TFL3"  # the flatbuffer's file identifier

    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int16 and list(inp["shape"]) == [1, 1, 400]
    assert out["quantization"][1] == 0  # int16 is symmetric: logit = scale * q
    kinds = {np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    assert kinds <= {"int8", "int16", "int32", "int64"}, kinds  # int16: the head's input and logits; int32/64: biases and shapes
    ops = [op["op_name"] for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]
    assert ops[-2:] == ["QUANTIZE", "FULLY_CONNECTED"]  # int8 features to int16, the head in 16x8, no requantizing to int8 after it
    per_channel = [t for t in interpreter.get_tensor_details() if len(t["quantization_parameters"]["scales"]) > 1]
    assert any(np.dtype(t["dtype"]) == np.int8 and len(t["shape"]) == 4 for t in per_channel)  # conv weights: a scale per channel
    summary = summarize(flatbuffer)
    assert summary.integer_only and summary.activations == "int8" and not summary.float_tensors and "CONV_2D" in summary.operators
    assert "MUL" not in summary.operators and "ADD" not in summary.operators  # BatchNorm folded into the convolutions
    assert summary.not_in_tflite_micro == []

    inputs = [splits.test.signal(i).reshape(1, 1, -1) for i in range(len(splits.test))]
    session = ort.InferenceSession(to_onnx(model, samples=400), providers=["CPUExecutionProvider"])
    reference = np.concatenate([session.run(None, {"ecg": x})[0] for x in inputs])
    logits = tflite_logits(flatbuffer, inputs)
    assert np.mean(logits.argmax(1) == reference.argmax(1)) >= 0.9
    spread = reference.max() - reference.min()
    int8_error = np.median(np.abs(logits - reference))
    assert int8_error < 0.02 * spread  # int8 steps; an outlying record may saturate an activation
    top2 = np.sort(logits, axis=1)[:, -2:]
    assert np.all(top2[:, 1] > top2[:, 0])  # int16 logits: no two tie for the top class

    # 16x8: int16 input and activations, int8 weights; the logits come closer to ONNX's.
    wide = to_tflite_int8(model, 400, calibration, activation_bits=16)
    summary16 = summarize(wide)
    assert summary16.integer_only and summary16.activations == "int16" and summary16.output_dtype == "int16"
    assert summary16.tensor_dtypes.get("int8", 0) > 0  # the weights stay int8
    assert np.median(np.abs(tflite_logits(wide, inputs) - reference)) < int8_error


@needs_tflite
@needs_gcc
@pytest.mark.slow
def test_c_array_of_a_real_flatbuffer_compiles(trained, tmp_path):
    from ecgbench.train.tflite import to_tflite_int8

    model, splits = trained
    flatbuffer = to_tflite_int8(model, 400, [splits.train.signal(0).reshape(1, 1, -1)])
    assert compile_and_dump(c_array_files(flatbuffer), tmp_path) == flatbuffer


@needs_tflite
@pytest.mark.slow
def test_weights_over_256_kb_stay_inside_the_flatbuffer():
    """From 256 KB of weights on, the quantizer stores them past the flatbuffer's end by offset; the export inlines them."""
    import torch
    from ai_edge_litert.tools import flatbuffer_utils

    from ecgbench.train.tflite import summarize, tflite_logits, to_tflite_int8

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(1, 64, 9), torch.nn.ReLU(), torch.nn.Conv1d(64, 4500, 1), torch.nn.AdaptiveAvgPool1d(1), torch.nn.Flatten(), torch.nn.Linear(4500, 4))
    x = np.random.default_rng(0).normal(size=(1, 1, 64)).astype(np.float32)
    flatbuffer = to_tflite_int8(model.eval(), 64, [x])
    buffers = flatbuffer_utils.convert_bytearray_to_object(flatbuffer).buffers
    assert not any(b.offset for b in buffers) and max(len(b.data) for b in buffers if b.data is not None) == 64 * 4500
    assert summarize(flatbuffer).integer_only and tflite_logits(flatbuffer, [x]).shape == (1, 4)


SUITE = """
name: tflite-test
data: {fs_hz: 100, window_s: 5, split: {val: 0.25, test: 0.25}}
training: {epochs: 3, batch_size: 8, num_threads: 1, patience: 0}
measure: {bootstrap_resamples: 20, latency_repeats: 2, latency_warmup: 1, input_s: 10, deploy_window_s: 5}
matrix:
  datasets: [synthetic: {n_records: 48, max_duration_s: 20}]
  models: [dscnn: {width: 4, blocks: 3}]
  compressors: [dense, int8_static, {label: distill, steps: [distill: {student: {dscnn: {width: 2, blocks: 2}}}]}]
  devices: []
  seeds: [0]
report: {formats: [json]}
"""


@needs_tflite
@pytest.mark.slow
def test_export_of_stored_cells(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ECGBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suite.yaml").write_text(textwrap.dedent(SUITE))
    assert main(["-q", "run", "suite.yaml"]) == 0
    capsys.readouterr()

    code = main(["export", "--run", "tflite-test", "--cell", "dense", "--format", "tflite", "--out", "out", "--json"])
    summary = json.loads(capsys.readouterr().out)
    check = summary["check"]
    assert code == (0 if check["within_tolerance"] else 1)
    assert check["within_tolerance"] == (abs(check["delta_points"]) <= 0.5)
    assert check["records"] == 12 and check["agreement"] >= 0.75 and check["onnx"].endswith("model.onnx")
    assert check["disagreeing_records"] == round((1 - check["agreement"]) * 12)
    low, high = check["delta_points_ci95"]
    assert low <= high and (low == high == 0) == (check["disagreeing_records"] == 0)  # a paired interval: no differing record, no spread
    assert check["input"] == "5-s windows, hop 5 s, mean_prob, as the cell was measured"  # the cell's windowed deployment
    assert summary["integer_only"] and summary["input"]["shape"] == [1, 1, 500] and summary["input"]["dtype"] == "int8"
    assert summary["input"]["scale"] > 0 and -128 <= summary["input"]["zero_point"] <= 127 and summary["output"]["scale"] > 0
    assert summary["activations"] == "int8" and summary["output"]["dtype"] == "int16" and summary["output"]["zero_point"] == 0
    assert summary["operators_not_in_tflite_micro"] == [] and "DEPTHWISE_CONV_2D" in summary["operators"]
    assert summary["input"]["preprocessing"]["fs_hz"] == 100 and summary["output"]["classes"] == ["N", "A", "O", "~"]
    flatbuffer = (tmp_path / "out" / "model.tflite").read_bytes()
    assert summary["flash_bytes"] == len(flatbuffer) and summary["flash_runtime"] == "tflite-micro"
    assert summary["calibration"] == {"split": "train", "records": 24, "percentile": 95.0}
    assert f"const unsigned int g_model_len = {len(flatbuffer)};" in (tmp_path / "out" / "model_data.c").read_text()
    assert json.loads((tmp_path / "out" / "export.json").read_text()) == summary
    assert summary["source"]["replaced_steps"] == [] and "'dense'" in summary["source"]["weights"]

    # An ONNX-quantized cell: its fp32 weights, quantized by LiteRT instead; people are told so.
    main(["export", "--run", "tflite-test", "--cell", "int8_static", "--out", "out8", "--check-records", "4", "--input-s", "10"])
    text = capsys.readouterr().out
    assert "steps int8_static leave PyTorch" in text and "check on 4 test records (each record centre-cropped or zero-padded to 10 s)" in text
    quantized = json.loads((tmp_path / "out8" / "export.json").read_text())
    assert quantized["input"]["shape"] == [1, 1, 1000]
    # The flatbuffer is made from the float weights before int8_static: the check compares with those, and reports the cell's own ONNX.
    assert "before int8_static" in quantized["check"]["onnx"] and 0 <= quantized["check"]["cell_onnx_challenge_f1"] <= 1
    assert check["cell_onnx_challenge_f1"] is None  # the dense cell's ONNX model is the reference itself

    # Settings are compared on validation records, and the percentile reaches the ranges.
    main(["export", "--run", "tflite-test", "--cell", "dense", "--out", "outv", "--check-split", "val", "--calibration-percentile", "100", "--json"])
    val = json.loads(capsys.readouterr().out)
    assert val["check"]["split"] == "val" and val["check"]["records"] == 12 and val["calibration"]["percentile"] == 100.0
    assert val["input"]["scale"] > summary["input"]["scale"]  # the global range of the input is wider than its 95th percentile
    main(["export", "--run", "tflite-test", "--cell", "dense", "--out", "out16", "--check-split", "val", "--activations", "int16", "--json"])
    wide = json.loads(capsys.readouterr().out)
    assert wide["activations"] == "int16" and wide["input"]["dtype"] == "int16" and wide["integer_only"]
    assert wide["calibration"]["percentile"] == 100.0  # int16 steps are fine enough for the global range: nothing clipped
    assert main(["export", "--run", "tflite-test", "--cell", "dense", "--out", "outx", "--calibration-percentile", "40"]) == 2
    assert "calibration percentile 40" in capsys.readouterr().err

    # A distilled cell exports its student, not the suite's model.
    main(["export", "--run", "tflite-test", "--cell", "distill", "--out", "outd", "--check-records", "4", "--json"])
    student = json.loads(capsys.readouterr().out)
    assert student["source"]["model"] == {"name": "dscnn", "params": {"width": 2, "blocks": 2}}
    assert summary["source"]["model"] == {"name": "dscnn", "params": {"width": 4, "blocks": 3}}
    assert student["flash_bytes"] < summary["flash_bytes"]

    assert main(["export", "--run", "tflite-test", "--cell", "magnitude"]) == 2
    assert "its pipelines: dense, int8_static, distill" in capsys.readouterr().err

    # A step whose model is not in the cache (structured pruning never is) is named, with the reason.
    import dataclasses

    from ecgbench.registry import process_registry
    from ecgbench.run.store import ResultStore
    from ecgbench.run.stored_cell import find_cell, load_stored_cell

    results = ResultStore.open_existing(tmp_path / "home" / "results.sqlite").run_results("tflite-test")
    row = find_cell(results, "dense")
    # A suite name resolves to its latest run; one just started has nothing finished: the error says what to pass.
    started = dataclasses.replace(results, run=dataclasses.replace(results.run, status="running"), cells=[])
    with pytest.raises(ConfigError, match="is running: pass the id of the run that made the cell"):
        find_cell(started, "dense")
    structured = dataclasses.replace(row, config={**row.config, "steps": [{"name": "structured", "params": {"ratio": 0.5}}]})
    with pytest.raises(EcgbenchError, match="step 1 'structured' is not in the artifact cache"):
        load_stored_cell(structured, tmp_path / "home", process_registry())


REAL_SUITE = """
name: tflite-real
data: {fs_hz: 100, window_s: 10, split: {val: 0.2, test: 0.3}}
training: {epochs: 3, batch_size: 16, lr: 3e-3, num_threads: 1, patience: 0}
measure: {bootstrap_resamples: 20, latency_repeats: 2, latency_warmup: 1, input_s: 30}
matrix:
  datasets: [cinc2017: {path: records}]
  models: [dscnn: {width: 8, blocks: 4}]
  compressors: [dense]
  devices: []
  seeds: [0]
report: {formats: [json]}
"""


@needs_tflite
@pytest.mark.realdata
@pytest.mark.slow
def test_export_on_real_records(cinc_dir, tmp_path, monkeypatch, capsys):
    """160 CinC 2017 records (40 of each class): the int8 flatbuffer classifies the test records as ONNX does."""
    monkeypatch.setenv("ECGBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    reference = [line.split(",") for line in (cinc_dir / "REFERENCE.csv").read_text().split()]
    chosen = [r for label in "NAO~" for r in [rec for rec, lab in reference if lab == label][:40]]
    (tmp_path / "records").mkdir()
    for record in chosen:
        for suffix in (".hea", ".mat"):
            (tmp_path / "records" / (record + suffix)).symlink_to(cinc_dir / (record + suffix))
    (tmp_path / "records" / "RECORDS").write_text("\n".join(chosen) + "\n")
    (tmp_path / "records" / "REFERENCE.csv").write_text("".join(f"{r},{lab}\n" for r, lab in reference if r in set(chosen)))
    (tmp_path / "suite.yaml").write_text(textwrap.dedent(REAL_SUITE))
    assert main(["-q", "run", "suite.yaml"]) == 0
    capsys.readouterr()

    main(["export", "--run", "tflite-real", "--cell", "dense", "--out", "out", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["integer_only"] and summary["input"]["shape"] == [1, 1, 3000]
    assert summary["check"]["records"] == 48 and summary["check"]["agreement"] >= 0.9, summary["check"]
