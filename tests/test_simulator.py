"""The device simulator: roofline latency, liveness RAM, energy and the fit verdict, checked by hand."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from ecgbench.kinds.device import DeviceProfile
from ecgbench.train.export import to_onnx
from ecgbench.measure.onnx_graph import analyze_onnx
from ecgbench.measure.simulator import SCHEMA, human_bytes, live_bytes_per_layer, simulate

logging.getLogger().setLevel(logging.ERROR)

RATES = {"conv": 1.0, "depthwise_conv": 1.0, "fc": 1.0, "elementwise": 1.0, "im2col": 1.0}


def make_profile(**overrides) -> DeviceProfile:
    """1 MHz, 1 MAC/cycle everywhere, 100 cycles per layer, huge bandwidth: latencies are countable by hand."""
    data = dict(
        name="toy", description="hand-countable device", core="toy core", runtime="toy runtime", sources=["test"], clock_hz=1e6,
        macs_per_cycle={"fp32": dict(RATES), "int8": dict(RATES)}, sparse_kernels=False, sparse_efficiency=0.5,
        bandwidth_bytes_per_s=1e15, flash_bytes=1024 * 1024, ram_bytes=256 * 1024, active_power_mw=10.0,
        sleep_power_uw=5.0, layer_overhead_cycles=100.0,
    )
    data.update(overrides)
    return DeviceProfile.model_validate(data)


def chain_model(samples: int = 10, activation: str = "Abs"):
    """x[1,1,L] -> Conv(1->4, k3, pad 1) -> activation -> Conv(4->2, k3, pad 1), fp32 (Abs: never fused)."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((4, 1, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((2, 4, 3)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1], name="conv1"),
        helper.make_node(activation, ["c1"], ["r"], name="act"),
        helper.make_node("Conv", ["r", "w2"], ["y"], pads=[1, 1], name="conv2"),
    ]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, samples])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[w1, w2])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_peak_ram_is_hand_computed_liveness():
    graph = analyze_onnx(chain_model(10))
    # Buffers: x 1x10x4 B = 40, c1 4x10x4 = 160, r 160, y 2x10x4 = 80.
    # conv1: x + c1 + scratch (2 x 1 x 3 x 4 = 24) = 224
    # abs:   c1 + r = 320 (x is dead)
    # conv2: r + y + scratch (2 x 4 x 3 x 4 = 96) = 336
    assert live_bytes_per_layer(graph) == [224, 320, 336]
    assert simulate(graph, make_profile()).peak_ram_bytes == 336


def test_a_fused_relu_allocates_no_buffer():
    graph = analyze_onnx(chain_model(10, activation="Relu"))
    # The Relu runs in conv1's output stage: conv2 reads c1 itself, so r never exists.
    assert graph.layers[1].op_class == "free"
    assert live_bytes_per_layer(graph) == [224, 160, 336]
    assert simulate(graph, make_profile()).per_layer[1].cycles == 0


def test_peak_ram_keeps_a_residual_input_alive():
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((1, 1, 1)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Conv", ["a", "w"], ["b"], name="conv"),
        helper.make_node("Add", ["a", "b"], ["y"], name="add"),
    ]
    graph = helper.make_graph(nodes, "res", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 25])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[w])
    stats = analyze_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    # each buffer is 100 B; relu: x + a; conv: a + b (1x1, no scratch); add: a + b + y
    assert live_bytes_per_layer(stats) == [200, 200, 300]


def test_compute_bound_latency_by_hand():
    graph = analyze_onnx(chain_model(10))
    prediction = simulate(graph, make_profile())
    # conv1 4x10x1x3 = 120 MACs + 10x1x3 = 30 im2col values, abs 40 ops,
    # conv2 2x10x4x3 = 240 MACs + 10x4x3 = 120 im2col values; 3 layers x 100 cycles; 1 MHz.
    assert [p.work for p in prediction.per_layer] == [120, 40, 240]
    assert [p.compute_cycles for p in prediction.per_layer] == [150, 40, 360]
    assert prediction.latency_ms == pytest.approx((150 + 40 + 360 + 300) / 1e6 * 1e3)
    assert {p.bound for p in prediction.per_layer} == {"compute"}


