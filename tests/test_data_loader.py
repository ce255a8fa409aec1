"""load_splits / load_signalset: cached memory-mapped arrays, rebuilt when data or preprocessing change."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ecgbench import CLASSES
from ecgbench.data.cache import read_entry, write_entry
from ecgbench.data.config import DataConfig
from ecgbench.data.loader import load_signalset, load_splits
from ecgbench.kinds.dataset import Dataset, Record


class CountingDataset(Dataset):
    """Records of known lengths; counts how often they are read."""

    name = "counting"

    def __init__(self, n_records=24, seconds=4.0, fs_hz=300.0, version="v1"):
        super().__init__()
        self.n_records, self.seconds, self.fs_hz, self.version = n_records, seconds, fs_hz, version
        self.reads = 0

    def records(self):
        self.reads += 1
        rng = np.random.default_rng(0)
        for i in range(self.n_records):
            n = int(self.seconds * self.fs_hz) + 30 * i  # distinct lengths
            yield Record(f"c{i:03d}", rng.normal(size=n).astype(np.float32), self.fs_hz, CLASSES[i % 4], f"mem:{i}")

    def fingerprint(self):
        return f"counting-{self.n_records}-{self.version}"


def test_load_signalset_resamples_every_record_in_dataset_order(tmp_path):
    dataset = CountingDataset(n_records=5)
    signals = load_signalset(dataset, DataConfig(fs_hz=100), tmp_path)
    assert signals.record_ids == ["c000", "c001", "c002", "c003", "c004"]
    assert signals.lengths().tolist() == [400, 410, 420, 430, 440]  # (1200 + 30 i) / 3
    assert signals.labels.tolist() == [0, 1, 2, 3, 0]
    assert signals.signals.dtype == np.float32 and isinstance(signals.signals, np.memmap)
    assert np.abs(signals.signal(2).mean()) < 1e-5 and signals.signal(2).std() == pytest.approx(1.0, abs=1e-4)


def test_cache_hit_returns_identical_arrays_without_reading_records(tmp_path):
    dataset = CountingDataset()
    first = load_splits(dataset, DataConfig(), tmp_path)
    second = load_splits(dataset, DataConfig(window_s=10, on_bad_record="skip"), tmp_path)  # neither changes the arrays
    assert dataset.reads == 1
    for name in ("train", "val", "test"):
        a, b = getattr(first, name), getattr(second, name)
        assert a.record_ids == b.record_ids
        np.testing.assert_array_equal(a.signals, b.signals)
        np.testing.assert_array_equal(a.offsets, b.offsets)
        np.testing.assert_array_equal(a.labels, b.labels)
        assert isinstance(b.signals, np.memmap)  # read from disk, not rebuilt in memory
    assert second.window_s == 10.0


def test_cache_rebuilt_when_preprocessing_changes(tmp_path):
    dataset = CountingDataset()
    at_100 = load_signalset(dataset, DataConfig(fs_hz=100), tmp_path)
    at_50 = load_signalset(dataset, DataConfig(fs_hz=50), tmp_path)
    assert dataset.reads == 2
    assert at_50.lengths().tolist() == [n // 2 for n in at_100.lengths()]
    load_signalset(dataset, DataConfig(fs_hz=100, bandpass_hz=[0.5, 40]), tmp_path)
    load_signalset(dataset, DataConfig(fs_hz=100, normalize="none"), tmp_path)
    assert dataset.reads == 4
    load_signalset(dataset, DataConfig(fs_hz=100), tmp_path)
    assert dataset.reads == 4  # the first entry is still there
    assert len(list(tmp_path.glob("counting-records-*"))) == 4


def test_cache_rebuilt_when_dataset_fingerprint_changes(tmp_path):
    load_signalset(CountingDataset(version="v1"), DataConfig(), tmp_path)
    changed = CountingDataset(version="v2")
    load_signalset(changed, DataConfig(), tmp_path)
    assert changed.reads == 1


def test_split_seed_reuses_preprocessed_records(tmp_path):
    dataset = CountingDataset(n_records=40)
    a = load_splits(dataset, DataConfig(split={"seed": 0}), tmp_path)
    b = load_splits(dataset, DataConfig(split={"seed": 1}), tmp_path)
    assert dataset.reads == 1
    assert a.info["split"] != b.info["split"]
    assert len(list(tmp_path.glob("counting-splits-*"))) == 2


def test_splits_are_disjoint_views_with_info_for_the_run(tmp_path):
    dataset = CountingDataset(n_records=40)
    splits = load_splits(dataset, DataConfig(fs_hz=100, window_s=2), tmp_path)
    ids = {name: set(getattr(splits, name).record_ids) for name in ("train", "val", "test")}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    assert set.union(*ids.values()) == {f"c{i:03d}" for i in range(40)}
    assert {r: s for s, members in ids.items() for r in members} == splits.info["split"]
    # 10 records per class: test round(1.5) = 2, val 2, train 6
    assert [len(splits.train), len(splits.val), len(splits.test)] == [24, 8, 8]
    full = load_signalset(dataset, DataConfig(fs_hz=100), tmp_path)
    for name in ("train", "val", "test"):
        part = getattr(splits, name)
        for i, rid in enumerate(part.record_ids):
            np.testing.assert_array_equal(part.signal(i), full.signal(full.record_ids.index(rid)))
    info = splits.info
    assert (info["dataset"], info["synthetic"], info["fingerprint"], info["skipped"]) == ("counting", False, "counting-40-v1", {})
    assert info["split_counts"]["test"] == {"N": 2, "A": 2, "O": 2, "~": 2}
    assert (splits.fs_hz, splits.window_s, splits.classes) == (100.0, 2.0, CLASSES)


def test_broken_cache_entry_is_rebuilt(tmp_path):
    dataset = CountingDataset(n_records=4)
    first = load_signalset(dataset, DataConfig(), tmp_path)
    (next(tmp_path.glob("counting-records-*")) / "offsets.npy").unlink()
    again = load_signalset(dataset, DataConfig(), tmp_path)
    assert dataset.reads == 2
    np.testing.assert_array_equal(first.signals, again.signals)


def test_concurrent_writers_keep_the_first_complete_entry(tmp_path):
    folder = tmp_path / "x-records-k"
    parts = [np.arange(3, dtype=np.float32), np.arange(2, dtype=np.float32)]
    first = write_entry(folder, parts, np.array([3, 2]), np.array([0, 1]), {"record_ids": ["a", "b"], "n": 1})
    # A second process that built the same entry meanwhile: its rename fails, the first entry stays.
    second = write_entry(folder, parts, np.array([3, 2]), np.array([0, 1]), {"record_ids": ["a", "b"], "n": 2})
    assert first.meta["n"] == second.meta["n"] == 1
    assert sorted(os.listdir(tmp_path)) == ["x-records-k"]  # no temporary folder left behind
    assert read_entry(folder).signals.offsets.tolist() == [0, 3, 5]
