"""Calibration on measured boards (MLPerf Tiny data, leave-one-out) and the simulator's command-line edges it relies on.

The full calibration runs in ``benchmarks/bench_mcu_validation.py``; these tests
use tiny models and synthetic boards so they run in seconds.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from ecgbench.cli.main import main
from ecgbench.errors import ConfigError
from ecgbench.kinds.device import HOST_PROFILE_ENV, DeviceProfile, load_profile
from ecgbench.measure import mcu_calibration as cal
from ecgbench.measure.onnx_graph import analyze_onnx
from ecgbench.measure.simulator import simulate
from ecgbench_plugins.devices.builtin_profiles import PROFILE_DIR

logging.getLogger().setLevel(logging.ERROR)
pytestmark = pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "benchmarks" / "data" / "mlperf_tiny_measurements.csv"
MEASURED_PROFILES = PROFILE_DIR / "mlperf_tiny"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(HOST_PROFILE_ENV, raising=False)


# --- the measurements and the measured-board profiles -----------------------------------------------------------


def test_measurements_load_and_name_their_published_source():
    rows = cal.load_measurements(DATA)
    assert len(rows) >= 40
    assert {r.model for r in rows} == {"kws", "ic", "ad", "vww"}
    assert {"stm32l4r5", "stm32u575", "stm32h7a3", "nrf5340"} <= {r.board for r in rows}
    for r in rows:
        # repo@40-hex-commit:path, and only rounds up to v1.0 (later rounds stay out for independent checks)
        assert re.match(r"mlcommons/tiny_results_v(0\.5|0\.7|1\.0)@[0-9a-f]{40}:\S+", r.source), r.source
        assert r.latency_ms > 0 and (r.energy_uj is None or r.energy_uj > 0)
    assert sum(r.energy_uj is not None for r in rows) >= 12


def test_every_measured_system_has_a_profile_naming_engine_core_and_datasheet_power():
    for system in {r.system for r in cal.load_measurements(DATA)}:
        path = MEASURED_PROFILES / f"{system}.yaml"
        profile = load_profile(path)
        assert profile.name == system and profile.runtime, path
        assert cal.core_family(profile) in ("cortex_m4", "cortex_m33", "cortex_m7"), path
        datasheet = re.search(r"(?m)^# datasheet_power_mw: ([0-9.]+) = run-mode current x clock x supply: "
                              r"([0-9.]+) uA/MHz x ([0-9.]+) MHz x ([0-9.]+) V", path.read_text())
        assert datasheet, f"{path} states no datasheet power"
        mw, ua_mhz, mhz, volts = map(float, datasheet.groups())
        assert mhz * 1e6 == profile.clock_hz  # the power is at the clock the board ran
        assert mw == pytest.approx(ua_mhz * mhz * volts / 1e3, rel=1e-3)
        assert profile.active_power_mw >= mw  # the inference factor only adds what the datasheet loop leaves out


def test_builtin_profiles_with_a_datasheet_power_apply_the_fitted_inference_factor():
    # A datasheet run-mode current is a CoreMark-class loop; measured inference power is higher.
    report = (REPO / "reports" / "mcu-validation.md").read_text(encoding="utf-8")
    factor = float(re.search(r"Power factor fitted on all energy runs: ([0-9]+\.[0-9]+)", report).group(1))
    scaled = []
    for path in sorted(PROFILE_DIR.glob("*.yaml")):
        datasheet = re.search(r"(?m)^# datasheet_power_mw: ([0-9.]+) = ", path.read_text(encoding="utf-8"))
        if datasheet:
            assert load_profile(path).active_power_mw == pytest.approx(float(datasheet.group(1)) * factor, rel=0.01), path
            scaled.append(path.stem)
    assert {"nrf52840", "implant_m0plus"} <= set(scaled)


def test_measured_profiles_are_not_registered_by_default(registry):
    assert not any(name.endswith(("_xcubeai", "_plumerai", "_tflm", "_cmsisnn")) for name in registry.tables["devices"])


@pytest.mark.parametrize(
    "line, message",
    [("b,e,kws,abc,,src", "data row 1"), ("b,e,kws,-1,,src", "must be positive"), ("b,e,kws,5,,", "source is empty")],
)
def test_a_bad_measurement_row_names_file_and_row(tmp_path, line, message):
    path = tmp_path / "m.csv"
    path.write_text("# comment\n" + ",".join(cal.CSV_COLUMNS) + "\n" + line + "\n")
    with pytest.raises(ConfigError, match=message) as info:
        cal.load_measurements(path)
    assert str(path) in str(info.value)


# --- leave-one-out on synthetic boards ------------------------------------------------------------------------------


class _Reader:
    def __init__(self, shape):
        rng = np.random.default_rng(0)
        self._feeds = iter([{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(2)])

    def get_next(self):
        return next(self._feeds, None)


def _int8(model: torch.nn.Module, shape, tmp_path: Path, name: str, quant_format: str = "qdq") -> Path:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    src, dst = tmp_path / f"{name}_fp32.onnx", tmp_path / f"{name}_{quant_format}.onnx"
    torch.onnx.export(model.eval(), torch.zeros(shape), str(src), input_names=["x"], output_names=["y"], opset_version=17, dynamo=False)
    fmt = QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator
    quantize_static(str(src), str(dst), _Reader(shape), quant_format=fmt, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QInt8)
    return dst


class ConvNet(torch.nn.Module):
    def __init__(self, width: int = 8, depthwise: bool = False):
        super().__init__()
        self.a = torch.nn.Conv1d(1, width, 9, padding=4)
        self.b = torch.nn.Conv1d(width, width, 9, padding=4, groups=width if depthwise else 1)
        self.fc = torch.nn.Linear(width, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.b(torch.relu(self.a(x)))).mean(dim=2))


class FcNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 64))

    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope="module")
def small_graphs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("int8")
    torch.manual_seed(0)
    return {
        "conv": analyze_onnx(_int8(ConvNet(), (1, 1, 200), folder, "conv")),
        "wide": analyze_onnx(_int8(ConvNet(16), (1, 1, 400), folder, "wide")),
        "dw": analyze_onnx(_int8(ConvNet(16, depthwise=True), (1, 1, 400), folder, "dw")),
        "fc": analyze_onnx(_int8(FcNet(), (1, 64), folder, "fc")),
    }


def _board(name: str, core: str, clock_hz: float) -> DeviceProfile:
    base = load_profile(PROFILE_DIR / "nrf52840.yaml")
    return base.model_copy(update={"name": name, "core": core, "clock_hz": clock_hz, "bandwidth_bytes_per_s": 1e12, "active_power_mw": 10.0})


TRUE_RATES = {"conv": 0.4, "depthwise_conv": 0.1, "fc": 0.3, "elementwise": 0.5, "im2col": 0.9}
TRUE_CORE = {"cortex_m4": 1.0, "cortex_m33": 1.3, "cortex_m7": 1.9}


def _synthetic(small_graphs):
    """Four boards, two engines, 'measured' with the simulator at known rates: the fit can recover them."""
    boards = {"m4a": ("Arm Cortex-M4F", 80e6), "m4b": ("Arm Cortex-M4F", 120e6), "m33": ("Arm Cortex-M33", 160e6), "m7": ("Arm Cortex-M7", 280e6)}
    engines = {"fast": (1.3, 1500.0), "slow": (0.77, 2500.0)}
    truth = cal.Fit(dict(TRUE_RATES), dict(TRUE_CORE), {e: s for e, (s, _) in engines.items()}, {e: o for e, (_, o) in engines.items()})
    profiles, rows = {}, []
    for board, (core, clock) in boards.items():
        for engine in engines:
            if board == "m7" and engine == "slow":
                continue
            profile = _board(f"{board}_{engine}", core, clock)
            profiles[profile.name] = profile
            for model, graph in small_graphs.items():
                latency = simulate(graph, truth.profile_for(profile, engine)).latency_ms
                rows.append(cal.Measurement(board, engine, model, latency, latency * 25.0, "synthetic"))  # 25 mW measured
    return rows, profiles


def test_leave_one_board_out_recovers_a_known_simulator_and_beats_macs_only(small_graphs):
    rows, profiles = _synthetic(small_graphs)
    predictions = cal.leave_one_out(rows, small_graphs, profiles, by="board")
    assert len(predictions) == len(rows) and {p.measurement.board for p in predictions} == {"m4a", "m4b", "m33", "m7"}
    latency = cal.summary([p.error(p.latency_ms, p.measurement.latency_ms) for p in predictions])
    macs_only = cal.summary([p.error(p.macs_only_ms, p.measurement.latency_ms) for p in predictions])
    assert latency["median_abs"] < 0.10 and latency["median_abs"] < macs_only["median_abs"]
    # every board's power is 2.5x its profile's 10 mW: the factor learnt on the others predicts energy exactly
    assert all(p.energy_uj_datasheet == pytest.approx(p.latency_ms * 10.0) for p in predictions)
    assert all(p.energy_uj == pytest.approx(p.energy_uj_datasheet * 2.5) for p in predictions)


def test_leave_one_model_out_runs_and_an_unseen_engine_falls_back_to_its_prior(small_graphs):
    rows, profiles = _synthetic(small_graphs)
    assert {p.measurement.model for p in cal.leave_one_out(rows, small_graphs, profiles, by="model")} == set(small_graphs)
    arrays = {name: cal.GraphArrays.of(graph) for name, graph in small_graphs.items()}
    fit = cal.fit_rates([r for r in rows if r.engine == "fast"], arrays, profiles)
    assert "slow" not in fit.engine_speed
    slow = fit.profile_for(profiles["m4a_slow"], "slow")
    assert slow.layer_overhead_cycles == cal.PRIOR_OVERHEAD_CYCLES
    assert slow.macs_per_cycle.int8.conv == pytest.approx(fit.base_rates["conv"])  # Cortex-M4, mean engine: the base rate


def test_the_fit_formula_is_the_simulator(small_graphs):
    profile = _board("b", "Arm Cortex-M33", 100e6).model_copy(update={"bandwidth_bytes_per_s": 2e7})  # some layers memory-bound
    rates = np.array([TRUE_RATES[k] for k in cal.RATE_CLASSES] + [profile.macs_per_cycle.fp32.elementwise])
    fitted = cal.Fit(dict(TRUE_RATES), {"cortex_m33": 1.0}, {"e": 1.0}, {"e": 1234.0}).profile_for(profile, "e")
    for graph in small_graphs.values():
        cycles = cal.predict_cycles(cal.GraphArrays.of(graph), rates, 1234.0, profile.clock_hz / profile.bandwidth_bytes_per_s)
        assert cycles / profile.clock_hz * 1e3 == pytest.approx(simulate(graph, fitted).latency_ms, rel=1e-9)


def test_summary_and_spearman():
    s = cal.summary([0.05, -0.2, 0.3, -0.01])
    assert s["n"] == 4 and s["median_abs"] == pytest.approx(0.125) and s["within_10"] == 0.5 and s["within_25"] == 0.75
    assert cal.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)


# --- QDQ and QOperator analysis ------------------------------------------------------------------------------------


class ImageNet(torch.nn.Module):
    """conv 3x3 (3->8) -> depthwise 3x3 stride 2 -> pointwise 8->16 -> residual-free pool -> fc 16->4, on 16x16."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.dw = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.pw = torch.nn.Conv2d(8, 16, 1)
        self.fc = torch.nn.Linear(16, 4)

    def forward(self, x):
        h = torch.relu(self.pw(torch.relu(self.dw(torch.relu(self.a(x))))))
        return self.fc(h.mean(dim=(2, 3)))


