"""The wfdb dataset: CSV labels, leads, declared rates, rhythm annotations cut into windows."""

from __future__ import annotations

import numpy as np
import pytest
from conftest_data import ecg, write_record, write_rhythm_annotations

from ecgbench.data.config import DataConfig
from ecgbench.data.loader import load_splits
from ecgbench.data.problems import RecordLog, SkippedRecordsWarning
from ecgbench.errors import ConfigError, DatasetError
from ecgbench_plugins.datasets.wfdb_folder import MIT_BIH_AF_RHYTHMS, WfdbFolder

FS = 250.0


def two_lead(seconds: float, seed: int) -> np.ndarray:
    return np.stack([ecg("N", seconds, FS, seed), -ecg("N", seconds, FS, seed + 100)], axis=1)


@pytest.fixture
def afdb_like(tmp_path):
    """One 10 s two-lead record at 250 Hz: N from 0 s, AF from 4.2 s (MIT-BIH AF database style)."""
    folder = tmp_path / "afdb"
    write_record(folder, "04015", two_lead(10, 0), FS, sig_names=["ECG1", "ECG2"])
    write_rhythm_annotations(folder, "04015", [0, int(4.2 * FS)], ["(N", "(AFIB"], FS)
    return folder


def test_csv_labels_and_lead_by_name_or_index(tmp_path):
    folder = tmp_path / "csv"
    write_record(folder, "a", two_lead(3, 1), FS, sig_names=["MLII", "V1"])
    write_record(folder, "b", two_lead(3, 2), FS, sig_names=["MLII", "V1"])
    (folder / "labels.csv").write_text("record,label\na,N\nb,A\n")
    by_name = list(WfdbFolder.from_params({"path": str(folder), "labels_csv": "labels.csv", "lead": "V1"}).records())
    by_index = list(WfdbFolder.from_params({"path": str(folder), "labels_csv": "labels.csv", "lead": 1}).records())
    assert [(r.record_id, r.label, r.fs_hz) for r in by_name] == [("a", "N", 250.0), ("b", "A", 250.0)]
    np.testing.assert_array_equal(by_name[0].signal, by_index[0].signal)
    np.testing.assert_allclose(by_name[0].signal, two_lead(3, 1)[:, 1], atol=1e-3)  # 1000 adu/mV quantisation


def test_declared_rate_rejects_other_rates(tmp_path):
    folder = tmp_path / "rates"
    write_record(folder, "a", ecg("N", 3, 250.0), 250.0)
    write_record(folder, "b", ecg("N", 3, 360.0), 360.0)
    (folder / "labels.csv").write_text("a,N\nb,N\n")
    any_rate = WfdbFolder.from_params({"path": str(folder), "labels_csv": "labels.csv"})
    assert [r.fs_hz for r in any_rate.records()] == [250.0, 360.0]
    declared = WfdbFolder.from_params({"path": str(folder), "labels_csv": "labels.csv", "fs_hz": 250})
    with pytest.raises(DatasetError, match=r"record 'b' \(.*b.hea\): sampled at 360 Hz, the dataset's records at 250 Hz; resample"):
        list(declared.records())


def test_rhythm_windows_labelled_by_the_rhythm_covering_them(afdb_like):
    dataset = WfdbFolder.from_params({"path": str(afdb_like), "annotation": "atr", "window_s": 2})
    log = RecordLog()
    records = list(dataset.records(log))
    # windows [0,2) [2,4) N; [4,6) crosses the change at 4.2 s: dropped; [6,8) [8,10) AF
    assert [(r.record_id, r.label, len(r.signal)) for r in records] == [
        ("04015@0s", "N", 500),
        ("04015@2s", "N", 500),
        ("04015@6s", "A", 500),
        ("04015@8s", "A", 500),
    ]
    assert log.dropped_by_reason() == {"rhythm_change": 1}
    assert dataset.split_group("04015@6s") == "04015"
    log = RecordLog()
    assert list(WfdbFolder.from_params({"path": str(afdb_like), "annotation": "atr"}).records(log)) == []
    assert log.dropped_by_reason() == {"rhythm_change": 1}  # whole record: two rhythms


