"""preprocess_signal and DataConfig: rates, band-pass, normalisation, YAML-friendly validation."""

from __future__ import annotations

import numpy as np
import pytest

from ecgbench.data.config import DataConfig, SplitConfig
from ecgbench.data.preprocess import preprocess_signal, resampled_length, resampling_ratio
from ecgbench.errors import ConfigError
from ecgbench.kinds.base import parse_config


def sine(freq_hz: float, seconds: float, fs_hz: float, amplitude: float = 1.0) -> np.ndarray:
    t = np.arange(int(round(seconds * fs_hz))) / fs_hz
    return amplitude * np.sin(2 * np.pi * freq_hz * t)


@pytest.mark.parametrize(
    "fs_in, n_in, fs_out, n_out",
    [
        (300, 9000, 100, 3000),  # CinC 30 s record -> 100 Hz
        (300, 2714, 100, 905),  # ceil(2714 / 3)
        (250, 2500, 100, 1000),  # up 2, down 5
        (360, 3600, 250, 2500),  # MIT-BIH -> 250 Hz: up 25, down 36
        (100, 1000, 300, 3000),  # upsampling
        (300, 9000, 300, 9000),  # same rate: untouched length
    ],
)
def test_resampling_gives_expected_length(fs_in, n_in, fs_out, n_out):
    out = preprocess_signal(np.random.default_rng(0).normal(size=n_in), fs_in, DataConfig(fs_hz=fs_out))
    assert out.shape == (n_out,) and out.dtype == np.float32
    assert resampled_length(n_in, fs_in, fs_out) == n_out


def test_resampling_ratio_is_in_lowest_terms():
    assert resampling_ratio(300, 100) == (1, 3)
    assert resampling_ratio(360, 250) == (25, 36)
    assert resampling_ratio(128, 100) == (25, 32)


def test_resampling_keeps_amplitude_and_frequency():
    out = preprocess_signal(sine(5.0, 10, 300, amplitude=1.5), 300, DataConfig(fs_hz=100, normalize="none"))
    core = out[100:-100]  # away from the edges
    assert np.abs(core).max() == pytest.approx(1.5, rel=0.01)
    np.testing.assert_allclose(core, sine(5.0, 10, 100, 1.5)[100:-100], atol=0.01)


def test_zscore_gives_zero_mean_unit_variance_per_record():
    out = preprocess_signal(3.0 + 0.2 * sine(1.0, 10, 100), 100, DataConfig(fs_hz=100))
    assert out.mean() == pytest.approx(0.0, abs=1e-6)
    assert out.std() == pytest.approx(1.0, abs=1e-5)
    raw = preprocess_signal(3.0 + 0.2 * sine(1.0, 10, 100), 100, DataConfig(fs_hz=100, normalize="none"))
    assert raw.mean() == pytest.approx(3.0, abs=1e-5)


def test_bandpass_removes_baseline_wander_and_mains_keeps_qrs_band():
    fs = 250.0
    wander, qrs_band, mains = sine(0.05, 40, fs, 2.0), sine(10.0, 40, fs), sine(50.0, 40, fs)
    config = DataConfig(fs_hz=fs, normalize="none", bandpass_hz=[0.5, 40])
    core = slice(1000, -1000)

    def amplitude(x):  # of a sinusoid, from its RMS (50 Hz at 250 Hz has no sample on its peaks)
        return np.sqrt(2) * np.sqrt(np.mean(preprocess_signal(x, fs, config)[core] ** 2))

    assert amplitude(qrs_band) == pytest.approx(1.0, abs=0.03)  # 10 Hz: pass band
    assert amplitude(wander) < 0.02  # 0.05 Hz, 2 mV: removed
    # 50 Hz: forward-backward gain |H(50 Hz)|^2 of the order-2 band-pass, 0.243 (scipy.signal.sosfreqz).
    assert amplitude(mains) == pytest.approx(0.243, abs=0.01)


def test_int_rates_from_yaml_validate_and_bad_settings_name_the_fix():
    config = parse_config(DataConfig, {"fs_hz": 100, "window_s": 10, "bandpass_hz": [1, 40]}, "suite.yaml at data")
    assert config.fs_hz == 100.0 and config.window_s == 10.0 and config.bandpass_hz == [1.0, 40.0]
    with pytest.raises(ConfigError, match=r"bandpass_hz must be \[low, high\] with 0 < low < high < fs_hz/2 = 50 Hz"):
        parse_config(DataConfig, {"fs_hz": 100, "bandpass_hz": [0.5, 60]}, "suite.yaml at data")
    with pytest.raises(ConfigError, match="unknown key 'normalise'; did you mean 'normalize'"):
        parse_config(DataConfig, {"normalise": "zscore"}, "suite.yaml at data")
    with pytest.raises(ConfigError, match="val \\+ test is 1, leaving nothing to train on"):
        parse_config(DataConfig, {"split": {"val": 0.5, "test": 0.5}}, "suite.yaml at data")


def test_config_round_trips_through_model_metadata_json():
    # ecgbench eval rebuilds the config from the JSON an exported model carries.
    config = DataConfig(fs_hz=125, bandpass_hz=[0.5, 40], split=SplitConfig(seed=3))
    assert DataConfig.model_validate_json(config.model_dump_json()) == config
    assert config.preprocessing() == {"fs_hz": 125.0, "normalize": "zscore", "bandpass_hz": [0.5, 40.0]}


def test_bad_input_to_preprocess_is_refused():
    with pytest.raises(ValueError, match="1-D single-lead"):
        preprocess_signal(np.zeros((10, 2)), 300, DataConfig())
    with pytest.raises(ValueError, match="positive"):
        preprocess_signal(np.zeros(10), 0, DataConfig())
