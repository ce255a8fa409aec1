"""The metrics schema: seed aggregation, per-device expansion, formats, gates, stored declarations."""

from __future__ import annotations

import json
import math

import pytest

from ecgbench.errors import PluginError
from ecgbench.measure.builtin_metrics import BUILTIN_METRICS
from ecgbench.measure.schema import (
    Compared,
    Gate,
    Metric,
    Stat,
    aggregate,
    definitions,
    expand,
    schema,
    stored_declarations,
    upgrade_metrics,
)

BY_PATH = {m.path: m for m in BUILTIN_METRICS}


def fake_metrics(f1: float, delta: float, ratio: float, storage: int, latency_ms: float, fits: bool) -> dict:
    return {
        "test": {"challenge_f1": f1, "challenge_f1_ci": [f1 - 0.05, f1 + 0.05]},
        "size": {"compression_ratio": ratio, "size_reduction": 2.0, "storage_bytes": storage, "storage_format": "sparse_zstd"},
        "devices": {"mcu": {"latency_ms": latency_ms, "energy_mj": 1.0, "fits": fits, "flash_bytes": 4 * storage, "flash_format": "fp32",
                            "flash_runtime": "TFLite Micro + CMSIS-NN"}},
        "delta_f1_points": delta,
    }


def approx_stat(s: Stat | None, mean: float, std: float, n: int) -> bool:
    return s is not None and (s.mean, s.std, s.n) == pytest.approx((mean, std, n))


SEEDS = [fake_metrics(0.6, -2.0, 10.0, 1000, 5.0, True), fake_metrics(0.8, 0.0, 12.0, 1200, 7.0, False)]


def test_seeds_aggregate_as_mean_and_sample_std_by_hand():
    # Sample std of two values a, b: |a - b| / sqrt(2).
    assert approx_stat(aggregate(BY_PATH["test.challenge_f1"], SEEDS), 0.7, 0.2 / math.sqrt(2), 2)
    assert approx_stat(aggregate(BY_PATH["delta_f1_points"], SEEDS), -1.0, 2.0 / math.sqrt(2), 2)
    assert approx_stat(aggregate(BY_PATH["size.storage_bytes"], SEEDS), 1100.0, 200 / math.sqrt(2), 2)
    assert aggregate(BY_PATH["size.size_reduction"], SEEDS) == Stat(2.0, 0.0, 2)
    [latency, _, flash, fits] = [m for m in expand(BUILTIN_METRICS, ["mcu"]) if m.path.startswith("devices.mcu.")][:4]
    assert flash.path == "devices.mcu.flash_bytes" and flash.label == "flash on mcu"
    assert flash.detail == ("devices.mcu.flash_format", "devices.mcu.flash_runtime")
    assert approx_stat(aggregate(flash, SEEDS), 4400.0, 800 / math.sqrt(2), 2)
    assert latency.path == "devices.mcu.latency_ms" and latency.label == "mcu sim ms"
    assert approx_stat(aggregate(latency, SEEDS), 6.0, 2.0 / math.sqrt(2), 2)
    assert aggregate(fits, SEEDS) is False and aggregate(fits, SEEDS[:1]) is True
    assert aggregate(BY_PATH["latency.host_median_ms"], SEEDS) is None  # missing everywhere


def test_summary_text_of_seeds():
    assert BY_PATH["test.challenge_f1"].summarize(SEEDS[:1]) == "0.600 [0.550, 0.650]"
    assert BY_PATH["test.challenge_f1"].summarize(SEEDS) == f"0.700 ± {0.2 / math.sqrt(2):.3f} (2 seeds)"
    assert BY_PATH["test.challenge_f1"].summarize(SEEDS[:1], 2) == "0.600 [0.550, 0.650] (1 of 2 seeds done)"
    assert BY_PATH["test.challenge_f1"].summarize([], 2) == "failed"
    assert BY_PATH["delta_f1_points"].summarize(SEEDS) == "-1.00 ± 1.41 (2 seeds)"  # std unsigned
    assert BY_PATH["size.storage_bytes"].summarize(SEEDS) == "1.1 kB ± 141 B (sparse_zstd)"
    flash = expand([BY_PATH["devices.{device}.flash_bytes"]], ["mcu"])[0]
    assert flash.summarize(SEEDS[:1]) == "4.0 kB (fp32, TFLite Micro + CMSIS-NN)"
    assert flash.summarize([{}]) == "-"
    assert BY_PATH["size.compression_ratio"].summarize(SEEDS[1:]) == "12.0x"
    fits = expand([BY_PATH["devices.{device}.fits"]], ["mcu"])[0]
    assert fits.summarize(SEEDS) == "1/2 seeds" and fits.summarize(SEEDS[:1]) == "yes" and fits.summarize([]) == "-"


def test_per_device_metrics_expand_device_by_device():
    paths = [m.path for m in expand(BUILTIN_METRICS, ["a", "b"]) if m.summary and not m.optional]
    assert paths[-8:] == [
        "devices.a.latency_ms", "devices.a.energy_mj", "devices.a.flash_bytes", "devices.a.fits",
        "devices.b.latency_ms", "devices.b.energy_mj", "devices.b.flash_bytes", "devices.b.fits",
    ]
    assert not any("{device}" in p for p in paths)
    assert not any(m.per_device for m in expand(BUILTIN_METRICS, []))
    # windowed deployment's per-record columns follow each device's fit (shown only when a cell has them)
    optional = [m.path for m in expand(BUILTIN_METRICS, ["a"]) if m.summary and m.optional]
    assert optional == ["devices.a.latency_ms_per_record", "devices.a.energy_mj_per_record"]