def test_windows_before_the_first_rhythm_and_whole_records(tmp_path):
    folder = tmp_path / "late"
    write_record(folder, "r1", ecg("N", 6, FS), FS)
    write_rhythm_annotations(folder, "r1", [int(2.5 * FS)], ["(AFIB"], FS)
    write_record(folder, "r2", ecg("N", 6, FS, seed=2), FS)
    write_rhythm_annotations(folder, "r2", [0, 0 + 10], ["(N", "(N"], FS)  # repeated code: one rhythm
    log = RecordLog()
    windows = list(WfdbFolder.from_params({"path": str(folder), "annotation": "atr", "window_s": 2}).records(log))
    assert [r.record_id for r in windows] == ["r1@4s", "r2@0s", "r2@2s", "r2@4s"]
    # [0,2) and [2,4) start before the first rhythm annotation at 2.5 s
    assert log.dropped_by_reason() == {"before_first_rhythm": 2}
    assert list(log.dropped_from) == ["r1"]
    log = RecordLog()
    whole = list(WfdbFolder.from_params({"path": str(folder), "annotation": "atr"}).records(log))
    assert [(r.record_id, r.label, len(r.signal)) for r in whole] == [("r2", "N", 1500)]
    assert log.dropped_by_reason() == {"before_first_rhythm": 1}


def test_default_rhythm_keeps_the_windows_before_the_first_annotation(tmp_path):
    folder = tmp_path / "late"
    write_record(folder, "r1", ecg("N", 8, FS), FS)
    write_rhythm_annotations(folder, "r1", [int(4 * FS)], ["(AFIB"], FS)
    write_record(folder, "quiet", ecg("N", 4, FS, seed=3), FS)
    write_rhythm_annotations(folder, "quiet", [100], [""], FS)  # no rhythm code at all (a non-AF record of CPSC 2021)
    params = {"path": str(folder), "annotation": "atr", "window_s": 2, "default_rhythm": "(N"}
    log = RecordLog()
    windows = list(WfdbFolder.from_params(params).records(log))
    assert [(r.record_id, r.label) for r in windows] == [
        ("quiet@0s", "N"), ("quiet@2s", "N"), ("r1@0s", "N"), ("r1@2s", "N"), ("r1@4s", "A"), ("r1@6s", "A"),
    ]
    assert log.dropped_by_reason() == {}
    without = RecordLog()
    assert len(list(WfdbFolder.from_params({**params, "default_rhythm": None}).records(without))) == 2
    assert without.dropped_by_reason() == {"before_first_rhythm": 4}
    with pytest.raises(ConfigError, match=r"default_rhythm '\(SR' is not a code of rhythm_map"):
        WfdbFolder.from_params({**params, "default_rhythm": "(SR"})


def test_a_rhythm_annotation_at_the_end_marks_the_end_not_a_new_rhythm(tmp_path):
    folder = tmp_path / "persistent"
    n = int(6 * FS)
    write_record(folder, "af", ecg("A", 6, FS), FS)
    write_rhythm_annotations(folder, "af", [0, n - 1], ["(AFIB", "(N"], FS)  # CPSC 2021 persistent AF
    write_record(folder, "late_n", ecg("A", 6, FS, seed=4), FS)
    write_rhythm_annotations(folder, "late_n", [0, n - 4], ["(AFIB", "(N"], FS)  # 4 samples before the end: a real change
    log = RecordLog()
    whole = list(WfdbFolder.from_params({"path": str(folder), "annotation": "atr"}).records(log))
    assert [(r.record_id, r.label, len(r.signal)) for r in whole] == [("af", "A", n)]
    assert log.dropped_by_reason() == {"rhythm_change": 1}
    windows = list(WfdbFolder.from_params({"path": str(folder), "annotation": "atr", "window_s": 2}).records())
    assert [(r.record_id, r.label) for r in windows] == [("af@0s", "A"), ("af@2s", "A"), ("af@4s", "A"), ("late_n@0s", "A"), ("late_n@2s", "A")]


def test_unknown_rhythm_code_names_the_mapping_fix(afdb_like):
    write_rhythm_annotations(afdb_like, "04015", [0, 1000], ["(N", "(SVTA"], FS)
    dataset = WfdbFolder.from_params({"path": str(afdb_like), "annotation": "atr", "window_s": 2})
    with pytest.raises(DatasetError, match=r"rhythm code\(s\) \(SVTA are not in rhythm_map; map them to a class, e.g. rhythm_map: \{'\(SVTA': O\}"):
        list(dataset.records())
    mapped = WfdbFolder.from_params(
        {"path": str(afdb_like), "annotation": "atr", "window_s": 2, "rhythm_map": {**MIT_BIH_AF_RHYTHMS, "(SVTA": "O"}}
    )
    assert [r.label for r in mapped.records()] == ["N", "N", "O", "O", "O"]


