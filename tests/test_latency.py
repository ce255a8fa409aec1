"""Host latency measurement and host-profile calibration."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from ecgbench.kinds.device import DeviceProfile
from ecgbench.errors import ConfigError
from ecgbench.train.export import to_onnx
from ecgbench.measure.latency import LatencyStats, _conv_kernel, calibrate_host_profile, make_session, measure_latency_against, measure_onnx_latency
from ecgbench.testing import TinyNet


@pytest.fixture(scope="module")
def tiny_onnx() -> bytes:
    torch.manual_seed(0)
    return to_onnx(TinyNet().eval(), 400)


def test_measure_latency_stats(tiny_onnx, tmp_path):
    stats = measure_onnx_latency(tiny_onnx, (1, 1, 400), threads=1, warmup=1, repeats=7)
    assert isinstance(stats, LatencyStats)
    assert (stats.repeats, stats.threads) == (7, 1)
    assert 0 < stats.median_ms <= stats.p95_ms
    assert stats.mean_ms > 0
    path = tmp_path / "m.onnx"
    path.write_bytes(tiny_onnx)
    assert measure_onnx_latency(path, (1, 1, 200), warmup=0, repeats=2).repeats == 2
    assert set(stats.to_dict()) == {"median_ms", "p95_ms", "mean_ms", "repeats", "threads"}


def test_alternate_timing_gives_a_ratio_that_follows_the_work(tiny_onnx):
    torch.manual_seed(0)
    heavy = torch.nn.Sequential(torch.nn.Conv1d(1, 64, 16, padding="same"), torch.nn.Conv1d(64, 64, 16, padding="same"))
    heavy_onnx = to_onnx(heavy.eval(), 400)  # about 26 M MACs against TinyNet's few thousand
    model, reference = measure_latency_against(heavy_onnx, tiny_onnx, (1, 1, 400), threads=1, warmup=1, repeats=9)
    assert (model.repeats, reference.repeats) == (9, 9)
    assert model.median_ms > 3 * reference.median_ms
    with pytest.raises(ConfigError, match="repeats >= 1"):
        measure_latency_against(heavy_onnx, tiny_onnx, (1, 1, 400), repeats=0)


def test_session_settings(tiny_onnx):
    session = make_session(tiny_onnx, threads=1)
    options = session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL


def test_bad_arguments_and_models_are_config_errors(tiny_onnx):
    with pytest.raises(ConfigError, match="repeats >= 1"):
        measure_onnx_latency(tiny_onnx, (1, 1, 400), repeats=0)
    with pytest.raises(ConfigError, match="onnxruntime cannot load"):
        measure_onnx_latency(b"not an onnx model", (1, 1, 400))
    two_inputs = helper.make_model(
        helper.make_graph(
            [helper.make_node("Add", ["a", "b"], ["y"])], "g",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("a", "b")],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    two_inputs.ir_version = 8
    with pytest.raises(ConfigError, match="one input"):
        measure_onnx_latency(two_inputs.SerializeToString(), (1,))


def test_micro_kernels_have_the_macs_they_claim():
    from ecgbench.measure.onnx_graph import analyze_onnx

    rng = np.random.default_rng(0)
    for groups, int8, stride in ((1, False, 1), (8, False, 2), (1, True, 1), (8, True, 2)):
        kernel = _conv_kernel(8, 8, 16, groups, int8, rng, stride)
        stats = analyze_onnx(kernel.model)
        outputs = 3000 // stride
        assert stats.macs == kernel.work == 8 * outputs * (8 // groups) * 16
        assert stats.to_dict()["totals"]["im2col_elements"] == kernel.im2col == (outputs * 8 * 16 if groups == 1 else 0)
        assert [layer.compute_dtype for layer in stats.layers if layer.macs] == ["int8" if int8 else "fp32"]


def test_conv_integer_kernel_is_what_quantize_dynamic_emits(tmp_path):
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from ecgbench.measure.latency import _conv_integer_kernel
    from ecgbench.measure.onnx_graph import analyze_onnx

    rng = np.random.default_rng(0)
    (tmp_path / "f.onnx").write_bytes(_conv_kernel(8, 8, 16, 1, False, rng).model)
    quantize_dynamic(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), per_channel=True, weight_type=QuantType.QInt8)
    emitted = next(n for n in onnx.load(str(tmp_path / "q.onnx")).graph.node if n.op_type == "ConvInteger")
    kernel = _conv_integer_kernel(8, 8, 16, 1, rng)
    (built,) = onnx.load_from_string(kernel.model).graph.node
    assert built.op_type == emitted.op_type and len(built.input) == len(emitted.input) == 4
    assert kernel.input_dtype == np.uint8
    stats = analyze_onnx(kernel.model)
    assert stats.macs == kernel.work == 8 * 3000 * 8 * 16
    assert [(layer.quantization, layer.im2col_elements) for layer in stats.layers] == [("dynamic", kernel.im2col)]
    measure_onnx_latency(kernel.model, (1, 8, 3000), warmup=0, repeats=1)  # onnxruntime runs it


def test_fit_conv_rates_recovers_known_rates():
    from ecgbench.measure.latency import _Kernel, fit_conv_rates

    kernels = [_Kernel(str(c), b"", (1,), work=c * c * 1000.0, im2col=c * 100.0) for c in (8, 16, 32, 64)]
    seconds = [k.work / 50e9 + k.im2col / 2e9 for k in kernels]  # 50 GMAC/s, 2 G values/s
    macs_per_s, im2col_per_s = fit_conv_rates(kernels, seconds)
    assert macs_per_s == pytest.approx(50e9, rel=1e-6) and im2col_per_s == pytest.approx(2e9, rel=1e-6)


def test_calibration_gives_a_valid_host_profile():
    profile, records = calibrate_host_profile(threads=1, repeats=2)
    assert isinstance(profile, DeviceProfile) and profile.name == "host"
    assert profile.calibration and "1 thread" in profile.calibration
    assert profile.sparse_kernels is False
    labels = [r["kernel"] for r in records]
    assert any(label.startswith("conv fp32") for label in labels) and any(label.startswith("conv int8") for label in labels)
    assert any(label.startswith("conv int8_dynamic") for label in labels) and any(label.endswith(" s2") for label in labels)
    for rates in (profile.macs_per_cycle.fp32, profile.macs_per_cycle.int8, profile.macs_per_cycle.int8_dynamic):
        assert all(math.isfinite(v) and v > 0 for v in rates.model_dump().values())
        assert rates.depthwise_conv_strided is not None
    assert profile.bandwidth_bytes_per_s > 0 and profile.layer_overhead_cycles > 0
