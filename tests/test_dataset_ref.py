"""Dataset settings files (ecgbench.config.dataset_ref): one matrix.datasets entry, validated like a suite's."""

from __future__ import annotations

import pytest
from conftest import REPO

from ecgbench.config.dataset_ref import load_dataset_file
from ecgbench.errors import ConfigError


def test_the_cpsc2021_file_is_a_wfdb_entry(registry):
    ref = load_dataset_file(REPO / "suites" / "datasets" / "cpsc2021.yaml", registry)
    assert (ref.kind, ref.name) == ("datasets", "wfdb")
    assert ref.params() == {
        "annotation": "atr", "fs_hz": 200.0, "window_s": 30.0, "lead": "I", "default_rhythm": "(N", "group_pattern": r"data_(\d+)_",
    }
    assert ref.config.rhythm_map["(AFIB"] == "A" and ref.config.rhythm_map["(N"] == "N"
    moved = load_dataset_file(REPO / "suites" / "datasets" / "cpsc2021.yaml", registry, {"path": "/data/cpsc", "window_s": 10})
    assert (moved.config.path, moved.config.window_s, moved.config.lead) == ("/data/cpsc", 10.0, "I")


def test_a_plain_name_is_an_entry(tmp_path, registry):
    path = tmp_path / "synthetic.yaml"
    path.write_text("synthetic\n")
    assert load_dataset_file(path, registry).name == "synthetic"


@pytest.mark.parametrize(
    "text, message",
    [
        ("wfdb: {annotation: atr, window: 30}\n", r"d.yaml at wfdb.window: unknown key 'window'; did you mean 'window_s'\?"),
        ("wfdb: {annotation: atr, window_s: -1}\n", r"d.yaml at wfdb.window_s: Input should be greater than 0"),
        ("wfdb: {annotation: atr}\nsynthetic: {}\n", r"d.yaml: holds 2 keys \(wfdb, synthetic\); a dataset file holds one entry"),
        ("- wfdb: {annotation: atr}\n", r"d.yaml: holds a list; a dataset file holds one entry"),
        ("", r"d.yaml: holds nothing"),
        ("wfbd: {annotation: atr}\n", r"unknown dataset 'wfbd' in .*d.yaml; did you mean 'wfdb'\?"),
        ("wfdb: [atr]\n", r"d.yaml at wfdb: expected a mapping of settings"),
        ("wfdb: {annotation: atr\n", r"d.yaml:.*malformed YAML"),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path, registry, text, message):
    path = tmp_path / "d.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_dataset_file(path, registry)


def test_a_missing_file_is_a_config_error(tmp_path, registry):
    with pytest.raises(ConfigError, match=r"cannot read dataset file .*nope.yaml"):
        load_dataset_file(tmp_path / "nope.yaml", registry)