def test_missing_annotation_file_is_a_bad_record(afdb_like, tmp_path):
    write_record(afdb_like, "04043", two_lead(10, 5), FS, sig_names=["ECG1", "ECG2"])
    dataset = WfdbFolder.from_params({"path": str(afdb_like), "annotation": "atr", "window_s": 2})
    with pytest.warns(SkippedRecordsWarning, match="04043"):
        splits = load_splits(dataset, DataConfig(on_bad_record="skip", split={"val": 0, "test": 0}), tmp_path / "cache")
    assert splits.info["skipped"] == {"unreadable": {"count": 1, "records": ["04043"]}}
    assert splits.info["dropped"] == {"rhythm_change": 1}


def test_splits_keep_windows_of_a_recording_together(tmp_path):
    folder = tmp_path / "many"
    for i in range(8):
        write_record(folder, f"r{i}", ecg("N", 8, FS, seed=i), FS)
        write_rhythm_annotations(folder, f"r{i}", [0], ["(AFIB" if i % 2 else "(N"], FS)
    dataset = WfdbFolder.from_params({"path": str(folder), "annotation": "atr", "window_s": 2})
    splits = load_splits(dataset, DataConfig(fs_hz=100, split={"val": 0.25, "test": 0.25}), tmp_path / "cache")
    where = {}
    for name in ("train", "val", "test"):
        for rid in getattr(splits, name).record_ids:
            where.setdefault(rid.split("@")[0], set()).add(name)
    assert len(where) == 8 and all(len(s) == 1 for s in where.values())
    assert [len(splits.train), len(splits.val), len(splits.test)] == [16, 8, 8]  # 4 windows per recording


@pytest.fixture
def patients(tmp_path):
    """CPSC-2021-style names ``data_<patient>_<n>``: patients 1-3 in sinus rhythm, 4-6 in AF, two 8-s recordings each,
    and a 1-s recording of patient 1 (shorter than a window: it yields none)."""
    folder = tmp_path / "patients"
    for patient in range(1, 7):
        for n in (1, 2):
            name = f"data_{patient}_{n}"
            write_record(folder, name, ecg("N", 8, FS, seed=10 * patient + n), FS)
            write_rhythm_annotations(folder, name, [0], ["(AFIB" if patient > 3 else "(N"], FS)
    write_record(folder, "data_1_9", ecg("N", 1, FS, seed=99), FS)
    write_rhythm_annotations(folder, "data_1_9", [0], ["(N"], FS)
    return folder


PATIENT_SETTINGS = {"annotation": "atr", "window_s": 2, "group_pattern": r"data_(\d+)_"}


def patients_by_split(splits) -> dict[str, set[str]]:
    where: dict[str, set[str]] = {}
    for name in ("train", "val", "test"):
        for rid in getattr(splits, name).record_ids:
            where.setdefault(rid.split("_")[1], set()).add(name)
    return where


@pytest.mark.parametrize("seed", range(4))
def test_no_patient_is_in_two_splits(patients, tmp_path, seed):
    dataset = WfdbFolder.from_params({"path": str(patients), **PATIENT_SETTINGS})
    assert dataset.split_group("data_12_3@4s") == "12" and dataset.recording("data_12_3@4s") == "data_12_3"
    splits = load_splits(dataset, DataConfig(fs_hz=100, split={"val": 0.34, "test": 0.34, "seed": seed}), tmp_path / "cache")
    where = patients_by_split(splits)
    assert sorted(where, key=int) == ["1", "2", "3", "4", "5", "6"]
    assert all(len(s) == 1 for s in where.values()), where
    assert sorted(len(getattr(splits, n)) for n in ("train", "val", "test")) == [16, 16, 16]  # 2 patients x 2 recordings x 4 windows
    assert splits.info["dropped"] == {"shorter_than_window": 1}
    by_recording = WfdbFolder.from_params({"path": str(patients), "annotation": "atr", "window_s": 2})
    assert by_recording.split_group("data_12_3@4s") == "data_12_3"  # no group_pattern: each recording is its own group


def test_split_file_with_patients_recordings_and_a_zero_window_recording(patients, tmp_path):
    dataset = WfdbFolder.from_params({"path": str(patients), **PATIENT_SETTINGS})
    split = tmp_path / "split.csv"
    split.write_text("record,split\n1,test\n4,test\ndata_2_1,val\ndata_2_2,val\n5,val\n3,train\n6,train\ndata_1_9,test\n")
    splits = load_splits(dataset, DataConfig(fs_hz=100, split={"file": str(split)}), tmp_path / "cache")
    assert patients_by_split(splits) == {"1": {"test"}, "4": {"test"}, "2": {"val"}, "5": {"val"}, "3": {"train"}, "6": {"train"}}
    split.write_text("1,test\n4,test\n2,val\n5,val\n3,train\n6,train\ndata_1_9,train\n")
    with pytest.raises(DatasetError, match=r"split.csv lines 1 and 7: '1' \(test\) and 'data_1_9' \(train\) are both of group '1'"):
        load_splits(dataset, DataConfig(fs_hz=100, split={"file": str(split)}), tmp_path / "cache")
    split.write_text("data_1_1,test\ndata_1_2,train\n2,val\n3,train\n4,test\n5,val\n6,train\n")
    with pytest.raises(DatasetError, match=rf"{split} lines 1 and 2: 'data_1_1' \(test\) and 'data_1_2' \(train\) are both of group '1', which would be in two splits"):
        load_splits(dataset, DataConfig(fs_hz=100, split={"file": str(split)}), tmp_path / "cache")