def test_qoperator_and_qdq_forms_of_a_2d_model_give_the_same_macs(tmp_path):
    torch.manual_seed(0)
    macs = {fmt: analyze_onnx(_int8(ImageNet(), (1, 3, 16, 16), tmp_path, "img", fmt)) for fmt in ("qdq", "qoperator")}
    # conv 8x16x16 x 3x9 + dw 8x8x8 x 9 + pw 16x8x8 x 8 + fc 16x4
    expected = 8 * 256 * 27 + 8 * 64 * 9 + 16 * 64 * 8 + 64
    assert macs["qdq"].macs == expected
    assert abs(macs["qoperator"].macs / macs["qdq"].macs - 1) <= 0.01
    assert macs["qoperator"].unshaped == [] and macs["qdq"].unshaped == []


def test_in_qdq_models_the_quantized_input_is_costed_as_int8(small_graphs):
    graph = small_graphs["conv"]
    quantize, conv = graph.layers[0], next(layer for layer in graph.layers if layer.op_class == "conv")
    assert quantize.op_type == "QuantizeLinear" and quantize.ops == 200  # the float input, quantized once per sample
    assert conv.compute_dtype == "int8" and conv.quantization == "static"
    assert conv.activation_bytes_in == 200  # reads the int8 buffer: one byte per sample, not four
    nrf = load_profile(PROFILE_DIR / "nrf52840.yaml")
    first = simulate(graph, nrf).per_layer[graph.layers.index(conv)]
    assert first.precision == "int8" and first.compute_cycles == pytest.approx(
        conv.macs / nrf.rate("int8", "conv") + conv.im2col_elements / nrf.rate("int8", "im2col"))


