"""Train/val/test assignment: stratified and seeded, grouped by recording, or from a split file."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from ecgbench.data.config import SplitConfig
from ecgbench.data.splits import assign_splits, read_split_file
from ecgbench.errors import DatasetError

# 20 N, 10 A, 6 O, 4 ~
LABELS = np.array([0] * 20 + [1] * 10 + [2] * 6 + [3] * 4)
IDS = [f"r{i:02d}" for i in range(len(LABELS))]


def counts(assignment, split):
    return Counter(int(LABELS[IDS.index(r)]) for r, s in assignment.items() if s == split)


def test_stratified_counts_per_class_match_the_shares():
    assignment = assign_splits(IDS, LABELS, SplitConfig(val=0.2, test=0.1, seed=0))
    # per class: test = round(n * 0.1), val = round(n * 0.2), halves rounded up
    assert counts(assignment, "test") == {0: 2, 1: 1, 2: 1}  # ~: round(0.4) = 0
    assert counts(assignment, "val") == {0: 4, 1: 2, 2: 1, 3: 1}
    assert counts(assignment, "train") == {0: 14, 1: 7, 2: 4, 3: 3}


def test_no_record_in_two_splits_and_every_record_assigned():
    assignment = assign_splits(IDS, LABELS, SplitConfig())
    assert sorted(assignment) == sorted(IDS)
    sets = [{r for r, s in assignment.items() if s == split} for split in ("train", "val", "test")]
    assert sum(len(s) for s in sets) == len(IDS) == len(set.union(*sets))


def test_deterministic_per_seed_and_independent_of_record_order():
    a = assign_splits(IDS, LABELS, SplitConfig(seed=7))
    assert assign_splits(IDS, LABELS, SplitConfig(seed=7)) == a
    order = np.random.default_rng(1).permutation(len(IDS))
    assert assign_splits([IDS[i] for i in order], LABELS[order], SplitConfig(seed=7)) == a
    assert assign_splits(IDS, LABELS, SplitConfig(seed=8)) != a


def test_windows_of_one_recording_stay_together():
    ids = [f"rec{r}@{w * 30}s" for r in range(12) for w in range(5)]
    groups = [i.split("@")[0] for i in ids]
    labels = np.array([r % 2 for r in range(12) for _ in range(5)])
    assignment = assign_splits(ids, labels, SplitConfig(val=0.2, test=0.2), groups)
    by_group = {}
    for rid, group in zip(ids, groups):
        by_group.setdefault(group, set()).add(assignment[rid])
    assert all(len(splits) == 1 for splits in by_group.values())
    # 6 recordings per class: test round(1.2) = 1, val 1, train 4 (x 5 windows)
    assert Counter(assignment.values()) == {"train": 40, "val": 10, "test": 10}


def test_split_file_assigns_records_and_groups(tmp_path):
    path = tmp_path / "split.csv"
    path.write_text("record,split\nr00,test\nr01,val\n" + "".join(f"{r},train\n" for r in IDS[2:]))
    assignment = assign_splits(IDS, LABELS, SplitConfig(file=str(path)))
    assert assignment["r00"] == "test" and assignment["r01"] == "val" and assignment["r39"] == "train"
    path.write_text("rec1,test\nrec2,train\n")
    assert read_split_file(path, ["rec1@0s", "rec1@30s", "rec2@0s"], ["rec1", "rec1", "rec2"]) == {
        "rec1@0s": "test",
        "rec1@30s": "test",
        "rec2@0s": "train",
    }


@pytest.mark.parametrize(
    "text, message",
    [
        ("r00,train\n", r"split.csv: record 'r01' has no row; add 'r01,train' \(or val, test\)"),
        ("r00,training\n", r"split.csv line 1: split 'training' for record 'r00' is not one of train, val, test"),
        ("r00,train\nr00,test\n", r"split.csv line 2: record 'r00' is put in both train and test; keep one row"),
        ("r99,train\n", r"split.csv line 1: the dataset has no record 'r99'; remove the row"),
        ("r00,train,x\n", r"split.csv line 1: expected 'record,split'"),
    ],
)
def test_split_file_errors_name_line_and_fix(tmp_path, text, message):
    path = tmp_path / "split.csv"
    path.write_text(text)
    with pytest.raises(DatasetError, match=message):
        assign_splits(IDS, LABELS, SplitConfig(file=str(path)))


def test_split_file_may_name_skipped_records(tmp_path):
    path = tmp_path / "split.csv"
    path.write_text("a,train\nb,test\nbroken,val\n")
    assert read_split_file(path, ["a", "b"], ["a", "b"], skipped={"broken"}) == {"a": "train", "b": "test"}
    with pytest.raises(DatasetError, match="does not exist"):
        read_split_file(tmp_path / "nope.csv", ["a"], ["a"])


# Windows of recordings of patients: p1 has two recordings, p2 one.
WINDOWS = ["p1_a@0s", "p1_a@30s", "p1_b@0s", "p2_a@0s"]
RECORDINGS = [w.split("@")[0] for w in WINDOWS]
PATIENTS = [r.split("_")[0] for r in RECORDINGS]


@pytest.mark.parametrize(
    "text",
    ["p1,test\np2,train\n", "p1_a,test\np1_b,test\np2_a,train\n", "p1_a@0s,test\np1_a@30s,test\np1_b,test\np2,train\n"],
    ids=["groups", "recordings", "windows and a mix"],
)
def test_split_file_may_name_windows_recordings_or_groups(tmp_path, text):
    path = tmp_path / "split.csv"
    path.write_text(text)
    assert read_split_file(path, WINDOWS, PATIENTS, recordings=RECORDINGS) == {
        "p1_a@0s": "test", "p1_a@30s": "test", "p1_b@0s": "test", "p2_a@0s": "train",
    }


@pytest.mark.parametrize(
    "text, message",
    [
        ("p1_a,test\np1_b,train\np2,train\n", r"split.csv lines 1 and 2: 'p1_a' \(test\) and 'p1_b' \(train\) are both of group 'p1', which would be in two splits"),
        ("p1_a@0s,test\np1_a@30s,val\np1_b,test\np2,train\n", r"split.csv lines 1 and 2: 'p1_a@0s' \(test\) and 'p1_a@30s' \(val\) are both of group 'p1'"),
        ("p1,test\np2,train\np1_empty,train\n", r"split.csv lines 1 and 3: 'p1' \(test\) and 'p1_empty' \(train\) are both of group 'p1'"),
    ],
    ids=["two recordings", "two windows", "a zero-window recording"],
)
def test_split_file_putting_one_group_in_two_splits_is_an_error(tmp_path, text, message):
    path = tmp_path / "split.csv"
    path.write_text(text)
    with pytest.raises(DatasetError, match=message + ".*; put every record of the group in one split"):
        read_split_file(path, WINDOWS, PATIENTS, recordings=RECORDINGS, empty={"p1_empty": "p1"})


def test_split_file_may_name_recordings_that_yielded_no_record(tmp_path):
    path = tmp_path / "split.csv"
    path.write_text("p1,test\np2,train\np1_empty,test\np3_empty,val\n")
    empty = {"p1_empty": "p1", "p3_empty": "p3"}
    assert set(read_split_file(path, WINDOWS, PATIENTS, recordings=RECORDINGS, empty=empty).values()) == {"test", "train"}
    with pytest.raises(DatasetError, match="the dataset has no record 'p1_empty'"):
        read_split_file(path, WINDOWS, PATIENTS, recordings=RECORDINGS)  # not known as a dropped recording: a typo
