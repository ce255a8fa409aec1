"""Device profiles: validation errors naming file and field, the built-ins, the host profile and the CLI."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from ecgbench.cli.main import main
from ecgbench.kinds.device import HOST_PROFILE_ENV, DeviceProfile, load_profile, save_profile
from ecgbench.errors import ConfigError
from ecgbench.train.export import to_onnx
from ecgbench.testing import TinyNet
from ecgbench_plugins.devices.builtin_profiles import PROFILE_DIR

BUILTIN = {"nrf52840", "cortex_m33", "stm32h7", "esp32s3", "implant_m0plus", "host"}


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """No calibrated host profile from the developer's machine leaks into these tests."""
    monkeypatch.setenv("ECGBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(HOST_PROFILE_ENV, raising=False)


def _nrf_data() -> dict:
    return yaml.safe_load((PROFILE_DIR / "nrf52840.yaml").read_text())


def _write(tmp_path, data, name="board.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_builtin_profiles_are_registered_with_sources(registry):
    profiles = registry.tables["devices"]
    assert set(profiles) == BUILTIN
    for name, profile in profiles.items():
        assert isinstance(profile, DeviceProfile) and profile.name == name
        assert profile.sources and all(s.strip() for s in profile.sources)
    nrf = profiles["nrf52840"]
    assert (nrf.clock_hz, nrf.flash_bytes, nrf.ram_bytes) == (64e6, 1024 * 1024, 256 * 1024)
    assert profiles["stm32h7"].clock_hz == 480e6
    assert profiles["implant_m0plus"].ram_bytes <= 32 * 1024 and profiles["implant_m0plus"].active_power_mw < 5
    for profile in profiles.values():  # SIMD/DSP int8 kernels beat the FPU on every microcontroller
        if profile.name != "host":
            assert profile.macs_per_cycle.int8.conv > profile.macs_per_cycle.fp32.conv


def test_uncalibrated_host_says_so(registry):
    host = registry.tables["devices"]["host"]
    assert host.calibration == ""
    assert "UNCALIBRATED" in host.description and "ecgbench devices calibrate" in host.description


def test_missing_field_names_file_and_field(tmp_path):
    data = _nrf_data()
    del data["clock_hz"]
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert f"{path}.clock_hz: Field required" in str(err.value)


def test_negative_and_nested_fields_name_file_and_field(tmp_path):
    data = _nrf_data()
    data["ram_bytes"] = -1
    data["macs_per_cycle"]["int8"]["depthwise_conv"] = 0
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    message = str(err.value)
    assert f"{path}.ram_bytes: Input should be greater than 0" in message
    assert f"{path}.macs_per_cycle.int8.depthwise_conv: Input should be greater than 0" in message


def test_unknown_field_gets_a_suggestion(tmp_path):
    data = _nrf_data()
    data["clock_mhz"] = 64
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError, match=r"board.yaml.clock_mhz: unknown key 'clock_mhz'; did you mean 'clock_hz'"):
        load_profile(path)


def test_a_number_written_as_text_is_rejected(tmp_path):
    data = _nrf_data()
    data["clock_hz"] = "64 MHz"
    with pytest.raises(ConfigError, match=r"clock_hz"):
        load_profile(_write(tmp_path, data))


def test_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_profile(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match=r"bad.yaml is not valid YAML"):
        load_profile(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list.yaml: a device profile must be a mapping"):
        load_profile(listing)


def test_yaml_round_trip_and_rates(tmp_path):
    profile = load_profile(PROFILE_DIR / "esp32s3.yaml")
    again = load_profile(save_profile(profile, tmp_path / "sub" / "copy.yaml"))
    assert again == profile
    assert profile.rate("int8", "conv") == 2.0
    assert profile.rate("fp16", "fc") == profile.rate("fp32", "fc") == 0.25
    with pytest.raises(Exception):
        profile.clock_hz = 1.0  # frozen


def test_optional_rates_and_their_fallbacks(tmp_path):
    nrf = load_profile(PROFILE_DIR / "nrf52840.yaml")
    assert nrf.macs_per_cycle.int8_dynamic is None  # microcontroller runtimes have no dynamic quantization
    rate, note = nrf.resolve_rate("int8_dynamic", "conv")
    assert rate == nrf.rate("int8", "conv") == 0.303 and "no int8_dynamic rates" in note and "nrf52840" in note
    assert nrf.resolve_rate("fp32", "depthwise_conv_strided") == (0.15, "")  # strided falls back to depthwise_conv
    host = load_profile(PROFILE_DIR / "host.yaml")
    dynamic = host.macs_per_cycle.int8_dynamic
    assert dynamic is not None and host.resolve_rate("int8_dynamic", "conv") == (dynamic.conv, "")
    assert host.rate("int8_dynamic", "elementwise") == host.rate("int8", "elementwise")  # no dynamic element-wise kernels
    assert host.rate("fp32", "depthwise_conv_strided") < host.rate("fp32", "depthwise_conv")
    again = load_profile(save_profile(host, tmp_path / "host.yaml"))
    assert again == host
    assert "null" not in (tmp_path / "host.yaml").read_text()  # absent optional rates are left out, not written as null
    data = _nrf_data()
    data["macs_per_cycle"]["int8_dynamic"] = {"conv": 1.0, "depthwise_conv": 1.0, "fc": 1.0}
    with pytest.raises(ConfigError, match=r"macs_per_cycle.int8_dynamic.im2col"):
        load_profile(_write(tmp_path, data))


def test_calibrated_host_profile_replaces_the_defaults(tmp_path, monkeypatch, plugin_manager):
    from ecgbench.registry import build_registry

    data = yaml.safe_load((PROFILE_DIR / "host.yaml").read_text())
    data.update(calibration="measured in a test", description="calibrated")
    home_profile = tmp_path / "home" / "devices" / "host.yaml"
    save_profile(DeviceProfile.model_validate(data), home_profile)
    assert build_registry(plugin_manager).tables["devices"]["host"].calibration == "measured in a test"

    data.update(calibration="from the environment variable")
    elsewhere = save_profile(DeviceProfile.model_validate(data), tmp_path / "elsewhere.yaml")
    monkeypatch.setenv(HOST_PROFILE_ENV, str(elsewhere))
    assert build_registry(plugin_manager).tables["devices"]["host"].calibration == "from the environment variable"

    monkeypatch.setenv(HOST_PROFILE_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="ECGBENCH_HOST_PROFILE=.*missing.yaml names no file"):
        build_registry(plugin_manager)

    data.update(name="not_host")
    monkeypatch.setenv(HOST_PROFILE_ENV, str(save_profile(DeviceProfile.model_validate(data), tmp_path / "wrong.yaml")))
    with pytest.raises(ConfigError, match="must be named 'host'"):
        build_registry(plugin_manager)


def test_cli_lists_profiles(capsys):
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    for name in BUILTIN:
        assert name in out
    assert "nrf52840" in out and "64 MHz" in out and "1.05 MB" in out and "262.1 kB" in out and "1 kB = 1000 bytes" in out
    assert "TFLite Micro + CMSIS-NN" in out and "onnxruntime (CPU)" in out  # each profile's runtime
    assert "uncalibrated" in out


def test_cli_calibrate_writes_a_loadable_host_profile(tmp_path, capsys, monkeypatch):
    out = tmp_path / "host.yaml"
    assert main(["devices", "calibrate", "--out", str(out), "--repeats", "2"]) == 0
    profile = load_profile(out)
    assert profile.name == "host" and profile.calibration
    assert "wrote" in capsys.readouterr().out
    monkeypatch.setenv(HOST_PROFILE_ENV, str(out))
    assert main(["devices"]) == 0
    assert "calibrated:" in capsys.readouterr().out


@pytest.fixture
def tiny_onnx(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "tiny.onnx"
    path.write_bytes(to_onnx(TinyNet().eval(), 400))
    return path


def test_cli_simulate_json(tiny_onnx, capsys):
    assert main(["devices", "simulate", str(tiny_onnx), "--device", "nrf52840", "--device", "implant_m0plus",
                 "--input-shape", "1,1,3000", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "ecgbench.simulation/1"
    assert doc["graph"]["schema"] == "ecgbench.graph/1" and doc["graph"]["input_shape"] == [1, 1, 3000]
    assert set(doc["devices"]) == {"nrf52840", "implant_m0plus"}
    nrf = doc["devices"]["nrf52840"]
    for key in ("latency_ms", "energy_mj", "energy_per_day_j", "peak_ram_bytes", "flash_bytes", "fits", "why", "per_layer"):
        assert key in nrf
    assert len(nrf["per_layer"]) == len(doc["graph"]["layers"])
    # Flash is the fp32 weights TFLite Micro runs: the graph's stored parameter bytes of this float model.
    assert (nrf["flash_bytes"], nrf["flash_format"], nrf["flash_runtime"]) == (doc["graph"]["totals"]["param_bytes"], "fp32", "TFLite Micro + CMSIS-NN")
    assert nrf["flash_source"] == "runtime"


def test_cli_simulate_tables_and_errors(tiny_onnx, capsys):
    assert main(["devices", "simulate", str(tiny_onnx), "--device", "implant_m0plus", "--input-shape", "1,1,9000"]) == 0
    out = capsys.readouterr().out
    assert "== implant_m0plus" in out and "DOES NOT FIT: needs" in out and "RAM, has 32.8 kB" in out
    assert main(["devices", "simulate", str(tiny_onnx), "--device", "nrf52840"]) == 2
    assert "--input-shape 1,1,3000" in capsys.readouterr().err
    assert main(["devices", "simulate", str(tiny_onnx), "--device", "nrf5284", "--input-shape", "1,1,300"]) == 2
    assert "did you mean 'nrf52840'" in capsys.readouterr().err
    assert main(["devices", "simulate", str(tiny_onnx), "--input-shape", "1,one,300"]) == 2
    assert "--input-shape expects" in capsys.readouterr().err


def _layer_rows(out: str) -> list[str]:
    """The rows under the layer table's rule."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("layer ")) + 2
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        rows.append(line)
    return rows


@pytest.fixture
def deep_onnx(tmp_path):
    """Eight convolutions: more layers than the summary shows."""
    torch.manual_seed(0)
    layers = [torch.nn.Conv1d(1, 4, 5, padding=2)]
    for _ in range(7):
        layers += [torch.nn.ReLU(), torch.nn.Conv1d(4, 4, 5, padding=2)]
    model = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool1d(1), torch.nn.Flatten(), torch.nn.Linear(4, 4)).eval()
    path = tmp_path / "deep.onnx"
    path.write_bytes(to_onnx(model, 400))
    return path


def test_cli_simulate_prints_a_summary_and_layers_on_request(deep_onnx, capsys):
    from ecgbench.measure.onnx_graph import analyze_onnx

    layers = analyze_onnx(deep_onnx, input_shape=(1, 1, 3000)).layers
    args = ["devices", "simulate", str(deep_onnx), "--device", "nrf52840", "--input-shape", "1,1,3000"]
    assert main(args) == 0
    summary = capsys.readouterr().out
    assert "MACs" in summary and "peak RAM" in summary and "flash" in summary and "fits" in summary
    assert "5 slowest layers" in summary and "1 kB = 1000 bytes" in summary and "--layers" in summary
    device_row = next(line for line in summary.splitlines() if line.startswith("nrf52840 "))
    assert device_row.split()[-1] in ("yes", "NO")
    top = _layer_rows(summary)
    assert len(top) == 5 < len(layers)
    ms = [float(row.split()[4]) for row in top]
    assert ms == sorted(ms, reverse=True)  # the slowest first
    assert max(len(line) for line in summary.splitlines()[1:]) <= 100  # the first names the model file

    assert main([*args, "--layers"]) == 0
    detailed = capsys.readouterr().out
    assert "every layer" in detailed and len(_layer_rows(detailed)) > 5


def test_cli_simulate_names_unshaped_operators_first(tiny_onnx, capsys, monkeypatch):
    import ecgbench.measure.onnx_graph as onnx_graph

    real = onnx_graph.analyze_onnx

    def with_unshaped(*a, **k):
        graph = real(*a, **k)
        graph.unshaped = ["Mystery"]
        return graph

    monkeypatch.setattr(onnx_graph, "analyze_onnx", with_unshaped)
    assert main(["devices", "simulate", str(tiny_onnx), "--device", "nrf52840", "--input-shape", "1,1,3000"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "output shape is unknown" in lines[2] and lines[3] == "    Mystery"
