"""The synthetic dataset: deterministic per seed, CinC-like records, AF separable by RR irregularity."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy import signal as sps

from ecgbench.data.config import DataConfig
from ecgbench.data.loader import load_splits
from ecgbench.data.synthetic import class_counts, generate_records
from ecgbench.errors import ConfigError
from ecgbench_plugins.datasets.synthetic import SyntheticECG


def rr_irregularity(x: np.ndarray, fs_hz: float) -> float:
    """Coefficient of variation of RR intervals from a basic R-peak detector (band-pass 5-20 Hz, find_peaks)."""
    sos = sps.butter(2, [5, 20], btype="bandpass", fs=fs_hz, output="sos")
    y = sps.sosfiltfilt(sos, x)
    peaks, _ = sps.find_peaks(y, height=0.4 * np.percentile(y, 99), distance=int(0.25 * fs_hz))
    rr = np.diff(peaks) / fs_hz
    return float(rr.std() / rr.mean())


def test_same_seed_same_records_other_seed_other_records():
    a = list(SyntheticECG.from_params({"n_records": 12, "seed": 3}).records())
    b = list(SyntheticECG.from_params({"n_records": 12, "seed": 3}).records())
    c = list(SyntheticECG.from_params({"n_records": 12, "seed": 4}).records())
    assert [r.record_id for r in a] == [f"S{i:05d}" for i in range(12)]
    assert all(np.array_equal(x.signal, y.signal) and x.label == y.label for x, y in zip(a, b))
    assert not all(len(x.signal) == len(z.signal) and np.array_equal(x.signal, z.signal) for x, z in zip(a, c))
    assert SyntheticECG.from_params({"seed": 3}).fingerprint() != SyntheticECG.from_params({"seed": 4}).fingerprint()
    assert SyntheticECG.from_params({"seed": 3}).fingerprint() == SyntheticECG.from_params({"seed": 3}).fingerprint()


def test_records_look_like_cinc2017():
    records = generate_records(60, seed=0)
    assert {r.fs_hz for r in records} == {300.0}
    durations = np.array([len(r.signal) / 300.0 for r in records])
    assert durations.min() >= 9.0 and durations.max() <= 60.0
    assert (durations == 30.0).mean() > 0.4  # most CinC recordings are 30 s
    assert all(r.signal.dtype == np.float32 and np.isfinite(r.signal).all() for r in records)
    peak_to_peak = np.array([np.ptp(r.signal) for r in records if r.label == "N"])
    assert 0.5 < np.median(peak_to_peak) < 3.0  # millivolts


def test_class_counts_follow_proportions():
    assert class_counts(40, (0.35, 0.25, 0.25, 0.15)).tolist() == [14, 10, 10, 6]
    assert class_counts(10, (0.59, 0.09, 0.28, 0.04)).tolist() == [6, 1, 3, 0]  # remainders 0.9, 0.8 win
    labels = Counter(r.label for r in generate_records(40, seed=1))
    assert labels == {"N": 14, "A": 10, "O": 10, "~": 6}
    cinc = Counter(r.label for r in SyntheticECG.from_params({"n_records": 100, "proportions": [0.59, 0.09, 0.28, 0.04]}).records())
    assert cinc == {"N": 59, "A": 9, "O": 28, "~": 4}


def test_rr_irregularity_separates_af_from_normal():
    records = generate_records(80, seed=5)
    cv = {label: np.array([rr_irregularity(r.signal, r.fs_hz) for r in records if r.label == label]) for label in "NA"}
    assert len(cv["N"]) == 28 and len(cv["A"]) == 20
    # Sinus rhythm varies by a few percent beat to beat; AF's intervals by 15-30 %.
    assert np.median(cv["N"]) < 0.06 < 0.12 < np.median(cv["A"])
    assert cv["N"].max() < cv["A"].min()  # a threshold separates every record


def test_default_suite_size_generates_quickly_and_loads(tmp_path):
    dataset = SyntheticECG.from_params({"n_records": 40})
    splits = load_splits(dataset, DataConfig(fs_hz=100), tmp_path)
    assert splits.info["synthetic"] is True and splits.info["dataset"] == "synthetic"
    assert len(splits.train) + len(splits.val) + len(splits.test) == 40


def test_registered_and_validated(registry):
    assert registry.get("datasets", "synthetic") is SyntheticECG
    with pytest.raises(ConfigError, match="give 4 non-negative shares"):
        SyntheticECG.from_params({"proportions": [0.5, 0.5]})
    with pytest.raises(ConfigError, match="min_duration_s \\(70\\) exceeds max_duration_s \\(60\\)"):
        SyntheticECG.from_params({"min_duration_s": 70})