def test_roofline_turns_memory_bound_when_bandwidth_is_tiny():
    graph = analyze_onnx(chain_model(10))
    slow = make_profile(bandwidth_bytes_per_s=1000.0)
    prediction = simulate(graph, slow)
    assert {p.bound for p in prediction.per_layer} == {"memory"}
    conv1 = prediction.per_layer[0]
    moved = 40 + 160 + 12 * 4  # input, output, weights
    assert conv1.memory_cycles == pytest.approx(moved / 1000.0 * 1e6)
    assert conv1.cycles == pytest.approx(conv1.memory_cycles + 100)
    assert prediction.latency_ms > simulate(graph, make_profile()).latency_ms * 100


def test_energy_scales_with_latency_and_a_day_adds_sleep():
    graph = analyze_onnx(chain_model(10))
    slow, fast = simulate(graph, make_profile()), simulate(graph, make_profile(clock_hz=2e6))
    assert fast.latency_ms == pytest.approx(slow.latency_ms / 2)
    assert fast.energy_mj == pytest.approx(slow.energy_mj / 2)
    assert slow.energy_mj == pytest.approx(10.0 * slow.latency_ms / 1e3)  # mW x s = mJ
    day = simulate(graph, make_profile(), screening_interval_min=10.0)
    active_s = 144 * day.latency_ms / 1e3
    assert day.inferences_per_day == 144
    assert day.energy_per_day_j == pytest.approx(active_s * 10e-3 + (86400 - active_s) * 5e-6)
    assert day.duty_cycle == pytest.approx(active_s / 86400)


def test_too_large_model_does_not_fit_and_says_why():
    graph = analyze_onnx(chain_model(10))
    prediction = simulate(graph, make_profile(), flash_bytes=2_000_000)
    assert not prediction.fits
    assert prediction.why == "needs 2.00 MB flash, has 1.05 MB"
    assert prediction.flash_source == "given" and prediction.flash_format == ""
    tiny_ram = simulate(graph, make_profile(ram_bytes=300))
    assert not tiny_ram.fits and tiny_ram.why == "needs 336 B RAM, has 300 B"
    fits = simulate(graph, make_profile())
    assert fits.fits and fits.why == "" and fits.flash_bytes == (12 + 24) * 4 and fits.flash_source == "parameters"


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv1d(1, 8, 5, padding=2)
        self.conv2 = torch.nn.Conv1d(8, 8, 5, padding=2)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean(dim=2))


def test_int8_is_faster_than_fp32_on_a_profile_with_simd_int8(registry, tmp_path):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    class Reader:
        def __init__(self):
            rng = np.random.default_rng(0)
            self.feeds = iter([{"ecg": rng.standard_normal((1, 1, 200)).astype(np.float32)} for _ in range(3)])

        def get_next(self):
            return next(self.feeds, None)

    torch.manual_seed(0)
    fp32 = tmp_path / "fp32.onnx"
    fp32.write_bytes(to_onnx(Net().eval(), 200))
    int8 = tmp_path / "int8.onnx"
    quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, weight_type=QuantType.QInt8, activation_type=QuantType.QInt8)
    nrf = registry.get("devices", "nrf52840")
    assert nrf.macs_per_cycle.int8.conv > nrf.macs_per_cycle.fp32.conv
    fp32_pred = simulate(analyze_onnx(fp32, (1, 1, 9000)), nrf)
    int8_pred = simulate(analyze_onnx(int8, (1, 1, 9000)), nrf)
    assert int8_pred.latency_ms < fp32_pred.latency_ms
    assert int8_pred.peak_ram_bytes < fp32_pred.peak_ram_bytes  # int8 activation buffers
    assert int8_pred.energy_mj < fp32_pred.energy_mj


