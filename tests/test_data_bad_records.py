"""Unusable records: each case raises a DatasetError naming record, file and fix, or is skipped and counted."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest_data import ecg, write_cinc_folder, write_record

from ecgbench.data.config import DataConfig
from ecgbench.data.loader import load_signalset, load_splits
from ecgbench.data.problems import SkippedRecordsWarning
from ecgbench.kinds.dataset import Dataset, Record
from ecgbench.errors import DatasetError
from ecgbench_plugins.datasets.cinc2017 import CinC2017
from ecgbench_plugins.datasets.wfdb_folder import WfdbFolder

GOOD = {f"A0000{i}": label for i, label in enumerate("NAON~NAO", start=1)}


def _unreadable_header(folder):
    (folder / "A00002.hea").write_text("this is not a WFDB header\n")
    return "unreadable", "A00002", "A00002.hea"


def _missing_header(folder):
    (folder / "A00002.hea").unlink()
    return "unreadable", "A00002", "A00002.hea"


def _truncated_signal(folder):
    data = (folder / "A00002.dat").read_bytes()
    (folder / "A00002.dat").write_bytes(data[: len(data) // 2])
    return "unreadable", "A00002", "A00002.dat"


def _missing_signal_file(folder):
    (folder / "A00002.dat").unlink()
    return "unreadable", "A00002", "A00002.dat"


def _nan_samples(folder):
    signal = ecg("A", seed=1)
    signal[10:20] = np.nan  # written as WFDB's invalid-sample value, read back as NaN
    write_record(folder, "A00002", signal)
    return "nan", "A00002", "A00002.dat"


def _flat_signal(folder):
    write_record(folder, "A00002", np.full(600, 0.25))
    return "flat", "A00002", "A00002.dat"


def _label_for_missing_record(folder):
    with open(folder / "REFERENCE.csv", "a") as f:
        f.write("A09999,N\n")
    return "missing_record", "A09999", "REFERENCE.csv line 9"


def _record_without_label(folder):
    lines = (folder / "REFERENCE.csv").read_text().splitlines()
    (folder / "REFERENCE.csv").write_text("\n".join(line for line in lines if not line.startswith("A00002")) + "\n")
    return "unlabelled", "A00002", "REFERENCE.csv"


def _unknown_label(folder):
    text = (folder / "REFERENCE.csv").read_text().replace("A00002,A", "A00002,AF")
    (folder / "REFERENCE.csv").write_text(text)
    return "unknown_label", "A00002", "REFERENCE.csv line 2"


def _sampling_rate_mismatch(folder):
    write_record(folder, "A00002", ecg("A", fs_hz=250.0, seed=1), fs_hz=250.0)
    return "fs_mismatch", "A00002", "A00002.hea"


CASES = [
    _unreadable_header,
    _missing_header,
    _truncated_signal,
    _missing_signal_file,
    _nan_samples,
    _flat_signal,
    _label_for_missing_record,
    _record_without_label,
    _unknown_label,
    _sampling_rate_mismatch,
]


@pytest.fixture
def cinc_folder(tmp_path):
    return write_cinc_folder(tmp_path / "cinc", GOOD)


@pytest.mark.parametrize("break_folder", CASES, ids=lambda f: f.__name__.lstrip("_"))
def test_bad_record_raises_naming_record_file_and_fix(cinc_folder, tmp_path, break_folder):
    reason, record_id, file_hint = break_folder(cinc_folder)
    dataset = CinC2017.from_params({"path": str(cinc_folder)})
    with pytest.raises(DatasetError) as info:
        load_splits(dataset, DataConfig(fs_hz=100), tmp_path / "cache")
    message = str(info.value)
    assert f"record '{record_id}'" in message
    assert file_hint in message
    assert "on_bad_record: skip" in message  # the fix always includes how to skip
    assert not list((tmp_path / "cache").glob("*-records-*"))  # nothing cached from a failed load


@pytest.mark.parametrize("break_folder", CASES, ids=lambda f: f.__name__.lstrip("_"))
def test_bad_record_skipped_with_warning_and_counted(cinc_folder, tmp_path, break_folder):
    reason, record_id, _file = break_folder(cinc_folder)
    dataset = CinC2017.from_params({"path": str(cinc_folder)})
    config = DataConfig(fs_hz=100, on_bad_record="skip", split={"val": 0.0, "test": 0.0})
    with pytest.warns(SkippedRecordsWarning, match=f"skipped 1 record.*{record_id}"):
        splits = load_splits(dataset, config, tmp_path / "cache")
    assert splits.info["skipped"] == {reason: {"count": 1, "records": [record_id]}}
    loaded = set(splits.train.record_ids)
    assert record_id not in loaded
    assert loaded == set(GOOD) - {record_id}


def test_missing_lead_is_a_bad_record(tmp_path):
    folder = tmp_path / "leads"
    write_record(folder, "r1", np.stack([ecg(seed=1), ecg(seed=2)], axis=1), sig_names=["MLII", "V1"])
    write_record(folder, "r2", ecg(seed=3), sig_names=["V5"])
    (folder / "labels.csv").write_text("r1,N\nr2,N\n")
    dataset = WfdbFolder.from_params({"path": str(folder), "labels_csv": "labels.csv", "lead": "MLII"})
    with pytest.raises(DatasetError, match=r"record 'r2' \(.*r2.hea\): has no lead 'MLII' \(leads: V5\); choose one with `lead:`"):
        load_signalset(dataset, DataConfig(), tmp_path / "cache")
    with pytest.warns(SkippedRecordsWarning):
        signals = load_signalset(dataset, DataConfig(on_bad_record="skip"), tmp_path / "cache")
    assert signals.record_ids == ["r1"]


def test_cache_built_with_skip_still_raises_with_error(cinc_folder, tmp_path):
    _flat_signal(cinc_folder)
    dataset = CinC2017.from_params({"path": str(cinc_folder)})
    with pytest.warns(SkippedRecordsWarning):
        load_signalset(dataset, DataConfig(on_bad_record="skip"), tmp_path / "cache")
    with pytest.raises(DatasetError, match="record 'A00002'.*all 600 samples equal 0.25"):
        load_signalset(dataset, DataConfig(on_bad_record="error"), tmp_path / "cache")
    with pytest.warns(SkippedRecordsWarning):  # a warm load warns again: never a silent drop
        load_signalset(dataset, DataConfig(on_bad_record="skip"), tmp_path / "cache")


class ThirdPartyDataset(Dataset):
    """A plugin that knows nothing of RecordLog: the loader still checks what it yields."""

    name = "third_party"

    def records(self):
        yield Record("ok", np.sin(np.arange(600) / 10.0).astype(np.float32), 300.0, "N", "ok.bin")
        yield Record("nan", np.full(600, np.nan, dtype=np.float32), 300.0, "N", "nan.bin")
        yield Record("label", np.sin(np.arange(600) / 10.0).astype(np.float32), 300.0, "AFIB", "label.bin")

    def fingerprint(self):
        return "v1"


def test_loader_checks_records_of_any_dataset(tmp_path):
    with pytest.raises(DatasetError, match=r"record 'nan' \(nan.bin\): 600 of 600 samples are NaN"):
        load_signalset(ThirdPartyDataset(), DataConfig(), tmp_path / "cache")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        signals = load_signalset(ThirdPartyDataset(), DataConfig(on_bad_record="skip"), tmp_path / "cache")
    assert signals.record_ids == ["ok"]
    assert sorted(str(w.message).split(":")[1].strip() for w in caught if w.category is SkippedRecordsWarning) == [
        "skipped 1 record(s), a label is not one of the dataset's classes",
        "skipped 1 record(s), signal holds NaN or infinite samples",
    ]


def test_no_usable_record_is_an_error(cinc_folder, tmp_path):
    (cinc_folder / "REFERENCE.csv").write_text("".join(f"{r},X\n" for r in GOOD))
    dataset = CinC2017.from_params({"path": str(cinc_folder)})
    with pytest.raises(DatasetError, match="has no usable records.*8 unknown_label, first: record 'A00001'"):
        load_signalset(dataset, DataConfig(on_bad_record="skip"), tmp_path / "cache")