def test_group_pattern_must_match_every_record_and_hold_a_group(patients, tmp_path):
    write_record(patients, "extra", ecg("N", 8, FS, seed=7), FS)
    write_rhythm_annotations(patients, "extra", [0], ["(N"], FS)
    dataset = WfdbFolder.from_params({"path": str(patients), **PATIENT_SETTINGS})
    with pytest.raises(ConfigError, match=r"record 'extra' does not match group_pattern 'data_\(\\d\+\)_'.*change the pattern"):
        list(dataset.records())
    with pytest.raises(ConfigError, match=r"group_pattern 'data_\\d_' has no capture group; put the group id in parentheses"):
        WfdbFolder.from_params({**PATIENT_SETTINGS, "group_pattern": r"data_\d_"})
    with pytest.raises(ConfigError, match=r"group_pattern 'data_\(' is not a regular expression"):
        WfdbFolder.from_params({**PATIENT_SETTINGS, "group_pattern": "data_("})


def test_config_needs_exactly_one_label_source(tmp_path, registry):
    assert registry.get("datasets", "wfdb") is WfdbFolder
    with pytest.raises(ConfigError, match="set exactly one of labels_csv"):
        WfdbFolder.from_params({"path": str(tmp_path)})
    with pytest.raises(ConfigError, match="set exactly one of labels_csv"):
        WfdbFolder.from_params({"path": str(tmp_path), "labels_csv": "x.csv", "annotation": "atr"})
    with pytest.raises(ConfigError, match="map every rhythm code to one of N, A, O, ~"):
        WfdbFolder.from_params({"path": str(tmp_path), "annotation": "atr", "rhythm_map": {"(AFIB": "AF"}})
    with pytest.raises(ConfigError, match="lead index -1 is negative"):
        WfdbFolder.from_params({"path": str(tmp_path), "annotation": "atr", "lead": -1})
    with pytest.raises(ConfigError, match="pass `--data-dir wfdb=DIR`"):
        WfdbFolder.from_params({"annotation": "atr"}).fingerprint()


def test_csv_pairs_skip_the_header_and_blank_lines_and_name_a_bad_line(tmp_path):
    from ecgbench.data.wfdb_io import read_csv_pairs

    path = tmp_path / "pairs.csv"
    path.write_text("Record,Split\n\na, train\nb,test\n")
    assert read_csv_pairs(path, ("record", "split"), "unused") == [(3, "a", "train"), (4, "b", "test")]
    path.write_text("record,label\na,N,extra\n")
    with pytest.raises(DatasetError, match=r"pairs.csv line 2: expected 'record,label'"):
        read_csv_pairs(path, ("record", "label"), "unused")
    with pytest.raises(DatasetError, match="^no such file, add it$"):
        read_csv_pairs(tmp_path / "missing.csv", ("record", "label"), "no such file, add it")


def test_rhythm_settings_change_the_cache_key(tmp_path):
    folder = tmp_path / "late"
    write_record(folder, "r1", ecg("N", 8, FS), FS)
    write_rhythm_annotations(folder, "r1", [int(4 * FS)], ["(AFIB"], FS)
    config = DataConfig(fs_hz=100, split={"val": 0, "test": 0})
    params = {"path": str(folder), "annotation": "atr", "window_s": 2}
    dropped = load_splits(WfdbFolder.from_params(params), config, tmp_path / "cache")
    kept = load_splits(WfdbFolder.from_params({**params, "default_rhythm": "(N"}), config, tmp_path / "cache")
    assert (len(dropped.train), dropped.info["dropped"]) == (2, {"before_first_rhythm": 2})
    assert (len(kept.train), kept.info["dropped"]) == (4, {})
    assert dropped.info["cache"] != kept.info["cache"]
    assert WfdbFolder.from_params(params).fingerprint() != WfdbFolder.from_params({**params, "group_pattern": "(r)"}).fingerprint()