def test_unstructured_sparsity_only_helps_with_sparse_kernels():
    torch.manual_seed(0)
    dense_net, sparse_net = Net().eval(), Net().eval()
    sparse_net.load_state_dict(dense_net.state_dict())
    with torch.no_grad():
        sparse_net.conv2.weight[:6] = 0.0  # 75 % of conv2's weights
    dense, sparse = analyze_onnx(to_onnx(dense_net, 100), (1, 1, 100)), analyze_onnx(to_onnx(sparse_net, 100), (1, 1, 100))
    no_kernels = make_profile()
    assert simulate(sparse, no_kernels).latency_ms == simulate(dense, no_kernels).latency_ms
    with_kernels = make_profile(sparse_kernels=True, sparse_efficiency=0.5)
    conv2 = simulate(sparse, with_kernels).per_layer[2]
    assert conv2.sparse and conv2.work == 8 * 100 * 8 * 5 // 4
    assert conv2.compute_cycles == pytest.approx(conv2.work / 0.5 + 100 * 8 * 5)  # + im2col values at 1 per cycle
    # 25 % sparsity at half efficiency would be slower than dense: the dense kernel is kept.
    with torch.no_grad():
        sparse_net.conv2.weight[:6] = dense_net.conv2.weight[:6]
        sparse_net.conv2.weight[:2] = 0.0
    mild = simulate(analyze_onnx(to_onnx(sparse_net, 100), (1, 1, 100)), with_kernels)
    assert not mild.per_layer[2].sparse and not mild.sparse_kernels_used