def test_definitions_name_each_term_once():
    terms = [term for term, _ in definitions(BUILTIN_METRICS)]
    assert terms == [
        "test challenge F1", "ΔF1 (pts)", "compression ratio", "storage", "size reduction",
        "measured host ms", "host vs dense", "device sim ms / mJ / fits", "flash on <device>",
        "device ms/record / mJ/record", "dropped windows",
    ]


def test_gates_measure_worsening_in_the_declared_direction():
    f1, size, host = BY_PATH["test.challenge_f1"], BY_PATH["size.storage_bytes"], BY_PATH["latency.host_median_ms"]
    assert f1.worsening(0.80, 0.794) == pytest.approx(0.6)  # points
    assert f1.worsening(0.80, 0.83) == pytest.approx(-3.0)
    assert size.worsening(40000, 42400) == pytest.approx(0.06)  # relative growth
    assert size.worsening(0, 100) is None
    assert host.worsening(1.0, 9.0) is None  # shown, not gated
    lower = Metric("plugin_metrics.x", "x", higher_is_better=False, compare=Compared("x", gate=Gate(1.0, "points", 1.0)))
    assert lower.worsening(2.0, 3.5) == pytest.approx(1.5)


def test_a_declaration_round_trips_through_json():
    metric = Metric(
        "plugin_metrics.af_sens", "AF sens", "share of AF records called AF", unit="share",
        compare=Compared("AF sens", ".2f", Gate(2.0, "points", 100.0, "AF sensitivity")), compute=lambda m: 1.0,
    )
    data = json.loads(json.dumps(metric.to_dict()))
    assert "compute" not in data and "text" not in data
    back = Metric.from_dict({**data, "unknown_newer_field": 1})
    assert back == metric and back.compute is None
    stored = [{"metric_declarations": {"plugin_metrics.af_sens": data, "plugin_metrics.bad": {"unit": "no label"}}}]
    assert [m.path for m in stored_declarations(stored)] == ["plugin_metrics.af_sens"]  # the unreadable one is left out
    paths = [m.path for m in schema(stored, ["mcu"])]
    assert paths[-1] == "plugin_metrics.af_sens" and paths[-2].startswith("devices.mcu.")  # after every built-in


def test_a_computed_metric_must_live_in_plugin_metrics():
    with pytest.raises(PluginError, match="plugin_metrics.<name>"):
        Metric("test.af_sens", "AF sens", compute=lambda m: 1.0)
    with pytest.raises(PluginError, match="plugin_metrics.<name>"):
        Metric("plugin_metrics.a.b", "AF sens", compute=lambda m: 1.0)


def test_builtin_metrics_are_registered_through_the_hook(registry):
    assert registry.names("metrics") == sorted(m.path for m in BUILTIN_METRICS)
    assert registry.providers["metrics"]["test.challenge_f1"] == "ecgbench_plugins.metrics.builtin"


def test_a_declaration_with_detail_round_trips_and_expands_per_device():
    metric = Metric("devices.{device}.x_bytes", "x on {device}", detail=("devices.{device}.x_format",))
    assert metric.for_device("mcu").detail == ("devices.mcu.x_format",)
    assert Metric.from_dict(json.loads(json.dumps(metric.to_dict()))) == metric


def version_1_metrics(ram: int) -> dict:
    """A cell as ecgbench stored it before storage and flash bytes were told apart."""
    return {
        "size": {"onnx": 40000, "deployable_bytes": 12000, "deployable_format": "sparse_zstd"},
        "devices": {"mcu": {"latency_ms": 5.0, "flash_bytes": 12000, "flash_capacity_bytes": 1_000_000, "flash_source": "deployable",
                            "peak_ram_bytes": ram, "ram_capacity_bytes": 256_000, "fits": ram <= 256_000,
                            "why": "" if ram <= 256_000 else f"needs {ram} B RAM, has 256000 B"}},
    }


def test_old_metrics_are_upgraded_to_storage_keys_and_lose_their_compressed_flash_figure():
    old = version_1_metrics(ram=20_000)
    new = upgrade_metrics(old)
    assert old["size"]["deployable_bytes"] == 12000  # the stored dict is not changed
    assert new["size"] == {"onnx": 40000, "storage_bytes": 12000, "storage_format": "sparse_zstd"}
    mcu = new["devices"]["mcu"]
    # The compressed file was never executable flash: kept under a legacy key, and the fit is unknown.
    assert "flash_bytes" not in mcu and mcu["legacy_storage_flash_bytes"] == 12000
    assert "fits" not in mcu and mcu["legacy_fits"] is True and "flash unknown" in mcu["why"]
    assert BY_PATH["size.storage_bytes"].summarize([new]) == "12.0 kB (sparse_zstd)"
    assert expand([BY_PATH["devices.{device}.fits"]], ["mcu"])[0].summarize([new]) == "-"
    # A model whose peak RAM alone does not fit still does not fit.
    too_big = upgrade_metrics(version_1_metrics(ram=300_000))["devices"]["mcu"]
    assert too_big["fits"] is False and too_big["why"] == "needs 300000 B RAM, has 256000 B"
    assert upgrade_metrics(new) == new and upgrade_metrics(None) == {}  # today's metrics pass unchanged