# --- the command line -------------------------------------------------------------------------------------------------


@pytest.fixture
def conv_onnx(tmp_path):
    torch.manual_seed(0)
    return _int8(ConvNet(), (1, 1, 200), tmp_path, "cli")


def test_simulate_on_a_profile_file_given_by_path(conv_onnx, capsys):
    path = MEASURED_PROFILES / "stm32u575_xcubeai.yaml"
    assert main(["devices", "simulate", str(conv_onnx), "--device", str(path), "--device", "nrf52840", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["devices"]) == {"stm32u575_xcubeai", "nrf52840"}
    assert doc["devices"]["stm32u575_xcubeai"]["latency_ms"] == pytest.approx(
        simulate(analyze_onnx(conv_onnx), load_profile(path)).latency_ms)
    assert doc["unshaped_ops"] == []


def test_an_invalid_profile_file_is_a_one_line_error_naming_file_and_key(conv_onnx, tmp_path, capsys):
    data = (MEASURED_PROFILES / "stm32u575_xcubeai.yaml").read_text().replace("clock_hz: 160000000", "clock_hz: -1")
    bad = tmp_path / "bad_board.yaml"
    bad.write_text(data)
    assert main(["devices", "simulate", str(conv_onnx), "--device", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "clock_hz" in err
    assert main(["devices", "simulate", str(conv_onnx), "--device", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml does not exist" in capsys.readouterr().err


def _dynamic_model(dims: list) -> onnx.ModelProto:
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    "dims, hint",
    [(["batch", 640], "--input-shape 1,640 "), (["batch", 1, "samples"], "--input-shape 1,1,3000 "),
     (["n", 3, "height", "width"], "--input-shape 1,3,HEIGHT,WIDTH ")],
)
def test_the_input_shape_hint_has_the_model_rank(dims, hint):
    with pytest.raises(ConfigError) as info:
        analyze_onnx(_dynamic_model(dims))
    assert hint in str(info.value) and f"{len(dims)} sizes" in str(info.value)


def test_unshaped_operators_are_reported_at_the_top(tmp_path, capsys):
    nodes = [helper.make_node("MysteryOp", ["x"], ["m"], name="mystery", domain="example.custom"), helper.make_node("Relu", ["m"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = tmp_path / "mystery.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("example.custom", 1)]), path)
    assert main(["devices", "simulate", str(path), "--device", "nrf52840", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc)[:3] == ["schema", "model", "unshaped_ops"]
    assert doc["unshaped_ops"] == ["MysteryOp (mystery)", "Relu (relu)"]
    assert main(["devices", "simulate", str(path), "--device", "nrf52840"]) == 0
    head = capsys.readouterr().out.split("\n==")[0]
    assert "output shape is unknown" in head and "MysteryOp (mystery)" in head