def conv_integer_model(samples: int = 10):
    """x uint8 [1,2,L] -> ConvInteger(2->4, k3, pad 1) -> y int32: a dynamic-quantization kernel, 4 x L x 2 x 3 MACs."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.integers(-127, 128, (4, 2, 3)).astype(np.int8), "w"),
             numpy_helper.from_array(np.array(128, np.uint8), "x_zp"), numpy_helper.from_array(np.array(0, np.int8), "w_zp")]
    node = helper.make_node("ConvInteger", ["x", "w", "x_zp", "w_zp"], ["y"], pads=[1, 1], name="conv")
    graph = helper.make_graph([node], "dynamic", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 2, samples])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, None)], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_dynamic_int8_layers_use_the_int8_dynamic_rates():
    graph = analyze_onnx(conv_integer_model(10))
    dynamic = {"conv": 0.25, "depthwise_conv": 1.0, "fc": 1.0, "im2col": 0.5}
    profile = make_profile(macs_per_cycle={"fp32": dict(RATES), "int8": dict(RATES), "int8_dynamic": dynamic})
    prediction = simulate(graph, profile)
    (conv,) = prediction.per_layer
    # 4 x 10 x 2 x 3 = 240 MACs at 0.25/cycle + 10 x 2 x 3 = 60 im2col values at 0.5/cycle; + 100 cycles dispatch.
    assert (conv.precision, conv.work, conv.compute_cycles) == ("int8_dynamic", 240, 240 / 0.25 + 60 / 0.5)
    assert prediction.latency_ms == pytest.approx((960 + 120 + 100) / 1e6 * 1e3)
    assert prediction.notes == []


def test_dynamic_int8_falls_back_to_int8_rates_with_a_note():
    graph = analyze_onnx(conv_integer_model(10))
    prediction = simulate(graph, make_profile())  # the toy profile gives no int8_dynamic rates
    (conv,) = prediction.per_layer
    assert conv.precision == "int8_dynamic" and conv.compute_cycles == 240 + 60  # the int8 rates: 1 per cycle
    assert len(prediction.notes) == 1 and "no int8_dynamic rates" in prediction.notes[0]
    assert prediction.to_dict()["notes"] == prediction.notes


def depthwise_model(stride: int, samples: int = 20):
    """x [1,4,L] -> depthwise Conv(4, k3, pad 1, stride) -> y: 4 x outputs x 3 MACs."""
    w = numpy_helper.from_array(np.ones((4, 1, 3), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1], group=4, strides=[stride], name="dw")
    graph = helper.make_graph([node], "dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, samples])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_strided_depthwise_uses_its_own_rate_when_the_profile_gives_one():
    rates = {**RATES, "depthwise_conv": 2.0, "depthwise_conv_strided": 0.5}
    profile = make_profile(macs_per_cycle={"fp32": rates, "int8": dict(RATES)})
    stride1, stride2 = (simulate(analyze_onnx(depthwise_model(s)), profile).per_layer[0] for s in (1, 2))
    assert (stride1.work, stride1.compute_cycles) == (4 * 20 * 3, 240 / 2.0)
    assert (stride2.work, stride2.compute_cycles) == (4 * 10 * 3, 120 / 0.5)
    without = make_profile(macs_per_cycle={"fp32": {**RATES, "depthwise_conv": 2.0}, "int8": dict(RATES)})
    fallback = simulate(analyze_onnx(depthwise_model(2)), without)
    assert fallback.per_layer[0].compute_cycles == 120 / 2.0 and fallback.notes == []  # documented default, no note


def test_to_dict_schema():
    doc = simulate(analyze_onnx(chain_model(10)), make_profile()).to_dict()
    required = {
        "latency_ms": float, "energy_mj": float, "energy_per_day_j": float, "peak_ram_bytes": int, "flash_bytes": int,
        "fits": bool, "why": str, "per_layer": list, "device": str, "inferences_per_day": float, "duty_cycle": float,
        "ram_capacity_bytes": int, "flash_capacity_bytes": int, "flash_source": str, "sparse_kernels_used": bool,
        "notes": list, "flash_format": str, "flash_runtime": str,
    }
    assert set(doc) == set(required) | {"schema"} and doc["schema"] == SCHEMA
    assert doc["notes"] == []  # a float model on a profile with every rate it needs
    for key, kind in required.items():
        assert isinstance(doc[key], kind), key
    layer_keys = {"name", "op_type", "op_class", "precision", "work", "compute_cycles", "memory_cycles", "cycles",
                  "latency_ms", "bound", "sparse", "live_bytes"}
    assert all(set(layer) == layer_keys for layer in doc["per_layer"])
    assert sum(layer["latency_ms"] for layer in doc["per_layer"]) == pytest.approx(doc["latency_ms"])


def test_sizes_are_decimal_as_everywhere_else():
    assert human_bytes(1024 * 1024) == "1.05 MB"
    assert human_bytes(262144) == "262.1 kB"
    assert human_bytes(300) == "300 B"


def test_an_fp16_graph_needs_the_ram_of_its_fp32_form_since_no_profile_computes_in_fp16(tmp_path):
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from ecgbench_plugins.compressors.quantization import topologically_sort

    model = torch.nn.Sequential(torch.nn.Conv1d(1, 8, 5, padding=2), torch.nn.ReLU(), torch.nn.Conv1d(8, 8, 5, padding=2))
    fp32 = to_onnx(model, samples=500)
    converted = convert_float_to_float16(onnx.load_from_string(fp32), keep_io_types=True)
    topologically_sort(converted.graph)  # as the fp16 compressor does
    fp16 = converted.SerializeToString()
    graph32, graph16 = analyze_onnx(fp32, input_shape=(1, 1, 500)), analyze_onnx(fp16, input_shape=(1, 1, 500))
    assert not graph16.unshaped
    assert graph16.buffer_bytes["/0/Conv_output_0"] == 8 * 500 * 2  # as stored in the graph: 2 bytes an element
    profile = make_profile()
    assert simulate(graph16, profile).peak_ram_bytes >= simulate(graph32, profile).peak_ram_bytes
