"""The wfdb plugin on the 18 shared CPSC 2021 records, with the settings of suites/datasets/cpsc2021.yaml.

Patients 21 and 35: no rhythm annotation (non-AF); 8 and 84: persistent AF, "(AFIB" at 0 and "(N" at the
last sample; 92 and 101: paroxysmal AF, the first rhythm annotation seconds into the record.
"""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import REPO

from ecgbench.config.dataset_ref import load_dataset_file
from ecgbench.data.config import DataConfig
from ecgbench.data.loader import load_splits
from ecgbench.data.problems import RecordLog
from ecgbench.errors import DatasetError
from ecgbench_plugins.datasets.wfdb_folder import WfdbFolder

DATASET_FILE = REPO / "suites" / "datasets" / "cpsc2021.yaml"
PERSISTENT = {"data_8_2", "data_8_3", "data_8_4", "data_84_1", "data_84_2", "data_84_3"}
PAROXYSMAL = {"data_92_4", "data_92_12", "data_92_19", "data_101_6", "data_101_8", "data_101_9"}


def cpsc(cpsc_dir, **settings) -> WfdbFolder:
    ref = load_dataset_file(DATASET_FILE, overrides={"path": str(cpsc_dir), **settings})
    return WfdbFolder(ref.config)


def read(dataset):
    log = RecordLog()
    records = list(dataset.records(log))
    return records, log.dropped_by_reason()


def test_the_dataset_file_gives_windows_of_every_patient(cpsc_dir):
    dataset = cpsc(cpsc_dir)
    records, dropped = read(dataset)
    assert Counter(r.label for r in records) == {"N": 76, "A": 51}
    assert dropped == {"rhythm_change": 14}  # 30-s windows across an AF onset or end (paroxysmal records)
    by_patient = {}
    for r in records:
        by_patient.setdefault(dataset.split_group(r.record_id), Counter())[r.label] += 1
    assert by_patient == {"101": {"N": 6, "A": 1}, "21": {"N": 36}, "35": {"N": 14}, "84": {"A": 34}, "8": {"A": 16}, "92": {"N": 20}}
    assert {r.fs_hz for r in records} == {200.0} and {len(r.signal) for r in records} == {6000}


def test_default_rhythm_keeps_the_windows_before_the_first_annotation(cpsc_dir):
    records, _ = read(cpsc(cpsc_dir))
    without, dropped = read(cpsc(cpsc_dir, default_rhythm=None))
    # 6 of the 14 windows across a rhythm change start before the first annotation: counted there instead
    assert dropped == {"before_first_rhythm": 68, "rhythm_change": 8}
    assert (len(records), len(without)) == (127, 65)
    assert Counter(r.label for r in without) == {"N": 14, "A": 51}
    assert not any(r.record_id.startswith(("data_21_", "data_35_")) for r in without)  # non-AF records: no annotation at all


def test_whole_records_keep_persistent_af_despite_the_end_marker(cpsc_dir):
    records, dropped = read(cpsc(cpsc_dir, window_s=None))
    labels = {r.record_id: r.label for r in records}
    assert {rid for rid, label in labels.items() if label == "A"} == PERSISTENT
    assert len(labels) == 12 and dropped == {"rhythm_change": 6}  # the paroxysmal records hold two rhythms


def test_a_missing_lead_names_the_header_and_the_leads(cpsc_dir):
    with pytest.raises(DatasetError, match=r"record 'data_101_6' \(.*data_101_6.hea\): has no lead 'V1' \(leads: I, II\)"):
        read(cpsc(cpsc_dir, lead="V1"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_patient_is_in_two_splits(cpsc_dir, tmp_path, seed):
    splits = load_splits(cpsc(cpsc_dir), DataConfig(fs_hz=100, split={"val": 0.25, "test": 0.25, "seed": seed}), tmp_path / "cache")
    where: dict[str, set[str]] = {}
    for name in ("train", "val", "test"):
        for rid in getattr(splits, name).record_ids:
            where.setdefault(rid.split("_")[1], set()).add(name)
    assert sorted(where, key=int) == ["8", "21", "35", "84", "92", "101"]
    assert all(len(s) == 1 for s in where.values()), where
    assert splits.info["dropped"] == {"rhythm_change": 14}


def test_split_files_by_patient_may_name_recordings_without_records(cpsc_dir, tmp_path):
    dataset = cpsc(cpsc_dir, window_s=None)  # whole records: the paroxysmal ones yield none
    split = tmp_path / "split.csv"
    rows = ["8,train", "84,train", "21,train", "35,test", *(f"{rid},test" for rid in sorted(PAROXYSMAL))]
    split.write_text("\n".join(rows) + "\n")
    splits = load_splits(dataset, DataConfig(fs_hz=100, split={"file": str(split)}), tmp_path / "cache")
    assert sorted(splits.test.record_ids) == ["data_35_10", "data_35_4", "data_35_6"]
    split.write_text("\n".join(["data_8_2,train", "data_8_3,test", *rows[1:]]) + "\n")
    with pytest.raises(DatasetError, match=rf"{split} lines 1 and 2: 'data_8_2' \(train\) and 'data_8_3' \(test\) are both of group '8'"):
        load_splits(dataset, DataConfig(fs_hz=100, split={"file": str(split)}), tmp_path / "cache")
